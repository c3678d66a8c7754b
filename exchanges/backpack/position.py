"""The position as the account stream says it (`account.positionUpdate.<symbol>`): what the
engine reads between fills, with no request.

The venue sends a snapshot on subscribe only when the position is not zero, so each live
connection is seeded by one REST read; a stream update that arrives while that read is in
flight is newer, and the read's answer is dropped. None while the socket is down (and until
the seed or the stream has said it)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal

log = logging.getLogger(__name__)


class StreamedPosition:
    def __init__(self) -> None:
        self.value: Decimal | None = None
        # Stream updates and disconnects seen: a seed read counts only if none came meanwhile.
        self._changes = 0

    def on_update(self, net_qty: Decimal) -> None:
        self._changes += 1
        self.value = net_qty

    def down(self) -> None:
        """The socket is down: the stream no longer tells us anything."""
        self._changes += 1
        self.value = None

    async def seed(self, read: Callable[[], Awaitable[Decimal]]) -> None:
        """One REST read of the position, kept unless the stream (or a disconnect) moved first."""
        changes = self._changes
        value = await read()
        if self._changes != changes:
            log.debug("backpack position seed %s dropped: the stream said %s", value, self.value)
            return
        self.value = value
        log.info("backpack position seeded over REST: %s", value)

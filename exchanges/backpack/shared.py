"""What every pair on one Backpack account shares.

The venue limits requests per account and counts connections per IP: a process trading ten
pairs must look like one client. One `SharedAccount` holds the REST client (bpx-py's signing
account over our keep-alive connections), the account's one `RequestBudget`, and the one
WebSocket (`SharedSocket`) on which each pair subscribes its symbol's depth, order updates and
position updates. Each `BackpackVenue` takes its parts from here; a venue built without one
makes its own. The last pair to close closes what is shared.
"""

from __future__ import annotations

import json

from exchanges.backpack.rest import BackpackRest
from exchanges.backpack.session import Session
from exchanges.common.budget import RequestBudget, backpack_limits
from exchanges.common.shared_ws import SharedSocket
from exchanges.common.ws import Frame


def route(frame: Frame) -> str | None:
    """The symbol a frame belongs to (`depth.BTC_USDC_PERP`, `account.orderUpdate.BTC_USDC_PERP`
    -> "BTC_USDC_PERP"); None for a frame without a stream (errors: every pair reads them)."""
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    stream = message.get("stream") if isinstance(message, dict) else None
    if not isinstance(stream, str) or "." not in stream:
        return None
    return stream.rsplit(".", 1)[1]


class SharedAccount:
    """One Backpack account, as every pair traded on it uses it."""

    def __init__(
        self,
        ws_url: str,
        *,
        public_key: str | None,
        secret_key: str | None,
        budget: RequestBudget | None = None,
    ) -> None:
        self.ws_url = ws_url
        self.budget = budget if budget is not None else RequestBudget(backpack_limits())
        self.socket = SharedSocket(ws_url, name="backpack", route=route)
        self._keys = (public_key, secret_key)
        self._rest: BackpackRest | None = None
        self._users = 0
        self._checked = False

    def rest_for(self, session: Session) -> BackpackRest:
        """The account's REST client (account-level settings come from the first pair)."""
        if self._rest is None:
            self._rest = BackpackRest(session, *self._keys, self.budget)
        return self._rest

    async def check_keys(self) -> None:
        """The keys are checked once for all pairs."""
        if not self._checked:
            assert self._rest is not None
            await self._rest.check_keys()
            self._checked = True

    def join(self) -> None:
        self._users += 1

    async def leave(self, *, joined: bool = True) -> None:
        """A pair is done with the account (`joined`: it had joined); the last one closes the
        REST client."""
        self._users -= int(joined)
        if self._users <= 0 and self._rest is not None:
            await self._rest.close()

"""A hedge order in flight, and how one whose outcome is unknown gets resolved.

Ambiguous is not failed: a hedge whose request timed out (or failed in a way that may have
left it on the wire) stays in flight. The venue's stream or REST reconciliation may report its
fills; meanwhile the hedger's watchdog asks the venue (`find_order`) after a second. A lookup
that fails says nothing (it is asked again later). A hedge still not found after ten seconds
is sent again under the *same* client id: the venue places a client order index once (Lighter
refuses a second one with 21728 and the adapter then reads the first one's outcome), so "not
found" never turns into a second hedge under a new id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exchanges.base import Order, Side, Venue

log = logging.getLogger(__name__)

AMBIGUOUS_LOOKUP_AFTER_S = 1.0  # look an unknown hedge up after this long
AMBIGUOUS_RESEND_AFTER_S = 10.0  # not found by then: sent again under the same client id
AMBIGUOUS_LOOKUP_EVERY_S = 1.0  # between lookups of one hedge


@dataclass(slots=True)
class HedgeOrder:
    client_id: int
    side: Side
    qty: Decimal
    worst_price: Decimal
    sent_ns: int
    filled: Decimal = Decimal(0)  # counted from fill events
    final_filled: Decimal | None = None  # from the order reply / terminal event
    ambiguous: bool = False
    ambiguous_since: float = 0.0
    looking_up: bool = False
    next_lookup: float = 0.0  # clock() before which it is not looked up again
    sweep: bool = False  # deliberately beyond the maker fills (see Hedger.sweep_dust)
    # Sent again under its own client id after its outcome stayed unknown: a failure of this
    # copy says nothing of the first (only a copy the venue placed proves the first was not).
    resent: bool = False
    covers: str = ""  # the maker trade ids it was sent for (the trade log's hedge_of)

    @property
    def outstanding(self) -> Decimal:
        """Unsigned quantity that may still fill (or whose fill is not reported yet)."""
        if self.final_filled is None:
            return max(self.qty - self.filled, Decimal(0))
        return max(self.final_filled - self.filled, Decimal(0))

    @property
    def done(self) -> bool:
        return self.final_filled is not None and self.filled >= self.final_filled


class AmbiguousResolver:
    def __init__(
        self,
        venue: Venue,
        *,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        on_resolved: Callable[[], None],
        resend: Callable[[HedgeOrder], None],
    ) -> None:
        self.venue = venue
        self.spawn = spawn  # runs a lookup as a task its owner awaits on close
        self.on_resolved = on_resolved  # a hedge's outcome became known
        self.resend = resend  # send the hedge again, same client id

    def resolve(self, hedges: Iterable[HedgeOrder], now: float) -> None:
        """Look up hedges whose outcome is unknown; one not found in time is sent again under
        its own client id (never under a new one: it may have executed)."""
        find_order = getattr(self.venue, "find_order", None)
        for hedge in list(hedges):
            if not hedge.ambiguous or hedge.done or hedge.looking_up:
                continue
            age = now - hedge.ambiguous_since
            if age < AMBIGUOUS_LOOKUP_AFTER_S or now < hedge.next_lookup:
                continue
            if find_order is None:
                if age >= AMBIGUOUS_RESEND_AFTER_S:
                    self._resend(hedge)
                continue
            hedge.looking_up = True
            hedge.next_lookup = now + AMBIGUOUS_LOOKUP_EVERY_S
            self.spawn(self._look_up(hedge, find_order, age))

    async def _look_up(
        self, hedge: HedgeOrder, find_order: Callable[[int], Awaitable[Order | None]], age: float
    ) -> None:
        try:
            found = await find_order(hedge.client_id)
        except Exception as exc:  # the venue could not be asked: still unknown, ask again
            log.warning("lookup of hedge %s failed (asked again later): %s", hedge.client_id, exc)
            return
        finally:
            hedge.looking_up = False
        if found is not None and found.status.is_terminal:
            log.info(
                "hedge %s resolved: %s, filled %s",
                hedge.client_id,
                found.status.value,
                found.filled_qty,
            )
            hedge.ambiguous = False
            hedge.final_filled = max(found.filled_qty, hedge.filled)
            self.on_resolved()
        elif found is None and age >= AMBIGUOUS_RESEND_AFTER_S:
            self._resend(hedge)

    def _resend(self, hedge: HedgeOrder) -> None:
        log.warning(
            "hedge %s not found after %.0f s: sending it again under the same client id",
            hedge.client_id,
            AMBIGUOUS_RESEND_AFTER_S,
        )
        hedge.ambiguous = False
        self.resend(hedge)

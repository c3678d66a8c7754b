"""The one maker order resting at a time: what the engine knows of it, and its cancel.

Its status moves only through `transition()` (an illegal move is ignored, never applied); its
fills are counted once per trade id; a cancel is confirmed by the venue's event or, failing
that, by asking the venue, and a fill whose event was lost on the way is still delivered.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from exchanges.base import (
    Fill,
    IllegalTransition,
    Order,
    OrderEvent,
    OrderStatus,
    Venue,
    VenueError,
    VenueEvent,
    transition,
)
from hedge.journal import Journal
from hedge.risk import Halt

log = logging.getLogger(__name__)

CANCEL_CONFIRM_S = 5.0
HISTORY_MARGIN_MS = 60_000  # fills looked up from this long before the order was placed


class ActiveMakerOrder:
    def __init__(
        self,
        venue: Venue,
        journal: Journal,
        *,
        wait: Callable[[float], Awaitable[None]],
        deliver: Callable[[VenueEvent], None],
    ) -> None:
        self.venue = venue
        self.journal = journal
        self.wait = wait  # sleeps until an event arrives or the timeout passes
        self.deliver = deliver  # the maker event callback, for a fill found over REST
        self.order: Order | None = None
        self._trade_ids: set[str] = set()
        self._since_ms = 0

    def begin(self, order: Order) -> None:
        """Track `order` before it is sent: a fill may beat the venue's reply."""
        self.journal.register_order(order, purpose="maker")
        self.order = order
        self._trade_ids = set()
        self._since_ms = int(time.time() * 1000)

    def clear(self) -> None:
        self.order = None

    def finish(self, status: OrderStatus) -> None:
        """The order ended without resting (rejected, failed): journaled and forgotten."""
        if self.order is not None:
            self.journal.update_order(self.venue.name, self.order.client_id, status=status)
        self.order = None

    def merge_reply(self, placed: Order) -> None:
        """The venue's reply to the placement, merged with what events already said."""
        active = self.order
        if active is None or placed.client_id != active.client_id:
            return
        status = active.status
        with contextlib.suppress(IllegalTransition):
            status = transition(active.status, placed.status)
        self.order = replace(
            active,
            status=status,
            order_id=placed.order_id or active.order_id,
            filled_qty=max(active.filled_qty, placed.filled_qty),
        )
        self.journal.update_order(
            self.venue.name, active.client_id, status=status, order_id=placed.order_id
        )

    def on_event(self, event: VenueEvent) -> None:
        """A maker venue event (already given to the hedger when it is a fill)."""
        active = self.order
        if active is None or event.client_id != active.client_id:
            return
        if isinstance(event, OrderEvent):
            self.set_status(event.status)
        elif isinstance(event, Fill) and event.trade_id not in self._trade_ids:
            self._trade_ids.add(event.trade_id)
            filled = active.filled_qty + event.qty
            self.order = replace(
                active, order_id=active.order_id or event.order_id, filled_qty=filled
            )
            if filled >= active.qty:
                self.set_status(OrderStatus.FILLED)

    def set_status(self, status: OrderStatus) -> None:
        active = self.order
        if active is None:
            return
        try:
            new = transition(active.status, status)
        except IllegalTransition:
            log.debug("ignored %s -> %s for %s", active.status, status, active.client_id)
            return
        self.order = replace(active, status=new)

    @property
    def resting(self) -> bool:
        """Placed and neither finished nor fully filled."""
        active = self.order
        return not (active is None or active.status.is_terminal or active.filled_qty >= active.qty)

    async def cancel(self) -> None:
        """Cancel and wait for the outcome; raises Halt when the order stays open."""
        active = self.order
        if active is None:
            return
        self.set_status(OrderStatus.PENDING_CANCEL)
        try:
            await self.venue.cancel(active)
        except VenueError as exc:
            log.warning("cancel of %s failed: %s", active.client_id, exc)
        deadline = time.monotonic() + CANCEL_CONFIRM_S
        while time.monotonic() < deadline:
            current = self.order
            if current is None or current.status.is_terminal:
                break
            await self.wait(0.1)
        current = self.order
        if current is not None and not current.status.is_terminal:
            await self._confirm_gone(current)
        final = self.order
        if final is not None:
            self.journal.update_order(
                self.venue.name,
                final.client_id,
                status=final.status,
                filled_qty=final.filled_qty,
            )

    async def _confirm_gone(self, current: Order) -> None:
        """No event confirmed the cancel: ask the venue. Gone from the open orders means done,
        but a fill whose event was lost must still be hedged: fetch the order's fills first
        (the hedger counts each trade id once, so overlap is harmless)."""
        still_open = any(o.client_id == current.client_id for o in await self.venue.open_orders())
        if still_open:
            raise Halt(f"maker order {current.client_id} could not be cancelled")
        for fill in await self.venue.fills_since(self._since_ms - HISTORY_MARGIN_MS):
            if fill.client_id == current.client_id:
                self.deliver(fill)
        self.set_status(OrderStatus.CANCELED)

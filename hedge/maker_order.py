"""The one maker order resting at a time: what the engine knows of it, and its cancel.

The order lives in an `OrderTracker` (exchanges/common/orders.py), as the venues' orders do:
tracked before it is sent, its status moved only through `transition()` (an illegal move is
ignored, never applied), its fills counted once per trade id. A cancel is confirmed by the
venue's event or, failing that, by asking the venue, and a fill whose event was lost on the way
is still delivered. A burst of venue errors is ridden out: the cancel is asked again until the
outage window (exchanges/common/retry.py) has passed, and only then does the run halt.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from exchanges.base import (
    Fill,
    Order,
    OrderEvent,
    OrderStatus,
    Venue,
    VenueError,
    VenueEvent,
)
from exchanges.common.orders import OrderTracker, TrackedOrder
from exchanges.common.retry import OUTAGE_WINDOW_S
from hedge.journal import Journal
from hedge.risk import Halt

log = logging.getLogger(__name__)

CANCEL_CONFIRM_S = 5.0
FIRST_RETRY_S, MAX_RETRY_S = 0.2, 5.0  # a cancel asked again, backing off with jitter
MAX_REFUSALS = 5  # maker orders refused in a row (not retryable) before the run halts
HISTORY_MARGIN_MS = 60_000  # fills looked up from this long before the order was placed


class ActiveMakerOrder:
    def __init__(
        self,
        venue: Venue,
        journal: Journal,
        *,
        wait: Callable[[float], Awaitable[None]],
        deliver: Callable[[VenueEvent], None],
        outage_window_s: float = OUTAGE_WINDOW_S,
    ) -> None:
        self.venue = venue
        self.outage_window_s = outage_window_s  # a cancel is asked again this long
        self.refusals = 0  # maker orders the venue refused in a row (not retryable)
        self.journal = journal
        self.wait = wait  # sleeps until an event arrives or the timeout passes
        self.deliver = deliver  # the maker event callback, for a fill found over REST
        self.tracker = OrderTracker(venue.name)
        self._current: TrackedOrder | None = None
        self._where = (venue.name, "")  # (venue, symbol) of the current order, for `order`
        self._since_ms = 0

    @property
    def order(self) -> Order | None:
        """The current order as a value (read by the engine as `_active`, tests, benchmarks)."""
        current = self._current
        return None if current is None else current.as_order(*self._where)

    def begin(self, order: Order) -> None:
        """Track `order` before it is sent: a fill may beat the venue's reply."""
        self.journal.register_order(order, purpose="maker")
        self._drop_current()
        self._current = self.tracker.track(
            order.client_id, order.side, order.qty, order.price, order.kind
        )
        self._where = (order.venue, order.symbol)
        self._since_ms = int(time.time() * 1000)

    def clear(self) -> None:
        self._drop_current()

    def finish(self, status: OrderStatus) -> None:
        """The order ended without resting (rejected, failed): journaled and forgotten."""
        current = self._current
        if current is not None:
            self.tracker.move(current, status)
            self.journal.update_order(self.venue.name, current.client_id, status=status)
        self._drop_current()

    def _drop_current(self) -> None:
        """Stop following the current order. One still live in the tracker (its end never
        reported) is forgotten there too: the engine no longer reads it, and a live order is
        never trimmed, so at most one order of the tracker is ever live."""
        current, self._current = self._current, None
        if current is not None and current.is_live:
            self.tracker.forget(current)

    def refused(self, exc: VenueError) -> None:
        """The venue refused a maker order. The same request refused for good several times
        in a row would be refused forever: halt with the venue's own message."""
        self.refusals = 0 if exc.retryable else self.refusals + 1
        if self.refusals >= MAX_REFUSALS:
            raise Halt(f"{self.venue.name} refused the maker order {self.refusals} times: {exc}")

    def merge_reply(self, placed: Order) -> None:
        """The venue's reply to the placement, merged with what events already said."""
        self.refusals = 0
        current = self._current
        if current is None or placed.client_id != current.client_id:
            return
        if placed.order_id:
            self.tracker.bind(current, placed.order_id)
        if placed.filled_qty > current.filled:  # kept even when the reply's status is stale
            self.tracker.move(current, current.status, filled=placed.filled_qty)
        self.set_status(placed.status)
        self.journal.update_order(
            self.venue.name, current.client_id, status=current.status, order_id=placed.order_id
        )

    def on_event(self, event: VenueEvent) -> None:
        """A maker venue event (already given to the hedger when it is a fill)."""
        current = self._current
        if current is None or event.client_id != current.client_id:
            return
        if isinstance(event, OrderEvent):
            self.set_status(event.status)
        elif isinstance(event, Fill):
            self._on_fill(current, event)

    def _on_fill(self, current: TrackedOrder, fill: Fill) -> None:
        """Count a fill of the current order once. Its status is kept (a fill after the cancel
        leaves it cancelled) until the whole quantity is filled."""
        try:
            first = self.tracker.first_fill(fill.trade_id)
        except ValueError:
            # No idempotency key (the adapters drop such fills): counting it could count a
            # replay twice and end the wait while the order still rests. The hedger has counted
            # it already; the order's own events, or the cancel's confirmation, still end it.
            log.warning("maker fill without a trade id for %s: not counted", current.client_id)
            return
        if not first:
            return
        if current.order_id is None and fill.order_id:
            self.tracker.bind(current, fill.order_id)
        filled = current.filled + fill.qty
        self.tracker.move(current, current.status, filled=filled)
        if filled >= current.qty:
            self.set_status(OrderStatus.FILLED)

    def set_status(self, status: OrderStatus) -> None:
        """Move the current order's status; an illegal move is ignored (the tracker logs it)."""
        if self._current is not None:
            self.tracker.move(self._current, status)

    @property
    def resting(self) -> bool:
        """Placed and neither finished nor fully filled."""
        current = self._current
        return not (current is None or current.status.is_terminal or current.filled >= current.qty)

    def _done(self) -> bool:
        current = self._current
        return current is None or current.status.is_terminal

    async def cancel(self) -> None:
        """Cancel and wait for the outcome, asking again through a burst of venue errors;
        raises Halt only when the order stays open for the whole outage window."""
        active = self.order
        if active is None:
            return
        self.set_status(OrderStatus.PENDING_CANCEL)
        give_up = time.monotonic() + self.outage_window_s
        delay = FIRST_RETRY_S
        while not await self._cancel_once(active):
            if time.monotonic() >= give_up:
                raise Halt(
                    f"maker order {active.client_id} could not be cancelled in "
                    f"{self.outage_window_s:g} s"
                )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, MAX_RETRY_S)
        final = self.order
        if final is not None:
            self.journal.update_order(
                self.venue.name,
                final.client_id,
                status=final.status,
                filled_qty=final.filled_qty,
            )

    async def _cancel_once(self, active: Order) -> bool:
        """One cancel request and its confirmation; True once the order is known finished."""
        try:
            await self.venue.cancel(active)
        except VenueError as exc:
            log.warning("cancel of %s failed: %s", active.client_id, exc)
        deadline = time.monotonic() + CANCEL_CONFIRM_S
        while time.monotonic() < deadline and not self._done():
            await self.wait(0.1)
        current = self.order
        if current is None or current.status.is_terminal:
            return True
        try:
            return await self._confirm_gone(current)
        except VenueError as exc:
            log.warning("cannot confirm the cancel of %s: %s", current.client_id, exc)
            return False

    async def _confirm_gone(self, current: Order) -> bool:
        """No event confirmed the cancel: ask the venue. Gone from the open orders means done,
        but a fill whose event was lost must still be hedged: fetch the order's fills first
        (the hedger counts each trade id once, so overlap is harmless)."""
        still_open = any(o.client_id == current.client_id for o in await self.venue.open_orders())
        if still_open:
            log.warning("maker order %s is still open: cancelling again", current.client_id)
            return False
        for fill in await self.venue.fills_since(self._since_ms - HISTORY_MARGIN_MS):
            if fill.client_id == current.client_id:
                self.deliver(fill)
        self.set_status(OrderStatus.CANCELED)
        return True

"""The one in-flight order tracker: every order we sent, by client id, from before its request
leaves until a while after it finished.

Modelled on Hummingbot's `ClientOrderTracker`: an order is tracked *before* its request is sent
(a fill may beat the reply), its status moves only through `exchanges.base.transition()` (a
stale or impossible update is refused, never applied), and finished orders are kept for a while
so that a late fill still finds its order. Fills are deduplicated here too, by trade id.

Both venues and the engine ask this object instead of keeping their own sets. It does no I/O
and never blocks: every method is a dict lookup or two.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal

from exchanges.base import IllegalTransition, Order, OrderKind, OrderStatus, Side, transition

log = logging.getLogger(__name__)

KEEP_FINISHED = 10_000  # finished orders remembered for late fills (oldest forgotten first)
KEEP_TRADE_IDS = 100_000  # trade ids remembered for fill dedupe


@dataclass(slots=True, eq=False)
class TrackedOrder:
    """One order of ours. Mutated only by `OrderTracker`; read by anyone."""

    client_id: int
    side: Side
    qty: Decimal
    price: Decimal  # the limit; for an IOC hedge, the worst acceptable price
    kind: OrderKind
    sent_ms: int = 0
    status: OrderStatus = OrderStatus.PENDING_NEW
    order_id: str | None = None  # the venue's id, once known
    filled: Decimal = Decimal(0)  # cumulative
    venue_status: str = ""  # the venue's own word for the status, for logs
    # A copy of this client id was sent and its outcome is unknown: it may be at the venue, so
    # a later copy that is not placed proves nothing (the venue carries it to the next copy).
    maybe_placed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set on every change

    @property
    def is_live(self) -> bool:
        return not self.status.is_terminal

    def as_order(self, venue: str, symbol: str) -> Order:
        return Order(
            venue=venue,
            symbol=symbol,
            client_id=self.client_id,
            side=self.side,
            qty=self.qty,
            price=self.price,
            kind=self.kind,
            status=self.status,
            order_id=self.order_id,
            filled_qty=self.filled,
        )


class OrderTracker:
    """Every order one venue connection sent, by client id (and by venue order id once known)."""

    def __init__(self, venue: str, *, keep_finished: int = KEEP_FINISHED) -> None:
        self.venue = venue
        self.keep_finished = keep_finished
        self._orders: OrderedDict[int, TrackedOrder] = OrderedDict()
        self._by_order_id: dict[str, int] = {}
        self._finished: OrderedDict[int, None] = OrderedDict()  # oldest finished first
        self._trade_ids: OrderedDict[str, None] = OrderedDict()
        self.refused_transitions = 0

    # -- orders -----------------------------------------------------------------------------

    def track(
        self,
        client_id: int,
        side: Side,
        qty: Decimal,
        price: Decimal,
        kind: OrderKind,
        *,
        sent_ms: int = 0,
    ) -> TrackedOrder:
        """Register an order before its request is sent. A client id still held by a live
        order is refused (ValueError); a finished one's id may be reused."""
        old = self._orders.get(client_id)
        if old is not None and old.is_live:
            raise ValueError(f"client id {client_id} is still in use by a live order")
        if old is not None:
            self._forget(old)
        order = TrackedOrder(client_id, side, qty, price, kind, sent_ms=sent_ms)
        self._orders[client_id] = order
        return order

    def maybe_placed(self, order: TrackedOrder, maybe: bool = True) -> None:
        """Whether a copy of the order's client id may be at the venue with its outcome
        unknown (True), or its outcome is now known (False)."""
        order.maybe_placed = maybe

    def get(self, client_id: int | None) -> TrackedOrder | None:
        return None if client_id is None else self._orders.get(client_id)

    def by_order_id(self, order_id: str | None) -> TrackedOrder | None:
        if order_id is None:
            return None
        client_id = self._by_order_id.get(order_id)
        return None if client_id is None else self._orders.get(client_id)

    def find(self, client_id: int | None, order_id: str | None) -> TrackedOrder | None:
        """The order a venue message names, by client id first, else by the venue's id."""
        return self.get(client_id) or self.by_order_id(order_id)

    def bind(self, order: TrackedOrder, order_id: str) -> None:
        """The venue's id for `order` is now known."""
        if order.order_id is not None and order.order_id != order_id:
            self._by_order_id.pop(order.order_id, None)
        order.order_id = order_id
        self._by_order_id[order_id] = order.client_id

    def move(
        self,
        order: TrackedOrder,
        status: OrderStatus,
        *,
        filled: Decimal | None = None,
        venue_status: str = "",
    ) -> bool:
        """Apply a status (and cumulative fill) reported for `order`. Returns False, changing
        nothing, when the transition is illegal or the fill goes backwards: a stale update."""
        if filled is not None and filled < order.filled:
            self.refused_transitions += 1
            return False
        try:
            new = transition(order.status, status)
        except IllegalTransition as exc:
            self.refused_transitions += 1
            log.debug("%s order %d: %s; update ignored", self.venue, order.client_id, exc)
            return False
        order.status = new
        if filled is not None:
            order.filled = filled
        if venue_status:
            order.venue_status = venue_status
        if new.is_terminal:
            self._finished[order.client_id] = None
            self._finished.move_to_end(order.client_id)
            self._trim()
        order.changed.set()
        return True

    def advance(
        self,
        order: TrackedOrder,
        status: OrderStatus,
        *,
        filled: Decimal,
        venue_status: str = "",
    ) -> bool:
        """`move` for a venue's reports, which may come twice or out of order: True only when
        the report says something new — more filled, or a later status at the same fill. A
        repeat, or a fill status that adds no fill to a finished order (a fill report overtaken
        by the cancel), changes nothing and returns False."""
        if filled == order.filled and (
            status is order.status
            or (status is OrderStatus.PARTIALLY_FILLED and order.status.is_terminal)
        ):
            return False
        return self.move(order, status, filled=filled, venue_status=venue_status)

    def amend(self, order: TrackedOrder, *, price: Decimal) -> None:
        """The price actually sent, once known (e.g. a hedge signed ahead carries its own)."""
        order.price = price
        order.changed.set()

    def forget(self, order: TrackedOrder) -> None:
        """Drop an order the venue certainly never received (its request was refused or never
        left): its client id is free again at once."""
        if self._orders.get(order.client_id) is order:
            self._forget(order)

    def live(self) -> list[TrackedOrder]:
        return [o for o in self._orders.values() if o.is_live]

    def is_ours(self, client_id: int | None = None, order_id: str | None = None) -> bool:
        return self.find(client_id, order_id) is not None

    def _forget(self, order: TrackedOrder) -> None:
        self._orders.pop(order.client_id, None)
        self._finished.pop(order.client_id, None)
        if order.order_id is not None:
            self._by_order_id.pop(order.order_id, None)

    def _trim(self) -> None:
        while len(self._finished) > self.keep_finished:
            client_id, _ = self._finished.popitem(last=False)
            order = self._orders.get(client_id)
            if order is not None:
                self._forget(order)

    # -- fills ------------------------------------------------------------------------------

    def first_fill(self, trade_id: str) -> bool:
        """True the first time a trade id is seen, False for a duplicate. The caller must not
        pass a missing id (None, "", "0"): such a fill has no idempotency key of its own."""
        if not trade_id or trade_id in ("0", "None"):
            raise ValueError(f"{self.venue}: a fill without a trade id cannot be deduplicated")
        if trade_id in self._trade_ids:
            return False
        self._trade_ids[trade_id] = None
        while len(self._trade_ids) > KEEP_TRADE_IDS:
            self._trade_ids.popitem(last=False)
        return True

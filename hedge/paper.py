"""PaperVenue: trades on paper against a real venue's public market data (the dry run).

It wraps a real venue adapter connected without keys (public streams only) and answers the
same Venue protocol, so the engine, journal, dashboard and report run unchanged; no order
reaches the venue. Fills are simulated cautiously:
- a post-only order never crosses (a crossing one is rejected as the venue would), and fills
  only when the opposite best trades *through* its price (a buy fills once the best ask drops
  below it); touching the price is not enough, because the real queue ahead of us would take
  that liquidity first;
- an IOC hedge walks the real book's visible levels up to its worst price; whatever is not
  there is not filled.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from decimal import Decimal
from typing import Literal

from exchanges.base import (
    Balance,
    BookTop,
    EventCallback,
    Fill,
    Market,
    Order,
    OrderEvent,
    OrderKind,
    OrderStatus,
    PostOnlyRejected,
    Side,
    Venue,
    VenueEvent,
)

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.05
BOOK_DEPTH = 50
PAPER_EQUITY = Decimal(100_000)


class PaperVenue:
    def __init__(
        self,
        real: Venue,
        *,
        role: Literal["maker", "hedge"],
        maker_fee: Decimal = Decimal("0.0002"),
        taker_fee: Decimal = Decimal("0.0005"),
    ) -> None:
        self.real = real
        self.name = real.name
        self.role = role
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self._callback: EventCallback | None = None
        self._resting: dict[int, Order] = {}
        self._fills: list[Fill] = []
        self._position = Decimal(0)
        # Ids unique across runs: the journal keys fills by (venue, trade id).
        self._run = time.time_ns() // 1_000_000
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self.orders_placed = 0

    @property
    def reconnects(self) -> int:
        return int(getattr(self.real, "reconnects", 0))

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        await self.real.connect()
        self._task = asyncio.create_task(self._watch(), name=f"paper-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.real.close()

    def market(self) -> Market:
        return self.real.market()

    def top(self) -> BookTop | None:
        return self.real.top()

    def set_event_callback(self, callback: EventCallback) -> None:
        self._callback = callback

    # -- orders ------------------------------------------------------------------------------
    async def place_post_only(
        self, side: Side, qty: Decimal, price: Decimal, client_id: int
    ) -> Order:
        top = self.real.top()
        if top is not None and (
            (side is Side.BUY and price >= top.ask) or (side is Side.SELL and price <= top.bid)
        ):
            raise PostOnlyRejected("Order would immediately match and take.")
        order = Order(
            self.name,
            self.market().symbol,
            client_id,
            side,
            qty,
            price,
            OrderKind.POST_ONLY,
            OrderStatus.OPEN,
            f"paper-{self._run}-{next(self._ids)}",
        )
        self._resting[client_id] = order
        self.orders_placed += 1
        self._emit(self._event(order))
        return order

    async def place_hedge(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> Order:
        order_id = f"paper-{self._run}-{next(self._ids)}"
        self.orders_placed += 1
        bids, asks = self._levels()
        levels = asks if side is Side.BUY else bids
        remaining = qty
        filled = Decimal(0)
        for price, size in levels:
            if remaining <= 0:
                break
            if (side is Side.BUY and price > worst_price) or (
                side is Side.SELL and price < worst_price
            ):
                break
            take = min(size, remaining)
            remaining -= take
            filled += take
            self._fill(client_id, order_id, side, take, price, is_maker=False)
        status = OrderStatus.FILLED if remaining <= 0 else OrderStatus.CANCELED
        order = Order(
            self.name,
            self.market().symbol,
            client_id,
            side,
            qty,
            worst_price,
            OrderKind.IOC,
            status,
            order_id,
            filled,
        )
        self._emit(self._event(order))
        return order

    async def place_ioc(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int, *, reduce_only: bool
    ) -> Order:
        """An IOC; reduce-only takes at most the position it trades down (else nothing)."""
        if reduce_only:
            reducible = -self._position * side.sign
            qty = min(qty, max(reducible, Decimal(0)))
        return await self.place_hedge(side, qty, worst_price, client_id)

    async def cancel(self, order: Order) -> None:
        resting = self._resting.pop(order.client_id, None)
        if resting is not None:
            self._emit(self._event(resting.with_status(OrderStatus.CANCELED)))

    async def cancel_all(self) -> None:
        for order in list(self._resting.values()):
            await self.cancel(order)

    async def open_orders(self) -> list[Order]:
        return list(self._resting.values())

    async def position(self) -> Decimal:
        return self._position

    def streamed_position(self) -> Decimal | None:
        return self._position  # the paper account lives here: always known

    async def balance(self) -> Balance:
        return Balance(self.name, PAPER_EQUITY, PAPER_EQUITY, {"paper": "true"})

    async def fills_since(self, since_ms: int) -> list[Fill]:
        return [f for f in self._fills if f.venue_ts_ms >= since_ms]

    # -- simulated fills -------------------------------------------------------------------------
    def _levels(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        book = getattr(self.real, "book", None)
        if book is not None and hasattr(book, "levels"):
            levels: tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]
            levels = book.levels(BOOK_DEPTH)
            return levels
        top = self.real.top()
        if top is None:
            return [], []
        return [(top.bid, top.bid_qty)], [(top.ask, top.ask_qty)]

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            self.check_resting()

    def check_resting(self) -> None:
        """Fill resting orders the market traded through (the price moved past them)."""
        top = self.real.top()
        if top is None:
            return
        for client_id, order in list(self._resting.items()):
            through = (order.side is Side.BUY and top.ask < order.price) or (
                order.side is Side.SELL and top.bid > order.price
            )
            if not through:
                continue
            del self._resting[client_id]
            self._fill(
                client_id,
                order.order_id or "",
                order.side,
                order.remaining_qty,
                order.price,
                is_maker=True,
            )
            done = Order(
                order.venue,
                order.symbol,
                order.client_id,
                order.side,
                order.qty,
                order.price,
                order.kind,
                OrderStatus.FILLED,
                order.order_id,
                order.qty,
            )
            self._emit(self._event(done))

    def _fill(
        self,
        client_id: int,
        order_id: str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        *,
        is_maker: bool,
    ) -> None:
        fee = qty * price * (self.maker_fee if is_maker else self.taker_fee)
        fill = Fill(
            self.name,
            self.market().symbol,
            f"paper-{self._run}-{next(self._trade_ids)}",
            order_id,
            client_id,
            side,
            qty,
            price,
            fee,
            is_maker,
            int(time.time() * 1000),
            time.perf_counter_ns(),
        )
        self._position += qty * side.sign
        self._fills.append(fill)
        self._emit(fill)

    def _event(self, order: Order) -> OrderEvent:
        return OrderEvent(
            self.name,
            order.symbol,
            order.order_id or "",
            order.client_id,
            order.status,
            order.filled_qty,
            recv_ns=time.perf_counter_ns(),
        )

    def _emit(self, event: VenueEvent) -> None:
        if self._callback is not None:
            self._callback(event)

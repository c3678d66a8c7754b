"""The end of a run: our maker orders cancelled, and for a halt the kill switch's last step,
the net of both legs traded flat on the hedge venue.

Positions are the venues' own (REST), so this works whatever the hedger believed. After each
order, positions are read again only once the venue shows that order's fill (or a few seconds
passed), so a lagging REST view never triggers a second order for the same net.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

from exchanges.base import (
    Market,
    Order,
    OrderKind,
    Side,
    Venue,
    VenueError,
    round_qty,
)
from hedge.hedger import ClientIds
from hedge.journal import Journal
from hedge.quoting import worst_price

log = logging.getLogger(__name__)

FLATTEN_ATTEMPTS = 8
FLATTEN_SECONDS = 60.0
FLATTEN_SLIPPAGE_FACTOR = 4  # the flatten crosses further than an ordinary hedge
VIEW_CATCH_UP_S = 3.0  # how long a venue's positions may lag our own order's fill


class NetFlattener:
    def __init__(
        self,
        hedge: Venue,
        market: Market,
        journal: Journal,
        client_ids: ClientIds,
        *,
        max_slippage_bps: Decimal,
        positions: Callable[[], Awaitable[tuple[Decimal, Decimal]]],
        tolerance: Callable[[], Decimal],
    ) -> None:
        self.hedge = hedge
        self.market = market
        self.journal = journal
        self.client_ids = client_ids
        self.max_slippage_bps = max_slippage_bps
        self.positions = positions  # (maker, hedge) from the venues; raises VenueError
        self.tolerance = tolerance  # below it the legs are balanced

    async def run(self) -> None:
        tolerance = self.tolerance()
        deadline = time.monotonic() + FLATTEN_SECONDS
        orders_sent = 0
        expected: tuple[Decimal, float] | None = None  # (net after our last fill, until when)
        while time.monotonic() < deadline and orders_sent < FLATTEN_ATTEMPTS:
            try:
                maker_position, hedge_position = await self.positions()
            except VenueError as exc:
                log.error("flatten: cannot read positions: %s", exc)
                await asyncio.sleep(0.5)
                continue
            net = maker_position + hedge_position
            lagging = expected is not None and abs(net - expected[0]) > tolerance
            if lagging and expected is not None and time.monotonic() < expected[1]:
                await asyncio.sleep(0.2)  # the venue's view has not caught up yet
                continue
            expected = None
            qty = round_qty(abs(net), self.market.step_size)
            if qty < tolerance:
                log.info("flatten: legs balanced (net %s)", net)
                return
            side = Side.SELL if net > 0 else Side.BUY
            worst = self._worst_price(side)
            if worst is None:
                await asyncio.sleep(0.5)  # no book (resyncing): wait, this costs no attempt
                continue
            orders_sent += 1
            log.warning(
                "flatten: %s %s on %s (net %s), order %s",
                side.value,
                qty,
                self.hedge.name,
                net,
                orders_sent,
            )
            filled = await self._send(side, qty, worst)
            if filled is not None:
                expected = (net + side.sign * filled, time.monotonic() + VIEW_CATCH_UP_S)
        log.error("flatten: legs still unbalanced after %s order(s)", orders_sent)

    def _worst_price(self, side: Side) -> Decimal | None:
        top = self.hedge.top()
        if top is None:
            return None
        slippage_bps = self.max_slippage_bps * FLATTEN_SLIPPAGE_FACTOR
        return worst_price(side, top, slippage_bps, self.market.tick_size)

    async def _send(self, side: Side, qty: Decimal, worst: Decimal) -> Decimal | None:
        """One IOC, journaled before it is sent; the quantity it filled (None on failure)."""
        client_id = self.client_ids.next()
        order = Order(
            self.hedge.name, self.market.symbol, client_id, side, qty, worst, OrderKind.IOC
        )
        self.journal.register_order(order, purpose="flatten")
        try:
            placed = await self.hedge.place_hedge(side, qty, worst, client_id)
        except VenueError as exc:
            log.error("flatten order failed: %s", exc)
            await asyncio.sleep(0.3)
            return None
        self.journal.update_order(
            self.hedge.name, client_id, status=placed.status, filled_qty=placed.filled_qty
        )
        return placed.filled_qty


async def cancel_ours(venue: Venue, journal: Journal) -> None:
    """Cancel every open order of ours on a venue (never someone else's)."""
    try:
        orders = await venue.open_orders()
    except VenueError as exc:
        log.error("cannot list open orders on %s: %s", venue.name, exc)
        return
    for order in orders:
        if journal.is_our_order(venue.name, order.client_id):
            try:
                await venue.cancel(order)
            except VenueError as exc:
                log.error("cancel of %s on %s failed: %s", order.client_id, venue.name, exc)

"""The end of a halted run: our maker orders cancelled, then the kill switch's last step,
the legs of both venues balanced (G3).

1. The net of both legs is traded away on the hedge venue (IOCs with four times the hedge
   slippage) while it is at least what that venue accepts on its own.
2. What the hedge venue cannot absorb (an empty or thin book, or a net below its minimum) is
   unwound on the maker venue: an IOC within the same slippage, reduce-only when it trades
   the maker position down (the uncovered maker quantity), plain when the excess is on the
   hedge venue's side (it then balances that excess).
3. The result is what the venues themselves say: balanced only when |maker + hedge| is below
   one step of the coarser market; otherwise the caller exits 4 naming what is left.

Positions are the venues' own (REST), so this works whatever the hedger believed. After each
order, positions are read again only once the venue shows that order's fill (or a few seconds
passed), so a lagging REST view never triggers a second order for the same net.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from exchanges.base import (
    InsufficientLiquidity,
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

CLOSE_ATTEMPTS = 6  # orders per venue and round
CLOSE_ROUNDS = 2  # hedge venue, maker venue, and once more each
VENUE_SECONDS = 20.0  # at most this long on one venue in one round
EMPTY_TRIES = 2  # IOCs in a row that fill nothing: the venue cannot absorb it now
FLATTEN_SLIPPAGE_FACTOR = 4  # the closeout crosses further than an ordinary hedge
VIEW_CATCH_UP_S = 3.0  # how long a venue's positions may lag our own order's fill
NO_BOOK_S = 3.0  # a venue without a book this long cannot take the net now

Positions = Callable[[], Awaitable[tuple[Decimal, Decimal]]]


@runtime_checkable
class IocCapable(Protocol):
    """A maker venue that can also take: an IOC, reduce-only when asked (Backpack, paper)."""

    async def place_ioc(
        self,
        side: Side,
        qty: Decimal,
        worst_price: Decimal,
        client_id: int,
        *,
        reduce_only: bool,
    ) -> Order: ...


@dataclass(frozen=True, slots=True)
class Closed:
    """What the venues said at the end of the closeout."""

    maker: str
    hedge: str
    maker_position: Decimal
    hedge_position: Decimal
    balanced: bool
    orders: int
    readable: bool = True  # False: the venues' positions could not be read at the end

    @property
    def net(self) -> Decimal:
        return self.maker_position + self.hedge_position

    def left(self, ticker: str) -> str:
        """One line naming the venue holding the uncovered quantity, and how much."""
        if not self.readable:
            return (
                f"legs NOT confirmed balanced: the venues' positions could not be read after "
                f"{self.orders} closing order(s); check {self.maker} and {self.hedge} by hand "
                "or run `runbot.py flatten`"
            )
        net = self.net
        where = self.maker if net * self.maker_position > 0 else self.hedge
        return (
            f"legs NOT balanced: {abs(net)} {ticker} left uncovered on {where} "
            f"({self.maker} {self.maker_position}, {self.hedge} {self.hedge_position}, net "
            f"{net}) after {self.orders} closing order(s); trade it by hand or run "
            f"`runbot.py flatten`"
        )


class Closeout:
    """Balance the legs of a halted run on whichever venue can take the net (see above)."""

    def __init__(
        self,
        maker: Venue,
        hedge: Venue,
        journal: Journal,
        client_ids: ClientIds,
        *,
        max_slippage_bps: Decimal,
        positions: Positions,
        expected_net: Decimal | None = None,
    ) -> None:
        """`expected_net`: the net the caller's own fills say. The venues' views are given a
        few seconds to agree with it before anything is traded on them (a lagging view must
        not be traded as a net that no longer exists)."""
        self.maker = maker
        self.hedge = hedge
        self.journal = journal
        self.client_ids = client_ids
        self.slippage_bps = max_slippage_bps * FLATTEN_SLIPPAGE_FACTOR
        self.positions = positions  # (maker, hedge) from the venues; raises VenueError
        self.markets = {maker.name: maker.market(), hedge.name: hedge.market()}
        self.step = max(m.step_size for m in self.markets.values())
        self.orders = 0
        self._expected: tuple[Decimal, float] | None = None  # (net we expect, until when)
        if expected_net is not None:
            self._expected = (expected_net, time.monotonic() + VIEW_CATCH_UP_S)

    def balanced(self, net: Decimal) -> bool:
        """Within one step of the coarser market: nothing either venue could trade."""
        return abs(net) < self.step

    async def run(self) -> Closed:
        """What the venues say at the end; not balanced (and not `readable`) when their
        positions cannot be read at all."""
        try:
            return await self._run()
        except VenueError as exc:
            log.error("closeout: the venues' positions cannot be read: %s", exc)
            names = (self.maker.name, self.hedge.name)
            return Closed(*names, Decimal(0), Decimal(0), False, self.orders, False)

    async def _run(self) -> Closed:
        takers = [self.hedge]
        if isinstance(self.maker, IocCapable):
            takers.append(self.maker)
        for _ in range(CLOSE_ROUNDS):
            for venue in takers:
                if await self._trade_down(venue):
                    return await self._result()
        return await self._result()

    async def _trade_down(self, venue: Venue) -> bool:
        """Trade the net down on one venue until balanced (True) or this venue cannot take
        what is left: too little for it, no fill twice in a row, out of tries or time."""
        market = self.markets[venue.name]
        deadline = time.monotonic() + VENUE_SECONDS
        no_book_until = time.monotonic() + NO_BOOK_S
        sent = empty = 0
        while time.monotonic() < deadline and sent < CLOSE_ATTEMPTS and empty < EMPTY_TRIES:
            read = await self._read()
            if read is None:
                continue
            maker_position, net = read[0], read[0] + read[1]
            if self.balanced(net):
                return True
            qty, reduce_only = self._size(venue, market, net, maker_position)
            if qty < max(market.min_qty, market.step_size):
                log.warning("closeout: net %s is below what %s accepts", net, venue.name)
                return False
            side = Side.SELL if net > 0 else Side.BUY
            top = venue.top()
            if top is None:
                if time.monotonic() > no_book_until:
                    log.warning("closeout: no %s book", venue.name)
                    return False
                await asyncio.sleep(0.5)  # no book (resyncing): wait, this costs no try
                continue
            no_book_until = time.monotonic() + NO_BOOK_S
            sent += 1
            self.orders += 1
            worst = worst_price(side, top, self.slippage_bps, market.tick_size)
            log.warning(
                "closeout: %s %s on %s%s (net %s), order %s",
                side.value,
                qty,
                venue.name,
                " reduce-only" if reduce_only else "",
                net,
                self.orders,
            )
            filled = await self._send(venue, side, qty, worst, reduce_only=reduce_only)
            empty = empty + 1 if filled == 0 else 0
            if filled:
                self._expected = (net + side.sign * filled, time.monotonic() + VIEW_CATCH_UP_S)
        log.warning("closeout: %s cannot take the net now", venue.name)
        return False

    async def _read(self) -> tuple[Decimal, Decimal] | None:
        """Both positions, or None (after a pause) while they cannot be read or still lag our
        own last fill."""
        try:
            maker_position, hedge_position = await self.positions()
        except VenueError as exc:
            log.error("closeout: cannot read positions: %s", exc)
            await asyncio.sleep(0.5)
            return None
        expected = self._expected
        net = maker_position + hedge_position
        lagging = expected is not None and abs(net - expected[0]) >= self.step
        if lagging and expected is not None and time.monotonic() < expected[1]:
            await asyncio.sleep(0.2)  # the venue's view has not caught up yet
            return None
        self._expected = None
        return maker_position, hedge_position

    def _size(
        self, venue: Venue, market: Market, net: Decimal, maker_position: Decimal
    ) -> tuple[Decimal, bool]:
        """How much to trade on `venue`, and whether reduce-only: on the maker venue, a net of
        the maker position's sign is that position's uncovered part, traded down reduce-only."""
        qty = round_qty(abs(net), market.step_size)
        if venue is not self.maker or net * maker_position <= 0:
            return qty, False
        return min(qty, round_qty(abs(maker_position), market.step_size)), True

    async def _send(
        self, venue: Venue, side: Side, qty: Decimal, worst: Decimal, *, reduce_only: bool
    ) -> Decimal | None:
        """One IOC, journaled before it is sent; the quantity it filled (None on failure)."""
        client_id = self.client_ids.next()
        market = self.markets[venue.name]
        order = Order(venue.name, market.symbol, client_id, side, qty, worst, OrderKind.IOC)
        self.journal.register_order(order, purpose="flatten" if venue is self.hedge else "unwind")
        try:
            if isinstance(venue, IocCapable) and venue is self.maker:
                placed = await venue.place_ioc(side, qty, worst, client_id, reduce_only=reduce_only)
            else:
                placed = await venue.place_hedge(side, qty, worst, client_id)
        except InsufficientLiquidity as exc:
            log.warning("closeout order on %s filled nothing: %s", venue.name, exc)
            return Decimal(0)
        except VenueError as exc:
            log.error("closeout order on %s failed: %s", venue.name, exc)
            await asyncio.sleep(0.3)
            return None
        self.journal.update_order(
            venue.name, client_id, status=placed.status, filled_qty=placed.filled_qty
        )
        return placed.filled_qty

    async def _result(self) -> Closed:
        """The venues' last word, given a few seconds to catch up with our own last fill."""
        give_up = time.monotonic() + VIEW_CATCH_UP_S
        while True:
            try:
                maker_position, hedge_position = await self.positions()
            except VenueError as exc:
                log.error("closeout: cannot read positions: %s", exc)
                if time.monotonic() >= give_up:
                    raise
                await asyncio.sleep(0.5)
                continue
            balanced = self.balanced(maker_position + hedge_position)
            if balanced or time.monotonic() >= give_up:
                break
            await asyncio.sleep(0.5)
        closed = Closed(
            self.maker.name,
            self.hedge.name,
            maker_position,
            hedge_position,
            balanced,
            self.orders,
        )
        if balanced:
            log.info("closeout: legs balanced (net %s)", closed.net)
        return closed


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

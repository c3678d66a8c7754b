"""Exactly-once hedging of maker fills.

The hedger's one number is `exposure`: the signed sum of every fill of ours on both venues
(maker fills on Backpack, hedge fills on Lighter), each counted once by its trade id. What must
still be hedged is `-(exposure + in_flight)`, where `in_flight` is the signed quantity of hedge
orders sent whose outcome is not yet fully known. Because the hedge quantity is derived from
these two sums rather than from individual events, a duplicated, reordered, late (after cancel)
or partial maker fill can never be hedged twice or forgotten: each changes `exposure` once.

Hot path: a maker fill arrives synchronously from the maker venue's WebSocket reader; it is
journaled together with the hedge order it triggers (one SQLite commit), and the hedge request
is started at once as a task. Nothing polls.

Escalation: when an unhedged amount (at least the hedge venue's minimum size) has waited longer
than `hedge_timeout`, the next hedge goes out with twice the slippage, then four times; after
that the hedger asks its owner to halt.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from exchanges.base import (
    AmbiguousOrderState,
    BookTop,
    Fill,
    InsufficientLiquidity,
    Market,
    Order,
    OrderEvent,
    OrderKind,
    OrderStatus,
    Side,
    Venue,
    VenueError,
    VenueEvent,
    round_qty,
)
from exchanges.common.budget import Priority
from hedge.allocation import SEED_VENUE, Lot, LotBook
from hedge.economics import Marks
from hedge.hedge_order import AmbiguousResolver, HedgeOrder
from hedge.journal import Journal
from hedge.quoting import worst_price
from hedge.risk import tradable_minimum

__all__ = ["ClientIds", "HedgeOrder", "Hedger", "HedgerStats", "PresignCapable", "SendNowCapable"]

log = logging.getLogger(__name__)

ESCALATION_FACTORS = (Decimal(1), Decimal(2), Decimal(4))
RETRY_BACKOFF_S = 0.05
EMPTY_BACKOFF_MAX_S = 1.0  # hedges that fill nothing (an empty book) are re-sent this seldom
WATCHDOG_INTERVAL_S = 0.05
LAST_TOP_MAX_AGE_S = 10.0  # hedge on a top this recent while the book resyncs
# The venue holding our hedges (a 429's pause, a full request minute) does not escalate a stall
# for up to this long: the venue said wait, and a wider price would not send them sooner.
VENUE_HOLD_MAX_S = 120.0


@dataclass
class StallClock:
    """How long a tradable exposure has gone without hedge progress (`age`: what the report
    shows as unhedged) and how much of it escalates (`counted`): all of it but the time the
    hedge venue's request budget held our hedges, up to VENUE_HOLD_MAX_S a stall."""

    since: float | None = None
    counted_since: float = 0.0
    held_s: float = 0.0
    last: float = 0.0

    def progress(self, now: float) -> None:
        if self.since is not None:
            self.since = self.counted_since = now
            self.held_s = 0.0

    def tick(self, now: float, held: bool) -> tuple[float, float]:
        """(age, counted) after one watchdog tick; `held`: the venue holds our hedges now."""
        if self.since is None:
            self.since = self.counted_since = now
            self.held_s = 0.0
        elif held and self.held_s < VENUE_HOLD_MAX_S:
            step = now - self.last
            self.held_s += step
            self.counted_since += step
        self.last = now
        return now - self.since, now - self.counted_since


@runtime_checkable
class PresignCapable(Protocol):
    """A hedge venue that can sign a hedge ahead of the fill (Lighter)."""

    def presign_hedge(
        self, side: Side, qty: Decimal, slippage_bps: Decimal, client_id: int
    ) -> None: ...

    def cancel_presigned(self) -> None: ...


@runtime_checkable
class SendNowCapable(Protocol):
    """A hedge venue that can put a pre-signed hedge on the wire synchronously (Lighter)."""

    def try_send_now(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> asyncio.Task[Order] | None: ...


class IdSource:
    """Where client ids come from: one per venue account, shared by every pair trading on it
    (Lighter refuses a client_order_index the account has used; Backpack's clientId is the
    account's too), so two pairs never draw the same id. Blocks only move forward, above
    each pair's `floor` (anything its journal holds, and the clock)."""

    def __init__(self) -> None:
        self._end = 0

    def block(self, floor: int, size: int) -> tuple[int, int]:
        start = max(self._end, floor)
        if start + size >= 2**32:
            start = 1
        self._end = start + size
        return start, start + size


class ClientIds:
    """Unique client ids for both venues, drawn from blocks the journal reserved durably before
    use: after a crash, any order carrying one of them is known to be ours even if its own
    journal row was lost. Above anything journaled and above the clock, so ids stay unique
    across restarts; from the account's `IdSource`, so they are unique across pairs. Backpack
    needs uint32, Lighter 48 bits: uint32 serves both."""

    BLOCK = 1000

    def __init__(self, journal: Journal, source: IdSource | None = None) -> None:
        self._journal = journal
        self._source = source or IdSource()
        self._floor = max(journal.max_client_id() + 1, int(time.time()) % 4_000_000_000)
        self._next = self._end = 0
        self._ahead: deque[tuple[int, int]] = deque()  # blocks reserved, not yet drawn from
        # (start, end) of every block this journal reserved: the ids that are ours.
        self._blocks = sorted(
            (int(a), int(b)) for a, b in journal.query("SELECT start, end FROM id_blocks")
        )
        self.top_up()

    def owns(self, client_id: int | None) -> bool:
        """Drawn from a block this journal reserved: an order of ours (G9)."""
        if client_id is None:
            return False
        at = bisect.bisect_right(self._blocks, (client_id, 2**63)) - 1
        return at >= 0 and client_id < self._blocks[at][1]

    def top_up(self) -> None:
        """Reserve the next block while at least half of this one is left (off the hot path)."""
        left = self._end - self._next + sum(end - start for start, end in self._ahead)
        if left < self.BLOCK // 2:
            start, end = self._source.block(max(self._floor, self._end), self.BLOCK)
            self._journal.reserve_ids(start, end)
            bisect.insort(self._blocks, (start, end))
            self._ahead.append((start, end))

    def next(self) -> int:
        if self._next >= self._end:
            if not self._ahead:
                self.top_up()  # only when top_up() was not called in time
            self._next, self._end = self._ahead.popleft()
        value = self._next
        self._next += 1
        return value


@dataclass(slots=True)
class HedgerStats:
    maker_fills: int = 0
    hedge_fills: int = 0
    duplicates_ignored: int = 0
    hedges_sent: int = 0
    first_sends: int = 0  # hedges sent as the first for a maker fill (the rest are re-sends)
    hedge_failures: int = 0
    over_hedges: int = 0
    escalations: int = 0
    latencies_ns: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))
    # (maker fill frame read ns, client id of the hedge it triggered): lets a benchmark pair a
    # fill with the moment its hedge was written to the wire (LighterVenue.write_ns_by_client).
    triggers: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=100_000))
    max_unhedged_s: float = 0.0
    maker_volume: Decimal = Decimal(0)  # quote notional of maker fills
    hedge_volume: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    fees_maker: Decimal = Decimal(0)
    cash: Decimal = Decimal(0)  # quote received minus paid, before fees

    def count_fill(self, fill: Fill, *, maker: bool) -> None:
        notional = fill.qty * fill.price
        if maker:
            self.maker_volume += notional
            self.fees_maker += fill.fee
        else:
            self.hedge_volume += notional
        self.fees += fill.fee
        self.cash -= notional * fill.side.sign


def fill_words(fill: Fill) -> str:
    """One fill for the log: venue, side, size, price and its ids."""
    return (
        f"{fill.venue} {fill.side.value} {fill.qty} @ {fill.price} fee={fill.fee} "
        f"trade={fill.trade_id} order={fill.order_id} client={fill.client_id}"
    )


class Hedger:
    def __init__(
        self,
        venue: Venue,
        journal: Journal,
        *,
        market: Market,
        maker_venue_name: str,
        max_slippage_bps: Decimal,
        hedge_timeout: float,
        client_ids: ClientIds,
        on_halt: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.venue = venue
        self.journal = journal
        self.market = market
        self.maker_venue_name = maker_venue_name
        self.max_slippage_bps = max_slippage_bps
        self.hedge_timeout = hedge_timeout
        self.client_ids = client_ids
        self.on_halt = on_halt
        self.clock = clock
        self.exposure = Decimal(0)
        self.maker_net = Decimal(0)  # signed maker fills counted by this hedger
        self.hedge_net = Decimal(0)
        self.stats = HedgerStats()
        self.marks = Marks(journal, venue)
        self.halted = False
        self.paused = False  # recovery: count fills, send nothing yet
        self.closing = False
        self._stall = StallClock()
        self._last_top: tuple[BookTop, float] | None = None  # (top, clock()) last seen
        self.presign_enabled = True
        self._orders: dict[int, HedgeOrder] = {}
        self._lots = LotBook(journal)
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._level = 0
        self._retry_after = 0.0
        self._empty_in_a_row = 0  # hedges in a row that filled nothing (the book is empty)
        self._presigned: tuple[Side, Decimal, int] | None = None
        self._latency_from_ns = 0
        self._seen: set[tuple[str, str]] = journal.trade_keys()  # fills already counted
        # Resolved once: a runtime Protocol check costs ~20 us, too much for every hedge.
        self._send_now = venue.try_send_now if isinstance(venue, SendNowCapable) else None
        self._settled = asyncio.Event()
        self._settled.set()
        self._ambiguous = AmbiguousResolver(
            venue, spawn=self._spawn, on_resolved=self._after_change, resend=self._resend
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="hedger-watchdog")

    async def close(self) -> None:
        """Stop the watchdog and sending; hedges in flight are awaited, never cancelled
        mid-request (one may start another as it completes: wait until none is left)."""
        self.closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- state -------------------------------------------------------------------------------
    @property
    def in_flight(self) -> Decimal:
        return sum(
            (o.outstanding * o.side.sign for o in self._orders.values() if not o.done),
            Decimal(0),
        )

    @property
    def unhedged(self) -> Decimal:
        """Signed base quantity not covered by hedge fills nor by hedges in flight."""
        return self.exposure + self.in_flight

    def hedgeable(self, qty: Decimal) -> bool:
        """At least the hedge venue's minimum size and minimum notional (at the last top)."""
        size = round_qty(abs(qty), self.market.step_size)
        if size < max(self.market.min_qty, self.market.step_size):
            return False
        if self.market.min_notional > 0:
            top = self.venue.top()
            if top is not None and size * top.mid < self.market.min_notional:
                return False
        return True

    @property
    def settled(self) -> bool:
        """No hedge in flight and the exposure below what the hedge venue can trade."""
        return not any(not o.done for o in self._orders.values()) and not self.hedgeable(
            self.exposure
        )

    async def wait_in_flight(self, timeout: float) -> bool:
        """Wait until every hedge sent has a known outcome (halted or not); False on timeout."""
        deadline = self.clock() + timeout
        while any(not o.done for o in self._orders.values()):
            if self.clock() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def oldest_unhedged_age(self) -> float:
        """Seconds since the oldest maker fill not yet covered by hedge fills was read."""
        since = self._lots.oldest_maker_ns()
        return (time.perf_counter_ns() - since) / 1e9 if since else 0.0

    def unhedged_age(self) -> float:
        """Seconds a tradable exposure has waited without hedge progress (0 when none)."""
        since = self._stall.since
        return 0.0 if since is None else self.clock() - since

    async def wait_settled(self, timeout: float) -> bool:
        deadline = self.clock() + timeout
        while not self.settled:
            remaining = deadline - self.clock()
            if remaining <= 0 or self.halted:
                return self.settled
            self._settled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), min(remaining, 0.1))
        return True

    def load_uncovered(self) -> Decimal:
        """Restart: maker fills journaled earlier but not (fully) hedged become open lots again,
        so the hedges sent for them are allocated to them. Returns their signed sum."""
        total = Decimal(0)
        for trade_id, qty in self.journal.uncovered_maker_fills(self.maker_venue_name):
            self._add_lot(Lot(self.maker_venue_name, trade_id, qty, 0, True))
            total += qty
        self.exposure += total
        return total

    def seed_exposure(self, exposure: Decimal, *, reason: str) -> None:
        """Start from a known net (restart recovery); the hedger then trades it flat."""
        if exposure:
            log.info("hedger starts with exposure %s (%s)", exposure, reason)
            self._add_lot(Lot(SEED_VENUE, reason, exposure, 0, True))
        self.exposure += exposure
        self._kick()

    # -- the pre-signed hedge ----------------------------------------------------------------
    def prepare(self, maker_side: Side, qty: Decimal) -> None:
        """A maker order of `qty` now rests: have its full hedge signed ahead if possible."""
        if not self.presign_enabled or not isinstance(self.venue, PresignCapable):
            return
        hedge_qty = round_qty(qty, self.market.step_size)
        if hedge_qty < self.market.min_qty:
            return
        client_id = self.client_ids.next()
        self._presigned = (maker_side.opposite, hedge_qty, client_id)
        self.venue.presign_hedge(maker_side.opposite, hedge_qty, self.max_slippage_bps, client_id)

    def unprepare(self) -> None:
        if self._presigned is not None and isinstance(self.venue, PresignCapable):
            self.venue.cancel_presigned()
        self._presigned = None

    # -- events (synchronous, from the venues' readers) ----------------------------------------
    def _count(self, fill: Fill) -> Decimal | None:
        """Count a fill into the exposure once per (venue, trade id); None for a repeat."""
        key = (fill.venue, fill.trade_id)
        if key in self._seen:
            self.stats.duplicates_ignored += 1
            return None
        self._seen.add(key)
        signed = fill.qty * fill.side.sign
        self.exposure += signed
        return signed

    def on_maker_event(self, event: VenueEvent) -> None:
        if isinstance(event, Fill):
            self.on_maker_fill(event)

    def on_maker_fill(self, fill: Fill) -> None:
        """The hot path: count the fill once, hedge what is uncovered at once, then record."""
        if (fill.venue, fill.trade_id) in self._seen:
            self.stats.duplicates_ignored += 1
            return
        # One group for the fill, its allocations and the hedge it starts: the writer thread is
        # woken only when the group closes, after the hedge is on the wire, so it cannot take
        # the GIL from the send. The fill is in the group before it counts.
        with self.journal.group():
            self.journal.defer("record_fill", fill)
            signed = self._count(fill)
            assert signed is not None
            self.maker_net += signed
            self.stats.maker_fills += 1
            self._latency_from_ns = fill.recv_ns
            self._add_lot(Lot(fill.venue, fill.trade_id, signed, fill.recv_ns, True))
            self._kick()
            self.marks.maker_fill(fill)  # after the hedge is on its way
        self.stats.count_fill(fill, maker=True)
        log.info("maker fill %s", fill_words(fill))

    def on_hedge_event(self, event: VenueEvent) -> None:
        if isinstance(event, Fill):
            self._on_hedge_fill(event)
        elif isinstance(event, OrderEvent):
            self._on_hedge_order_event(event)

    def _on_hedge_fill(self, fill: Fill) -> None:
        if (fill.venue, fill.trade_id) in self._seen:
            self.stats.duplicates_ignored += 1
            return
        with self.journal.group():  # the fill, journaled before it counts, and its allocations
            order = self._orders.get(fill.client_id) if fill.client_id is not None else None
            self.journal.defer("record_fill", fill, order.covers if order is not None else "")
            before = self.exposure
            signed = self._count(fill)
            assert signed is not None
            if abs(self.exposure) < abs(before):
                self._stall.progress(self.clock())  # progress: the watchdog's clock restarts
            self._empty_in_a_row = 0
            self.hedge_net += signed
            self.stats.hedge_fills += 1
            order = self._orders.get(fill.client_id) if fill.client_id is not None else None
            if order is not None:
                if not order.filled:
                    self.marks.hedge_fill(fill)  # the touch the hedge met
                order.filled += fill.qty
            sent_ns = order.sent_ns if order is not None else 0
            self._add_lot(
                Lot(fill.venue, fill.trade_id, signed, 0, False, fill.client_id or 0, sent_ns),
                over_hedge_counts=order is None or not order.sweep,
            )
        self.stats.count_fill(fill, maker=False)
        log.info("hedge fill %s exposure=%s", fill_words(fill), self.exposure)
        self._after_change()

    def _on_hedge_order_event(self, event: OrderEvent) -> None:
        order = self._orders.get(event.client_id) if event.client_id is not None else None
        if order is None or not event.status.is_terminal:
            return
        self._final(order, event.status, event.filled_qty)
        self._after_change()

    # -- matching fills to lots (allocations) ------------------------------------------------
    def _add_lot(self, lot: Lot, *, over_hedge_counts: bool = True) -> None:
        """Allocate a fill against the open lots (hedge/allocation.py). A hedge lot left open
        went beyond every maker fill: an over-hedge, counted unless it was a sweep."""
        left = self._lots.add(lot)
        if left and not lot.is_maker and over_hedge_counts:
            self.stats.over_hedges += 1
            log.warning("hedge fill %s exceeds uncovered maker fills by %s", lot.trade_id, left)

    # -- sending -------------------------------------------------------------------------------
    def _after_change(self) -> None:
        for client_id in [c for c, o in self._orders.items() if o.done]:
            del self._orders[client_id]
        self._kick()
        if self.settled:
            self._settled.set()

    def _kick(self) -> None:
        """Send one hedge for whatever is uncovered, if it is tradable and nothing blocks it."""
        if self.halted or self.paused or self.closing:
            return
        need = -self.unhedged
        qty = round_qty(abs(need), self.market.step_size)
        if not self.hedgeable(qty):
            if need:
                log.debug("carrying %s: below the hedge venue's minimum", need)
            return
        if self.clock() < self._retry_after:
            return  # the watchdog retries after the backoff
        self._start_hedge(Side.BUY if need > 0 else Side.SELL, qty)

    def has_dust(self) -> bool:
        """An exposure the hedge venue would not take on its own (below its minimum)."""
        dust = round_qty(abs(self.exposure), self.market.step_size)
        return dust != 0 and not self.hedgeable(dust)

    def sweep_dust(self) -> bool:
        """End of a run: a net below the hedge venue's minimum cannot be traded on its own, so
        trade minimum + remainder now; the hedger then trades the minimum back as an ordinary
        hedge, and the legs end exactly balanced. True when a sweep order was started."""
        in_flight = any(not o.done for o in self._orders.values())
        if self.halted or self.paused or in_flight or not self.has_dust():
            return False
        need = -self.exposure
        dust = round_qty(abs(need), self.market.step_size)
        minimum = tradable_minimum(self.market, self.venue.top())
        side = Side.BUY if need > 0 else Side.SELL
        log.info(
            "sweeping %s below the hedge minimum: %s %s, then %s back",
            need,
            side.value,
            dust + minimum,
            minimum,
        )
        return self._start_hedge(side, dust + minimum, sweep=True)

    def _start_hedge(self, side: Side, qty: Decimal, *, sweep: bool = False) -> bool:
        factor = ESCALATION_FACTORS[self._level]
        top = self.venue.top()
        if top is not None:
            self._last_top = (top, self.clock())
        elif self._last_top is not None and self.clock() - self._last_top[1] <= LAST_TOP_MAX_AGE_S:
            # The book is resyncing (a reconnect is routine): hedge on the last top seen a
            # moment ago, with twice the slippage for what may have moved since.
            top, factor = self._last_top[0], factor * 2
        else:
            log.warning("no %s book: hedge of %s %s waits", self.venue.name, side.value, qty)
            return False
        worst = worst_price(side, top, self.max_slippage_bps * factor, self.market.tick_size)
        client_id = self._take_client_id(side, qty)
        sent_ns = time.perf_counter_ns()
        hedge = HedgeOrder(client_id, side, qty, worst, sent_ns, sweep=sweep)
        self._orders[client_id] = hedge
        self._settled.clear()
        # The fast path: a pre-signed hedge is written to the socket right here, inside the
        # fill callback, instead of after every other ready callback of the event loop.
        written = self._send_now(side, qty, worst, client_id) if self._send_now else None
        self._spawn(self._send(hedge, written), name=f"hedge-{client_id}")
        hedge.covers = self._lots.open_maker_trades()  # after the write: off the hot path
        # Recorded after the send is under way: its client id comes from a reserved block, so
        # a restart recognizes the hedge even if this row never reaches the disk.
        self.journal.defer(
            "register_order",
            Order(self.venue.name, self.market.symbol, client_id, side, qty, worst, OrderKind.IOC),
            purpose="sweep" if sweep else "hedge",
            sent_ns=sent_ns,
        )
        self.stats.hedges_sent += 1
        self._record_latency(sent_ns, client_id)
        self._lots.hedge_started(sent_ns)
        if written is not None:
            log.info(
                "hedge sent %s %s worst=%s client=%s (pre-signed)",
                side.value,
                qty,
                worst,
                client_id,
            )
        return True

    def _spawn(self, work: Coroutine[Any, Any, None], *, name: str | None = None) -> None:
        """A task of this hedger: kept until done, awaited (never cancelled) by close()."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take_client_id(self, side: Side, qty: Decimal) -> int:
        presigned = self._presigned
        if presigned is not None and presigned[0] is side and presigned[1] == qty:
            self._presigned = None
            return presigned[2]
        return self.client_ids.next()

    def _record_latency(self, sent_ns: int, client_id: int) -> None:
        """Fill frame read -> hedge started, for the first hedge after a new maker fill only
        (a re-send after a partial IOC or a retry is not the fill's latency)."""
        start = self._latency_from_ns
        self._latency_from_ns = 0
        if start and sent_ns >= start:
            self.stats.first_sends += 1
            self.stats.latencies_ns.append(sent_ns - start)
            self.stats.triggers.append((start, client_id))

    async def _send(self, hedge: HedgeOrder, written: asyncio.Task[Order] | None) -> None:
        """Await the hedge's outcome: `written` is a request the venue already put on the wire
        from the fill callback (never cancelled: it holds the venue's nonce and connection
        until the reply is read); otherwise the request is sent now."""
        try:
            if written is not None:
                order = await written
            else:
                log.info(
                    "hedge sending %s %s worst=%s client=%s",
                    hedge.side.value,
                    hedge.qty,
                    hedge.worst_price,
                    hedge.client_id,
                )
                order = await self.venue.place_hedge(
                    hedge.side, hedge.qty, hedge.worst_price, hedge.client_id
                )
        except AmbiguousOrderState as exc:
            self._mark_ambiguous(hedge, exc)
            return
        except VenueError as exc:
            empty = isinstance(exc, InsufficientLiquidity)  # placed, nothing within the price
            if hedge.resent and not empty:
                # A copy of a hedge whose outcome is unknown, not shown placed: the first may
                # have executed, so still unknown, never "not executed" (no new client id).
                self._mark_ambiguous(hedge, exc)
                return
            self.stats.hedge_failures += 1
            # An empty book refills in its own time, and every re-send spends the account's
            # budget (60 a minute on Standard): back off.
            self._empty_in_a_row = self._empty_in_a_row + 1 if empty else 0
            backoff = RETRY_BACKOFF_S * 2 ** max(self._empty_in_a_row - 2, 0)
            self._retry_after = self.clock() + min(backoff, EMPTY_BACKOFF_MAX_S)
            log.warning("hedge %s failed (%s): will retry", hedge.client_id, exc)
            hedge.final_filled = hedge.filled
            self._final(hedge, OrderStatus.REJECTED, hedge.filled)
            self._after_change()
            return
        except Exception as exc:  # a bug below us: the request may have left, so unknown
            log.exception("hedge %s: unexpected error", hedge.client_id)
            self._mark_ambiguous(hedge, exc)
            return
        if order.status.is_terminal:
            self._final(hedge, order.status, order.filled_qty, order.order_id)
            if order.filled_qty < hedge.qty:
                log.warning(
                    "hedge %s filled %s of %s: remainder re-sent",
                    hedge.client_id,
                    order.filled_qty,
                    hedge.qty,
                )
        self._after_change()

    def _resend(self, hedge: HedgeOrder) -> None:
        """An ambiguous hedge not found: the same order again, same client id (the venue
        places a client order index once, so this cannot hedge twice)."""
        hedge.resent = True
        self._spawn(self._send(hedge, None), name=f"hedge-{hedge.client_id}-again")

    def _final(
        self, hedge: HedgeOrder, status: OrderStatus, filled: Decimal, order_id: str | None = None
    ) -> None:
        """A terminal report (reply or stream, whichever comes first): the most filled wins."""
        if hedge.final_filled is None or filled > hedge.final_filled:
            hedge.final_filled = filled
        self.journal.defer(
            "update_order",
            self.venue.name,
            hedge.client_id,
            status=status,
            order_id=order_id,
            filled_qty=filled,
        )

    def _mark_ambiguous(self, hedge: HedgeOrder, exc: BaseException) -> None:
        """Unknown is not failed: the hedge stays in flight; the venue's stream or REST
        reconciliation reports its fills, and the watchdog looks it up (_resolve_ambiguous)."""
        hedge.ambiguous = True
        hedge.ambiguous_since = self.clock()
        self.stats.hedge_failures += 1
        log.error("hedge %s outcome unknown: %s", hedge.client_id, exc)

    # -- the watchdog: retries, escalation, halt ------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            self.tick()

    def tick(self) -> None:
        now = self.clock()
        top = self.venue.top()
        if top is not None:
            self._last_top = (top, now)
        self._ambiguous.resolve(self._orders.values(), now)
        if self.paused or not self.hedgeable(self.exposure):
            self._stall.since = None
            self._level = 0
            return
        # Time without hedge progress while something tradable is open: steady partial fills
        # that are each hedged at once keep resetting it; a hedge that is stuck does not.
        budget = getattr(self.venue, "budget", None)
        # Held: a hedge of ours is out (or queued) while the budget holds hedges back; once
        # ours came back with nothing within its price, the wait is ours again.
        ours_out = any(not o.done for o in self._orders.values())
        held = ours_out and budget is not None and budget.holds(Priority.HEDGE)
        age, counted = self._stall.tick(now, held)
        self.stats.max_unhedged_s = max(self.stats.max_unhedged_s, age)
        level = int(counted // self.hedge_timeout)
        if level >= len(ESCALATION_FACTORS):
            if not self.halted:
                self.halted = True
                reason = (
                    f"exposure {self.exposure} {self.market.ticker} unhedged for {age:.1f} s "
                    f"(hedge timeout {self.hedge_timeout:g} s, slippage widened to "
                    f"{self.max_slippage_bps * ESCALATION_FACTORS[-1]} bps)"
                )
                log.error("halt: %s", reason)
                self.on_halt(reason)
            return
        if level > self._level:
            self._level = level
            self.stats.escalations += 1
            log.warning(
                "unhedged %s for %.1f s: slippage widened to %s bps",
                self.exposure,
                age,
                self.max_slippage_bps * ESCALATION_FACTORS[level],
            )
        self._kick()

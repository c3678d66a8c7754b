"""HedgeEngine: the cycle loop (quote -> fill/timeout -> re-quote) over iterations.

An iteration opens a position of `max_position` on the maker venue in the chosen direction, one
post-only order of `size` at a time, then closes it back to the run's baseline the same way.
Every maker fill goes straight to the hedger from the maker venue's event callback; the engine
only decides what to quote and when to stop.

Stops:
- clean stop (SIGINT/SIGTERM): stop quoting, cancel maker orders, let in-flight hedges finish,
  check the legs are balanced, exit 130;
- halt (a risk guard or the hedger's escalation): stop quoting, cancel maker orders, flatten the
  net on the hedge venue, exit 3 with the reason.

Restart safety: on start, stray orders of ours are cancelled, fills missed while the bot was
down are recovered over REST and hedged, and an imbalance the journal cannot explain stops the
run before any quote unless `--rebalance` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal

from exchanges.base import (
    AmbiguousOrderState,
    BookTop,
    Fill,
    IllegalTransition,
    Market,
    Order,
    OrderEvent,
    OrderKind,
    OrderStatus,
    PostOnlyRejected,
    Side,
    Venue,
    VenueError,
    VenueEvent,
    round_qty,
    round_worst_price,
    transition,
)
from hedge.config import Direction, Settings
from hedge.hedger import ClientIds, Hedger
from hedge.journal import Journal
from hedge.quoting import RateLimiter, maker_price, should_requote
from hedge.risk import Halt, book_age, check_balance

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_HALTED, EXIT_INTERRUPTED = 0, 1, 3, 130
STALE_BOOK_S = 30.0
BOOK_WAIT_S = 20.0
CANCEL_CONFIRM_S = 5.0
BALANCE_RETRIES = 4
FLATTEN_ATTEMPTS = 8
FLATTEN_SECONDS = 60.0
FLATTEN_SLIPPAGE_FACTOR = 4


@dataclass
class EngineStatus:
    """What the dashboard shows; written by the engine, read a few times a second."""

    state: str = "starting"
    iteration: int = 0
    iterations: int = 0
    phase: str = ""
    maker_order: Order | None = None
    maker_order_since: float = 0.0
    requotes: int = 0
    post_only_rejects: int = 0
    warnings: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    halt_reason: str = ""

    def warn(self, text: str) -> None:
        self.warnings.append(f"{time.strftime('%H:%M:%S')} {text}")


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    reason: str
    maker_position: Decimal
    hedge_position: Decimal

    @property
    def net(self) -> Decimal:
        return self.maker_position + self.hedge_position


class StopRequested(Exception):
    pass


class HedgeEngine:
    def __init__(
        self,
        settings: Settings,
        maker: Venue,
        hedge: Venue,
        journal: Journal,
        *,
        status: EngineStatus | None = None,
        presign: bool = True,
    ) -> None:
        self.settings = settings
        self.presign = presign  # False: hedges are signed when the fill arrives (benchmarks)
        self.maker = maker
        self.hedge = hedge
        self.journal = journal
        self.status = status or EngineStatus(iterations=settings.iterations)
        self.status.iterations = settings.iterations
        self.hedger: Hedger | None = None
        self.maker_market: Market | None = None
        self.hedge_market: Market | None = None
        self.maker_baseline = Decimal(0)
        self.maker_start = Decimal(0)
        self.hedge_start = Decimal(0)
        self._active: Order | None = None
        self._wake = asyncio.Event()
        self._stop_requested = False
        self._halt_reason: str | None = None
        self._requote_limit = RateLimiter(limit=10, window=1.0)
        self._guard_task: asyncio.Task[None] | None = None
        self._client_ids: ClientIds | None = None
        # False until restart recovery has reconciled the venues with the journal: before that
        # a halt must not trade (a refused start leaves the account exactly as it found it).
        self._reconciled = False
        self._active_trades: set[str] = set()
        self._active_since_ms = 0

    # -- control from outside ----------------------------------------------------------------
    def request_stop(self) -> None:
        if not self._stop_requested:
            log.warning("stop requested: finishing cleanly")
            self.status.warn("stop requested")
        self._stop_requested = True
        self._wake.set()

    def request_halt(self, reason: str) -> None:
        if self._halt_reason is None:
            self._halt_reason = reason
        self._wake.set()

    # -- the run -------------------------------------------------------------------------------
    async def run(self) -> RunResult:
        reason = "done"
        code = EXIT_OK
        try:
            await self._start()
            await self._cycles()
            await self._settle_and_check()
            await self._cancel_ours(self.maker)  # normally none: never leave one resting
        except Halt as halt:
            code, reason = EXIT_HALTED, str(halt)
            await self._kill_switch(reason)
        except StopRequested:
            code, reason = EXIT_INTERRUPTED, "interrupted"
            try:
                await self._clean_stop()
            except (Halt, VenueError) as exc:
                code, reason = EXIT_HALTED, str(exc)
                await self._kill_switch(reason)
        except VenueError as exc:
            # A venue kept failing where the engine could not simply wait (retries exhausted):
            # stop the same way a risk guard does, legs balanced, never a crash.
            code, reason = EXIT_HALTED, f"venue error: {exc}"
            await self._kill_switch(reason)
        except Exception as exc:  # a bug or a broken disk: still leave nothing behind
            log.exception("unexpected error: stopping with the kill switch")
            code, reason = EXIT_ERROR, f"unexpected error: {type(exc).__name__}: {exc}"
            try:
                await self._kill_switch(reason)
            except Exception:
                log.exception("kill switch failed after an unexpected error")
        finally:
            if self._guard_task is not None:
                self._guard_task.cancel()
                await asyncio.gather(self._guard_task, return_exceptions=True)
            if self.hedger is not None:
                await self.hedger.close()
        maker_position, hedge_position = await self._positions()
        self.journal.end_run(code, reason)
        self.status.state = {EXIT_OK: "done", EXIT_HALTED: "halted"}.get(code, "stopped")
        log.info(
            "run ended (exit %s): %s; %s %s, %s %s",
            code,
            reason,
            self.maker.name,
            maker_position,
            self.hedge.name,
            hedge_position,
        )
        return RunResult(code, reason, maker_position, hedge_position)

    async def _start(self) -> None:
        self.status.state = "connecting"
        # Event callbacks are set once the hedger exists: until then the venues keep events.
        await asyncio.gather(self.maker.connect(), self.hedge.connect())
        self.maker_market = self.maker.market()
        self.hedge_market = self.hedge.market()
        previous = self.journal.unfinished_run()
        self.journal.start_run(
            mode=self.settings.mode.value,
            ticker=self.settings.ticker,
            settings={
                **_public_settings(self.settings),
                "hedge_min_qty": str(max(self.hedge_market.step_size, self.hedge_market.min_qty)),
                "hedge_min_notional": str(self.hedge_market.min_notional),
            },
        )
        self._client_ids = ClientIds(self.journal)
        self.journal.start_writer()
        self.hedger = Hedger(
            self.hedge,
            self.journal,
            market=self.hedge_market,
            maker_venue_name=self.maker.name,
            max_slippage_bps=self.settings.max_slippage_bps,
            hedge_timeout=self.settings.hedge_timeout,
            client_ids=self._client_ids,
            on_halt=self.request_halt,
        )
        self.hedger.presign_enabled = self.presign
        self.hedger.paused = True
        self.hedger.start()
        self.maker.set_event_callback(self._on_maker_event)
        self.hedge.set_event_callback(self._on_hedge_event)
        await self._wait_books()
        self.status.state = "reconciling"
        await self._recover(previous)
        self.hedger.paused = False
        self.hedger.tick()
        self._reconciled = True  # from here on the kill switch may trade the net flat
        if not await self.hedger.wait_settled(self.settings.hedge_timeout * 4):
            raise Halt(f"could not hedge the recovered exposure {self.hedger.exposure}")
        self._check_signals()
        self._guard_task = asyncio.create_task(self._guard(), name="balance-guard")

    async def _cycles(self) -> None:
        assert self.maker_market is not None
        for iteration in range(1, self.settings.iterations + 1):
            self.status.iteration = iteration
            side = self._opening_side(iteration)
            target = self.maker_baseline + side.sign * self.settings.max_position
            await self._leg(iteration, "open", side, target)
            await self._leg(iteration, "close", side.opposite, self.maker_baseline)
            if iteration < self.settings.iterations and self.settings.sleep > 0:
                self.status.state = "sleeping"
                await self._pause(self.settings.sleep)

    def _opening_side(self, iteration: int) -> Side:
        direction = self.settings.direction
        if direction is Direction.BUY:
            return Side.BUY
        if direction is Direction.SELL:
            return Side.SELL
        return Side.BUY if iteration % 2 == 1 else Side.SELL

    async def _leg(self, iteration: int, phase: str, side: Side, target: Decimal) -> None:
        assert self.maker_market is not None
        self.status.phase = f"{phase} ({side.value})"
        cycle = self.journal.start_cycle(iteration, phase, side, target)
        market = self.maker_market
        while True:
            self._check_signals()
            remaining = (target - self.maker_position) * side.sign
            qty = round_qty(min(self.settings.size, remaining), market.step_size)
            if qty < market.min_qty or qty <= 0:
                break
            await self._quote_once(side, qty)
            await self._after_step()
        self.journal.end_cycle(cycle, "done")

    def _tolerance(self) -> Decimal:
        """The smallest net the hedge venue can trade away: below it the legs are balanced."""
        market = self.hedge_market
        assert market is not None
        tolerance = max(market.step_size, market.min_qty)
        top = self.hedge.top()
        if market.min_notional > 0 and top is not None and top.mid > 0:
            # Rounded up to the step, as the hedger rounds what it carries.
            steps = (market.min_notional / top.mid / market.step_size).to_integral_value(
                ROUND_CEILING
            )
            tolerance = max(tolerance, steps * market.step_size)
        return tolerance

    @property
    def maker_position(self) -> Decimal:
        assert self.hedger is not None
        return self.maker_start + self.hedger.maker_net

    @property
    def hedge_position(self) -> Decimal:
        assert self.hedger is not None
        return self.hedge_start + self.hedger.hedge_net

    # -- one quote -----------------------------------------------------------------------------
    async def _quote_once(self, side: Side, qty: Decimal) -> None:
        assert self.maker_market is not None and self.hedger is not None
        assert self._client_ids is not None
        market = self.maker_market
        top = await self._fresh_top()
        price = maker_price(side, top, market.tick_size, self.settings.maker_ticks)
        client_id = self._client_ids.next()
        order = Order(
            self.maker.name, market.symbol, client_id, side, qty, price, OrderKind.POST_ONLY
        )
        self.journal.register_order(order, purpose="maker")
        self._active = order
        self._active_trades = set()
        self._active_since_ms = int(time.time() * 1000)
        self.status.state = "quoting"
        self.status.maker_order = order
        self.status.maker_order_since = time.monotonic()
        self.hedger.prepare(side, qty)
        try:
            placed = await self.maker.place_post_only(side, qty, price, client_id)
        except PostOnlyRejected:
            self.status.post_only_rejects += 1
            log.info("post-only %s %s @ %s rejected: re-quoting", side.value, qty, price)
            self._finish_active(OrderStatus.REJECTED)
            await self._pause(self._requote_limit.delay())
            return
        except AmbiguousOrderState as exc:
            log.error("maker order %s state unknown (%s): cancelling by client id", client_id, exc)
            self.status.warn(f"maker order {client_id} state unknown")
            await self._cancel_active()
            return
        except VenueError as exc:
            log.warning("maker order %s failed: %s", client_id, exc)
            self.status.warn(f"maker order failed: {exc}")
            self._finish_active(OrderStatus.REJECTED)
            await self._pause(max(self._requote_limit.delay(), 0.5))
            return
        self._merge_reply(placed)
        log.info(
            "maker order %s %s %s @ %s client=%s order=%s",
            self.maker.name,
            side.value,
            qty,
            price,
            client_id,
            placed.order_id,
        )
        deadline = time.monotonic() + self.settings.fill_timeout
        why = ""
        while True:
            active = self._active
            if active is None or active.status.is_terminal or active.filled_qty >= active.qty:
                break
            if self._stop_requested or self._halt_reason is not None:
                why = "stopping"
                break
            if time.monotonic() >= deadline:
                why = f"unfilled after {self.settings.fill_timeout:g} s"
                break
            now_top = self.maker.top()
            if now_top is not None and should_requote(
                side,
                price,
                now_top,
                market.tick_size,
                self.settings.maker_ticks,
                self.settings.requote_ticks,
            ):
                why = f"book moved more than {self.settings.requote_ticks} ticks"
                break
            await self._wait_wake(0.1)
        if why:
            self.status.requotes += why != "stopping"
            log.info("cancelling maker order %s: %s", client_id, why)
            await self._cancel_active()
            if why != "stopping":
                await self._pause(self._requote_limit.delay())
        self.hedger.unprepare()
        self._active = None
        self.status.maker_order = None

    def _merge_reply(self, placed: Order) -> None:
        active = self._active
        if active is None or placed.client_id != active.client_id:
            return
        status = active.status
        with contextlib.suppress(IllegalTransition):
            status = transition(active.status, placed.status)
        self._active = replace(
            active,
            status=status,
            order_id=placed.order_id or active.order_id,
            filled_qty=max(active.filled_qty, placed.filled_qty),
        )
        self.journal.update_order(
            self.maker.name, active.client_id, status=status, order_id=placed.order_id
        )

    async def _cancel_active(self) -> None:
        active = self._active
        if active is None:
            return
        self._set_active_status(OrderStatus.PENDING_CANCEL)
        try:
            await self.maker.cancel(active)
        except VenueError as exc:
            log.warning("cancel of %s failed: %s", active.client_id, exc)
        deadline = time.monotonic() + CANCEL_CONFIRM_S
        while time.monotonic() < deadline:
            current = self._active
            if current is None or current.status.is_terminal:
                break
            await self._wait_wake(0.1)
        current = self._active
        if current is not None and not current.status.is_terminal:
            # No event confirmed it: ask the venue. Gone from the open orders means done, but
            # a fill whose event was lost must still be hedged: fetch the order's fills first
            # (the hedger counts each trade id once, so overlap is harmless).
            still_open = any(
                o.client_id == current.client_id for o in await self.maker.open_orders()
            )
            if still_open:
                raise Halt(f"maker order {current.client_id} could not be cancelled")
            for fill in await self.maker.fills_since(self._active_since_ms - 60_000):
                if fill.client_id == current.client_id:
                    self._on_maker_event(fill)
            self._set_active_status(OrderStatus.CANCELED)
        final = self._active
        if final is not None:
            self.journal.update_order(
                self.maker.name,
                final.client_id,
                status=final.status,
                filled_qty=final.filled_qty,
            )

    def _finish_active(self, status: OrderStatus) -> None:
        active = self._active
        if active is not None:
            self.journal.update_order(self.maker.name, active.client_id, status=status)
        assert self.hedger is not None
        self.hedger.unprepare()
        self._active = None
        self.status.maker_order = None

    def _set_active_status(self, status: OrderStatus) -> None:
        active = self._active
        if active is None:
            return
        try:
            new = transition(active.status, status)
        except IllegalTransition:
            log.debug("ignored %s -> %s for %s", active.status, status, active.client_id)
            return
        self._active = replace(active, status=new)

    async def _after_step(self) -> None:
        assert self.hedger is not None
        self.status.state = "hedging"
        if not await self.hedger.wait_settled(self.settings.hedge_timeout * 4):
            self._check_signals()
            raise Halt(f"hedge not settled: exposure {self.hedger.exposure}")
        self._check_signals()
        await self._balance_check()
        assert self._client_ids is not None
        self._client_ids.top_up()
        await asyncio.to_thread(self.journal.checkpoint)

    # -- events --------------------------------------------------------------------------------
    def _on_maker_event(self, event: VenueEvent) -> None:
        assert self.hedger is not None
        if isinstance(event, Fill):
            self.hedger.on_maker_fill(event)  # the hot path comes first
            active = self._active
            if (
                active is not None
                and event.client_id == active.client_id
                and event.trade_id not in self._active_trades
            ):
                self._active_trades.add(event.trade_id)
                filled = active.filled_qty + event.qty
                self._active = replace(
                    active, order_id=active.order_id or event.order_id, filled_qty=filled
                )
                if filled >= active.qty:
                    self._set_active_status(OrderStatus.FILLED)
        elif isinstance(event, OrderEvent):
            active = self._active
            if active is not None and event.client_id == active.client_id:
                self._set_active_status(event.status)
        self._wake.set()

    def _on_hedge_event(self, event: VenueEvent) -> None:
        assert self.hedger is not None
        self.hedger.on_hedge_event(event)
        self._wake.set()

    # -- guards --------------------------------------------------------------------------------
    def _check_signals(self) -> None:
        if self._halt_reason is not None:
            raise Halt(self._halt_reason)
        if self._stop_requested:
            raise StopRequested

    async def _wait_wake(self, timeout: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _pause(self, seconds: float) -> None:
        """Sleep that wakes for stop and halt."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._check_signals()
            await self._wait_wake(min(left, 0.2))
        self._check_signals()

    async def _wait_books(self) -> None:
        deadline = time.monotonic() + BOOK_WAIT_S
        while self.maker.top() is None or self.hedge.top() is None:
            if time.monotonic() > deadline:
                missing = [v.name for v in (self.maker, self.hedge) if v.top() is None]
                raise Halt(f"no order book from {', '.join(missing)} after {BOOK_WAIT_S:g} s")
            self._check_signals()
            await self._wait_wake(0.05)

    async def _fresh_top(self) -> BookTop:
        """The maker top, waiting while either book is stale (no quoting on stale data)."""
        warned = False
        while True:
            self._check_signals()
            top = self.maker.top()
            stale = [v.name for v in (self.maker, self.hedge) if book_age(v.top()) > STALE_BOOK_S]
            if top is not None and not stale:
                return top
            if not warned:
                log.warning("book stale on %s: not quoting until it is fresh", ", ".join(stale))
                self.status.warn(f"stale book: {', '.join(stale)}")
                warned = True
            self.status.state = "waiting for fresh book"
            await self._wait_wake(0.2)

    async def _balance_check(self) -> None:
        assert self.hedger is not None and self.hedge_market is not None
        tolerance = self._tolerance()
        for attempt in range(BALANCE_RETRIES):
            try:
                await check_balance(
                    self.maker,
                    self.hedge,
                    maker_expected=self.maker_position,
                    hedge_expected=self.hedge_position,
                    tolerance=tolerance,
                    hedge_in_flight=not self.hedger.settled,
                )
                return
            except Halt:
                # Venue REST views may lag their own streams by a moment: look again first.
                if attempt == BALANCE_RETRIES - 1:
                    raise
                await asyncio.sleep(0.25 * (attempt + 1))

    async def _guard(self) -> None:
        """The balance guard on a timer, between steps."""
        while True:
            await asyncio.sleep(10)
            if self.hedger is None or not self.hedger.settled or self._active is not None:
                continue
            try:
                await self._balance_check()
            except Halt as halt:
                self.request_halt(str(halt))
            except VenueError as exc:
                log.warning("balance guard could not read positions: %s", exc)

    async def _settle_and_check(self) -> None:
        self.status.state = "settling"
        await self._settle("final hedge")
        await self._balance_check()

    async def _settle(self, what: str) -> None:
        """Wait for in-flight hedges, then sweep a remainder below the hedge minimum so the
        legs end exactly balanced."""
        assert self.hedger is not None
        for _ in range(3):
            if not await self.hedger.wait_settled(self.settings.hedge_timeout * 4):
                raise Halt(self._halt_reason or f"{what} not settled: {self.hedger.exposure}")
            if not self.hedger.sweep_dust():
                return
        raise Halt(f"{what}: a remainder below the hedge minimum could not be swept")

    # -- stopping --------------------------------------------------------------------------------
    async def _clean_stop(self) -> None:
        self.status.state = "stopping"
        await self._cancel_active()
        await self._cancel_ours(self.maker)
        if not self._reconciled or self.hedger is None:
            return  # stopped while starting: nothing of this run traded
        await self._settle("stop: hedge")
        await self._balance_check()

    async def _cancel_ours(self, venue: Venue) -> None:
        """Cancel every open order of ours on a venue (never someone else's)."""
        try:
            orders = await venue.open_orders()
        except VenueError as exc:
            log.error("cannot list open orders on %s: %s", venue.name, exc)
            return
        for order in orders:
            if self.journal.is_our_order(venue.name, order.client_id):
                try:
                    await venue.cancel(order)
                except VenueError as exc:
                    log.error("cancel of %s on %s failed: %s", order.client_id, venue.name, exc)

    async def _kill_switch(self, reason: str) -> None:
        log.error("HALT: %s", reason)
        self.status.state = "halting"
        self.status.halt_reason = reason
        self.status.warn(f"halt: {reason}")
        with contextlib.suppress(VenueError, Halt):
            await self._cancel_active()
        await self._cancel_ours(self.maker)
        try:
            self.journal.record_halt(reason)
        except Exception:  # a broken journal must not stop the cleanup
            log.exception("could not journal the halt")
        if self.hedger is not None:
            self.hedger.halted = True
            if not await self.hedger.wait_in_flight(self.settings.hedge_timeout * 2):
                log.error("hedges still in flight at the halt: flattening from positions")
        if not self._reconciled:
            log.warning("halted before reconciling with the venues: nothing traded")
            return
        await self._flatten_net()

    async def _flatten_net(self) -> None:
        """Trade the net of both legs flat on the hedge venue, from the venues' own positions.

        After each order, positions are read again only once the venue shows that order's
        fill (or a few seconds passed), so a lagging REST view never triggers a second order
        for the same net."""
        market = self.hedge_market
        if market is None or self._client_ids is None:
            return
        tolerance = self._tolerance()
        deadline = time.monotonic() + FLATTEN_SECONDS
        orders_sent = 0
        expected: tuple[Decimal, float] | None = None  # (net after our last fill, until when)
        while time.monotonic() < deadline and orders_sent < FLATTEN_ATTEMPTS:
            try:
                maker_position, hedge_position = await self._positions(strict=True)
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
            qty = round_qty(abs(net), market.step_size)
            if qty < tolerance:
                log.info("flatten: legs balanced (net %s)", net)
                return
            side = Side.SELL if net > 0 else Side.BUY
            top = self.hedge.top()
            if top is None:
                await asyncio.sleep(0.5)  # no book (resyncing): wait, this costs no attempt
                continue
            slippage = self.settings.max_slippage_bps * FLATTEN_SLIPPAGE_FACTOR / Decimal(10_000)
            reference = top.ask if side is Side.BUY else top.bid
            worst = reference * (1 + slippage) if side is Side.BUY else reference * (1 - slippage)
            worst = round_worst_price(worst, market.tick_size, side)
            client_id = self._client_ids.next()
            order = Order(
                self.hedge.name, market.symbol, client_id, side, qty, worst, OrderKind.IOC
            )
            self.journal.register_order(order, purpose="flatten")
            orders_sent += 1
            log.warning(
                "flatten: %s %s on %s (net %s), order %s",
                side.value,
                qty,
                self.hedge.name,
                net,
                orders_sent,
            )
            try:
                placed = await self.hedge.place_hedge(side, qty, worst, client_id)
                self.journal.update_order(
                    self.hedge.name, client_id, status=placed.status, filled_qty=placed.filled_qty
                )
                expected = (net + side.sign * placed.filled_qty, time.monotonic() + 3.0)
            except VenueError as exc:
                log.error("flatten order failed: %s", exc)
                await asyncio.sleep(0.3)
        log.error("flatten: legs still unbalanced after %s order(s)", orders_sent)

    async def _positions(self, *, strict: bool = False) -> tuple[Decimal, Decimal]:
        try:
            return await self.maker.position(), await self.hedge.position()
        except VenueError:
            if strict:
                raise
            if self.hedger is None:
                return Decimal(0), Decimal(0)
            return self.maker_position, self.hedge_position

    # -- restart recovery --------------------------------------------------------------------------
    async def _recover(self, previous: tuple[int, Decimal, float] | None) -> None:
        """Reconcile both venues with the journal before the first quote (G4)."""
        assert self.hedger is not None
        for venue in (self.maker, self.hedge):
            for order in await venue.open_orders():
                if self.journal.is_our_order(venue.name, order.client_id):
                    log.warning(
                        "cancelling stray order of ours on %s: client=%s",
                        venue.name,
                        order.client_id,
                    )
                    self.status.warn(f"cancelled stray order {order.client_id} on {venue.name}")
                    with contextlib.suppress(VenueError):
                        await venue.cancel(order)
                else:
                    log.warning(
                        "an order not placed by this bot rests on %s (client=%s): left alone",
                        venue.name,
                        order.client_id,
                    )
        # Maker fills journaled earlier but never fully hedged are open again.
        uncovered = self.hedger.load_uncovered()
        since_ms = int((previous[2] if previous else time.time() - 3600) * 1000) - 60_000
        recovered = 0
        # Paused: nothing is sent while fills are replayed. Maker fills first, so that a hedge
        # fill that did execute is matched to the maker fill it covered.
        for venue, handler in (
            (self.maker, self.hedger.on_maker_event),
            (self.hedge, self.hedger.on_hedge_event),
        ):
            ours = [
                fill
                for fill in await venue.fills_since(since_ms)
                if self.journal.is_our_order(venue.name, fill.client_id)
            ]
            for fill in missing_fills(ours, self.journal.filled_by_order(venue.name)):
                recovered += 1
                handler(fill)
        if recovered:
            log.warning("recovered %s fill(s) missed while the bot was down", recovered)
            self.status.warn(f"recovered {recovered} missed fill(s)")
        if uncovered:
            log.warning(
                "%s %s of earlier maker fills still to hedge", uncovered, self.settings.ticker
            )
        maker_position, hedge_position = await self.maker.position(), await self.hedge.position()
        net = maker_position + hedge_position
        self.journal.flush()  # the replayed fills are in the journal before it is read
        explained = self.journal.net_position(self.maker.name) + self.journal.net_position(
            self.hedge.name
        )
        assert self.hedge_market is not None
        tolerance = self._tolerance()
        # Start offsets so that maker_start + maker_net == the venue position.
        self.maker_start = maker_position - self.hedger.maker_net
        self.hedge_start = hedge_position - self.hedger.hedge_net
        self.maker_baseline = previous[1] if previous else maker_position
        self.journal.set_baseline(self.maker_baseline)
        if abs(net - explained) > tolerance:
            if not self.settings.rebalance:
                raise Halt(
                    f"unbalanced on start: {self.maker.name} {maker_position} + "
                    f"{self.hedge.name} {hedge_position} = {net}, which the journal does not "
                    "explain; refusing to quote. Check the accounts, then run with --rebalance "
                    "to close the net on the hedge venue."
                )
            log.warning("rebalancing: net %s will be closed on %s", net, self.hedge.name)
        if net != self.hedger.exposure:
            self.hedger.seed_exposure(net - self.hedger.exposure, reason="net position at start")


def _public_settings(settings: Settings) -> dict[str, str]:
    """The settings a journal may hold: everything but the secrets."""
    return {
        "ticker": settings.ticker,
        "size": str(settings.size),
        "max_position": str(settings.max_position),
        "iterations": str(settings.iterations),
        "direction": settings.direction.value,
        "fill_timeout": f"{settings.fill_timeout:g}",
        "requote_ticks": str(settings.requote_ticks),
        "maker_ticks": str(settings.maker_ticks),
        "max_slippage_bps": str(settings.max_slippage_bps),
        "hedge_timeout": f"{settings.hedge_timeout:g}",
        "mode": settings.mode.value,
        "backpack_api_url": settings.backpack_api_url,
        "lighter_api_url": settings.lighter_api_url,
    }


def missing_fills(venue_fills: list[Fill], journaled: dict[str, Decimal]) -> list[Fill]:
    """The part of each order's fills that the journal does not hold yet.

    Compared per order by quantity, not by trade id: a venue may split one order's fills
    differently in its stream and its REST history (Lighter's ids are synthesized from
    cumulative amounts), and a fill must be neither replayed twice nor lost. Fills come
    oldest first; the one straddling the journaled amount is replayed for its excess only."""
    missing: list[Fill] = []
    cumulative: dict[str, Decimal] = {}
    for fill in venue_fills:
        before = cumulative.get(fill.order_id, Decimal(0))
        after = before + fill.qty
        cumulative[fill.order_id] = after
        known = journaled.get(fill.order_id, Decimal(0))
        if after <= known:
            continue
        excess = after - max(before, known)
        missing.append(fill if excess == fill.qty else replace(fill, qty=excess))
    return missing

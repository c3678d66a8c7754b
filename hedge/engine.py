"""HedgeEngine: the cycle loop (quote -> fill/timeout -> re-quote) over iterations.

An iteration opens a position of `max_position` on the maker venue in the chosen direction, one
post-only order of `size` at a time, then closes it back to the run's baseline the same way.
Every maker fill goes straight to the hedger from the maker venue's event callback; the engine
only decides what to quote and when to stop.

Stops:
- clean stop (SIGINT/SIGTERM): stop quoting, cancel maker orders, let in-flight hedges finish,
  check the legs are balanced, exit 130;
- halt (a risk guard or the hedger's escalation): stop quoting, cancel maker orders, balance
  the legs (hedge/closeout.py: the hedge venue first, the maker venue for what it cannot
  take), exit 3 with the reason; exit 4, naming what is left, when the legs stay unbalanced.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from exchanges.base import (
    AmbiguousOrderState,
    BookTop,
    ConfigError,
    Fill,
    Market,
    Order,
    OrderKind,
    OrderStatus,
    PostOnlyRejected,
    Side,
    Venue,
    VenueError,
    VenueEvent,
    round_qty,
)
from exchanges.common.budget import Priority
from hedge.closeout import Closed, Closeout, cancel_ours
from hedge.config import Direction, Settings
from hedge.external import ExternalChanges
from hedge.hedger import ClientIds, Hedger, IdSource
from hedge.journal import Journal
from hedge.logsetup import REDACTOR
from hedge.maker_order import ActiveMakerOrder
from hedge.quoting import Quoter, RateLimiter
from hedge.recovery import StartupRecovery, missing_fills
from hedge.risk import (
    Halt,
    PositionMoved,
    book_age,
    check_balance_patiently,
    read_positions,
    tradable_minimum,
)

__all__ = ["EngineStatus", "HedgeEngine", "RunResult", "StopRequested", "missing_fills"]

log = logging.getLogger(__name__)
HEDGE_ROOM = 2  # requests a maker order keeps free on the hedge account: its hedge, a re-send
BUDGET_WAIT = "waiting for the hedge venue's request budget"
GUARD_INTERVAL_S = 10.0
GUARD_REST_EVERY = 6  # one REST look a minute: a slow reconcile that fits any budget

EXIT_OK, EXIT_ERROR, EXIT_HALTED, EXIT_UNBALANCED, EXIT_INTERRUPTED = 0, 1, 3, 4, 130
STALE_BOOK_S = 30.0
BOOK_WAIT_S = 20.0


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
    quoter: Quoter  # set once the maker venue's rules are known

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
        self._wake = asyncio.Event()
        self.maker_order = ActiveMakerOrder(
            maker, journal, wait=self._wait_wake, deliver=self._on_maker_event
        )
        self.maker_order.outage_window_s = settings.outage_window
        self._stop_requested = False
        self._halt_reason: str | None = None
        self._requote_limit = RateLimiter(limit=10, window=1.0)
        self._guard_task: asyncio.Task[None] | None = None
        self._client_ids: ClientIds | None = None
        self.id_source: IdSource | None = None  # the account's, when pairs share it
        self.external: ExternalChanges | None = None  # G9: trades on the account not ours
        # False until restart recovery has reconciled the venues with the journal: before that
        # a halt must not trade (a refused start leaves the account exactly as it found it).
        self._reconciled = False

    @property
    def _active(self) -> Order | None:
        """The resting maker order, if any (read by tests and benchmarks)."""
        return self.maker_order.order

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
        try:
            code, reason, closed = await self._run_to_end()
            reason = REDACTOR.redact(reason)  # exception texts may quote anything (G7)
        finally:
            if self._guard_task is not None:
                self._guard_task.cancel()
                await asyncio.gather(self._guard_task, return_exceptions=True)
            if self.hedger is not None:
                await self.hedger.close()
        if closed is not None and not closed.balanced:
            code, reason = EXIT_UNBALANCED, f"{closed.left(self.settings.ticker)}; {reason}"
            log.critical("%s", reason)
            self.status.warn(reason)
        # A clean end read its balance already: the streams say the same, with no request
        # queued behind a budget the start spent (ten pairs on Standard: up to a minute).
        maker_position, hedge_position = await own_positions(
            self, streamed=code in (EXIT_OK, EXIT_INTERRUPTED)
        )
        try:
            self.journal.end_run(code, reason)
        except Exception:  # a broken journal: the outcome is still printed and logged
            log.exception("could not journal the end of the run")
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

    async def _run_to_end(self) -> tuple[int, str, Closed | None]:
        """(exit code, reason, the kill switch's closeout when there was one)."""
        try:
            await self._start()
            await self._cycles()
            await self._settle_and_check()
            await cancel_ours(self.maker, self.journal)  # normally none: never leave one resting
            return EXIT_OK, "done", None
        except ConfigError:
            raise  # refused keys or an unknown market, found while connecting: exit 2
        except Halt as halt:
            return EXIT_HALTED, str(halt), await self._kill_switch(str(halt))
        except StopRequested:
            try:
                await self._clean_stop()
                return EXIT_INTERRUPTED, "interrupted", None
            except (Halt, VenueError) as exc:
                return EXIT_HALTED, str(exc), await self._kill_switch(str(exc))
        except VenueError as exc:
            # A venue kept failing where the engine could not simply wait (retries exhausted):
            # stop the same way a risk guard does, legs balanced, never a crash.
            reason = f"venue error: {exc}"
            return EXIT_HALTED, reason, await self._kill_switch(reason)
        except Exception as exc:  # a bug or a broken disk: still leave nothing behind
            log.exception("unexpected error: stopping with the kill switch")
            reason = f"unexpected error: {type(exc).__name__}: {exc}"
            try:
                return EXIT_ERROR, reason, await self._kill_switch(reason)
            except Exception:
                log.exception("kill switch failed after an unexpected error")
                return EXIT_ERROR, reason, None

    async def _start(self) -> None:
        self.status.state = "connecting"
        # Event callbacks are set once the hedger exists: until then the venues keep events.
        await asyncio.gather(self.maker.connect(), self.hedge.connect())
        self.maker_market = self.maker.market()
        self.hedge_market = self.hedge.market()
        self.quoter = self.settings.quoter(self.maker_market.tick_size)
        previous = self.journal.unfinished_run()
        start_journal(self.journal, self.settings, self.hedge_market)
        self._client_ids = ClientIds(self.journal, self.id_source)
        self.external = ExternalChanges(
            self.settings.on_external_change,
            self.settings.ticker,
            (self.maker.name, self.hedge.name),
            owns=self._client_ids.owns,
            journal=self.journal,
            warn=self.status.warn,
            halt=self.request_halt,
        )
        loop = asyncio.get_running_loop()
        self.journal.on_write_error = lambda why: loop.call_soon_threadsafe(self.request_halt, why)
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
        await wait_books((self.maker, self.hedge), self._check_signals, self._wait_wake)
        self.status.state = "reconciling"
        await self._recover(previous)
        self.hedger.paused = False
        self.hedger.tick()
        self._reconciled = True  # from here on the kill switch may trade the net flat
        if not await self.hedger.wait_settled(self.settings.hedge_timeout * 4):
            raise Halt(f"could not hedge the recovered exposure {self.hedger.exposure}")
        self._check_signals()
        self.external.halt_if_changed_while_down()
        self._guard_task = asyncio.create_task(
            guard_loop(self._guard_may_look, self._balance_check, self.request_halt),
            name="balance-guard",
        )

    async def _cycles(self) -> None:
        assert self.maker_market is not None
        for iteration in range(1, self.settings.iterations + 1):
            self.status.iteration = iteration
            side = opening_side(self.settings.direction, iteration)
            target = self.maker_baseline + side.sign * self.settings.max_position
            await self._leg(iteration, "open", side, target)
            await self._leg(iteration, "close", side.opposite, self.maker_baseline)
            if iteration < self.settings.iterations and self.settings.sleep > 0:
                self.status.state = "sleeping"
                await self._pause(self.settings.sleep)

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
        assert self.hedge_market is not None
        return tradable_minimum(self.hedge_market, self.hedge.top())

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
        """Place one post-only order, wait for its fill (or a reason to re-quote), cancel what
        is left of it."""
        assert self.hedger is not None
        price = await self._place_maker(side, qty)
        if price is not None:
            why = await self._wait_fill_or_requote(side, price)
            if why:
                self.status.requotes += why != "stopping"
                assert self._active is not None
                log.info("cancelling maker order %s: %s", self._active.client_id, why)
                await self.maker_order.cancel()
                if why != "stopping":
                    await self._pause(self._requote_limit.delay())
            self.hedger.unprepare()
            self.maker_order.clear()
            self.status.maker_order = None

    async def _place_maker(self, side: Side, qty: Decimal) -> Decimal | None:
        """The order's price once it rests (or filled at once); None when there is nothing to
        wait for (rejected, failed or its state unknown and cancelled)."""
        assert self.maker_market is not None and self.hedger is not None
        assert self._client_ids is not None
        await wait_for_hedge_budget(self.hedge, self.status, self._pause)
        market = self.maker_market
        top = await fresh_top(self.maker, self.hedge, self.status, self._pause)
        price = self.quoter.price(side, top, self.hedge.top())
        if price is None:  # edge mode: the hedge book does not pay a quote near the touch back
            self.status.state = "waiting for edge"
            await self._wait_wake(0.1)
            return None
        client_id = self._client_ids.next()
        order = Order(
            self.maker.name, market.symbol, client_id, side, qty, price, OrderKind.POST_ONLY
        )
        self.maker_order.begin(order)
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
            return None
        except AmbiguousOrderState as exc:
            log.error("maker order %s state unknown (%s): cancelling by client id", client_id, exc)
            self.status.warn(f"maker order {client_id} state unknown")
            await self.maker_order.cancel()
            return None
        except VenueError as exc:
            log.warning("maker order %s failed: %s", client_id, exc)
            self.status.warn(f"maker order failed: {exc}")
            self._finish_active(OrderStatus.REJECTED)
            self.maker_order.refused(exc)  # Halt after a few refusals in a row
            await self._pause(max(self._requote_limit.delay(), 0.5))
            return None
        self.maker_order.merge_reply(placed)
        log.info(
            "maker order %s %s %s @ %s client=%s order=%s",
            self.maker.name,
            side.value,
            qty,
            price,
            client_id,
            placed.order_id,
        )
        return price

    async def _wait_fill_or_requote(self, side: Side, price: Decimal) -> str:
        """Wait while the order rests; why it must be cancelled ("" when it is done)."""
        assert self.maker_market is not None
        deadline = time.monotonic() + self.settings.fill_timeout
        while self.maker_order.resting:
            if self._stop_requested or self._halt_reason is not None:
                return "stopping"
            if time.monotonic() >= deadline:
                return f"unfilled after {self.settings.fill_timeout:g} s"
            why = self.quoter.drift(side, price, self.maker.top(), self.hedge.top())
            if why:
                return why
            await self._wait_wake(0.1)
        return ""

    def _finish_active(self, status: OrderStatus) -> None:
        self.maker_order.finish(status)
        assert self.hedger is not None
        self.hedger.unprepare()
        self.status.maker_order = None

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
        assert self.hedger is not None and self.external is not None
        try:
            if isinstance(event, Fill):
                if not self.external.ours(event):
                    return  # someone else's trade: never hedged (G9)
                self.hedger.on_maker_fill(event)  # the hot path comes first
            self.maker_order.on_event(event)
        except Exception as exc:  # never swallowed: the books may be wrong, stop (legs balanced)
            self._event_failed(self.maker.name, event, exc)
        self._wake.set()

    def _on_hedge_event(self, event: VenueEvent) -> None:
        assert self.hedger is not None and self.external is not None
        try:
            if isinstance(event, Fill) and not self.external.ours(event):
                return
            self.hedger.on_hedge_event(event)
        except Exception as exc:
            self._event_failed(self.hedge.name, event, exc)
        self._wake.set()

    def _event_failed(self, venue: str, event: VenueEvent, exc: Exception) -> None:
        log.exception("handling a %s event failed: %s", venue, event)
        self.request_halt(f"internal error handling a {venue} event: {type(exc).__name__}: {exc}")

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

    async def _balance_check(self, *, streamed: bool = True) -> None:
        """The balance guard (hedge/risk.py) on the bot's own positions. A position that moved
        without a fill of ours is an external change: kept out of the books, then the policy."""
        assert self.hedger is not None and self.external is not None
        hedger = self.hedger
        try:
            await check_balance_patiently(
                self.maker,
                self.hedge,
                expected=lambda: (self.maker_position, self.hedge_position, not hedger.settled),
                tolerance=self._tolerance(),
                streamed=streamed,
                own=self.external.own_pair,
                window_s=self.settings.outage_window,
            )
        except PositionMoved as moved:
            if not self.external.position_moved(moved.venue, moved.delta):
                raise
            self._check_signals()

    def _guard_may_look(self) -> bool:
        return self.hedger is not None and self.hedger.settled and self._active is None

    async def _settle_and_check(self) -> None:
        self.status.state = "settling"
        await self._settle("final hedge")
        await self._balance_check()

    async def _settle(self, what: str) -> None:
        """Wait for in-flight hedges, then close a remainder below the hedge minimum so the legs
        end exactly balanced: unwound on the maker venue first (it takes any step of it, and a
        reduce-only IOC cannot overshoot), else swept on the hedge venue (minimum + remainder,
        then the minimum back)."""
        assert self.hedger is not None
        for attempt in range(4):
            if not await self.hedger.wait_settled(self.settings.hedge_timeout * 4):
                raise Halt(self._halt_reason or f"{what} not settled: {self.hedger.exposure}")
            if not self.hedger.has_dust():
                return
            if attempt == 0:
                log.info("%s: unwinding %s below the hedge minimum", what, self.hedger.exposure)
                self.hedger.paused = True  # the unwind's own fill must not be hedged
                try:
                    await self._close_out()
                finally:
                    self.hedger.paused = False
            elif attempt < 3:
                self.hedger.sweep_dust()
        raise Halt(f"{what}: a remainder {self.hedger.exposure} below the hedge minimum is left")

    # -- stopping --------------------------------------------------------------------------------
    async def _clean_stop(self) -> None:
        self.status.state = "stopping"
        await self.maker_order.cancel()
        await cancel_ours(self.maker, self.journal)
        if not self._reconciled or self.hedger is None:
            return  # stopped while starting: nothing of this run traded
        await self._settle("stop: hedge")
        await self._balance_check()

    async def _kill_switch(self, reason: str) -> Closed | None:
        """Stop quoting, cancel our maker orders, balance the legs; what the venues said at the
        end (None when nothing of this run may be traded: halted before reconciling)."""
        reason = REDACTOR.redact(reason)
        log.error("HALT: %s", reason)
        self.status.state = "halting"
        self.status.halt_reason = reason
        self.status.warn(f"halt: {reason}")
        with contextlib.suppress(VenueError, Halt):
            await self.maker_order.cancel()
        await cancel_ours(self.maker, self.journal)
        try:
            self.journal.record_halt(reason)
        except Exception:  # a broken journal must not stop the cleanup
            log.exception("could not journal the halt")
        if self.hedger is not None:
            self.hedger.halted = True
            if not await self.hedger.wait_in_flight(self.settings.hedge_timeout * 2):
                log.error("hedges still in flight at the halt: closing out from positions")
        if not self._reconciled:
            log.warning("halted before reconciling with the venues: nothing traded")
            return None
        return await self._close_out()

    async def _close_out(self) -> Closed | None:
        """Balance the legs from the venues' own positions (hedge/closeout.py)."""
        if self._client_ids is None:
            return None
        return await Closeout(
            self.maker,
            self.hedge,
            self.journal,
            self._client_ids,
            max_slippage_bps=self.settings.max_slippage_bps,
            positions=lambda: own_positions(self, strict=True),
            expected_net=None if self.hedger is None else self.maker_position + self.hedge_position,
        ).run()

    # -- restart recovery --------------------------------------------------------------------------
    async def _recover(self, previous: tuple[int, Decimal, float] | None) -> None:
        """Reconcile both venues with the journal before the first quote (G4)."""
        assert self.hedger is not None
        assert self.external is not None
        recovery = StartupRecovery(
            self.settings,
            self.maker,
            self.hedge,
            self.journal,
            self.hedger,
            self.external,
            warn=self.status.warn,
        )
        start = await recovery.reconcile(previous)
        # Start offsets so that maker_start + maker_net == the venue position.
        self.maker_start, self.hedge_start = start.maker_start, start.hedge_start
        self.maker_baseline = start.maker_baseline
        recovery.check_net(start, self._tolerance())


async def own_positions(
    engine: HedgeEngine, *, strict: bool = False, streamed: bool = False
) -> tuple[Decimal, Decimal]:
    """The bot's own positions: the venues' (from the streams if `streamed` and known) less any
    external change (G9); on a venue error, what the hedger counted (unless `strict`)."""
    try:
        maker, hedge = await read_positions(engine.maker, engine.hedge, streamed=streamed)
        external = engine.external
        return (maker, hedge) if external is None else external.own_pair(maker, hedge)
    except VenueError:
        if strict:
            raise
        if engine.hedger is None:
            return Decimal(0), Decimal(0)
        return engine.maker_position, engine.hedge_position


async def fresh_top(
    maker: Venue, hedge: Venue, status: EngineStatus, wait: Callable[[float], Awaitable[None]]
) -> BookTop:
    """The maker top, waiting while either book is stale (no quoting on stale data). `wait`
    raises for a stop or a halt."""
    warned = False
    while True:
        top = maker.top()
        stale = [v.name for v in (maker, hedge) if book_age(v.top()) > STALE_BOOK_S]
        if top is not None and not stale:
            return top
        if not warned:
            log.warning("book stale on %s: not quoting until it is fresh", ", ".join(stale))
            status.warn(f"stale book: {', '.join(stale)}")
            warned = True
        status.state = "waiting for fresh book"
        await wait(0.2)


async def wait_books(
    venues: tuple[Venue, ...],
    check_signals: Callable[[], None],
    wait: Callable[[float], Awaitable[None]],
) -> None:
    """Until every venue has a book; Halt after BOOK_WAIT_S naming those without."""
    deadline = time.monotonic() + BOOK_WAIT_S
    while any(v.top() is None for v in venues):
        if time.monotonic() > deadline:
            missing = [v.name for v in venues if v.top() is None]
            raise Halt(f"no order book from {', '.join(missing)} after {BOOK_WAIT_S:g} s")
        check_signals()
        await wait(0.05)


async def guard_loop(
    may_look: Callable[[], bool],
    check: Callable[..., Awaitable[None]],
    halt: Callable[[str], None],
) -> None:
    """The balance guard on a timer, between steps (when `may_look`): from the account streams
    every GUARD_INTERVAL_S, and over REST (the venues' own books) every GUARD_REST_EVERY looks."""
    looks = 0
    while True:
        await asyncio.sleep(GUARD_INTERVAL_S)
        if not may_look():
            continue
        looks += 1
        try:
            await check(streamed=looks % GUARD_REST_EVERY != 0)
        except Halt as halt_reason:
            halt(str(halt_reason))
        except VenueError as exc:
            log.warning("balance guard could not read positions: %s", exc)


async def wait_for_hedge_budget(
    hedge: Venue, status: EngineStatus, pause: Callable[[float], Awaitable[None]]
) -> None:
    """No maker order goes out unless the hedge account's request budget can pay for its
    hedge (and a re-send) outside the hedges' own reserve: on Lighter's Standard tier, 60
    requests a minute, fills then come no faster than their hedges can go."""
    budget = getattr(hedge, "budget", None)
    if budget is None:
        return
    while (wait := budget.seconds_until_room("sendTx", HEDGE_ROOM, Priority.ORDER)) > 0:
        if status.state != BUDGET_WAIT:
            log.info(
                "%s request budget: %s; quoting again in %.1f s",
                hedge.name,
                budget.describe(),
                wait,
            )
        status.state = BUDGET_WAIT
        await pause(min(wait, 1.0))


def opening_side(direction: Direction, iteration: int) -> Side:
    """The side an iteration opens with: alternate starts with a buy."""
    if direction is Direction.BUY:
        return Side.BUY
    if direction is Direction.SELL:
        return Side.SELL
    return Side.BUY if iteration % 2 == 1 else Side.SELL


def start_journal(journal: Journal, settings: Settings, hedge_market: Market) -> None:
    journal.start_run(
        mode=settings.mode.value,
        ticker=settings.ticker,
        settings={
            **_public_settings(settings),
            "hedge_min_qty": str(max(hedge_market.step_size, hedge_market.min_qty)),
            "hedge_min_notional": str(hedge_market.min_notional),
        },
    )


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
        "outage_window": f"{settings.outage_window:g}",
        "on_external_change": settings.on_external_change.value,
        "mode": settings.mode.value,
        "backpack_api_url": settings.backpack_api_url,
        "lighter_api_url": settings.lighter_api_url,
    }

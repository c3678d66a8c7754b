"""Wiring: build the venues for a Settings, run the engine with signals, logs, journal, summary.

`runbot.py` commands call `run_bot`; the demo first starts the simulated venues in-process and
then runs exactly the same path against them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exchanges.base import ConfigError, Venue
from exchanges.common.tasks import PAIR
from hedge.config import Mode, Settings
from hedge.economics import MID
from hedge.engine import (
    EXIT_ERROR,
    EXIT_HALTED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNBALANCED,
    EngineStatus,
    HedgeEngine,
    RunResult,
)
from hedge.hedger import IdSource
from hedge.journal import Journal
from hedge.pairs import AccountGuard
from hedge.report import summarize

if TYPE_CHECKING:
    from exchanges.backpack.shared import SharedAccount as BackpackAccount
    from exchanges.lighter.shared import SharedAccount as LighterAccount

log = logging.getLogger(__name__)


def _reveal(secret: Any) -> str | None:
    return None if secret is None else str(secret.reveal())


def shared_accounts(settings: Settings) -> Accounts:
    """What every pair of a run shares on each venue account: connections, budget, and on
    Lighter the nonce sequence and signer of the API key (exchanges/*/shared.py)."""
    from exchanges.backpack.shared import SharedAccount as BackpackAccount
    from exchanges.common.budget import LIGHTER_TIERS, RequestBudget, backpack_limits
    from exchanges.lighter.shared import SharedAccount as LighterAccount

    backpack = BackpackAccount(
        settings.backpack_ws_url,
        public_key=None if settings.dry_run else _reveal(settings.backpack_public_key),
        secret_key=None if settings.dry_run else _reveal(settings.backpack_secret_key),
        budget=RequestBudget(backpack_limits(settings.backpack_rate_limit)),
    )
    lighter = LighterAccount(
        settings.lighter_api_url,
        settings.lighter_ws_url,
        RequestBudget(LIGHTER_TIERS[settings.lighter_account_tier]),
    )
    return Accounts(backpack, lighter)


def build_venues(
    settings: Settings, *, paper: bool | None = None, accounts: Accounts | None = None
) -> tuple[Venue, Venue]:
    """Backpack (maker) and Lighter (hedge) for these settings, on `accounts` shared with
    other pairs (default: their own); paper-wrapped for a dry run (`paper=False` gives the
    bare public-data venues of a dry run, for `check`)."""
    from exchanges.backpack import BackpackVenue
    from exchanges.lighter import LighterVenue

    accounts = accounts or shared_accounts(settings)
    maker: Venue = BackpackVenue(
        settings.ticker,
        api_url=settings.backpack_api_url,
        ws_url=settings.backpack_ws_url,
        public_key=None if settings.dry_run else _reveal(settings.backpack_public_key),
        secret_key=None if settings.dry_run else _reveal(settings.backpack_secret_key),
        shared=accounts.backpack,
    )
    hedge: Venue = LighterVenue(
        settings.ticker,
        api_url=settings.lighter_api_url,
        ws_url=settings.lighter_ws_url,
        private_key=None if settings.dry_run else _reveal(settings.lighter_private_key),
        account_index=None if settings.dry_run else settings.lighter_account_index,
        api_key_index=None if settings.dry_run else settings.lighter_api_key_index,
        fees=settings.hedge_fees,
        shared=accounts.lighter,
    )
    if settings.dry_run if paper is None else paper:
        from hedge.paper import PaperVenue

        fees = settings.hedge_fees
        maker = PaperVenue(maker, role="maker", maker_fee=settings.backpack_maker_fee)
        hedge = PaperVenue(hedge, role="hedge", maker_fee=fees.maker, taker_fee=fees.taker)
    return maker, hedge


def trade_log_path(settings: Settings) -> Path:
    """The CSV trade log, named by pair and mode: a demo or a paper run never writes into the
    live one."""
    return settings.log_dir / f"{settings.ticker}-{settings.mode.tag}-trades.csv"


def _open_journal(settings: Settings, csv_path: Path) -> Journal:
    """The run's journal; one of another ticker or mode is refused (ConfigError, exit 2).
    A new journal while an older one of the pair has an unfinished run: said in the log."""
    unfinished = unfinished_elsewhere(settings.journal)
    if unfinished is not None:
        log.warning(
            "%s has an unfinished run of %s; this run uses a new journal %s. To resume that "
            "run's state (its unhedged fills, its orders), start with --journal %s",
            unfinished,
            settings.ticker,
            settings.journal,
            unfinished,
        )
    journal = Journal(settings.journal, csv_path=csv_path)
    foreign = journal.foreign_runs(settings.ticker, settings.mode.value)
    if foreign:
        journal.close()
        held = ", ".join(f"{ticker} {mode}" for ticker, mode in foreign)
        raise ConfigError(
            f"--journal {settings.journal}: it holds {held} runs and this is a "
            f"{settings.ticker} {settings.mode.value} run; a journal belongs to one ticker and "
            "mode: choose another --journal"
        )
    return journal


def _journal_budget(journal: Journal, venue: Venue) -> None:
    """The run's request budget on `venue` (a paper venue has none): logged and journaled."""
    budget = getattr(venue, "budget", None)
    if budget is None:
        return
    state = budget.snapshot()
    log.info("%s request budget at the end: %s", venue.name, budget.describe())
    journal.set_counter(f"budget_requests_{venue.name}", float(state["granted"]))
    journal.set_counter(f"budget_waited_{venue.name}", float(state["waited"]))
    journal.set_counter(f"budget_http_429_{venue.name}", float(state["rejected_429"]))


@dataclass(frozen=True)
class Accounts:
    backpack: BackpackAccount
    lighter: LighterAccount
    ids: IdSource = field(default_factory=IdSource)  # client ids unique across the pairs


@dataclass
class BotRun:
    result: RunResult
    summary: dict[str, Any]
    journal_path: Path


async def run_bot(
    settings: Settings,
    *,
    maker: Venue | None = None,
    hedge: Venue | None = None,
    status: EngineStatus | None = None,
    on_started: Callable[[HedgeEngine], None] | None = None,
    install_signals: bool = True,
    presign: bool = True,
    ids: IdSource | None = None,
) -> BotRun:
    """Run the engine to its end; venues and journal are closed whatever happens."""
    if maker is None or hedge is None:
        maker, hedge = build_venues(settings)
    journal = _open_journal(settings, trade_log_path(settings))
    engine = HedgeEngine(settings, maker, hedge, journal, status=status, presign=presign)
    engine.id_source = ids
    watch_key = getattr(hedge, "watch_key", None)  # another process on our Lighter key
    if watch_key is not None:
        watch_key(engine.request_halt)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if install_signals else ()
    for signum in signals:
        loop.add_signal_handler(signum, engine.request_stop)
    if on_started is not None:
        on_started(engine)
    try:
        result = await engine.run()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if engine.hedger is not None:
            stats = engine.hedger.stats
            journal.set_counter("over_hedges", stats.over_hedges)
            journal.set_counter("hedge_resends", max(stats.hedges_sent - stats.first_sends, 0))
        for venue in (maker, hedge):
            top = venue.top()
            if top is not None:  # what the open legs are marked at (hedge/economics.py)
                journal.record_mark(MID, venue.name, str(journal.run_id), top.mid)
            reconnects = getattr(venue, "reconnects", 0)
            journal.set_counter(f"reconnects_{venue.name}", float(reconnects))
            _journal_budget(journal, venue)
            try:
                await venue.close()
            except Exception as exc:  # closing must not hide the run's own outcome
                log.warning("closing %s failed: %s", venue.name, exc)
    journal.flush()
    summary = summarize(journal, maker_venue=maker.name, run_id=journal.run_id)
    journal.close()
    return BotRun(result, summary, settings.journal)


MODE_TAGS = frozenset(mode.tag for mode in Mode)


def unfinished_elsewhere(path: Path) -> Path | None:
    """When `path` is a new journal (a new day), the latest other journal of the same ticker
    whose last run did not finish well: its state is what a restart would need."""
    if path.exists():
        return None
    ticker, _, rest = path.name.partition("-")
    tag = rest.split("-", 1)[0]
    pattern = f"{ticker}-{tag}-*.sqlite" if tag in MODE_TAGS else f"{ticker}-*.sqlite"
    others = sorted(
        (p for p in path.parent.glob(pattern) if p != path),
        key=lambda p: p.stat().st_mtime,
    )
    if not others:
        return None
    try:
        journal = Journal(others[-1], readonly=True)
    except ConfigError:  # not a journal of ours: it holds no run to resume
        return None
    try:
        return others[-1] if journal.unfinished_run() is not None else None
    finally:
        journal.close()


# The exit code of several pairs: the one that most needs a human.
_WORST_FIRST = (EXIT_UNBALANCED, EXIT_ERROR, EXIT_HALTED, EXIT_INTERRUPTED, EXIT_OK)


def worst_exit(codes: list[int]) -> int:
    return next((c for c in _WORST_FIRST if c in codes), max(codes, default=EXIT_OK))


async def run_pairs(
    pairs: list[Settings],
    *,
    accounts: Accounts | None = None,
    max_net_usd: Decimal | None = None,
    on_started: Callable[[HedgeEngine], None] | None = None,
    on_finished: Callable[[Settings, BotRun], None] | None = None,
) -> list[BotRun]:
    """Every pair's run at once, on venue accounts the pairs share; one pair's halt stops that
    pair (legs balanced), the account guard (`max_net_usd`), a signal or one pair's error
    stops them all. Returns the runs in the pairs' order; an error is raised once all ended."""
    shared = accounts or shared_accounts(pairs[0])
    guard = _account_guard(pairs, max_net_usd)
    runs = _Engines(guard, on_started)
    started, stop_all = runs.started, runs.stop_all

    async def one(settings: Settings) -> BotRun:
        PAIR.set(settings.ticker)  # this task's log lines, and its children's, are the pair's
        maker, hedge = build_venues(settings, accounts=shared)
        try:
            bot = await run_bot(
                settings,
                maker=maker,
                hedge=hedge,
                on_started=started,
                install_signals=False,
                ids=shared.ids,
            )
        except BaseException:
            stop_all()  # a pair that cannot run (refused at connect) stops the others
            raise
        if on_finished is not None:
            on_finished(settings, bot)  # e.g. its halt told at once, the others still running
        return bot

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_all)
    watch = None if guard is None else asyncio.create_task(guard.run(), name="account-guard")
    try:
        results = await asyncio.gather(*(one(s) for s in pairs), return_exceptions=True)
    finally:
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return _runs(results)


class _Engines:
    """The engines of several pairs as they start: the account guard watches them, a stop
    reaches them all (even one that starts after it)."""

    def __init__(
        self, guard: AccountGuard | None, on_started: Callable[[HedgeEngine], None] | None
    ) -> None:
        self.engines: list[HedgeEngine] = []
        self.guard = guard
        self.on_started = on_started
        self.stopping = False

    def stop_all(self) -> None:
        self.stopping = True
        for engine in self.engines:
            engine.request_stop()

    def started(self, engine: HedgeEngine) -> None:
        self.engines.append(engine)
        if self.guard is not None:
            self.guard.engines.append(engine)
        if self.stopping:
            engine.request_stop()
        if self.on_started is not None:
            self.on_started(engine)


def _account_guard(pairs: list[Settings], max_net_usd: Decimal | None) -> AccountGuard | None:
    if max_net_usd is None:
        return None
    return AccountGuard(max_net_usd, min(p.hedge_timeout for p in pairs), time.monotonic)


def _runs(results: list[BotRun | BaseException]) -> list[BotRun]:
    """The pairs' runs, once all ended; the first pair's error raised, if any."""
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, BotRun)]

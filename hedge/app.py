"""Wiring: build the venues for a Settings, run the engine with signals, logs, journal, summary.

`runbot.py` commands call `run_bot`; the demo first starts the simulated venues in-process and
then runs exactly the same path against them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchanges.base import ConfigError, Venue
from hedge.config import Settings
from hedge.economics import MID
from hedge.engine import EngineStatus, HedgeEngine, RunResult
from hedge.journal import Journal
from hedge.report import summarize

log = logging.getLogger(__name__)


def build_venues(settings: Settings, *, paper: bool | None = None) -> tuple[Venue, Venue]:
    """Backpack (maker) and Lighter (hedge) for these settings; paper-wrapped for a dry run
    (`paper=False` gives the bare public-data venues of a dry run, for `check`)."""
    from exchanges.backpack import BackpackVenue
    from exchanges.common.budget import LIGHTER_TIERS, RequestBudget, backpack_limits
    from exchanges.lighter import LighterVenue

    def reveal(secret: Any) -> str | None:
        return None if secret is None else str(secret.reveal())

    maker: Venue = BackpackVenue(
        settings.ticker,
        api_url=settings.backpack_api_url,
        ws_url=settings.backpack_ws_url,
        public_key=None if settings.dry_run else reveal(settings.backpack_public_key),
        secret_key=None if settings.dry_run else reveal(settings.backpack_secret_key),
        budget=RequestBudget(backpack_limits(settings.backpack_rate_limit)),
    )
    hedge: Venue = LighterVenue(
        settings.ticker,
        api_url=settings.lighter_api_url,
        ws_url=settings.lighter_ws_url,
        private_key=None if settings.dry_run else reveal(settings.lighter_private_key),
        account_index=None if settings.dry_run else settings.lighter_account_index,
        api_key_index=None if settings.dry_run else settings.lighter_api_key_index,
        budget=RequestBudget(LIGHTER_TIERS[settings.lighter_account_tier]),
        fees=settings.hedge_fees,
    )
    if settings.dry_run if paper is None else paper:
        from hedge.paper import PaperVenue

        fees = settings.hedge_fees
        maker = PaperVenue(maker, role="maker", maker_fee=settings.backpack_maker_fee)
        hedge = PaperVenue(hedge, role="hedge", maker_fee=fees.maker, taker_fee=fees.taker)
    return maker, hedge


def _open_journal(settings: Settings, csv_path: Path) -> Journal:
    """The run's journal; one of another ticker or mode is refused (ConfigError, exit 2)."""
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
) -> BotRun:
    """Run the engine to its end; venues and journal are closed whatever happens."""
    if maker is None or hedge is None:
        maker, hedge = build_venues(settings)
    csv_path = (
        settings.log_dir / f"{settings.ticker}-trades{'-dry' if settings.dry_run else ''}.csv"
    )
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
    journal = _open_journal(settings, csv_path)
    engine = HedgeEngine(settings, maker, hedge, journal, status=status, presign=presign)
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
            journal.set_counter("over_hedges", engine.hedger.stats.over_hedges)
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


def unfinished_elsewhere(path: Path) -> Path | None:
    """When `path` is a new journal (a new day), the latest other journal of the same ticker
    whose last run did not finish well: its state is what a restart would need."""
    if path.exists():
        return None
    ticker = path.name.split("-", 1)[0]
    others = sorted(
        (p for p in path.parent.glob(f"{ticker}-*.sqlite") if p != path),
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

"""The live dashboard: one rich screen, redrawn a few times a second from in-memory state.

It reads the engine's status, the hedger's counters and the venues' book tops; it never asks a
venue anything over the network, so it costs a fraction of a core. `render()` builds the screen
as a renderable, so tests can draw it on a recording console.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from decimal import Decimal

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from exchanges.base import BookTop, Venue
from hedge.engine import EngineStatus, HedgeEngine
from hedge.report import percentile

log = logging.getLogger(__name__)

REFRESH_PER_SECOND = 3  # a few redraws a second; each costs ~6 ms of rich layout
# Latency percentiles over the most recent hedges only: the hedger keeps every latency of the
# run, and sorting all of them four times a second would grow the dashboard's cost with the run.
LATENCY_WINDOW = 1000


def _fmt(value: Decimal | None, places: int = 6) -> str:
    if value is None:
        return "-"
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


class Dashboard:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = EngineStatus()
        self.engine: HedgeEngine | None = None
        self._task: asyncio.Task[None] | None = None
        self._live: Live | None = None
        self.renders = 0
        # The demo shows the simulated venues' fault counters here.
        self.faults_seen: Callable[[], dict[str, int]] | None = None
        self.draw_failures = 0

    def attach(self, engine: HedgeEngine) -> None:
        self.engine = engine
        self._live = Live(self.render(), console=self.console, auto_refresh=False, transient=False)
        self._live.start()
        self._task = asyncio.create_task(self._refresh(), name="dashboard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._live is not None:
            try:
                self._draw()
            finally:
                self._live.stop()  # always give the terminal back
                self._live = None

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(1 / REFRESH_PER_SECOND)
            self._draw()

    def _draw(self) -> None:
        """One redraw. A display fault is logged and skipped: it must never end the run, nor
        surface from stop() in place of the run's own result."""
        if self._live is None:
            return
        try:
            self._live.update(self.render(), refresh=True)
        except Exception:
            self.draw_failures += 1
            if self.draw_failures == 1:  # once with the traceback, not four times a second
                log.exception("dashboard redraw failed")

    def _faults_text(self) -> str:
        fired = self.faults_seen() if self.faults_seen is not None else {}
        seen = {name: count for name, count in fired.items() if count}
        return ", ".join(f"{name} {count}" for name, count in sorted(seen.items())) or "none"

    @staticmethod
    def _pnl(engine: HedgeEngine) -> Decimal:
        """Cash of the run's fills minus fees, the open net valued at the mids."""
        assert engine.hedger is not None
        stats = engine.hedger.stats
        value = stats.cash - stats.fees
        for venue, net in (
            (engine.maker, engine.hedger.maker_net),
            (engine.hedge, engine.hedger.hedge_net),
        ):
            top = venue.top()
            if net and top is not None:
                value += net * top.mid
        return value

    def render(self) -> Group:
        self.renders += 1
        engine = self.engine
        # The engine's own status is the truth once attached (the same object when the engine
        # was built with status=dashboard.status).
        status = engine.status if engine is not None else self.status
        header = Text.assemble(
            ("hedgebot ", "bold"),
            f"state: {status.state}   iteration {status.iteration}/{status.iterations}   "
            f"{status.phase}",
        )
        if engine is None:
            return Group(Panel(header))
        maker, hedge = engine.maker, engine.hedge
        maker_top, hedge_top = maker.top(), hedge.top()
        legs = Table(show_header=True, header_style="bold", expand=True)
        for column in ("", engine.settings.ticker):
            legs.add_column(column)
        if engine.hedger is not None:
            for label, value in self._leg_rows(engine, status):
                legs.add_row(label, value)
        warnings = Text("\n".join(status.warnings) or "no warnings", style="yellow")
        return Group(
            Panel(header, subtitle=f"{maker.name} maker / {hedge.name} hedge"),
            _books_table(((maker, maker_top), (hedge, hedge_top))),
            Text(f"cross-venue spread: {_cross_spread(maker, maker_top, hedge, hedge_top)}"),
            Text(_order_line(status, maker_top)),
            legs,
            Panel(warnings, title="last warnings"),
        )

    def _leg_rows(self, engine: HedgeEngine, status: EngineStatus) -> list[tuple[str, str]]:
        """Positions, fills, volume, costs and hedge health of the run, one row each."""
        hedger = engine.hedger
        assert hedger is not None
        maker, hedge = engine.maker, engine.hedge
        stats = hedger.stats
        recent = list(itertools.islice(reversed(stats.latencies_ns), LATENCY_WINDOW))
        latencies = [ns / 1e6 for ns in recent]
        pnl = self._pnl(engine)
        return [
            (f"{maker.name} position", _fmt(engine.maker_position)),
            (f"{hedge.name} position", _fmt(engine.hedge_position)),
            ("net", _fmt(engine.maker_position + engine.hedge_position)),
            ("unhedged", f"{_fmt(hedger.unhedged)} (for {hedger.unhedged_age():.1f} s)"),
            ("fills maker / hedge", f"{stats.maker_fills} / {stats.hedge_fills}"),
            (
                "volume maker / hedge",
                f"{_fmt(stats.maker_volume, 2)} / {_fmt(stats.hedge_volume, 2)} USDC",
            ),
            (
                "fees maker / hedge",
                f"{_fmt(stats.fees_maker, 4)} / {_fmt(stats.fees - stats.fees_maker, 4)} USDC",
            ),
            ("PnL, open legs at the mids", f"{_fmt(pnl, 4)} USDC"),
            ("wear per 10k maker volume", _wear_text(pnl, stats.maker_volume)),
            (
                f"hedge latency p50 / p99 (last {LATENCY_WINDOW})",
                f"{percentile(latencies, 0.5):.3f} / {percentile(latencies, 0.99):.3f} ms",
            ),
            (
                "hedges sent / failed / escalations",
                f"{stats.hedges_sent} / {stats.hedge_failures} / {stats.escalations}",
            ),
            ("duplicates ignored", str(stats.duplicates_ignored)),
            ("re-quotes / post-only rejects", f"{status.requotes} / {status.post_only_rejects}"),
            (
                "reconnects",
                ", ".join(f"{v.name} {getattr(v, 'reconnects', 0)}" for v in (maker, hedge)),
            ),
            ("requests a minute (waiting, 429s)", _budget_text((maker, hedge))),
            ("faults seen", self._faults_text()),
        ]


class PairsDashboard(Dashboard):
    """The live screen of several pairs on one account: a row per pair, the account's totals,
    the shared request budgets, and the last warnings of every pair."""

    COLUMNS = (
        "pair",
        "state",
        "iter",
        "net",
        "unhedged",
        "fills m/h",
        "volume USDC",
        "PnL USDC",
        "wear/10k",
        "p99 ms",
        "failed",
    )

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.engines: list[HedgeEngine] = []

    def attach(self, engine: HedgeEngine) -> None:
        self.engines.append(engine)
        if self._live is None:
            super().attach(engine)

    def render(self) -> Group:
        self.renders += 1
        table = Table(show_header=True, header_style="bold", expand=True)
        for column in self.COLUMNS:
            table.add_column(column)
        volume = pnl = Decimal(0)
        fills = [0, 0]
        for engine in list(self.engines):
            row, engine_pnl = self._pair_row(engine)
            table.add_row(*row)
            if engine.hedger is not None:
                stats = engine.hedger.stats
                volume += stats.maker_volume
                pnl += engine_pnl
                fills[0] += stats.maker_fills
                fills[1] += stats.hedge_fills
        table.add_row(
            "[bold]account[/]",
            f"{len(self.engines)} pairs",
            "",
            "",
            "",
            f"{fills[0]} / {fills[1]}",
            _fmt(volume, 2),
            _fmt(pnl, 4),
            _wear_text(pnl, volume).removesuffix(" USDC"),
            "",
            "",
        )
        first = self.engines[0] if self.engines else None
        budget = _budget_text((first.maker, first.hedge)) if first is not None else "n/a"
        warnings = [
            f"{engine.settings.ticker} {line}"
            for engine in self.engines
            for line in engine.status.warnings
        ]
        return Group(
            Panel(Text("hedgebot", style="bold"), subtitle="backpack maker / lighter hedge"),
            table,
            Text(f"requests a minute (waiting, 429s), shared by the pairs: {budget}"),
            Text(f"faults seen: {self._faults_text()}"),
            Panel(
                Text("\n".join(sorted(warnings)[-8:]) or "no warnings", style="yellow"),
                title="last warnings",
            ),
        )

    def _pair_row(self, engine: HedgeEngine) -> tuple[list[str], Decimal]:
        status, hedger = engine.status, engine.hedger
        head = [engine.settings.ticker, status.state, f"{status.iteration}/{status.iterations}"]
        if hedger is None:
            return head + [""] * (len(self.COLUMNS) - len(head)), Decimal(0)
        stats = hedger.stats
        recent = list(itertools.islice(reversed(stats.latencies_ns), LATENCY_WINDOW))
        pnl = self._pnl(engine)
        row = [
            *head,
            _fmt(engine.maker_position + engine.hedge_position),
            _fmt(hedger.unhedged) + (f" {hedger.unhedged_age():.1f}s" if hedger.unhedged else ""),
            f"{stats.maker_fills} / {stats.hedge_fills}",
            _fmt(stats.maker_volume, 2),
            _fmt(pnl, 4),
            _wear_text(pnl, stats.maker_volume).removesuffix(" USDC"),
            f"{percentile([ns / 1e6 for ns in recent], 0.99):.3f}",
            str(stats.hedge_failures),
        ]
        return row, pnl


def _wear_text(pnl: Decimal, maker_volume: Decimal) -> str:
    """What the maker volume cost so far, per 10,000 of it (report: the split by cause)."""
    if not maker_volume:
        return "n/a (no maker volume yet)"
    return f"{_fmt(-pnl / maker_volume * 10_000, 2)} USDC"


def _budget_text(venues: tuple[Venue, ...]) -> str:
    """Each venue's request budget: used of capacity this minute, waiting, 429s answered."""
    parts = []
    for venue in venues:
        budget = getattr(venue, "budget", None)
        if budget is None:
            continue
        state = budget.snapshot()
        parts.append(
            f"{venue.name} {state['used']}/{state['capacity']} "
            f"({state['waiting']}, {state['rejected_429']})"
        )
    return ", ".join(parts) or "n/a"


def _books_table(venues: tuple[tuple[Venue, BookTop | None], ...]) -> Table:
    books = Table(show_header=True, header_style="bold", expand=True)
    for column in ("venue", "bid", "ask", "spread", "book age"):
        books.add_column(column)
    for venue, top in venues:
        if top is None:
            books.add_row(venue.name, "-", "-", "-", "-")
        else:
            age = time.monotonic() - top.updated_at
            books.add_row(
                venue.name,
                _fmt(top.bid, 4),
                _fmt(top.ask, 4),
                _fmt(top.spread, 4),
                f"{age:.1f} s",
            )
    return books


def _cross_spread(
    maker: Venue, maker_top: BookTop | None, hedge: Venue, hedge_top: BookTop | None
) -> str:
    if maker_top is None or hedge_top is None or not maker_top.mid:
        return "-"
    bps = (hedge_top.mid - maker_top.mid) / maker_top.mid * 10_000
    return f"{bps:.2f} bps ({hedge.name} mid - {maker.name} mid)"


def _order_line(status: EngineStatus, maker_top: BookTop | None) -> str:
    order = status.maker_order
    if order is None:
        return "maker order: none"
    age = time.monotonic() - status.maker_order_since
    distance = ""
    if maker_top is not None:
        best = maker_top.bid if order.side.value == "buy" else maker_top.ask
        distance = f", {_fmt(abs(order.price - best), 4)} from the top"
    return (
        f"maker order: {order.side.value} {_fmt(order.qty)} @ {_fmt(order.price, 4)} "
        f"(client {order.client_id}, {age:.1f} s{distance})"
    )

"""The live dashboard: what it draws, before and after an engine is attached, and its cost.

The dashboard reads only in-memory state: the engine's status, the hedger's counters and each
venue's `name`, `top()` and `reconnects`. The venue stand-ins below provide exactly that, and
nothing else, so a test fails loudly if the dashboard ever starts asking a venue for more (a
network call in a redraw would be a bug).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

import hedge.dashboard as dashboard_module
from exchanges.base import BookTop, Fill, Market, Order, OrderKind, Side
from hedge.config import Mode, Settings, TradingFlags, load_settings
from hedge.dashboard import REFRESH_PER_SECOND, Dashboard
from hedge.engine import EngineStatus, HedgeEngine
from hedge.hedger import ClientIds, Hedger
from hedge.journal import Journal
from tests.waiting import wait_for


@dataclass
class BookOnlyVenue:
    """A venue as the dashboard sees it: a name, a book top and a reconnect count."""

    name: str
    book: BookTop | None
    reconnects: int = 0

    def top(self) -> BookTop | None:
        return self.book


class BrokenBookVenue(BookOnlyVenue):
    def top(self) -> BookTop | None:
        raise RuntimeError("book exploded")


def book(bid: str, ask: str) -> BookTop:
    return BookTop(Decimal(bid), Decimal("1.5"), Decimal(ask), Decimal("2"), time.monotonic())


def recording_console() -> Console:
    return Console(record=True, width=120, file=io.StringIO())


def settings() -> Settings:
    return load_settings(
        TradingFlags(ticker="BTC", size="0.01", iterations="3"), mode=Mode.DRY_RUN, env={}
    )


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    book_ = Journal(tmp_path / "dash.sqlite")
    book_.start_run(mode="dry_run", ticker="BTC", settings={})
    try:
        yield book_
    finally:
        book_.close()


def make_engine(
    journal: Journal,
    *,
    maker: BookOnlyVenue | None = None,
    status: EngineStatus | None = None,
    with_hedger: bool = True,
) -> HedgeEngine:
    maker = maker or BookOnlyVenue("backpack", book("65000.1", "65000.2"), reconnects=2)
    hedge = BookOnlyVenue("lighter", book("65001.0", "65001.5"), reconnects=1)
    engine = HedgeEngine(settings(), maker, hedge, journal, status=status)  # type: ignore[arg-type]
    if with_hedger:
        market = Market(
            "lighter", "BTC", "BTC", Decimal("0.1"), Decimal("0.00001"), Decimal("0.0002")
        )
        hedger = Hedger(
            hedge,  # type: ignore[arg-type]
            journal,
            market=market,
            maker_venue_name="backpack",
            max_slippage_bps=Decimal(20),
            hedge_timeout=5.0,
            client_ids=ClientIds(journal),
            on_halt=lambda reason: None,
        )
        hedger.paused = True  # count fills, send nothing: these venues cannot trade
        engine.hedger = hedger
    return engine


def maker_fill(trade_id: str, qty: str, side: Side = Side.BUY) -> Fill:
    return Fill(
        "backpack", "BTC_USDC_PERP", trade_id, "o1", 1, side, Decimal(qty), Decimal("65000")
    )


def hedge_fill(trade_id: str, qty: str, side: Side = Side.SELL) -> Fill:
    return Fill("lighter", "BTC", trade_id, "o2", 2, side, Decimal(qty), Decimal("65001"))


def draw(dashboard: Dashboard) -> str:
    dashboard.console.print(dashboard.render())
    return dashboard.console.export_text()


def test_renders_the_status_before_an_engine_is_attached() -> None:
    dashboard = Dashboard(recording_console())
    dashboard.status.state = "connecting"
    text = draw(dashboard)
    assert "hedgebot" in text
    assert "state: connecting" in text
    assert "iteration 0/0" in text
    assert dashboard.renders == 1


def test_renders_state_books_positions_and_warnings_with_an_engine(journal: Journal) -> None:
    dashboard = Dashboard(recording_console())
    engine = make_engine(journal, status=dashboard.status)
    assert engine.hedger is not None
    engine.hedger.on_maker_event(maker_fill("m1", "0.02"))
    engine.hedger.on_maker_event(maker_fill("m1", "0.02"))  # duplicate: ignored
    engine.hedger.on_hedge_event(hedge_fill("h1", "0.015"))
    status = engine.status
    status.state = "quoting"
    status.iteration = 2
    status.phase = "open (buy)"
    status.maker_order = Order(
        "backpack",
        "BTC_USDC_PERP",
        4242,
        Side.BUY,
        Decimal("0.01"),
        Decimal("65000.1"),
        OrderKind.POST_ONLY,
    )
    status.maker_order_since = time.monotonic()
    status.requotes = 3
    status.warn("stale book: lighter")
    dashboard.engine = engine

    text = draw(dashboard)

    assert "state: quoting" in text and "iteration 2/3" in text and "open (buy)" in text
    assert "backpack maker / lighter hedge" in text
    for price in ("65000.1", "65000.2", "65001", "65001.5"):
        assert price in text
    assert "maker order: buy 0.01 @ 65000.1 (client 4242" in text
    assert "0 from the top" in text  # joined the best bid
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "0.02" in lines["backpack position"]
    assert "-0.015" in lines["lighter position"]
    assert "0.005" in lines["net"]
    assert "0.005" in lines["unhedged"]
    assert "1 / 1" in lines["fills maker / hedge"]
    assert "1" in lines["duplicates ignored"]
    assert "3 / 0" in lines["re-quotes / post-only rejects"]
    assert "backpack 2, lighter 1" in lines["reconnects"]
    assert "stale book: lighter" in text
    assert "bps (lighter mid - backpack mid)" in text


def test_shows_no_warnings_and_no_order_when_there_are_none(journal: Journal) -> None:
    dashboard = Dashboard(recording_console())
    dashboard.engine = make_engine(journal, status=dashboard.status)
    text = draw(dashboard)
    assert "no warnings" in text
    assert "maker order: none" in text


def test_reads_the_engines_status_even_when_built_with_its_own(journal: Journal) -> None:
    dashboard = Dashboard(recording_console())
    engine = make_engine(journal)  # not given dashboard.status
    engine.status.state = "hedging"
    engine.status.iteration = 1
    dashboard.engine = engine
    text = draw(dashboard)
    assert "state: hedging" in text and "iteration 1/3" in text


def test_a_venue_without_a_book_yet_shows_dashes(journal: Journal) -> None:
    dashboard = Dashboard(recording_console())
    dashboard.engine = make_engine(journal, maker=BookOnlyVenue("backpack", None))
    text = draw(dashboard)
    assert "cross-venue spread: -" in text
    backpack_row = next(line for line in text.splitlines() if "backpack" in line and "│" in line)
    assert backpack_row.count("-") >= 4


def test_renders_before_the_hedger_exists(journal: Journal) -> None:
    dashboard = Dashboard(recording_console())
    dashboard.engine = make_engine(journal, with_hedger=False)
    text = draw(dashboard)
    assert "65000.1" in text and "position" not in text


def test_render_cost_stays_under_five_percent_of_a_core(journal: Journal) -> None:
    # A terminal-like console (colours, no recording): what Live draws on.
    console = Console(width=120, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    dashboard = Dashboard(console)
    engine = make_engine(journal, status=dashboard.status)
    assert engine.hedger is not None
    engine.hedger.stats.latencies_ns.extend(range(200_000, 200_000 + 300_000))  # a long run
    for i in range(5):
        engine.status.warn(f"warning number {i}")
    dashboard.engine = engine
    console.print(dashboard.render())  # warm-up

    renders = 40
    started = time.process_time()
    for _ in range(renders):
        console.print(dashboard.render())
    per_render = (time.process_time() - started) / renders

    assert per_render * REFRESH_PER_SECOND < 0.05, f"{per_render * 1000:.2f} ms per render"


async def test_a_failing_redraw_neither_stops_the_refresh_nor_escapes_stop(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard_module, "REFRESH_PER_SECOND", 200)
    dashboard = Dashboard(recording_console())
    engine = make_engine(journal, status=dashboard.status)
    dashboard.attach(engine)
    await wait_for(lambda: dashboard.renders >= 3)

    engine.maker = BrokenBookVenue("backpack", None)  # type: ignore[assignment]
    await wait_for(lambda: dashboard.draw_failures >= 2)  # the refresh loop survived a failure

    await dashboard.stop()  # the final redraw fails too, but stop() returns normally
    assert dashboard._task is None and dashboard._live is None


async def test_stop_draws_a_last_frame_and_releases_the_console(journal: Journal) -> None:
    console = recording_console()
    dashboard = Dashboard(console)
    engine = make_engine(journal, status=dashboard.status)
    dashboard.attach(engine)
    engine.status.state = "done"
    await dashboard.stop()
    assert "state: done" in console.export_text()
    await dashboard.stop()  # idempotent

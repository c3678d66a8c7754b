"""The money figures of `report` (issue 15) against the simulated venues' own fill records."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from exchanges.sim.runner import BACKPACK_ACCOUNT, LIGHTER_ACCOUNT, SimCluster
from hedge.app import run_bot
from hedge.engine import HedgeEngine
from hedge.journal import Journal
from hedge.report import COST_KEYS
from tests.e2e.conftest import bot_settings, positions, sim_keys
from tests.waiting import wait_for

CENT = Decimal("0.01")


def _venue_fills(truth: dict[str, Any], venue: str, account: int) -> list[dict[str, Any]]:
    fills: list[dict[str, Any]] = truth["venues"][venue]["accounts"][str(account)]["fills"]
    return fills


def _cash_and_fees(fills: list[dict[str, Any]]) -> tuple[Decimal, Decimal]:
    """Quote received minus paid, and fees paid, of a venue's own fill records."""
    cash = Decimal(0)
    fees = Decimal(0)
    for fill in fills:
        sign = 1 if fill["side"] == "buy" else -1
        cash -= sign * Decimal(fill["qty"]) * Decimal(fill["price"])
        fees += Decimal(fill["fee"])
    return cash, fees


async def test_report_money_reconciles_with_the_venues_fills_to_the_cent(tmp_path: Path) -> None:
    """Premium tier, so both venues charge fees. Every money key of the report against the
    venues' records: fees per venue, realized PnL (the run ends flat), no open-leg PnL, the
    wear split adding up exactly, and the maker volume the wear is quoted against."""
    sim = SimCluster(seed=5, fill_rate=4.0, keys=sim_keys(), lighter_tier="premium")
    await sim.start()
    try:
        settings = bot_settings(sim, tmp_path, iterations="3")
        bot = await run_bot(settings, install_signals=False)
        truth = sim.truth()
        assert positions(sim) == (Decimal(0), Decimal(0))
    finally:
        await sim.stop()
    assert bot.result.exit_code == 0, bot.result.reason
    report = {key: Decimal(bot.summary[key]) for key in COST_KEYS}

    maker_cash, maker_fees = _cash_and_fees(_venue_fills(truth, "backpack", BACKPACK_ACCOUNT))
    hedge_cash, hedge_fees = _cash_and_fees(_venue_fills(truth, "lighter", LIGHTER_ACCOUNT))
    assert maker_fees > 0 and hedge_fees > 0  # both venues charged: the test can tell
    assert abs(report["fees_maker_quote"] - maker_fees) < CENT
    assert abs(report["fees_hedge_quote"] - hedge_fees) < CENT
    venue_pnl = maker_cash + hedge_cash - maker_fees - hedge_fees
    assert abs(report["pnl_realized_quote"] - venue_pnl) < CENT
    assert report["pnl_mark_quote"] == 0  # flat: nothing left to mark
    assert report["wear_quote"] == -(report["pnl_realized_quote"] + report["pnl_mark_quote"])
    parts = (
        report["fees_maker_quote"]
        + report["fees_hedge_quote"]
        + report["slippage_quote"]
        + report["adverse_quote"]
        - report["basis_quote"]
        + report["other_quote"]
    )
    assert abs(parts - report["wear_quote"]) <= Decimal("0.000005")  # rounding of 6 figures
    # Every maker fill was hedged by allocated hedges: the split explains the whole gross.
    assert abs(report["other_quote"]) < CENT
    volume = Decimal(bot.summary["maker_volume"])
    assert abs(report["wear_per_10k_quote"] - report["wear_quote"] / volume * 10_000) < CENT
    # Per cycle: every maker fill in one cycle; their costs add up to the run's, but `other`.
    cycles = bot.summary["per_cycle"]
    assert len(cycles) == bot.summary["cycles"] == 6
    assert sum(Decimal(c["maker_volume"]) for c in cycles) == volume
    cycle_wear = sum(Decimal(c["wear_quote"]) for c in cycles)
    assert abs(cycle_wear - (report["wear_quote"] - report["other_quote"])) < CENT


async def test_edge_mode_quotes_nothing_while_the_hedge_book_cannot_pay_it_back(
    cluster: SimCluster, tmp_path: Path
) -> None:
    """A minimum edge of 50 bps: no basis of this market pays it, so the engine waits (state
    "waiting for edge") and sends no maker order while the market moves, then stops cleanly."""
    settings = bot_settings(cluster, tmp_path, quote_mode="edge", min_edge_bps="50")
    engines: list[HedgeEngine] = []
    task = asyncio.create_task(run_bot(settings, install_signals=False, on_started=engines.append))
    await wait_for(
        lambda: bool(engines) and engines[0].status.state == "waiting for edge", 20, "waiting"
    )
    steps = cluster.market.steps
    await wait_for(lambda: cluster.market.steps >= steps + 30, 30, "30 market steps")
    assert engines[0].status.state == "waiting for edge"
    engines[0].request_stop()
    bot = await asyncio.wait_for(task, 30)

    assert bot.result.exit_code == 130
    assert bot.summary["maker_fills"] == 0
    journal = Journal(settings.journal, readonly=True)
    try:
        assert journal.query("SELECT COUNT(*) FROM orders") == [(0,)]
    finally:
        journal.close()


async def test_edge_mode_that_accepts_any_cost_trades_like_bbo(
    cluster: SimCluster, tmp_path: Path
) -> None:
    """A minimum edge of -50 bps puts the bound far beyond the touch: the quotes are bbo's, the
    iterations finish flat."""
    settings = bot_settings(cluster, tmp_path, quote_mode="edge", min_edge_bps="-50")
    bot = await run_bot(settings, install_signals=False)

    assert bot.result.exit_code == 0, bot.result.reason
    assert bot.summary["maker_fills"] >= 2 and bot.summary["double_hedges"] == 0
    assert positions(cluster) == (Decimal(0), Decimal(0))

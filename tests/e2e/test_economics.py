"""The money figures of `report` (issue 15) against the simulated venues' own fill records."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from exchanges.sim.runner import BACKPACK_ACCOUNT, LIGHTER_ACCOUNT, SimCluster
from hedge.app import run_bot
from hedge.report import COST_KEYS
from tests.e2e.conftest import bot_settings, positions, sim_keys

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

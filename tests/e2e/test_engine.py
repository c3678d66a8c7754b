"""Engine guarantees (DESIGN.md G1, G3, G5) against the simulated venues, faults on and off."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from exchanges.common.budget import DEFAULT_BACKOFF_S
from exchanges.sim.runner import BACKPACK_ACCOUNT, LIGHTER_ACCOUNT, SimCluster
from hedge.app import run_bot
from hedge.engine import HedgeEngine
from hedge.journal import Journal
from tests.e2e.conftest import bot_settings, positions
from tests.waiting import wait_for


def assert_every_maker_fill_hedged_once(journal_path: Path) -> None:
    journal = Journal(journal_path)
    try:
        for fill in journal.fills("backpack"):
            assert journal.allocated("backpack", fill.trade_id) == fill.qty, fill.trade_id
    finally:
        journal.close()


async def test_five_iterations_end_flat_with_every_fill_hedged_once(
    cluster: SimCluster, tmp_path: Path
) -> None:
    settings = bot_settings(cluster, tmp_path, iterations="5")

    bot = await run_bot(settings, install_signals=False)

    assert bot.result.exit_code == 0, bot.result.reason
    assert positions(cluster) == (Decimal(0), Decimal(0))
    assert bot.summary["cycles"] == 10
    assert bot.summary["double_hedges"] == 0
    assert Decimal(bot.summary["net_delta"]) == 0
    assert_every_maker_fill_hedged_once(settings.journal)
    # The journal's fills are exactly the venues' own fill records for our accounts.
    truth = cluster.truth()["venues"]
    sim_maker = truth["backpack"]["accounts"][str(BACKPACK_ACCOUNT)]["fills"]
    sim_hedge = truth["lighter"]["accounts"][str(LIGHTER_ACCOUNT)]["fills"]
    journal = Journal(settings.journal)
    try:
        journal_maker = {f.trade_id: f.qty for f in journal.fills("backpack")}
        assert journal_maker == {str(f["trade_id"]): Decimal(f["qty"]) for f in sim_maker}
        journal_hedge = sum((f.qty for f in journal.fills("lighter")), Decimal(0))
        assert journal_hedge == sum((Decimal(f["qty"]) for f in sim_hedge), Decimal(0))
    finally:
        journal.close()


async def test_stop_while_a_maker_order_rests_leaves_nothing_open(
    cluster: SimCluster, tmp_path: Path
) -> None:
    cluster.market.fill_rate = 0.0  # the maker order rests until we stop
    settings = bot_settings(cluster, tmp_path, iterations="3", fill_timeout="30")
    engines: list[HedgeEngine] = []
    task = asyncio.create_task(run_bot(settings, install_signals=False, on_started=engines.append))
    await wait_for(
        lambda: (
            bool(engines)
            and engines[0]._active is not None
            and engines[0]._active.order_id is not None
        ),
        15,
        "a resting maker order",
    )

    engines[0].request_stop()  # what the SIGINT/SIGTERM handler calls
    bot = await asyncio.wait_for(task, 30)

    assert bot.result.exit_code == 130
    truth = cluster.truth()["venues"]
    assert truth["backpack"]["accounts"][str(BACKPACK_ACCOUNT)]["open_orders"] == []
    lighter_accounts = truth["lighter"]["accounts"]
    assert lighter_accounts.get(str(LIGHTER_ACCOUNT), {"open_orders": []})["open_orders"] == []
    maker, hedge = positions(cluster)
    assert maker + hedge == 0


async def test_chaos_twenty_iterations_never_double_hedge(tmp_path: Path) -> None:
    from tests.e2e.conftest import sim_keys

    # Premium: on Standard (60 requests a minute) a chaotic thin book turns hedges into many
    # partial re-sends that can spend the minute, and a remainder then waits for the window
    # (seen: 17 s unhedged once in four runs), which is the tier's limit, not this test's subject.
    sim = SimCluster(
        seed=11, faults="chaos", fill_rate=6.0, keys=sim_keys(), lighter_tier="premium"
    )
    await sim.start()
    try:
        settings = bot_settings(sim, tmp_path, iterations="20", hedge_timeout="1.5")
        bot = await run_bot(settings, install_signals=False)
        # Let fills still in flight on the wire land before reading the venues' truth.
        maker, hedge = positions(sim)
    finally:
        await sim.stop()

    assert bot.result.exit_code in (0, 3), bot.result.reason
    assert bot.summary["double_hedges"] == 0
    assert abs(maker + hedge) <= Decimal("0.00001"), (maker, hedge)
    if bot.result.exit_code == 0:
        assert (maker, hedge) == (Decimal(0), Decimal(0))
        # Within the escalation ladder plus the pauses the venue itself imposed: each 429 it
        # answered closes the budget for a second (hedges included), which no bot can beat.
        rate_limited_s = bot.summary["requests"]["lighter"]["http_429"] * DEFAULT_BACKOFF_S
        assert bot.summary["unhedged_max_s"] <= 1.5 * 3 + 1 + rate_limited_s
    assert sum(sim.fault_plan.fired.values()) > 0  # the faults really happened


async def test_a_long_run_loses_no_fill_to_token_expiry_or_dropped_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Twenty minutes of a live run, test-sized: Lighter tokens that expire every few seconds
    and are not rotated in time (the venue ends the private subscription, as it may), and
    connections the venue closes at their maximum age. On the Standard tier."""
    from exchanges.lighter import LighterVenue
    from tests.e2e.conftest import sim_keys

    monkeypatch.setattr(LighterVenue, "token_ttl_s", 3)
    monkeypatch.setattr(LighterVenue, "token_margin_s", -60)  # never rotated before expiry
    caplog.set_level("INFO")
    sim = SimCluster(seed=7, fill_rate=4.0, keys=sim_keys(), lighter_connection_max_age_s=4.0)
    await sim.start()
    try:
        settings = bot_settings(sim, tmp_path, iterations="6")
        bot = await run_bot(settings, install_signals=False)
        maker, hedge = positions(sim)
        requests = sim.requests()
    finally:
        await sim.stop()

    assert bot.result.exit_code == 0, bot.result.reason
    assert (maker, hedge) == (Decimal(0), Decimal(0))
    assert bot.summary["double_hedges"] == 0
    assert_every_maker_fill_hedged_once(settings.journal)
    assert [r["http_429"] for r in requests.values()] == [0, 0]
    # It really happened: subscriptions ended by the venue, connections closed and reopened.
    assert "token expired" in caplog.text
    assert bot.summary["reconnects"] >= 1


@pytest.mark.parametrize(("ticker", "mode"), [("ETH", "demo"), ("BTC", "live")])
async def test_a_journal_of_another_ticker_or_mode_is_refused_before_anything_is_sent(
    cluster: SimCluster, tmp_path: Path, ticker: str, mode: str
) -> None:
    from exchanges.base import ConfigError

    path = tmp_path / "other.sqlite"
    other = Journal(path)
    other.start_run(mode=mode, ticker=ticker, settings={})
    other.close()
    settings = bot_settings(cluster, tmp_path, journal=str(path))  # a BTC demo run

    with pytest.raises(ConfigError, match=f"holds {ticker} {mode} runs"):
        await run_bot(settings, install_signals=False)

    assert cluster.requests()["backpack"]["send_tx"] == 0
    assert cluster.requests()["lighter"]["requests_total"] == 0

"""G9: only our orders are hedged. A trade someone else makes on the bot's accounts is an
external change: never hedged, never traded away, reported the same way live and at restart,
and handled by `--on-external-change` (issue 14, item 4).

The foreign trades are market orders placed straight into the simulator for the bot's own
accounts, with no client id, as a person trading by hand on the same account would.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from exchanges.base import Side
from exchanges.sim.runner import BACKPACK_ACCOUNT, LIGHTER_ACCOUNT, SimCluster
from hedge.app import BotRun, run_bot
from hedge.engine import HedgeEngine
from hedge.external import journaled
from hedge.journal import Journal
from tests.e2e.conftest import bot_settings, positions, sim_keys
from tests.waiting import wait_for

FOREIGN = Decimal("0.001")


def trade_by_hand(sim: SimCluster, venue: str, side: Side) -> None:
    account = BACKPACK_ACCOUNT if venue == "backpack" else LIGHTER_ACCOUNT
    worst = Decimal("1e9") if side is Side.BUY else Decimal(0)
    sim.market.book(venue, "BTC").place_market(account, side, FOREIGN, worst, client_id=None)  # type: ignore[arg-type]


async def run_with_foreign_trade(
    sim: SimCluster, tmp_path: Path, venue: str, side: Side, **flags: str
) -> BotRun:
    """A run in which someone trades on `venue` once the bot's first fill is hedged."""
    engines: list[HedgeEngine] = []

    async def trade_after_first_hedge() -> None:
        def first_hedged() -> bool:
            hedger = engines[0].hedger if engines else None
            return hedger is not None and hedger.stats.hedge_fills > 0 and hedger.settled

        await wait_for(first_hedged, 60, "the first hedge")
        trade_by_hand(sim, venue, side)

    settings = bot_settings(sim, tmp_path, iterations="2", **flags)
    task = asyncio.create_task(trade_after_first_hedge())
    try:
        return await run_bot(settings, install_signals=False, on_started=engines.append)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def started_sim() -> SimCluster:
    sim = SimCluster(seed=9, fill_rate=4.0, keys=sim_keys())
    await sim.start()
    return sim


def journaled_external(path: Path) -> list[tuple[str, str, Decimal]]:
    journal = Journal(path)
    try:
        return journaled(journal)
    finally:
        journal.close()


async def test_a_foreign_backpack_buy_while_running_is_not_hedged_and_halts(
    tmp_path: Path,
) -> None:
    sim = await started_sim()
    try:
        bot = await run_with_foreign_trade(sim, tmp_path, "backpack", Side.BUY)
        maker, hedge = positions(sim)
    finally:
        await sim.stop()

    assert bot.result.exit_code == 3, bot.result.reason
    assert "external change on backpack: +0.001 BTC" in bot.result.reason
    # The bot's own legs are balanced; the foreign buy is left exactly as it was made.
    assert maker + hedge == FOREIGN, (maker, hedge)
    assert [(v, q) for v, _, q in journaled_external(tmp_path / "journal.sqlite")] == [
        ("backpack", FOREIGN)
    ]
    assert bot.summary["external_changes"] == {"count": 1, "net": {"backpack": "0.001"}}


async def test_a_foreign_lighter_sell_while_running_is_not_traded_back(tmp_path: Path) -> None:
    sim = await started_sim()
    try:
        bot = await run_with_foreign_trade(sim, tmp_path, "lighter", Side.SELL)
        maker, hedge = positions(sim)
    finally:
        await sim.stop()

    assert bot.result.exit_code == 3, bot.result.reason
    assert "external change on lighter: -0.001 BTC" in bot.result.reason
    assert maker + hedge == -FOREIGN, (maker, hedge)
    assert bot.summary["double_hedges"] == 0


async def test_with_ignore_the_bot_trades_around_a_foreign_trade(tmp_path: Path) -> None:
    sim = await started_sim()
    try:
        bot = await run_with_foreign_trade(
            sim, tmp_path, "backpack", Side.BUY, on_external_change="ignore"
        )
        maker, hedge = positions(sim)
    finally:
        await sim.stop()

    assert bot.result.exit_code == 0, bot.result.reason
    # Every cycle ran; the bot's own legs are flat and the foreign buy is still there.
    assert bot.summary["cycles"] == 4
    assert (maker, hedge) == (FOREIGN, Decimal(0))


async def test_a_foreign_trade_while_the_bot_was_down_gives_the_same_outcome(
    tmp_path: Path,
) -> None:
    sim = await started_sim()
    try:
        settings = bot_settings(sim, tmp_path, iterations="1")
        first = await run_bot(settings, install_signals=False)
        assert first.result.exit_code == 0, first.result.reason
        trade_by_hand(sim, "backpack", Side.BUY)
        sent_before = sim.requests()["lighter"]["send_tx"]

        again = await run_bot(settings, install_signals=False)
        maker, hedge = positions(sim)
        sent_again = sim.requests()["lighter"]["send_tx"]

        ignored = await run_bot(
            bot_settings(sim, tmp_path, iterations="1", on_external_change="ignore"),
            install_signals=False,
        )
        after_ignore = positions(sim)
    finally:
        await sim.stop()

    assert again.result.exit_code == 3, again.result.reason
    assert "external change on backpack: +0.001 BTC" in again.result.reason
    assert (maker, hedge) == (FOREIGN, Decimal(0))  # nothing traded it away or hedged it
    assert sent_again == sent_before  # not one order on the hedge venue
    # Known now (journaled): with ignore the next run trades around it and ends flat.
    assert ignored.result.exit_code == 0, ignored.result.reason
    assert after_ignore == (FOREIGN, Decimal(0))

"""G3 against thin and empty hedge books: the legs end balanced (exit 0 or 3) or the bot says
exactly what is left (exit 4). Judged by the simulated venues' own positions, never by what the
bot believes.

The Lighter book is thinned the moment the bot's first maker order fills at the simulated
Backpack (a listener inside the simulator, so nothing races): the hedge of that fill, executed
300 ms later on Lighter's Standard tier, meets the thin book.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from exchanges.sim.market import OrderUpdate
from exchanges.sim.runner import BACKPACK_ACCOUNT, SimCluster
from hedge.app import run_bot
from hedge.engine import EngineStatus, HedgeEngine
from tests.e2e.conftest import bot_settings, positions, sim_keys
from tests.waiting import wait_for


def thin_on_first_fill(sim: SimCluster, qty: Decimal | None) -> list[int]:
    """Thin the Lighter book to `qty` per side when our first Backpack order fills; returns a
    list that records the thinning (one entry) so a test can tell it happened."""
    thinned: list[int] = []
    lighter_book = sim.market.book("lighter", "BTC")

    def on_order(update: OrderUpdate) -> None:
        if thinned or update.fill is None or update.order.account != BACKPACK_ACCOUNT:
            return
        thinned.append(1)
        lighter_book.set_thin(qty)

    sim.market.book("backpack", "BTC").on_order(on_order)
    return thinned


def unbalanced_line(text: str) -> str:
    return next(line for line in text.splitlines() if "NOT balanced" in line)


@pytest.mark.parametrize(
    ("thin", "restore_after_halt"),
    [
        (Decimal(0), False),
        (Decimal("0.0002"), False),
        (Decimal("0.0003"), False),
        (Decimal(0), True),
    ],
    ids=["empty", "0.0002", "0.0003", "empty-then-restored"],
)
async def test_a_thin_hedge_book_never_leaves_the_legs_unbalanced_unannounced(
    tmp_path: Path, thin: Decimal, restore_after_halt: bool
) -> None:
    sim = SimCluster(seed=5, fill_rate=4.0, keys=sim_keys())
    await sim.start()
    try:
        thinned = thin_on_first_fill(sim, thin)
        settings = bot_settings(sim, tmp_path, iterations="1", hedge_timeout="1")

        status = EngineStatus()

        async def restore_on_halt() -> None:
            await wait_for(lambda: bool(status.halt_reason), 120, "the halt")
            sim.market.book("lighter", "BTC").set_thin(None)

        restorer = asyncio.create_task(restore_on_halt()) if restore_after_halt else None
        bot = await run_bot(settings, install_signals=False, status=status)
        if restorer is not None:
            restorer.cancel()
            await asyncio.gather(restorer, return_exceptions=True)
        maker, hedge = positions(sim)
    finally:
        await sim.stop()

    assert thinned, "the first maker order never filled"
    code, net = bot.result.exit_code, maker + hedge
    assert code in (0, 3, 4), bot.result.reason
    if code == 4:
        # Exactly what the venues hold, named in the one loud line.
        line = unbalanced_line(bot.result.reason)
        assert f"{abs(net)} BTC left uncovered" in line, line
        assert net != 0
    else:
        assert net == 0, (bot.result.reason, maker, hedge)
    with contextlib.closing(sqlite3.connect(f"file:{settings.journal}?mode=ro", uri=True)) as db:
        ended = db.execute("SELECT exit_code FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    assert ended[0] == code


async def test_a_stop_during_a_partial_hedge_ends_with_the_legs_balanced(tmp_path: Path) -> None:
    """Issue 14, item 1: a SIGINT while a partly filled hedge was being re-sent ended with
    +0.00013 left. The stop now waits for the hedges, closes any remainder, and says so."""
    sim = SimCluster(seed=5, fill_rate=4.0, keys=sim_keys())
    await sim.start()
    engines: list[HedgeEngine] = []
    try:
        thin_on_first_fill(sim, Decimal("0.0003"))
        settings = bot_settings(sim, tmp_path, iterations="2", hedge_timeout="2")

        async def stop_after_first_partial() -> None:
            def partly_hedged() -> bool:
                hedger = engines[0].hedger if engines else None
                return hedger is not None and hedger.stats.hedge_fills > 0 and not hedger.settled

            await wait_for(partly_hedged, 60, "a partly filled hedge")
            engines[0].request_stop()

        stopper = asyncio.create_task(stop_after_first_partial())
        bot = await run_bot(settings, install_signals=False, on_started=engines.append)
        await stopper
        maker, hedge = positions(sim)
    finally:
        await sim.stop()

    code, net = bot.result.exit_code, maker + hedge
    assert code in (130, 3, 4), bot.result.reason
    if code == 4:
        assert f"{abs(net)} BTC left uncovered" in unbalanced_line(bot.result.reason)
    else:
        assert net == 0, (bot.result.reason, maker, hedge)

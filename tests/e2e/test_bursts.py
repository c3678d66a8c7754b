"""G8: a burst of 5xx/429 shorter than a minute never halts a run (issue 14, item 3).

The chaos demo halted on seeds 7, 11 and 13 when a cancel or a position read met a second of
5xx: the request's own retries ran out and the error reached the engine. Here the simulator is
made to answer every REST request with an error for a burst, at the moment the bot must cancel
its maker order (our orders never fill, so the cancel comes at each fill timeout).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from exchanges.sim.faults import FaultName
from exchanges.sim.runner import BACKPACK_ACCOUNT, SimCluster
from hedge.app import run_bot
from hedge.engine import HedgeEngine
from tests.e2e.conftest import bot_settings, positions, sim_keys
from tests.waiting import wait_for

BURST = 12  # REST answers in a row: more than any single request's own retries (4 or 7)


def resting(sim: SimCluster) -> set[int]:
    """Order ids of the bot's resting Backpack orders, from the simulator's own book."""
    book = sim.market.book("backpack", "BTC")
    return {order.order_id for order in book.open_orders(BACKPACK_ACCOUNT)}


@pytest.mark.parametrize("fault", ["http_503", "http_429"])
async def test_a_burst_of_venue_errors_at_a_cancel_does_not_halt(
    tmp_path: Path, fault: FaultName
) -> None:
    sim = SimCluster(seed=3, fill_rate=0.0, keys=sim_keys())
    await sim.start()
    engines: list[HedgeEngine] = []
    try:
        settings = bot_settings(sim, tmp_path, iterations="1", fill_timeout="1")

        async def burst_then_stop() -> None:
            await wait_for(lambda: bool(engines) and len(resting(sim)) == 1, 60, "a quote")
            before = resting(sim)
            sim.fault_plan.arm(fault, BURST)
            await wait_for(lambda: sim.fault_plan.fired[fault] >= BURST, 60, "the burst")
            # The bot rode the burst out: its order was cancelled and a new one rests.
            await wait_for(
                lambda: len(resting(sim)) == 1 and not resting(sim) & before,
                90,
                "a new quote after the burst",
            )
            engines[0].request_stop()

        driver = asyncio.create_task(burst_then_stop())
        bot = await run_bot(settings, install_signals=False, on_started=engines.append)
        await driver
        open_after = resting(sim)
        maker, hedge = positions(sim)
    finally:
        await sim.stop()

    assert bot.result.exit_code == 130, bot.result.reason
    assert open_after == set()
    assert (maker, hedge) == (Decimal(0), Decimal(0))

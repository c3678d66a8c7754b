"""The live dashboard during a chaos demo (issue 17): at 80×24 and at 120×40 the state, the
exposure, the failed-hedge count, the reconnects and the latest venue warning are on screen.

The bot runs against the simulated venues with the chaos fault preset; what the screen must
show is forced rather than awaited from luck: two invalid-nonce answers in a row make the next
hedge fail (the first is re-signed, the second refuses it: "not sent"), one dropped WebSocket
message makes a venue reconnect, and a venue warning is logged by an `exchanges.*` logger just
before the screen is drawn. Each size is drawn on a recording console of that size, and only
what lies within its first `height` lines counts as visible.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from pathlib import Path

from rich.console import Console

from exchanges.sim.runner import SimCluster
from hedge.app import run_bot
from hedge.dashboard import REFRESH_PER_SECOND, Dashboard
from hedge.engine import HedgeEngine
from tests.e2e.conftest import bot_settings, sim_keys
from tests.waiting import wait_for

SIZES = ((80, 24), (120, 40))


def reconnects(engine: HedgeEngine) -> tuple[int, int]:
    return getattr(engine.maker, "reconnects", 0), getattr(engine.hedge, "reconnects", 0)


def screen(dashboard: Dashboard, width: int, height: int) -> list[str]:
    """The lines a terminal of this size shows."""
    console = Console(record=True, width=width, height=height, file=io.StringIO())
    console.print(dashboard.render())
    return console.export_text().splitlines()[:height]


async def test_the_screen_shows_state_exposure_failures_reconnects_and_venue_warnings(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    sim = SimCluster(seed=7, faults="chaos", fill_rate=4.0, keys=sim_keys())
    await sim.start()
    # The live screen draws to a terminal-like sink; the test draws its own frames.
    live = Console(file=io.StringIO(), width=120, height=40, force_terminal=True)
    dashboard = Dashboard(live)
    dashboard.faults_seen = lambda: dict(sim.fault_plan.fired)
    engines: list[HedgeEngine] = []

    def started_with(engine: HedgeEngine) -> None:
        engines.append(engine)
        dashboard.attach(engine)

    settings = bot_settings(sim, tmp_path, iterations="40", hedge_timeout="3")
    run = asyncio.create_task(
        run_bot(
            settings,
            status=dashboard.status,
            on_started=started_with,
            install_signals=False,
        )
    )
    try:
        await wait_for(lambda: bool(engines) and engines[0].hedger is not None, 15, "a hedger")
        engine = engines[0]
        hedger = engine.hedger
        assert hedger is not None
        sim.fault_plan.arm("invalid_nonce", 2)  # the next hedge is refused: a failed hedge
        sim.fault_plan.arm("ws_drop", 1)  # a venue's socket drops: a reconnect
        await wait_for(
            lambda: hedger.stats.hedge_failures >= 1 and sum(reconnects(engine)) >= 1,
            20,
            "a failed hedge and a reconnect",
        )
        await wait_for(lambda: dashboard.renders >= 2, 2 / REFRESH_PER_SECOND + 2, "redraws")
        logging.getLogger("exchanges.lighter.user_stream").warning(
            "lighter: account stream stalled for 5.0 s (forced by the screen test)"
        )
        frames = {size: screen(dashboard, *size) for size in SIZES}
        failures = hedger.stats.hedge_failures
        maker_reconnects, hedge_reconnects = reconnects(engine)
        state = engine.status.state
        engine.request_stop()
        bot = await asyncio.wait_for(run, 30)
    finally:
        if not run.done():
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        await dashboard.stop()
        await sim.stop()

    for (width, height), lines in frames.items():
        text = "\n".join(lines)
        print(f"--- {width}×{height}\n{text}")
        assert all(len(line) <= width for line in lines)
        assert f"state: {state[:12]}" in lines[0], text  # a long state is clipped, not lost
        assert re.search(r"^exposure +(0 \(flat\)|-?[0-9.]+ BTC)", text, re.M), text
        assert re.search(rf"^hedges +.*\b{failures} failed\b", text, re.M), text
        assert re.search(
            rf"^reconnects +backpack {maker_reconnects}, lighter {hedge_reconnects}\b", text, re.M
        ), text
        assert "lighter.user_stream: lighter: account stream stalled for 5.0 s" in text, text
        assert re.search(r"warnings \d+: .*venues \d+", text), text
    assert bot.result.exit_code in (0, 130), bot.result.reason
    assert dashboard.draw_failures == 0
    assert time.monotonic() - started < 45

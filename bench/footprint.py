"""Footprint: CPU and memory of the bot idling while it quotes, against the simulated venues.

    python -m bench.footprint --seconds 60

The simulated venues run in their own process (`runbot.py sim --fill-rate 0`: our orders never
fill by themselves), and this process is the bot: `hedge.app.run_bot` with the real venues,
plain mode (no dashboard, file logging as `run --plain` sets up minus the console), a large fill
timeout so the maker order rests. Once the first maker order rests, the window opens:

- CPU: `resource.getrusage(RUSAGE_SELF)` user + system time over the window's wall time, as a
  percentage of one core (all of the process's threads);
- memory: VmRSS (and the peak, VmHWM) from /proc/self/status at the end of the window.

The bot keeps working during the window as it would for real: both books stream in, the order is
re-quoted when the book walks away from it, the Lighter hedge stays signed ahead (re-signed as
the price moves), the balance guard runs. Then the bot is stopped cleanly (exit 130).

The dashboard's own cost is measured after the window: the CPU time of one redraw of the live
screen (to a terminal-like console writing to /dev/null), times its refresh rate.

Prints one JSON line. The design budget: <= 2 % of a core, <= 150 MB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import SimProcess

BUDGET_CPU_PCT = 2.0
BUDGET_RSS_MB = 150.0
DRAWS = 20
REST_WAIT_S = 60.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    return float("nan")


async def _window(engine: Any, seconds: float, figures: dict[str, Any]) -> None:
    """Wait for a resting maker order, measure `seconds`, time the dashboard, stop the bot."""
    from exchanges.base import OrderStatus

    deadline = time.monotonic() + REST_WAIT_S
    while True:
        active = engine._active
        if active is not None and active.order_id is not None and active.status is OrderStatus.OPEN:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("no resting maker order")
        await asyncio.sleep(0.05)
    requotes = engine.status.requotes
    hedge = engine.hedge
    signs = int(getattr(hedge, "presign_signs", 0))
    messages = _ws_messages(engine)
    cpu0, wall0 = _cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, wall1 = _cpu_seconds(), time.monotonic()
    figures["window_s"] = round(wall1 - wall0, 2)
    figures["cpu_s"] = round(cpu1 - cpu0, 3)
    figures["cpu_pct_of_one_core"] = round((cpu1 - cpu0) / (wall1 - wall0) * 100, 2)
    figures["rss_mb"] = _status_mb("VmRSS")
    figures["rss_peak_mb"] = _status_mb("VmHWM")
    figures["requotes_in_window"] = engine.status.requotes - requotes
    figures["presign_signs_in_window"] = int(getattr(hedge, "presign_signs", 0)) - signs
    figures["ws_messages_per_s"] = round((_ws_messages(engine) - messages) / (wall1 - wall0), 1)
    figures["dashboard"] = await _dashboard_cost(engine)
    engine.request_stop()


def _ws_messages(engine: Any) -> int:
    """Frames both venues' WebSockets have read so far (book deltas mostly)."""
    return sum(
        int(getattr(getattr(venue, "_ws", None), "messages", 0))
        for venue in (engine.maker, engine.hedge)
    )


async def _dashboard_cost(engine: Any) -> dict[str, Any]:
    """CPU time of one redraw of the live dashboard, and what its refresh rate makes of it."""
    from rich.console import Console

    from hedge.dashboard import REFRESH_PER_SECOND, Dashboard

    # A terminal-like console whose output is dropped (the escape codes are still produced).
    console = Console(file=io.StringIO(), force_terminal=True, width=120, height=40)
    dashboard = Dashboard(console)
    dashboard.attach(engine)
    try:
        dashboard._draw()  # the first redraw builds rich's caches: not the steady cost
        start = time.thread_time()
        for _ in range(DRAWS):
            dashboard._draw()
        per_draw = (time.thread_time() - start) / DRAWS
    finally:
        await dashboard.stop()
    return {
        "ms_per_redraw": round(per_draw * 1000, 3),
        "redraws_per_s": REFRESH_PER_SECOND,
        "cpu_pct_of_one_core": round(per_draw * REFRESH_PER_SECOND * 100, 2),
    }


async def _run(sim: SimProcess, folder: Path, seconds: float, ticker: str, size: str) -> Any:
    import runbot
    from hedge.app import run_bot
    from hedge.config import Mode, TradingFlags
    from hedge.engine import HedgeEngine
    from hedge.logsetup import setup_logging

    flags = TradingFlags(
        ticker=ticker,
        size=size,
        iterations="1",
        direction="buy",
        fill_timeout=str(int(seconds) + 600),
        sleep="0",
        quote_mode="bbo",  # the window opens once the order rests: it must rest
        journal=str(folder / "footprint.sqlite"),
        log_dir=str(folder / "logs"),
    )
    settings = runbot.resolve_settings(flags, mode=Mode.LIVE, env_file=sim.env_file)
    setup_logging(settings.log_dir, name="bench-footprint", console=False)
    figures: dict[str, Any] = {}
    tasks: list[asyncio.Task[None]] = []

    def on_started(engine: HedgeEngine) -> None:
        tasks.append(asyncio.create_task(_window(engine, seconds, figures), name="window"))

    try:
        bot = await run_bot(settings, on_started=on_started, install_signals=False)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise RuntimeError(f"measurement failed: {task.exception()!r}")
    figures["exit_code"] = bot.result.exit_code
    return figures


def measure(*, seconds: float, ticker: str, size: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    started = time.monotonic()
    try:
        with SimProcess(folder / "sim") as sim:
            figures = asyncio.run(_run(sim, folder, seconds, ticker, size))
    finally:
        logging.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "bench": "footprint",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "plain (no dashboard), file logging",
        **figures,
        "budget": {
            "cpu_pct_of_one_core": BUDGET_CPU_PCT,
            "rss_mb": BUDGET_RSS_MB,
            "met": bool(
                figures["cpu_pct_of_one_core"] <= BUDGET_CPU_PCT
                and figures["rss_mb"] <= BUDGET_RSS_MB
            ),
        },
        "seconds": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    parser.add_argument("--ticker", default="BTC")
    parser.add_argument("--size", default="0.002")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    figures = measure(seconds=args.seconds, ticker=args.ticker, size=args.size)
    sys.stdout.write(json.dumps(figures, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

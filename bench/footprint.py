"""Footprint: CPU and memory of the bot idling while it quotes, against the simulated venues.

    python -m bench.footprint --seconds 60              # one pair (BTC)
    python -m bench.footprint --pairs 10 --seconds 60   # ten pairs in one process

The simulated venues run in their own process (`runbot.py sim --fill-rate 0`: our orders never
fill by themselves; it serves all ten simulated markets at once), and this process is the bot,
plain mode (no dashboard, file logging as `run --plain` sets up minus the console), a large
fill timeout so the maker orders rest:

- one pair (`--pairs 1`, the default): `hedge.app.run_bot` with the real venues, as
  `run --plain` runs it;
- N pairs (`--pairs N`, up to 10): `hedge.app.run_pairs` on the first N markets of the
  simulators' list (BTC ETH SOL DOGE XRP BNB SUI AVAX LINK HYPE), one engine and journal per
  pair over shared venue accounts (one WebSocket per venue, one request budget), as
  `run --ticker A,B,...` runs them.

Each pair quotes `max(Backpack min, Lighter min) x 10` of its market (the demo's default size;
0.002 for BTC) unless `--size` says otherwise (one pair only). Once every pair's first maker
order has rested, the window opens:

- CPU: `resource.getrusage(RUSAGE_SELF)` user + system time over the window's wall time, as a
  percentage of one core (all of the process's threads);
- memory: VmRSS (and the peak, VmHWM) from /proc/self/status at the end of the window.

The bot keeps working during the window as it would for real: the books stream in, the orders
are re-quoted when a book walks away from them, the Lighter hedges stay signed ahead (re-signed
as the price moves), the balance guards run. Then every pair is stopped cleanly (exit 130).

The dashboard's own cost is measured after the window, on the first pair's engine only (the
dashboard shows one pair): the CPU time of one redraw of the live screen (to a terminal-like
console writing to /dev/null), times its refresh rate.

Prints one JSON line, with per-pair facts (size, whether its order rested at the window's
start, its re-quotes and pre-signs in the window, its exit code). The design budget: one pair
<= 2 % of a core and <= 150 MB RSS; several pairs (up to ten) <= 15 % and <= 200 MB.
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
BUDGET_CPU_PCT_PAIRS = 15.0  # several pairs (up to MAX_PAIRS) in one process
BUDGET_RSS_MB_PAIRS = 200.0
MAX_PAIRS = 10  # the simulated venues' markets
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


def default_size(ticker: str) -> str:
    """The demo's default size on a simulated market: the larger venue minimum x 10."""
    from exchanges.sim.market import DEFAULT_TICKERS

    spec = DEFAULT_TICKERS[ticker]
    return format((max(spec.backpack.min_qty, spec.lighter.min_qty) * 10).normalize(), "f")


def _resting(engine: Any) -> bool:
    from exchanges.base import OrderStatus

    active = engine._active
    return active is not None and active.order_id is not None and active.status is OrderStatus.OPEN


async def _until_rested(engines: list[Any], count: int) -> float:
    """Wait until `count` engines have started and each has had its maker order rest (a pair
    re-quoting meanwhile still counts); the seconds waited."""
    start = time.monotonic()
    rested: set[int] = set()
    while len(engines) < count or len(rested) < count:
        rested.update(id(engine) for engine in engines if _resting(engine))
        if time.monotonic() - start > REST_WAIT_S:
            waiting = [e.settings.ticker for e in engines if id(e) not in rested]
            raise RuntimeError(
                f"no resting maker order within {REST_WAIT_S:.0f} s: {count - len(engines)} "
                f"pair(s) not started, not rested: {', '.join(waiting) or '-'}"
            )
        await asyncio.sleep(0.05)
    return round(time.monotonic() - start, 2)


async def _window(engines: list[Any], count: int, seconds: float, figures: dict[str, Any]) -> None:
    """Wait for every pair's resting maker order, measure `seconds`, time the dashboard (first
    pair), stop every pair (whatever happened)."""
    try:
        figures["rest_wait_s"] = await _until_rested(engines, count)
        await _measure(engines, seconds, figures)
        figures["dashboard"] = await _dashboard_cost(engines[0])
    finally:
        for engine in engines:
            engine.request_stop()


def _pair_counts(engine: Any) -> tuple[int, int]:
    """(re-quotes, pre-signs) of one pair so far."""
    return engine.status.requotes, int(getattr(engine.hedge, "presign_signs", 0))


async def _measure(engines: list[Any], seconds: float, figures: dict[str, Any]) -> None:
    """CPU and memory over `seconds` of quoting, and what the pairs did meanwhile."""
    resting = [_resting(engine) for engine in engines]
    before = [_pair_counts(engine) for engine in engines]
    messages = _ws_messages(engines)
    cpu0, wall0 = _cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, wall1 = _cpu_seconds(), time.monotonic()
    figures["window_s"] = round(wall1 - wall0, 2)
    figures["cpu_s"] = round(cpu1 - cpu0, 3)
    figures["cpu_pct_of_one_core"] = round((cpu1 - cpu0) / (wall1 - wall0) * 100, 2)
    figures["rss_mb"] = _status_mb("VmRSS")
    figures["rss_peak_mb"] = _status_mb("VmHWM")
    done = [
        (now[0] - then[0], now[1] - then[1])
        for now, then in zip((_pair_counts(e) for e in engines), before, strict=True)
    ]
    figures["requotes_in_window"] = sum(requotes for requotes, _ in done)
    figures["presign_signs_in_window"] = sum(signs for _, signs in done)
    figures["ws_messages_per_s"] = round((_ws_messages(engines) - messages) / (wall1 - wall0), 1)
    figures["ws_connections"] = len(_sockets(engines))
    figures["maker_orders_resting_at_start"] = sum(resting)
    figures["per_pair"] = {
        engine.settings.ticker: {
            "size": str(engine.settings.size),
            "resting_at_start": rests,
            "requotes": requotes,
            "presign_signs": signs,
        }
        for engine, rests, (requotes, signs) in zip(engines, resting, done, strict=True)
    }


def _sockets(engines: list[Any]) -> list[Any]:
    """The WebSockets the pairs read; the pairs of one venue account share one (counted once)."""
    found: dict[int, Any] = {}
    for engine in engines:
        for venue in (engine.maker, engine.hedge):
            ws = getattr(venue, "_ws", None)
            if ws is not None:
                found[id(ws)] = ws
    return list(found.values())


def _ws_messages(engines: list[Any]) -> int:
    """Frames the venues' WebSockets have read so far (book deltas mostly)."""
    return sum(int(getattr(ws, "messages", 0)) for ws in _sockets(engines))


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


def _settings(
    sim: SimProcess, folder: Path, seconds: float, pairs: list[tuple[str, str]]
) -> list[Any]:
    """One Settings per (ticker, size), each with its own journal, as `run` resolves them."""
    import runbot
    from hedge.config import Mode, TradingFlags

    one = len(pairs) == 1
    return [
        runbot.resolve_settings(
            TradingFlags(
                ticker=ticker,
                size=size,
                iterations="1",
                direction="buy",
                fill_timeout=str(int(seconds) + 600),
                sleep="0",
                quote_mode="bbo",  # the window opens once the orders rest: they must rest
                journal=str(folder / ("footprint.sqlite" if one else f"footprint-{ticker}.sqlite")),
                log_dir=str(folder / "logs"),
            ),
            mode=Mode.LIVE,
            env_file=sim.env_file,
        )
        for ticker, size in pairs
    ]


async def _run(
    sim: SimProcess, folder: Path, seconds: float, pairs: list[tuple[str, str]]
) -> dict[str, Any]:
    from hedge.app import run_bot, run_pairs, worst_exit
    from hedge.engine import HedgeEngine
    from hedge.logsetup import setup_logging

    settings = _settings(sim, folder, seconds, pairs)
    setup_logging(settings[0].log_dir, name="bench-footprint", console=False)
    figures: dict[str, Any] = {}
    engines: list[HedgeEngine] = []
    tasks: list[asyncio.Task[None]] = []

    def on_started(engine: HedgeEngine) -> None:
        engines.append(engine)
        if not tasks:  # one window for all the pairs
            window = _window(engines, len(settings), seconds, figures)
            tasks.append(asyncio.create_task(window, name="window"))

    try:
        if len(settings) == 1:  # the one-pair path users run
            bots = [await run_bot(settings[0], on_started=on_started, install_signals=False)]
        else:
            bots = await run_pairs(settings, on_started=on_started)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise RuntimeError(f"measurement failed: {task.exception()!r}")
    codes = [bot.result.exit_code for bot in bots]
    if "per_pair" not in figures:
        raise RuntimeError(f"the bot ended before the window closed (exit codes {codes})")
    for (ticker, _), code in zip(pairs, codes, strict=True):
        figures["per_pair"][ticker]["exit_code"] = code
    figures["exit_code"] = worst_exit(codes)
    return figures


def measure(*, seconds: float, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The footprint of the bot quoting `pairs` ((ticker, size) each) for `seconds`."""
    folder = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    started = time.monotonic()
    try:
        with SimProcess(folder / "sim") as sim:
            figures = asyncio.run(_run(sim, folder, seconds, pairs))
    finally:
        logging.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    several = len(pairs) > 1
    cpu_budget = BUDGET_CPU_PCT_PAIRS if several else BUDGET_CPU_PCT
    rss_budget = BUDGET_RSS_MB_PAIRS if several else BUDGET_RSS_MB
    return {
        "bench": "footprint",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "plain (no dashboard), file logging",
        "pairs": len(pairs),
        **figures,
        "budget": {
            "cpu_pct_of_one_core": cpu_budget,
            "rss_mb": rss_budget,
            "met": bool(
                figures["cpu_pct_of_one_core"] <= cpu_budget and figures["rss_mb"] <= rss_budget
            ),
        },
        "seconds": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
    }


def _pairs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[str, str]]:
    """(ticker, size) of each pair the flags ask for (parser.error on a bad combination)."""
    from exchanges.sim.market import DEFAULT_TICKERS

    if not 1 <= args.pairs <= MAX_PAIRS:
        parser.error(f"--pairs must be from 1 to {MAX_PAIRS}")
    if args.pairs > 1:
        if args.ticker is not None or args.size is not None:
            parser.error("--ticker and --size are for one pair; --pairs N sizes each market")
        return [(ticker, default_size(ticker)) for ticker in list(DEFAULT_TICKERS)[: args.pairs]]
    ticker = (args.ticker or "BTC").strip().upper()
    if ticker not in DEFAULT_TICKERS:
        parser.error(f"--ticker {ticker}: the simulated venues list {', '.join(DEFAULT_TICKERS)}")
    return [(ticker, args.size or default_size(ticker))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.footprint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    parser.add_argument(
        "--pairs", type=int, default=1, help=f"pairs quoted in one process (1..{MAX_PAIRS})"
    )
    parser.add_argument("--ticker", default=None, help="one pair's market (default BTC)")
    parser.add_argument("--size", default=None, help="one pair's size (default: min x 10)")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    figures = measure(seconds=args.seconds, pairs=_pairs(parser, args))
    sys.stdout.write(json.dumps(figures, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

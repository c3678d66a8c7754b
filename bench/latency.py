"""Fill -> hedge latency: the real bot against the simulated venues, beside a naive baseline.

    python -m bench.latency --fills 500

The simulated venues run in their own process (`runbot.py sim --fill-rate 0`), so nothing but
the bot runs on the bot's event loop. The bot is the one users run: settings resolved from the
sim's env file as `run --env-file` does, logging set up as `run` does (a file log), then
`hedge.app.run_bot` with the real BackpackVenue and LighterVenue. A driver on the bot's loop
fills each resting maker order in full through the sim's `POST /_sim/fill` as soon as it rests
(after its hedge is signed ahead, when that applies, and a few ms of rest), then waits for the
hedge to settle. Three configurations, one after the other, against the same sim process:

- `ours_presigned`: the default, hedges signed ahead (`run_bot(presign=True)`);
- `ours_sign_on_fill`: the same bot signing each hedge when the fill arrives (`presign=False`);
- `naive`: `bench/naive.py`, SDK defaults (see its docstring).

Per fill, two figures:
- in-process: the Backpack fill frame read off the socket (`Fill.recv_ns`) -> the hedge's sendTx
  request written to the socket (`LighterVenue.write_ns_by_client`), paired through
  `Hedger.stats.triggers`. Naive: frame handed over by `websockets` -> entry of
  `SignerClient.send_tx` (after signing; see bench/naive.py);
- end to end over loopback, both ends in the sim process: the orderFill event handed to the
  Backpack WebSocket -> the hedge's sendTx reaching the Lighter handler (`GET /_sim/timings`).

Prints one JSON line: p50/p90/p99/max (ms) per figure and configuration, and naive/ours ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.harness import FillTrigger, SimProcess, percentiles_ms, ratio

log = logging.getLogger(__name__)

POLL_S = 0.001  # the driver looks at the bot's state this often (never on the hot path)
REST_S = 0.005  # a maker order rests this long before it is filled: the bot's loop goes idle
ANSWER_AFTER_S = 0.25  # the fill request's answer is read once the hedge is out, or after this
HEDGE_WAIT_S = 10.0
PRESIGN_WAIT_S = 2.0
# The bar the signed-ahead path is held to: half DESIGN.md's budget (p50 0.5 / p99 2 ms), as
# the restructure promised (p50 <= 0.25 ms, p99 <= 1 ms in-process).
BUDGET_P50_MS = 0.25
BUDGET_P99_MS = 1.0
# The naive baseline reads Lighter's book over REST before each quote; a Premium minute's
# weights allow about 80 such reads, so by default it measures at most this many fills (more
# are measured, waiting out each 429, when asked for with --naive-fills).
NAIVE_DEFAULT_MAX = 50


@dataclass(slots=True)
class Fired:
    """One fill the driver asked for."""

    maker_client_id: int
    order_id: str
    presign_ready: bool
    last_write_ns: int = 0  # LighterVenue.last_write_ns once hedged (fallback pairing only)


@dataclass
class DriverState:
    fired: list[Fired] = field(default_factory=list)
    refused: int = 0  # fills the sim refused: the order was cancelled/re-quoted meanwhile


async def _fill_and_wait(
    trigger: FillTrigger, ticker: str, order_id: str, qty: str, hedged: Callable[[], bool]
) -> bool:
    """Fill one resting order; True once its hedge is out and settled, False if refused."""
    trigger.fire(ticker, order_id, qty)
    await _until(hedged, ANSWER_AFTER_S)
    status, body = await trigger.collect()
    if status != 200:
        log.info("sim refused the fill of %s: %s", order_id, body)
        return False
    if not await _until(hedged, HEDGE_WAIT_S):
        raise RuntimeError(f"no settled hedge {HEDGE_WAIT_S:g} s after filling {order_id}")
    return True


async def _until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll the bot's state (it offers no event to wait on, and the driver must not add any
    to the path it measures) until `condition` holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


async def _drive_ours(
    engine: Any, trigger: FillTrigger, ticker: str, presign: bool, state: DriverState
) -> None:
    """Fill every maker order of the engine once it rests, until cancelled."""
    from exchanges.base import OrderStatus

    hedge_venue = engine.hedge
    done_client: int | None = None
    while True:
        active = engine._active
        hedger = engine.hedger
        if (
            active is None
            or hedger is None
            or active.order_id is None
            or active.status is not OrderStatus.OPEN
            or active.client_id == done_client
        ):
            await asyncio.sleep(POLL_S)
            continue
        done_client = active.client_id
        ready = bool(presign and await hedge_venue.wait_presigned(PRESIGN_WAIT_S))
        await asyncio.sleep(REST_S)
        current = engine._active
        if current is None or current.client_id != active.client_id:
            continue  # cancelled and re-quoted meanwhile
        before = hedger.stats.hedges_sent

        def hedged(before: int = before, hedger: Any = hedger) -> bool:
            return bool(hedger.stats.hedges_sent > before and hedger.settled)

        # Recorded before the wait: the run may end (and cancel this task) right after the
        # last hedge settles.
        fired = Fired(active.client_id, str(active.order_id), ready)
        state.fired.append(fired)
        if await _fill_and_wait(trigger, ticker, str(active.order_id), str(active.qty), hedged):
            fired.last_write_ns = int(getattr(hedge_venue, "last_write_ns", 0))
        else:
            state.fired.remove(fired)
            state.refused += 1


def _journal_rows(
    path: Path, maker_venue: str, hedge_venue: str
) -> tuple[dict[int, tuple[str, int]], dict[str, int], dict[int, int]]:
    """(maker client id -> (trade id, recv_ns) of its first fill, maker trade id -> first hedge
    client id allocated to it, hedge client id -> sent_ns) from the run's journal."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        fills: dict[int, tuple[str, int]] = {}
        for client_id, trade_id, recv_ns in db.execute(
            "SELECT client_id, trade_id, recv_ns FROM fills WHERE venue = ? ORDER BY rowid",
            (maker_venue,),
        ):
            if client_id is not None:
                fills.setdefault(int(client_id), (str(trade_id), int(recv_ns)))
        allocations: dict[str, int] = {}
        for trade_id, hedge_client in db.execute(
            "SELECT maker_trade_id, hedge_client_id FROM allocations WHERE maker_venue = ? "
            "ORDER BY rowid",
            (maker_venue,),
        ):
            allocations.setdefault(str(trade_id), int(hedge_client))
        sent: dict[int, int] = {
            int(client_id): int(sent_ns)
            for client_id, sent_ns in db.execute(
                "SELECT client_id, sent_ns FROM orders WHERE venue = ? AND purpose = 'hedge' "
                "AND sent_ns IS NOT NULL",
                (hedge_venue,),
            )
        }
    finally:
        db.close()
    return fills, allocations, sent


@dataclass
class Measured:
    """Per-fill samples of one configuration (ns), keyed for the sim-side join."""

    in_process: list[int] = field(default_factory=list)
    to_hedger_send: list[int] = field(default_factory=list)  # frame read -> hedge decided
    send_to_write: list[int] = field(default_factory=list)  # hedge decided -> request written
    pairs: list[tuple[str, int]] = field(default_factory=list)  # (maker trade id, hedge cid)
    unpaired: int = 0
    pairing: str = "triggers"
    extra: dict[str, Any] = field(default_factory=dict)


async def run_ours(
    sim: SimProcess, folder: Path, *, ticker: str, size: str, fills: int, presign: bool
) -> Measured:
    """The real bot for `fills` maker fills (rounded up to whole iterations)."""
    import runbot
    from hedge.app import run_bot
    from hedge.config import Mode, TradingFlags
    from hedge.engine import HedgeEngine
    from hedge.logsetup import setup_logging

    label = "presigned" if presign else "sign_on_fill"
    iterations = max(1, math.ceil(fills / 2))
    flags = TradingFlags(
        ticker=ticker,
        size=size,
        max_position=size,
        iterations=str(iterations),
        direction="buy",
        fill_timeout="600",
        sleep="0",
        quote_mode="bbo",  # the driver fills each order as it rests: it must rest
        # One journal for both runs of ours: client ids stay unique across them.
        journal=str(folder / "ours.sqlite"),
        log_dir=str(folder / "logs"),
    )
    settings = runbot.resolve_settings(flags, mode=Mode.LIVE, env_file=sim.env_file)
    setup_logging(settings.log_dir, name=f"bench-latency-{label}", console=False)
    trigger = FillTrigger(sim.env["BACKPACK_API_URL"])
    await trigger.open()
    state = DriverState()
    engines: list[HedgeEngine] = []
    drivers: list[asyncio.Task[None]] = []

    def on_started(engine: HedgeEngine) -> None:
        engines.append(engine)
        drivers.append(
            asyncio.create_task(_drive_ours(engine, trigger, ticker, presign, state), name="drv")
        )

    started = time.monotonic()
    try:
        async with asyncio.timeout(120 + fills * 0.5):
            bot = await run_bot(
                settings, on_started=on_started, install_signals=False, presign=presign
            )
    finally:
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        trigger.close()
    for task in drivers:
        if not task.cancelled() and task.exception() is not None:
            raise RuntimeError(f"driver failed: {task.exception()!r}")
    if bot.result.exit_code != 0:
        raise RuntimeError(f"bot run ended with {bot.result.exit_code}: {bot.result.reason}")
    engine = engines[0]
    hedger, hedge_venue = engine.hedger, engine.hedge
    assert hedger is not None
    fills_by_client, allocations, sent = _journal_rows(
        settings.journal, engine.maker.name, hedge_venue.name
    )
    triggers = {start: client for start, client in hedger.stats.triggers}
    write_ns: dict[int, int] | None = getattr(hedge_venue, "write_ns_by_client", None)
    measured = Measured()
    if not triggers:
        measured.pairing = "journal_allocations"
    if write_ns is None:
        measured.pairing += "+last_write_ns"
    for fired in state.fired:
        row = fills_by_client.get(fired.maker_client_id)
        if row is None:
            measured.unpaired += 1
            continue
        trade_id, recv_ns = row
        hedge_client = triggers.get(recv_ns) or allocations.get(trade_id)
        if hedge_client is None:
            measured.unpaired += 1
            continue
        end = write_ns.get(hedge_client) if write_ns is not None else fired.last_write_ns
        if not end or end < recv_ns:
            measured.unpaired += 1
            continue
        measured.in_process.append(end - recv_ns)
        if hedge_client in sent and end >= sent[hedge_client] >= recv_ns:
            measured.to_hedger_send.append(sent[hedge_client] - recv_ns)
            measured.send_to_write.append(end - sent[hedge_client])
        measured.pairs.append((trade_id, hedge_client))
    measured.extra = {
        "fills": len(state.fired),
        "refused_fills": state.refused,
        "presign_ready_at_fill": sum(f.presign_ready for f in state.fired),
        "presigned_used": int(getattr(hedge_venue, "presigned_used", 0)),
        "signed_on_spot": int(getattr(hedge_venue, "signed_on_spot", 0)),
        "fast_sends": int(getattr(hedge_venue, "fast_sends", 0)),
        "seconds": round(time.monotonic() - started, 1),
    }
    return measured


async def run_naive(sim: SimProcess, *, ticker: str, size: str, fills: int) -> Measured:
    """The naive baseline for `fills` maker fills (rounded up to whole iterations)."""
    from bench.naive import NaiveBot

    bot = NaiveBot(sim.env, ticker, Decimal(size))
    trigger = FillTrigger(sim.env["BACKPACK_API_URL"])
    state = DriverState()

    async def drive() -> None:
        done_order: str | None = None
        while True:
            resting = bot.resting
            if resting is None or resting.order_id == done_order:
                await asyncio.sleep(POLL_S)
                continue
            done_order = resting.order_id
            await asyncio.sleep(REST_S)
            before = len(bot.hedges)

            def hedged(before: int = before) -> bool:
                return len(bot.hedges) > before and bot._filled.is_set()

            fired = Fired(resting.client_id, resting.order_id, False)
            state.fired.append(fired)
            if not await _fill_and_wait(trigger, ticker, resting.order_id, resting.qty, hedged):
                state.fired.remove(fired)
                state.refused += 1

    started = time.monotonic()
    await bot.start()
    await trigger.open()
    driver = asyncio.create_task(drive(), name="naive-driver")
    try:
        async with asyncio.timeout(120 + fills * 1.0):
            await bot.run(max(1, math.ceil(fills / 2)))
    finally:
        driver.cancel()
        await asyncio.gather(driver, return_exceptions=True)
        trigger.close()
        await bot.close()
    measured = Measured(pairing="naive_bot_records")
    for hedge in bot.hedges:
        if not hedge.ok or not hedge.send_ns:
            measured.unpaired += 1
            continue
        measured.in_process.append(hedge.send_ns - hedge.recv_ns)
        measured.to_hedger_send.append(hedge.call_ns - hedge.recv_ns)
        measured.pairs.append((hedge.trade_id, hedge.hedge_client_id))
    measured.extra = {
        "fills": len(state.fired),
        "refused_fills": state.refused,
        "hedge_errors": sum(1 for h in bot.hedges if not h.ok),
        "requotes": bot.requotes,
        "book_reads_answered_429": bot.waited_429,
        "seconds": round(time.monotonic() - started, 1),
    }
    return measured


async def profile_ours(
    sim: SimProcess, folder: Path, *, ticker: str, size: str, fills: int, top: int
) -> dict[str, Any]:
    """An extra signed-ahead pass under cProfile, enabled only while the maker WebSocket
    handler processes a frame that carries a fill: everything the bot does synchronously from
    the frame to the hedge (and, on the fast path, its sendTx write). Per-fill figures, in
    microseconds as measured under the profiler (which roughly doubles them)."""
    import cProfile
    import pstats

    from exchanges.backpack import BackpackVenue

    profiler = cProfile.Profile()
    original = BackpackVenue._on_frame

    def on_frame(self: BackpackVenue, frame: str | bytes, recv_ns: int) -> None:
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        if '"orderFill"' not in text:
            original(self, frame, recv_ns)
            return
        profiler.enable()
        try:
            original(self, frame, recv_ns)
        finally:
            profiler.disable()

    BackpackVenue._on_frame = on_frame  # type: ignore[method-assign]
    try:
        measured = await run_ours(sim, folder, ticker=ticker, size=size, fills=fills, presign=True)
    finally:
        BackpackVenue._on_frame = original  # type: ignore[method-assign]
    stats = pstats.Stats(profiler)
    n = max(1, int(measured.extra["fills"]))
    rows: list[dict[str, Any]] = []
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, name), (_, calls, own, cumulative, _callers) in raw.items():
        where = f"{Path(filename).name}:{line}({name})" if line else name
        rows.append(
            {
                "function": where,
                "calls_per_fill": round(calls / n, 2),
                "own_us_per_fill": round(own * 1e6 / n, 1),
                "cum_us_per_fill": round(cumulative * 1e6 / n, 1),
            }
        )
    rows.sort(key=lambda row: -float(row["cum_us_per_fill"]))
    return {
        "fills": n,
        "scope": "maker WS frame handler, frames carrying a fill (synchronous path only)",
        "in_process_ms_under_profiler": percentiles_ms(measured.in_process),
        "top_cumulative": rows[:top],
        "top_own": sorted(rows, key=lambda row: -float(row["own_us_per_fill"]))[:top],
    }


def _end_to_end(
    measured: Measured, written: dict[str, int], arrived: dict[str, int]
) -> tuple[list[int], int]:
    samples, missing = [], 0
    for trade_id, hedge_client in measured.pairs:
        start, end = written.get(trade_id), arrived.get(str(hedge_client))
        if start is None or end is None or end < start:
            missing += 1
            continue
        samples.append(end - start)
    return samples, missing


def _config_figures(
    measured: Measured, written: dict[str, int], arrived: dict[str, int], decided_key: str
) -> dict[str, Any]:
    e2e, missing = _end_to_end(measured, written, arrived)
    return {
        **measured.extra,
        "in_process_ms": percentiles_ms(measured.in_process),
        decided_key: percentiles_ms(measured.to_hedger_send),
        **(
            {"hedger_send_to_write_ms": percentiles_ms(measured.send_to_write)}
            if measured.send_to_write
            else {}
        ),
        "end_to_end_ms": percentiles_ms(e2e),
        "unpaired": measured.unpaired + missing,
        "pairing": measured.pairing,
    }


class VenueMinute:
    """The Lighter account's requests a minute, shared by the configurations run one after the
    other on it. Each configuration is a fresh bot with a fresh request budget (as a restarted
    bot is): when the next would not fit in what is left of the venue's minute, wait it out
    first, so that no measured hedge waits for a 429 the previous configuration caused."""

    START_REQUESTS = 10  # a run's own reads at start and end (bench.requests: 6-7)

    def __init__(self, per_minute: int | None) -> None:
        self.per_minute = per_minute
        self.spent = 0

    async def room_for(self, requests: int) -> None:
        needed = requests + self.START_REQUESTS
        if self.per_minute is not None and self.spent + needed > self.per_minute:
            sys.stderr.write("bench.latency: waiting 61 s for the venue's request minute\n")
            await asyncio.sleep(61)
            self.spent = 0
        self.spent += needed


async def _run_all(
    sim: SimProcess,
    folder: Path,
    *,
    ticker: str,
    size: str,
    fills: int,
    naive_fills: int,
    minute: VenueMinute,
) -> dict[str, Measured]:
    results: dict[str, Measured] = {}
    for name, presign in (("ours_presigned", True), ("ours_sign_on_fill", False)):
        await minute.room_for(fills)
        results[name] = await run_ours(
            sim, folder, ticker=ticker, size=size, fills=fills, presign=presign
        )
    if naive_fills > 0:
        await minute.room_for(2 * naive_fills)  # a book read and a hedge per fill
        results["naive"] = await run_naive(sim, ticker=ticker, size=size, fills=naive_fills)
    return results


def _pin(sim_pid: int) -> dict[str, list[int]] | None:
    """Put the sim process on the last CPU and this process (its threads are started later and
    inherit it) on the others, so the kernel never runs the sim on the bot's core: on a small
    machine, the sim woken by our own sendTx otherwise preempts the bot mid-send (~1 ms)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    os.sched_setaffinity(sim_pid, {cpus[-1]})
    os.sched_setaffinity(0, set(cpus[:-1]))
    return {"sim": [cpus[-1]], "bot": cpus[:-1]}


def measure(
    *,
    fills: int,
    naive_fills: int,
    ticker: str,
    size: str,
    keep: Path | None,
    profile_fills: int = 0,
    profile_top: int = 15,
    pin: bool = False,
    lighter_tier: str = "premium",
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-latency-")) if keep is None else keep
    started = time.monotonic()
    try:
        with SimProcess(folder / "sim", lighter_tier=lighter_tier) as sim:
            pinned = _pin(sim.pid) if pin else None
            from exchanges.sim.lighter_server import TIERS

            # Premium's 4,000 transactions a minute are never the bound here; Standard's 60 are.
            standard = lighter_tier == "standard"
            minute = VenueMinute(TIERS[lighter_tier].send_tx_per_minute if standard else None)
            results = asyncio.run(
                _run_all(
                    sim,
                    folder,
                    ticker=ticker,
                    size=size,
                    fills=fills,
                    naive_fills=naive_fills,
                    minute=minute,
                )
            )
            written, arrived = sim.timings()
            final = sim.account_state(ticker)
            profile = (
                asyncio.run(
                    profile_ours(
                        sim, folder, ticker=ticker, size=size, fills=profile_fills, top=profile_top
                    )
                )
                if profile_fills > 0
                else None
            )
    finally:
        logging.shutdown()
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    configs: dict[str, Any] = {}
    for name, measured in results.items():
        key = "to_sdk_call_ms" if name == "naive" else "to_hedger_send_ms"
        configs[name] = _config_figures(measured, written, arrived, key)
    ours = configs["ours_presigned"]
    ratios: dict[str, float | None] = {}
    if "naive" in configs:
        naive = configs["naive"]
        for figure in ("in_process_ms", "end_to_end_ms"):
            for q in ("p50", "p99"):
                name = f"{figure.removesuffix('_ms')}_{q}"
                ratios[name] = ratio(naive[figure][q], ours[figure][q])
                ratios[f"{name}_vs_sign_on_fill"] = ratio(
                    naive[figure][q], configs["ours_sign_on_fill"][figure][q]
                )
    in_process = ours["in_process_ms"]
    return {
        "bench": "latency",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fills_requested": fills,
        "naive_fills_requested": naive_fills,
        "ticker": ticker,
        "size": size,
        "configs": configs,
        "ratios_naive_over_ours": ratios,
        "budget": {
            "in_process_p50_ms": BUDGET_P50_MS,
            "in_process_p99_ms": BUDGET_P99_MS,
            "met": bool(
                in_process["n"]
                and in_process["p50"] <= BUDGET_P50_MS
                and in_process["p99"] <= BUDGET_P99_MS
            ),
        },
        "hedge_executed_ms": _executed(lighter_tier, ours["end_to_end_ms"]),
        "sim_final": final,
        "pinned": pinned,
        **({"profile": profile} if profile is not None else {}),
        "seconds": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def _executed(tier: str, end_to_end: dict[str, Any]) -> dict[str, Any]:
    """Fill -> hedge *executed* at the venue: the tier's taker delay (Lighter's sequencer holds
    a Standard account's IOC 300 ms, Premium's 200 ms) plus our end-to-end figure."""
    from exchanges.sim.lighter_server import TIERS

    delay_ms = TIERS[tier].taker_delay_s * 1000
    ours = {q: end_to_end.get(q) for q in ("p50", "p99")}
    return {
        "tier": tier,
        "venue_delay_ms": delay_ms,
        "ours_end_to_end_ms": ours,
        **{q: None if v is None else round(delay_ms + v, 4) for q, v in ours.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--fills", type=int, default=500, help="maker fills per configuration")
    parser.add_argument(
        "--naive-fills",
        type=int,
        default=None,
        help=f"fills for the naive baseline (default: --fills, at most {NAIVE_DEFAULT_MAX}; "
        "0 skips it)",
    )
    parser.add_argument("--ticker", default="BTC")
    parser.add_argument("--size", default="0.002", help="maker order size (= max position)")
    parser.add_argument("--keep", type=Path, default=None, help="keep logs and journal here")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run the sim process on its own CPU (as a remote venue would be), the bot on the rest",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="FILLS",
        help="afterwards, profile the signed-ahead fill path over this many more fills "
        "(cProfile; adds a 'profile' key)",
    )
    parser.add_argument(
        "--lighter-tier",
        default="premium",
        choices=("standard", "premium", "unlimited"),
        help="tier of the simulated Lighter account (default premium: hundreds of hedges in a "
        "row need more than a Standard minute's 60 requests; the in-process figure does not "
        "depend on the tier, and on Standard the bot paces its quotes to its budget)",
    )
    args = parser.parse_args(argv)
    if args.fills < 1:
        parser.error("--fills must be at least 1")
    naive_fills = (
        min(args.fills, NAIVE_DEFAULT_MAX) if args.naive_fills is None else args.naive_fills
    )
    if naive_fills < 0:
        parser.error("--naive-fills must not be negative")
    figures = measure(
        fills=args.fills,
        naive_fills=naive_fills,
        ticker=args.ticker,
        size=args.size,
        keep=args.keep,
        profile_fills=args.profile,
        pin=args.pin,
        lighter_tier=args.lighter_tier,
    )
    sys.stdout.write(json.dumps(figures, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

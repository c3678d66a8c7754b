"""Requests per maker fill: what the bot asks of each venue, counted by the venues themselves.

    python -m bench.requests --iterations 5 --tier standard --tier premium

For each Lighter tier: both simulated venues in this process (the demo's market, the tier's
delays and limits), the real bot for `--iterations` iterations (two maker fills each: open,
then close), then the simulators' request ledgers (`GET /_sim/requests`) for the bot's two
accounts: requests by endpoint, transactions, 429s answered. Divided by the maker fills the
journal recorded. Prints one JSON line.

Targets (issue 13): Lighter at most one request per maker fill plus 10 for start-up, periodic
reconciliation and shutdown; Backpack at most 2.5 per maker fill; no 429.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchanges.sim.runner import SimCluster
from hedge.config import Mode, TradingFlags, load_settings, with_endpoints

LIGHTER_ALLOWANCE = 10  # start-up, periodic reconciliation and shutdown, all together
BACKPACK_PER_FILL = 2.5


async def _measure_tier(tier: str, iterations: int, folder: Path) -> dict[str, Any]:
    from hedge.app import run_bot

    cluster = SimCluster(seed=0, lighter_tier=tier)
    await cluster.start()
    try:
        flags = TradingFlags(
            ticker="BTC",
            size="0.002",
            iterations=str(iterations),
            direction="alternate",
            fill_timeout="10",
            sleep="0.5",
            quote_mode="bbo",  # requests per fill, as the bot spends them with fills coming
            journal=str(folder / f"requests-{tier}.sqlite"),
            log_dir=str(folder),
        )
        settings = with_endpoints(load_settings(flags, mode=Mode.DEMO, env={}), cluster.env())
        started = time.monotonic()
        bot = await run_bot(settings, install_signals=False)
        seconds = time.monotonic() - started
        counts = cluster.requests()
    finally:
        await cluster.stop()
    fills = int(str(bot.summary["maker_fills"]))
    result: dict[str, Any] = {
        "exit_code": bot.result.exit_code,
        "maker_fills": fills,
        "seconds": round(seconds, 1),
    }
    for venue, ledger in counts.items():
        total = int(str(ledger["requests_total"]))
        result[venue] = {
            "requests": total,
            "per_maker_fill": round(total / fills, 2) if fills else None,
            "orders_or_txs": ledger["send_tx"],
            "http_429": ledger["http_429"],
            "by_endpoint": ledger["requests"],
        }
    lighter, backpack = result["lighter"], result["backpack"]
    result["targets_met"] = {
        "lighter": lighter["requests"] <= fills + LIGHTER_ALLOWANCE,
        "backpack": backpack["requests"] <= BACKPACK_PER_FILL * fills,
        "no_429": lighter["http_429"] == 0 and backpack["http_429"] == 0,
    }
    return result


def measure(*, iterations: int, tiers: list[str], keep: Path | None) -> dict[str, Any]:
    from hedge.logsetup import setup_logging

    folder = Path(tempfile.mkdtemp(prefix="bench-requests-")) if keep is None else keep
    folder.mkdir(parents=True, exist_ok=True)
    setup_logging(folder, name="bench-requests", console=False)
    try:
        per_tier = {tier: asyncio.run(_measure_tier(tier, iterations, folder)) for tier in tiers}
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return {
        "bench": "requests",
        "date": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
        "iterations": iterations,
        "tiers": per_tier,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__)
    parser.add_argument("--iterations", type=int, default=5, help="two maker fills each")
    parser.add_argument(
        "--tier",
        action="append",
        choices=("standard", "premium"),
        help="Lighter tier(s) to measure (default: both)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep logs and journals here")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    figures = measure(
        iterations=args.iterations, tiers=args.tier or ["standard", "premium"], keep=args.keep
    )
    sys.stdout.write(json.dumps(figures, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

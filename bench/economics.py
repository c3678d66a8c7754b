"""What maker volume costs: `bbo` and `edge` quoting side by side on one simulated market.

    python -m bench.economics            # 4 configurations, 8 minutes side by side

Every configuration gets its own simulated venues (`runbot.py sim --fill-rate 1`, its own
process) started with the same seed and market parameters, so all of them trade the same
price path and basis (`exchanges/sim/market.py`: 0.9 bps per √s, a Lighter basis of 3 bps
standard deviation with a 30 s half-life, maker orders filled only by taker flow sweeping the
book in price-time priority or by the price moving through them). All configurations run at
the same time in this process, each the real bot (`hedge.app.run_bot`, settings resolved from
the sim's env file as `run --env-file` does), one buy and one sell maker order per iteration,
until `--fills` maker fills or `--max-minutes` (then stopped; its open legs are marked at the
venues' mids). Nothing steers the fills: the market does.

Per configuration, from the run's journal (`hedge/report.py`, `hedge/economics.py`): maker
fills, maker volume, fills and volume per hour, wear per 10,000 USDC of maker volume and its
split by cause (maker fees, hedge fees, hedge slippage, adverse move during the hedge delay,
basis earned, other), and the venue-side truth at the end (positions, open orders).

Prints a table on stderr and one JSON line on stdout.
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
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.harness import SimProcess
from hedge.economics import SPLIT_KEYS

DEFAULT_CONFIGS = ("bbo", "edge:-2", "edge:-2.5", "edge:-3")
SPLIT = SPLIT_KEYS


@dataclass(frozen=True)
class Config:
    mode: str  # bbo | edge
    min_edge_bps: str  # edge mode only

    @property
    def name(self) -> str:
        return self.mode if self.mode == "bbo" else f"edge{self.min_edge_bps}bps"

    @classmethod
    def parse(cls, text: str) -> Config:
        mode, _, edge = text.partition(":")
        if mode not in ("bbo", "edge") or (mode == "edge") != bool(edge):
            raise ValueError(f"{text!r}: expected bbo or edge:<min edge bps>, e.g. edge:-1")
        if edge:
            Decimal(edge)  # raises for a non-number
        return cls(mode, edge or "0")


async def run_config(
    config: Config,
    sim: SimProcess,
    folder: Path,
    *,
    ticker: str,
    size: str,
    orders_per_leg: int,
    fills: int,
    max_seconds: float,
) -> dict[str, Any]:
    """One configuration: the real bot until `fills` maker fills or `max_seconds`."""
    import runbot
    from hedge.app import run_bot
    from hedge.config import Mode, TradingFlags
    from hedge.engine import HedgeEngine

    flags = TradingFlags(
        ticker=ticker,
        size=size,
        max_position=str(Decimal(size) * orders_per_leg),
        iterations=str(max(1, math.ceil(fills / (2 * orders_per_leg)))),
        direction="buy",
        fill_timeout="30",
        sleep="0",
        quote_mode=config.mode,
        min_edge_bps=config.min_edge_bps,
        journal=str(folder / f"{config.name}.sqlite"),
        log_dir=str(folder / "logs"),
    )
    settings = runbot.resolve_settings(flags, mode=Mode.LIVE, env_file=sim.env_file)
    watchers: list[asyncio.Task[None]] = []

    async def stop_at_deadline(engine: HedgeEngine) -> None:
        await asyncio.sleep(max_seconds)
        engine.request_stop()

    def on_started(engine: HedgeEngine) -> None:
        watchers.append(asyncio.create_task(stop_at_deadline(engine), name="bench-deadline"))

    started = time.monotonic()
    try:
        bot = await run_bot(settings, on_started=on_started, install_signals=False)
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    seconds = time.monotonic() - started
    summary = bot.summary
    hours = seconds / 3600
    volume = Decimal(summary["maker_volume"])
    per_10k = (lambda key: float(Decimal(summary[key]) / volume * 10_000)) if volume else None
    return {
        "mode": config.mode,
        "min_edge_bps": config.min_edge_bps if config.mode == "edge" else None,
        "exit": bot.result.exit_code,
        "seconds": round(seconds, 1),
        "maker_fills": summary["maker_fills"],
        "maker_volume": summary["maker_volume"],
        "fills_per_hour": round(summary["maker_fills"] / hours, 1),
        "volume_per_hour": round(float(volume) / hours, 2),
        "wear_per_10k": summary["wear_per_10k_quote"],
        "split_per_10k": {
            key.removesuffix("_quote"): round(per_10k(key), 4) if per_10k else None for key in SPLIT
        },
        "pnl_realized_quote": summary["pnl_realized_quote"],
        "pnl_mark_quote": summary["pnl_mark_quote"],
        "double_hedges": summary["double_hedges"],
        "net_delta": summary["net_delta"],
        "requests": summary["requests"],
    }


async def _run_all(
    configs: list[Config], sims: dict[str, SimProcess], folder: Path, **kwargs: Any
) -> dict[str, dict[str, Any]]:
    results = await asyncio.gather(
        *(run_config(c, sims[c.name], folder, **kwargs) for c in configs)
    )
    return {c.name: r for c, r in zip(configs, results, strict=True)}


def measure(
    configs: list[Config],
    *,
    fills: int,
    max_minutes: float,
    seed: int,
    ticker: str,
    size: str,
    orders_per_leg: int,
    lighter_tier: str,
    market: list[str],
    keep: Path | None,
) -> dict[str, Any]:
    from hedge.logsetup import setup_logging

    folder = Path(tempfile.mkdtemp(prefix="bench-economics-")) if keep is None else keep
    started = time.monotonic()
    sims: dict[str, SimProcess] = {}
    try:
        for config in configs:
            sims[config.name] = SimProcess(
                folder / f"sim-{config.name}",
                seed=seed,
                fill_rate=1.0,
                lighter_tier=lighter_tier,
                market=market,
            )
            sims[config.name].start()
        setup_logging(folder / "logs", name="bench-economics", console=False)
        results = asyncio.run(
            _run_all(
                configs,
                sims,
                folder,
                ticker=ticker,
                size=size,
                orders_per_leg=orders_per_leg,
                fills=fills,
                max_seconds=max_minutes * 60,
            )
        )
        for name, sim in sims.items():
            results[name]["sim_final"] = sim.account_state(ticker)
    finally:
        for sim in sims.values():
            sim.stop()
        logging.shutdown()
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return {
        "bench": "economics",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": seed,
        "ticker": ticker,
        "size": size,
        "max_position": str(Decimal(size) * orders_per_leg),
        "lighter_tier": lighter_tier,
        "market": market,
        "fills_requested": fills,
        "max_minutes": max_minutes,
        "configs": results,
        "seconds": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def table(figures: dict[str, Any]) -> str:
    """The figures as a plain text table, one configuration a row."""
    head = (
        f"{'config':<12}{'fills':>6}{'min':>6}{'fills/h':>9}{'volume/h':>12}{'wear/10k':>10}"
        f"{'mk fee':>8}{'hg fee':>8}{'slip':>8}{'advers':>8}{'basis':>8}{'other':>8}"
    )
    lines = [head]
    for name, row in figures["configs"].items():
        split = row["split_per_10k"]
        values = [split[key.removesuffix("_quote")] for key in SPLIT]
        cells = "".join(f"{math.nan if v is None else v:>8.3f}" for v in values)
        lines.append(
            f"{name:<12}{row['maker_fills']:>6}{row['seconds'] / 60:>6.1f}"
            f"{row['fills_per_hour']:>9.0f}{row['volume_per_hour']:>12.0f}"
            f"{float(row['wear_per_10k']):>10.3f}{cells}"
        )
    lines.append("(USDC; wear and its split per 10,000 USDC of maker volume; basis is earned)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.economics", description=__doc__)
    parser.add_argument(
        "--fills", type=int, default=1000, help="maker fills per configuration (at most)"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=8.0, help="stop a configuration after this long"
    )
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help="comma-separated: bbo, edge:<min edge bps> (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ticker", default="BTC")
    parser.add_argument("--size", default="0.002")
    parser.add_argument(
        "--orders-per-leg",
        type=int,
        default=100,
        help="max position = this many orders of --size: an iteration opens in this many "
        "fills and closes in as many (default %(default)s: room to wait for the basis)",
    )
    parser.add_argument(
        "--lighter-tier", default="standard", choices=("standard", "premium", "unlimited")
    )
    parser.add_argument(
        "--market",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a simulated market parameter, as `runbot.py sim --market` (repeatable)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep logs and journals here")
    args = parser.parse_args(argv)
    if args.fills < 1 or args.orders_per_leg < 1:
        parser.error("--fills and --orders-per-leg must be at least 1")
    if not args.max_minutes > 0:
        parser.error("--max-minutes must be above 0")
    try:
        configs = [Config.parse(text.strip()) for text in args.configs.split(",") if text.strip()]
    except (ValueError, ArithmeticError) as exc:
        parser.error(f"--configs {exc}")
    if len({c.name for c in configs}) != len(configs) or not configs:
        parser.error("--configs: name each configuration once")
    figures = measure(
        configs,
        fills=args.fills,
        max_minutes=args.max_minutes,
        seed=args.seed,
        ticker=args.ticker,
        size=args.size,
        orders_per_leg=args.orders_per_leg,
        lighter_tier=args.lighter_tier,
        market=args.market,
        keep=args.keep,
    )
    sys.stderr.write(table(figures) + "\n")
    sys.stdout.write(json.dumps(figures, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

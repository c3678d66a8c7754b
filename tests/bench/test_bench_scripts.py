"""Each benchmark script stays runnable: run it as users do (a subprocess, tiny N), parse its one
JSON line and check the figures are there and sane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PERCENTILE_KEYS = {"n", "p50", "p90", "p99", "max"}


def run_bench(module: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKPACK_", "LIGHTER_"))}
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout[-3000:]
    figures: dict[str, Any] = json.loads(lines[0])
    return figures


def check_percentiles(figures: dict[str, Any], n: int) -> None:
    assert set(figures) == PERCENTILE_KEYS
    assert figures["n"] == n
    assert 0 < figures["p50"] <= figures["p90"] <= figures["p99"] <= figures["max"]


def test_latency_measures_all_three_configurations_on_every_fill() -> None:
    figures = run_bench(
        "bench.latency", "--fills", "6", "--naive-fills", "2", "--lighter-tier", "standard"
    )

    assert figures["bench"] == "latency"
    configs = figures["configs"]
    assert set(configs) == {"ours_presigned", "ours_sign_on_fill", "naive"}
    for name, n in (("ours_presigned", 6), ("ours_sign_on_fill", 6), ("naive", 2)):
        config = configs[name]
        assert config["fills"] == n, config
        assert config["unpaired"] == 0, config
        check_percentiles(config["in_process_ms"], n)
        check_percentiles(config["end_to_end_ms"], n)
    presigned = configs["ours_presigned"]
    assert presigned["presigned_used"] == 6 and presigned["signed_on_spot"] == 0
    on_fill = configs["ours_sign_on_fill"]
    assert on_fill["presigned_used"] == 0 and on_fill["signed_on_spot"] == 6
    # Over loopback, the wire and the sim's own handling come on top of our time.
    assert configs["naive"]["in_process_ms"]["p50"] > presigned["in_process_ms"]["p50"]
    assert set(figures["ratios_naive_over_ours"]) >= {"in_process_p50", "end_to_end_p50"}
    assert isinstance(figures["budget"]["met"], bool)
    # Standard: the venue executes the hedge 300 ms after it arrives, on top of our time.
    executed = figures["hedge_executed_ms"]
    assert (executed["tier"], executed["venue_delay_ms"]) == ("standard", 300.0)
    assert executed["p50"] == round(300.0 + presigned["end_to_end_ms"]["p50"], 4)
    # Every run ends flat: each maker fill was hedged.
    final = figures["sim_final"]
    assert float(final["backpack_position"]) + float(final["lighter_position"]) == 0
    assert final["backpack_open_orders"] == 0


def test_connections_ours_reuses_one_connection_bpx_default_opens_one_per_request() -> None:
    figures = run_bench("bench.connections", "--orders", "5")

    assert figures["bench"] == "connections"
    assert figures["orders"] == 5
    assert figures["ours"]["order_connections"] <= 2
    assert figures["ours"]["connect_connections"] >= 1
    assert figures["bpx_default"]["order_connections"] == 10  # place + cancel, each its own
    assert figures["met"] is True


def test_footprint_reports_cpu_and_rss_of_the_quoting_bot() -> None:
    figures = run_bench("bench.footprint", "--seconds", "2")

    assert figures["bench"] == "footprint"
    assert figures["pairs"] == 1
    assert figures["window_s"] >= 2
    assert 0 <= figures["cpu_pct_of_one_core"] < 100
    assert 20 < figures["rss_mb"] < 1000
    assert figures["rss_peak_mb"] >= figures["rss_mb"]
    assert figures["dashboard"]["ms_per_redraw"] > 0
    assert figures["exit_code"] == 130  # stopped cleanly after the window
    assert isinstance(figures["budget"]["met"], bool)


def test_footprint_measures_several_pairs_quoting_in_one_process() -> None:
    """`--pairs 2`: BTC and ETH through `run_pairs`, one window once both orders rested; the
    figures are there (not the budgets: they depend on the machine's load)."""
    figures = run_bench("bench.footprint", "--pairs", "2", "--seconds", "2")

    assert figures["bench"] == "footprint"
    assert figures["pairs"] == 2
    assert figures["window_s"] >= 2
    assert figures["cpu_s"] > 0 and figures["cpu_pct_of_one_core"] > 0
    assert figures["rss_mb"] > 0 and figures["rss_peak_mb"] >= figures["rss_mb"]
    per_pair = figures["per_pair"]
    assert list(per_pair) == ["BTC", "ETH"]
    assert per_pair["BTC"]["size"] == "0.002" and per_pair["ETH"]["size"] == "0.05"
    resting = sum(pair["resting_at_start"] for pair in per_pair.values())
    assert figures["maker_orders_resting_at_start"] == resting
    assert figures["ws_connections"] == 2  # one per venue, shared by the pairs
    assert figures["dashboard"]["ms_per_redraw"] > 0
    assert [pair["exit_code"] for pair in per_pair.values()] == [130, 130]  # every pair stopped
    assert figures["exit_code"] == 130
    assert figures["budget"]["cpu_pct_of_one_core"] == 15.0
    assert figures["budget"]["rss_mb"] == 200.0
    assert isinstance(figures["budget"]["met"], bool)


def test_requests_counts_what_each_venue_received_per_maker_fill() -> None:
    figures = run_bench("bench.requests", "--iterations", "3", "--tier", "standard")

    assert figures["bench"] == "requests"
    standard = figures["tiers"]["standard"]
    assert standard["exit_code"] == 0 and standard["maker_fills"] >= 2
    for venue in ("lighter", "backpack"):
        counts = standard[venue]
        assert counts["requests"] == sum(counts["by_endpoint"].values())
        assert counts["http_429"] == 0
    # Every hedge is one sendTx: at least one per maker fill.
    assert standard["lighter"]["by_endpoint"]["/api/v1/sendTx"] >= standard["maker_fills"]
    assert standard["targets_met"]["no_429"] is True
    # Issue 13's targets: Lighter at most one request per maker fill plus 10 for start-up,
    # reconciliation and shutdown; Backpack's orders and cancels at most 2.5 per maker fill,
    # and its reads only at start-up and shutdown (as many for 6 fills as for 60).
    fills, backpack = standard["maker_fills"], standard["backpack"]
    assert standard["targets_met"]["lighter"] is True
    assert standard["lighter"]["requests"] <= fills + 10
    assert backpack["orders_or_txs"] <= 2.5 * fills
    assert backpack["requests"] - backpack["orders_or_txs"] <= 8


def test_economics_runs_each_configuration_on_its_own_market_and_splits_the_wear() -> None:
    """bbo, and an edge mode that accepts any cost (so it never waits for the basis and the run
    ends on its fills, not on the clock). Every figure is there; the split adds up."""
    figures = run_bench(
        "bench.economics",
        "--fills",
        "4",
        "--orders-per-leg",
        "2",
        "--max-minutes",
        "3",
        "--configs",
        "bbo,edge:-50",
        timeout=400,
    )

    assert figures["bench"] == "economics"
    assert set(figures["configs"]) == {"bbo", "edge-50bps"}
    for row in figures["configs"].values():
        assert row["exit"] == 0 and row["maker_fills"] >= 4, row
        assert row["double_hedges"] == 0 and Decimal(row["net_delta"]) == 0
        assert row["sim_final"]["backpack_position"] == "0.00000"
        assert row["sim_final"]["backpack_open_orders"] == 0
        split = row["split_per_10k"]
        explained = (
            split["fees_maker"]
            + split["fees_hedge"]
            + split["slippage"]
            + split["adverse"]
            - split["basis"]
            + split["other"]
        )
        assert abs(explained - float(row["wear_per_10k"])) < 0.01, row
        assert split["fees_maker"] == 2.0  # the simulated Backpack's maker fee, 2 bps
        assert row["fills_per_hour"] > 0 and row["volume_per_hour"] > 0

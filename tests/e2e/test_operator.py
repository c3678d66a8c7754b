"""What a trader meets first (issue 7): the offline demo, its report, a chaos demo, a dry run
that sends no order, and `flatten` cleaning up an account."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from exchanges.sim.runner import BACKPACK_ACCOUNT, LIGHTER_ACCOUNT, SimCluster
from hedge.app import run_bot
from hedge.config import Mode, TradingFlags, load_settings
from tests.e2e.conftest import ROOT, SimProcess, _env


def runbot(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "runbot.py"), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def venue_net(output: str) -> Decimal:
    """The net the simulated venues themselves report at the end of a demo."""
    match = re.search(
        r"simulated venues' own records: .* net (-?[0-9.E+-]+), open orders (\d+)", output
    )
    assert match, output[-2000:]
    assert match.group(2) == "0", "open orders left on the venues"
    return Decimal(match.group(1))


def test_demo_three_iterations_ends_flat_and_reports_it(tmp_path: Path) -> None:
    started = time.monotonic()
    demo = runbot("demo", "--iterations", "3", "--plain", cwd=tmp_path, timeout=120)
    elapsed = time.monotonic() - started

    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert elapsed < 90
    assert "Traceback" not in demo.stdout + demo.stderr
    tail = "\n".join(demo.stdout.strip().splitlines()[-2:])
    assert re.search(r"net delta 0(\.0+)? \| double hedges 0 \| exit: done", tail), tail
    assert venue_net(demo.stdout) == 0

    # The demo writes only demo-named files; report defaults to live journals and points at it.
    (journal,) = (tmp_path / "logs").glob("BTC-demo-*.sqlite")
    assert not [p.name for p in (tmp_path / "logs").iterdir() if "-live" in p.name]
    default = runbot("report", "--json", cwd=tmp_path, timeout=60)
    assert default.returncode == 2 and f"logs/{journal.name}" in default.stderr, default.stderr
    report = runbot("report", "--journal", str(journal), "--json", cwd=tmp_path, timeout=60)
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["double_hedges"] == 0
    assert Decimal(summary["net_delta"]) == 0
    assert summary["maker_fills"] >= 6 and summary["cycles"] == 6
    # The money in one line, the same figures as the report's.
    money = re.search(
        r"money: maker volume ([\d.]+) USDC, wear (-?[\d.]+) USDC per 10k", demo.stdout
    )
    assert money, demo.stdout[-1500:]
    assert Decimal(money[1]) == Decimal(summary["maker_volume"]).quantize(Decimal("0.01"))
    wear = Decimal(summary["wear_per_10k_quote"]).quantize(Decimal("0.01"))
    assert Decimal(money[2]) == wear
    assert "maker fees" in demo.stdout and "adverse" in demo.stdout


def test_chaos_demos_ride_out_their_bursts_and_end_flat_with_exit_0(tmp_path: Path) -> None:
    """Issue 14, item 3: `demo --faults chaos --seed 7` (also 11, 13) halted on a second of
    5xx/429. The three demos run side by side (each on its own simulated venues)."""
    seeds = ("7", "11", "13")
    for seed in seeds:
        (tmp_path / seed).mkdir()
    command = [sys.executable, str(ROOT / "runbot.py"), "demo", "--faults", "chaos", "--plain"]
    demos = {
        seed: subprocess.Popen(
            [*command, "--seed", seed],
            cwd=tmp_path / seed,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in seeds
    }
    outputs = {seed: demo.communicate(timeout=300) for seed, demo in demos.items()}

    for seed, (stdout, stderr) in outputs.items():
        assert demos[seed].returncode == 0, (seed, stdout[-3000:] + stderr[-2000:])
        assert "Traceback" not in stdout + stderr, seed
        assert venue_net(stdout) == 0, seed


async def test_dry_run_on_public_streams_places_no_order(tmp_path: Path) -> None:
    sim = SimCluster(seed=4, fill_rate=4.0)
    await sim.start()
    try:
        urls = {k: v for k, v in sim.env().items() if k.endswith("_URL")}  # no keys at all
        settings = load_settings(
            TradingFlags(
                ticker="BTC",
                size="0.002",
                iterations="3",
                fill_timeout="5",
                quote_mode="bbo",
                sleep="0",
                journal=str(tmp_path / "dry.sqlite"),
                log_dir=str(tmp_path),
            ),
            mode=Mode.DRY_RUN,
            env=urls,
        )
        bot = await run_bot(settings, install_signals=False)
        truth = sim.truth()["venues"]
    finally:
        await sim.stop()

    assert bot.result.exit_code == 0, bot.result.reason
    assert bot.summary["cycles"] == 6 and bot.summary["maker_fills"] >= 3
    assert Decimal(bot.summary["net_delta"]) == 0
    for venue in ("backpack", "lighter"):
        for account in truth[venue]["accounts"].values():
            assert account["open_orders"] == [] and account["fills"] == []
    assert str(BACKPACK_ACCOUNT) not in truth["backpack"]["accounts"]
    assert str(LIGHTER_ACCOUNT) not in truth["lighter"]["accounts"]


def test_flatten_yes_closes_both_venues(
    tmp_path: Path, make_sim: Callable[..., SimProcess]
) -> None:
    sim = make_sim("--fill-rate", "0")
    sim.call(
        sim.backpack,
        "order",
        {"account": BACKPACK_ACCOUNT, "ticker": "BTC", "side": "buy", "qty": "0.003"},
    )
    sim.call(
        sim.lighter,
        "order",
        {"account": LIGHTER_ACCOUNT, "ticker": "BTC", "side": "sell", "qty": "0.001"},
    )
    bid = Decimal(sim.call(sim.backpack, "truth")["mids"]["BTC"]) * Decimal("0.99")
    sim.call(
        sim.backpack,
        "order",
        {
            "account": BACKPACK_ACCOUNT,
            "ticker": "BTC",
            "side": "buy",
            "qty": "0.002",
            "price": str(bid.quantize(Decimal("0.1"))),
        },
    )
    assert sim.position("backpack") == Decimal("0.003")
    assert len(sim.account("backpack")["open_orders"]) == 1

    result = runbot("flatten", "--yes", "--env-file", str(sim.env_file), cwd=tmp_path, timeout=120)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "both venues flat" in result.stdout
    assert sim.position("backpack") == 0 and sim.position("lighter") == 0
    assert sim.account("backpack")["open_orders"] == []
    assert sim.account("lighter")["open_orders"] == []


def test_sim_starts_fast_and_check_connects_to_both_venues(tmp_path: Path) -> None:
    env_file = tmp_path / "s.env"
    started = time.monotonic()
    sim = subprocess.Popen(
        [sys.executable, str(ROOT / "runbot.py"), "sim", "--write-env", str(env_file)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not (env_file.exists() and "LIGHTER_WS_URL" in env_file.read_text()):
            assert time.monotonic() - started < 10, "the sim did not start"
            time.sleep(0.02)
        startup = time.monotonic() - started
        check = runbot(
            "check",
            "--env-file",
            str(env_file),
            "--ticker",
            "BTC",
            "--size",
            "0.01",
            cwd=tmp_path,
            timeout=120,
        )
    finally:
        sim.terminate()
        sim.wait(10)

    assert startup < 3.0, f"sim took {startup:.2f} s to be ready"
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    assert "Settings are valid" in check.stdout
    for expected in (
        "backpack: connected",
        "lighter: connected",
        "BTC_USDC_PERP",
        "tick size",
        "equity",
        "position",
        "Both venues answered",
        "Quote bound now: a maker buy is never above",  # edge mode, the default
        "Quote bound now: a maker sell is never below",
    ):
        assert expected in check.stdout, expected
    assert env_file.read_text().split("BACKPACK_SECRET_KEY=")[1].split()[0] not in check.stdout

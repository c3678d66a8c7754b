"""The bot and the simulated venues in separate processes, as a trader runs them: a real SIGINT,
and a kill -9 in the middle of a hedge followed by a restart on the same journal (G4, G5)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from tests.e2e.conftest import ROOT, SimProcess, _env, run_btc_argv
from tests.waiting import wait_until


def start_bot(folder: Path, sim: SimProcess, *args: str, log_name: str) -> subprocess.Popen[str]:
    log = (folder / log_name).open("w")
    return subprocess.Popen(
        run_btc_argv(
            sim.env_file, folder / "logs", "--journal", str(folder / "journal.sqlite"), *args
        ),
        cwd=folder,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigint_while_a_maker_order_rests_cancels_everything_and_exits_130(
    tmp_path: Path, make_sim: Callable[..., SimProcess]
) -> None:
    sim = make_sim("--fill-rate", "0")
    bot = start_bot(tmp_path, sim, "--iterations", "2", "--fill-timeout", "60", log_name="bot.out")
    wait_until(lambda: bool(sim.account("backpack")["open_orders"]), 60, "a resting maker order")

    bot.send_signal(signal.SIGINT)
    code = bot.wait(60)

    output = (tmp_path / "bot.out").read_text()
    assert code == 130, output[-2000:]
    assert "Traceback" not in output
    assert sim.account("backpack")["open_orders"] == []
    assert sim.account("lighter")["open_orders"] == []
    assert sim.position("backpack") + sim.position("lighter") == 0


def test_kill_9_mid_hedge_then_restart_hedges_the_missing_fill_once(
    tmp_path: Path, make_sim: Callable[..., SimProcess]
) -> None:
    sim = make_sim("--seed", "5")
    # Every hedge is refused (invalid nonce, even after the re-sign): the bot keeps retrying.
    sim.call(sim.lighter, "faults/arm", {"fault": "invalid_nonce", "count": 1_000_000})
    first = start_bot(
        tmp_path, sim, "--iterations", "1", "--hedge-timeout", "60", log_name="first.out"
    )
    wait_until(lambda: sim.position("backpack") != 0, 60, "a maker fill")
    assert sim.position("lighter") == 0  # unhedged: the bot is mid-hedge

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    unhedged = sim.position("backpack")
    sim.call(sim.lighter, "faults/disarm", {"fault": "invalid_nonce"})  # the venue recovers
    second = start_bot(tmp_path, sim, "--iterations", "1", log_name="second.out")
    code = second.wait(90)

    output = (tmp_path / "second.out").read_text()
    assert code == 0, output[-3000:]
    assert sim.position("backpack") == 0 and sim.position("lighter") == 0
    # The missing hedge went out once: Lighter's first executed trade covers exactly the fill
    # the killed bot left unhedged, and total hedge volume equals total maker volume.
    hedge_fills = sim.account("lighter")["fills"]
    maker_fills = sim.account("backpack")["fills"]
    first_hedge_order = hedge_fills[0]["order_id"]
    first_hedge_qty = sum(
        Decimal(f["qty"]) for f in hedge_fills if f["order_id"] == first_hedge_order
    )
    assert first_hedge_qty == abs(unhedged)
    assert sum(Decimal(f["qty"]) for f in hedge_fills) == sum(
        Decimal(f["qty"]) for f in maker_fills
    )
    report = subprocess.run(
        [
            sys.executable,
            str(ROOT / "runbot.py"),
            "report",
            "--json",
            "--journal",
            str(tmp_path / "journal.sqlite"),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    summary = json.loads(report.stdout)
    assert summary["double_hedges"] == 0
    assert Decimal(summary["net_delta"]) == 0

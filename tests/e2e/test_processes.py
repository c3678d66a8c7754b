"""The bot and the simulated venues in separate processes, as a trader runs them: a real SIGINT,
and a kill -9 in the middle of a hedge followed by a restart on the same journal (G4, G5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exchanges.sim.runner import BACKPACK_ACCOUNT, LIGHTER_ACCOUNT

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKPACK_", "LIGHTER_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class SimProcess:
    """`runbot.py sim` in its own process, steered over its /_sim/ control routes."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.env_file = folder / "sim.env"
        self.log = (folder / "sim.out").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "runbot.py"),
                "sim",
                "--write-env",
                str(self.env_file),
                *args,
            ],
            cwd=folder,
            env=_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(
            lambda: self.env_file.exists() and "LIGHTER_WS_URL" in self.env_file.read_text(),
            30,
            "the sim's env file",
        )
        values = dict(
            line.split("=", 1)
            for line in self.env_file.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        self.backpack = values["BACKPACK_API_URL"].rstrip("/")
        self.lighter = values["LIGHTER_API_URL"].rstrip("/")

    def call(self, base: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{base}/_sim/{path}",
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def account(self, venue: str) -> dict[str, Any]:
        truth = self.call(self.backpack, "truth")
        number = BACKPACK_ACCOUNT if venue == "backpack" else LIGHTER_ACCOUNT
        empty = {"open_orders": [], "fills": [], "positions": {}}
        return truth["venues"][venue]["accounts"].get(str(number), empty)

    def position(self, venue: str) -> Decimal:
        return Decimal(self.account(venue)["positions"].get("BTC", {"qty": "0"})["qty"])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[Callable[..., SimProcess]]:
    started: list[SimProcess] = []

    def start(*args: str) -> SimProcess:
        sim = SimProcess(tmp_path, *args)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def start_bot(folder: Path, sim: SimProcess, *args: str, log_name: str) -> subprocess.Popen[str]:
    log = (folder / log_name).open("w")
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "runbot.py"),
            "run",
            "--env-file",
            str(sim.env_file),
            "--ticker",
            "BTC",
            "--size",
            "0.002",
            "--plain",
            "--journal",
            str(folder / "journal.sqlite"),
            "--log-dir",
            str(folder / "logs"),
            *args,
        ],
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

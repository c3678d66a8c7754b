"""End-to-end harness: the real bot (engine + venue adapters) against the simulated venues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exchanges.sim.runner import BACKPACK_ACCOUNT, LIGHTER_ACCOUNT, SimCluster, SimKeys
from hedge.config import Mode, Settings, TradingFlags, load_settings
from tests.waiting import wait_until

_KEYS: SimKeys | None = None


def sim_keys() -> SimKeys:
    """One key set for the whole session (generating them is cheap, reusing is cheaper)."""
    global _KEYS
    if _KEYS is None:
        from exchanges.sim.backpack_server import generate_keypair
        from exchanges.sim.runner import generate_lighter_key

        bp_public, bp_secret = generate_keypair()
        lt_private, lt_public = generate_lighter_key()
        _KEYS = SimKeys(bp_public, bp_secret, lt_private, lt_public)
    return _KEYS


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    sim = SimCluster(seed=7, fill_rate=4.0, keys=sim_keys())
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def bot_settings(sim: SimCluster, tmp_path: Path, **flags: str) -> Settings:
    values = {
        "ticker": "BTC",
        "size": "0.002",
        "iterations": "2",
        "direction": "alternate",
        "fill_timeout": "3",
        "hedge_timeout": "2",
        "sleep": "0",
        # These tests are about hedging; edge quoting waits for the basis (tests of its own).
        "quote_mode": "bbo",
        "journal": str(tmp_path / "journal.sqlite"),
        "log_dir": str(tmp_path),
        **flags,
    }
    rebalance = values.pop("rebalance", "") == "yes"
    return load_settings(
        TradingFlags(**values, rebalance=rebalance),
        mode=Mode.DEMO,
        env=sim.env(),
        require_keys=True,
    )


def positions(sim: SimCluster, ticker: str = "BTC") -> tuple[Decimal, Decimal]:
    """(Backpack, Lighter) positions of the bot's accounts, from the sim's own truth."""
    maker = sim.market.account("backpack", BACKPACK_ACCOUNT).position(ticker).qty
    hedge = sim.market.account("lighter", LIGHTER_ACCOUNT).position(ticker).qty
    return maker, hedge


# -- the simulated venues in their own process (`runbot.py sim`) ------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKPACK_", "LIGHTER_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def isolated_env(folder: Path) -> dict[str, str]:
    """A bot subprocess's environment with its own temp dir (the Lighter key lock lives under
    it, so tests never meet each other's, or a real user's, locks) and no alert URL of the
    machine's."""
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    env = _env()
    env["TMPDIR"] = str(tmp)
    env.pop("HEDGEBOT_NOTIFY", None)
    return env


def runbot_argv(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "runbot.py"), *args]


def run_btc_argv(env_file: Path, log_dir: Path, *args: str) -> list[str]:
    """`runbot.py run` of 0.002 BTC against a simulator's env file, plain, quoting at the
    touch (bbo: the tests trade through the resting order), logs in `log_dir`."""
    return runbot_argv(
        "run",
        "--env-file",
        str(env_file),
        "--ticker",
        "BTC",
        "--size",
        "0.002",
        "--plain",
        "--quote-mode",
        "bbo",
        "--log-dir",
        str(log_dir),
        *args,
    )


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

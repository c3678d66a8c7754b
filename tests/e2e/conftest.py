"""End-to-end harness: the real bot (engine + venue adapters) against the simulated venues."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from exchanges.sim.runner import BACKPACK_ACCOUNT, LIGHTER_ACCOUNT, SimCluster, SimKeys
from hedge.config import Mode, Settings, TradingFlags, load_settings

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


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)

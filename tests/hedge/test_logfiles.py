"""Log files: rotated by size, and with several pairs tagged by pair with a file per pair."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchanges.common.tasks import PAIR
from hedge import logsetup


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in before:
        root.addHandler(handler)
    root.setLevel(level)


def test_a_log_file_rotates_by_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logsetup, "LOG_MAX_BYTES", 2_000)
    monkeypatch.setattr(logsetup, "LOG_BACKUPS", 2)
    path = logsetup.setup_logging(tmp_path, name="BTC-live")
    assert path is not None
    for n in range(200):
        logging.getLogger("hedge.test").info("line %d of a long run", n)
    rotated = sorted(p.name for p in tmp_path.glob(f"{path.name}.*"))
    assert rotated == [f"{path.name}.1", f"{path.name}.2"]  # at most LOG_BACKUPS kept
    assert all(p.stat().st_size <= 2_200 for p in tmp_path.glob(f"{path.name}*"))
    assert "line 199" in path.read_text()


def test_several_pairs_log_to_one_file_tagged_and_one_file_each(tmp_path: Path) -> None:
    path = logsetup.setup_logging(tmp_path, name="BTC+ETH-demo", pairs=("BTC", "ETH"))
    assert path is not None
    log = logging.getLogger("hedge.test")

    async def pair(ticker: str) -> None:
        PAIR.set(ticker)
        log.warning("a line of %s", ticker)

    async def both() -> None:  # each pair's task carries its pair, as in run_pairs
        await asyncio.gather(pair("BTC"), pair("ETH"))

    asyncio.run(both())
    log.warning("a line of the account")
    everything = path.read_text()
    assert "[BTC] hedge.test: a line of BTC" in everything
    assert "[ETH] hedge.test: a line of ETH" in everything
    assert "[account] hedge.test: a line of the account" in everything
    (btc,) = tmp_path.glob("BTC-demo-*.log")
    assert "a line of BTC" in btc.read_text()
    assert "ETH" not in btc.read_text() and "account" not in btc.read_text()

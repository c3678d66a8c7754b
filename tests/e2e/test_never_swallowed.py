"""Nothing on the hedge path is swallowed (issue 14, item 7): a journal that cannot be written,
or a failure while handling a venue event, stops the run with the legs balanced, judged by the
simulated venues' own positions. The failures are injected into our own code (that is where
such a bug would be); the venues are the real simulators.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exchanges.sim.runner import SimCluster
from hedge.app import run_bot
from hedge.hedger import Hedger
from hedge.journal import Journal
from tests.e2e.conftest import bot_settings, positions, sim_keys


def failing_after(calls: int, original: Callable[..., Any], error: Exception) -> Callable[..., Any]:
    """`original`, except that every call after the first `calls` raises `error`."""
    made = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        made[0] += 1
        if made[0] > calls:
            raise error
        return original(*args, **kwargs)

    return wrapper


async def run_on_sim(tmp_path: Path) -> tuple[int, str, Decimal, Decimal]:
    sim = SimCluster(seed=4, fill_rate=4.0, keys=sim_keys())
    await sim.start()
    try:
        bot = await run_bot(bot_settings(sim, tmp_path, iterations="3"), install_signals=False)
        maker, hedge = positions(sim)
    finally:
        await sim.stop()
    return bot.result.exit_code, bot.result.reason, maker, hedge


async def test_a_journal_that_cannot_be_written_halts_with_the_legs_balanced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer thread's allocations start failing after the first hedge (a full disk).
    broken = failing_after(1, Journal.allocate, OSError(28, "No space left on device"))
    monkeypatch.setattr(Journal, "allocate", broken)

    code, reason, maker, hedge = await run_on_sim(tmp_path)

    assert code == 3, reason
    assert "journal write failed" in reason and "No space left on device" in reason
    assert maker + hedge == 0


async def test_a_failure_handling_a_fill_halts_with_the_legs_balanced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug on the hedge path, on the second maker fill: the fill must not vanish.
    broken = failing_after(1, Hedger.on_maker_fill, RuntimeError("bug in the hedge path"))
    monkeypatch.setattr(Hedger, "on_maker_fill", broken)

    code, reason, maker, hedge = await run_on_sim(tmp_path)

    assert code == 3, reason
    assert "internal error handling a backpack event: RuntimeError" in reason
    # The fill the hedger never saw is on the venue: the kill switch balanced it from there.
    assert maker + hedge == 0


async def test_a_maker_order_the_venue_refuses_for_good_halts_instead_of_looping(
    tmp_path: Path,
) -> None:
    """Issue 14, item 5: `--size 5000` (over the market's maximum) was refused every 0.5 s
    forever. Past the CLI's own checks (run_bot directly), the engine halts after a few
    refusals in a row, with the venue's message, having traded nothing."""
    sim = SimCluster(seed=4, fill_rate=4.0, keys=sim_keys())
    await sim.start()
    try:
        settings = bot_settings(sim, tmp_path, size="5000", iterations="1")
        bot = await run_bot(settings, install_signals=False)
        maker, hedge = positions(sim)
        refused = sim.requests()["backpack"]["send_tx"]
    finally:
        await sim.stop()

    assert bot.result.exit_code == 3, bot.result.reason
    assert "backpack refused the maker order 5 times" in bot.result.reason
    assert (maker, hedge) == (Decimal(0), Decimal(0))
    assert refused == 5

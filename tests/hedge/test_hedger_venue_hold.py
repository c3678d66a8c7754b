"""A hedge the venue holds back (429s: "wait") is not a stuck hedge: the run does not halt for
it, and the time still shows as unhedged (G3 escalates what a wider price could fix)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from exchanges.base import Fill, Side
from tests.hedge.conftest import lighter_hedger

HEDGE_TIMEOUT_S = 0.3  # three of these without progress would halt a stuck hedge


async def test_a_hedge_held_by_the_venues_429s_is_sent_late_without_a_halt(
    tmp_path: Path,
) -> None:
    async with lighter_hedger(tmp_path, seed=6, hedge_timeout=HEDGE_TIMEOUT_S) as bed:
        hedger, venue = bed.hedger, bed.venue
        budget = venue.budget
        qty = venue.market().min_qty * 2
        # Four 429s in a row: the budget pauses 1 s after each (no Retry-After given), so the
        # hedge waits about 4 s, more than the 0.9 s after which a stuck hedge halts the run.
        bed.cluster.market.faults.arm("http_429", 4)
        price = Decimal(65000)
        fill = Fill("backpack", "BTC_USDC_PERP", "m1", "o1", 1, Side.BUY, qty, price, is_maker=True)
        hedger.on_maker_fill(fill)
        assert await hedger.wait_settled(20), f"not settled: exposure {hedger.exposure}"

        assert budget.rejected_429 == 4
        assert not bed.halts and not hedger.halted
        assert hedger.exposure == 0
        assert bed.venue_position() == -qty  # hedged once, by the venue's own record
        # The wait is not hidden: it shows as time unhedged.
        assert hedger.stats.max_unhedged_s > 3 * HEDGE_TIMEOUT_S

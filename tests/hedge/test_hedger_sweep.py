"""A remainder below the hedge venue's minimum is swept at the end: legs end exactly balanced."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from exchanges.base import Fill, Side
from tests.hedge.conftest import lighter_hedger


async def test_dust_below_the_minimum_is_swept_to_exactly_flat(tmp_path: Path) -> None:
    async with lighter_hedger(tmp_path, seed=2) as bed:
        hedger = bed.hedger
        market = bed.venue.market()
        dust = market.min_qty - market.step_size  # one step short of tradable
        hedger.on_maker_fill(
            Fill(
                "backpack",
                "BTC_USDC_PERP",
                "m1",
                "o1",
                1,
                Side.BUY,
                dust,
                Decimal("65000"),
                is_maker=True,
            )
        )
        assert await hedger.wait_settled(5)
        assert hedger.exposure == dust  # carried: nothing the venue would accept was sent

        assert hedger.sweep_dust()
        assert await hedger.wait_settled(10)

        assert hedger.exposure == 0
        assert bed.venue_position() == -dust  # sold dust + minimum, then bought the minimum
        assert hedger.stats.over_hedges == 0
        assert bed.journal.allocated("backpack", "m1") == dust
        assert not hedger.sweep_dust()  # nothing left to sweep

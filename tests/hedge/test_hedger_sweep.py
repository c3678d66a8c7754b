"""A remainder below the hedge venue's minimum is swept at the end: legs end exactly balanced."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from exchanges.base import Fill, Side
from exchanges.lighter import LighterVenue
from exchanges.sim.runner import LIGHTER_ACCOUNT, LIGHTER_API_KEY_INDEX, SimCluster
from hedge.hedger import ClientIds, Hedger
from hedge.journal import Journal
from tests.e2e.conftest import sim_keys


async def test_dust_below_the_minimum_is_swept_to_exactly_flat(tmp_path: Path) -> None:
    cluster = SimCluster(seed=2, fill_rate=0.0, keys=sim_keys())
    await cluster.start()
    env = cluster.env()
    venue = LighterVenue(
        "BTC",
        api_url=env["LIGHTER_API_URL"],
        ws_url=env["LIGHTER_WS_URL"],
        private_key=env["LIGHTER_API_PRIVATE_KEY"],
        account_index=LIGHTER_ACCOUNT,
        api_key_index=LIGHTER_API_KEY_INDEX,
    )
    journal = Journal(tmp_path / "j.sqlite")
    journal.start_run(mode="demo", ticker="BTC", settings={})
    try:
        await venue.connect()
        market = venue.market()
        hedger = Hedger(
            venue,
            journal,
            market=market,
            maker_venue_name="backpack",
            max_slippage_bps=Decimal(50),
            hedge_timeout=5.0,
            client_ids=ClientIds(journal),
            on_halt=lambda reason: None,
        )
        venue.set_event_callback(hedger.on_hedge_event)
        hedger.start()
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
        await hedger.close()

        assert hedger.exposure == 0
        position = cluster.market.account("lighter", LIGHTER_ACCOUNT).position("BTC").qty
        assert position == -dust  # sold dust + minimum, then bought the minimum back
        assert hedger.stats.over_hedges == 0
        assert journal.allocated("backpack", "m1") == dust
        assert not hedger.sweep_dust()  # nothing left to sweep
    finally:
        journal.close()
        await venue.close()
        await cluster.stop()

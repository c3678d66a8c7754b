"""A Hedger wired to the real LighterVenue against a fresh simulated Lighter (over loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from exchanges.lighter import LighterVenue
from exchanges.sim.runner import LIGHTER_ACCOUNT, LIGHTER_API_KEY_INDEX, SimCluster
from hedge.hedger import ClientIds, Hedger
from hedge.journal import Journal
from tests.e2e.conftest import sim_keys


@dataclass
class HedgerBed:
    cluster: SimCluster
    venue: LighterVenue
    journal: Journal
    hedger: Hedger
    halts: list[str] = field(default_factory=list)

    def venue_position(self) -> Decimal:
        """The bot's Lighter position as the simulated venue itself holds it."""
        return self.cluster.market.account("lighter", LIGHTER_ACCOUNT).position("BTC").qty


@asynccontextmanager
async def lighter_hedger(
    folder: Path, *, seed: int, hedge_timeout: float = 5.0
) -> AsyncIterator[HedgerBed]:
    cluster = SimCluster(seed=seed, fill_rate=0.0, keys=sim_keys())
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
    journal = Journal(folder / "j.sqlite")
    journal.start_run(mode="demo", ticker="BTC", settings={})
    halts: list[str] = []
    try:
        await venue.connect()
        hedger = Hedger(
            venue,
            journal,
            market=venue.market(),
            maker_venue_name="backpack",
            max_slippage_bps=Decimal(50),
            hedge_timeout=hedge_timeout,
            client_ids=ClientIds(journal),
            on_halt=halts.append,
        )
        venue.set_event_callback(hedger.on_hedge_event)
        hedger.start()
        yield HedgerBed(cluster, venue, journal, hedger, halts)
        await hedger.close()
    finally:
        journal.close()
        await venue.close()
        await cluster.stop()

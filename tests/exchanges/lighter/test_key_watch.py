"""Another process on our Lighter API key is recognised (exchanges/lighter/shared.py), against
the simulated Lighter: two venues on one key but separate SharedAccounts are two processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from exchanges.lighter import LighterVenue
from exchanges.lighter.shared import SharedAccount
from exchanges.sim.faults import FaultPlan
from exchanges.sim.lighter_server import LighterServer, generate_api_key
from exchanges.sim.market import SimMarket

ACCOUNT = 12
KEY = 5


@pytest.fixture
async def server() -> AsyncIterator[tuple[LighterServer, str]]:
    private, public = generate_api_key()
    market = SimMarket(seed=3, fill_rate=0.0, faults=FaultPlan("none", seed=3))
    srv = LighterServer(market, accounts={ACCOUNT: {KEY: public}}, tier="standard")
    await srv.start()
    yield srv, private
    await srv.stop()


@pytest.fixture
async def venues(
    server: tuple[LighterServer, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[LighterVenue]]:
    # The watch's own timer never fires in these tests: they call the reading directly.
    monkeypatch.setattr(SharedAccount, "key_watch_s", 3600.0)
    made: list[LighterVenue] = []
    yield made
    for venue in made:
        await venue.close()


async def connect(server: tuple[LighterServer, str], made: list[LighterVenue]) -> LighterVenue:
    srv, private = server
    venue = LighterVenue(
        "BTC",
        api_url=srv.api_url,
        ws_url=srv.ws_url,
        private_key=private,
        account_index=ACCOUNT,
        api_key_index=KEY,
    )
    made.append(venue)
    await venue.connect()
    return venue


async def test_a_nonce_moved_by_another_process_stops_the_run_with_its_reason(
    server: tuple[LighterServer, str], venues: list[LighterVenue]
) -> None:
    first = await connect(server, venues)
    second = await connect(server, venues)
    reasons: list[str] = []
    second.watch_key(reasons.append)
    await first.cancel_all()  # the first process sends: the key's nonce moves
    second._shared.key_watch_s = 0.0
    await second._shared._watch_key()
    assert len(reasons) == 1
    assert "another process is sending with Lighter account 12 API key 5" in reasons[0]
    assert second._nonces.contested == reasons[0]
    late: list[str] = []
    second.watch_key(late.append)  # registered after the fact: told at once
    assert late == reasons
    assert first._nonces.contested is None  # the sender saw nothing wrong


async def test_a_key_nobody_else_uses_is_not_contested(
    server: tuple[LighterServer, str], venues: list[LighterVenue]
) -> None:
    venue = await connect(server, venues)
    reasons: list[str] = []
    venue.watch_key(reasons.append)
    await venue.cancel_all()  # our own transaction moves the nonce: ours, not a stranger's
    venue._shared.key_watch_s = 0.0
    await venue._shared._watch_key()
    assert reasons == [] and venue._nonces.contested is None


async def test_pairs_on_one_shared_account_are_one_process(
    server: tuple[LighterServer, str], venues: list[LighterVenue]
) -> None:
    srv, private = server
    shared = SharedAccount(srv.api_url, srv.ws_url)
    pairs = []
    for ticker in ("BTC", "ETH"):
        venue = LighterVenue(
            ticker,
            api_url=srv.api_url,
            ws_url=srv.ws_url,
            private_key=private,
            account_index=ACCOUNT,
            api_key_index=KEY,
            shared=shared,
        )
        venues.append(venue)
        await venue.connect()
        pairs.append(venue)
    reasons: list[str] = []
    pairs[1].watch_key(reasons.append)
    await pairs[0].cancel_all()  # the other pair's transaction is the same process's
    shared.key_watch_s = 0.0
    await shared._watch_key()
    assert reasons == []
    assert pairs[0]._nonces is pairs[1]._nonces

"""Another process on our Lighter API key is recognised (exchanges/lighter/shared.py), against
the simulated Lighter: two venues on one key but separate SharedAccounts are two processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from exchanges.base import VenueError
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


def a_stranger_sends_first(
    monkeypatch: pytest.MonkeyPatch, ours: LighterVenue, stranger: LighterVenue, times: int
) -> list[int]:
    """Before each of our next `times` sendTx requests, the stranger (another process on our
    key) sends a transaction of its own, taking the nonce ours was signed with. Returns a
    one-item list: how many of those stranger sends are still to come."""
    sender = ours._session.require_sender()
    real = sender.exchange
    left = [times]

    async def exchange(request: bytes, on_write: object = None) -> tuple[int, str]:
        if left[0] > 0:
            left[0] -= 1
            await stranger.cancel_all()
        return await real(request, on_write)  # type: ignore[arg-type]

    monkeypatch.setattr(sender, "exchange", exchange)
    return left


async def ours_beside_a_stranger(
    server: tuple[LighterServer, str], venues: list[LighterVenue]
) -> tuple[LighterVenue, LighterVenue, list[str]]:
    """Our venue and a stranger's (another process) on the same key, and the reasons ours
    is told that the key is contested."""
    ours = await connect(server, venues)
    stranger = await connect(server, venues)
    reasons: list[str] = []
    ours.watch_key(reasons.append)
    return ours, stranger, reasons


async def test_a_fresh_nonce_taken_twice_in_a_row_stops_the_run_with_its_reason(
    server: tuple[LighterServer, str],
    venues: list[LighterVenue],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours, stranger, reasons = await ours_beside_a_stranger(server, venues)
    left = a_stranger_sends_first(monkeypatch, ours, stranger, times=2)
    with pytest.raises(VenueError, match="invalid nonce"):
        await ours.cancel_all()
    assert left == [0]  # the stranger sent before both of our attempts
    assert len(reasons) == 1
    assert "taken by someone else twice in a row" in reasons[0]
    assert "another process is sending with Lighter account 12 API key 5" in reasons[0]
    assert ours._nonces.contested == reasons[0]


async def test_a_nonce_taken_once_is_re_signed_and_sent_without_alarm(
    server: tuple[LighterServer, str],
    venues: list[LighterVenue],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours, stranger, reasons = await ours_beside_a_stranger(server, venues)
    left = a_stranger_sends_first(monkeypatch, ours, stranger, times=1)
    invalid_before = ours._session.stats.invalid_nonces
    await ours.cancel_all()  # refused once for its nonce, re-signed on a fresh one: accepted
    assert left == [0]
    assert ours._session.stats.invalid_nonces == invalid_before + 1
    assert reasons == [] and ours._nonces.contested is None

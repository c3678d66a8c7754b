"""LighterVenue against the simulated Lighter (LighterServer + SimMarket) over loopback.

Nothing of ours is mocked: the venue signs with the real lighter-sdk signer, reads through the
SDK's ApiClient, and the simulator is the venue-side truth the assertions compare with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from exchanges.base import (
    AmbiguousOrderState,
    ConfigError,
    Fill,
    InsufficientLiquidity,
    Order,
    OrderEvent,
    OrderKind,
    OrderStatus,
    PostOnlyRejected,
    Side,
    Venue,
    VenueError,
    VenueEvent,
)
from exchanges.common.budget import LIGHTER_TIERS, Priority, RequestBudget, TierLimits
from exchanges.lighter import (
    MAX_PRICE,
    LighterVenue,
    Mutex,
    TxSender,
    _worst_bounds,
    lighter_status,
    scale_limit_price,
    scale_qty,
    scale_worst_price,
    unscale,
)
from exchanges.lighter.shared import SharedAccount
from exchanges.lighter.transport import NotSent
from exchanges.sim.faults import FaultPlan
from exchanges.sim.lighter_server import LighterServer, generate_api_key
from exchanges.sim.market import SimMarket
from tests.waiting import wait_for

ACCOUNT = 11
KEY = 4
D = Decimal


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return generate_api_key()


@pytest.fixture
def trades_from() -> str:
    """How the sim reads `/trades`' `from` (a test parametrizes it to run under both)."""
    return "start"


@pytest.fixture
async def server(
    keypair: tuple[str, str], request: pytest.FixtureRequest, trades_from: Any
) -> AsyncIterator[LighterServer]:
    """The strict simulated Lighter on the Standard tier, unless a test names another tier
    with `@pytest.mark.lighter_tier(...)`."""
    marker = request.node.get_closest_marker("lighter_tier")
    tier = marker.args[0] if marker is not None else "standard"
    market = SimMarket(seed=11, fill_rate=0.0, faults=FaultPlan("none", seed=11))
    srv = LighterServer(
        market,
        accounts={ACCOUNT: {KEY: keypair[1]}},
        ping_interval=0.2,
        tier=tier,
        trades_from=trades_from,
    )
    await srv.start()
    yield srv
    await srv.stop()


VenueFactory = Callable[..., Awaitable[LighterVenue]]


def budget_for(tier: str) -> RequestBudget:
    """Our request budget for the account tier the simulator runs (unlimited: none to speak
    of)."""
    limits = LIGHTER_TIERS.get(tier) or TierLimits("lighter unlimited", capacity=10**9)
    return RequestBudget(limits)


@pytest.fixture
async def make_venue(
    server: LighterServer, keypair: tuple[str, str]
) -> AsyncIterator[VenueFactory]:
    venues: list[LighterVenue] = []

    async def make(**kwargs: Any) -> LighterVenue:
        args: dict[str, Any] = {
            "api_url": server.api_url,
            "ws_url": server.ws_url,
            "private_key": keypair[0],
            "account_index": ACCOUNT,
            "api_key_index": KEY,
            "confirm_timeout": 0.5,
            "budget": budget_for(server.tier.name),
        }
        args.update(kwargs)
        venue = LighterVenue(args.pop("ticker", "BTC"), **args)
        venues.append(venue)
        await venue.connect()
        return venue

    yield make
    for venue in venues:
        await venue.close()


class Events:
    def __init__(self) -> None:
        self.items: list[VenueEvent] = []

    def __call__(self, event: VenueEvent) -> None:
        self.items.append(event)

    def fills(self, client_id: int | None = None) -> list[Fill]:
        return [
            e
            for e in self.items
            if isinstance(e, Fill) and (client_id is None or e.client_id == client_id)
        ]

    def statuses(self, client_id: int) -> list[OrderStatus]:
        return [
            e.status for e in self.items if isinstance(e, OrderEvent) and e.client_id == client_id
        ]


@pytest.fixture
async def venue(make_venue: VenueFactory) -> LighterVenue:
    return await make_venue()


@pytest.fixture
def events(venue: LighterVenue) -> Events:
    sink = Events()
    venue.set_event_callback(sink)
    return sink


def btc(server: LighterServer) -> Any:
    return server.market.book("lighter", "BTC")


def sim_orders(server: LighterServer, client_id: int) -> list[Any]:
    return [o for o in btc(server).orders(ACCOUNT) if o.client_id == client_id]


def far_buy(venue: LighterVenue) -> Decimal:
    top = venue.top()
    assert top is not None
    return top.ask * D("1.02")


def far_sell(venue: LighterVenue) -> Decimal:
    top = venue.top()
    assert top is not None
    return top.bid * D("0.98")


# --------------------------------------------------------------------------------------------
# Conversions at the edges
# --------------------------------------------------------------------------------------------


def test_sizes_round_down_to_the_step() -> None:
    assert scale_qty(D("0.001239"), 5) == 123
    assert scale_qty(D("0.00124"), 5) == 124
    assert scale_qty(D("1"), 0) == 1


def test_size_below_the_minimum_after_rounding_is_refused() -> None:
    with pytest.raises(ValueError):
        scale_qty(D("0.000199"), 5, D("0.0002"))
    with pytest.raises(ValueError):
        scale_qty(D("0.000009"), 5)
    assert scale_qty(D("0.0002"), 5, D("0.0002")) == 20


def test_worst_price_rounds_buy_up_and_sell_down() -> None:
    assert scale_worst_price(D("65000.01"), 1, Side.BUY) == 650001
    assert scale_worst_price(D("65000.09"), 1, Side.SELL) == 650000
    assert scale_worst_price(D("65000.1"), 1, Side.BUY) == 650001  # exact stays
    assert scale_worst_price(D("65000.1"), 1, Side.SELL) == 650001


def test_limit_price_rounds_buy_down_and_sell_up() -> None:
    assert scale_limit_price(D("3000.129"), 2, Side.BUY) == 300012
    assert scale_limit_price(D("3000.121"), 2, Side.SELL) == 300013


def test_price_must_fit_uint32_and_be_positive() -> None:
    assert scale_worst_price(unscale(MAX_PRICE, 2), 2, Side.BUY) == MAX_PRICE
    with pytest.raises(ValueError, match="overflow"):
        scale_worst_price(unscale(MAX_PRICE + 1, 2), 2, Side.BUY)
    with pytest.raises(ValueError):
        scale_worst_price(D("0.004"), 2, Side.SELL)  # rounds down to 0


def test_presign_worst_price_bounds_match_rounding_then_comparing() -> None:
    """The hot path compares the asked worst price with two precomputed bounds; that must
    accept exactly the prices that, scaled as place_hedge scales them, are valid and within
    the tolerance of the signed price."""
    rng = random.Random(7)
    for _ in range(4000):
        decimals = rng.randint(0, 5)
        price = rng.choice([1, 2, 5, rng.randint(1, 10**7), MAX_PRICE - rng.randint(0, 3)])
        tolerance = unscale(rng.randint(0, 40), decimals) + D(rng.randint(0, 9)) / 10**7
        side = rng.choice([Side.BUY, Side.SELL])
        lo, hi = _worst_bounds(price, tolerance, decimals, side)
        for _ in range(10):
            asked = unscale(price + rng.randint(-60, 60), decimals) + D(rng.randint(-99, 99)) / (
                10 ** (decimals + 2)
            )
            try:
                expected = abs(scale_worst_price(asked, decimals, side) - price) <= (
                    tolerance.scaleb(decimals)
                )
            except ValueError:  # not a valid price: place_hedge refuses it
                expected = False
            fits = lo < asked <= hi if side is Side.BUY else lo <= asked < hi
            assert fits == expected, (price, tolerance, decimals, side, asked)


def test_unscale_is_exact() -> None:
    assert unscale(650001, 1) == D("65000.1")
    assert unscale(123, 5) == D("0.00123")


def test_lighter_statuses_map_to_ours() -> None:
    assert lighter_status("open", D(0)) is OrderStatus.OPEN
    assert lighter_status("open", D("0.1")) is OrderStatus.PARTIALLY_FILLED
    assert lighter_status("filled", D(1)) is OrderStatus.FILLED
    assert lighter_status("canceled-not-enough-liquidity", D(0)) is OrderStatus.CANCELED
    assert lighter_status("canceled-expired", D(0)) is OrderStatus.EXPIRED
    with pytest.raises(ValueError):
        lighter_status("weird", D(0))


# --------------------------------------------------------------------------------------------
# Configuration and market rules
# --------------------------------------------------------------------------------------------


def test_partial_keys_are_a_config_error() -> None:
    with pytest.raises(ConfigError):
        LighterVenue(
            "BTC",
            api_url="http://x",
            ws_url="ws://x",
            private_key="ab",
            account_index=None,
            api_key_index=1,
        )


async def test_unknown_ticker_is_a_config_error(make_venue: VenueFactory) -> None:
    with pytest.raises(ConfigError, match="ZZZ"):
        await make_venue(ticker="ZZZ")


async def test_a_key_the_venue_does_not_know_is_a_config_error(make_venue: VenueFactory) -> None:
    other, _ = generate_api_key()
    with pytest.raises(ConfigError, match="API key"):
        await make_venue(private_key=other)


async def test_market_rules_come_from_order_book_details(
    venue: LighterVenue, server: LighterServer
) -> None:
    rules = btc(server).rules
    market = venue.market()
    assert market.market_id == rules.market_id
    assert market.tick_size == rules.tick and market.step_size == rules.step
    assert market.min_qty == rules.min_qty and market.min_notional == rules.min_quote
    top = venue.top()
    assert top is not None and (top.bid, top.ask) == btc(server).top()[::2]


async def test_lighter_venue_implements_the_venue_protocol(venue: LighterVenue) -> None:
    assert isinstance(venue, Venue) and venue.name == "lighter"


async def test_public_only_venue_streams_the_book(
    make_venue: VenueFactory, server: LighterServer
) -> None:
    venue = await make_venue(private_key=None, account_index=None, api_key_index=None)
    assert venue.top() is not None
    with pytest.raises(ConfigError):
        await venue.place_hedge(Side.BUY, D("0.001"), D("70000"), 1)


# --------------------------------------------------------------------------------------------
# Hedges
# --------------------------------------------------------------------------------------------


async def test_ioc_hedge_against_a_thin_book_fills_partly_and_never_rests(
    venue: LighterVenue, server: LighterServer, events: Events
) -> None:
    btc(server).set_thin(D("0.002"))
    await wait_for(lambda: (t := venue.top()) is not None and t.ask_qty <= D("0.002"))
    order = await venue.place_hedge(Side.BUY, D("0.005"), far_buy(venue), 21)
    [truth] = sim_orders(server, 21)
    assert order.filled_qty == truth.filled_qty == D("0.002")
    assert order.remaining_qty == D("0.003")
    assert order.status is OrderStatus.CANCELED and order.kind is OrderKind.IOC
    assert not truth.is_open and btc(server).open_orders(ACCOUNT) == []
    await wait_for(lambda: events.fills(21) != [])
    assert sum(f.qty for f in events.fills(21)) == truth.filled_qty


async def test_hedge_finding_nothing_within_its_price_raises_insufficient_liquidity(
    venue: LighterVenue, server: LighterServer
) -> None:
    top = venue.top()
    assert top is not None
    with pytest.raises(InsufficientLiquidity):
        await venue.place_hedge(Side.BUY, D("0.001"), top.bid, 22)
    [truth] = sim_orders(server, 22)
    assert truth.filled_qty == 0 and not truth.is_open


async def test_hedge_size_is_rounded_down_and_the_worst_price_up(
    venue: LighterVenue, server: LighterServer
) -> None:
    top = venue.top()
    assert top is not None
    order = await venue.place_hedge(Side.BUY, D("0.0012349"), top.ask + D("0.01"), 23)
    assert order.qty == D("0.00123")
    assert order.price == top.ask + D("0.1")  # rounded up to the 0.1 tick
    info = server.sent_txs[-1]["info"]
    assert info["BaseAmount"] == 123 and info["Type"] == 1 and info["TimeInForce"] == 0


async def test_injected_invalid_nonce_hedge_goes_through_exactly_once(
    venue: LighterVenue, server: LighterServer
) -> None:
    server.market.faults.arm("invalid_nonce")
    order = await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 24)
    assert order.status is OrderStatus.FILLED
    assert len(sim_orders(server, 24)) == 1
    assert [t["info"]["ClientOrderIndex"] for t in server.sent_txs] == [24]
    assert venue.invalid_nonces == 1 and server.market.faults.fired["invalid_nonce"] == 1
    # The sequencer is back in step: the next hedge needs no nonce repair.
    await venue.place_hedge(Side.SELL, D("0.001"), far_sell(venue), 25)
    assert venue.invalid_nonces == 1


async def test_a_second_invalid_nonce_gives_up_without_executing(
    venue: LighterVenue, server: LighterServer
) -> None:
    server.market.faults.arm("invalid_nonce", 2)
    with pytest.raises(VenueError) as info:
        await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 26)
    assert info.value.retryable
    assert sim_orders(server, 26) == []
    order = await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 27)
    assert order.status is OrderStatus.FILLED


async def test_lost_reply_is_resolved_by_lookup_not_resent(
    make_venue: VenueFactory, server: LighterServer
) -> None:
    venue = await make_venue(request_timeout=0.2)
    server.market.faults.ambiguous_delay_s = 0.4
    server.market.faults.arm("ambiguous_order")
    order = await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 28)
    assert order.status is OrderStatus.FILLED and order.filled_qty == D("0.001")
    assert len(sim_orders(server, 28)) == 1
    assert len(server.sent_txs) == 1  # never sent twice


async def test_a_5xx_on_send_resends_the_same_transaction_once(
    venue: LighterVenue, server: LighterServer
) -> None:
    server.market.faults.arm("http_503")  # answered before the sim acts: not executed
    order = await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 29)
    assert order.status is OrderStatus.FILLED
    assert len(sim_orders(server, 29)) == 1
    assert venue.sign_calls == 1  # the same signed tx (same nonce) was sent again


async def test_invalid_nonce_on_a_resent_copy_re_signs_with_the_same_nonce(
    venue: LighterVenue, server: LighterServer
) -> None:
    nonce = server.next_nonce(ACCOUNT, KEY)
    server.market.faults.arm("http_503")  # first copy: not executed, outcome unclear to us
    server.market.faults.arm("invalid_nonce")  # the resent copy is refused
    order = await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 36)
    assert order.status is OrderStatus.FILLED
    assert len(sim_orders(server, 36)) == 1
    [tx] = server.sent_txs
    assert tx["info"]["Nonce"] == nonce  # re-signed with the nonce the first copy carried
    assert venue.sign_calls == 2


async def test_a_429_on_send_is_retried(venue: LighterVenue, server: LighterServer) -> None:
    server.market.faults.arm("http_429")
    order = await venue.place_hedge(Side.SELL, D("0.001"), far_sell(venue), 30)
    assert order.status is OrderStatus.FILLED and len(sim_orders(server, 30)) == 1
    assert venue.budget.snapshot()["rejected_429"] == 1  # the budget paused, then sent again


async def test_a_429_on_a_read_pauses_the_budget_and_is_read_again(
    venue: LighterVenue, server: LighterServer
) -> None:
    server.market.faults.arm("http_429", 3)
    assert await venue.position() == 0
    assert venue.budget.snapshot()["rejected_429"] == 3


async def test_every_request_the_venue_sends_passes_its_budget(
    make_venue: VenueFactory, server: LighterServer
) -> None:
    venue = await make_venue()
    assert venue.budget.limits is LIGHTER_TIERS["standard"]  # the default
    await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 37)
    await venue.position()
    await venue.fills_since(int(time.time() * 1000) - 60_000)
    await venue.find_order(37)
    await venue.cancel_all()
    [ip] = server.ledger.snapshot()["ips"].values()  # type: ignore[attr-defined]
    # The signer's key check (GET apikeys, inside the Go library) is budgeted once; the
    # library may answer it from what it fetched for an earlier client in this process.
    key_checks = ip["requests"].get("/api/v1/apikeys", 0)
    assert ip["requests_total"] + (1 - key_checks) == venue.budget.snapshot()["granted"]
    assert ip["send_tx"] == venue.budget.snapshot()["tx_used"] == 2


async def test_the_fast_path_declines_when_the_budget_is_spent_and_the_hedge_waits(
    make_venue: VenueFactory, server: LighterServer
) -> None:
    budget = RequestBudget(LIGHTER_TIERS["standard"], window_s=1.0)
    venue = await make_venue(budget=budget)
    worst = await presign(venue, Side.BUY, D("0.001"), 38)
    while budget.try_take("sendTx", Priority.HEDGE, tx=True):
        pass
    assert venue.try_send_now(Side.BUY, D("0.001"), worst, 38) is None
    assert not server.sent_txs and venue.write_ns_by_client == {}
    order = await venue.place_hedge(Side.BUY, D("0.001"), worst, 38)  # waits for room
    assert order.status is OrderStatus.FILLED and len(server.sent_txs) == 1
    assert budget.snapshot()["waited"] >= 1


async def test_the_idle_sendtx_connection_is_renewed_without_a_request(
    make_venue: VenueFactory, server: LighterServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SharedAccount, "keep_warm_s", 0.2)
    venue = await make_venue()
    sender = venue._sender
    assert sender is not None and sender.idle  # opened at connect, with no request
    requests = server.ledger.account(str(ACCOUNT))["requests_total"]
    opened = sender.connections
    await wait_for(lambda: sender.connections >= opened + 2)
    assert server.ledger.account(str(ACCOUNT))["requests_total"] == requests  # none for it
    worst = await presign(venue, Side.BUY, D("0.001"), 39)
    task = venue.try_send_now(Side.BUY, D("0.001"), worst, 39)  # the fresh one is warm
    assert task is not None and (await task).status is OrderStatus.FILLED


async def test_hedge_fills_are_delivered_once_despite_duplicated_and_reordered_updates(
    venue: LighterVenue, server: LighterServer, events: Events
) -> None:
    faults = server.market.faults
    faults.arm("duplicate_event", 3)
    faults.arm("reorder_event", 1)
    for cid in (31, 32, 33):
        await venue.place_hedge(Side.BUY, D("0.002"), far_buy(venue), cid)
    await wait_for(lambda: all(OrderStatus.FILLED in events.statuses(c) for c in (31, 32, 33)))
    for cid in (31, 32, 33):
        [truth] = sim_orders(server, cid)
        fills = events.fills(cid)
        assert sum(f.qty for f in fills) == truth.filled_qty
        assert len({f.trade_id for f in fills}) == len(fills)
    assert venue.duplicates_dropped >= 1


async def test_dropped_ws_during_a_hedge_recovers_its_fill_over_rest(
    venue: LighterVenue, server: LighterServer, events: Events
) -> None:
    server.market.faults.arm("ws_drop")  # the next data frame (the order update) drops
    order = await venue.place_hedge(Side.BUY, D("0.002"), far_buy(venue), 34)
    [truth] = sim_orders(server, 34)
    assert order.filled_qty == truth.filled_qty == D("0.002")
    assert order.status is OrderStatus.FILLED
    await wait_for(lambda: venue._ws is not None and venue._ws.reconnects >= 1)
    await wait_for(lambda: venue._account_live())
    assert venue.reconciles >= 1  # the outcome came over REST
    assert [f.qty for f in events.fills(34)] == [D("0.002")]  # exactly once


async def test_streamed_position_follows_fills_without_a_request(
    venue: LighterVenue, server: LighterServer
) -> None:
    await wait_for(lambda: venue.streamed_position() == 0)  # the account_all snapshot
    account_reads = server.ledger.account(str(ACCOUNT))["requests"].get("/api/v1/account", 0)
    await venue.place_hedge(Side.BUY, D("0.003"), far_buy(venue), 91)
    await wait_for(lambda: venue.streamed_position() == D("0.003"))
    await venue.place_hedge(Side.SELL, D("0.005"), far_sell(venue), 92)
    await wait_for(lambda: venue.streamed_position() == D("-0.002"))
    requests = server.ledger.account(str(ACCOUNT))["requests"]
    assert requests.get("/api/v1/account", 0) == account_reads  # no REST read for it
    assert await venue.position() == D("-0.002")  # REST agrees


async def test_streamed_position_is_none_while_the_socket_is_down(venue: LighterVenue) -> None:
    await wait_for(lambda: venue.streamed_position() == 0)
    ws = venue._ws
    assert ws is not None
    await ws.close()
    assert venue.streamed_position() is None


async def test_streamed_position_after_a_reconnect_is_the_new_snapshots(
    venue: LighterVenue, server: LighterServer
) -> None:
    top = venue.top()
    assert top is not None
    resting = await venue.place_post_only(Side.BUY, D("0.003"), top.bid - 5, 95)
    await wait_for(lambda: venue.streamed_position() == 0)
    reconnects = venue.reconnects
    server.drop_ws()
    btc(server).fill_resting(int(resting.order_id or 0), D("0.002"))  # while disconnected
    await wait_for(lambda: venue.reconnects > reconnects)
    await wait_for(lambda: venue.streamed_position() == D("0.002"))
    channels = [c for c in server._conns if ACCOUNT in c.account_all]
    assert len(channels) == 1  # one subscription, on the new connection


async def test_token_expiry_mid_run_resumes_the_account_stream_without_losing_a_fill(
    venue: LighterVenue, server: LighterServer, events: Events
) -> None:
    top = venue.top()
    assert top is not None
    resting = await venue.place_post_only(Side.BUY, D("0.003"), top.bid - 5, 35)
    assert resting.status is OrderStatus.OPEN
    server.market.faults.arm("token_expiry")  # the re-subscription after the drop is refused
    server.drop_ws()
    btc(server).fill_resting(int(resting.order_id or 0), D("0.001"))  # while disconnected
    await wait_for(lambda: venue._account_live(), timeout=5)
    await wait_for(lambda: events.fills(35) != [])
    assert server.market.faults.fired["token_expiry"] == 1
    btc(server).fill_resting(int(resting.order_id or 0), D("0.002"))  # live again
    await wait_for(lambda: sum(f.qty for f in events.fills(35)) == D("0.003"))
    assert [f.qty for f in events.fills(35)] == [D("0.001"), D("0.002")]
    assert all(f.is_maker for f in events.fills(35))


async def test_book_gap_resubscribes_and_resyncs(
    venue: LighterVenue, server: LighterServer
) -> None:
    server.market.faults.arm("depth_gap")
    for _ in range(5):
        server.market.step()
    await wait_for(lambda: venue.resubscribes == 1 and venue.book.synced)
    server.market.step()
    await wait_for(lambda: (t := venue.top()) is not None and t.ask == btc(server).top()[2])


async def test_server_pings_are_answered_and_the_socket_stays_up(
    venue: LighterVenue, server: LighterServer
) -> None:
    ws = venue._ws
    assert ws is not None
    pongs = server.pongs_received
    await wait_for(lambda: server.pongs_received >= pongs + 2, timeout=3)  # pings every 0.2 s
    assert ws.reconnects == 0 and ws.connected


async def test_malformed_frames_are_skipped(venue: LighterVenue) -> None:
    for frame in [
        "not json",
        json.dumps({"no": "type"}),
        json.dumps({"type": "update/account_orders", "orders": {"1": [{"x": 1}]}}),
    ]:
        venue._on_frame(frame, 0)
    assert venue.malformed == 3
    assert venue.top() is not None


# --------------------------------------------------------------------------------------------
# Pre-signed hedges
# --------------------------------------------------------------------------------------------


async def test_presigned_hedge_is_resigned_as_the_book_moves_and_sent_without_signing(
    venue: LighterVenue, server: LighterServer
) -> None:
    venue.presign_hedge(Side.SELL, D("0.002"), 40, 41)
    assert await venue.wait_presigned()
    first = venue.presigned()
    signs = venue.presign_signs
    mid = server.market.mid("BTC")
    server.market.set_mid("BTC", mid * D("0.995"))  # 50 bps: past a quarter of a 40 bps band
    await wait_for(lambda: venue.presign_signs > signs)
    assert await venue.wait_presigned()
    moved = venue.presigned()
    assert first is not None and moved is not None and moved[3] < first[3]
    top = venue.top()
    assert top is not None
    before = venue.sign_calls
    order = await venue.place_hedge(Side.SELL, D("0.002"), top.bid * (1 - D("0.004")), 41)
    assert venue.sign_calls == before  # no signing on the hot path
    assert venue.last_hedge_path == "presigned" and venue.presigned_used == 1
    assert order.status is OrderStatus.FILLED
    assert server.sent_txs[-1]["info"]["Price"] == scale_worst_price(moved[3], 1, Side.SELL)


async def test_presign_is_resigned_when_another_transaction_takes_the_nonce(
    venue: LighterVenue, server: LighterServer
) -> None:
    venue.presign_hedge(Side.BUY, D("0.001"), 40, 42)
    assert await venue.wait_presigned()
    await venue.cancel_all()  # takes the pre-signed nonce
    assert await venue.wait_presigned()
    before = venue.sign_calls
    await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue) / D("1.02") * D("1.004"), 42)
    assert venue.sign_calls == before and venue.last_hedge_path == "presigned"


async def test_another_size_is_signed_on_the_spot(venue: LighterVenue) -> None:
    venue.presign_hedge(Side.BUY, D("0.001"), 40, 43)
    assert await venue.wait_presigned()
    before = venue.sign_calls
    order = await venue.place_hedge(Side.BUY, D("0.0015"), far_buy(venue), 43)
    assert venue.sign_calls == before + 1 and venue.last_hedge_path == "signed"
    assert order.filled_qty == D("0.0015")
    venue.cancel_presigned()
    assert venue.presigned() is None


async def test_presigned_hot_path_is_faster_than_signing_on_the_spot(venue: LighterVenue) -> None:
    def elapsed_ms(start_ns: int) -> float:
        return (venue.last_send_ns - start_ns) / 1e6

    timings: dict[str, list[float]] = {"presigned": [], "signed": []}
    for i in range(5):
        venue.presign_hedge(Side.BUY, D("0.001"), 50, 100 + i)
        assert await venue.wait_presigned()
        started = time.perf_counter_ns()
        await venue.place_hedge(
            Side.BUY, D("0.001"), far_buy(venue) / D("1.02") * D("1.005"), 100 + i
        )
        timings[venue.last_hedge_path].append(elapsed_ms(started))
        started = time.perf_counter_ns()
        await venue.place_hedge(Side.SELL, D("0.001"), far_sell(venue), 200 + i)
        timings[venue.last_hedge_path].append(elapsed_ms(started))
    assert len(timings["presigned"]) == len(timings["signed"]) == 5
    assert sorted(timings["presigned"])[2] < sorted(timings["signed"])[2]


# --------------------------------------------------------------------------------------------
# The fast path: try_send_now writes the pre-signed hedge from the (synchronous) caller
# --------------------------------------------------------------------------------------------


async def presign(venue: LighterVenue, side: Side, qty: Decimal, cid: int) -> Decimal:
    """Pre-sign a hedge at 40 bps and return its signed worst price (what a hedger would ask)."""
    venue.presign_hedge(side, qty, 40, cid)
    assert await venue.wait_presigned()
    ready = venue.presigned()
    assert ready is not None
    return ready[3]


def written_out(venue: LighterVenue) -> bool:
    """The request left the process: the sendTx connection has nothing buffered."""
    sender = venue._sender
    assert sender is not None and sender._writer is not None
    return sender._writer.transport.get_write_buffer_size() == 0


async def test_try_send_now_writes_before_returning(
    venue: LighterVenue, server: LighterServer, events: Events
) -> None:
    worst = await presign(venue, Side.BUY, D("0.002"), 301)
    signs, txs = venue.sign_calls, len(server.sent_txs)
    task = venue.try_send_now(Side.BUY, D("0.002"), worst, 301)
    assert task is not None
    # Before anything has yielded: written, recorded, and the pre-sign spent.
    assert venue.write_ns_by_client[301] == venue.last_write_ns > venue.last_send_ns > 0
    assert written_out(venue)
    assert venue.presigned() is None and venue.presigned_used == 1 and venue.fast_sends == 1
    assert len(server.sent_txs) == txs  # the sim (same loop) has not run yet
    order = await task
    assert venue.sign_calls == signs and venue.last_hedge_path == "presigned"
    [truth] = sim_orders(server, 301)
    assert order.status is OrderStatus.FILLED and order.kind is OrderKind.IOC
    assert order.filled_qty == truth.filled_qty == D("0.002") and order.price == worst
    assert server.sent_txs[-1]["info"]["ClientOrderIndex"] == 301
    await wait_for(lambda: sum(f.qty for f in events.fills(301)) == D("0.002"))
    # The connection and the nonce lock are free again: the next hedge goes the same way.
    worst = await presign(venue, Side.SELL, D("0.002"), 302)
    task = venue.try_send_now(Side.SELL, D("0.002"), worst, 302)
    assert task is not None
    assert (await task).status is OrderStatus.FILLED


async def _hedge_once(
    venue: LighterVenue, server: LighterServer, *, fast: bool, cid: int, thin: Decimal | None
) -> Order | Exception:
    """One pre-signed buy hedge of 0.005 on a book thinned to `thin`, by either path."""
    worst = await presign(venue, Side.BUY, D("0.005"), cid)
    if thin is not None:
        btc(server).set_thin(thin)
        await wait_for(lambda: (t := venue.top()) is None or t.ask_qty <= thin)
    try:
        if fast:
            task = venue.try_send_now(Side.BUY, D("0.005"), worst, cid)
            assert task is not None
            assert venue.write_ns_by_client.get(cid) == venue.last_write_ns
            return await task
        return await venue.place_hedge(Side.BUY, D("0.005"), worst, cid)
    except Exception as exc:  # the outcome to compare
        return exc
    finally:
        btc(server).set_thin(None)
        await wait_for(lambda: (t := venue.top()) is not None and t.ask_qty > D("0.005"))


@pytest.mark.parametrize(
    ("thin", "filled"), [(None, D("0.005")), (D("0.002"), D("0.002")), (D(0), None)]
)
async def test_try_send_now_completes_exactly_like_place_hedge(
    venue: LighterVenue, server: LighterServer, thin: Decimal | None, filled: Decimal | None
) -> None:
    fast = await _hedge_once(venue, server, fast=True, cid=311, thin=thin)
    slow = await _hedge_once(venue, server, fast=False, cid=312, thin=thin)
    assert venue.fast_sends == 1 and venue.presigned_used == 2 and venue.signed_on_spot == 0
    if filled is None:  # nothing within the price
        assert isinstance(fast, InsufficientLiquidity) and isinstance(slow, InsufficientLiquidity)
    else:
        assert isinstance(fast, Order) and isinstance(slow, Order)
        shape = [(o.status, o.kind, o.side, o.qty, o.filled_qty) for o in (fast, slow)]
        assert shape[0] == shape[1] and fast.filled_qty == filled
    for cid in (311, 312):
        [truth] = sim_orders(server, cid)
        assert truth.filled_qty == (filled or 0) and not truth.is_open
    assert set(venue.write_ns_by_client) == {311, 312}


async def test_try_send_now_declines_and_changes_nothing(
    venue: LighterVenue, server: LighterServer
) -> None:
    top = venue.top()
    assert top is not None
    assert venue.try_send_now(Side.BUY, D("0.002"), top.ask, 321) is None  # nothing pre-signed
    worst = await presign(venue, Side.BUY, D("0.002"), 321)
    before = venue.presigned()
    declined = [
        (Side.BUY, D("0.002"), worst, 322),  # another client id
        (Side.SELL, D("0.002"), worst, 321),  # another side
        (Side.BUY, D("0.003"), worst, 321),  # another size
        (Side.BUY, D("0.002"), worst * D("1.01"), 321),  # beyond the re-sign threshold
        (Side.BUY, D("0.0000001"), worst, 321),  # invalid size: place_hedge raises it
    ]
    for args in declined:
        assert venue.try_send_now(*args) is None, args
    assert venue.presigned() == before and venue.write_ns_by_client == {}
    assert not server.sent_txs and not venue._nonces.lock.locked()
    # Another transaction holds the nonce lock (cancel_all while it is being signed).
    cancelling = asyncio.get_running_loop().create_task(venue.cancel_all())
    await asyncio.sleep(0)  # one loop turn: it takes the lock and starts signing
    assert venue._nonces.lock.locked()
    assert venue.try_send_now(Side.BUY, D("0.002"), worst, 321) is None
    await cancelling
    # The keep-alive connection is busy (a request in flight on it).
    worst = await presign(venue, Side.BUY, D("0.002"), 321)
    sender = venue._sender
    assert sender is not None
    busy = asyncio.get_running_loop().create_task(sender.get("/api/v1/orderBooks"))
    await asyncio.sleep(0)  # one loop turn: it writes its GET and waits for the answer
    assert not sender.idle
    assert venue.try_send_now(Side.BUY, D("0.002"), worst, 321) is None
    await busy
    # The connection is not open.
    await sender.close()
    assert venue.try_send_now(Side.BUY, D("0.002"), worst, 321) is None
    assert venue.presigned() is not None and venue.write_ns_by_client == {}
    order = await venue.place_hedge(Side.BUY, D("0.002"), worst, 321)  # reopens it
    assert order.status is OrderStatus.FILLED and sender.connections == 2
    assert [t["type"] for t in server.sent_txs] == [16, 14]  # cancel all, then the hedge


async def test_try_send_now_with_an_invalid_nonce_re_signs_once_and_executes_once(
    venue: LighterVenue, server: LighterServer
) -> None:
    worst = await presign(venue, Side.BUY, D("0.001"), 331)
    signs = venue.sign_calls
    server.market.faults.arm("invalid_nonce")
    task = venue.try_send_now(Side.BUY, D("0.001"), worst, 331)
    assert task is not None and 331 in venue.write_ns_by_client
    order = await task
    assert order.status is OrderStatus.FILLED
    assert len(sim_orders(server, 331)) == 1
    assert [t["info"]["ClientOrderIndex"] for t in server.sent_txs] == [331]
    assert venue.invalid_nonces == 1 and venue.sign_calls == signs + 1
    assert venue.last_hedge_path == "signed"


async def test_try_send_now_connection_dropped_after_the_write_is_resolved_not_resent(
    venue: LighterVenue, server: LighterServer
) -> None:
    worst = await presign(venue, Side.BUY, D("0.001"), 341)
    faults = server.market.faults
    faults.ambiguous_delay_s = 0.5  # executed, then the answer is held back...
    faults.arm("ambiguous_order")
    task = venue.try_send_now(Side.BUY, D("0.001"), worst, 341)
    assert task is not None
    await wait_for(lambda: bool(server.sent_txs))
    sender = venue._sender
    assert sender is not None and sender._writer is not None
    sender._writer.transport.abort()  # ...and the connection drops
    order = await task
    assert order.status is OrderStatus.FILLED and order.filled_qty == D("0.001")
    assert len(sim_orders(server, 341)) == 1 and len(server.sent_txs) == 1
    assert not venue._nonces.lock.locked() and sender.idle is False  # dropped, reopened later
    worst = await presign(venue, Side.SELL, D("0.001"), 342)
    assert (await venue.place_hedge(Side.SELL, D("0.001"), worst, 342)).filled_qty == D("0.001")
    assert venue.invalid_nonces == 0


async def test_try_send_now_lost_reply_with_rest_down_is_resent_under_the_same_client_id(
    make_venue: VenueFactory, server: LighterServer
) -> None:
    venue = await make_venue(retry_attempts=1)
    worst = await presign(venue, Side.BUY, D("0.001"), 351)
    refusals = spy_refusals(server)
    faults = server.market.faults
    faults.ambiguous_delay_s = 0.5
    faults.arm("ambiguous_order")
    task = venue.try_send_now(Side.BUY, D("0.001"), worst, 351)
    assert task is not None
    await wait_for(lambda: bool(server.sent_txs))
    silence_account_stream(server)
    faults.set_probability("http_503", 1.0)  # nextNonce cannot say whether the tx was taken
    sender = venue._sender
    assert sender is not None and sender._writer is not None
    sender._writer.transport.abort()
    await asyncio.sleep(1.0)
    faults.set_probability("http_503", 0.0)
    order = await task
    assert order.status is OrderStatus.FILLED and order.filled_qty == D("0.001")
    [truth] = sim_orders(server, 351)
    assert truth.filled_qty == D("0.001")
    assert [t["info"]["ClientOrderIndex"] for t in server.sent_txs] == [351]
    assert refusals == [(351, 21728)]


async def test_a_fast_hedge_cancelled_before_it_ran_gives_the_locks_back(
    venue: LighterVenue, server: LighterServer
) -> None:
    worst = await presign(venue, Side.BUY, D("0.001"), 361)
    task = venue.try_send_now(Side.BUY, D("0.001"), worst, 361)
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: not venue._nonces.lock.locked())
    assert venue._nonces.next is None  # it may have executed: the next tx asks the venue
    await wait_for(lambda: len(sim_orders(server, 361)) == 1)  # it had been written
    order = await venue.place_hedge(Side.SELL, D("0.001"), far_sell(venue), 362)
    assert order.status is OrderStatus.FILLED and venue.invalid_nonces == 0


async def test_try_send_now_writes_within_tens_of_microseconds(venue: LighterVenue) -> None:
    took_us: list[float] = []
    for i in range(40):
        side = Side.BUY if i % 2 == 0 else Side.SELL
        worst = await presign(venue, side, D("0.001"), 400 + i)
        started = time.perf_counter_ns()
        task = venue.try_send_now(side, D("0.001"), worst, 400 + i)
        assert task is not None
        took_us.append((venue.write_ns_by_client[400 + i] - started) / 1000)
        await task
    took_us.sort()
    assert took_us[len(took_us) // 2] < 200, took_us  # ~20-40 us here; loose for loaded CI


async def test_mutex_hands_over_in_order_and_can_be_taken_synchronously() -> None:
    lock = Mutex()
    assert lock.try_acquire() and lock.locked() and not lock.try_acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        async with lock:
            order.append(name)

    first = asyncio.get_running_loop().create_task(take("first"))
    gone = asyncio.get_running_loop().create_task(take("cancelled"))
    last = asyncio.get_running_loop().create_task(take("last"))
    await asyncio.sleep(0)  # all three queue up
    gone.cancel()
    lock.release()
    assert lock.locked() and not lock.try_acquire()  # handed over, never up for grabs
    await asyncio.gather(first, last, gone, return_exceptions=True)
    assert order == ["first", "last"] and not lock.locked()
    assert lock.try_acquire()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


# --------------------------------------------------------------------------------------------
# Post-only orders, cancels, account
# --------------------------------------------------------------------------------------------


async def test_post_only_rests_and_cancel_cancels_it(
    venue: LighterVenue, server: LighterServer, events: Events
) -> None:
    top = venue.top()
    assert top is not None
    order = await venue.place_post_only(Side.BUY, D("0.001"), top.bid - 10, 51)
    assert order.status is OrderStatus.OPEN and order.kind is OrderKind.POST_ONLY
    [open_order] = await venue.open_orders()
    assert (open_order.client_id, open_order.order_id) == (51, order.order_id)
    await venue.cancel(order)
    await wait_for(lambda: OrderStatus.CANCELED in events.statuses(51))
    assert btc(server).open_orders(ACCOUNT) == []


async def test_crossing_post_only_is_rejected(venue: LighterVenue) -> None:
    top = venue.top()
    assert top is not None
    with pytest.raises(PostOnlyRejected):
        await venue.place_post_only(Side.BUY, D("0.001"), top.ask, 52)


async def test_cancel_all_cancels_every_order(venue: LighterVenue, server: LighterServer) -> None:
    top = venue.top()
    assert top is not None
    for cid in (53, 54):
        await venue.place_post_only(Side.SELL, D("0.001"), top.ask + cid, cid)
    assert len(btc(server).open_orders(ACCOUNT)) == 2
    await venue.cancel_all()
    # Accepted now, executed by the sequencer after the tier's cancel delay.
    await wait_for(lambda: btc(server).open_orders(ACCOUNT) == [])


async def test_position_matches_the_sim_long_short_and_flat(
    venue: LighterVenue, server: LighterServer
) -> None:
    truth = server.market.account("lighter", ACCOUNT)
    assert await venue.position() == 0
    await venue.place_hedge(Side.BUY, D("0.004"), far_buy(venue), 61)
    assert await venue.position() == truth.position("BTC").qty == D("0.004")
    await venue.place_hedge(Side.SELL, D("0.007"), far_sell(venue), 62)
    assert await venue.position() == truth.position("BTC").qty == D("-0.003")
    await venue.place_hedge(Side.BUY, D("0.003"), far_buy(venue), 63)
    assert await venue.position() == truth.position("BTC").qty == 0


async def test_balance_and_describe(venue: LighterVenue, server: LighterServer) -> None:
    balance = await venue.balance()
    assert balance.equity == server.market.account("lighter", ACCOUNT).collateral
    summary = await venue.describe()
    assert summary["market_id"] == 1 and D(str(summary["position"])) == 0
    assert D(str(summary["tick_size"])) == D("0.1")
    assert D(str(summary["min_qty"])) == btc(server).rules.min_qty


BOTH_READINGS_OF_FROM = pytest.mark.parametrize("trades_from", ["start", "upper"])


@BOTH_READINGS_OF_FROM
async def test_fills_since_gives_the_stream_trade_ids(
    venue: LighterVenue, server: LighterServer, events: Events
) -> None:
    since = int(time.time() * 1000) - 1000
    await venue.place_hedge(Side.BUY, D("0.002"), far_buy(venue), 71)
    await venue.place_hedge(Side.SELL, D("0.001"), far_sell(venue), 72)
    await wait_for(lambda: len(events.fills()) >= 2)
    backfill = await venue.fills_since(since)
    assert {f.trade_id for f in backfill} >= {f.trade_id for f in events.fills()}
    assert sum(f.qty for f in backfill if f.client_id == 71) == D("0.002")
    assert {f.side for f in backfill} == {Side.BUY, Side.SELL}


@BOTH_READINGS_OF_FROM
@pytest.mark.lighter_tier("premium")  # 130 orders: more than a Standard account's minute
async def test_fills_since_pages_past_the_apis_hundred_trade_limit(
    venue: LighterVenue, server: LighterServer, events: Events
) -> None:
    since = int(time.time() * 1000) - 1000
    hedges = 130  # more than one page of /trades

    async def hedge(n: int) -> None:
        side = Side.BUY if n % 2 == 0 else Side.SELL
        price = far_buy(venue) if side is Side.BUY else far_sell(venue)
        await venue.place_hedge(side, D("0.0002"), price, 1000 + n)

    # Concurrent: each outcome comes 200 ms after its send on Premium.
    await asyncio.gather(*(hedge(n) for n in range(hedges)))
    await wait_for(lambda: len({f.client_id for f in events.fills()}) >= hedges, timeout=10)

    backfill = await venue.fills_since(since)

    assert {f.client_id for f in backfill} == set(range(1000, 1000 + hedges))
    assert len({f.trade_id for f in backfill}) == len(backfill)  # no page overlap twice
    assert sum(f.qty for f in backfill) == sum(f.qty for f in events.fills())


@BOTH_READINGS_OF_FROM
async def test_recovery_finds_the_fills_after_the_last_known_time_and_stops_there(
    keypair: tuple[str, str], trades_from: Any
) -> None:
    offset_ms = [-3_600_000]  # the sim's clock: an hour ago, then now
    market = SimMarket(
        seed=11,
        fill_rate=0.0,
        faults=FaultPlan("none", seed=11),
        clock_ms=lambda: int(time.time() * 1000) + offset_ms[0],
    )
    server = LighterServer(
        market, accounts={ACCOUNT: {KEY: keypair[1]}}, tier="standard", trades_from=trades_from
    )
    await server.start()
    venue = LighterVenue(
        "BTC",
        api_url=server.api_url,
        ws_url=server.ws_url,
        private_key=keypair[0],
        account_index=ACCOUNT,
        api_key_index=KEY,
    )
    try:
        book = btc(server)
        for client_id in range(1, 151):  # an hour ago: known long before the crash
            side = Side.BUY if client_id % 2 else Side.SELL
            worst = book.top()[2] * 2 if side is Side.BUY else book.top()[0] * D("0.98")
            book.place_market(ACCOUNT, side, D("0.0002"), worst, client_id=client_id)
        offset_ms[0] = 0
        known_until = int(time.time() * 1000)
        for client_id in range(151, 154):  # missed while we were down
            worst = book.top()[2] * 2
            book.place_market(ACCOUNT, Side.BUY, D("0.0002"), worst, client_id=client_id)
        await venue.connect()
        backfill = await venue.fills_since(known_until)
        requests = server.ledger.account(str(ACCOUNT))["requests"]
    finally:
        await venue.close()
        await server.stop()
    assert sorted(f.client_id or 0 for f in backfill) == [151, 152, 153]
    # Newest first: the first page already reaches back past the time known (and the ten
    # minutes before it kept for cumulative amounts); the 150 older trades are not walked.
    assert requests["/api/v1/trades"] == 1


def spy_refusals(server: LighterServer) -> list[tuple[int, int]]:
    """(client order index, code) of every create-order transaction the sim refuses."""
    refused: list[tuple[int, int]] = []
    accept = server._accept_tx

    def accept_or_record(tx_type: int, info: Any, raw: str, recv_ns: int) -> Any:
        try:
            return accept(tx_type, info, raw, recv_ns)
        except Exception as exc:
            if tx_type == 14:
                refused.append((info["ClientOrderIndex"], getattr(exc, "code", 0)))
            raise

    server._accept_tx = accept_or_record  # type: ignore[method-assign]
    return refused


def silence_account_stream(server: LighterServer) -> None:
    """The venue stops sending our account's updates (we still believe we are subscribed):
    only REST can tell an order's outcome from now on."""
    for conn in server._conns:
        conn.account_orders.clear()
        conn.account_all.clear()


async def test_a_hedge_whose_reply_is_lost_while_rest_is_down_executes_exactly_once(
    make_venue: VenueFactory, server: LighterServer
) -> None:
    venue = await make_venue(request_timeout=0.2, retry_attempts=1)
    refusals = spy_refusals(server)
    faults = server.market.faults
    faults.ambiguous_delay_s = 0.5
    faults.arm("ambiguous_order")  # accepted (and executed), its answer lost

    async def rest_down_once_accepted(down_s: float) -> None:
        await wait_for(lambda: bool(server.sent_txs))
        silence_account_stream(server)
        faults.set_probability("http_503", 1.0)
        await asyncio.sleep(down_s)
        faults.set_probability("http_503", 0.0)

    outage = asyncio.get_running_loop().create_task(rest_down_once_accepted(10.0))
    order = await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 81)
    await outage

    assert order.status is OrderStatus.FILLED and order.filled_qty == D("0.001")
    [truth] = sim_orders(server, 81)  # the venue's own records: one order, filled once
    assert truth.filled_qty == D("0.001") and not truth.is_open
    assert [t["info"]["ClientOrderIndex"] for t in server.sent_txs] == [81]
    # Re-sent under the same client order index (fresh nonce, fresh signature): refused.
    assert refusals == [(81, 21728)]
    assert venue._session.stats.client_id_refusals == 1
    assert server.ledger.account(str(ACCOUNT))["send_tx"] >= 2


async def test_a_hedge_still_unknown_after_the_resolve_timeout_is_ambiguous_then_resolved(
    make_venue: VenueFactory, server: LighterServer
) -> None:
    venue = await make_venue(request_timeout=0.2, retry_attempts=1)
    venue._execution.resolve_timeout_s = 1.0
    refusals = spy_refusals(server)
    faults = server.market.faults
    faults.ambiguous_delay_s = 0.5
    faults.arm("ambiguous_order")

    async def rest_down_once_accepted() -> None:
        await wait_for(lambda: bool(server.sent_txs))
        silence_account_stream(server)
        faults.set_probability("http_503", 1.0)

    outage = asyncio.get_running_loop().create_task(rest_down_once_accepted())
    with pytest.raises(AmbiguousOrderState) as info:
        await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 83)
    await outage
    assert info.value.client_id == 83
    # A later send of the same client id that fails says nothing about the first: ambiguous.
    with pytest.raises(AmbiguousOrderState):
        await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 83)
    faults.set_probability("http_503", 0.0)
    faults.disarm()
    # The hedger sends it again under the same client id: refused, and its outcome read.
    order = await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 83)
    assert order.status is OrderStatus.FILLED and order.filled_qty == D("0.001")
    assert len(sim_orders(server, 83)) == 1
    assert [t["info"]["ClientOrderIndex"] for t in server.sent_txs] == [83]
    assert refusals and all(r == (83, 21728) for r in refusals)


async def test_an_accepted_hedge_whose_outcome_stays_unknown_is_never_called_not_executed(
    make_venue: VenueFactory, server: LighterServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venue answered the sendTx (accepted), then neither the stream nor REST could tell
    its outcome. A later copy of that client id that cannot even be sent (connection refused)
    says nothing of the first: still unknown, never a plain failure the hedger would take for
    "not executed" and hedge again under a new client id."""
    venue = await make_venue(request_timeout=0.2, retry_attempts=1)
    venue._execution.resolve_timeout_s = 1.0
    refusals = spy_refusals(server)
    faults = server.market.faults

    async def rest_down_once_accepted() -> None:
        await wait_for(lambda: bool(server.sent_txs))
        silence_account_stream(server)
        faults.set_probability("http_503", 1.0)

    outage = asyncio.get_running_loop().create_task(rest_down_once_accepted())
    with pytest.raises(AmbiguousOrderState, match="accepted, outcome unknown"):
        await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 87)
    await outage
    sender = venue._sender
    assert sender is not None

    async def refused(request: bytes, on_write: object = None) -> tuple[int, str]:
        raise NotSent("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(sender, "exchange", refused)
        with pytest.raises(AmbiguousOrderState):
            await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 87)
    faults.set_probability("http_503", 0.0)
    # The same client id once the venue answers again: refused 21728, the first one's outcome.
    order = await venue.place_hedge(Side.BUY, D("0.001"), far_buy(venue), 87)
    assert order.status is OrderStatus.FILLED and order.filled_qty == D("0.001")
    assert len(sim_orders(server, 87)) == 1
    assert [t["info"]["ClientOrderIndex"] for t in server.sent_txs] == [87]
    assert refusals and all(r == (87, 21728) for r in refusals)


async def test_any_order_of_duplicated_and_reordered_updates_delivers_each_fill_once(
    venue: LighterVenue, events: Events
) -> None:
    rng = random.Random(5)
    steps = [D("0"), D("0.001"), D("0.003"), D("0.004")]

    def frame(index: int, filled: Decimal, status: str) -> str:
        order = {
            "order_index": index,
            "client_order_index": index,
            "market_index": venue.market().market_id,
            "initial_base_amount": "0.00400",
            "price": "65000.0",
            "remaining_base_amount": str(D("0.004") - filled),
            "filled_base_amount": str(filled),
            "filled_quote_amount": str(filled * 65000),
            "is_ask": False,
            "status": status,
            "time_in_force": "immediate-or-cancel",
            "timestamp": 1,
        }
        return json.dumps(
            {
                "type": "update/account_orders",
                "channel": "account_orders:1",
                "orders": {str(venue.market().market_id): [order]},
            }
        )

    for index in range(900_000, 900_200):
        updates = [frame(index, f, "open") for f in steps[:-1]] + [
            frame(index, steps[-1], "filled")
        ]
        updates += rng.sample(updates, rng.randint(0, 3))  # duplicates
        rng.shuffle(updates)
        for update in updates:
            venue._on_frame(update, 0)
        fills = events.fills(index)
        assert sum(f.qty for f in fills) == D("0.004"), index
        assert len({f.trade_id for f in fills}) == len(fills)
        assert all(f.price == 65000 for f in fills)
        assert events.statuses(index)[-1] is OrderStatus.FILLED


# --------------------------------------------------------------------------------------------
# The sendTx connection
# --------------------------------------------------------------------------------------------


async def _raw_http_server(answers: list[bytes]) -> tuple[asyncio.Server, int, list[bytes]]:
    """A bare HTTP/1.1 server answering each request with the next canned answer."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):
            await serve(reader, writer)
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            requests.append(head + await reader.readexactly(length))
            answer = answers.pop(0)
            writer.write(answer)
            await writer.drain()
            if b"Connection: close" in answer:
                return

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], requests


async def test_tx_sender_reads_chunked_answers_and_reconnects_after_close() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"cod\r\n7\r\ne":200}\r\n0\r\n\r\n'
    )
    closing = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    plain = b'HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{"code":200}\n'
    server, port, requests = await _raw_http_server([chunked, closing, plain])
    sender = TxSender(f"http://127.0.0.1:{port}", timeout=2.0)
    try:
        assert await sender.post_tx(b"tx_type=14&tx_info=%7B%7D") == (200, '{"code":200}')
        assert await sender.post_tx(b"a=1") == (400, "{}")
        assert await sender.get("/api/v1/nextNonce?x=1") == (200, '{"code":200}\n')
        assert sender.connections == 2  # kept alive, then reopened after "Connection: close"
        assert requests[0].startswith(b"POST /api/v1/sendTx HTTP/1.1\r\n")
        assert b"Content-Type: application/x-www-form-urlencoded" in requests[0]
        assert requests[0].endswith(b"\r\n\r\ntx_type=14&tx_info=%7B%7D")
        assert requests[2].startswith(b"GET /api/v1/nextNonce?x=1 HTTP/1.1\r\n")
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()


def test_tx_sender_refuses_a_bad_url() -> None:
    with pytest.raises(ConfigError):
        TxSender("ftp://example.com", timeout=1.0)
    assert TxSender("https://mainnet.zklighter.elliot.ai", timeout=1.0).port == 443


# -- tokens and error frames on the strict venue ---------------------------------------------------


async def _fill_is_delivered_once(venue: LighterVenue, server: LighterServer, cid: int) -> None:
    sink = Events()
    venue.set_event_callback(sink)
    top = venue.top()
    assert top is not None
    resting = await venue.place_post_only(Side.BUY, D("0.002"), top.bid - 5, cid)
    await wait_for(lambda: resting.order_id is not None or btc(server).open_orders(ACCOUNT))
    [order] = btc(server).open_orders(ACCOUNT)
    btc(server).fill_resting(order.order_id, D("0.002"))
    await wait_for(lambda: sum(f.qty for f in sink.fills(cid)) == D("0.002"))
    assert [f.qty for f in sink.fills(cid)] == [D("0.002")]


async def test_token_rotation_renews_the_subscription_without_a_repeated_subscribe(
    monkeypatch: pytest.MonkeyPatch,
    make_venue: VenueFactory,
    server: LighterServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(LighterVenue, "token_ttl_s", 3)
    monkeypatch.setattr(LighterVenue, "token_margin_s", 2)  # rotated ~1 s before expiry
    caplog.set_level("INFO", logger="exchanges.lighter")
    venue = await make_venue()
    assert venue._token is not None
    first_expiry = venue._token[1]
    # Past the first token's expiry, when the venue would have ended a subscription on it.
    await wait_for(lambda: time.time() > first_expiry + 0.5, timeout=10)
    await wait_for(venue._account_live)
    assert venue.token_calls >= 2
    await _fill_is_delivered_once(venue, server, 81)
    assert "Already Subscribed" not in caplog.text  # never a second subscribe to a live channel


async def test_a_subscription_ended_at_token_expiry_is_renewed_and_loses_no_fill(
    monkeypatch: pytest.MonkeyPatch, make_venue: VenueFactory, server: LighterServer
) -> None:
    monkeypatch.setattr(LighterVenue, "token_ttl_s", 2)
    monkeypatch.setattr(LighterVenue, "token_margin_s", -30)  # no rotation: the venue ends it
    venue = await make_venue()
    assert venue._token is not None
    first_expiry = venue._token[1]
    await wait_for(lambda: time.time() > first_expiry + 0.5, timeout=10)
    await wait_for(venue._account_live, timeout=5)
    assert venue.token_calls >= 2  # a fresh token for the fresh subscription
    await _fill_is_delivered_once(venue, server, 82)


@pytest.mark.parametrize(
    "frame",
    [
        '{"error":{"code":30003,"message":"Already Subscribed to : account_orders/1/7"}}',
        '{"error":{"code":30005,"message":"Invalid Channel"}}',
        '{"error":{"code":30009,"message":"Too Many Messages"}}',
        '{"error":{"code":30010,"message":"Too Many Pending Subscriptions"}}',
    ],
)
async def test_the_venues_verbatim_error_frames_reach_the_error_handler(
    venue: LighterVenue, frame: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="exchanges.lighter")
    before = venue.malformed
    ws = venue._session.ws
    assert ws is not None and ws.pace is not None
    venue._on_frame(frame, time.perf_counter_ns())
    assert venue.malformed == before  # not dropped as malformed
    error = json.loads(frame)["error"]
    assert any(error["message"] in r.getMessage() for r in caplog.records)
    assert venue._account_live()  # none of these ends the account stream
    # "Too many": our sends on that connection are held a while; the others change nothing.
    assert (ws.pace.delay() > 0) == (error["code"] in (30009, 30010))


async def test_too_many_messages_holds_our_sends_then_starts_a_fresh_connection(
    venue: LighterVenue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venue ignored a message of ours (30009 does not say which: a subscribe, maybe):
    after the hold, a fresh connection subscribes everything anew and reconciles."""
    from exchanges.lighter import user_stream

    monkeypatch.setattr(user_stream, "WS_SLOW_DOWN_S", 0.1)
    reconnects = venue.reconnects
    venue._on_frame('{"error":{"code":30009,"message":"Too Many Messages"}}', 0)
    venue._on_frame('{"error":{"code":30009,"message":"Too Many Messages"}}', 0)  # one restart
    await wait_for(lambda: venue.reconnects == reconnects + 1)
    await wait_for(venue._account_live)
    ws = venue._session.ws
    assert ws is not None and ws.pace is not None and ws.pace.delay() == 0  # hold not carried
    assert venue.reconnects == reconnects + 1

"""BackpackVenue against the simulated Backpack venue over loopback (issue 4 acceptance)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import pytest
from bpx.async_.account import Account
from bpx.http_client.async_http_client import AsyncHttpClient

from exchanges.backpack import BackpackVenue, OrderNotFound, _error_from_answer
from exchanges.base import (
    BookTop,
    ConfigError,
    Fill,
    InsufficientLiquidity,
    Order,
    OrderEvent,
    OrderStatus,
    PostOnlyRejected,
    Side,
    Venue,
    VenueEvent,
)
from exchanges.sim.backpack_server import BackpackServer, generate_keypair
from exchanges.sim.market import SimMarket, VenueBook
from tests.waiting import wait_for

SYMBOL = "BTC_USDC_PERP"
ACCOUNT = 3
TICK = Decimal("0.1")


@dataclass
class Rig:
    market: SimMarket
    server: BackpackServer
    venue: BackpackVenue
    public_key: str
    secret_key: str
    events: list[VenueEvent] = field(default_factory=list)

    @property
    def book(self) -> VenueBook:
        return self.market.book("backpack", "BTC")

    @property
    def fills(self) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill)]

    def order_events(self, order_id: str | None = None) -> list[OrderEvent]:
        return [
            e
            for e in self.events
            if isinstance(e, OrderEvent) and (order_id is None or e.order_id == order_id)
        ]

    def resting_bid_price(self, ticks_away: int = 5) -> Decimal:
        bid, _, _, _ = self.book.top()
        return bid - TICK * ticks_away

    async def place(self, client_id: int, qty: str = "0.003") -> Order:
        return await self.venue.place_post_only(
            Side.BUY, Decimal(qty), self.resting_bid_price(), client_id
        )


async def start_rig(
    *, keys: bool = True, cancel_accepted_202: bool = False, **venue_kwargs: Any
) -> Rig:
    market = SimMarket(seed=11, fill_rate=0)
    public_key, secret_key = generate_keypair()
    server = BackpackServer(
        market, api_keys={public_key: ACCOUNT}, cancel_accepted_202=cancel_accepted_202
    )
    await server.start()
    venue = BackpackVenue(
        "BTC",
        api_url=server.api_url,
        ws_url=server.ws_url,
        public_key=public_key if keys else None,
        secret_key=secret_key if keys else None,
        **venue_kwargs,
    )
    rig = Rig(market, server, venue, public_key, secret_key)
    venue.set_event_callback(rig.events.append)
    try:
        await venue.connect()
        if keys:  # the venue sends no subscription ack: wait until the server has it
            await wait_for(lambda: any(c.account == ACCOUNT for c in server._conns))
    except BaseException:
        await server.stop()
        raise
    return rig


async def stop_rig(rig: Rig) -> None:
    await rig.venue.close()
    await rig.server.stop()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = await start_rig(request_timeout=2.0)
    yield r
    await stop_rig(r)


def sim_top(rig: Rig) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    return rig.book.top()


def venue_top(rig: Rig) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
    top = rig.venue.top()
    return None if top is None else (top.bid, top.bid_qty, top.ask, top.ask_qty)


# --------------------------------------------------------------------------------------------
# Markets, book, account
# --------------------------------------------------------------------------------------------


async def test_venue_satisfies_the_venue_protocol(rig: Rig) -> None:
    assert isinstance(rig.venue, Venue)
    assert rig.venue.name == "backpack"


async def test_market_rules_come_from_the_markets_endpoint(rig: Rig) -> None:
    market = rig.venue.market()

    assert market.venue == "backpack"
    assert market.ticker == "BTC"
    assert market.symbol == SYMBOL
    assert market.tick_size == rig.book.rules.tick
    assert market.step_size == rig.book.rules.step
    assert market.min_qty == rig.book.rules.min_qty


async def test_unknown_ticker_is_a_config_error_naming_it() -> None:
    market = SimMarket(seed=1)
    server = BackpackServer(market, api_keys={})
    await server.start()
    venue = BackpackVenue(
        "NOPE", api_url=server.api_url, ws_url=server.ws_url, public_key=None, secret_key=None
    )
    try:
        with pytest.raises(ConfigError, match="NOPE"):
            await venue.connect()
    finally:
        await venue.close()
        await server.stop()


async def test_rejected_api_key_is_a_config_error() -> None:
    market = SimMarket(seed=1)
    server = BackpackServer(market, api_keys={})
    await server.start()
    public_key, secret_key = generate_keypair()
    venue = BackpackVenue(
        "BTC",
        api_url=server.api_url,
        ws_url=server.ws_url,
        public_key=public_key,
        secret_key=secret_key,
    )
    try:
        with pytest.raises(ConfigError, match="API key") as raised:
            await venue.connect()
        assert secret_key not in str(raised.value)
    finally:
        await venue.close()
        await server.stop()


async def test_malformed_secret_key_is_a_config_error_without_the_key() -> None:
    with pytest.raises(ConfigError) as raised:
        BackpackVenue(
            "BTC",
            api_url="http://127.0.0.1:1/",
            ws_url="ws://127.0.0.1:1/",
            public_key="abc",
            secret_key="not-base64!!",
        )
    assert "not-base64" not in str(raised.value)


async def test_top_answers_from_the_streamed_book(rig: Rig) -> None:
    for _ in range(5):
        rig.market.step()

    await wait_for(lambda: venue_top(rig) == sim_top(rig))
    top = rig.venue.top()
    assert isinstance(top, BookTop)
    assert top.bid < top.ask


async def test_public_only_venue_streams_the_book_but_cannot_trade() -> None:
    rig = await start_rig(keys=False)
    try:
        rig.market.step()
        await wait_for(lambda: venue_top(rig) == sim_top(rig))
        with pytest.raises(ConfigError, match="keys"):
            await rig.place(client_id=1)
        summary = await rig.venue.describe()
        assert summary["symbol"] == SYMBOL
    finally:
        await stop_rig(rig)


async def test_position_balance_open_orders_and_describe(rig: Rig) -> None:
    order = await rig.place(client_id=501, qty="0.005")
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.002"))

    position = await rig.venue.position()
    balance = await rig.venue.balance()
    open_orders = await rig.venue.open_orders()
    summary = await rig.venue.describe()

    assert position == Decimal("0.002")
    assert balance.venue == "backpack"
    assert balance.equity > 0
    assert [(o.order_id, o.status, o.filled_qty) for o in open_orders] == [
        (order.order_id, OrderStatus.PARTIALLY_FILLED, Decimal("0.002"))
    ]
    assert summary["position"] == "0.002"
    assert summary["tick_size"] == "0.1"
    assert summary["open_orders"] == [
        {
            "order_id": order.order_id,
            "client_id": 501,
            "side": "buy",
            "qty": "0.005",
            "price": str(order.price),
            "filled": "0.002",
        }
    ]


async def test_fills_since_returns_the_rest_history_oldest_first(rig: Rig) -> None:
    start_ms = int(time.time() * 1000) - 1000
    order = await rig.place(client_id=601, qty="0.004")
    for qty in ("0.001", "0.003"):
        rig.book.fill_resting(int(order.order_id or 0), Decimal(qty))

    fills = await rig.venue.fills_since(start_ms)

    assert [f.qty for f in fills] == [Decimal("0.001"), Decimal("0.003")]
    assert all(f.order_id == order.order_id and f.client_id == 601 for f in fills)
    assert all(f.is_maker and f.side is Side.BUY and f.price == order.price for f in fills)
    assert all(f.venue_ts_ms >= start_ms for f in fills)
    assert await rig.venue.fills_since(int(time.time() * 1000) + 60_000) == []


# --------------------------------------------------------------------------------------------
# Orders and fills over the stream
# --------------------------------------------------------------------------------------------


async def test_post_only_filled_in_three_partials_gives_three_fills_in_order(rig: Rig) -> None:
    order = await rig.place(client_id=1001, qty="0.006")
    assert order.status is OrderStatus.OPEN
    quantities = [Decimal("0.001"), Decimal("0.002"), Decimal("0.003")]

    for qty in quantities:
        rig.book.fill_resting(int(order.order_id or 0), qty)
    await wait_for(lambda: len(rig.fills) == 3)
    await wait_for(lambda: rig.order_events(order.order_id)[-1].status is OrderStatus.FILLED)

    sim_fills = rig.book.fills(ACCOUNT)
    assert [f.trade_id for f in rig.fills] == [str(f.trade_id) for f in sim_fills]
    assert [f.qty for f in rig.fills] == quantities
    assert all(f.price == order.price and f.is_maker for f in rig.fills)
    assert all(f.order_id == order.order_id and f.client_id == 1001 for f in rig.fills)
    assert all(f.recv_ns > 0 for f in rig.fills)
    cumulative = [e.filled_qty for e in rig.order_events(order.order_id)]
    assert cumulative == [Decimal(0), Decimal("0.001"), Decimal("0.003"), Decimal("0.006")]
    assert [e.status for e in rig.order_events(order.order_id)] == [
        OrderStatus.OPEN,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
    ]


async def test_fills_missed_while_the_socket_was_down_are_delivered_once(rig: Rig) -> None:
    order = await rig.place(client_id=1101, qty="0.004")
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.001"))
    await wait_for(lambda: len(rig.fills) == 1)
    ws = rig.venue._ws
    assert ws is not None

    rig.market.faults.arm("ws_drop")
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.002"))  # never sent on the WS
    await wait_for(lambda: ws.reconnects == 1 and rig.venue.recoveries == 1)

    assert rig.market.faults.fired["ws_drop"] == 1
    assert [f.trade_id for f in rig.fills] == [str(f.trade_id) for f in rig.book.fills(ACCOUNT)]
    assert [f.qty for f in rig.fills] == [Decimal("0.001"), Decimal("0.002")]
    assert rig.order_events(order.order_id)[-1].filled_qty == Decimal("0.003")


async def test_duplicated_and_reordered_fill_events_are_delivered_once_each(rig: Rig) -> None:
    order = await rig.place(client_id=1201, qty="0.004")
    order_id = int(order.order_id or 0)
    await wait_for(lambda: len(rig.order_events(order.order_id)) == 1)
    faults = rig.market.faults

    faults.arm("duplicate_event")
    rig.book.fill_resting(order_id, Decimal("0.001"))
    faults.arm("reorder_event")
    rig.book.fill_resting(order_id, Decimal("0.001"))  # held back...
    rig.book.fill_resting(order_id, Decimal("0.001"))  # ...and sent after this one
    await rig.venue.cancel(order)  # its event is the last: everything before it has arrived
    await wait_for(lambda: rig.order_events(order.order_id)[-1].status is OrderStatus.CANCELED)

    assert faults.fired["duplicate_event"] == 1 and faults.fired["reorder_event"] == 1
    sim_ids = [str(f.trade_id) for f in rig.book.fills(ACCOUNT)]
    assert [f.trade_id for f in rig.fills] == [sim_ids[0], sim_ids[2], sim_ids[1]]
    assert rig.venue.duplicates_dropped >= 1
    assert [e.filled_qty for e in rig.order_events(order.order_id)] == [
        Decimal(0),
        Decimal("0.001"),
        Decimal("0.003"),
        Decimal("0.003"),
    ]


async def test_fill_arriving_after_the_cancel_is_delivered(rig: Rig) -> None:
    order = await rig.place(client_id=1301, qty="0.004")
    await wait_for(lambda: len(rig.order_events(order.order_id)) == 1)

    rig.market.faults.arm("reorder_event")
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.001"))  # its event is held
    await rig.venue.cancel(order)
    await wait_for(lambda: len(rig.fills) == 1)

    canceled_at = next(
        i
        for i, e in enumerate(rig.events)
        if isinstance(e, OrderEvent) and e.status is OrderStatus.CANCELED
    )
    assert isinstance(rig.events[-1], Fill) and canceled_at < len(rig.events) - 1
    fill = rig.fills[0]
    assert fill.qty == Decimal("0.001") and fill.order_id == order.order_id
    canceled = rig.order_events(order.order_id)[-1]
    assert canceled.status is OrderStatus.CANCELED and canceled.filled_qty == Decimal("0.001")


async def test_cancel_of_an_order_that_already_filled_is_not_an_error(rig: Rig) -> None:
    order = await rig.place(client_id=1302, qty="0.002")
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.002"))

    await rig.venue.cancel(order)

    await wait_for(lambda: len(rig.fills) == 1)
    assert rig.order_events(order.order_id)[-1].status is OrderStatus.FILLED


async def test_order_state_changed_while_down_is_recovered(rig: Rig) -> None:
    order = await rig.place(client_id=1401, qty="0.002")
    await wait_for(lambda: len(rig.order_events(order.order_id)) == 1)
    ws = rig.venue._ws
    assert ws is not None

    rig.market.faults.arm("ws_drop")
    rig.book.cancel(ACCOUNT, order_id=int(order.order_id or 0))  # e.g. cancelled from the UI
    await wait_for(lambda: ws.reconnects == 1 and rig.venue.recoveries == 1)

    assert rig.order_events(order.order_id)[-1].status is OrderStatus.CANCELED


async def test_post_only_that_would_cross_raises_post_only_rejected(rig: Rig) -> None:
    _, _, ask, _ = rig.book.top()

    with pytest.raises(PostOnlyRejected):
        await rig.venue.place_post_only(Side.BUY, Decimal("0.001"), ask, 1501)

    assert rig.book.find_order(ACCOUNT, client_id=1501) is None


async def test_post_only_reject_fault_raises_post_only_rejected(rig: Rig) -> None:
    rig.market.faults.arm("post_only_reject")

    with pytest.raises(PostOnlyRejected):
        await rig.place(client_id=1502)

    assert rig.book.find_order(ACCOUNT, client_id=1502) is None


async def test_ioc_hedge_reports_what_filled(rig: Rig) -> None:
    _, _, ask, _ = rig.book.top()

    order = await rig.venue.place_hedge(Side.BUY, Decimal("0.001"), ask + TICK * 10, 1601)

    assert order.status is OrderStatus.FILLED
    assert order.filled_qty == Decimal("0.001")
    await wait_for(lambda: len(rig.fills) == 1)
    assert not rig.fills[0].is_maker


async def test_ioc_hedge_that_finds_nothing_raises_insufficient_liquidity(rig: Rig) -> None:
    bid, _, _, _ = rig.book.top()

    with pytest.raises(InsufficientLiquidity):
        await rig.venue.place_hedge(Side.BUY, Decimal("0.001"), bid, 1602)

    sim_order = rig.book.find_order(ACCOUNT, client_id=1602)
    assert sim_order is not None and sim_order.status == "expired"


async def test_malformed_and_unknown_messages_are_logged_and_skipped(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="exchanges.backpack")
    stream = f"account.orderUpdate.{SYMBOL}"
    order = await rig.place(client_id=1701, qty="0.002")
    await wait_for(lambda: len(rig.order_events(order.order_id)) == 1)

    rig.server.publish_raw(stream, '{"e":"orderFill","s":"BTC_USDC_PERP","i":"1"}', account=ACCOUNT)
    rig.server.publish_raw(stream, "{not json", account=ACCOUNT)
    rig.server.publish_raw(stream, '{"e":"somethingNew","s":"BTC_USDC_PERP"}', account=ACCOUNT)
    rig.server.publish_raw(stream, "[1, 2]", account=ACCOUNT)
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.002"))
    await wait_for(lambda: len(rig.fills) == 1)

    assert rig.venue.malformed >= 3
    assert rig.fills[0].qty == Decimal("0.002")
    assert any("malformed" in r.message or "unparsable" in r.message for r in caplog.records)


async def test_a_stream_error_reconnects_and_nothing_is_lost(rig: Rig) -> None:
    order = await rig.place(client_id=1702, qty="0.002")
    await wait_for(lambda: len(rig.order_events(order.order_id)) == 1)
    reconnects = rig.venue.reconnects

    rig.server.send_stream_error(ACCOUNT)  # e.g. the private subscription was refused
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.002"))

    await wait_for(lambda: rig.venue.reconnects > reconnects)
    await wait_for(lambda: len(rig.fills) == 1)  # live or backfilled over REST, once
    assert rig.fills[0].qty == Decimal("0.002")


async def test_the_venues_verbatim_error_frame_reconnects(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """The error frame as the venue sends it (protocols/backpack.md): no stream, no data."""
    frame = '{"id":null,"error":{"code":4006,"message":"Invalid signature"}}'
    reconnects, malformed = rig.venue.reconnects, rig.venue.malformed
    rig.venue._on_frame(frame, time.perf_counter_ns())
    await wait_for(lambda: rig.venue.reconnects > reconnects)
    assert rig.venue.malformed == malformed  # acted on, not dropped as malformed
    assert any("Invalid signature" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------
# Transport faults
# --------------------------------------------------------------------------------------------


async def test_429_and_503_bursts_on_reads_are_retried(rig: Rig) -> None:
    faults = rig.market.faults
    faults.arm("http_429", count=2)
    orders = await rig.venue.open_orders()
    faults.arm("http_503", count=2)
    position = await rig.venue.position()

    assert orders == [] and position == 0
    assert faults.fired["http_429"] == 2 and faults.fired["http_503"] == 2


async def test_429_burst_on_placement_is_retried_and_places_once(rig: Rig) -> None:
    rig.market.faults.arm("http_429", count=2)

    order = await rig.place(client_id=1801)

    assert order.status is OrderStatus.OPEN
    assert [o.order_id for o in rig.book.orders(ACCOUNT)] == [int(order.order_id or 0)]


async def test_503_on_placement_is_resolved_then_placed_exactly_once() -> None:
    rig = await start_rig(request_timeout=2.0, order_window_ms=300)
    try:
        rig.market.faults.arm("http_503")  # answered instead of served: nothing was placed

        order = await rig.place(client_id=1802)

        assert order.status is OrderStatus.OPEN
        assert [o.client_id for o in rig.book.orders(ACCOUNT)] == [1802]
    finally:
        await stop_rig(rig)


async def test_retries_are_signed_afresh(rig: Rig) -> None:
    account = rig.venue._account
    assert account is not None
    account.window = 100  # a resent stale signature would expire before the last attempt
    rig.market.faults.arm("http_503", count=3)

    orders = await rig.venue.open_orders()

    assert orders == []
    assert rig.market.faults.fired["http_503"] == 3


async def test_timeout_on_an_executed_order_resolves_to_the_real_order() -> None:
    rig = await start_rig(request_timeout=0.3)
    try:
        rig.market.faults.ambiguous_delay_s = 0.6
        rig.market.faults.arm("ambiguous_order")

        order = await rig.place(client_id=1901)

        sim_orders = rig.book.orders(ACCOUNT)
        assert [o.order_id for o in sim_orders] == [int(order.order_id or 0)]
        assert order.client_id == 1901
        assert order.status is OrderStatus.OPEN
    finally:
        await stop_rig(rig)


async def test_an_ambiguous_placement_the_stream_has_shown_needs_no_lookup() -> None:
    rig = await start_rig(request_timeout=0.3)
    try:
        rig.market.faults.ambiguous_delay_s = 0.6
        rig.market.faults.arm("ambiguous_order")

        order = await rig.place(client_id=1903)

        assert order.status is OrderStatus.OPEN
        assert [o.order_id for o in rig.book.orders(ACCOUNT)] == [int(order.order_id or 0)]
        counts = rig.server.ledger.account(str(ACCOUNT))["requests"]
        assert isinstance(counts, dict)
        lookups = ("GET /api/v1/order", "GET /wapi/v1/history/orders", "GET /wapi/v1/history/fills")
        assert not any(counts.get(endpoint) for endpoint in lookups)
    finally:
        await stop_rig(rig)


async def test_an_ambiguous_placement_the_stream_never_showed_is_looked_up_over_rest() -> None:
    rig = await start_rig(request_timeout=0.3)
    try:
        rig.market.faults.ambiguous_delay_s = 0.6
        rig.market.faults.arm("ambiguous_order")
        rig.market.faults.arm("ws_drop")  # the order's own event goes down with the socket

        order = await rig.place(client_id=1904)

        assert order.status is OrderStatus.OPEN
        assert [o.order_id for o in rig.book.orders(ACCOUNT)] == [int(order.order_id or 0)]
        counts = rig.server.ledger.account(str(ACCOUNT))["requests"]
        assert isinstance(counts, dict) and counts.get("GET /api/v1/order", 0) >= 1
    finally:
        await stop_rig(rig)


async def test_timeout_on_an_order_filled_meanwhile_resolves_from_history() -> None:
    rig = await start_rig(request_timeout=0.3)
    try:
        rig.market.faults.ambiguous_delay_s = 0.6
        rig.market.faults.arm("ambiguous_order")

        async def fill_when_booked() -> None:
            await wait_for(lambda: rig.book.find_order(ACCOUNT, client_id=1902) is not None)
            sim_order = rig.book.find_order(ACCOUNT, client_id=1902)
            assert sim_order is not None
            rig.book.fill_resting(sim_order.order_id, Decimal("0.003"))

        filler = asyncio.create_task(fill_when_booked())
        order = await rig.place(client_id=1902)
        await filler

        assert order.status is OrderStatus.FILLED
        assert order.filled_qty == Decimal("0.003")
        assert len(rig.book.orders(ACCOUNT)) == 1
    finally:
        await stop_rig(rig)


async def test_depth_gap_resyncs_to_the_true_top(rig: Rig) -> None:
    rig.market.step()
    await wait_for(lambda: venue_top(rig) == sim_top(rig))
    resyncs = rig.venue.resyncs

    rig.market.faults.arm("depth_gap")
    for _ in range(5):
        rig.market.step()
    await wait_for(lambda: rig.venue.resyncs > resyncs and venue_top(rig) == sim_top(rig))

    assert rig.market.faults.fired["depth_gap"] == 1
    assert rig.venue.book.gaps >= 1


async def test_book_is_not_trusted_while_disconnected_and_resyncs_after(rig: Rig) -> None:
    ws = rig.venue._ws
    assert ws is not None
    tops_at_disconnect: list[BookTop | None] = []
    on_disconnect = ws._on_disconnect
    assert on_disconnect is not None

    def spy() -> None:
        on_disconnect()
        tops_at_disconnect.append(rig.venue.top())

    ws._on_disconnect = spy
    rig.server.drop_ws()
    await wait_for(lambda: ws.reconnects == 1)
    rig.market.step()
    await wait_for(lambda: venue_top(rig) == sim_top(rig))

    assert tops_at_disconnect == [None]


# --------------------------------------------------------------------------------------------
# Connection reuse
# --------------------------------------------------------------------------------------------


async def test_one_hundred_orders_reuse_the_connection(rig: Rig) -> None:
    before = rig.server.connections_opened

    for client_id in range(2001, 2101):
        await rig.place(client_id=client_id, qty="0.001")

    opened = rig.server.connections_opened - before
    assert opened <= 2, f"{opened} new TCP connections for 100 orders"
    assert len(rig.book.open_orders(ACCOUNT)) == 100


async def test_bpx_default_client_opens_a_connection_per_order(rig: Rig) -> None:
    account = Account(rig.public_key, rig.secret_key, http_client=AsyncHttpClient())
    account.BPX_API_URL = rig.server.api_url
    price = str(rig.resting_bid_price())
    before = rig.server.connections_opened

    for client_id in range(3001, 3101):
        await account.execute_order(
            symbol=SYMBOL,
            side="Bid",
            order_type="Limit",
            quantity="0.001",
            price=price,
            client_id=client_id,
            post_only=True,
        )

    assert rig.server.connections_opened - before >= 95


# --------------------------------------------------------------------------------------------
# The strict venue: typed cancels, 202 cancels, gone orders, lagging history, system fills
# --------------------------------------------------------------------------------------------


async def test_cancel_by_client_id_sends_an_integer_the_venue_accepts(rig: Rig) -> None:
    order = await rig.place(client_id=2001)
    requests_before = rig.venue.http.requests

    await rig.venue.cancel(replace(order, order_id=None))  # only the client id is known

    await wait_for(lambda: rig.order_events(order.order_id)[-1].status is OrderStatus.CANCELED)
    assert rig.venue.http.requests == requests_before + 1  # our keep-alive client, once
    counts = rig.server.ledger.account(str(ACCOUNT))["requests"]
    assert isinstance(counts, dict) and counts["DELETE /api/v1/order"] == 1


async def test_cancel_answered_202_is_requested_and_confirmed_by_the_stream() -> None:
    rig = await start_rig(request_timeout=2.0, cancel_accepted_202=True)
    try:
        order = await rig.place(client_id=2002)

        await rig.venue.cancel(order)

        await wait_for(lambda: rig.order_events(order.order_id)[-1].status is OrderStatus.CANCELED)
        assert rig.server.cancels_accepted_202 == 1
    finally:
        await stop_rig(rig)


@pytest.mark.parametrize("status", [400, 404])
def test_resource_not_found_is_order_not_found_whatever_the_status(status: int) -> None:
    error = _error_from_answer(status, {"code": "RESOURCE_NOT_FOUND", "message": "Not Found"})

    assert isinstance(error, OrderNotFound) and not error.retryable


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"code": "INVALID_ORDER", "message": "Order not found"}),  # the older form
        (404, {"code": "NOT_FOUND", "message": "Not Found"}),  # any 404
        (404, "Not Found"),  # a 404 without a JSON body
    ],
)
def test_every_other_gone_order_form_is_order_not_found(status: int, body: object) -> None:
    error = _error_from_answer(status, body)

    assert isinstance(error, OrderNotFound) and not error.retryable


async def test_cancel_of_a_gone_order_by_client_id_is_not_an_error(rig: Rig) -> None:
    order = await rig.place(client_id=2003, qty="0.002")
    rig.book.cancel(ACCOUNT, order_id=int(order.order_id or 0))

    await rig.venue.cancel(replace(order, order_id=None))  # 400 RESOURCE_NOT_FOUND: gone

    await wait_for(lambda: rig.order_events(order.order_id)[-1].status is OrderStatus.CANCELED)


async def test_system_fills_in_history_are_skipped_with_a_log_line(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    start_ms = int(time.time() * 1000) - 1000
    order = await rig.place(client_id=2004, qty="0.002")
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.002"))
    for trade_id in (None, 0):
        rig.server.add_system_fill(
            ACCOUNT, "BTC", Side.SELL, Decimal("0.01"), Decimal(60_000), trade_id=trade_id
        )

    fills = await rig.venue.fills_since(start_ms)

    assert [(f.order_id, f.qty) for f in fills] == [(order.order_id, Decimal("0.002"))]
    assert sum("system fill" in r.message for r in caplog.records) == 2


async def test_fills_since_waits_for_the_lagging_history(rig: Rig) -> None:
    assert rig.server.history.lag_s == 0.5  # the venue's default
    order = await rig.place(client_id=2005, qty="0.002")
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.002"))
    await wait_for(lambda: len(rig.fills) == 1)  # on the stream, not yet in history

    fills = await rig.venue.fills_since(int(time.time() * 1000) - 5_000)

    assert [f.trade_id for f in fills] == [rig.fills[0].trade_id]


async def test_a_fill_made_just_before_a_reconnect_is_backfilled_after_the_history_lag(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exchanges.backpack")
    assert rig.server.history.lag_s == 0.5  # the venue's default
    order = await rig.place(client_id=2006, qty="0.004")
    ws = rig.venue._ws
    assert ws is not None

    rig.market.faults.arm("ws_drop")
    made = time.monotonic()
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.003"))  # never sent on the WS
    await wait_for(lambda: ws.reconnects == 1 and rig.venue.recoveries == 1)

    assert [f.qty for f in rig.fills] == [Decimal("0.003")]  # once, though read twice
    assert time.monotonic() - made >= 0.5  # recovery is complete only after the lag
    assert rig.order_events(order.order_id)[-1].filled_qty == Decimal("0.003")
    assert any("after the history lag" in r.message for r in caplog.records)

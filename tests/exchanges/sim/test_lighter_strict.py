"""The simulated Lighter venue is as strict as the real one: tiers (sequencer delays, rate
limits, fees), WebSocket rules, SkipNonce, client order index reuse, paged trades and sendtx
over the WebSocket (/work/shared/protocols/lighter.md, "Second reading")."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import aiohttp
import lighter
import pytest
import websockets
from lighter import models

from exchanges.base import Side
from exchanges.sim.faults import FaultPlan
from exchanges.sim.lighter_server import LighterServer, generate_api_key
from exchanges.sim.market import DEFAULT_TICKERS, SimMarket, TickerSpec
from tests.exchanges.sim.test_lighter_server import (
    ACCOUNT,
    BTC,
    KEY,
    WsProbe,
    get_json,
    post_tx,
    raw_order,
    token,
)
from tests.waiting import wait_for

MakeServer = Callable[..., Awaitable[LighterServer]]


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return generate_api_key()


@pytest.fixture
async def make_server(keypair: tuple[str, str]) -> AsyncIterator[MakeServer]:
    servers: list[LighterServer] = []

    async def make(**options: Any) -> LighterServer:
        clock = options.pop("clock_ms", None)
        tickers = options.pop("tickers", None)
        market = SimMarket(
            seed=7,
            fill_rate=0.0,
            faults=FaultPlan("none", seed=7),
            clock_ms=clock,
            tickers=tickers,
        )
        server = LighterServer(market, accounts={ACCOUNT: {KEY: keypair[1]}}, **options)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def connect(server: LighterServer) -> WsProbe:
    probe = WsProbe(await websockets.connect(server.ws_url))
    await probe.next("connected")
    return probe


def taker_form(server: LighterServer, nonce: int, client_id: int) -> dict[str, str]:
    """A market buy (IOC) well within its worst price."""
    book = server.market.book("lighter", "BTC")
    worst = int((book.top()[2] * 2).scaleb(book.rules.price_decimals))
    return raw_order(server, nonce, client_id=client_id, price=worst)


def maker_form(server: LighterServer, nonce: int, client_id: int, tif: int = 1) -> dict[str, str]:
    """A limit buy far below the book (GTT by default)."""
    book = server.market.book("lighter", "BTC")
    bid = int((book.top()[0] - 1000).scaleb(book.rules.price_decimals))
    return raw_order(server, nonce, client_id=client_id, price=bid, order_type=0, tif=tif)


def with_info(form: dict[str, str], **changes: Any) -> dict[str, str]:
    info = json.loads(form["tx_info"])
    info.update(changes)
    return {**form, "tx_info": json.dumps(info)}


async def outcome_delay(
    server: LighterServer, http: aiohttp.ClientSession, form: dict[str, str], client_id: int
) -> tuple[float, dict[str, Any]]:
    """Seconds from sending `form` until its order exists on the book (checked unexecuted
    when the reply arrives), and the reply."""
    book = server.market.book("lighter", "BTC")
    sent_ms = time.time() * 1000
    sent = time.monotonic()
    status, reply = await post_tx(http, server, form)
    assert (status, reply["code"]) == (200, 200), reply
    assert book.find_order(ACCOUNT, client_id=client_id) is None  # not executed yet
    assert reply["predicted_execution_time_ms"] >= sent_ms
    await wait_for(lambda: book.find_order(ACCOUNT, client_id=client_id) is not None)
    return time.monotonic() - sent, reply


class TimedProbe(WsProbe):
    """A WsProbe that also notes when each message arrived (time.monotonic())."""

    def __init__(self, ws: Any) -> None:
        self.arrived: list[float] = []
        super().__init__(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.arrived.append(time.monotonic())
                self.messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    def order_updates(self, client_id: int) -> list[tuple[float, dict[str, Any]]]:
        """(arrival, order) of each account_orders update naming this client order."""
        return [
            (arrived, order)
            for arrived, message in zip(self.arrived, self.messages, strict=False)
            if message.get("type") == "update/account_orders"
            for orders in message["orders"].values()
            for order in orders
            if order["client_order_index"] == client_id
        ]


async def rest_shows_order(
    server: LighterServer, http: aiohttp.ClientSession, client_id: int
) -> bool:
    """Whether the account's REST reads (active orders, inactive orders, trades) show it."""
    base, query = f"{server.api_url}/api/v1", f"account_index={ACCOUNT}&market_id={BTC}"
    auth = {"authorization": token()}
    reads = [
        await get_json(http, f"{base}/accountActiveOrders?{query}", auth),
        await get_json(http, f"{base}/accountInactiveOrders?{query}&limit=10", auth),
        await get_json(http, f"{base}/trades?{query}&limit=10"),
    ]
    assert [status for status, _ in reads] == [200, 200, 200], reads
    (_, active), (_, inactive), (_, trades) = reads
    orders = active["orders"] + inactive["orders"]
    return any(o["client_order_index"] == client_id for o in orders) or any(
        client_id in (t["bid_client_id"], t["ask_client_id"]) for t in trades["trades"]
    )


@dataclass
class ClientView:
    """A sendTx and its outcome as a client saw them; times in seconds after the request left.
    The venue accepted (and answered) it somewhere between 0 and `replied_at`: measured from
    the send, every bound below holds however late the client reads its socket."""

    reply: dict[str, Any]
    sent_ms: float  # unix ms just before the request left
    replied_at: float  # when the reply was received
    updates: list[tuple[float, dict[str, Any]]]  # the order's account_orders updates
    rest_reads: list[tuple[float, bool]]  # (answered at, showed the order)


async def watch_ioc_outcome(
    server: LighterServer, http: aiohttp.ClientSession, client_id: int
) -> ClientView:
    """Send a market buy (IOC) over REST with the account's order channel subscribed, then
    read REST every 50 ms until the channel shows the order, and once more after."""
    probe = TimedProbe(await websockets.connect(server.ws_url))
    try:
        await probe.next("connected")
        channel = f"account_orders/{BTC}/{ACCOUNT}"
        await probe.send({"type": "subscribe", "channel": channel, "auth": token()})
        await probe.next("subscribed/account_orders")
        form = taker_form(server, server.next_nonce(ACCOUNT, KEY), client_id)
        sent, sent_ms = time.monotonic(), time.time() * 1000
        status, reply = await post_tx(http, server, form)
        replied_at = time.monotonic() - sent
        assert (status, reply["code"]) == (200, 200), reply
        rest_reads: list[tuple[float, bool]] = []
        while not probe.order_updates(client_id):
            assert time.monotonic() - sent < 5.0, "no account_orders update for the order"
            shown = await rest_shows_order(server, http, client_id)
            rest_reads.append((time.monotonic() - sent, shown))
            await asyncio.sleep(0.05)  # paced: Standard allows 60 requests a minute
        shown = await rest_shows_order(server, http, client_id)
        rest_reads.append((time.monotonic() - sent, shown))
        await wait_for(lambda: probe.order_updates(client_id)[-1][1]["status"] == "filled")
    finally:
        await probe.close()
    updates = [(arrived - sent, order) for arrived, order in probe.order_updates(client_id)]
    return ClientView(reply, sent_ms, replied_at, updates, rest_reads)


def assert_outcome_not_before(view: ClientView, delay_ms: int) -> None:
    """Nothing of the order reaches the client, on the channel or REST, until `delay_ms`
    after the venue answered the sendTx (which it did no earlier than the send); then both
    show it. The reply's predicted execution time lies between the send plus `delay_ms` and
    the first update."""
    delay_s = delay_ms / 1000
    first_update_at = view.updates[0][0]
    assert first_update_at >= delay_s and first_update_at > view.replied_at
    assert view.updates[-1][1]["status"] == "filled"
    early = [shown for at, shown in view.rest_reads if at < delay_s]
    assert early and not any(early)  # read (and answered) before the delay could have passed
    assert view.rest_reads[-1][1]
    predicted = view.reply["predicted_execution_time_ms"]
    update_ms = view.sent_ms + first_update_at * 1000
    assert view.sent_ms + delay_ms <= predicted <= update_ms + 1  # whole ms, rounded up


# --------------------------------------------------------------------------------------------
# Tiers: the sequencer's delays
# --------------------------------------------------------------------------------------------


async def test_standard_ioc_outcome_comes_no_earlier_than_300ms_after_the_reply(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")
    view = await watch_ioc_outcome(server, http, client_id=1)
    assert_outcome_not_before(view, 300)


async def test_premium_ioc_outcome_comes_no_earlier_than_200ms_after_the_reply(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="premium")
    view = await watch_ioc_outcome(server, http, client_id=1)
    assert_outcome_not_before(view, 200)


async def test_standard_maker_order_and_cancel_wait_200ms(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")
    book = server.market.book("lighter", "BTC")
    nonce = server.next_nonce(ACCOUNT, KEY)
    waited, _ = await outcome_delay(server, http, maker_form(server, nonce, 1), 1)
    assert waited >= 0.2
    order = book.find_order(ACCOUNT, client_id=1)
    assert order is not None and order.is_open
    cancel = {
        "tx_type": "15",
        "tx_info": json.dumps(
            {
                "AccountIndex": ACCOUNT,
                "ApiKeyIndex": KEY,
                "MarketIndex": BTC,
                "Index": order.order_id,
                "ExpiredAt": int(time.time() * 1000) + 600_000,
                "Nonce": nonce + 1,
                "Sig": "c2ln",
            }
        ),
    }
    sent = time.monotonic()
    status, reply = await post_tx(http, server, cancel)
    assert (status, reply["code"]) == (200, 200)
    assert order.is_open
    await wait_for(lambda: not order.is_open)
    assert time.monotonic() - sent >= 0.2


async def test_an_account_executes_in_submission_order_whatever_the_delays(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="premium")  # taker 200 ms, maker 0 ms
    book = server.market.book("lighter", "BTC")
    executed: list[int | None] = []
    book.on_order(lambda u: executed.append(u.order.client_id) if u.kind == "accepted" else None)
    nonce = server.next_nonce(ACCOUNT, KEY)
    await post_tx(http, server, taker_form(server, nonce, 1))
    await post_tx(http, server, maker_form(server, nonce + 1, 2))
    await wait_for(lambda: len(executed) == 2)
    assert executed == [1, 2]


async def test_unlimited_executes_inside_the_send_tx(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="unlimited")
    nonce = server.next_nonce(ACCOUNT, KEY)
    status, reply = await post_tx(http, server, taker_form(server, nonce, 1))
    assert (status, reply["code"]) == (200, 200)
    order = server.market.book("lighter", "BTC").find_order(ACCOUNT, client_id=1)
    assert order is not None and order.status == "filled"


async def test_post_only_cross_is_canceled_at_execution_not_refused_at_once(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")
    book = server.market.book("lighter", "BTC")
    ask = int(book.top()[2].scaleb(book.rules.price_decimals))
    nonce = server.next_nonce(ACCOUNT, KEY)
    form = raw_order(server, nonce, client_id=9, price=ask, order_type=0, tif=2)
    status, reply = await post_tx(http, server, form)
    assert (status, reply["code"]) == (200, 200)
    url = f"{server.api_url}/api/v1/accountInactiveOrders?account_index={ACCOUNT}&limit=5"
    auth = {"authorization": token()}
    _, inactive = await get_json(http, url, auth)
    assert inactive["orders"] == []
    await wait_for(lambda: bool(server._synthetic.get(ACCOUNT)))
    _, inactive = await get_json(http, url, auth)
    assert [(o["client_order_index"], o["status"]) for o in inactive["orders"]] == [
        (9, "canceled-post-only")
    ]


async def ioc_buy_then_move_the_book(
    server: LighterServer, http: aiohttp.ClientSession, mid_after: Decimal
) -> tuple[int, Decimal, Decimal]:
    """Send a Standard IOC buy limited one tick above the best ask (the book's top level can
    fill it), and once it is accepted move the price path to `mid_after`: the order's client
    id, its limit and the best ask after the move. A stalled machine may let the 300 ms delay
    pass before the move: the order proves nothing then, and a fresh one is sent."""
    market, book = server.market, server.market.book("lighter", "BTC")
    start = market.mid("BTC")
    for client_id in range(31, 36):
        market.set_mid("BTC", start)
        _, _, ask, ask_qty = book.top()
        limit = ask + book.rules.tick
        assert ask_qty >= Decimal("0.001")  # the order's size: it would fill at acceptance
        price = int(limit.scaleb(book.rules.price_decimals))
        nonce = server.next_nonce(ACCOUNT, KEY)
        form = raw_order(server, nonce, client_id=client_id, price=price, order_type=0, tif=0)
        status, reply = await post_tx(http, server, form)
        assert (status, reply["code"]) == (200, 200), reply
        market.set_mid("BTC", mid_after)
        moved_ask = book.top()[2]
        if book.find_order(ACCOUNT, client_id=client_id) is None:  # moved before execution
            break
    else:
        raise AssertionError("every order executed before the book could move")
    await wait_for(lambda: book.find_order(ACCOUNT, client_id=client_id) is not None)
    return client_id, limit, moved_ask


async def rest_order_and_trades(
    server: LighterServer, http: aiohttp.ClientSession, client_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The order's record among the account's finished orders, and its trades, over REST."""
    base, query = f"{server.api_url}/api/v1", f"account_index={ACCOUNT}&market_id={BTC}"
    _, inactive = await get_json(
        http, f"{base}/accountInactiveOrders?{query}&limit=20", {"authorization": token()}
    )
    _, trades = await get_json(http, f"{base}/trades?{query}&limit=20")
    [order] = [o for o in inactive["orders"] if o["client_order_index"] == client_id]
    return order, [t for t in trades["trades"] if t["bid_client_id"] == client_id]


async def test_an_ioc_whose_limit_the_book_left_during_the_delay_is_canceled_unfilled(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")
    higher = server.market.mid("BTC") * Decimal("1.01")

    client_id, limit, moved_ask = await ioc_buy_then_move_the_book(server, http, higher)

    assert moved_ask > limit  # nothing left within the limit
    order, trades = await rest_order_and_trades(server, http, client_id)
    assert order["status"] == "canceled-not-enough-liquidity"
    assert Decimal(order["filled_base_amount"]) == 0 and trades == []


async def test_an_ioc_fills_at_the_price_the_book_has_when_the_delay_ends(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")
    lower = server.market.mid("BTC") * Decimal("0.99")

    client_id, limit, moved_ask = await ioc_buy_then_move_the_book(server, http, lower)

    order, [trade] = await rest_order_and_trades(server, http, client_id)
    assert order["status"] == "filled"
    assert Decimal(trade["price"]) == moved_ask < limit - 100  # the new asks, not the old


async def test_api_level_errors_still_answer_at_once(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")
    nonce = server.next_nonce(ACCOUNT, KEY)
    status, body = await post_tx(http, server, taker_form(server, nonce + 5, 1))
    assert status == 400 and body["code"] == 21104 and "invalid nonce" in body["message"]
    expired = with_info(taker_form(server, nonce, 1), ExpiredAt=int(time.time() * 1000) - 1)
    status, body = await post_tx(http, server, expired)
    assert status == 400 and body["code"] not in (200, 21104)
    assert server.next_nonce(ACCOUNT, KEY) == nonce


# --------------------------------------------------------------------------------------------
# Rate limits and the request ledger
# --------------------------------------------------------------------------------------------


async def test_the_61st_standard_request_in_a_minute_is_429(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")
    url = f"{server.api_url}/api/v1/orderBooks"
    for _ in range(60):
        status, _ = await get_json(http, url)
        assert status == 200
    async with http.get(url) as resp:
        assert resp.status == 429
        assert await resp.json() == {"code": 429, "message": "Too Many Requests"}
        assert int(resp.headers["Retry-After"]) >= 1
    # The simulator's own routes are neither limited nor counted.
    status, ledger = await get_json(http, f"{server.api_url}/_sim/requests")
    assert status == 200
    assert ledger["ips"]["127.0.0.1"]["requests_total"] == 61
    assert ledger["ips"]["127.0.0.1"]["http_429"] == 1


async def test_the_account_budget_follows_the_account_tier(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="unlimited", account_tiers={ACCOUNT: "standard"})
    base = f"{server.api_url}/api/v1"
    named = f"{base}/nextNonce?account_index={ACCOUNT}&api_key_index={KEY}"
    for _ in range(60):
        assert (await get_json(http, named))[0] == 200
    assert (await get_json(http, f"{base}/account?by=index&value={ACCOUNT}"))[0] == 429
    status, body = await post_tx(http, server, taker_form(server, server.next_nonce(7, KEY), 1))
    assert status == 429 and body["code"] == 429
    assert (await get_json(http, f"{base}/orderBooks"))[0] == 200  # the IP is unlimited


async def test_account_limits_says_the_accounts_tier_to_its_token_only(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard", account_tiers={ACCOUNT: "premium"})
    url = f"{server.api_url}/api/v1/accountLimits?account_index={ACCOUNT}"
    status, body = await get_json(http, url, {"authorization": token()})
    assert (status, body["code"], body["user_tier"]) == (200, 200, "premium")
    assert body["current_taker_fee_tick"] == 280  # 2.8 bps
    status, body = await get_json(http, url)
    assert status != 200 or body["code"] != 200  # no token: refused


async def test_requests_refused_by_the_ip_budget_spend_nothing_of_the_account_budget(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")  # 60 a minute per IP, and per account
    base = f"{server.api_url}/api/v1"
    named = f"{base}/nextNonce?account_index={ACCOUNT}&api_key_index={KEY}"
    for _ in range(60):
        assert (await get_json(http, f"{base}/orderBooks"))[0] == 200
    for _ in range(10):
        assert (await get_json(http, named))[0] == 429  # this IP's minute is spent
    # From another address the account still has its whole minute.
    other_ip = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=other_ip) as elsewhere:
        for _ in range(60):
            assert (await get_json(elsewhere, named))[0] == 200


async def test_premium_requests_are_weighted(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="premium")
    url = f"{server.api_url}/api/v1/trades?account_index={ACCOUNT}&limit=10"
    for _ in range(40):  # 40 x 600 = 24,000
        assert (await get_json(http, url))[0] == 200
    assert (await get_json(http, url))[0] == 429


async def test_ws_sendtx_shares_the_rest_budget(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")
    named = f"{server.api_url}/api/v1/nextNonce?account_index={ACCOUNT}&api_key_index={KEY}"
    for _ in range(59):
        assert (await get_json(http, named))[0] == 200
    ws = await connect(server)
    try:
        nonce = server.next_nonce(ACCOUNT, KEY)
        for i, request_id in enumerate(["a", "b"]):
            info = json.loads(taker_form(server, nonce + i, i + 1)["tx_info"])
            await ws.send(
                {
                    "type": "jsonapi/sendtx",
                    "data": {"id": request_id, "tx_type": 14, "tx_info": info},
                }
            )
        await wait_for(lambda: len(ws.of("jsonapi/sendtx")) == 2)
        first, second = ws.of("jsonapi/sendtx")
        assert (first["id"], first["code"]) == ("a", 200)
        assert (second["id"], second["code"]) == ("b", 429)
        assert second["error"]["code"] == 429
    finally:
        await ws.close()


async def test_the_request_ledger_counts_what_the_client_sent(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="unlimited")
    base = f"{server.api_url}/api/v1"
    for _ in range(3):
        await get_json(http, f"{base}/orderBooks")
    for _ in range(2):
        await get_json(http, f"{base}/nextNonce?account_index={ACCOUNT}&api_key_index={KEY}")
    await post_tx(http, server, taker_form(server, server.next_nonce(ACCOUNT, KEY), 1))
    ws = await connect(server)
    try:
        await ws.send({"type": "subscribe", "channel": f"order_book/{BTC}"})
        await ws.send({"type": "subscribe", "channel": f"account_all/{ACCOUNT}"})
        await ws.next("subscribed/account_all")
    finally:
        await ws.close()
    _, ledger = await get_json(http, f"{server.api_url}/_sim/requests")
    account = ledger["accounts"][str(ACCOUNT)]
    assert account["requests"] == {"/api/v1/nextNonce": 2, "/api/v1/sendTx": 1}
    assert (account["send_tx"], account["ws_messages"]) == (1, 1)
    ip = ledger["ips"]["127.0.0.1"]
    assert (ip["requests_total"], ip["send_tx"], ip["ws_messages"], ip["http_429"]) == (6, 1, 2, 0)


# --------------------------------------------------------------------------------------------
# WebSocket rules
# --------------------------------------------------------------------------------------------


async def test_a_repeated_subscribe_gets_30003_and_no_snapshot(make_server: MakeServer) -> None:
    server = await make_server(tier="standard")
    ws = await connect(server)
    try:
        channel = f"account_orders/{BTC}/{ACCOUNT}"
        await ws.send({"type": "subscribe", "channel": channel, "auth": token()})
        await ws.send({"type": "subscribe", "channel": channel, "auth": token()})
        error = await ws.next("error")
        assert error == {"error": {"code": 30003, "message": f"Already Subscribed to : {channel}"}}
        assert len(ws.of("subscribed/account_orders")) == 1
    finally:
        await ws.close()


async def test_unsubscribe_then_subscribe_sends_a_fresh_snapshot(make_server: MakeServer) -> None:
    server = await make_server(tier="standard")
    ws = await connect(server)
    try:
        channel = f"order_book/{BTC}"
        await ws.send({"type": "subscribe", "channel": channel})
        await ws.send({"type": "unsubscribe", "channel": channel})
        await ws.send({"type": "subscribe", "channel": channel})
        await ws.next("subscribed/order_book", after=1)
        assert ws.of("error") == []
        await ws.send({"type": "unsubscribe", "channel": "trade/1"})
        assert (await ws.next("error"))["error"]["code"] == 30002
    finally:
        await ws.close()


async def test_an_invalid_channel_gets_a_bare_30005_frame(make_server: MakeServer) -> None:
    server = await make_server(tier="standard")
    ws = await connect(server)
    try:
        await ws.send({"type": "subscribe", "channel": "order_book/99"})
        assert await ws.next("error") == {"error": {"code": 30005, "message": "Invalid Channel"}}
    finally:
        await ws.close()


async def test_the_201st_ws_message_in_a_minute_gets_30009(make_server: MakeServer) -> None:
    server = await make_server(tier="standard")
    ws = await connect(server)
    try:
        for _ in range(201):
            await ws.send({"type": "ping"})
        await ws.next("error")
        await wait_for(lambda: len(ws.of("pong")) == 200)
        assert [e["error"]["code"] for e in ws.of("error")] == [30009]
    finally:
        await ws.close()


async def test_more_than_50_unacknowledged_subscribes_get_30010(make_server: MakeServer) -> None:
    server = await make_server(tier="standard")
    ws = await connect(server)
    try:
        [conn] = list(server._conns)
        # Received in one go, before the writer could send any reply.
        for _ in range(51):
            server._on_client_message(conn, json.dumps({"type": "subscribe", "channel": "x/1"}))
        await wait_for(lambda: len(ws.of("error")) == 51)
        codes = [e["error"]["code"] for e in ws.of("error")]
        assert codes.count(30005) == 50 and codes[-1] == 30010
    finally:
        await ws.close()


def many_markets(count: int) -> dict[str, TickerSpec]:
    """`count` copies of BTC under market ids 100.., for more valid channels than the ten
    default markets offer (order_book/<id> each)."""
    btc = DEFAULT_TICKERS["BTC"]
    return {
        f"M{i}": replace(
            btc,
            ticker=f"M{i}",
            backpack=replace(btc.backpack, symbol=f"M{i}_USDC_PERP"),
            lighter=replace(btc.lighter, symbol=f"M{i}", market_id=100 + i),
        )
        for i in range(count)
    }


def send_at_once(probe: WsProbe, messages: list[dict[str, Any]]) -> None:
    """Send the messages back to back in one TCP write (websockets' sans-I/O layer frames
    them): the server reads them all before its writer can reply to any."""
    for message in messages:
        probe.ws.protocol.send_text(json.dumps(message).encode())
    probe.ws.transport.write(b"".join(probe.ws.protocol.data_to_send()))


async def test_valid_subscribes_past_50_unacknowledged_get_a_bare_30010_frame(
    make_server: MakeServer,
) -> None:
    server = await make_server(tier="standard", tickers=many_markets(60))
    channels = [f"order_book/{100 + i}" for i in range(60)]
    ws = await connect(server)
    try:
        send_at_once(ws, [{"type": "subscribe", "channel": c} for c in channels])

        await wait_for(lambda: len(ws.of("subscribed/order_book")) + len(ws.of("error")) == 60)
        snapshots = [m["channel"] for m in ws.of("subscribed/order_book")]
        assert snapshots == [c.replace("/", ":") for c in channels[:50]]
        bare = {"error": {"code": 30010, "message": "Too Many Pending Subscriptions"}}
        assert ws.of("error") == [bare] * 10
    finally:
        await ws.close()


async def test_a_client_that_waits_for_each_acknowledgement_may_subscribe_past_50(
    make_server: MakeServer,
) -> None:
    server = await make_server(tier="standard", tickers=many_markets(60))
    ws = await connect(server)
    try:
        for i in range(60):
            await ws.send({"type": "subscribe", "channel": f"order_book/{100 + i}"})
            await ws.next("subscribed/order_book", after=i)

        assert ws.of("error") == []
    finally:
        await ws.close()


async def test_tokens_expiring_more_than_8h_ahead_are_refused(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")
    far = token(expiry=time.time() + 8 * 3600 + 600)
    url = f"{server.api_url}/api/v1/accountActiveOrders?account_index={ACCOUNT}"
    status, body = await get_json(http, url, {"authorization": far})
    assert status == 400 and "8 hours" in body["message"]
    assert (await get_json(http, url, {"authorization": token(time.time() + 7 * 3600)}))[0] == 200
    ws = await connect(server)
    try:
        channel = f"account_all_orders/{ACCOUNT}"
        await ws.send({"type": "subscribe", "channel": channel, "auth": far})
        assert (await ws.next("error"))["error"]["code"] == 30013
    finally:
        await ws.close()


async def test_an_expired_token_ends_its_subscription(make_server: MakeServer) -> None:
    server = await make_server(tier="unlimited")
    ws = await connect(server)
    try:
        channel = f"account_orders/{BTC}/{ACCOUNT}"
        await ws.send({"type": "subscribe", "channel": channel, "auth": token(time.time() + 1)})
        await ws.send({"type": "subscribe", "channel": f"order_book/{BTC}"})
        await ws.next("subscribed/account_orders")
        error = await ws.next("error", timeout=4.0)
        assert error["error"]["code"] == 30013 and "token expired" in error["error"]["message"]
        assert channel in error["error"]["message"]
        book = server.market.book("lighter", "BTC")
        seen = len(ws.of("update/order_book"))
        book.place_limit(
            ACCOUNT, Side.BUY, Decimal("0.001"), book.top()[0] - 100, client_id=3, post_only=True
        )
        await ws.next("update/order_book", after=seen)  # the same frame flush has passed
        assert ws.of("update/account_orders") == []
    finally:
        await ws.close()


async def test_connections_close_at_their_maximum_age(make_server: MakeServer) -> None:
    server = await make_server(tier="standard", connection_max_age_s=0.3)
    opened = time.monotonic()
    ws = await connect(server)
    try:
        await asyncio.wait_for(ws.closed.wait(), 3.0)
        assert time.monotonic() - opened >= 0.3  # open until its age, not closed early
    finally:
        await ws.close()


# --------------------------------------------------------------------------------------------
# Nonces and client order indexes
# --------------------------------------------------------------------------------------------


async def test_a_skip_nonce_tx_is_accepted_above_the_last_nonce(
    make_server: MakeServer, http: aiohttp.ClientSession, keypair: tuple[str, str]
) -> None:
    server = await make_server(tier="unlimited")
    signer = lighter.SignerClient(
        url=server.api_url, account_index=ACCOUNT, api_private_keys={KEY: keypair[0]}
    )
    try:
        jump = server.next_nonce(ACCOUNT, KEY) + 1000
        book = server.market.book("lighter", "BTC")
        worst = int((book.top()[2] * 2).scaleb(book.rules.price_decimals))
        args = (BTC, 11, 100, worst, 0, 1, 0, 0, 0, 0)
        tx_type, tx_info, _, err = signer.sign_create_order(
            *args, skip_nonce=1, nonce=jump, api_key_index=KEY
        )
        assert err is None and json.loads(tx_info)["L2TxAttributes"] == {"4": 1}
        status, body = await post_tx(http, server, {"tx_type": str(tx_type), "tx_info": tx_info})
        assert (status, body["code"]) == (200, 200)
        assert server.next_nonce(ACCOUNT, KEY) == jump + 1
        # A skip-nonce tx below the last used nonce is still an invalid nonce.
        _, low_info, _, _ = signer.sign_create_order(
            BTC, 12, 100, worst, 0, 1, 0, 0, 0, 0, skip_nonce=1, nonce=jump, api_key_index=KEY
        )
        status, body = await post_tx(http, server, {"tx_type": "14", "tx_info": low_info})
        assert status == 400 and body["code"] == 21104 and "invalid nonce" in body["message"]
    finally:
        await signer.close()


async def test_a_reused_client_order_index_gets_21728_and_keeps_the_nonce(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(tier="standard")
    nonce = server.next_nonce(ACCOUNT, KEY)
    assert (await post_tx(http, server, maker_form(server, nonce, 5)))[0] == 200
    # Refused even before the first one executed, and for a finished order as well.
    status, body = await post_tx(http, server, maker_form(server, nonce + 1, 5))
    assert (status, body["code"]) == (400, 21728)
    assert body["message"] == "client order index already exists"
    assert server.next_nonce(ACCOUNT, KEY) == nonce + 1
    book = server.market.book("lighter", "BTC")
    book.place_market(ACCOUNT, Side.BUY, Decimal("0.001"), book.top()[2] * 2, client_id=6)
    status, body = await post_tx(http, server, taker_form(server, nonce + 1, 6))
    assert (status, body["code"]) == (400, 21728)
    assert (await post_tx(http, server, taker_form(server, nonce + 1, 7)))[0] == 200


async def test_reserved_api_key_indexes_are_refused(
    make_server: MakeServer, http: aiohttp.ClientSession, keypair: tuple[str, str]
) -> None:
    with pytest.raises(ValueError, match="reserved"):
        LighterServer(SimMarket(seed=1), accounts={ACCOUNT: {2: keypair[1]}})
    server = await make_server(tier="standard")
    status, body = await post_tx(http, server, raw_order(server, 1, key=2))
    assert status == 400 and "reserved" in body["message"]


# --------------------------------------------------------------------------------------------
# Trades paging, WS sendtx, fees
# --------------------------------------------------------------------------------------------


async def test_trades_page_by_cursor_in_both_directions(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    ticks = iter(range(1_700_000_000_000, 1_700_000_000_000 + 10**6, 1000))
    server = await make_server(tier="unlimited", clock_ms=lambda: next(ticks))
    book = server.market.book("lighter", "BTC")
    for client_id in range(1, 6):
        worst = book.top()[2] * 2
        book.place_market(ACCOUNT, Side.BUY, Decimal("0.001"), worst, client_id=client_id)
    base = f"{server.api_url}/api/v1/trades?account_index={ACCOUNT}&market_id={BTC}&limit=2"
    for sort_dir in ("desc", "asc"):
        pages: list[list[int]] = []
        cursor = ""
        while True:
            url = f"{base}&sort_dir={sort_dir}" + (f"&cursor={cursor}" if cursor else "")
            status, body = await get_json(http, url)
            assert status == 200
            models.Trades.model_validate(body)
            pages.append([t["trade_id"] for t in body["trades"]])
            cursor = body.get("next_cursor", "")
            if not cursor:
                break
        flat = [trade_id for page in pages for trade_id in page]
        assert [len(p) for p in pages] == [2, 2, 1]
        assert flat == sorted(flat, reverse=sort_dir == "desc") and len(set(flat)) == len(flat)
    fills = book.fills(ACCOUNT)
    middle = fills[len(fills) // 2].ts_ms
    _, desc = await get_json(http, f"{base.replace('limit=2', 'limit=100')}&from={middle}")
    assert desc["trades"] and all(t["timestamp"] <= middle for t in desc["trades"])
    _, asc = await get_json(
        http, f"{base.replace('limit=2', 'limit=100')}&sort_dir=asc&from={middle}"
    )
    assert asc["trades"] and all(t["timestamp"] >= middle for t in asc["trades"])
    status, _ = await get_json(http, base.replace("limit=2", "limit=101"))
    assert status == 400


async def test_trades_from_can_be_served_as_an_upper_bound_in_both_directions(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    ticks = iter(range(1_700_000_000_000, 1_700_000_000_000 + 10**6, 1000))
    server = await make_server(tier="unlimited", clock_ms=lambda: next(ticks), trades_from="upper")
    book = server.market.book("lighter", "BTC")
    for client_id in range(1, 6):
        worst = book.top()[2] * 2
        book.place_market(ACCOUNT, Side.BUY, Decimal("0.001"), worst, client_id=client_id)
    middle = book.fills(ACCOUNT)[2].ts_ms
    base = f"{server.api_url}/api/v1/trades?account_index={ACCOUNT}&market_id={BTC}&limit=100"
    for sort_dir in ("desc", "asc"):
        _, body = await get_json(http, f"{base}&sort_dir={sort_dir}&from={middle}")
        stamps = [t["timestamp"] for t in body["trades"]]
        assert len(stamps) == 3 and all(ts <= middle for ts in stamps)  # ccxt's `until`
        assert stamps == sorted(stamps, reverse=sort_dir == "desc")
    with pytest.raises(ValueError, match="trades_from"):
        LighterServer(server.market, accounts={}, trades_from="lower")  # type: ignore[arg-type]


async def test_ws_sendtx_answers_by_request_id_and_executes_after_the_delay(
    make_server: MakeServer, keypair: tuple[str, str]
) -> None:
    server = await make_server(tier="standard")
    signer = lighter.SignerClient(
        url=server.api_url, account_index=ACCOUNT, api_private_keys={KEY: keypair[0]}
    )
    ws = await connect(server)
    try:
        nonce = server.next_nonce(ACCOUNT, KEY)
        book = server.market.book("lighter", "BTC")
        worst = int((book.top()[2] * 2).scaleb(book.rules.price_decimals))
        tx_type, tx_info, _, err = signer.sign_create_order(
            BTC, 21, 100, worst, 0, 1, 0, 0, 0, 0, nonce=nonce, api_key_index=KEY
        )
        assert err is None
        message = {"id": "r1", "tx_type": tx_type, "tx_info": json.loads(tx_info)}
        sent = time.monotonic()
        await ws.send({"type": "jsonapi/sendtx", "data": message})
        reply = await ws.next("jsonapi/sendtx")
        assert (reply["id"], reply["code"]) == ("r1", 200)
        assert isinstance(reply["tx_hash"], str) and reply["predicted_execution_time_ms"] > 0
        assert book.find_order(ACCOUNT, client_id=21) is None
        await wait_for(lambda: book.find_order(ACCOUNT, client_id=21) is not None)
        assert time.monotonic() - sent >= 0.3
        await ws.send({"type": "jsonapi/sendtx", "data": {**message, "id": "r2"}})
        refused = await ws.next("jsonapi/sendtx", after=1)
        assert (refused["id"], refused["code"]) == ("r2", 21104)
        assert "invalid nonce" in refused["message"] and refused["error"]["code"] == 21104
    finally:
        await ws.close()
        await signer.close()


@pytest.mark.parametrize(
    "tier,taker_fee", [("premium", Decimal("0.00028")), ("standard", Decimal(0))]
)
async def test_fills_pay_the_tier_fees(
    make_server: MakeServer, http: aiohttp.ClientSession, tier: str, taker_fee: Decimal
) -> None:
    server = await make_server(tier="unlimited", account_tiers={ACCOUNT: tier})
    book = server.market.book("lighter", "BTC")
    book.place_market(ACCOUNT, Side.BUY, Decimal("0.001"), book.top()[2] * 2, client_id=1)
    [fill] = book.fills(ACCOUNT)
    assert fill.fee == fill.price * fill.qty * taker_fee
    _, body = await get_json(http, f"{server.api_url}/api/v1/trades?account_index={ACCOUNT}")
    [trade] = body["trades"]
    assert (trade["taker_fee"], trade["maker_fee"]) == (int(fill.fee.scaleb(6)), 0)


@pytest.mark.parametrize(
    "tier,maker_fee", [("premium", Decimal("0.00004")), ("standard", Decimal(0))]
)
async def test_maker_fills_pay_the_tier_maker_fee(
    make_server: MakeServer, http: aiohttp.ClientSession, tier: str, maker_fee: Decimal
) -> None:
    server = await make_server(tier="unlimited", account_tiers={ACCOUNT: tier})
    book = server.market.book("lighter", "BTC")
    post_only = maker_form(server, server.next_nonce(ACCOUNT, KEY), client_id=1, tif=2)
    assert (await post_tx(http, server, post_only))[1]["code"] == 200
    await wait_for(lambda: book.find_order(ACCOUNT, client_id=1) is not None)
    order = book.find_order(ACCOUNT, client_id=1)
    assert order is not None and order.is_open
    fill = book.fill_resting(order.order_id, order.qty)  # a taker takes it all
    assert fill.is_maker
    assert fill.fee == fill.price * fill.qty * maker_fee
    _, body = await get_json(http, f"{server.api_url}/api/v1/trades?account_index={ACCOUNT}")
    [trade] = body["trades"]
    assert (trade["maker_fee"], trade["taker_fee"]) == (int(fill.fee.scaleb(6)), 0)

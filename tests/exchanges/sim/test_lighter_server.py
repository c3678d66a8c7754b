"""The simulated Lighter venue, checked with the real lighter-sdk and a plain WebSocket client.

Every REST body is validated against the SDK's pydantic models (strictly: `model_validate`, not
the SDK's lenient `from_dict`), WS messages are checked field by field against
/work/shared/protocols/lighter.md, and each fault is armed and observed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
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
from exchanges.sim.market import SimMarket
from tests.waiting import wait_for

ACCOUNT = 7
KEY = 3
BTC = 1  # lighter market id of BTC in the default tickers (read, but fixed by the sim)


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return generate_api_key()


@pytest.fixture
async def server(
    keypair: tuple[str, str], request: pytest.FixtureRequest
) -> AsyncIterator[LighterServer]:
    """The venue on the Standard tier (the rules themselves are in test_lighter_strict.py),
    unless a test names another with `@pytest.mark.lighter_tier(...)`."""
    marker = request.node.get_closest_marker("lighter_tier")
    tier = marker.args[0] if marker is not None else "standard"
    market = SimMarket(seed=7, fill_rate=0.0, faults=FaultPlan("none", seed=7))
    srv = LighterServer(market, accounts={ACCOUNT: {KEY: keypair[1]}}, ping_interval=0.2, tier=tier)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def signer(
    server: LighterServer, keypair: tuple[str, str]
) -> AsyncIterator[lighter.SignerClient]:
    # Constructed inside the running loop: its aiohttp connector binds to it.
    client = lighter.SignerClient(
        url=server.api_url, account_index=ACCOUNT, api_private_keys={KEY: keypair[0]}
    )
    yield client
    await client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def token(expiry: float | None = None, account: int = ACCOUNT, key: int = KEY) -> str:
    """A token in the SDK's format; the sim cannot check the signature part."""
    expiry = time.time() + 600 if expiry is None else expiry
    return f"{int(expiry)}:{account}:{key}:{'ab' * 40}"


def raw_order(
    server: LighterServer,
    nonce: int,
    *,
    client_id: int = 1,
    base_amount: int = 100,
    price: int = 700_000,
    is_ask: int = 0,
    order_type: int = 1,
    tif: int = 0,
    account: int = ACCOUNT,
    key: int = KEY,
) -> dict[str, str]:
    """A CreateOrder sendTx form with a dummy signature (the sim checks all but the Sig)."""
    info = {
        "AccountIndex": account,
        "ApiKeyIndex": key,
        "MarketIndex": BTC,
        "ClientOrderIndex": client_id,
        "BaseAmount": base_amount,
        "Price": price,
        "IsAsk": is_ask,
        "Type": order_type,
        "TimeInForce": tif,
        "ReduceOnly": 0,
        "TriggerPrice": 0,
        "OrderExpiry": 0,
        "ExpiredAt": int(time.time() * 1000) + 600_000,
        "Nonce": nonce,
        "Sig": "c2ln",
    }
    return {"tx_type": "14", "tx_info": json.dumps(info)}


async def get_json(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with http.get(url, headers=headers) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def post_tx(
    http: aiohttp.ClientSession, server: LighterServer, form: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{server.api_url}/api/v1/sendTx", data=form) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


class WsProbe:
    """A plain `websockets` client that records every message."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def send(self, body: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(body))

    def of(self, kind: str) -> list[dict[str, Any]]:
        if kind == "error":  # the venue's error frames have no type: {"error": {...}}
            return [m for m in self.messages if "error" in m and "type" not in m]
        return [m for m in self.messages if m.get("type") == kind]

    async def next(self, kind: str, after: int = 0, timeout: float = 2.0) -> dict[str, Any]:
        await wait_for(lambda: len(self.of(kind)) > after, timeout)
        return self.of(kind)[after]

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()


@pytest.fixture
async def ws(server: LighterServer) -> AsyncIterator[WsProbe]:
    conn = await websockets.connect(server.ws_url)
    probe = WsProbe(conn)
    await probe.next("connected")
    yield probe
    await probe.close()


# --------------------------------------------------------------------------------------------
# REST shapes
# --------------------------------------------------------------------------------------------


async def test_public_rest_replies_validate_against_sdk_models(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    base = f"{server.api_url}/api/v1"
    cases: list[tuple[str, Any]] = [
        ("/orderBooks", models.OrderBooks),
        (f"/orderBookDetails?market_id={BTC}", models.OrderBookDetails),
        (f"/orderBookOrders?market_id={BTC}&limit=20", models.OrderBookOrders),
        (f"/account?by=index&value={ACCOUNT}", models.DetailedAccounts),
        (f"/apikeys?account_index={ACCOUNT}&api_key_index={KEY}", models.AccountApiKeys),
        (f"/nextNonce?account_index={ACCOUNT}&api_key_index={KEY}", models.NextNonce),
        (f"/recentTrades?market_id={BTC}&limit=10", models.Trades),
    ]
    for path, model in cases:
        status, body = await get_json(http, base + path)
        assert status == 200, path
        assert body["code"] == 200, path
        model.model_validate(body)


async def test_private_rest_replies_validate_against_sdk_models(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    book = server.market.book("lighter", "BTC")
    bid = book.top()[0]
    book.place_limit(ACCOUNT, Side.BUY, Decimal("0.001"), bid, client_id=5, post_only=True)
    book.place_market(ACCOUNT, Side.BUY, Decimal("0.001"), bid * 2, client_id=6)
    auth = {"authorization": token()}
    base = f"{server.api_url}/api/v1"
    for path, model in [
        (f"/accountActiveOrders?account_index={ACCOUNT}&market_id={BTC}", models.Orders),
        (f"/accountInactiveOrders?account_index={ACCOUNT}&limit=10", models.Orders),
        (f"/accountOrders?account_index={ACCOUNT}&client_order_indexes=5,6", models.Orders),
        (
            f"/trades?account_index={ACCOUNT}&market_id={BTC}&sort_by=timestamp&limit=10",
            models.Trades,
        ),
    ]:
        status, body = await get_json(http, base + path, auth)
        assert status == 200, path
        parsed = model.model_validate(body)
        assert parsed.code == 200
    _, active = await get_json(http, f"{base}/accountActiveOrders?account_index={ACCOUNT}", auth)
    assert [o["client_order_index"] for o in active["orders"]] == [5]
    assert active["orders"][0]["status"] == "open"
    assert active["orders"][0]["time_in_force"] == "post-only"
    _, inactive = await get_json(
        http, f"{base}/accountInactiveOrders?account_index={ACCOUNT}&limit=10", auth
    )
    assert [(o["client_order_index"], o["status"]) for o in inactive["orders"]] == [(6, "filled")]


async def test_order_book_orders_prices_have_exactly_price_decimals(
    server: LighterServer, signer: lighter.SignerClient
) -> None:
    rules = server.market.book("lighter", "BTC").rules
    api = lighter.OrderApi(signer.api_client)
    orders = await api.order_book_orders(BTC, 10)
    for level in orders.asks + orders.bids:
        assert len(level.price.split(".")[1]) == rules.price_decimals
        assert len(level.remaining_base_amount.split(".")[1]) == rules.size_decimals
    # The SDK's own parser (it strips the dot) gives the scaled integer of the best price.
    best_ask = await signer.get_best_price(BTC, is_ask=False)
    assert (
        Decimal(best_ask).scaleb(-rules.price_decimals)
        == server.market.book("lighter", "BTC").top()[2]
    )


async def test_account_position_is_unsigned_with_a_sign(
    server: LighterServer, signer: lighter.SignerClient
) -> None:
    book = server.market.book("lighter", "BTC")
    book.place_market(ACCOUNT, Side.SELL, Decimal("0.003"), book.top()[0] / 2, client_id=1)
    accounts = await lighter.AccountApi(signer.api_client).account(by="index", value=str(ACCOUNT))
    btc = next(p for p in accounts.accounts[0].positions if p.market_id == BTC)
    assert (btc.sign, btc.position) == (-1, "0.00300")
    assert (
        btc.sign * Decimal(btc.position)
        == server.market.account("lighter", ACCOUNT).position("BTC").qty
    )


async def test_unknown_market_and_account_are_refused_with_a_code(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    base = f"{server.api_url}/api/v1"
    for path in ["/orderBookDetails?market_id=99", "/account?by=index&value=12345"]:
        status, body = await get_json(http, base + path)
        assert status == 400
        models.ResultCode.model_validate(body)
        assert body["code"] != 200


# --------------------------------------------------------------------------------------------
# The real SignerClient
# --------------------------------------------------------------------------------------------


async def test_signer_check_client_passes_with_the_registered_key(
    signer: lighter.SignerClient,
) -> None:
    # check_client does blocking HTTP from the Go library: keep it off the loop serving it.
    assert await asyncio.to_thread(signer.check_client) is None


async def test_signer_check_client_fails_with_another_key(server: LighterServer) -> None:
    other_private, _ = generate_api_key()
    client = lighter.SignerClient(
        url=server.api_url, account_index=ACCOUNT, api_private_keys={KEY: other_private}
    )
    try:
        assert await asyncio.to_thread(client.check_client) is not None
    finally:
        await client.close()


async def test_sdk_limit_order_rests_and_cancel_cancels_it(
    server: LighterServer, signer: lighter.SignerClient
) -> None:
    book = server.market.book("lighter", "BTC")
    bid = book.top()[0] - 100
    price = int(bid.scaleb(book.rules.price_decimals))
    _, resp, err = await signer.create_order(
        BTC,
        42,
        100,
        price,
        False,
        signer.ORDER_TYPE_LIMIT,
        signer.ORDER_TIME_IN_FORCE_GOOD_TILL_TIME,
    )
    assert err is None and resp.code == 200
    await wait_for(lambda: server.pending_executions == 0)  # executed after the tier's delay
    [order] = book.open_orders(ACCOUNT)
    assert (order.client_id, order.qty, order.price, order.side) == (
        42,
        Decimal("0.001"),
        bid,
        Side.BUY,
    )
    _, resp, err = await signer.cancel_order(BTC, order.order_id)
    assert err is None and resp.code == 200
    await wait_for(lambda: server.pending_executions == 0)  # executed after the tier's delay
    assert book.open_orders(ACCOUNT) == []
    assert book.find_order(ACCOUNT, client_id=42).status == "cancelled"


async def test_sdk_market_order_fills_within_its_worst_price(
    server: LighterServer, signer: lighter.SignerClient
) -> None:
    book = server.market.book("lighter", "BTC")
    ask = book.top()[2]
    worst = int((ask * Decimal("1.01")).scaleb(book.rules.price_decimals))
    _, resp, err = await signer.create_market_order(BTC, 43, 250, worst, False)
    assert err is None and resp.code == 200
    await wait_for(lambda: server.pending_executions == 0)  # executed after the tier's delay
    order = book.find_order(ACCOUNT, client_id=43)
    assert order.status == "filled" and order.filled_qty == Decimal("0.00250")
    assert order.order_type == "market" and order.tif == "IOC"
    assert server.market.account("lighter", ACCOUNT).position("BTC").qty == Decimal("0.0025")
    [tx] = server.sent_txs
    assert tx["type"] == 14 and tx["info"]["ClientOrderIndex"] == 43
    assert tx["info"]["Type"] == 1 and tx["info"]["TimeInForce"] == 0


async def test_sdk_cancel_all_cancels_every_resting_order(
    server: LighterServer, signer: lighter.SignerClient
) -> None:
    book = server.market.book("lighter", "BTC")
    bid = book.top()[0]
    for cid in (1, 2):
        book.place_limit(
            ACCOUNT, Side.BUY, Decimal("0.001"), bid - cid, client_id=cid, post_only=True
        )
    _, resp, err = await signer.cancel_all_orders(signer.CANCEL_ALL_TIF_IMMEDIATE, 0)
    assert err is None and resp.code == 200
    await wait_for(lambda: server.pending_executions == 0)  # executed after the tier's delay
    assert book.open_orders(ACCOUNT) == []


async def test_sdk_recovers_from_an_injected_invalid_nonce(
    server: LighterServer, signer: lighter.SignerClient
) -> None:
    book = server.market.book("lighter", "BTC")
    worst = int((book.top()[2] * 2).scaleb(book.rules.price_decimals))
    server.market.faults.arm("invalid_nonce")
    _, resp, err = await signer.create_market_order(BTC, 50, 100, worst, False)
    assert resp is None and "invalid nonce" in err
    assert book.find_order(ACCOUNT, client_id=50) is None  # not executed
    _, resp, err = await signer.create_market_order(BTC, 51, 100, worst, False)
    assert err is None and resp.code == 200
    assert [tx["info"]["ClientOrderIndex"] for tx in server.sent_txs] == [51]
    assert server.market.faults.fired["invalid_nonce"] == 1


async def test_reused_and_skipped_nonces_get_invalid_nonce_and_consume_nothing(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    nonce = server.next_nonce(ACCOUNT, KEY)
    status, body = await post_tx(http, server, raw_order(server, nonce, client_id=1))
    assert (status, body["code"]) == (200, 200)
    for bad in (nonce, nonce + 2):  # reused, skipped
        status, body = await post_tx(http, server, raw_order(server, bad, client_id=2))
        assert status == 400 and "invalid nonce" in body["message"]
        models.ResultCode.model_validate(body)
    assert server.next_nonce(ACCOUNT, KEY) == nonce + 1
    status, body = await post_tx(http, server, raw_order(server, nonce + 1, client_id=3))
    assert (status, body["code"]) == (200, 200)
    models.RespSendTx.model_validate(body)


async def test_expired_tx_unknown_key_and_bad_order_are_refused(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    nonce = server.next_nonce(ACCOUNT, KEY)
    expired = raw_order(server, nonce)
    info = json.loads(expired["tx_info"])
    info["ExpiredAt"] = int(time.time() * 1000) - 1
    expired["tx_info"] = json.dumps(info)
    for form in (
        expired,
        raw_order(server, nonce, key=KEY + 1),
        raw_order(server, nonce, base_amount=1),  # below BTC's minimum
        raw_order(server, nonce, price=0),
        {"tx_type": "14", "tx_info": "not json"},
    ):
        status, body = await post_tx(http, server, form)
        assert status == 400 and body["code"] not in (200, 21104), body
    assert server.next_nonce(ACCOUNT, KEY) == nonce
    assert not server.sent_txs


async def test_post_only_that_crosses_is_accepted_then_canceled_post_only(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    book = server.market.book("lighter", "BTC")
    ask = int(book.top()[2].scaleb(book.rules.price_decimals))
    nonce = server.next_nonce(ACCOUNT, KEY)
    form = raw_order(server, nonce, client_id=9, price=ask, order_type=0, tif=2)
    status, body = await post_tx(http, server, form)
    assert (status, body["code"]) == (200, 200)
    await wait_for(lambda: server.pending_executions == 0)  # executed after the tier's delay
    _, inactive = await get_json(
        http,
        f"{server.api_url}/api/v1/accountInactiveOrders?account_index={ACCOUNT}&limit=5",
        {"authorization": token()},
    )
    [order] = inactive["orders"]
    assert (order["client_order_index"], order["status"]) == (9, "canceled-post-only")
    models.Orders.model_validate(inactive)


# --------------------------------------------------------------------------------------------
# Auth tokens
# --------------------------------------------------------------------------------------------


async def test_sdk_auth_token_reads_private_orders(
    server: LighterServer, signer: lighter.SignerClient
) -> None:
    auth, err = signer.create_auth_token_with_expiry(600, api_key_index=KEY)
    assert err is None
    orders = await lighter.OrderApi(signer.api_client).account_active_orders(
        authorization=auth, account_index=ACCOUNT, market_id=BTC
    )
    assert orders.code == 200 and orders.orders == []


async def test_expired_foreign_or_fault_expired_tokens_are_refused(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.api_url}/api/v1/accountActiveOrders?account_index={ACCOUNT}"
    for bad in (token(expiry=time.time() - 1), token(account=ACCOUNT + 1), "garbage"):
        status, body = await get_json(http, url, {"authorization": bad})
        assert status == 400 and body["code"] != 200
    server.market.faults.arm("token_expiry")
    status, body = await get_json(http, url, {"authorization": token()})
    assert status == 400 and "expired" in body["message"]
    status, body = await get_json(http, url, {"authorization": token()})
    assert status == 200


# --------------------------------------------------------------------------------------------
# WebSocket
# --------------------------------------------------------------------------------------------


async def test_ws_order_book_snapshot_then_updates_chain_by_nonce(
    server: LighterServer, ws: WsProbe
) -> None:
    assert ws.messages[0]["type"] == "connected"
    await ws.send({"type": "subscribe", "channel": f"order_book/{BTC}"})
    snap = await ws.next("subscribed/order_book")
    assert snap["channel"] == f"order_book:{BTC}"
    book = snap["order_book"]
    assert {"code", "offset", "nonce", "begin_nonce", "asks", "bids"} <= set(book)
    rules = server.market.book("lighter", "BTC").rules
    level = book["asks"][0]
    assert set(level) == {"price", "size"}
    assert len(level["price"].split(".")[1]) == rules.price_decimals
    assert len(level["size"].split(".")[1]) == rules.size_decimals
    for _ in range(20):
        server.market.step()
    await wait_for(lambda: len(ws.of("update/order_book")) >= 10)
    previous = book["nonce"]
    offset = snap["offset"]
    for update in ws.of("update/order_book"):
        assert update["channel"] == f"order_book:{BTC}"
        assert isinstance(update["timestamp"], int)
        body = update["order_book"]
        assert body["begin_nonce"] == previous
        assert body["nonce"] > previous
        assert update["offset"] > offset
        previous, offset = body["nonce"], update["offset"]


async def test_depth_gap_breaks_the_nonce_chain_once(server: LighterServer, ws: WsProbe) -> None:
    await ws.send({"type": "subscribe", "channel": f"order_book/{BTC}"})
    snap = await ws.next("subscribed/order_book")
    server.market.faults.arm("depth_gap")
    for _ in range(10):
        server.market.step()
    await wait_for(lambda: len(ws.of("update/order_book")) >= 3)
    previous = snap["order_book"]["nonce"]
    breaks = 0
    for update in ws.of("update/order_book"):
        breaks += update["order_book"]["begin_nonce"] != previous
        previous = update["order_book"]["nonce"]
    assert breaks == 1
    # Resubscribing (unsubscribe, then subscribe) gives a fresh snapshot that the following
    # updates join again.
    await ws.send({"type": "unsubscribe", "channel": f"order_book/{BTC}"})
    await ws.send({"type": "subscribe", "channel": f"order_book/{BTC}"})
    snap2 = await ws.next("subscribed/order_book", after=1)
    seen = len(ws.of("update/order_book"))
    server.market.step()
    first = await ws.next("update/order_book", after=seen)
    assert first["order_book"]["begin_nonce"] == snap2["order_book"]["nonce"]


async def test_ws_account_orders_snapshot_and_updates_have_the_documented_fields(
    server: LighterServer, ws: WsProbe
) -> None:
    book = server.market.book("lighter", "BTC")
    bid = book.top()[0]
    book.place_limit(ACCOUNT, Side.BUY, Decimal("0.001"), bid - 1, client_id=77, post_only=True)
    await ws.send(
        {"type": "subscribe", "channel": f"account_orders/{BTC}/{ACCOUNT}", "auth": token()}
    )
    snap = await ws.next("subscribed/account_orders")
    assert snap["channel"] == f"account_orders:{BTC}"
    assert [o["client_order_index"] for o in snap["orders"][str(BTC)]] == [77]
    book.place_market(ACCOUNT, Side.BUY, Decimal("0.002"), bid * 2, client_id=78)
    await wait_for(lambda: len(ws.of("update/account_orders")) >= 2)
    updates = ws.of("update/account_orders")
    for update in updates:
        assert update["channel"] == f"account_orders:{BTC}"
        assert update["account"] == ACCOUNT
        assert isinstance(update["nonce"], int)
        [order] = update["orders"][str(BTC)]
        models.Order.model_validate(order)
        for name in ("order_index", "client_order_index", "market_index"):
            assert isinstance(order[name], int)
        for name in (
            "initial_base_amount",
            "price",
            "remaining_base_amount",
            "filled_base_amount",
            "filled_quote_amount",
        ):
            assert isinstance(order[name], str)
        assert isinstance(order["is_ask"], bool) and isinstance(order["reduce_only"], bool)
        assert order["type"] == "market" and order["time_in_force"] == "immediate-or-cancel"
        assert order["status"] == order["status"].lower()
    last = updates[-1]["orders"][str(BTC)][0]
    assert (last["client_order_index"], last["status"], last["filled_base_amount"]) == (
        78,
        "filled",
        "0.00200",
    )


@pytest.mark.parametrize(
    "auth",
    [None, "garbage", token(expiry=time.time() - 5), token(account=ACCOUNT + 1)],
    # Named ids: a token's text carries the time of collection, which differs between workers.
    ids=["none", "garbage", "expired", "other-account"],
)
async def test_ws_account_orders_refuses_a_bad_token(
    server: LighterServer, ws: WsProbe, auth: str | None
) -> None:
    msg: dict[str, Any] = {"type": "subscribe", "channel": f"account_orders/{BTC}/{ACCOUNT}"}
    if auth is not None:
        msg["auth"] = auth
    await ws.send(msg)
    error = await ws.next("error")
    assert error["error"]["code"] != 0 and error["error"]["message"]
    assert ws.of("subscribed/account_orders") == []


async def test_ws_token_expiry_fault_refuses_then_a_fresh_subscribe_works(
    server: LighterServer, ws: WsProbe
) -> None:
    server.market.faults.arm("token_expiry")
    channel = f"account_orders/{BTC}/{ACCOUNT}"
    await ws.send({"type": "subscribe", "channel": channel, "auth": token()})
    error = await ws.next("error")
    assert "expired" in error["error"]["message"]
    await ws.send({"type": "subscribe", "channel": channel, "auth": token()})
    await ws.next("subscribed/account_orders")


async def test_ws_trade_channel_and_unknown_channel(server: LighterServer, ws: WsProbe) -> None:
    await ws.send({"type": "subscribe", "channel": f"trade/{BTC}"})
    snap = await ws.next("subscribed/trade")
    assert snap["channel"] == f"trade:{BTC}"
    server.market.fill_rate = 0.0
    for _ in range(30):
        server.market.step()
    update = await ws.next("update/trade")
    models.Trade.model_validate(update["trades"][0])
    await ws.send({"type": "subscribe", "channel": "order_book/99"})
    assert (await ws.next("error"))["error"]["code"] != 0


async def test_server_pings_in_json_and_accepts_pong(server: LighterServer, ws: WsProbe) -> None:
    await ws.next("ping", timeout=2.0)
    await ws.send({"type": "pong"})
    await ws.next("ping", after=1, timeout=2.0)
    assert ws.of("error") == []
    assert not ws.closed.is_set()


async def test_ws_drop_fault_and_drop_ws_close_connections(
    server: LighterServer, ws: WsProbe
) -> None:
    await ws.send({"type": "subscribe", "channel": f"order_book/{BTC}"})
    await ws.next("subscribed/order_book")
    server.market.faults.arm("ws_drop")
    server.market.step()
    await asyncio.wait_for(ws.closed.wait(), 2.0)
    other = WsProbe(await websockets.connect(server.ws_url))
    await other.next("connected")
    assert server.drop_ws() == 1
    await asyncio.wait_for(other.closed.wait(), 2.0)


async def test_ws_delay_fault_delays_but_keeps_order(server: LighterServer, ws: WsProbe) -> None:
    await ws.send({"type": "subscribe", "channel": f"order_book/{BTC}"})
    snap = await ws.next("subscribed/order_book")
    server.market.faults.arm("ws_delay")
    started = time.monotonic()
    for _ in range(3):
        server.market.step()
    await wait_for(lambda: len(ws.of("update/order_book")) >= 2)
    assert time.monotonic() - started >= 0.02
    previous = snap["order_book"]["nonce"]
    for update in ws.of("update/order_book"):
        assert update["order_book"]["begin_nonce"] == previous
        previous = update["order_book"]["nonce"]


async def _account_updates(server: LighterServer, ws: WsProbe, fault: str) -> None:
    await ws.send(
        {"type": "subscribe", "channel": f"account_orders/{BTC}/{ACCOUNT}", "auth": token()}
    )
    await ws.next("subscribed/account_orders")
    server.market.faults.arm(fault)  # type: ignore[arg-type]
    book = server.market.book("lighter", "BTC")
    book.place_market(ACCOUNT, Side.BUY, Decimal("0.001"), book.top()[2] * 2, client_id=1)
    # accepted + one fill = two events, three when one is duplicated
    await wait_for(lambda: len(ws.of("update/account_orders")) >= 2)


async def test_duplicate_event_sends_an_account_update_twice(
    server: LighterServer, ws: WsProbe
) -> None:
    await _account_updates(server, ws, "duplicate_event")
    await wait_for(lambda: len(ws.of("update/account_orders")) >= 3)
    seen = [
        (u["orders"][str(BTC)][0]["status"], u["orders"][str(BTC)][0]["filled_base_amount"])
        for u in ws.of("update/account_orders")
    ]
    assert seen == [("open", "0.00000"), ("open", "0.00000"), ("filled", "0.00100")]


async def test_reorder_event_sends_an_account_update_after_the_next(
    server: LighterServer, ws: WsProbe
) -> None:
    await _account_updates(server, ws, "reorder_event")
    await wait_for(lambda: len(ws.of("update/account_orders")) >= 2)
    statuses = [u["orders"][str(BTC)][0]["status"] for u in ws.of("update/account_orders")]
    assert statuses == ["filled", "open"]


async def test_sdk_ws_client_receives_book_and_account(server: LighterServer) -> None:
    books: list[tuple[str, dict[str, Any]]] = []
    accounts: list[tuple[str, dict[str, Any]]] = []
    client = lighter.WsClient(
        ws_url=server.ws_url,
        order_book_ids=[BTC],
        account_ids=[ACCOUNT],
        on_order_book_update=lambda m, b: books.append((m, b)),
        on_account_update=lambda a, s: accounts.append((a, s)),
    )
    task = asyncio.get_running_loop().create_task(client.run_async())
    try:
        await wait_for(lambda: bool(books) and bool(accounts))
        server.market.step()
        await wait_for(lambda: len(books) >= 2)
        market_id, state = books[-1]
        assert market_id == str(BTC)
        assert state["asks"] and state["bids"]
        assert accounts[0][0] == str(ACCOUNT)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --------------------------------------------------------------------------------------------
# HTTP faults and ambiguous orders
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault,status", [("http_429", 429), ("http_500", 500), ("http_503", 503)])
async def test_http_fault_answers_the_status_once_when_armed(
    server: LighterServer, http: aiohttp.ClientSession, fault: str, status: int
) -> None:
    server.market.faults.arm(fault)  # type: ignore[arg-type]
    url = f"{server.api_url}/api/v1/orderBooks"
    got, body = await get_json(http, url)
    assert got == status and body["code"] == status
    got, body = await get_json(http, url)
    assert got == 200 and body["code"] == 200


async def test_http_fault_reaches_the_sdk_as_an_exception(
    server: LighterServer, signer: lighter.SignerClient
) -> None:
    server.market.faults.arm("http_503")
    with pytest.raises(lighter.ApiException) as info:
        await lighter.OrderApi(signer.api_client).order_books()
    assert info.value.status == 503


async def test_ambiguous_order_executes_but_answers_after_the_client_gave_up(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    server.market.faults.ambiguous_delay_s = 0.5
    server.market.faults.arm("ambiguous_order")
    nonce = server.next_nonce(ACCOUNT, KEY)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await post_tx(http, server, raw_order(server, nonce, client_id=31))
    await wait_for(lambda: server.pending_executions == 0)  # executed after the tier's delay
    order = server.market.book("lighter", "BTC").find_order(ACCOUNT, client_id=31)
    assert order is not None and order.status == "filled"
    assert server.next_nonce(ACCOUNT, KEY) == nonce + 1


async def test_thin_book_fills_a_market_order_partly(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    server.market.faults.arm("thin_book")
    nonce = server.next_nonce(ACCOUNT, KEY)
    status, body = await post_tx(
        http, server, raw_order(server, nonce, client_id=32, base_amount=1000)
    )
    assert (status, body["code"]) == (200, 200)
    await wait_for(lambda: server.pending_executions == 0)  # executed after the tier's delay
    order = server.market.book("lighter", "BTC").find_order(ACCOUNT, client_id=32)
    assert order.filled_qty < order.qty
    assert server.lighter_status(order) == "canceled-not-enough-liquidity"


# --------------------------------------------------------------------------------------------
# Keep-alive and throughput floors
# --------------------------------------------------------------------------------------------


async def test_keep_alive_client_uses_one_connection(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    before = server.connections_opened
    for _ in range(20):
        await get_json(http, f"{server.api_url}/api/v1/orderBooks")
    assert server.connections_opened - before == 1


@pytest.mark.lighter_tier("unlimited")  # the server's own speed: hundreds of requests a second
async def test_send_tx_throughput_floor(server: LighterServer) -> None:
    nonce = server.next_nonce(ACCOUNT, KEY)
    count = 400
    book = server.market.book("lighter", "BTC")
    bid = int((book.top()[0] - 1000).scaleb(book.rules.price_decimals))
    forms = [
        raw_order(server, nonce + i, client_id=i + 1, price=bid - i % 50, order_type=0, tif=1)
        for i in range(count)
    ]
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=connector) as http:
        lock = asyncio.Lock()
        queue = iter(forms)

        async def worker() -> None:
            while True:
                async with lock:  # nonces must arrive in order: serialize the send order
                    form = next(queue, None)
                    if form is None:
                        return
                    status, _ = await post_tx(http, server, form)
                assert status == 200

        # CPU time (the server and its client both run in this process): a loaded
        # machine stretches the wall clock, not the work, so the floor holds anyway.
        started = time.process_time()
        await asyncio.gather(*(worker() for _ in range(4)))
        rate = count / (time.process_time() - started)
    assert len(server.sent_txs) == count
    assert rate >= 500, f"{rate:.0f} sendTx/s"


async def test_ws_throughput_floor(server: LighterServer, ws: WsProbe) -> None:
    await ws.send({"type": "subscribe", "channel": f"order_book/{BTC}"})
    await ws.next("subscribed/order_book")
    book = server.market.book("lighter", "BTC")
    price = book.top()[0] - 100
    count = 6000
    # CPU time (the server and its client both run in this process): a loaded
    # machine stretches the wall clock, not the work, so the floor holds anyway.
    started = time.process_time()
    # A resting order placed and cancelled far from the top: two one-level deltas, cheap for
    # the market (set_mid reshapes the whole book), so the figure is the server's.
    for i in range(count // 2):
        order = book.place_limit(
            ACCOUNT, Side.BUY, Decimal("0.001"), price, client_id=None, post_only=True
        )
        book.cancel(ACCOUNT, order_id=order.order_id)
        if i % 250 == 0:
            await asyncio.sleep(0)
    await wait_for(lambda: len(ws.of("update/order_book")) >= count, timeout=10)
    rate = count / (time.process_time() - started)
    assert rate >= 5000, f"{rate:.0f} msgs/s"


async def test_control_routes_are_mounted_and_not_subject_to_http_faults(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    server.market.faults.arm("http_500")
    async with http.get(f"{server.api_url}/_sim/truth") as resp:
        assert resp.status == 200
        truth = await resp.json()
    assert "lighter" in truth["venues"]


async def test_asset_details_lists_usdc_as_the_sdk_models_it(
    server: LighterServer, http: aiohttp.ClientSession
) -> None:
    status, body = await get_json(http, f"{server.api_url}/api/v1/assetDetails")
    assert status == 200
    details = models.AssetDetails.model_validate(body)
    [usdc] = details.asset_details
    assert (usdc.symbol, usdc.decimals) == ("USDC", 6)


async def test_account_all_trades_streams_the_accounts_own_fills(
    server: LighterServer, ws: WsProbe
) -> None:
    await ws.send({"type": "subscribe", "channel": f"account_all_trades/{ACCOUNT}"})
    await ws.next("subscribed/account_all_trades")
    book = server.market.book("lighter", "BTC")
    book.place_market(ACCOUNT, Side.BUY, Decimal("0.001"), book.top()[2] * 2, client_id=9)
    update = await ws.next("update/account_all_trades")
    assert update["channel"] == f"account_all_trades:{ACCOUNT}"
    [trade] = [models.Trade.model_validate(t) for t in update["trades"][str(BTC)]]
    [fill] = book.fills(ACCOUNT)
    assert (trade.trade_id, trade.bid_account_id, trade.size) == (fill.trade_id, ACCOUNT, "0.00100")

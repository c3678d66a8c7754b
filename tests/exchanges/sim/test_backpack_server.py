"""The simulated Backpack venue speaks the real protocol: the real bpx-py async client for REST,
a plain `websockets` client for streams, field-by-field against protocols/backpack.md."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import websockets
from bpx.async_.account import Account
from bpx.async_.public import Public
from bpx.base.base_account import BaseAccount
from bpx.http_client.async_http_client import AsyncHttpClient
from cryptography.hazmat.primitives.asymmetric import ed25519

from exchanges.sim.backpack_server import BackpackServer, generate_keypair
from exchanges.sim.faults import FaultPlan
from exchanges.sim.market import SimMarket
from tests.waiting import wait_for

SYMBOL = "BTC_USDC_PERP"
POST_ONLY_CROSS_MESSAGE = "Order would immediately match and take."  # the venue's own words
ACCOUNT = 7


@dataclass
class Venue:
    market: SimMarket
    server: BackpackServer
    public_key: str
    secret_key: str

    def account(self) -> Account:
        # A fresh http client each: bpx-py's constructors mutate a shared default client.
        account = Account(self.public_key, self.secret_key, http_client=AsyncHttpClient())
        account.BPX_API_URL = self.server.api_url
        return account

    def public(self) -> Public:
        public = Public(http_client=AsyncHttpClient())
        public.BASE_URL = self.server.api_url
        return public

    def signer(self) -> BaseAccount:
        signer = BaseAccount(self.public_key, self.secret_key, window=5000, debug=False)
        signer.BPX_API_URL = self.server.api_url
        return signer

    @property
    def book(self) -> Any:
        return self.market.book("backpack", "BTC")


async def make_venue(seed: int = 0, preset: str = "none", **server_kwargs: Any) -> Venue:
    market = SimMarket(seed=seed, faults=FaultPlan(preset, seed=seed))
    public_key, secret_key = generate_keypair()
    server = BackpackServer(market, api_keys={public_key: ACCOUNT}, **server_kwargs)
    await server.start()
    return Venue(market, server, public_key, secret_key)


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    v = await make_venue()
    yield v
    await v.server.stop()


@pytest.fixture
async def settled_venue() -> AsyncIterator[Venue]:
    """History endpoints without their lag, for tests about what history holds (the lag
    itself: test_backpack_strict.py)."""
    v = await make_venue(history_lag_s=0)
    yield v
    await v.server.stop()


async def raw(
    method: str, url: str, *, headers: dict[str, str] | None = None, **kwargs: Any
) -> tuple[int, Any]:
    """One HTTP request; (status, JSON body). For status codes bpx-py hides."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, **kwargs) as response,
    ):
        return response.status, await response.json(content_type=None)


async def send_config(method: str, config: Any) -> tuple[int, Any]:
    """Send a bpx-py RequestConfiguration as bpx-py's own client would, but keep the status."""
    if method == "GET":
        return await raw(method, config.url, headers=config.headers, params=config.params)
    return await raw(method, config.url, headers=config.headers, data=json.dumps(config.data))


async def send_signed(
    venue: Venue, method: str, instruction: str, body: dict[str, Any], path: str = "api/v1/order"
) -> tuple[int, Any]:
    """A signed request with exactly this JSON body (bpx-py would stringify a clientId)."""
    headers = venue.signer()._headers(body, instruction, window=None)
    return await raw(
        method, f"{venue.server.api_url}{path}", headers=headers, data=json.dumps(body)
    )


async def cancel_by_client_id(venue: Venue, client_id: int) -> Any:
    status, answer = await send_signed(
        venue, "DELETE", "orderCancel", {"symbol": SYMBOL, "clientId": client_id}
    )
    assert status == 200, answer
    return answer


def mid_prices(venue: Venue) -> tuple[Decimal, Decimal]:
    bid, _, ask, _ = venue.book.top()
    return bid, ask


async def place_resting_bid(account: Account, venue: Venue, client_id: int, qty: str = "0.01"):
    bid, _ = mid_prices(venue)
    price = bid - venue.book.rules.tick * 5
    return await account.execute_order(
        symbol=SYMBOL,
        side="Bid",
        order_type="Limit",
        time_in_force="GTC",
        quantity=qty,
        price=str(price),
        client_id=client_id,
        post_only=True,
    )


def is_decimal_string(value: object) -> bool:
    if not isinstance(value, str):
        return False
    Decimal(value)  # raises when not a decimal
    return "e" not in value.lower()


# --------------------------------------------------------------------------------------------
# WebSocket helpers (plain `websockets`, as our own client uses)
# --------------------------------------------------------------------------------------------


def ws_signature(public_key: str, secret_key: str, ts: int | None = None) -> list[str]:
    ts = int(time.time() * 1000) if ts is None else ts
    key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(secret_key))
    message = f"instruction=subscribe&timestamp={ts}&window=5000".encode()
    return [public_key, base64.b64encode(key.sign(message)).decode(), str(ts), "5000"]


async def subscribe(ws: Any, streams: list[str], signature: list[str] | None = None) -> None:
    command: dict[str, Any] = {"method": "SUBSCRIBE", "params": streams}
    if signature is not None:
        command["signature"] = signature
    await ws.send(json.dumps(command))


async def next_message(ws: Any, timeout: float = 3.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def next_on(ws: Any, stream: str, timeout: float = 3.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = await next_message(ws, max(0.01, deadline - time.monotonic()))
        if message.get("stream") == stream:
            return message


async def subscribed_private(venue: Venue, streams: list[str]) -> Any:
    ws = await websockets.connect(venue.server.ws_url)
    await subscribe(ws, streams, ws_signature(venue.public_key, venue.secret_key))
    await wait_for(lambda: any(c.account == ACCOUNT for c in venue.server._conns))
    return ws


async def ws_subscribed(venue: Venue, streams: list[str], count: int = 1) -> None:
    await wait_for(
        lambda: sum(1 for c in venue.server._conns if set(streams) <= c.streams) >= count
    )


# --------------------------------------------------------------------------------------------
# Public REST through the real bpx-py client
# --------------------------------------------------------------------------------------------


async def test_markets_lists_perps_with_decimal_filters(venue: Venue) -> None:
    markets = await venue.public().get_markets()

    assert isinstance(markets, list)
    btc = next(m for m in markets if m["symbol"] == SYMBOL)
    assert btc["baseSymbol"] == "BTC"
    assert btc["quoteSymbol"] == "USDC"
    assert btc["marketType"] == "PERP"
    assert btc["orderBookState"] == "Open"
    rules = venue.book.rules
    assert Decimal(btc["filters"]["price"]["tickSize"]) == rules.tick
    assert Decimal(btc["filters"]["quantity"]["stepSize"]) == rules.step
    assert Decimal(btc["filters"]["quantity"]["minQuantity"]) == rules.min_qty
    for value in (*btc["filters"]["price"].values(), *btc["filters"]["quantity"].values()):
        assert value is None or is_decimal_string(value)


async def test_depth_snapshot_matches_the_book_and_its_sequence(venue: Venue) -> None:
    depth = await venue.public().get_depth(SYMBOL)

    assert depth["lastUpdateId"] == str(venue.book.sequence)
    assert isinstance(depth["timestamp"], int)
    bids = [(Decimal(p), Decimal(q)) for p, q in depth["bids"]]
    asks = [(Decimal(p), Decimal(q)) for p, q in depth["asks"]]
    assert all(is_decimal_string(x) for level in depth["bids"] + depth["asks"] for x in level)
    assert bids == sorted(bids) and asks == sorted(asks)  # both ascending, as the venue does
    bid, bid_qty, ask, ask_qty = venue.book.top()
    assert bids[-1] == (bid, bid_qty)
    assert asks[0] == (ask, ask_qty)


async def test_ticker_answers_for_a_symbol(venue: Venue) -> None:
    ticker = await venue.public().get_ticker(SYMBOL)

    assert ticker["symbol"] == SYMBOL
    for key in ("lastPrice", "high", "low", "volume", "quoteVolume"):
        assert is_decimal_string(ticker[key])


async def test_unknown_symbol_is_invalid_market(venue: Venue) -> None:
    status, body = await raw("GET", f"{venue.server.api_url}api/v1/depth?symbol=NOPE_USDC_PERP")

    assert status == 400
    assert body["code"] == "INVALID_MARKET"
    assert "NOPE_USDC_PERP" in body["message"]


# --------------------------------------------------------------------------------------------
# Private REST through the real bpx-py client
# --------------------------------------------------------------------------------------------


async def test_post_only_order_is_placed_and_described(venue: Venue) -> None:
    account = venue.account()
    bid, _ = mid_prices(venue)
    price = bid - venue.book.rules.tick * 3

    order = await account.execute_order(
        symbol=SYMBOL,
        side="Bid",
        order_type="Limit",
        time_in_force="GTC",
        quantity="0.01",
        price=str(price),
        client_id=42,
        post_only=True,
    )

    assert isinstance(order["id"], str)
    assert order["clientId"] == 42
    assert order["symbol"] == SYMBOL
    assert order["side"] == "Bid"
    assert order["orderType"] == "Limit"
    assert order["timeInForce"] == "GTC"
    assert Decimal(order["quantity"]) == Decimal("0.01")
    assert Decimal(order["price"]) == price
    assert order["executedQuantity"] == "0"
    assert order["executedQuoteQuantity"] == "0"
    assert order["postOnly"] is True
    assert order["status"] == "New"
    assert isinstance(order["createdAt"], int)
    sim_order = venue.book.find_order(ACCOUNT, client_id=42)
    assert sim_order is not None and str(sim_order.order_id) == order["id"]


async def test_order_is_queried_by_order_id_and_by_client_id(venue: Venue) -> None:
    account = venue.account()
    placed = await place_resting_bid(account, venue, client_id=77)

    by_id = await account.get_open_order(SYMBOL, order_id=placed["id"])
    by_client = await account.get_open_order(SYMBOL, client_id=77)
    open_orders = await account.get_open_orders(symbol=SYMBOL)

    assert by_id["id"] == placed["id"] == by_client["id"]
    assert [o["id"] for o in open_orders] == [placed["id"]]


async def test_cancel_by_client_id_then_query_is_not_found(venue: Venue) -> None:
    account = venue.account()
    placed = await place_resting_bid(account, venue, client_id=5)

    cancelled = await cancel_by_client_id(venue, 5)  # a JSON integer (bpx-py's string is refused)
    status, body = await send_config(
        "GET", venue.signer().get_open_order(SYMBOL, order_id=placed["id"])
    )

    assert cancelled["id"] == placed["id"]
    assert cancelled["status"] == "Cancelled"
    assert status == 404
    assert body == {"code": "RESOURCE_NOT_FOUND", "message": "Order not found"}


async def test_cancel_by_order_id_and_unknown_order(venue: Venue) -> None:
    account = venue.account()
    placed = await place_resting_bid(account, venue, client_id=6)

    cancelled = await account.cancel_order(SYMBOL, order_id=placed["id"])
    status, body = await send_signed(
        venue, "DELETE", "orderCancel", {"symbol": SYMBOL, "clientId": 6}
    )

    assert cancelled["status"] == "Cancelled"
    assert status == 400
    assert body == {"code": "RESOURCE_NOT_FOUND", "message": "Not Found"}


async def test_cancel_accepts_client_id_as_a_json_number(venue: Venue) -> None:
    await place_resting_bid(venue.account(), venue, client_id=9)
    signer = venue.signer()
    params = {"symbol": SYMBOL, "clientId": 9}
    headers = signer._headers(params, "orderCancel", window=None)

    status, body = await raw(
        "DELETE", f"{venue.server.api_url}api/v1/order", headers=headers, data=json.dumps(params)
    )

    assert status == 200
    assert body["status"] == "Cancelled"


async def test_cancel_all_cancels_every_open_order(venue: Venue) -> None:
    account = venue.account()
    await place_resting_bid(account, venue, client_id=1)
    await place_resting_bid(account, venue, client_id=2)

    cancelled = await account.cancel_all_orders(SYMBOL)

    assert sorted(o["clientId"] for o in cancelled) == [1, 2]
    assert await account.get_open_orders(symbol=SYMBOL) == []


async def test_post_only_that_would_cross_is_rejected_with_the_venue_message(
    venue: Venue,
) -> None:
    _, ask = mid_prices(venue)
    config = venue.signer().execute_order(
        symbol=SYMBOL,
        side="Bid",
        order_type="Limit",
        time_in_force="GTC",
        quantity="0.01",
        price=str(ask),
        client_id=3,
        post_only=True,
    )

    status, body = await send_config("POST", config)

    assert status == 400
    assert body == {"code": "INVALID_ORDER", "message": POST_ONLY_CROSS_MESSAGE}
    assert venue.book.find_order(ACCOUNT, client_id=3) is None


async def test_fills_positions_and_collateral_after_a_maker_fill(settled_venue: Venue) -> None:
    account = settled_venue.account()
    placed = await place_resting_bid(account, settled_venue, client_id=11, qty="0.03")
    settled_venue.book.fill_resting(int(placed["id"]), Decimal("0.01"))
    settled_venue.book.fill_resting(int(placed["id"]), Decimal("0.02"))

    fills = await account.get_fill_history(symbol=SYMBOL)
    positions = await account.get_open_positions()
    collateral = await account.get_collateral()
    query_status, _ = await send_config(
        "GET", settled_venue.signer().get_open_order(SYMBOL, client_id=11)
    )

    assert len(fills) == 2
    assert {Decimal(f["quantity"]) for f in fills} == {Decimal("0.01"), Decimal("0.02")}
    for fill in fills:
        assert isinstance(fill["tradeId"], int)
        assert fill["orderId"] == placed["id"]
        assert fill["clientId"] == "11"
        assert fill["symbol"] == SYMBOL
        assert fill["side"] == "Bid"
        assert fill["isMaker"] is True
        assert fill["feeSymbol"] == "USDC"
        for key in ("price", "quantity", "fee"):
            assert is_decimal_string(fill[key])
        assert isinstance(fill["timestamp"], str) and "T" in fill["timestamp"]
    btc = next(p for p in positions if p["symbol"] == SYMBOL)
    assert Decimal(btc["netQuantity"]) == Decimal("0.03")
    for key in ("entryPrice", "markPrice", "pnlRealized", "pnlUnrealized"):
        assert is_decimal_string(btc[key])
    assert is_decimal_string(collateral["netEquity"])
    assert is_decimal_string(collateral["netEquityAvailable"])
    assert collateral["collateral"][0]["symbol"] == "USDC"
    assert query_status == 404  # filled: no longer resting


async def test_fill_history_filters_by_order_id_and_time(settled_venue: Venue) -> None:
    account = settled_venue.account()
    first = await place_resting_bid(account, settled_venue, client_id=21)
    second = await place_resting_bid(account, settled_venue, client_id=22)
    settled_venue.book.fill_resting(int(first["id"]), Decimal("0.01"))
    settled_venue.book.fill_resting(int(second["id"]), Decimal("0.01"))
    signer = settled_venue.signer()
    params = {"symbol": SYMBOL, "orderId": second["id"], "limit": 100, "offset": 0}
    headers = signer._headers(params, "fillHistoryQueryAll", window=None)

    status, only_second = await raw(
        "GET",
        f"{settled_venue.server.api_url}wapi/v1/history/fills",
        headers=headers,
        params=params,
    )
    future = await account.get_fill_history(symbol=SYMBOL, from_=int(time.time() * 1000) + 60_000)

    assert status == 200
    assert [f["orderId"] for f in only_second] == [second["id"]]
    assert future == []


async def test_order_history_includes_finished_orders(settled_venue: Venue) -> None:
    account = settled_venue.account()
    placed = await place_resting_bid(account, settled_venue, client_id=31)
    await account.cancel_order(SYMBOL, order_id=placed["id"])

    history = await account.get_order_history(symbol=SYMBOL)

    assert [(o["id"], o["status"], o["clientId"]) for o in history] == [
        (placed["id"], "Cancelled", 31)
    ]


# --------------------------------------------------------------------------------------------
# Signed requests: every tampering is refused
# --------------------------------------------------------------------------------------------


async def test_unknown_api_key_is_refused(venue: Venue) -> None:
    other_public, other_secret = generate_keypair()
    signer = BaseAccount(other_public, other_secret, window=5000, debug=False)
    signer.BPX_API_URL = venue.server.api_url

    status, body = await send_config("GET", signer.get_open_orders(symbol=SYMBOL))

    assert status == 401
    assert body["code"] == "UNAUTHORIZED"


async def test_signature_from_another_key_is_refused(venue: Venue) -> None:
    _, other_secret = generate_keypair()
    signer = BaseAccount(venue.public_key, other_secret, window=5000, debug=False)
    signer.BPX_API_URL = venue.server.api_url

    status, body = await send_config("GET", signer.get_open_positions())

    assert status == 401
    assert body["code"] == "INVALID_SIGNATURE"


async def test_tampered_body_is_refused(venue: Venue) -> None:
    bid, _ = mid_prices(venue)
    config = venue.signer().execute_order(
        symbol=SYMBOL,
        side="Bid",
        order_type="Limit",
        quantity="0.01",
        price=str(bid - 10),
        client_id=8,
        post_only=True,
    )
    config.data["quantity"] = "1"  # changed after signing

    status, body = await send_config("POST", config)

    assert status == 401
    assert body["code"] == "INVALID_SIGNATURE"
    assert venue.book.find_order(ACCOUNT, client_id=8) is None


async def test_stale_timestamp_is_refused(venue: Venue) -> None:
    signer = venue.signer()
    stale = int(time.time() * 1000) - 10_000
    signature = signer._sign({}, "positionQuery", stale, 5000)
    headers = {
        "X-API-Key": venue.public_key,
        "X-Signature": signature,
        "X-Timestamp": str(stale),
        "X-Window": "5000",
    }

    status, body = await raw("GET", f"{venue.server.api_url}api/v1/position", headers=headers)

    assert status == 400
    assert body == {"code": "INVALID_CLIENT_REQUEST", "message": "Request has expired"}


async def test_window_above_the_maximum_is_refused(venue: Venue) -> None:
    account = venue.account()

    body = await account.get_open_positions(window=120_000)

    assert body["code"] == "INVALID_CLIENT_REQUEST"


async def test_missing_auth_headers_are_refused(venue: Venue) -> None:
    status, body = await raw("GET", f"{venue.server.api_url}api/v1/orders")

    assert status == 401
    assert set(body) == {"code", "message"}


# --------------------------------------------------------------------------------------------
# WebSocket streams
# --------------------------------------------------------------------------------------------


def assert_order_update_fields(data: dict[str, Any], *, event: str) -> None:
    """Every documented field of account.orderUpdate, with its type."""
    assert data["e"] == event
    assert isinstance(data["E"], int) and data["E"] > 10**15  # microseconds
    assert data["s"] == SYMBOL
    assert isinstance(data["c"], int)
    assert data["S"] in ("Bid", "Ask")
    assert data["o"] in ("LIMIT", "MARKET")
    assert data["f"] in ("GTC", "IOC", "FOK")
    for key in ("q", "Q", "p", "z", "Z"):
        assert is_decimal_string(data[key]), key
    assert data["X"] in ("New", "PartiallyFilled", "Filled", "Cancelled", "Expired")
    assert isinstance(data["i"], str)
    assert data["V"] in ("RejectTaker", "RejectMaker", "RejectBoth", "Allow")
    assert isinstance(data["T"], int) and data["T"] > 10**15
    assert data["O"] == "USER"
    assert isinstance(data["r"], bool)
    assert isinstance(data["y"], bool)
    if event == "orderFill":
        assert isinstance(data["t"], int)
        for key in ("l", "L", "n"):
            assert is_decimal_string(data[key]), key
        assert isinstance(data["m"], bool)
        assert data["N"] == "USDC"
    else:
        assert data["t"] is None
    if event == "orderExpired":
        assert isinstance(data["R"], str)


async def test_order_update_stream_carries_every_field(venue: Venue) -> None:
    stream = f"account.orderUpdate.{SYMBOL}"
    ws = await subscribed_private(venue, [stream])
    account = venue.account()
    try:
        placed = await place_resting_bid(account, venue, client_id=101, qty="0.03")
        accepted = await next_on(ws, stream)
        venue.book.fill_resting(int(placed["id"]), Decimal("0.01"))
        fill = await next_on(ws, stream)
        await account.cancel_order(SYMBOL, order_id=placed["id"])
        cancelled = await next_on(ws, stream)
    finally:
        await ws.close()

    assert_order_update_fields(accepted["data"], event="orderAccepted")
    assert accepted["data"]["X"] == "New"
    assert accepted["data"]["i"] == placed["id"]
    assert accepted["data"]["c"] == 101
    assert accepted["data"]["y"] is True
    assert_order_update_fields(fill["data"], event="orderFill")
    assert fill["data"]["X"] == "PartiallyFilled"
    assert Decimal(fill["data"]["l"]) == Decimal("0.01")
    assert Decimal(fill["data"]["z"]) == Decimal("0.01")
    assert Decimal(fill["data"]["L"]) == Decimal(placed["price"])
    assert fill["data"]["m"] is True
    assert_order_update_fields(cancelled["data"], event="orderCancelled")
    assert cancelled["data"]["X"] == "Cancelled"
    assert Decimal(cancelled["data"]["z"]) == Decimal("0.01")


async def test_cumulative_quantity_grows_over_partial_fills(venue: Venue) -> None:
    stream = "account.orderUpdate"
    ws = await subscribed_private(venue, [stream])
    try:
        placed = await place_resting_bid(venue.account(), venue, client_id=102, qty="0.03")
        await next_on(ws, stream)
        for _ in range(3):
            venue.book.fill_resting(int(placed["id"]), Decimal("0.01"))
        fills = [(await next_on(ws, stream))["data"] for _ in range(3)]
    finally:
        await ws.close()

    assert [Decimal(f["z"]) for f in fills] == [Decimal("0.01"), Decimal("0.02"), Decimal("0.03")]
    assert [f["X"] for f in fills] == ["PartiallyFilled", "PartiallyFilled", "Filled"]
    assert len({f["t"] for f in fills}) == 3


async def test_position_update_stream(venue: Venue) -> None:
    stream = "account.positionUpdate"
    ws = await subscribed_private(venue, [stream])
    try:
        placed = await place_resting_bid(venue.account(), venue, client_id=103, qty="0.02")
        venue.book.fill_resting(int(placed["id"]), Decimal("0.02"))
        opened = await next_on(ws, stream)
    finally:
        await ws.close()

    data = opened["data"]
    assert data["e"] == "positionOpened"
    assert data["s"] == SYMBOL
    assert Decimal(data["q"]) == Decimal("0.02")
    for key in ("B", "M", "p", "P"):
        assert is_decimal_string(data[key]), key


async def test_position_snapshot_without_event_type_on_subscribe(venue: Venue) -> None:
    placed = await place_resting_bid(venue.account(), venue, client_id=104, qty="0.02")
    venue.book.fill_resting(int(placed["id"]), Decimal("0.02"))
    stream = f"account.positionUpdate.{SYMBOL}"

    ws = await subscribed_private(venue, [stream])
    try:
        snapshot = (await next_on(ws, stream))["data"]
    finally:
        await ws.close()

    assert "e" not in snapshot
    assert snapshot["s"] == SYMBOL
    assert Decimal(snapshot["q"]) == Decimal("0.02")


async def test_depth_stream_deltas_chain_and_match_the_book(venue: Venue) -> None:
    stream = f"depth.{SYMBOL}"
    async with websockets.connect(venue.server.ws_url) as ws:
        await subscribe(ws, [stream])
        await ws_subscribed(venue, [stream])
        for _ in range(5):
            venue.market.step()
        deltas = [(await next_on(ws, stream))["data"] for _ in range(3)]

    for data in deltas:
        assert data["e"] == "depth"
        assert data["s"] == SYMBOL
        assert isinstance(data["E"], int) and isinstance(data["T"], int)
        assert isinstance(data["U"], int) and isinstance(data["u"], int)
        assert data["U"] <= data["u"]
        for level in data["a"] + data["b"]:
            assert len(level) == 2 and all(is_decimal_string(x) for x in level)
    for before, after in itertools.pairwise(deltas):
        assert after["U"] == before["u"] + 1


async def test_book_ticker_stream(venue: Venue) -> None:
    stream = f"bookTicker.{SYMBOL}"
    async with websockets.connect(venue.server.ws_url) as ws:
        await subscribe(ws, [stream])
        await ws_subscribed(venue, [stream])
        for _ in range(3):
            venue.market.step()
        data = (await next_on(ws, stream))["data"]

    assert data["e"] == "bookTicker"
    assert data["s"] == SYMBOL
    for key in ("a", "A", "b", "B"):
        assert is_decimal_string(data[key])
    assert Decimal(data["b"]) < Decimal(data["a"])
    assert isinstance(data["E"], int) and isinstance(data["T"], int)


async def test_private_subscribe_with_bad_signature_is_an_error(venue: Venue) -> None:
    _, other_secret = generate_keypair()
    async with websockets.connect(venue.server.ws_url) as ws:
        await subscribe(ws, ["account.orderUpdate"], ws_signature(venue.public_key, other_secret))
        reply = await next_message(ws)

    assert set(reply["error"]) == {"code", "message"}
    assert all(c.account is None for c in venue.server._conns)


async def test_private_subscribe_without_signature_or_stale_is_an_error(venue: Venue) -> None:
    stale = ws_signature(venue.public_key, venue.secret_key, ts=int(time.time() * 1000) - 60_000)
    async with websockets.connect(venue.server.ws_url) as ws:
        await subscribe(ws, ["account.orderUpdate"])
        unsigned = await next_message(ws)
        await subscribe(ws, ["account.orderUpdate"], stale)
        expired = await next_message(ws)

    assert "error" in unsigned
    assert "expired" in expired["error"]["message"]


async def test_unknown_stream_and_bad_json_are_errors(venue: Venue) -> None:
    async with websockets.connect(venue.server.ws_url) as ws:
        await subscribe(ws, ["depth.NOPE_USDC_PERP"])
        unknown = await next_message(ws)
        await ws.send("not json")
        bad = await next_message(ws)

    assert "error" in unknown and "error" in bad


async def test_server_sends_protocol_pings() -> None:
    venue = await make_venue(ping_interval=0.1)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(venue.server.ws_url, autoping=False) as ws,
        ):
            message = await ws.receive(timeout=2.0)
            assert message.type == aiohttp.WSMsgType.PING
            await ws.pong(message.data)
    finally:
        await venue.server.stop()


async def test_drop_ws_and_stop_close_connections(venue: Venue) -> None:
    ws = await websockets.connect(venue.server.ws_url)
    await subscribe(ws, [f"depth.{SYMBOL}"])
    await ws_subscribed(venue, [f"depth.{SYMBOL}"])

    venue.server.drop_ws()

    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 2.0)
    assert ws.close_code != 1000
    other = await websockets.connect(venue.server.ws_url)
    await venue.server.stop()
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(other.recv(), 2.0)


async def test_control_routes_are_mounted_and_not_faulted(venue: Venue) -> None:
    venue.market.faults.arm("http_503")
    account = venue.account()
    placed = await account.execute_order(
        symbol=SYMBOL,
        side="Bid",
        order_type="Limit",
        quantity="0.01",
        price=str(mid_prices(venue)[0] - 1),
        client_id=90,
        post_only=True,
    )  # takes the armed 503: control routes below are never faulted
    assert placed["code"] == "SERVICE_UNAVAILABLE"
    placed = await place_resting_bid(account, venue, client_id=91)

    status, body = await raw(
        "POST",
        f"{venue.server.api_url}_sim/fill",
        json={"ticker": "BTC", "order_id": int(placed["id"]), "qty": "0.004"},
    )

    assert status == 200, body
    assert venue.book.find_order(ACCOUNT, client_id=91).filled_qty == Decimal("0.004")


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


async def test_bpx_default_client_opens_a_connection_per_request(venue: Venue) -> None:
    public = venue.public()
    before = venue.server.connections_opened

    for _ in range(5):
        await public.get_markets()

    assert venue.server.connections_opened - before == 5


async def test_keep_alive_client_reuses_one_connection(venue: Venue) -> None:
    before = venue.server.connections_opened
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.get(f"{venue.server.api_url}api/v1/markets") as response:
                await response.read()

    assert venue.server.connections_opened - before == 1


# --------------------------------------------------------------------------------------------
# Faults: each happens as specified and is reproducible
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("http_429", 429, "TOO_MANY_REQUESTS"),
        ("http_500", 500, "SERVER_ERROR"),
        ("http_503", 503, "SERVICE_UNAVAILABLE"),
    ],
)
async def test_http_fault_answers_instead_of_serving(
    venue: Venue, fault: Any, status: int, code: str
) -> None:
    venue.market.faults.arm(fault, count=2)
    url = f"{venue.server.api_url}api/v1/markets"

    answers = [await raw("GET", url) for _ in range(3)]

    assert [a[0] for a in answers] == [status, status, 200]
    assert answers[0][1]["code"] == code
    assert venue.market.faults.fired[fault] == 2


async def test_http_faults_from_a_seeded_preset_are_reproducible() -> None:
    async def statuses(seed: int) -> list[int]:
        v = await make_venue(seed=seed, preset="chaos")
        try:
            async with aiohttp.ClientSession() as session:
                result = []
                for _ in range(300):
                    async with session.get(f"{v.server.api_url}api/v1/ping") as response:
                        result.append(response.status)
                return result
        finally:
            await v.server.stop()

    first = await statuses(5)
    again = await statuses(5)
    other = await statuses(6)

    assert first == again
    assert any(s != 200 for s in first)
    assert first != other


async def test_ambiguous_order_is_executed_but_answered_late() -> None:
    venue = await make_venue()
    venue.market.faults.ambiguous_delay_s = 0.5
    venue.market.faults.arm("ambiguous_order")
    bid, _ = mid_prices(venue)
    config = venue.signer().execute_order(
        symbol=SYMBOL,
        side="Bid",
        order_type="Limit",
        quantity="0.01",
        price=str(bid - 10),
        client_id=55,
        post_only=True,
    )
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(asyncio.TimeoutError):
                async with session.post(
                    config.url,
                    headers=config.headers,
                    data=json.dumps(config.data),
                    timeout=aiohttp.ClientTimeout(total=0.1),
                ) as response:
                    await response.read()
        assert venue.book.find_order(ACCOUNT, client_id=55) is not None  # executed anyway
        started = time.monotonic()
        status, body = await send_config("POST", config)  # the next one is answered at once
        assert status == 200 and body["clientId"] == 55
        assert time.monotonic() - started < 0.4
    finally:
        await venue.server.stop()


async def test_post_only_reject_fault_rejects_a_non_crossing_order(venue: Venue) -> None:
    venue.market.faults.arm("post_only_reject")
    account = venue.account()

    rejected = await place_resting_bid(account, venue, client_id=61)
    accepted = await place_resting_bid(account, venue, client_id=62)

    assert rejected == {
        "code": "INVALID_ORDER",
        "message": "Order would immediately match and take.",
    }
    assert venue.book.find_order(ACCOUNT, client_id=61) is None
    assert accepted["status"] == "New"


async def test_ws_drop_aborts_the_connection_before_a_data_message(venue: Venue) -> None:
    stream = f"depth.{SYMBOL}"
    async with websockets.connect(venue.server.ws_url) as ws:
        await subscribe(ws, [stream])
        await ws_subscribed(venue, [stream])
        venue.market.faults.arm("ws_drop")
        venue.market.step()
        with pytest.raises(websockets.ConnectionClosedError):
            while True:
                message = await next_message(ws)
                assert message.get("stream") != stream  # the data message never arrives
    assert venue.market.faults.fired["ws_drop"] == 1


async def test_ws_delay_holds_a_message(venue: Venue) -> None:
    stream = f"depth.{SYMBOL}"
    async with websockets.connect(venue.server.ws_url) as ws:
        await subscribe(ws, [stream])
        await ws_subscribed(venue, [stream])
        venue.market.faults.arm("ws_delay")
        started = time.monotonic()
        venue.market.step()
        first = await next_on(ws, stream)
        elapsed = time.monotonic() - started

    assert first["data"]["e"] == "depth"
    assert elapsed >= 0.02  # the minimum seeded jitter
    assert venue.market.faults.fired["ws_delay"] == 1


async def test_duplicate_event_sends_an_order_update_twice(venue: Venue) -> None:
    stream = "account.orderUpdate"
    ws = await subscribed_private(venue, [stream])
    try:
        venue.market.faults.arm("duplicate_event")
        placed = await place_resting_bid(venue.account(), venue, client_id=71)
        first = await next_on(ws, stream)
        second = await next_on(ws, stream)
    finally:
        await ws.close()

    assert first == second
    assert first["data"]["e"] == "orderAccepted" and first["data"]["i"] == placed["id"]


async def test_reorder_event_sends_an_order_update_after_the_next_one(venue: Venue) -> None:
    stream = "account.orderUpdate"
    ws = await subscribed_private(venue, [stream])
    try:
        placed = await place_resting_bid(venue.account(), venue, client_id=72, qty="0.02")
        await next_on(ws, stream)
        venue.market.faults.arm("reorder_event")
        venue.book.fill_resting(int(placed["id"]), Decimal("0.01"))
        venue.book.fill_resting(int(placed["id"]), Decimal("0.01"))
        first = (await next_on(ws, stream))["data"]
        second = (await next_on(ws, stream))["data"]
    finally:
        await ws.close()

    assert [first["z"], second["z"]] == ["0.02", "0.01"]


async def test_reorder_event_without_a_next_event_is_sent_late_not_lost() -> None:
    venue = await make_venue(reorder_hold_s=0.05)
    stream = "account.orderUpdate"
    ws = await subscribed_private(venue, [stream])
    try:
        venue.market.faults.arm("reorder_event")
        placed = await place_resting_bid(venue.account(), venue, client_id=73)
        held = (await next_on(ws, stream))["data"]
    finally:
        await ws.close()
        await venue.server.stop()

    assert held["e"] == "orderAccepted" and held["i"] == placed["id"]


async def test_depth_gap_skips_a_sequence_id(venue: Venue) -> None:
    stream = f"depth.{SYMBOL}"
    async with websockets.connect(venue.server.ws_url) as ws:
        await subscribe(ws, [stream])
        await ws_subscribed(venue, [stream])
        venue.market.step()
        first = (await next_on(ws, stream))["data"]
        venue.market.faults.arm("depth_gap")
        venue.market.step()
        venue.market.step()
        after_gap = (await next_on(ws, stream))["data"]

    assert after_gap["U"] > first["u"] + 1
    assert venue.market.faults.fired["depth_gap"] == 1


async def test_depth_gaps_drawn_from_a_seed_are_reproducible() -> None:
    async def received(seed: int) -> list[tuple[int, int]]:
        v = await make_venue(seed=seed)
        v.market.faults.set_probability("depth_gap", 0.3)
        stream = f"depth.{SYMBOL}"
        base = v.book.sequence
        try:
            async with websockets.connect(v.server.ws_url) as ws:
                await subscribe(ws, [stream])
                await ws_subscribed(v, [stream])
                for _ in range(40):
                    v.market.step()
                await wait_for(lambda: all(c.queue.empty() for c in v.server._conns))
                v.market.faults.set_probability("depth_gap", 0.0)
                v.market.step()  # a final delta that always arrives: the end marker
                final = v.book.sequence
                got: list[tuple[int, int]] = []
                while not got or got[-1][1] != final - base:
                    data = (await next_on(ws, stream))["data"]
                    got.append((data["U"] - base, data["u"] - base))
                return got
        finally:
            await v.server.stop()

    first = await received(3)
    again = await received(3)

    assert first == again
    assert any(b[0] != a[1] + 1 for a, b in itertools.pairwise(first))


# --------------------------------------------------------------------------------------------
# Performance floors (measured on this 2-core machine; the floors are conservative)
# --------------------------------------------------------------------------------------------


async def test_serves_at_least_500_order_requests_per_second(venue: Venue) -> None:
    signer = venue.signer()
    bid, _ = mid_prices(venue)
    price = str(bid - venue.book.rules.tick * 50)
    n = 400
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            config = signer.execute_order(
                symbol=SYMBOL,
                side="Bid",
                order_type="Limit",
                quantity="0.001",
                price=price,
                client_id=1000 + i,
                post_only=True,
            )
            async with session.post(
                config.url, headers=config.headers, data=json.dumps(config.data)
            ) as response:
                assert response.status == 200
                await response.read()

        # CPU time (the server and its client both run in this process): a loaded
        # machine stretches the wall clock, not the work, so the floor holds anyway.
        started = time.process_time()
        await gather_limited([one(i) for i in range(n)], limit=8)
        elapsed = time.process_time() - started

    rate = n / elapsed
    assert rate >= 500, f"{rate:.0f} order requests/s"


async def test_streams_at_least_5000_ws_messages_per_second(venue: Venue) -> None:
    stream = f"depth.{SYMBOL}"
    n = 6000
    async with websockets.connect(venue.server.ws_url, max_queue=None) as ws:
        await subscribe(ws, [stream])
        await ws_subscribed(venue, [stream])
        listener = venue.server._book_listener(venue.book)
        from exchanges.sim.market import BookDelta

        bid, bid_qty, _, _ = venue.book.top()
        # CPU time (the server and its client both run in this process): a loaded
        # machine stretches the wall clock, not the work, so the floor holds anyway.
        started = time.process_time()
        for i in range(n):
            listener(BookDelta(i + 1, i + 1, [(bid, bid_qty)], [], 0))
            if i % 500 == 0:
                await asyncio.sleep(0)
        count = 0
        while count < n:
            message = await asyncio.wait_for(ws.recv(), 5.0)
            if '"depth"' in message:
                count += 1
        elapsed = time.process_time() - started

    rate = n / elapsed
    assert rate >= 5000, f"{rate:.0f} ws messages/s"


async def gather_limited(coros: list[Awaitable[None]], limit: int) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def run(coro: Awaitable[None]) -> None:
        async with semaphore:
            await coro

    await asyncio.gather(*(run(c) for c in coros))

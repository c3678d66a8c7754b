"""The simulated Backpack venue is as strict as the real one ("Second reading" of
protocols/backpack.md): typed cancel payloads, 202 cancels, lagging history, system fills,
market states, microsecond depth times, ccxt's assets/securities, Ping/Pong, rate limits and
request accounting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import pytest
from bpx.async_.public import Public
from bpx.http_client.async_http_client import AsyncHttpClient

from exchanges.base import Side
from exchanges.sim.faults import FaultPlan
from exchanges.sim.market import SimMarket
from tests.exchanges.sim.test_backpack_server import (
    ACCOUNT,
    SYMBOL,
    Venue,
    cancel_by_client_id,
    make_venue,
    next_on,
    place_resting_bid,
    raw,
    send_config,
    send_signed,
    subscribed_private,
    ws_signature,
)
from tests.waiting import wait_for

_T = TypeVar("_T")


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    v = await make_venue()
    yield v
    await v.server.stop()


async def history_fills(venue: Venue) -> list[dict[str, Any]]:
    status, body = await send_config("GET", venue.signer().get_fill_history(symbol=SYMBOL))
    assert status == 200, body
    return list(body)


async def poll(read: Callable[[], Awaitable[_T]], ok: Callable[[_T], bool], timeout: float) -> _T:
    """Read until `ok` (paced: the venue's rate limit counts every read), with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s; last read: {value!r}")
        await asyncio.sleep(0.02)


async def history_orders(venue: Venue) -> list[dict[str, Any]]:
    status, body = await send_config(
        "GET", venue.signer().get_order_history(limit=100, offset=0, symbol=SYMBOL)
    )
    assert status == 200, body
    return list(body)


# --------------------------------------------------------------------------------------------
# Cancel
# --------------------------------------------------------------------------------------------


async def test_cancel_with_a_string_client_id_is_refused_by_the_payload_parser(
    venue: Venue,
) -> None:
    await place_resting_bid(venue.account(), venue, client_id=42)

    answer = await venue.account().cancel_order(SYMBOL, client_id=42)  # sends "42"

    assert answer["code"] == "INVALID_CLIENT_REQUEST"
    assert answer["message"].startswith('parse request payload error: Expected input type "u32"')
    assert venue.book.find_order(ACCOUNT, client_id=42).is_open


async def test_cancel_with_a_string_client_id_is_http_400(venue: Venue) -> None:
    status, body = await send_signed(
        venue, "DELETE", "orderCancel", {"symbol": SYMBOL, "clientId": "42"}
    )

    assert status == 400
    assert body["code"] == "INVALID_CLIENT_REQUEST"


async def test_cancel_with_an_integer_client_id_cancels(venue: Venue) -> None:
    await place_resting_bid(venue.account(), venue, client_id=43)

    cancelled = await cancel_by_client_id(venue, 43)

    assert cancelled["status"] == "Cancelled" and cancelled["clientId"] == 43


async def test_cancel_of_a_gone_order_is_resource_not_found_400(venue: Venue) -> None:
    status, body = await send_signed(
        venue, "DELETE", "orderCancel", {"symbol": SYMBOL, "orderId": "999"}
    )

    assert (status, body) == (400, {"code": "RESOURCE_NOT_FOUND", "message": "Not Found"})


async def test_under_faults_a_gone_order_is_answered_400_or_404() -> None:
    venue = await make_venue(preset="chaos", seed=3)
    venue.market.faults.disarm()
    for fault in ("http_429", "http_500", "http_503"):
        venue.market.faults.set_probability(fault, 0.0)
    try:
        statuses = set()
        for _ in range(30):
            status, body = await send_signed(
                venue, "DELETE", "orderCancel", {"symbol": SYMBOL, "orderId": "999"}
            )
            assert body["code"] == "RESOURCE_NOT_FOUND"
            statuses.add(status)
        assert statuses == {400, 404}
    finally:
        await venue.server.stop()


async def test_cancel_accepted_202_answers_no_body_and_cancels_shortly_after() -> None:
    venue = await make_venue(cancel_accepted_202=True)
    try:
        placed = await place_resting_bid(venue.account(), venue, client_id=44)
        status, body = await send_signed(
            venue, "DELETE", "orderCancel", {"symbol": SYMBOL, "orderId": placed["id"]}
        )
        assert status == 202 and body is None
        await wait_for(lambda: not venue.book.find_order(ACCOUNT, client_id=44).is_open)
        assert venue.book.find_order(ACCOUNT, client_id=44).status == "cancelled"
    finally:
        await venue.server.stop()


async def cancel_each(venue: Venue, orders: list[dict[str, Any]]) -> list[tuple[str, int, Any]]:
    """Cancel each order by its order id: (order id, HTTP status, JSON body or None)."""
    answers = []
    for order in orders:
        body = {"symbol": SYMBOL, "orderId": order["id"]}
        status, answer = await send_signed(venue, "DELETE", "orderCancel", body)
        answers.append((order["id"], status, answer))
    return answers


async def test_under_faults_some_cancels_are_answered_202_with_no_body_then_cancelled() -> None:
    venue = await make_venue(seed=11)  # seeded: the same cancels are answered 202 every run
    stream = "account.orderUpdate"
    ws = await subscribed_private(venue, [stream])
    try:
        account = venue.account()
        orders = [await place_resting_bid(account, venue, client_id=c) for c in range(201, 213)]
        venue.market.faults.set_probability("ambiguous_order", 0.5)

        answers = await cancel_each(venue, orders)

        accepted = {order_id for order_id, status, _ in answers if status == 202}
        assert accepted and len(accepted) < len(answers)  # both forms, from one seeded plan
        assert all(body is None for _, status, body in answers if status == 202)
        assert all(
            (status, body["status"]) == (200, "Cancelled")
            for _, status, body in answers
            if status != 202
        )
        assert venue.server.cancels_accepted_202 == len(accepted)
        cancelled: set[str] = set()
        while not accepted <= cancelled:  # what the 202 did not say, the stream tells
            event = (await next_on(ws, stream))["data"]
            if event["e"] == "orderCancelled":
                cancelled.add(event["i"])
        for order_id in accepted:
            order = venue.book.find_order(ACCOUNT, order_id=int(order_id))
            assert order is not None and order.status == "cancelled"
    finally:
        await ws.close()
        await venue.server.stop()


async def test_with_the_fault_probability_zero_no_cancel_is_answered_202() -> None:
    venue = await make_venue(preset="chaos", seed=11)  # every other fault as the preset has it
    faults = venue.market.faults
    for fault in ("http_429", "http_500", "http_503", "post_only_reject"):  # not about cancels
        faults.set_probability(fault, 0.0)
    faults.set_probability("ambiguous_order", 0.0)
    try:
        account = venue.account()
        orders = [await place_resting_bid(account, venue, client_id=c) for c in range(221, 241)]

        answers = await cancel_each(venue, orders)

        assert [(status, body["status"]) for _, status, body in answers] == [
            (200, "Cancelled")
        ] * len(orders)
        assert venue.server.cancels_accepted_202 == 0
    finally:
        await venue.server.stop()


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------


async def test_a_fill_shows_in_history_only_after_the_lag() -> None:
    lag = 1.0
    venue = await make_venue(history_lag_s=lag)
    try:
        account = venue.account()
        placed = await place_resting_bid(account, venue, client_id=51, qty="0.02")
        made = time.monotonic()
        venue.book.fill_resting(int(placed["id"]), Decimal("0.01"))

        open_orders = await account.get_open_orders(symbol=SYMBOL)
        fills = await history_fills(venue)
        elapsed = time.monotonic() - made

        assert open_orders[0]["executedQuantity"] == "0.01"  # the engine knows at once
        if elapsed < lag:  # (a stalled machine may have let the lag pass: nothing to see then)
            assert fills == []
        shown = await poll(lambda: history_fills(venue), bool, timeout=lag + 5)
        assert time.monotonic() - made >= lag
        assert shown[0]["orderId"] == placed["id"] and shown[0]["quantity"] == "0.01"
    finally:
        await venue.server.stop()


async def test_order_history_shows_the_order_as_it_was_a_lag_ago() -> None:
    lag = 1.0
    venue = await make_venue(history_lag_s=lag)
    try:
        account = venue.account()
        placed_at = time.monotonic()
        placed = await place_resting_bid(account, venue, client_id=52)

        early = await history_orders(venue)
        if time.monotonic() - placed_at < lag:
            assert early == []
        rows = await poll(lambda: history_orders(venue), bool, timeout=lag + 5)
        assert time.monotonic() - placed_at >= lag and rows[0]["status"] == "New"

        cancelled_at = time.monotonic()
        await account.cancel_order(SYMBOL, order_id=placed["id"])
        stale = await history_orders(venue)
        if time.monotonic() - cancelled_at < lag:
            assert [row["status"] for row in stale] == ["New"]  # still resting, for history
        rows = await poll(
            lambda: history_orders(venue), lambda r: r[0]["status"] == "Cancelled", lag + 5
        )
        assert time.monotonic() - cancelled_at >= lag
        assert isinstance(rows[0]["createdAt"], str) and "T" in rows[0]["createdAt"]
    finally:
        await venue.server.stop()


async def test_history_times_are_iso_without_zone_and_orders_carry_integer_ms() -> None:
    venue = await make_venue(history_lag_s=0)
    try:
        account = venue.account()
        placed = await place_resting_bid(account, venue, client_id=53)
        venue.book.fill_resting(int(placed["id"]), Decimal("0.005"))

        fill = (await history_fills(venue))[0]
        order = (await history_orders(venue))[0]
        open_order = (await account.get_open_orders(symbol=SYMBOL))[0]

        for text in (fill["timestamp"], order["createdAt"]):
            assert isinstance(text, str) and "T" in text and text[-4] == "."
            assert not text.endswith("Z") and "+" not in text
        assert isinstance(placed["createdAt"], int) and isinstance(open_order["createdAt"], int)
    finally:
        await venue.server.stop()


@pytest.mark.parametrize("trade_id", [None, 0])
async def test_system_fills_show_in_history_with_a_null_or_zero_trade_id(
    trade_id: int | None,
) -> None:
    venue = await make_venue(history_lag_s=0)
    try:
        status, body = await raw(
            "POST",
            f"{venue.server.api_url}_sim/system_fill",
            json={
                "account": ACCOUNT,
                "ticker": "BTC",
                "side": "sell",
                "qty": "0.01",
                "price": "60000",
                "trade_id": trade_id,
            },
        )
        assert status == 200, body

        rows = await history_fills(venue)

        assert len(rows) == 1
        assert rows[0]["tradeId"] == trade_id and rows[0]["orderId"] is None
        assert rows[0]["systemOrderType"] and rows[0]["side"] == "Ask"
    finally:
        await venue.server.stop()


# --------------------------------------------------------------------------------------------
# Market states
# --------------------------------------------------------------------------------------------


async def limit_order(venue: Venue, client_id: int, *, post_only: bool) -> dict[str, Any]:
    bid = venue.book.top()[0] - venue.book.rules.tick * 5
    return await venue.account().execute_order(
        symbol=SYMBOL,
        side="Bid",
        order_type="Limit",
        time_in_force="GTC",
        quantity="0.01",
        price=str(bid),
        client_id=client_id,
        post_only=post_only,
    )


async def market_order(venue: Venue, client_id: int) -> dict[str, Any]:
    return await venue.account().execute_order(
        symbol=SYMBOL, side="Bid", order_type="Market", quantity="0.001", client_id=client_id
    )


async def markets_state(venue: Venue) -> str:
    public = Public(http_client=AsyncHttpClient())
    public.BASE_URL = venue.server.api_url
    markets = await public.get_markets()
    return str(next(m for m in markets if m["symbol"] == SYMBOL)["orderBookState"])


async def test_market_state_is_set_over_the_control_route_and_reported(venue: Venue) -> None:
    assert await markets_state(venue) == "Open"

    status, body = await raw(
        "POST",
        f"{venue.server.api_url}_sim/market_state",
        json={"ticker": "BTC", "state": "Closed"},
    )

    assert status == 200 and body["orderBookState"] == "Closed"
    assert await markets_state(venue) == "Closed"
    bad, _ = await raw(
        "POST", f"{venue.server.api_url}_sim/market_state", json={"symbol": SYMBOL, "state": "X"}
    )
    assert bad == 400


async def test_closed_market_refuses_orders_and_cancels(venue: Venue) -> None:
    placed = await limit_order(venue, 61, post_only=True)
    venue.server.set_market_state(SYMBOL, "Closed")

    refused = await limit_order(venue, 62, post_only=True)
    status, body = await send_signed(
        venue, "DELETE", "orderCancel", {"symbol": SYMBOL, "orderId": placed["id"]}
    )

    assert refused["code"] == "INVALID_ORDER"
    assert status == 400 and body["code"] == "INVALID_ORDER"


async def test_cancel_only_market_refuses_new_orders_but_cancels(venue: Venue) -> None:
    placed = await limit_order(venue, 63, post_only=True)
    venue.server.set_market_state(SYMBOL, "CancelOnly")

    refused = await limit_order(venue, 64, post_only=True)
    cancelled = await venue.account().cancel_order(SYMBOL, order_id=placed["id"])

    assert refused["code"] == "INVALID_ORDER"
    assert cancelled["status"] == "Cancelled"


async def test_limit_only_market_refuses_market_orders(venue: Venue) -> None:
    venue.server.set_market_state("BTC", "LimitOnly")

    refused = await market_order(venue, 65)
    accepted = await limit_order(venue, 66, post_only=False)

    assert refused["code"] == "INVALID_ORDER" and "limit only" in refused["message"]
    assert accepted["status"] == "New"


async def test_post_only_market_refuses_orders_that_are_not_post_only(venue: Venue) -> None:
    venue.server.set_market_state(SYMBOL, "PostOnly")

    refused = await limit_order(venue, 67, post_only=False)
    accepted = await limit_order(venue, 68, post_only=True)

    assert refused["code"] == "INVALID_ORDER" and "post only" in refused["message"]
    assert accepted["status"] == "New"


# --------------------------------------------------------------------------------------------
# Public data
# --------------------------------------------------------------------------------------------


async def test_depth_timestamp_is_in_microseconds(venue: Venue) -> None:
    before_us = time.time_ns() // 1000
    status, depth = await raw("GET", f"{venue.server.api_url}api/v1/depth?symbol={SYMBOL}")
    after_us = time.time_ns() // 1000

    assert status == 200
    assert before_us <= depth["timestamp"] <= after_us


async def test_assets_and_securities_have_the_shapes_ccxt_parses(venue: Venue) -> None:
    _, assets = await raw("GET", f"{venue.server.api_url}api/v1/assets")
    _, securities = await raw("GET", f"{venue.server.api_url}api/v1/securities")

    symbols = {a["symbol"] for a in assets}
    assert {"USDC", "BTC"} <= symbols
    for asset in assets:
        assert isinstance(asset["displayName"], str)
        for token in asset["tokens"]:
            assert {"blockchain", "depositEnabled", "withdrawEnabled", "withdrawalFee"} <= set(
                token
            )
    assert securities == []  # no tokenized stocks: ccxt adds no RFQ markets


async def test_futures_fees_are_tier_one_maker_2_bps_taker_5_bps() -> None:
    venue = await make_venue(history_lag_s=0)
    try:
        account = venue.account()
        placed = await place_resting_bid(account, venue, client_id=71)
        venue.book.fill_resting(int(placed["id"]), Decimal("0.01"))
        await market_order(venue, 72)

        rows = await history_fills(venue)

        for row in rows:
            notional = Decimal(row["price"]) * Decimal(row["quantity"])
            bps = Decimal("0.0002") if row["isMaker"] else Decimal("0.0005")
            assert Decimal(row["fee"]) == notional * bps
        assert {row["isMaker"] for row in rows} == {True, False}
    finally:
        await venue.server.stop()


# --------------------------------------------------------------------------------------------
# WebSocket keep-alive
# --------------------------------------------------------------------------------------------


async def test_a_peer_that_never_answers_pings_is_dropped_after_the_pong_timeout() -> None:
    venue = await make_venue(ping_interval=0.05, pong_timeout_s=0.3)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(venue.server.ws_url, autoping=False) as ws,
        ):
            opened = time.monotonic()
            pings = 0
            while True:
                message = await ws.receive(timeout=5.0)
                if message.type == aiohttp.WSMsgType.PING:
                    pings += 1  # never answered
                    continue
                break
            assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
            assert time.monotonic() - opened >= 0.3
            assert pings >= 2
        assert venue.server.pongs_missed == 1
    finally:
        await venue.server.stop()


async def test_a_peer_that_answers_pings_stays_connected() -> None:
    venue = await make_venue(ping_interval=0.05, pong_timeout_s=0.2)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(venue.server.ws_url, autoping=True) as ws,
        ):
            # The client answers each Ping by itself inside receive(); nothing else comes.
            # (receive's own timeout restarts on every Ping: bound it from outside.)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.receive(), timeout=0.8)  # 4 pong timeouts
            assert not ws.closed
        assert venue.server.pongs_missed == 0
    finally:
        await venue.server.stop()


# --------------------------------------------------------------------------------------------
# Rate limit and request accounting
# --------------------------------------------------------------------------------------------


async def test_the_request_past_the_rate_limit_gets_429_with_retry_after() -> None:
    venue = await make_venue(rate_limit=5)
    try:
        signer = venue.signer()
        statuses = []
        for _ in range(5):
            status, _ = await send_config("GET", signer.get_open_orders(symbol=SYMBOL))
            statuses.append(status)
        config = signer.get_open_orders(symbol=SYMBOL)
        async with (
            aiohttp.ClientSession() as session,
            session.get(config.url, headers=config.headers, params=config.params) as response,
        ):
            status, body = response.status, await response.json()
            retry_after = response.headers.get("Retry-After")

        assert statuses == [200] * 5
        assert status == 429
        assert body == {"code": "TOO_MANY_REQUESTS", "message": "Too many requests"}
        assert retry_after is not None and int(retry_after) >= 1
        public_status, _ = await raw("GET", f"{venue.server.api_url}api/v1/markets")
        assert public_status == 200  # public requests have their own (per-IP) budget
        counts = venue.server.ledger.account(str(ACCOUNT))
        assert counts["http_429"] == 1 and counts["requests_total"] == 6
    finally:
        await venue.server.stop()


async def test_public_requests_are_limited_per_ip() -> None:
    venue = await make_venue(rate_limit=3)
    try:
        statuses = [
            (await raw("GET", f"{venue.server.api_url}api/v1/markets"))[0] for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
    finally:
        await venue.server.stop()


async def test_request_counts_match_what_the_client_sent_and_sim_routes_are_free() -> None:
    venue = await make_venue(rate_limit=10)
    try:
        account = venue.account()
        for client_id in (81, 82):
            await place_resting_bid(account, venue, client_id=client_id)
        await cancel_by_client_id(venue, 81)
        await account.get_open_orders(symbol=SYMBOL)
        await raw("GET", f"{venue.server.api_url}api/v1/depth?symbol={SYMBOL}")
        for _ in range(20):  # control routes: neither counted nor limited
            status, _ = await raw("GET", f"{venue.server.api_url}_sim/truth")
            assert status == 200
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(venue.server.ws_url) as ws,
        ):
            for _ in range(3):
                await ws.send_str('{"method":"SUBSCRIBE","params":["depth.BTC_USDC_PERP"]}')
            # The connection's first signed subscribe counts under the account as well, and
            # so does what follows it on that connection.
            signature = ws_signature(venue.public_key, venue.secret_key)
            await ws.send_json(
                {"method": "SUBSCRIBE", "params": ["account.orderUpdate"], "signature": signature}
            )
            await ws.send_str('{"method":"SUBSCRIBE","params":["bookTicker.BTC_USDC_PERP"]}')

            def ws_counted() -> bool:
                ips = venue.server.ledger.snapshot()["ips"]
                assert isinstance(ips, dict)
                return sum(row["ws_messages"] for row in ips.values()) == 5

            await wait_for(ws_counted, what="5 ws messages counted")

        status, snapshot = await raw("GET", f"{venue.server.api_url}_sim/requests")

        assert status == 200 and snapshot["venue"] == "backpack"
        mine = snapshot["accounts"][str(ACCOUNT)]
        assert mine["requests"] == {
            "POST /api/v1/order": 2,
            "DELETE /api/v1/order": 1,
            "GET /api/v1/orders": 1,
        }
        assert mine["requests_total"] == 4 and mine["send_tx"] == 3 and mine["http_429"] == 0
        assert mine["ws_messages"] == 2
        (by_ip,) = snapshot["ips"].values()
        assert by_ip["requests_total"] == 5  # the public depth request counts by IP only
        assert by_ip["requests"]["GET /api/v1/depth"] == 1
        assert by_ip["ws_messages"] == 5
        await raw("POST", f"{venue.server.api_url}_sim/requests/reset")
        assert venue.server.ledger.snapshot()["accounts"] == {}
    finally:
        await venue.server.stop()


async def test_rate_limit_none_is_unlimited_but_counted() -> None:
    venue = await make_venue(rate_limit=None)
    try:
        for _ in range(30):
            status, _ = await raw("GET", f"{venue.server.api_url}api/v1/markets")
            assert status == 200
        (by_ip,) = venue.server.ledger.snapshot()["ips"].values()  # type: ignore[union-attr]
        assert by_ip["requests_total"] == 30
    finally:
        await venue.server.stop()


def test_bad_constructor_arguments_are_refused() -> None:
    market = SimMarket(faults=FaultPlan("none"))
    from exchanges.sim.backpack_server import BackpackServer

    with pytest.raises(ValueError):
        BackpackServer(market, api_keys={}, rate_limit=0)
    with pytest.raises(ValueError):
        BackpackServer(market, api_keys={}, history_lag_s=-1)
    server = BackpackServer(market, api_keys={})
    with pytest.raises(ValueError):
        server.set_market_state(SYMBOL, "Halted")
    with pytest.raises(ValueError):
        server.add_system_fill(ACCOUNT, "BTC", Side.SELL, Decimal(1), Decimal(1), trade_id=5)

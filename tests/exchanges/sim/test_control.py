"""The `/_sim/` control routes over a real loopback HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from exchanges.base import Side
from exchanges.sim.control import add_control_routes
from exchanges.sim.market import SimMarket

D = Decimal
ACCOUNT = 3


@pytest.fixture
def market() -> SimMarket:
    return SimMarket(seed=2, fill_rate=0)


@pytest.fixture
async def client(market: SimMarket) -> AsyncIterator[TestClient]:
    app = web.Application()
    add_control_routes(app, market, "backpack")
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def post(client: TestClient, path: str, body: object, status: int = 200) -> dict:
    response = await client.post(path, json=body)
    payload = await response.json()
    assert response.status == status, payload
    return payload


async def test_truth_is_served_as_json(client: TestClient, market: SimMarket) -> None:
    response = await client.get("/_sim/truth")
    assert response.status == 200
    truth = await response.json()
    assert truth["seed"] == 2 and set(truth["venues"]) == {"backpack", "lighter"}
    assert truth["mids"]["BTC"] == str(market.mid("BTC"))


async def test_price_moves_both_books(client: TestClient, market: SimMarket) -> None:
    answer = await post(client, "/_sim/price", {"ticker": "ETH", "price": "2500"})
    assert answer["mid"] == "2500.00"
    for venue in ("backpack", "lighter"):
        bid = D(answer["tops"][venue]["bid"])
        assert abs(bid - 2500) < 5
        assert market.book(venue, "ETH").top()[0] == bid  # type: ignore[arg-type]


async def test_trade_through_fills_this_venues_resting_orders(
    client: TestClient, market: SimMarket
) -> None:
    book = market.book("backpack", "BTC")
    bid = book.top()[0]
    order = book.place_limit(ACCOUNT, Side.BUY, D("0.01"), bid, client_id=1, post_only=True)
    answer = await post(
        client, "/_sim/trade_through", {"ticker": "BTC", "price": str(bid), "qty": "0.004"}
    )
    assert [(f["order_id"], f["qty"], f["price"]) for f in answer["fills"]] == [
        (order.order_id, "0.00400", str(bid))
    ]
    answer = await post(client, "/_sim/trade_through", {"ticker": "BTC", "price": str(bid)})
    assert [f["qty"] for f in answer["fills"]] == ["0.00600"]
    assert order.status == "filled"


async def test_fill_partially_fills_one_order(client: TestClient, market: SimMarket) -> None:
    book = market.book("lighter", "SOL")  # found by id though the routes are backpack's
    ask = book.top()[2]
    order = book.place_limit(ACCOUNT, Side.SELL, D("1"), ask + 1, client_id=1, post_only=True)
    answer = await post(
        client,
        "/_sim/fill",
        {"ticker": "SOL", "order_id": order.order_id, "qty": "0.25", "venue": "lighter"},
    )
    assert answer["fill"]["qty"] == "0.250" and answer["fill"]["is_maker"] is True
    assert order.filled_qty == D("0.25")
    book.cancel(ACCOUNT, order_id=order.order_id)
    refused = await post(
        client,
        "/_sim/fill",
        {"ticker": "SOL", "order_id": order.order_id, "qty": "0.25", "venue": "lighter"},
        status=400,
    )
    assert "not resting" in refused["error"]


async def test_arm_fault(client: TestClient, market: SimMarket) -> None:
    answer = await post(client, "/_sim/faults/arm", {"fault": "ws_drop", "count": 2})
    assert answer["faults"]["armed"] == {"ws_drop": 2}
    assert market.faults.check("ws_drop") and market.faults.check("ws_drop")
    assert not market.faults.check("ws_drop")


async def test_thin_and_restore(client: TestClient, market: SimMarket) -> None:
    answer = await post(client, "/_sim/thin", {"ticker": "BTC", "qty": "0.05"})
    assert answer == {"bid_total": "0.05000", "ask_total": "0.05000"}
    lighter_depth = market.book("lighter", "BTC").levels(1000)[0]
    assert sum(q for _, q in lighter_depth) > D("0.05")  # only this venue's book
    answer = await post(client, "/_sim/thin", {"ticker": "BTC", "qty": None})
    assert D(answer["bid_total"]) > 1


async def test_step_advances_the_clock(client: TestClient, market: SimMarket) -> None:
    assert (await post(client, "/_sim/step", {}))["steps"] == 1
    assert (await post(client, "/_sim/step", {"count": 5}))["steps"] == 6
    assert market.steps == 6


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/_sim/price", {"ticker": "ZZZ", "price": "1"}, "unknown ticker"),
        ("/_sim/price", {"ticker": "BTC", "price": "-1"}, "price must be > 0"),
        ("/_sim/price", {"ticker": "BTC", "price": "abc"}, "not a number"),
        ("/_sim/price", {"ticker": "BTC"}, "price required"),
        ("/_sim/price", [1, 2], "JSON object"),
        ("/_sim/trade_through", {"ticker": "BTC", "price": "NaN"}, "must be finite"),
        ("/_sim/trade_through", {"ticker": "BTC", "price": "1", "venue": "x"}, "unknown venue"),
        ("/_sim/fill", {"ticker": "BTC", "order_id": "x", "qty": "1"}, "order_id"),
        ("/_sim/fill", {"ticker": "BTC", "order_id": 5, "qty": "1"}, "no resting order"),
        ("/_sim/faults/arm", {"fault": "meteor"}, "unknown fault"),
        ("/_sim/faults/arm", {"fault": "ws_drop", "count": -1}, "count"),
        ("/_sim/thin", {"ticker": "BTC"}, "qty required"),
        ("/_sim/step", {"count": 0}, "count"),
    ],
)
async def test_bad_input_is_a_400_with_an_error(
    client: TestClient, path: str, body: object, error: str
) -> None:
    answer = await post(client, path, body, status=400)
    assert error in answer["error"]


async def test_body_that_is_not_json_is_a_400(client: TestClient) -> None:
    response = await client.post("/_sim/step", data=b"{nope")
    assert response.status == 400
    assert (await response.json())["error"] == "body is not JSON"


async def test_without_a_venue_the_body_must_name_one(market: SimMarket) -> None:
    app = web.Application()
    add_control_routes(app, market)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        answer = await post(client, "/_sim/thin", {"ticker": "BTC", "qty": "1"}, status=400)
        assert answer["error"] == "venue required"
        await post(client, "/_sim/thin", {"ticker": "BTC", "qty": "1", "venue": "lighter"})
        assert sum(q for _, q in market.book("lighter", "BTC").levels(1000)[0]) == 1

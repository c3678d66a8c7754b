"""The simulators' market list: every market of `DEFAULT_TICKERS`, with consistent rules on both
venues, listed and served by both servers at once, and tradeable at the demo's default size."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import websockets

from exchanges.base import Side
from exchanges.sim.backpack_server import BackpackServer
from exchanges.sim.faults import FaultPlan
from exchanges.sim.lighter_server import LighterServer
from exchanges.sim.market import DEFAULT_TICKERS, SimMarket, TickerSpec, VenueName
from tests.waiting import wait_for

D = Decimal
TICKERS = sorted(DEFAULT_TICKERS)
VENUE_NAMES: tuple[VenueName, ...] = ("backpack", "lighter")
UINT32_MAX = 2**32 - 1


def demo_size(spec: TickerSpec) -> Decimal:
    """The demo's default size (hedge/ops.py: demo)."""
    return max(spec.backpack.min_qty, spec.lighter.min_qty) * 10


def is_multiple(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def fake_clock() -> Callable[[], int]:
    counter = itertools.count(1_700_000_000_000)
    return lambda: next(counter)


# -- the table --------------------------------------------------------------------------------


def test_at_least_ten_markets_with_distinct_symbols_and_ids() -> None:
    assert len(DEFAULT_TICKERS) >= 10
    assert {"BTC", "ETH", "SOL", "DOGE", "XRP", "BNB", "SUI", "AVAX", "LINK", "HYPE"} <= set(
        DEFAULT_TICKERS
    )
    ids = [spec.lighter.market_id for spec in DEFAULT_TICKERS.values()]
    assert len(set(ids)) == len(ids)
    for ticker, spec in DEFAULT_TICKERS.items():
        assert spec.ticker == ticker
        assert spec.backpack.symbol == f"{ticker}_USDC_PERP"
        assert spec.lighter.symbol == ticker


@pytest.mark.parametrize("ticker", TICKERS)
def test_rules_are_consistent(ticker: str) -> None:
    spec = DEFAULT_TICKERS[ticker]
    backpack, lighter = spec.backpack, spec.lighter
    assert lighter.tick == D(1).scaleb(-lighter.price_decimals)
    assert lighter.step == D(1).scaleb(-lighter.size_decimals)
    assert lighter.min_quote == 10
    for rules in (backpack, lighter):
        assert rules.tick > 0 and rules.step > 0
        assert is_multiple(rules.min_qty, rules.step)
        assert rules.min_qty <= rules.max_qty
        # a tick is a small fraction of the price (0.001..10 bps), as on the venues
        assert D("0.0000001") <= rules.tick / spec.start_price <= D("0.001")
    # the start price is a price on both venues
    assert is_multiple(spec.start_price, backpack.tick)
    assert is_multiple(spec.start_price, lighter.tick)


@pytest.mark.parametrize("ticker", TICKERS)
def test_the_demo_default_size_is_valid_on_both_venues(ticker: str) -> None:
    spec = DEFAULT_TICKERS[ticker]
    size = demo_size(spec)
    for rules in (spec.backpack, spec.lighter):
        assert is_multiple(size, rules.step), (rules.symbol, size, rules.step)
        assert rules.min_qty <= size <= rules.max_qty
    # above Lighter's minimum order value, even after the price halves
    assert size * spec.start_price / 2 >= spec.lighter.min_quote


@pytest.mark.parametrize("ticker", TICKERS)
def test_lighter_prices_fit_a_uint32_at_ten_times_the_start_price(ticker: str) -> None:
    spec = DEFAULT_TICKERS[ticker]
    scaled = (spec.start_price * 10).scaleb(spec.lighter.price_decimals)
    assert scaled == scaled.to_integral_value() and scaled <= UINT32_MAX


# -- trading every market through the SimMarket API ---------------------------------------------


@pytest.mark.parametrize("venue", VENUE_NAMES)
@pytest.mark.parametrize("ticker", TICKERS)
def test_post_only_at_the_touch_and_ioc_against_the_book(ticker: str, venue: VenueName) -> None:
    market = SimMarket(seed=11, fill_rate=0.0, clock_ms=fake_clock())
    for _ in range(5):
        market.step()
    book = market.book(venue, ticker)
    size = demo_size(DEFAULT_TICKERS[ticker])
    maker, taker = 1, 2

    bid, _, ask, _ = book.top()
    assert 0 < bid < ask
    resting = book.place_limit(maker, Side.BUY, size, bid, client_id=1, post_only=True)
    assert resting.status == "new" and resting.is_open
    assert book.top()[0] == bid  # joined the touch

    lifted = book.place_limit(taker, Side.BUY, size, ask, client_id=2, post_only=False, tif="IOC")
    assert lifted.status == "filled" and lifted.filled_qty == size
    assert market.account(venue, taker).position(ticker).qty == size

    # an IOC sell at the bid meets the maker's order first (another account's, same price)
    hit = book.place_limit(taker, Side.SELL, size, bid, client_id=3, post_only=False, tif="IOC")
    assert hit.status == "filled" and hit.filled_qty == size
    assert resting.status == "filled"
    assert market.account(venue, maker).position(ticker).qty == size
    assert market.account(venue, taker).position(ticker).qty == 0

    # and a market order against the book, with its worst price well away
    market_order = book.place_market(taker, Side.SELL, size, bid * D("0.99"), client_id=4)
    assert market_order.filled_qty == size


# -- both servers list and serve every market at once ------------------------------------------


@dataclass
class Servers:
    market: SimMarket
    backpack: BackpackServer
    lighter: LighterServer


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    market = SimMarket(seed=5, fill_rate=0.0, faults=FaultPlan("none", seed=5))
    backpack = BackpackServer(market, api_keys={})
    lighter = LighterServer(market, accounts={})
    await backpack.start()
    await lighter.start()
    yield Servers(market, backpack, lighter)
    await lighter.stop()
    await backpack.stop()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_both_servers_list_every_market_with_the_tables_rules(servers: Servers) -> None:
    markets = await get_json(f"{servers.backpack.api_url}api/v1/markets")
    by_symbol = {m["symbol"]: m for m in markets}
    books = (await get_json(f"{servers.lighter.api_url}/api/v1/orderBooks"))["order_books"]
    by_id = {b["market_id"]: b for b in books}
    details = (await get_json(f"{servers.lighter.api_url}/api/v1/orderBookDetails"))[
        "order_book_details"
    ]
    details_by_id = {d["market_id"]: d for d in details}
    assert len(by_symbol) == len(by_id) == len(details_by_id) == len(DEFAULT_TICKERS)

    for ticker, spec in DEFAULT_TICKERS.items():
        listed = by_symbol[spec.backpack.symbol]
        assert listed["baseSymbol"] == ticker and listed["marketType"] == "PERP"
        price, quantity = listed["filters"]["price"], listed["filters"]["quantity"]
        assert D(price["tickSize"]) == spec.backpack.tick
        assert D(quantity["stepSize"]) == spec.backpack.step
        assert D(quantity["minQuantity"]) == spec.backpack.min_qty
        assert D(quantity["maxQuantity"]) == spec.backpack.max_qty

        rules = spec.lighter
        for row in (by_id[rules.market_id], details_by_id[rules.market_id]):
            assert row["symbol"] == ticker
            assert row["supported_size_decimals"] == rules.size_decimals
            assert row["supported_price_decimals"] == rules.price_decimals
            assert D(row["min_base_amount"]) == rules.min_qty
            assert D(row["min_quote_amount"]) == rules.min_quote
        detail = details_by_id[rules.market_id]
        last = D(str(detail["last_trade_price"]))
        assert abs(last / spec.start_price - 1) < D("0.01")


async def test_one_connection_per_venue_streams_every_markets_book(servers: Servers) -> None:
    """One WebSocket per venue subscribed to every market's book: each gets its snapshot
    (Lighter) or depth updates (Backpack) while the market steps."""
    seen_backpack: set[str] = set()
    seen_lighter: set[str] = set()

    async with (
        websockets.connect(servers.backpack.ws_url) as bp,
        websockets.connect(servers.lighter.ws_url) as lt,
    ):
        streams = [f"depth.{spec.backpack.symbol}" for spec in DEFAULT_TICKERS.values()]
        await bp.send(json.dumps({"method": "SUBSCRIBE", "params": streams}))
        for spec in DEFAULT_TICKERS.values():
            channel = f"order_book/{spec.lighter.market_id}"
            await lt.send(json.dumps({"type": "subscribe", "channel": channel}))

        async def read(ws: Any, sink: set[str], key: str) -> None:
            async for raw in ws:
                message = json.loads(raw)
                if key in message:
                    sink.add(str(message[key]))

        readers = [
            asyncio.create_task(read(bp, seen_backpack, "stream")),
            asyncio.create_task(read(lt, seen_lighter, "channel")),
        ]
        try:
            await wait_for(lambda: len(servers.backpack._conns) == 1)
            want_backpack = set(streams)
            want_lighter = {
                f"order_book:{spec.lighter.market_id}" for spec in DEFAULT_TICKERS.values()
            }
            for _ in range(50):
                servers.market.step()
                await asyncio.sleep(0)
                if want_backpack <= seen_backpack and want_lighter <= seen_lighter:
                    break
            await wait_for(lambda: want_backpack <= seen_backpack, 3.0)
            await wait_for(lambda: want_lighter <= seen_lighter, 3.0)
        finally:
            # closed while the readers still drain them (a full receive queue stalls a close)
            await asyncio.gather(bp.close(), lt.close())
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

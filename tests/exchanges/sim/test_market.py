"""The simulated market: reproducibility, matching, positions, book stream and fill model."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchanges.base import Side
from exchanges.sim.faults import FaultPlan
from exchanges.sim.market import (
    DEFAULT_TICKERS,
    NOT_ENOUGH_LIQUIDITY,
    BookDelta,
    MarketParams,
    OrderNotFound,
    OrderUpdate,
    PublicTrade,
    SimMarket,
    SimPosition,
    SimRejected,
    VenueBook,
    WouldCross,
)

D = Decimal
ACCOUNT = 7


def fake_clock() -> Callable[[], int]:
    counter = itertools.count(1_700_000_000_000)
    return lambda: next(counter)


def new_market(seed: int = 3, **kwargs: object) -> SimMarket:
    return SimMarket(seed=seed, clock_ms=fake_clock(), **kwargs)  # type: ignore[arg-type]


def record(book: VenueBook) -> tuple[list[BookDelta], list[OrderUpdate], list[PublicTrade]]:
    deltas: list[BookDelta] = []
    updates: list[OrderUpdate] = []
    trades: list[PublicTrade] = []
    book.on_book(deltas.append)
    book.on_order(updates.append)
    book.on_trade(trades.append)
    return deltas, updates, trades


def apply_delta(local: dict[str, dict[Decimal, Decimal]], delta: BookDelta) -> None:
    for name, levels in (("bids", delta.bids), ("asks", delta.asks)):
        for price, qty in levels:
            if qty == 0:
                local[name].pop(price, None)
            else:
                local[name][price] = qty


# -- rules ----------------------------------------------------------------------------------------


def test_default_tickers_follow_the_venues_rules() -> None:
    btc, eth, sol = DEFAULT_TICKERS["BTC"], DEFAULT_TICKERS["ETH"], DEFAULT_TICKERS["SOL"]
    assert (btc.backpack.symbol, btc.backpack.tick, btc.backpack.step) == (
        "BTC_USDC_PERP",
        D("0.1"),
        D("0.00001"),
    )
    assert btc.backpack.min_qty == D("0.00001")
    assert (eth.backpack.tick, eth.backpack.step) == (D("0.01"), D("0.0001"))
    assert (sol.backpack.tick, sol.backpack.step) == (D("0.01"), D("0.01"))
    assert [
        (s.lighter.market_id, s.lighter.size_decimals, s.lighter.price_decimals)
        for s in (btc, eth, sol)
    ] == [(1, 5, 1), (0, 4, 2), (2, 3, 3)]
    for spec in DEFAULT_TICKERS.values():
        lighter = spec.lighter
        assert lighter.tick == D(1).scaleb(-lighter.price_decimals)
        assert lighter.step == D(1).scaleb(-lighter.size_decimals)
        assert lighter.min_quote == 10
        assert lighter.maker_fee == lighter.taker_fee == 0
        assert (spec.backpack.maker_fee, spec.backpack.taker_fee) == (D("0.0002"), D("0.0005"))


def test_books_are_found_by_symbol_and_market_id() -> None:
    market = new_market()
    assert market.book_by_symbol("backpack", "ETH_USDC_PERP") is market.book("backpack", "ETH")
    assert market.book_by_market_id(1) is market.book("lighter", "BTC")
    assert market.book_by_market_id(99) is None
    with pytest.raises(KeyError):
        market.book("backpack", "ZZZ")


def test_books_start_near_the_start_price_with_a_tight_spread() -> None:
    market = new_market()
    for ticker, spec in DEFAULT_TICKERS.items():
        for venue in ("backpack", "lighter"):
            book = market.book(venue, ticker)  # type: ignore[arg-type]
            bid, bid_qty, ask, ask_qty = book.top()
            assert bid < ask and bid_qty > 0 and ask_qty > 0
            assert abs((bid + ask) / 2 / spec.start_price - 1) < D("0.001")
            bids, asks = book.levels(50)
            assert 20 <= len(bids) <= 50 and 20 <= len(asks) <= 50
    bid, _, ask, _ = market.book("backpack", "BTC").top()
    assert (ask - bid) / D("0.1") in (1, 2)


# -- reproducibility ------------------------------------------------------------------------------


def run_script(seed: int) -> list[object]:
    market = new_market(seed)
    book = market.book("backpack", "BTC")
    lighter = market.book("lighter", "BTC")
    deltas, updates, trades = record(book)
    lighter_deltas, _, _ = record(lighter)
    for i in range(150):
        market.step()
        if i % 20 == 0:
            bid, _, ask, _ = book.top()
            book.place_limit(
                ACCOUNT, Side.BUY, D("0.01"), ask - D("0.1"), client_id=i, post_only=True
            )
            lighter.place_market(ACCOUNT, Side.SELL, D("0.01"), bid * D("0.99"), client_id=i)
    return [deltas, updates, trades, lighter_deltas, market.truth()]


def test_same_seed_and_calls_give_identical_books_trades_and_fills() -> None:
    first, second = run_script(11), run_script(11)
    assert first == second
    assert len(first[0]) > 100 and len(first[2]) > 50  # type: ignore[arg-type]
    assert run_script(12)[0] != first[0]


# -- post-only and resting ------------------------------------------------------------------------


def test_post_only_that_would_cross_is_rejected_and_nothing_is_booked() -> None:
    market = new_market()
    book = market.book("backpack", "BTC")
    deltas, updates, _ = record(book)
    bid, _, ask, _ = book.top()
    sequence = book.sequence
    for side, price in ((Side.BUY, ask), (Side.BUY, ask + 5), (Side.SELL, bid)):
        with pytest.raises(WouldCross):
            book.place_limit(ACCOUNT, side, D("0.001"), price, client_id=1, post_only=True)
    assert book.open_orders(ACCOUNT) == [] and book.orders(ACCOUNT) == []
    assert (deltas, updates, book.sequence) == ([], [], sequence)


def test_post_only_rests_and_shows_in_the_book() -> None:
    market = new_market()
    book = market.book("backpack", "BTC")
    deltas, updates, _ = record(book)
    bid, bid_qty, ask, _ = book.top()
    order = book.place_limit(ACCOUNT, Side.BUY, D("0.5"), bid, client_id=42, post_only=True)
    assert order.status == "new" and order.is_open
    assert [u.kind for u in updates] == ["accepted"]
    assert book.top()[:2] == (bid, bid_qty + D("0.5"))
    assert deltas[-1].bids == [(bid, bid_qty + D("0.5"))]
    book.place_limit(ACCOUNT, Side.SELL, D("0.1"), ask + 50, client_id=43, post_only=True)
    assert (ask + 50, D("0.1")) in book.levels(1000)[1]
    assert book.find_order(ACCOUNT, client_id=42) is order
    assert book.find_order(ACCOUNT, order_id=order.order_id) is order
    assert book.find_order(ACCOUNT + 1, order_id=order.order_id) is None


def test_cancel_removes_the_order_and_a_later_fill_is_refused() -> None:
    market = new_market()
    book = market.book("backpack", "BTC")
    _, updates, _ = record(book)
    bid, bid_qty, _, _ = book.top()
    order = book.place_limit(ACCOUNT, Side.BUY, D("0.2"), bid, client_id=5, post_only=True)
    cancelled = book.cancel(ACCOUNT, client_id=5)
    assert cancelled is order and order.status == "cancelled"
    assert [u.kind for u in updates] == ["accepted", "cancelled"]
    assert book.top()[:2] == (bid, bid_qty)
    with pytest.raises(OrderNotFound):
        book.fill_resting(order.order_id, D("0.1"))
    with pytest.raises(OrderNotFound):
        book.cancel(ACCOUNT, order_id=order.order_id)
    with pytest.raises(OrderNotFound):
        book.cancel(ACCOUNT, order_id=123)


def test_cancel_all_cancels_only_that_accounts_open_orders() -> None:
    market = new_market()
    book = market.book("backpack", "ETH")
    bid, _, ask, _ = book.top()
    mine = [
        book.place_limit(ACCOUNT, Side.BUY, D("0.1"), bid - i, client_id=i, post_only=True)
        for i in range(3)
    ]
    other = book.place_limit(8, Side.SELL, D("0.1"), ask + 1, client_id=1, post_only=True)
    assert book.cancel_all(ACCOUNT) == mine
    assert book.open_orders(ACCOUNT) == [] and book.open_orders(8) == [other]


# -- taking ---------------------------------------------------------------------------------------


def test_ioc_against_a_thin_book_fills_partially_and_expires_the_rest() -> None:
    market = new_market(fill_rate=0)
    book = market.book("lighter", "BTC")
    _, updates, trades = record(book)
    book.set_thin(D("0.01"))
    _, _, ask, _ = book.top()
    assert sum(q for _, q in book.levels()[1]) == D("0.01")
    order = book.place_limit(
        ACCOUNT, Side.BUY, D("0.05"), ask + 100, client_id=9, post_only=False, tif="IOC"
    )
    assert order.status == "expired" and order.expiry_reason == NOT_ENOUGH_LIQUIDITY
    assert order.filled_qty == D("0.01")
    assert book.open_orders(ACCOUNT) == []
    assert [u.kind for u in updates] == ["accepted"] + ["fill"] * (len(updates) - 2) + ["expired"]
    assert sum(u.fill.qty for u in updates if u.fill) == D("0.01")
    assert sum(t.qty for t in trades) == D("0.01")
    assert book.levels()[1] == []  # consumed, and nothing of ours rests
    assert book.top()[0] < ask


def test_market_order_walks_the_book_up_to_its_worst_price() -> None:
    market = new_market()
    book = market.book("lighter", "ETH")
    _, asks = book.levels(50)
    worst = asks[2][0]
    available = sum(q for p, q in asks if p <= worst)
    order = book.place_market(ACCOUNT, Side.BUY, available + 1, worst, client_id=3)
    assert order.filled_qty == available and order.status == "expired"
    assert order.expiry_reason == NOT_ENOUGH_LIQUIDITY
    expected_quote = sum(p * q for p, q in asks if p <= worst)
    assert order.filled_quote == expected_quote
    assert book.top()[2] > worst
    pos = market.account("lighter", ACCOUNT).position("ETH")
    assert pos.qty == available and pos.fees_paid == 0
    assert pos.entry_price * available == pytest.approx(expected_quote)


def test_market_order_fully_filled_within_the_book() -> None:
    market = new_market()
    book = market.book("lighter", "BTC")
    bid, _, _, _ = book.top()
    order = book.place_market(ACCOUNT, Side.SELL, D("0.001"), bid - 50, client_id=1)
    assert order.status == "filled" and order.filled_qty == D("0.001")
    assert market.account("lighter", ACCOUNT).position("BTC").qty == D("-0.001")


def test_thin_book_fault_limits_an_ioc() -> None:
    faults = FaultPlan("none", seed=1)
    market = new_market(faults=faults)
    book = market.book("lighter", "BTC")
    faults.arm("thin_book")
    _, _, ask, _ = book.top()
    order = book.place_market(ACCOUNT, Side.BUY, D("0.01"), ask + 100, client_id=1)
    assert order.filled_qty < D("0.01") and order.status == "expired"
    assert faults.fired["thin_book"] == 1
    again = book.place_market(ACCOUNT, Side.BUY, D("0.01"), ask + 100, client_id=2)
    assert again.status == "filled"


def test_gtc_limit_that_crosses_takes_then_rests() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "SOL")
    book.set_thin(D("1"))
    _, asks = book.levels()
    limit = asks[0][0] + D("0.50")
    order = book.place_limit(ACCOUNT, Side.BUY, D("3"), limit, client_id=1, post_only=False)
    assert order.status == "partially_filled" and order.filled_qty == D("1")
    assert order.filled_quote == sum(p * q for p, q in asks)
    assert book.open_orders(ACCOUNT) == [order]
    assert book.top()[:2] == (limit, D("2"))
    fill = market.account("backpack", ACCOUNT).position("SOL")
    assert fill.qty == 1 and fill.fees_paid == order.filled_quote * D("0.0005")


def test_orders_of_two_accounts_match_each_other() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "BTC")
    _, updates, _ = record(book)
    _, _, ask, _ = book.top()
    maker = book.place_limit(1, Side.SELL, D("0.3"), ask, client_id=1, post_only=True)
    taker = book.place_limit(2, Side.BUY, D("0.1"), ask, client_id=2, post_only=False, tif="IOC")
    # Our resting order was at that price first: it trades before the background size.
    assert taker.status == "filled" and taker.filled_quote == ask * D("0.1")
    assert maker.status == "partially_filled" and maker.filled_qty == D("0.1")
    fills = [u.fill for u in updates if u.fill]
    assert [(f.account, f.is_maker) for f in fills] == [(2, False), (1, True)]
    assert fills[1].fee == fills[1].price * fills[1].qty * D("0.0002")


def test_a_taker_crossing_its_own_resting_order_expires_the_resting_one() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "BTC")
    _, _, ask, _ = book.top()
    mine = book.place_limit(ACCOUNT, Side.SELL, D("0.1"), ask, client_id=1, post_only=True)
    taker = book.place_limit(
        ACCOUNT, Side.BUY, D("0.1"), ask, client_id=2, post_only=False, tif="IOC"
    )
    assert mine.status == "expired" and mine.filled_qty == 0
    assert taker.status == "filled" and taker.filled_quote == ask * D("0.1")


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("venue", "qty", "price_offset", "reason"),
    [
        ("backpack", D("0.001"), D("0.05"), "tick"),
        ("backpack", D("0.000015"), D(0), "step"),
        ("backpack", D("0"), D(0), "qty"),
        ("backpack", D("5000"), D(0), "max_qty"),
        ("lighter", D("0.0001"), D(0), "min_qty"),
        ("lighter", D("0.0002"), D(-60000), "min_quote"),
    ],
)
def test_invalid_orders_are_rejected_with_a_short_reason(
    venue: str, qty: Decimal, price_offset: Decimal, reason: str
) -> None:
    market = new_market()
    book = market.book(venue, "BTC")  # type: ignore[arg-type]
    bid = book.top()[0]
    with pytest.raises(SimRejected) as info:
        book.place_limit(
            ACCOUNT, Side.BUY, qty, bid - 100 + price_offset, client_id=1, post_only=True
        )
    assert info.value.reason == reason
    assert book.orders(ACCOUNT) == []


def test_reduce_only_is_clipped_to_the_position_and_refused_without_one() -> None:
    market = new_market()
    book = market.book("lighter", "SOL")
    bid, _, ask, _ = book.top()
    with pytest.raises(SimRejected, match="reduce_only"):
        book.place_market(ACCOUNT, Side.SELL, D("1"), bid - 5, client_id=1, reduce_only=True)
    book.place_market(ACCOUNT, Side.BUY, D("0.4"), ask + 5, client_id=2)
    with pytest.raises(SimRejected, match="reduce_only"):
        book.place_market(ACCOUNT, Side.BUY, D("1"), ask + 5, client_id=3, reduce_only=True)
    order = book.place_market(ACCOUNT, Side.SELL, D("1"), bid - 5, client_id=4, reduce_only=True)
    assert order.qty == D("0.4") and order.status == "filled"
    assert market.account("lighter", ACCOUNT).position("SOL").qty == 0


# -- control: trade_through, fill_resting, set_mid ------------------------------------------------


def test_trade_through_fills_in_price_priority_up_to_qty() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "BTC")
    _, updates, trades = record(book)
    bid = book.top()[0]
    best = book.place_limit(ACCOUNT, Side.BUY, D("0.3"), bid, client_id=1, post_only=True)
    second = book.place_limit(ACCOUNT, Side.BUY, D("0.3"), bid - 1, client_id=2, post_only=True)
    below = book.place_limit(ACCOUNT, Side.BUY, D("0.3"), bid - 3, client_id=3, post_only=True)
    fills = book.trade_through(bid - 1, D("0.45"))
    assert [(f.order_id, f.qty, f.price) for f in fills] == [
        (best.order_id, D("0.3"), bid),
        (second.order_id, D("0.15"), bid - 1),
    ]
    assert sum(f.qty for f in fills) == D("0.45") and all(f.is_maker for f in fills)
    assert (best.status, second.status, below.status) == ("filled", "partially_filled", "new")
    assert [t.taker_side for t in trades] == [Side.SELL, Side.SELL]
    assert [u.kind for u in updates].count("fill") == 2
    rest = book.trade_through(bid - 2)
    assert [(f.order_id, f.qty) for f in rest] == [(second.order_id, D("0.15"))]
    assert book.open_orders(ACCOUNT) == [below]
    assert market.account("backpack", ACCOUNT).position("BTC").qty == D("0.6")


def test_trade_through_in_several_partial_fills_sums_exactly() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "ETH")
    ask = book.top()[2]
    order = book.place_limit(ACCOUNT, Side.SELL, D("1"), ask + 1, client_id=1, post_only=True)
    parts = [D("0.1"), D("0.25"), D("0.3333"), D("0.3167")]
    fills = [book.trade_through(ask + 1, part)[0] for part in parts]
    assert [f.qty for f in fills] == parts
    assert order.status == "filled" and order.filled_qty == 1
    assert book.trade_through(ask + 100) == []
    assert len({f.trade_id for f in fills}) == 4


def test_fill_resting_partial_then_rest() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "BTC")
    bid = book.top()[0]
    order = book.place_limit(ACCOUNT, Side.BUY, D("0.01"), bid, client_id=1, post_only=True)
    first = book.fill_resting(order.order_id, D("0.004"))
    assert (first.qty, first.price, first.is_maker) == (D("0.004"), bid, True)
    assert order.status == "partially_filled"
    second = book.fill_resting(order.order_id, D("1"))  # more than left: the remainder
    assert second.qty == D("0.006") and order.status == "filled"
    with pytest.raises(OrderNotFound):
        book.fill_resting(order.order_id, D("0.001"))


def test_set_mid_moves_both_books_and_fills_orders_it_moves_through() -> None:
    market = new_market()
    backpack, lighter = market.book("backpack", "BTC"), market.book("lighter", "BTC")
    basis = lighter.top()[0] - backpack.top()[0]
    bid = backpack.top()[0]
    order = backpack.place_limit(ACCOUNT, Side.BUY, D("0.01"), bid, client_id=1, post_only=True)
    market.set_mid("BTC", D("60000"))
    assert order.status == "filled"
    assert abs(backpack.top()[0] - D("60000")) < 1
    assert abs((lighter.top()[0] - backpack.top()[0]) - basis * 60000 / 65000) < 2
    assert market.mid("BTC") == D("60000")


def test_at_fill_rate_zero_resting_orders_never_fill_and_the_book_keeps_clear() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "SOL")
    bid, _, ask, _ = book.top()
    buy = book.place_limit(ACCOUNT, Side.BUY, D("1"), bid, client_id=1, post_only=True)
    sell = book.place_limit(ACCOUNT, Side.SELL, D("1"), ask, client_id=2, post_only=True)
    market.set_mid("SOL", D("140"))
    for _ in range(300):
        market.step()
        top_bid, _, top_ask, _ = book.top()
        assert top_bid < top_ask
        assert top_ask > buy.price and top_bid < sell.price
    assert buy.status == sell.status == "new"


# -- positions ------------------------------------------------------------------------------------


def test_position_open_add_reduce_flip_and_close() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "ETH")
    account = market.account("backpack", ACCOUNT)
    start_collateral = account.collateral
    bid, _, ask, _ = book.top()

    def fill(side: Side, qty: str, price: Decimal) -> None:
        order = book.place_limit(ACCOUNT, side, D(qty), price, client_id=None, post_only=True)
        book.fill_resting(order.order_id, D(qty))

    low, high = bid - 10, ask + 10
    fill(Side.BUY, "1", low)  # open long 1 @ low
    fill(Side.BUY, "3", low - 2)  # add: entry (low + 3(low-2))/4
    pos = account.position("ETH")
    assert pos.qty == 4 and pos.entry_price == low - D("1.5")
    fill(Side.SELL, "1", high)  # reduce 1
    assert pos.qty == 3 and pos.realized_pnl == high - (low - D("1.5"))
    fill(Side.SELL, "5", high + 1)  # close 3, flip to short 2 @ high+1
    assert pos.qty == -2 and pos.entry_price == high + 1
    realized = (high - low + D("1.5")) + 3 * (high + 1 - low + D("1.5"))
    assert pos.realized_pnl == realized
    fill(Side.BUY, "2", bid - 1)  # close the short
    assert pos.qty == 0 and pos.entry_price == 0
    assert pos.realized_pnl == realized + 2 * (high + 1 - (bid - 1))
    notional = low + 3 * (low - 2) + high + 5 * (high + 1) + 2 * (bid - 1)
    assert pos.volume == notional
    assert pos.fees_paid == notional * D("0.0002")
    assert account.collateral == start_collateral + pos.realized_pnl - pos.fees_paid


fill_strategy = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(min_value=1, max_value=500).map(lambda n: Decimal(n) / 100),
        st.integers(min_value=9_000, max_value=11_000).map(lambda n: Decimal(n) / 100),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(fills=fill_strategy, mark=st.integers(min_value=9_000, max_value=11_000))
def test_position_accounting_conserves_pnl(
    fills: list[tuple[Side, Decimal, Decimal]], mark: int
) -> None:
    """Realized + unrealized at any mark equals the cash flow of the trades marked to it."""
    pos = SimPosition()
    cash = Decimal(0)
    for side, qty, price in fills:
        pos.apply(side, qty, price)
        cash -= side.sign * qty * price
    mark_price = Decimal(mark) / 100
    assert pos.qty == sum(side.sign * qty for side, qty, _ in fills)
    assert pos.volume == sum(qty * price for _, qty, price in fills)
    unrealized = pos.qty * (mark_price - pos.entry_price)
    assert abs(pos.realized_pnl + unrealized - (cash + pos.qty * mark_price)) < D("1e-15")
    assert (pos.qty == 0) == (pos.entry_price == 0)


# -- the book stream ------------------------------------------------------------------------------


def test_deltas_are_consecutive_and_rebuild_the_book_exactly() -> None:
    market = new_market(seed=5)
    book = market.book("backpack", "BTC")
    bids, asks = book.levels(100)
    local = {"bids": dict(bids), "asks": dict(asks)}
    deltas, _, _ = record(book)
    last = book.sequence
    for i in range(300):
        market.step()
        if i % 25 == 0:
            bid, _, ask, _ = book.top()
            book.place_limit(
                ACCOUNT, Side.BUY, D("0.01"), ask - D("0.1"), client_id=None, post_only=True
            )
            book.place_market(8, Side.SELL, D("0.5"), bid - 20, client_id=None)
        if i % 60 == 0:
            book.cancel_all(ACCOUNT)
    for delta in deltas:
        assert delta.first_id == last + 1 and delta.last_id >= delta.first_id
        assert delta.last_id - delta.first_id + 1 == len(delta.bids) + len(delta.asks)
        last = delta.last_id
        apply_delta(local, delta)
    assert last == book.sequence
    bids, asks = book.levels(100)
    assert sorted(local["bids"].items(), reverse=True) == bids
    assert sorted(local["asks"].items()) == asks
    # Only changed levels are sent: far fewer than a full book per step.
    assert statistics.mean(len(d.bids) + len(d.asks) for d in deltas) < 30


def test_book_is_never_crossed_and_background_trades_flow() -> None:
    market = new_market(seed=9)
    trades: list[PublicTrade] = []
    for book in market.books():
        book.on_trade(trades.append)
    for _ in range(200):
        market.step()
        for book in market.books():
            bid, bid_qty, ask, ask_qty = book.top()
            assert bid < ask and bid_qty > 0 and ask_qty > 0
    takers = 200 * market.tick_interval * MarketParams().taker_orders_per_s * len(market.books())
    assert len(trades) > takers * 0.8  # each taker order trades at least once
    assert all(t.qty > 0 and t.price > 0 for t in trades)


def test_a_failing_listener_does_not_break_the_market_and_can_unregister() -> None:
    market = new_market()
    book = market.book("backpack", "BTC")
    calls: list[int] = []

    def broken(_: object) -> None:
        calls.append(1)
        raise RuntimeError("listener bug")

    unregister = book.on_book(broken)
    book.on_order(broken)
    book.on_trade(broken)
    good, _, _ = record(book)
    for _ in range(5):
        market.step()
    bid = book.top()[0]
    book.place_limit(ACCOUNT, Side.BUY, D("0.01"), bid, client_id=1, post_only=True)
    assert calls and len(good) >= 5
    before = len(calls)
    unregister()
    book.cancel(ACCOUNT, client_id=1)  # a book change and an order update
    assert len(calls) == before + 1  # only the order listener still fires


def test_order_updates_carry_copies() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "BTC")
    _, updates, _ = record(book)
    bid = book.top()[0]
    order = book.place_limit(ACCOUNT, Side.BUY, D("0.01"), bid, client_id=1, post_only=True)
    book.fill_resting(order.order_id, D("0.004"))
    book.cancel(ACCOUNT, order_id=order.order_id)
    assert [(u.kind, u.order.status, u.order.filled_qty) for u in updates] == [
        ("accepted", "new", 0),
        ("fill", "partially_filled", D("0.004")),
        ("cancelled", "cancelled", D("0.004")),
    ]
    assert updates[1].fill is not None and updates[1].fill.qty == D("0.004")


# -- the fill model -------------------------------------------------------------------------------


@pytest.mark.parametrize("ticker", ["BTC", "ETH", "SOL"])
def test_a_maker_order_at_the_top_typically_fills_within_a_few_seconds(ticker: str) -> None:
    market = new_market(seed=21)
    book = market.book("backpack", ticker)
    tick = book.rules.tick
    qty = book.rules.min_qty * 100
    steps_to_fill = []
    for trial in range(30):
        bid, _, ask, _ = book.top()
        side = Side.BUY if trial % 2 == 0 else Side.SELL
        price = ask - tick if side is Side.BUY else bid + tick  # maker_ticks = 1
        order = book.place_limit(ACCOUNT, side, qty, price, client_id=trial, post_only=True)
        steps = 0
        while order.is_open and steps < 300:
            market.step()
            steps += 1
        if order.is_open:
            book.cancel(ACCOUNT, order_id=order.order_id)
        steps_to_fill.append(steps if order.status == "filled" else 10_000)
    # tick_interval 0.1: "a few seconds" is a few tens of steps.
    assert statistics.median(steps_to_fill) <= 30
    assert sum(s <= 100 for s in steps_to_fill) >= 20


def test_flow_fills_are_sometimes_partial() -> None:
    # A still path: no move trades through the order, only the takers fill it.
    market = new_market(seed=4, params=MarketParams(vol_bps_per_sqrt_s=0.0, basis_sd_bps=0.0))
    book = market.book("backpack", "SOL")
    fills_per_order = []
    for trial in range(20):
        bid = book.top()[0]
        order = book.place_limit(ACCOUNT, Side.BUY, D("40"), bid, client_id=trial, post_only=True)
        for _ in range(300):
            market.step()
            if not order.is_open:
                break
        fills_per_order.append(sum(f.order_id == order.order_id for f in book.fills(ACCOUNT)))
        if order.is_open:
            book.cancel(ACCOUNT, order_id=order.order_id)
    assert sum(n >= 2 for n in fills_per_order) >= 5  # $6000 against takers of $2000 mean


# -- truth, clock, performance --------------------------------------------------------------------


def test_truth_is_json_with_decimal_strings() -> None:
    market = new_market()
    book = market.book("lighter", "ETH")
    bid, _, ask, _ = book.top()
    book.place_limit(ACCOUNT, Side.BUY, D("0.01"), bid - 1, client_id=1, post_only=True)
    book.place_market(ACCOUNT, Side.BUY, D("0.02"), ask + 1, client_id=2)
    truth = json.loads(json.dumps(market.truth()))
    account = truth["venues"]["lighter"]["accounts"][str(ACCOUNT)]
    assert account["positions"]["ETH"]["qty"] == "0.0200"
    assert [o["client_id"] for o in account["open_orders"]] == [1]
    assert account["fills"][0]["qty"] == "0.0200" and account["fill_count"] == 1
    assert truth["venues"]["backpack"]["books"]["BTC"]["symbol"] == "BTC_USDC_PERP"
    assert isinstance(truth["mids"]["BTC"], str)
    assert truth["faults"]["preset"] == "none"


def test_fills_since_filters_by_time() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "BTC")
    bid = book.top()[0]
    order = book.place_limit(ACCOUNT, Side.BUY, D("0.01"), bid, client_id=1, post_only=True)
    first = book.fill_resting(order.order_id, D("0.004"))
    second = book.fill_resting(order.order_id, D("0.006"))
    assert book.fills(ACCOUNT) == [first, second]
    assert book.fills(ACCOUNT, since_ms=second.ts_ms) == [second]
    assert book.fills(ACCOUNT + 1) == []


async def test_start_runs_the_clock_and_stop_ends_it() -> None:
    market = SimMarket(seed=1, tick_interval=0.01)
    five_steps = asyncio.Event()

    def on_delta(_: BookDelta) -> None:
        if market.steps >= 5:
            five_steps.set()

    market.book("backpack", "BTC").on_book(on_delta)
    await market.start()
    await asyncio.wait_for(five_steps.wait(), timeout=2.0)
    await market.stop()
    assert market.steps >= 5
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "sim-market-clock"]


def test_step_and_placement_are_cheap() -> None:
    market = new_market()
    for _ in range(50):
        market.step()
    # CPU time (the server and its client both run in this process): a loaded
    # machine stretches the wall clock, not the work, so the floor holds anyway.
    started = time.process_time()
    for _ in range(200):
        market.step()
    per_step = (time.process_time() - started) / 200
    book = market.book("backpack", "BTC")
    book.on_order(lambda _: None)
    bid = book.top()[0]
    started = time.process_time()
    for i in range(500):
        book.place_limit(ACCOUNT, Side.BUY, D("0.001"), bid - 200, client_id=i, post_only=True)
    per_order = (time.process_time() - started) / 500
    assert per_step < 0.003  # typically ~0.7 ms for 10 tickers x 2 venues
    assert per_order < 0.0002  # typically ~15 µs

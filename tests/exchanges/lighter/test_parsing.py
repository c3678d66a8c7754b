"""Lighter's wire formats -> our value types, on recorded frames: no socket, no venue.

Frames are as the venue (and the simulator) send them: /work/shared/protocols/lighter.md.
"""

from __future__ import annotations

import json
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from exchanges.base import OrderKind, OrderStatus, Side, VenueError
from exchanges.common.orderbook import LIGHTER, BookState, OrderBook
from exchanges.lighter.parsing import (
    account_orders,
    apply_lighter_order_book,
    balance_from_account,
    fill_from_trade,
    frame_kind,
    is_error_frame,
    lighter_status,
    market_from_detail,
    order_from_wire,
    parse_order_update,
    position_from_account,
    position_from_account_all,
    retry_after_s,
    stream_error,
    trade_id,
    ts_ms,
)

D = Decimal

ORDER = {
    "order_index": 281474976710700,
    "client_order_index": 1001,
    "order_id": "281474976710700",
    "client_order_id": "1001",
    "market_index": 1,
    "owner_account_index": 7,
    "initial_base_amount": "0.01000",
    "price": "100050.0",
    "nonce": 12,
    "remaining_base_amount": "0.00000",
    "is_ask": False,
    "filled_base_amount": "0.00400",
    "filled_quote_amount": "400.200000",
    "side": "buy",
    "type": "market",
    "time_in_force": "immediate-or-cancel",
    "reduce_only": False,
    "status": "canceled-not-enough-liquidity",
    "timestamp": 1767225600,
}

ACCOUNT_ORDERS_FRAME = json.dumps(
    {
        "type": "update/account_orders",
        "channel": "account_orders:1",
        "account": 7,
        "nonce": 3,
        "orders": {"1": [ORDER], "2": [dict(ORDER, market_index=2)]},
    }
)

BOOK_SNAPSHOT = json.dumps(
    {
        "type": "subscribed/order_book",
        "channel": "order_book:1",
        "offset": 41,
        "order_book": {
            "code": 0,
            "offset": 41,
            "nonce": 900,
            "begin_nonce": 899,
            "asks": [{"price": "100.10", "size": "1.0000"}, {"price": "100.20", "size": "2.0"}],
            "bids": [{"price": "100.00", "size": "3.0000"}],
        },
    }
)


def _update(begin: int, nonce: int, **sides: list[dict[str, str]]) -> str:
    book = {"code": 0, "offset": 50, "nonce": nonce, "begin_nonce": begin, "asks": [], "bids": []}
    book.update(sides)
    return json.dumps({"type": "update/order_book", "channel": "order_book:1", "order_book": book})


# -- order statuses and orders -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "filled", "status"),
    [
        ("filled", "1", OrderStatus.FILLED),
        ("open", "0", OrderStatus.OPEN),
        ("open", "0.1", OrderStatus.PARTIALLY_FILLED),
        ("pending", "0", OrderStatus.PENDING_NEW),
        ("in-progress", "0", OrderStatus.PENDING_NEW),
        ("canceled-expired", "0", OrderStatus.EXPIRED),
        ("canceled-post-only", "0", OrderStatus.CANCELED),
        ("canceled-too-much-slippage", "0", OrderStatus.CANCELED),
    ],
)
def test_every_lighter_status_maps_to_ours(raw: str, filled: str, status: OrderStatus) -> None:
    assert lighter_status(raw, D(filled)) is status


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown lighter order status"):
        lighter_status("exploded", D(0))


def test_an_account_orders_frame_yields_the_orders_of_our_market_only() -> None:
    kind, message = frame_kind(ACCOUNT_ORDERS_FRAME)
    assert kind == "update/account_orders"
    rows = account_orders(message, 1)
    assert [r["market_index"] for r in rows] == [1]


def test_an_order_update_is_decoded_with_its_fill_price() -> None:
    update = parse_order_update(ORDER)
    assert update.order_index == 281474976710700 and update.client_id == 1001
    assert update.status is OrderStatus.CANCELED and update.raw_status == ORDER["status"]
    assert update.side is Side.BUY and not update.maker
    assert update.filled == D("0.004") and update.venue_ts_ms == 1767225600000
    assert update.fill_price(D("0.004"), D("400.2")) == D("100050")
    assert update.fill_price(D("0.004"), D(0)) == D("100050.0")  # no quote: the limit


def test_a_malformed_order_update_raises_a_parse_error() -> None:
    broken = dict(ORDER)
    del broken["filled_base_amount"]
    with pytest.raises(KeyError):
        parse_order_update(broken)


def test_an_order_row_becomes_an_order() -> None:
    order = order_from_wire(dict(ORDER, time_in_force="post-only", status="open"), "BTC")
    assert order.kind is OrderKind.POST_ONLY and order.status is OrderStatus.PARTIALLY_FILLED
    assert order.order_id == "281474976710700" and order.client_id == 1001
    assert order.qty == D("0.01") and order.filled_qty == D("0.004")


def test_a_malformed_order_row_is_a_venue_error() -> None:
    with pytest.raises(VenueError, match="malformed order"):
        order_from_wire({"order_index": 1}, "BTC")


def test_trade_ids_are_the_order_index_and_its_cumulative_fill() -> None:
    assert trade_id(42, D("0.004"), 5) == "42:0.00400"


def test_timestamps_in_seconds_or_milliseconds_become_milliseconds() -> None:
    assert ts_ms(1767225600) == 1767225600000
    assert ts_ms(1767225600123) == 1767225600123


# -- REST replies (SDK models: attribute access) -------------------------------------------------


def _trade(**fields: Any) -> SimpleNamespace:
    base = {
        "trade_id": 5,
        "size": "0.00300",
        "price": "100000.0",
        "ask_id": 90,
        "bid_id": 91,
        "ask_account_id": 8,
        "bid_account_id": 7,
        "ask_client_id": 0,
        "bid_client_id": 1001,
        "is_maker_ask": True,
        "timestamp": 1767225600123,
    }
    base.update(fields)
    return SimpleNamespace(**base)


def test_a_trade_of_ours_becomes_a_fill_with_the_streams_trade_id() -> None:
    fill = fill_from_trade(_trade(), 7, {91: D("0.001")}, symbol="BTC", size_decimals=5, recv_ns=1)
    assert fill is not None
    assert fill.trade_id == "91:0.00400" and fill.order_id == "91" and fill.client_id == 1001
    assert fill.side is Side.BUY and fill.qty == D("0.003") and not fill.is_maker


def test_a_trade_between_two_other_accounts_is_not_ours() -> None:
    assert fill_from_trade(_trade(), 99, {}, symbol="BTC", size_decimals=5, recv_ns=1) is None


def test_market_rules_position_and_balance_from_the_account_replies() -> None:
    detail = SimpleNamespace(
        symbol="BTC",
        price_decimals=1,
        size_decimals=5,
        min_base_amount="0.00020",
        min_quote_amount="10.000000",
    )
    market = market_from_detail("BTC", 1, detail)
    assert market.tick_size == D("0.1") and market.step_size == D("0.00001")
    assert market.min_qty == D("0.0002") and market.market_id == 1
    account = SimpleNamespace(
        positions=[SimpleNamespace(market_id=1, sign=-1, position="0.01000")],
        total_asset_value="1000.5",
        collateral="990",
        available_balance="900",
    )
    assert position_from_account(account, 1) == D("-0.01")
    assert position_from_account(account, 2) == 0
    balance = balance_from_account(account)
    assert balance.equity == D("1000.5") and balance.available == D("900")


# -- stream frames -------------------------------------------------------------------------------


def test_an_error_frame_has_no_type_and_is_read_as_an_error() -> None:
    frame = '{"error":{"code":30003,"message":"Already Subscribed to : account_orders/1/7"}}'
    kind, message = frame_kind(frame)
    assert kind is None and is_error_frame(message)
    error = stream_error(message)
    assert error.code == 30003 and error.account_related and not error.token_related


def test_a_frame_that_is_not_json_has_no_kind() -> None:
    assert frame_kind("not json") == (None, None)
    assert not is_error_frame(None)


# -- the order book ------------------------------------------------------------------------------


def test_a_snapshot_then_a_chained_update_keep_the_book() -> None:
    book = OrderBook("BTC", LIGHTER)
    assert apply_lighter_order_book(book, BOOK_SNAPSHOT)
    delete_best_ask = _update(900, 901, asks=[{"price": "100.10", "size": "0"}])
    assert apply_lighter_order_book(book, delete_best_ask)
    top = book.top()
    assert top is not None and top.bid == D("100.00") and top.ask == D("100.20")


def test_an_update_that_skips_a_nonce_asks_for_a_resubscription() -> None:
    book = OrderBook("BTC", LIGHTER)
    apply_lighter_order_book(book, BOOK_SNAPSHOT)
    assert not apply_lighter_order_book(book, _update(905, 906))
    assert book.state is BookState.GAP and book.top() is None


def test_a_malformed_book_frame_is_counted_and_marks_a_gap() -> None:
    book = OrderBook("BTC", LIGHTER)
    apply_lighter_order_book(book, BOOK_SNAPSHOT)
    assert not apply_lighter_order_book(book, _update(900, 901, bids=[{"price": "x", "size": "1"}]))
    assert book.malformed == 1 and book.state is BookState.GAP


def test_frames_not_for_the_book_are_ignored() -> None:
    book = OrderBook("BTC", LIGHTER)
    assert apply_lighter_order_book(book, {"type": "ping"})


# An `update/account_all` frame as the simulator sends it after a fill (one market; trades
# shortened), and the venue's shape per its docs: `position` unsigned, `sign` ±1.
ACCOUNT_ALL_UPDATE = (
    '{"type":"update/account_all","channel":"account_all:11","account":11,"positions":{"1":'
    '{"market_id":1,"symbol":"BTC","initial_margin_fraction":"5.00","open_order_count":0,'
    '"pending_order_count":0,"position_tied_order_count":0,"sign":-1,"position":"0.00300",'
    '"avg_entry_price":"100012.3","position_value":"300.036900","unrealized_pnl":"0.000000",'
    '"realized_pnl":"0.000000","liquidation_price":"0","total_funding_paid_out":"0",'
    '"margin_mode":0,"allocated_margin":"0.000000","total_discount":"0","margin_set_flag":0}},'
    '"trades":{"1":[]},"funding_histories":{}}'
)
ACCOUNT_ALL_SNAPSHOT = (
    '{"type":"subscribed/account_all","channel":"account_all:11","account":11,"positions":{'
    '"0":{"market_id":0,"symbol":"ETH","sign":1,"position":"0.0000"},'
    '"1":{"market_id":1,"symbol":"BTC","sign":1,"position":"0.01250"}},'
    '"trades":{},"funding_histories":{}}'
)


def test_an_account_all_update_gives_the_signed_position_of_our_market() -> None:
    kind, message = frame_kind(ACCOUNT_ALL_UPDATE)
    assert kind == "update/account_all"
    assert position_from_account_all(message, 1) == D("-0.003")


def test_an_account_all_snapshot_gives_each_markets_position() -> None:
    _, message = frame_kind(ACCOUNT_ALL_SNAPSHOT)
    assert position_from_account_all(message, 1) == D("0.0125")
    assert position_from_account_all(message, 0) == 0


def test_an_account_all_frame_without_our_market_says_nothing_about_it() -> None:
    _, message = frame_kind(ACCOUNT_ALL_UPDATE)
    assert position_from_account_all(message, 2) is None


@pytest.mark.parametrize(
    "positions",
    [
        [],  # not a map
        {"1": {"sign": 0, "position": "1"}},  # a sign that is not ±1
        {"1": {"sign": 1, "position": "-1"}},  # a signed size
        {"1": {"sign": 1}},  # no size
    ],
)
def test_a_malformed_account_all_frame_raises_a_parse_error(positions: Any) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        position_from_account_all({"positions": positions}, 1)


def test_retry_after_is_read_in_seconds() -> None:
    assert retry_after_s("2") == 2.0
    assert retry_after_s(" 0.5 ") == 0.5
    assert retry_after_s(None) is None
    assert retry_after_s("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert retry_after_s("-1") is None

"""Backpack's wire formats -> our value types, on recorded frames: no socket, no venue.

Every input is a literal frame in the venue's wire format, never one built by the simulator's
encoders (a test double that shares the code under test shares its mistakes):
- ORDER_ACCEPTED is the documented example of /work/shared/protocols/backpack.md, verbatim;
- the other `account.orderUpdate` events, the order objects (`GET api/v1/orders`, integer ms
  `createdAt`; `GET wapi/v1/history/orders`, ISO `createdAt` without a zone) and the fill history
  rows (`GET wapi/v1/history/fills`) are written field by field as protocols/backpack.md (with
  its "Second reading") documents them; the fields the notes do not spell out take their names
  and JSON types from Backpack's official client `backpack-exchange/bpx-api-client`
  (types/src/order.rs `OrderUpdate`, `LimitOrder`; types/src/fill.rs `Fill`).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from exchanges.backpack.parsing import (
    PARSE_ERRORS,
    apply_backpack_depth,
    apply_backpack_snapshot,
    balance_from_collateral,
    fill_from_history,
    frame_parts,
    history_ts_ms,
    is_order_update_kind,
    is_system_trade,
    market_from_wire,
    order_event_from_row,
    order_from_fills,
    order_from_wire,
    parse_order_update,
    position_from_rows,
)
from exchanges.backpack.rest import OrderNotFound, error_from_answer
from exchanges.base import (
    ConfigError,
    OrderKind,
    OrderStatus,
    PostOnlyRejected,
    Side,
    VenueError,
)
from exchanges.common.orderbook import BACKPACK, BookState, OrderBook

D = Decimal
SYMBOL = "BTC_USDC_PERP"

# protocols/backpack.md, `account.orderUpdate`: the documented example, verbatim.
ORDER_ACCEPTED = (
    '{"e":"orderAccepted","E":1694687692980000,"s":"SOL_USDC_PERP","i":"1145758","c":42,'
    '"S":"Ask","o":"LIMIT","f":"GTC","q":"20.03","p":"178.15","X":"New","z":"0","Z":"0",'
    '"t":null,"r":false,"y":true,"O":"USER","T":1694687692989999}'
)
# A resting post-only bid of 0.004 @ 64999.9 (order 7001, client id 1201) takes a maker fill of
# 0.001 (trade 88, fee 2 bps in USDC); `z`/`Z` are cumulative, `T` and `E` are microseconds.
ORDER_FILL = (
    '{"e":"orderFill","E":1764460000400512,"s":"BTC_USDC_PERP","i":"7001","c":1201,'
    '"S":"Bid","o":"LIMIT","f":"GTC","q":"0.004","Q":"259.9996","p":"64999.9",'
    '"X":"PartiallyFilled","z":"0.001","Z":"64.9999","t":88,"l":"0.001","L":"64999.9",'
    '"m":true,"n":"0.013","N":"USDC","V":"RejectTaker","r":false,"y":true,"O":"USER",'
    '"T":1764460000400000}'
)
ORDER_FILL_FRAME = '{"stream":"account.orderUpdate.BTC_USDC_PERP","data":' + ORDER_FILL + "}"
# The same order, cancelled after that fill.
ORDER_CANCELLED = (
    '{"e":"orderCancelled","E":1764460000500512,"s":"BTC_USDC_PERP","i":"7001","c":1201,'
    '"S":"Bid","o":"LIMIT","f":"GTC","q":"0.004","Q":"259.9996","p":"64999.9",'
    '"X":"Cancelled","z":"0.001","Z":"64.9999","t":null,"V":"RejectTaker","r":false,'
    '"y":true,"O":"USER","T":1764460000500000}'
)
# An IOC that found nothing to take: `R` is the expiry reason (orderExpired only).
ORDER_EXPIRED = (
    '{"e":"orderExpired","E":1764460000500512,"s":"BTC_USDC_PERP","i":"7001","c":1201,'
    '"S":"Bid","o":"LIMIT","f":"IOC","q":"0.004","Q":"259.9996","p":"64999.9",'
    '"X":"Expired","R":"ImmediateOrCancel","z":"0","Z":"0","t":null,"V":"RejectTaker",'
    '"r":false,"y":false,"O":"USER","T":1764460000500000}'
)

# `GET api/v1/orders`: one row, the post-only bid above with 0.002 filled.
OPEN_ORDER = (
    '{"orderType":"Limit","id":"7001","clientId":1201,"symbol":"BTC_USDC_PERP","side":"Bid",'
    '"quantity":"0.004","executedQuantity":"0.002","executedQuoteQuantity":"129.9998",'
    '"stopLossTriggerPrice":null,"stopLossLimitPrice":null,"stopLossTriggerBy":null,'
    '"takeProfitTriggerPrice":null,"takeProfitLimitPrice":null,"takeProfitTriggerBy":null,'
    '"price":"64999.9","triggerBy":null,"triggerPrice":null,"triggerQuantity":null,'
    '"triggeredAt":null,"timeInForce":"GTC","relatedOrderId":null,'
    '"selfTradePrevention":"RejectTaker","postOnly":true,"reduceOnly":false,'
    '"status":"PartiallyFilled","createdAt":1764460000000}'
)
# `GET wapi/v1/history/orders`: the IOC above, expired unfilled (`createdAt` ISO, no zone).
HISTORY_ORDER_EXPIRED = (
    '{"orderType":"Limit","id":"7001","clientId":1201,"symbol":"BTC_USDC_PERP","side":"Bid",'
    '"quantity":"0.004","executedQuantity":"0","executedQuoteQuantity":"0",'
    '"stopLossTriggerPrice":null,"stopLossLimitPrice":null,"stopLossTriggerBy":null,'
    '"takeProfitTriggerPrice":null,"takeProfitLimitPrice":null,"takeProfitTriggerBy":null,'
    '"price":"64999.9","triggerBy":null,"triggerPrice":null,"triggerQuantity":null,'
    '"triggeredAt":null,"timeInForce":"IOC","relatedOrderId":null,'
    '"selfTradePrevention":"RejectTaker","postOnly":false,"reduceOnly":false,'
    '"status":"Expired","expiryReason":"ImmediateOrCancel",'
    '"createdAt":"2025-11-29T23:46:40.000"}'
)
# `GET wapi/v1/history/fills`: the fill of ORDER_FILL (`clientId` a string here, `timestamp`
# ISO without a zone).
FILL_ROW = (
    '{"tradeId":88,"orderId":"7001","clientId":"1201","symbol":"BTC_USDC_PERP","side":"Bid",'
    '"price":"64999.9","quantity":"0.001","fee":"0.013","feeSymbol":"USDC","isMaker":true,'
    '"systemOrderType":null,"timestamp":"2025-11-29T23:46:40.400"}'
)


def wire(text: str) -> dict[str, Any]:
    """A recorded frame as the parser receives it: a fresh dict each call, safe to alter."""
    decoded: dict[str, Any] = json.loads(text)
    return decoded


# -- the account stream ---------------------------------------------------------------------------


def test_the_documented_order_accepted_event_is_an_open_order_event() -> None:
    message = json.loads(ORDER_ACCEPTED)

    update = parse_order_update(message, recv_ns=5)

    assert update.fill is None
    event = update.event
    assert (event.venue, event.symbol, event.order_id, event.client_id) == (
        "backpack",
        "SOL_USDC_PERP",
        "1145758",
        42,
    )
    assert event.status is OrderStatus.OPEN and event.filled_qty == 0 and event.recv_ns == 5
    assert update.engine_ms == 1694687692989  # T is in microseconds


def test_an_order_fill_event_gives_the_fill_and_the_order_event() -> None:
    update = parse_order_update(wire(ORDER_FILL), recv_ns=9)

    fill = update.fill
    assert fill is not None
    assert (fill.trade_id, fill.order_id, fill.client_id) == ("88", "7001", 1201)
    assert (fill.side, fill.qty, fill.price, fill.fee) == (
        Side.BUY,
        D("0.001"),
        D("64999.9"),
        D("0.013"),
    )
    assert fill.is_maker and fill.venue_ts_ms == 1_764_460_000_400
    assert update.event.status is OrderStatus.PARTIALLY_FILLED
    assert update.event.filled_qty == D("0.001")


def test_a_cancel_and_an_expiry_carry_their_status_and_reason() -> None:
    cancel = parse_order_update(wire(ORDER_CANCELLED), 0)
    expiry = parse_order_update(wire(ORDER_EXPIRED), 0)

    assert cancel.event.status is OrderStatus.CANCELED and cancel.event.filled_qty == D("0.001")
    assert expiry.event.status is OrderStatus.EXPIRED
    assert expiry.event.reason == "ImmediateOrCancel"


def test_a_fill_event_without_a_trade_id_is_malformed() -> None:
    data = wire(ORDER_FILL)
    for missing in (None, 0):
        data["t"] = missing
        with pytest.raises(PARSE_ERRORS):
            parse_order_update(data, 0)


@pytest.mark.parametrize("field", ["i", "z", "s"])
def test_an_event_missing_a_required_field_is_malformed(field: str) -> None:
    data = wire(ORDER_FILL)
    del data[field]
    with pytest.raises(PARSE_ERRORS):
        parse_order_update(data, 0)


def test_only_order_lifecycle_events_are_order_updates() -> None:
    kinds = ["orderAccepted", "orderFill", "orderCancelled", "orderExpired"]
    assert all(is_order_update_kind(kind) for kind in kinds)
    assert not any(is_order_update_kind(k) for k in ("orderModified", "triggerPlaced", None))


def test_a_frame_splits_into_stream_and_data_and_garbage_is_refused() -> None:
    _, stream, data = frame_parts(ORDER_FILL_FRAME)
    assert stream == f"account.orderUpdate.{SYMBOL}" and isinstance(data, dict)
    _, stream, _ = frame_parts('{"id":null,"error":{"code":4006,"message":"Invalid"}}')
    assert stream is None
    for garbage in ("{not json", "[1, 2]"):
        with pytest.raises(ValueError):
            frame_parts(garbage)


# -- REST objects ---------------------------------------------------------------------------------


def test_an_order_object_becomes_an_order() -> None:
    raw = wire(OPEN_ORDER)

    order = order_from_wire(raw)

    assert (order.order_id, order.client_id, order.side) == ("7001", 1201, Side.BUY)
    assert (order.qty, order.price, order.filled_qty) == (D("0.004"), D("64999.9"), D("0.002"))
    assert order.kind is OrderKind.POST_ONLY and order.status is OrderStatus.PARTIALLY_FILLED


def test_an_ioc_order_from_history_is_a_hedge_kind_with_its_expiry_reason() -> None:
    raw = wire(HISTORY_ORDER_EXPIRED)

    order = order_from_wire(raw)
    event = order_event_from_row(raw, recv_ns=1)

    assert order.kind is OrderKind.IOC and order.status is OrderStatus.EXPIRED
    assert event.status is OrderStatus.EXPIRED and event.reason == "ImmediateOrCancel"
    assert event.order_id == "7001" and event.client_id == 1201


def test_a_malformed_order_object_is_a_venue_error() -> None:
    raw = wire(OPEN_ORDER)
    raw["status"] = "Sideways"
    with pytest.raises(VenueError, match="malformed order"):
        order_from_wire(raw)


def test_a_fill_history_row_becomes_a_fill_with_its_iso_timestamp() -> None:
    row = wire(FILL_ROW)

    fill = fill_from_history(row, recv_ns=3)

    assert (fill.trade_id, fill.order_id, fill.client_id) == ("88", "7001", 1201)
    assert fill.venue_ts_ms == 1_764_460_000_400 and fill.recv_ns == 3


def test_system_fills_are_not_fills_of_ours() -> None:
    row = wire(FILL_ROW)
    for trade_id in (None, 0, "0", ""):
        row["tradeId"] = trade_id
        assert is_system_trade(trade_id)
        with pytest.raises(ValueError, match="system fill"):
            fill_from_history(row, 0)
    assert not is_system_trade(88)


def test_an_order_known_only_from_its_fills_is_filled_by_their_sum() -> None:
    fills = [fill_from_history({**wire(FILL_ROW), "tradeId": t}, 0) for t in (1, 2)]

    order = order_from_fills(fills, OrderKind.IOC)

    assert order.status is OrderStatus.FILLED and order.filled_qty == order.qty == D("0.002")
    assert order.order_id == "7001" and order.client_id == 1201


def test_history_timestamps_are_iso_or_epoch_milliseconds() -> None:
    assert history_ts_ms("2025-11-30T00:00:00.250") == 1_764_460_800_250
    assert history_ts_ms(1_764_460_800_250) == history_ts_ms("1764460800250") == 1_764_460_800_250


def test_market_rules_come_from_the_filters_and_a_closed_market_is_refused() -> None:
    raw: dict[str, Any] = {
        "symbol": SYMBOL,
        "baseSymbol": "BTC",
        "quoteSymbol": "USDC",
        "marketType": "PERP",
        "orderBookState": "Open",
        "filters": {
            "price": {"minPrice": "0.1", "maxPrice": "999999", "tickSize": "0.1"},
            "quantity": {"minQuantity": "0.0001", "maxQuantity": "1000", "stepSize": "0.0001"},
        },
    }
    market = market_from_wire(raw, "BTC")
    assert (market.tick_size, market.step_size, market.min_qty) == (
        D("0.1"),
        D("0.0001"),
        D("0.0001"),
    )
    with pytest.raises(ConfigError, match="not trading"):
        market_from_wire({**raw, "orderBookState": "Closed"}, "BTC")
    with pytest.raises(VenueError, match="malformed rules"):
        market_from_wire({**raw, "filters": {}}, "BTC")


def test_position_and_collateral() -> None:
    rows = [
        {"symbol": "ETH_USDC_PERP", "netQuantity": "2"},
        {"symbol": SYMBOL, "netQuantity": "-0.004", "entryPrice": "65000"},
    ]
    assert position_from_rows(rows, SYMBOL) == D("-0.004")
    assert position_from_rows([], SYMBOL) == 0
    balance = balance_from_collateral(
        {"netEquity": "1000.5", "netEquityAvailable": "900", "pnlUnrealized": "-1.2"}
    )
    assert (balance.equity, balance.available) == (D("1000.5"), D("900"))
    assert balance.extra == {"pnlUnrealized": "-1.2"}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            400,
            {"code": "INVALID_ORDER", "message": "Order would immediately match and take"},
            PostOnlyRejected,
        ),
        (404, {"code": "RESOURCE_NOT_FOUND", "message": "Not Found"}, OrderNotFound),
        (400, {"code": "RESOURCE_NOT_FOUND", "message": "Not Found"}, OrderNotFound),
    ],
)
def test_error_bodies_become_typed_errors(status: int, body: object, kind: type) -> None:
    assert isinstance(error_from_answer(status, body), kind)


def test_429_and_5xx_are_retryable_and_a_success_is_no_error() -> None:
    limited = error_from_answer(429, {"code": "TOO_MANY_REQUESTS", "message": "Too many"})
    down = error_from_answer(503, "maintenance")
    assert limited is not None and limited.retryable
    assert down is not None and down.retryable and down.status == 503
    assert error_from_answer(200, {"id": "1", "status": "New"}) is None
    assert error_from_answer(202, None) is None


# -- the book ---------------------------------------------------------------------------------


def depth_event(first: int, last: int, bids: list[list[str]], asks: list[list[str]]) -> str:
    data = {"e": "depth", "E": 1, "s": SYMBOL, "a": asks, "b": bids, "U": first, "u": last, "T": 1}
    return json.dumps({"stream": f"depth.{SYMBOL}", "data": data})


def test_depth_frames_buffered_before_the_snapshot_join_it() -> None:
    book = OrderBook(SYMBOL, BACKPACK)
    assert apply_backpack_depth(book, depth_event(99, 101, [["64999.9", "2"]], []))
    snapshot = {
        "asks": [["65000.1", "1"], ["65000.2", "3"]],
        "bids": [["64999.8", "4"], ["64999.9", "1"]],  # ascending, as the docs' sample lists
        "lastUpdateId": "100",
        "timestamp": 1_764_460_800_000_000,
    }

    assert apply_backpack_snapshot(book, snapshot)

    top = book.top()
    assert top is not None and (top.bid, top.bid_qty, top.ask) == (
        D("64999.9"),
        D("2"),
        D("65000.1"),
    )
    assert apply_backpack_depth(book, depth_event(102, 102, [], [["65000.1", "0"]]))
    top = book.top()
    assert top is not None and top.ask == D("65000.2")


def test_a_gap_or_a_malformed_depth_frame_asks_for_a_resync() -> None:
    book = OrderBook(SYMBOL, BACKPACK)
    apply_backpack_snapshot(book, {"asks": [["2", "1"]], "bids": [["1", "1"]], "lastUpdateId": "5"})
    assert not apply_backpack_depth(book, depth_event(8, 9, [["1", "2"]], []))  # 6..7 missing
    assert book.state is BookState.GAP

    fresh = OrderBook(SYMBOL, BACKPACK)
    apply_backpack_snapshot(
        fresh, {"asks": [["2", "1"]], "bids": [["1", "1"]], "lastUpdateId": "5"}
    )
    assert not apply_backpack_depth(fresh, depth_event(6, 6, [["NaN", "1"]], []))
    assert fresh.malformed == 1

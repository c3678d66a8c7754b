"""Backpack's wire formats -> our value types: pure functions, no I/O, no state.

Each takes what the venue sent (a decoded JSON object; the depth functions also take the raw
frame text) and returns a value type of `exchanges.base`, or raises one of `PARSE_ERRORS` (or
`VenueError`/`ConfigError` where the caller acts on those). The venue's words and fields are
in ../shared/protocols/backpack.md; tests run these on recorded frames
(tests/exchanges/backpack/test_parsing.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from exchanges.backpack.constants import NOT_TRADING_STATES, VENUE
from exchanges.base import (
    Balance,
    ConfigError,
    Fill,
    Market,
    Order,
    OrderEvent,
    OrderKind,
    OrderStatus,
    Side,
    VenueError,
)
from exchanges.common.orderbook import (
    Level,
    OrderBook,
    checked_levels,
    loads_message,
    malformed_message,
)

PARSE_ERRORS = (KeyError, TypeError, ValueError, InvalidOperation, AttributeError)
_BOOK_ERRORS = (*PARSE_ERRORS, IndexError)

STATUS: dict[str, OrderStatus] = {
    "New": OrderStatus.OPEN,
    "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELED,
    "Expired": OrderStatus.EXPIRED,
    "TriggerPending": OrderStatus.OPEN,
    "TriggerFailed": OrderStatus.REJECTED,
}
# `account.orderUpdate` events that carry a status of their own (orderFill carries `X`).
EVENT_STATUS: dict[str, OrderStatus] = {
    "orderAccepted": OrderStatus.OPEN,
    "orderCancelled": OrderStatus.CANCELED,
    "orderExpired": OrderStatus.EXPIRED,
}
ORDER_FILL = "orderFill"

# -- scalars ------------------------------------------------------------------------------------


def side(wire: object) -> Side:
    if wire == "Bid":
        return Side.BUY
    if wire == "Ask":
        return Side.SELL
    raise ValueError(f"unknown side {wire!r}")


def wire_side(order_side: Side) -> str:
    return "Bid" if order_side is Side.BUY else "Ask"


def dec(value: object) -> Decimal:
    result = Decimal(str(value))
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def fmt(value: Decimal) -> str:
    """A decimal as the venue wants it: plain digits, no exponent, no trailing zeros."""
    return "0" if value == 0 else format(value.normalize(), "f")


def client_id(value: object) -> int | None:
    return None if value is None or value == "" else int(str(value))


def is_system_trade(trade_id: object) -> bool:
    """Fills the venue makes itself (backstop liquidation, ADL, ...) carry a null or 0 trade id:
    not an id at all, never a dedupe key."""
    return trade_id is None or str(trade_id) in ("", "0")


def history_ts_ms(value: object) -> int:
    """History timestamps come as ISO-8601 (UTC, no zone) or as epoch milliseconds."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def created_ms(raw: Mapping[str, Any]) -> int:
    """An order row's creation time in ms; 0 when missing or unreadable."""
    created = raw.get("createdAt")
    if created is None:
        return 0
    with contextlib.suppress(*PARSE_ERRORS):
        return history_ts_ms(created)
    return 0


def trade_order(trade_id: str) -> int:
    """Sort key of a trade id (numeric on Backpack)."""
    return int(trade_id) if trade_id.isdigit() else 0


# -- markets and account ------------------------------------------------------------------------


def market_from_wire(raw: Mapping[str, Any], ticker: str) -> Market:
    """One row of `GET api/v1/markets`. ConfigError when the market does not trade."""
    symbol = str(raw.get("symbol"))
    state = raw.get("orderBookState", "Open")
    if state in NOT_TRADING_STATES:
        raise ConfigError(f"Backpack market {symbol} is not trading (state {state})")
    try:
        filters = raw["filters"]
        return Market(
            venue=VENUE,
            ticker=ticker,
            symbol=symbol,
            tick_size=dec(filters["price"]["tickSize"]),
            step_size=dec(filters["quantity"]["stepSize"]),
            min_qty=dec(filters["quantity"]["minQuantity"]),
            max_qty=_optional_dec(filters["quantity"].get("maxQuantity")),
        )
    except PARSE_ERRORS as exc:
        raise VenueError(f"backpack market {symbol}: malformed rules: {exc}") from exc


def _optional_dec(raw: object) -> Decimal | None:
    return None if raw is None else dec(raw)


def position_from_rows(rows: object, symbol: str) -> Decimal:
    """`GET api/v1/position` -> the signed net quantity of `symbol` (0 when none)."""
    for row in rows if isinstance(rows, list) else []:
        if row.get("symbol") == symbol:
            return dec(row["netQuantity"])
    return Decimal(0)


def balance_from_collateral(raw: Mapping[str, Any]) -> Balance:
    """`GET api/v1/capital/collateral` -> Balance (VenueError when malformed)."""
    try:
        return Balance(
            venue=VENUE,
            equity=dec(raw["netEquity"]),
            available=dec(raw["netEquityAvailable"]),
            extra={"pnlUnrealized": str(raw.get("pnlUnrealized", "0"))},
        )
    except PARSE_ERRORS as exc:
        raise VenueError(f"backpack collateral: malformed answer: {exc}") from exc


# -- orders and fills ---------------------------------------------------------------------------


def order_from_wire(raw: Mapping[str, Any], kind: OrderKind | None = None) -> Order:
    """An order object (placement reply, order query, open orders, order history)."""
    try:
        if kind is None:
            tif = raw.get("timeInForce")
            kind = OrderKind.IOC if tif in ("IOC", "FOK") else OrderKind.POST_ONLY
        price = raw.get("price")
        return Order(
            venue=VENUE,
            symbol=str(raw["symbol"]),
            client_id=client_id(raw.get("clientId")) or 0,
            side=side(raw["side"]),
            qty=dec(raw["quantity"]),
            price=dec(price) if price is not None else Decimal(0),
            kind=kind,
            status=STATUS[str(raw["status"])],
            order_id=str(raw["id"]),
            filled_qty=dec(raw.get("executedQuantity") or 0),
        )
    except PARSE_ERRORS as exc:
        raise VenueError(f"backpack: malformed order {str(raw)[:200]}: {exc}") from exc


def order_event_from_row(raw: Mapping[str, Any], recv_ns: int) -> OrderEvent:
    """An order object as the event it stands for (recovery after a reconnect)."""
    order = order_from_wire(raw)
    return OrderEvent(
        VENUE,
        order.symbol,
        order.order_id or "",
        order.client_id or None,
        order.status,
        order.filled_qty,
        str(raw.get("expiryReason") or ""),
        recv_ns,
    )


def order_from_fills(fills: Sequence[Fill], kind: OrderKind) -> Order:
    """An order known only from its fills (it traded at once, before history showed it)."""
    first = fills[0]
    filled = sum((f.qty for f in fills), Decimal(0))
    return Order(
        venue=VENUE,
        symbol=first.symbol,
        client_id=first.client_id or 0,
        side=first.side,
        qty=filled,
        price=first.price,
        kind=kind,
        status=OrderStatus.FILLED,
        order_id=first.order_id,
        filled_qty=filled,
    )


def fill_from_history(row: object, recv_ns: int) -> Fill:
    """One row of `GET wapi/v1/history/fills` (not a system fill: see `is_system_trade`)."""
    if not isinstance(row, dict):
        raise TypeError("fill row is not an object")
    if is_system_trade(row.get("tradeId")):
        raise ValueError(f"system fill without a trade id ({row.get('tradeId')!r})")
    return Fill(
        venue=VENUE,
        symbol=str(row["symbol"]),
        trade_id=str(row["tradeId"]),
        order_id=str(row["orderId"]),
        client_id=client_id(row.get("clientId")),
        side=side(row["side"]),
        qty=dec(row["quantity"]),
        price=dec(row["price"]),
        fee=dec(row.get("fee") or 0),
        is_maker=bool(row.get("isMaker")),
        venue_ts_ms=history_ts_ms(row["timestamp"]),
        recv_ns=recv_ns,
    )


# -- the account stream -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One `account.orderUpdate` event: its order event, the fill it carries (orderFill), and
    the engine time in ms."""

    event: OrderEvent
    fill: Fill | None
    engine_ms: int


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    """One `account.positionUpdate` event: the symbol, its signed net quantity (`q`; 0 when
    the position closed) and the engine time in ms."""

    symbol: str
    net_qty: Decimal
    engine_ms: int


def parse_position_update(data: Mapping[str, Any]) -> PositionUpdate:
    """A `positionOpened`/`positionAdjusted`/`positionClosed` event, or the snapshot sent on
    subscribe (no `e`). Raises one of PARSE_ERRORS when malformed."""
    return PositionUpdate(
        symbol=str(data["s"]),
        net_qty=dec(data["q"]),
        engine_ms=int(data.get("T") or data.get("E") or 0) // 1000,
    )


def frame_parts(frame: str | bytes) -> tuple[dict[str, Any], str | None, object]:
    """A WS frame -> (message, stream, data). ValueError when it is not a JSON object."""
    message = json.loads(frame)
    if not isinstance(message, dict):
        raise ValueError("frame is not a JSON object")
    return message, message.get("stream"), message.get("data")


def is_order_update_kind(kind: object) -> bool:
    return kind == ORDER_FILL or kind in EVENT_STATUS


def parse_order_update(data: Mapping[str, Any], recv_ns: int) -> OrderUpdate:
    """An `orderFill`/`orderAccepted`/`orderCancelled`/`orderExpired` event (check the kind
    with `is_order_update_kind` first). Raises one of PARSE_ERRORS when malformed."""
    kind = str(data.get("e"))
    symbol = str(data["s"])
    order_id = str(data["i"])
    cid = client_id(data.get("c"))
    filled = dec(data["z"])
    engine_ms = int(data.get("T") or data.get("E") or 0) // 1000
    fill: Fill | None = None
    if kind == ORDER_FILL:
        fill = _fill_from_event(data, symbol, order_id, cid, engine_ms, recv_ns)
        status = STATUS[str(data["X"])]
    else:
        status = EVENT_STATUS[kind]
    reason = str(data.get("R") or "")
    event = OrderEvent(VENUE, symbol, order_id, cid, status, filled, reason, recv_ns)
    return OrderUpdate(event, fill, engine_ms)


def _fill_from_event(
    data: Mapping[str, Any],
    symbol: str,
    order_id: str,
    cid: int | None,
    engine_ms: int,
    recv_ns: int,
) -> Fill:
    if is_system_trade(data["t"]):
        raise ValueError(f"fill without a trade id ({data['t']!r})")
    fill = Fill(
        venue=VENUE,
        symbol=symbol,
        trade_id=str(data["t"]),
        order_id=order_id,
        client_id=cid,
        side=side(data["S"]),
        qty=dec(data["l"]),
        price=dec(data["L"]),
        fee=dec(data.get("n") or 0),
        is_maker=bool(data.get("m")),
        venue_ts_ms=engine_ms,
        recv_ns=recv_ns,
    )
    if fill.qty <= 0 or fill.price <= 0:
        raise ValueError("fill without a positive quantity and price")
    return fill


# -- the book -----------------------------------------------------------------------------------


def parse_pair_levels(raw: Iterable[Sequence[str]]) -> list[Level]:
    """Backpack levels `[["price", "qty"], ...]` -> [(Decimal, Decimal)]."""
    return checked_levels([(Decimal(p), Decimal(q)) for p, q in raw])


def apply_backpack_depth(book: OrderBook, message: str | bytes | Mapping[str, Any]) -> bool:
    """Apply one `depth.<symbol>` event (raw frame text, the `{stream, data}` envelope, or the
    data dict). Absolute levels, quantity "0" deletes; it joins the book when
    `U <= seq + 1 <= u`. False means resync now (fresh REST snapshot). A malformed event is
    logged, counted and treated as a gap."""
    try:
        data = loads_message(message)
        if "stream" in data:
            data = data["data"]
        bids = parse_pair_levels(data["b"])
        asks = parse_pair_levels(data["a"])
        first = int(data["U"])
        last = int(data["u"])
    except _BOOK_ERRORS as error:
        return malformed_message(book, error)
    return book.apply_delta(bids, asks, first, last)


def apply_backpack_snapshot(book: OrderBook, depth: str | bytes | Mapping[str, Any]) -> bool:
    """Seed the book from `GET api/v1/depth` (`lastUpdateId` is the sequence). True when
    SYNCED; False means fetch another snapshot."""
    try:
        data = loads_message(depth)
        bids = parse_pair_levels(data["bids"])
        asks = parse_pair_levels(data["asks"])
        seq = int(data["lastUpdateId"])
    except _BOOK_ERRORS as error:
        return malformed_message(book, error)
    return book.apply_snapshot(bids, asks, seq)

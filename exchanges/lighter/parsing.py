"""Lighter's wire formats -> our value types: pure functions, no I/O, no venue state.

Each takes a decoded frame or REST reply (a dict, or an SDK model for REST) and returns a value
from `exchanges/base.py`, or raises one of `PARSE_ERRORS` (or VenueError where the caller
cannot skip the item). Tested on recorded frames in tests/exchanges/lighter/test_parsing.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exchanges.base import (
    Balance,
    FeeRates,
    Fill,
    Market,
    Order,
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
from exchanges.lighter.constants import (
    ORDER_BOOK_SNAPSHOT,
    ORDER_BOOK_UPDATE,
    PARSE_ERRORS,
    TIF_WIRE_IOC,
    TIF_WIRE_POST_ONLY,
    VENUE,
)
from exchanges.lighter.scaling import fmt

# The names exchanges/orderbook.py used for these.
LIGHTER_SNAPSHOT = ORDER_BOOK_SNAPSHOT
LIGHTER_UPDATE = ORDER_BOOK_UPDATE


# -- orders -----------------------------------------------------------------------------------


def lighter_status(raw: str, filled: Decimal) -> OrderStatus:
    """Map Lighter's lower-case order status to ours."""
    if raw == "filled":
        return OrderStatus.FILLED
    if raw == "open":
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.OPEN
    if raw in ("pending", "in-progress"):
        return OrderStatus.PENDING_NEW
    if raw == "canceled-expired":
        return OrderStatus.EXPIRED
    if raw.startswith("canceled"):
        return OrderStatus.CANCELED
    raise ValueError(f"unknown lighter order status {raw!r}")


def ts_ms(value: int) -> int:
    """Lighter timestamps in seconds or milliseconds -> milliseconds."""
    return value * 1000 if 0 < value < 100_000_000_000 else value


def trade_id(order_index: int, filled: Decimal, size_decimals: int) -> str:
    """Lighter gives no trade id in account_orders: ours is the order index and its
    cumulative filled amount. Stream and REST backfill build it the same way."""
    return f"{order_index}:{fmt(filled, size_decimals)}"


def order_from_wire(raw: Mapping[str, Any], symbol: str) -> Order:
    """An order dict (account_orders frame, accountActiveOrders/InactiveOrders row)."""
    try:
        filled = Decimal(str(raw["filled_base_amount"]))
        tif = raw.get("time_in_force")
        return Order(
            venue=VENUE,
            symbol=symbol,
            client_id=int(raw.get("client_order_index") or 0),
            side=Side.SELL if raw["is_ask"] else Side.BUY,
            qty=Decimal(str(raw["initial_base_amount"])),
            price=Decimal(str(raw["price"])),
            kind=OrderKind.IOC if tif == TIF_WIRE_IOC else OrderKind.POST_ONLY,
            status=lighter_status(str(raw["status"]), filled),
            order_id=str(raw["order_index"]),
            filled_qty=filled,
        )
    except PARSE_ERRORS as exc:
        raise VenueError(f"lighter: malformed order {str(raw)[:200]}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One snapshot of an order: what the stream and REST say about it, decoded."""

    market_index: int
    order_index: int
    client_id: int  # 0: none
    filled: Decimal  # cumulative base
    filled_quote: Decimal  # cumulative quote
    raw_status: str
    status: OrderStatus
    side: Side
    venue_ts_ms: int
    maker: bool
    price: Decimal  # the limit (or worst) price

    def fill_price(self, delta: Decimal, quote_delta: Decimal) -> Decimal:
        """The average price of a fill of `delta` worth `quote_delta`."""
        return quote_delta / delta if quote_delta > 0 else self.price


def parse_order_update(raw: Mapping[str, Any]) -> OrderUpdate:
    """An order dict -> OrderUpdate; raises one of PARSE_ERRORS when malformed."""
    filled = Decimal(str(raw["filled_base_amount"]))
    raw_status = str(raw["status"])
    return OrderUpdate(
        market_index=int(raw["market_index"]),
        order_index=int(raw["order_index"]),
        client_id=int(raw.get("client_order_index") or 0),
        filled=filled,
        filled_quote=Decimal(str(raw["filled_quote_amount"])),
        raw_status=raw_status,
        status=lighter_status(raw_status, filled),
        side=Side.SELL if raw["is_ask"] else Side.BUY,
        venue_ts_ms=ts_ms(int(raw.get("timestamp") or 0)),
        maker=raw.get("time_in_force") == TIF_WIRE_POST_ONLY,
        price=Decimal(str(raw["price"])),
    )


# -- markets and account (REST, SDK models) ----------------------------------------------------


def market_from_detail(ticker: str, market_id: int, detail: Any) -> Market:
    """orderBookDetails entry -> Market; VenueError when malformed."""
    try:
        price_decimals = int(detail.price_decimals)
        size_decimals = int(detail.size_decimals)
        return Market(
            venue=VENUE,
            ticker=ticker,
            symbol=str(detail.symbol),
            tick_size=Decimal(1).scaleb(-price_decimals),
            step_size=Decimal(1).scaleb(-size_decimals),
            min_qty=Decimal(str(detail.min_base_amount)),
            min_notional=Decimal(str(detail.min_quote_amount)),
            market_id=market_id,
        )
    except PARSE_ERRORS as exc:
        raise VenueError(f"lighter market {ticker}: malformed rules: {exc}") from exc


def position_from_account(entry: Any, market_id: int) -> Decimal:
    """Signed position of one market: Lighter gives |size| and a sign of ±1."""
    for pos in entry.positions or []:
        if int(pos.market_id) == market_id:
            try:
                return int(pos.sign) * Decimal(str(pos.position))
            except PARSE_ERRORS as exc:
                raise VenueError(f"lighter position: malformed {pos}: {exc}") from exc
    return Decimal(0)


def balance_from_account(entry: Any) -> Balance:
    try:
        return Balance(
            venue=VENUE,
            equity=Decimal(str(entry.total_asset_value or entry.collateral)),
            available=Decimal(str(entry.available_balance)),
            extra={"collateral": str(entry.collateral)},
        )
    except PARSE_ERRORS as exc:
        raise VenueError(f"lighter account: malformed balance: {exc}") from exc


NO_FEES = FeeRates()


def fill_from_trade(
    trade: Any,
    account: int,
    filled: Mapping[int, Decimal],
    *,
    symbol: str,
    size_decimals: int,
    recv_ns: int,
    fees: FeeRates = NO_FEES,
) -> Fill | None:
    """One `trades` row -> our Fill (None when the account is on neither side).
    `filled` holds each order's cumulative amount before this trade: the trade id is the
    order index and its cumulative filled amount after it, as the stream builds it."""
    is_ask = int(trade.ask_account_id) == account
    if not is_ask and int(trade.bid_account_id) != account:
        return None
    order_index = int(trade.ask_id if is_ask else trade.bid_id)
    qty = Decimal(str(trade.size))
    client = int(trade.ask_client_id if is_ask else trade.bid_client_id)
    price = Decimal(str(trade.price))
    is_maker = bool(trade.is_maker_ask) == is_ask
    return Fill(
        venue=VENUE,
        symbol=symbol,
        trade_id=trade_id(order_index, filled.get(order_index, Decimal(0)) + qty, size_decimals),
        order_id=str(order_index),
        client_id=client or None,
        side=Side.SELL if is_ask else Side.BUY,
        qty=qty,
        price=price,
        fee=fees.fee(price, qty, is_maker=is_maker),
        is_maker=is_maker,
        venue_ts_ms=ts_ms(int(trade.timestamp)),
        recv_ns=recv_ns,
    )


def retry_after_s(value: str | None) -> float | None:
    """`Retry-After` in seconds (the delay form; an HTTP date is not used by the venue)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


# -- stream frames -------------------------------------------------------------------------------


def frame_kind(frame: str | bytes) -> tuple[str | None, Any]:
    """(type, decoded message) of a WS frame; type None when it has none (an error frame is
    `{"error": {...}}` with no type) or the frame is not JSON."""
    try:
        message = json.loads(frame)
        return message.get("type"), message
    except (ValueError, AttributeError):
        return None, None


def is_error_frame(message: Any) -> bool:
    return isinstance(message, dict) and "error" in message


@dataclass(frozen=True, slots=True)
class StreamError:
    code: int | None
    text: str
    channel: str

    @property
    def account_related(self) -> bool:
        lowered = self.text.lower()
        return "account" in self.channel or "account" in lowered or "auth" in lowered

    @property
    def token_related(self) -> bool:
        return "token" in self.text.lower()


def stream_error(message: Mapping[str, Any]) -> StreamError:
    error = message.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    text = str(error.get("message", error)) if isinstance(error, dict) else str(error)
    return StreamError(code, text, str(message.get("channel") or ""))


def account_orders(message: Mapping[str, Any], market_id: int) -> list[dict[str, Any]]:
    """The order dicts of one market in an account_orders frame; raises one of PARSE_ERRORS
    when the frame has no `orders` map."""
    orders = message["orders"].get(str(market_id), [])
    return [o for o in orders if isinstance(o, dict)] if isinstance(orders, list) else []


def position_from_account_all(message: Mapping[str, Any], market_id: int) -> Decimal | None:
    """The signed position of one market in an `account_all` frame: `positions` maps market
    ids (as strings) to entries with `position` unsigned and `sign` ±1. None when the frame
    does not mention the market (an update carries only the markets that changed; in a
    snapshot, absent means flat). Raises one of PARSE_ERRORS when malformed."""
    positions = message["positions"]
    if not isinstance(positions, Mapping):
        raise TypeError(f"positions is a {type(positions).__name__}, not a map")
    entry = positions.get(str(market_id))
    if entry is None:
        return None
    size = Decimal(str(entry["position"]))
    sign = int(entry["sign"])
    if sign not in (-1, 1) or size < 0:
        raise ValueError(f"position {size} with sign {sign}")
    return -size if sign < 0 else size


# -- order book ----------------------------------------------------------------------------------


def parse_dict_levels(raw: Iterable[Mapping[str, str]]) -> list[Level]:
    """Lighter levels `[{"price": "...", "size": "..."}, ...]` -> [(Decimal, Decimal)]."""
    return checked_levels([(Decimal(lv["price"]), Decimal(lv["size"])) for lv in raw])


def apply_lighter_order_book(book: OrderBook, message: str | bytes | Mapping[str, Any]) -> bool:
    """Apply one Lighter `order_book` message (raw frame text or parsed dict).

    `subscribed/order_book` is the snapshot (sequence = `order_book.nonce`); `update/order_book`
    is a delta from `order_book.begin_nonce` to `order_book.nonce`. Other message types are not
    for the book and are ignored (True). False means resubscribe for a fresh snapshot now.
    """
    try:
        msg = loads_message(message)
        kind = msg.get("type")
        if kind != ORDER_BOOK_UPDATE and kind != ORDER_BOOK_SNAPSHOT:
            return True
        ob = msg["order_book"]
        bids = parse_dict_levels(ob["bids"])
        asks = parse_dict_levels(ob["asks"])
        nonce = int(ob["nonce"])
        begin = int(ob["begin_nonce"]) if kind == ORDER_BOOK_UPDATE else 0
    except PARSE_ERRORS as error:
        return malformed_message(book, error)
    if kind == ORDER_BOOK_SNAPSHOT:
        return book.apply_snapshot(bids, asks, nonce)
    return book.apply_delta(bids, asks, begin, nonce)

"""Lighter's wire constants: transaction and order types, time in force, order statuses,
WebSocket error codes and the API's limits. Numbers from the lighter-sdk and the apidocs."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from exchanges.base import FeeRates, OrderStatus

VENUE = "lighter"

# Transactions (sendTx `tx_type`) and order fields as the signer takes them.
TX_CREATE_ORDER = 14
TX_CANCEL_ORDER = 15
TX_CANCEL_ALL_ORDERS = 16
ORDER_TYPE_LIMIT = 0
ORDER_TYPE_MARKET = 1
TIF_IOC = 0
TIF_GTT = 1
TIF_POST_ONLY = 2
CANCEL_ALL_IMMEDIATE = 0
DEFAULT_28_DAY_EXPIRY = -1  # the signer fills in now + 28 days
IOC_EXPIRY = 0

# Trading fees per account tier (apidocs "Account types"): Standard pays none; Premium pays
# 0.40 bps as maker and 2.80 bps as taker. The order stream carries no fee, so a fill's fee is
# its notional times the tier's rate (what the venue charges).
TIER_FEES: dict[str, FeeRates] = {
    "standard": FeeRates(),
    "premium": FeeRates(Decimal("0.00004"), Decimal("0.00028")),
}

# Limits.
MAX_PRICE = 2**32 - 1  # Price is a uint32 on the wire
MAX_CLIENT_ORDER_INDEX = 2**48 - 1
TRADES_PAGE = 100  # the API's maximum per request
MAX_TRADE_PAGES = 200
RECENT_INACTIVE_ORDERS = 100

# WebSocket error codes (apidocs "Data Structures, Constants and Errors").
WS_NOT_SUBSCRIBED = 30002  # our unsubscribe-before-subscribe of a channel already ended
WS_ALREADY_SUBSCRIBED = 30003
WS_TOO_MANY_MESSAGES = frozenset({30009, 30010})  # messages a minute / unacknowledged subscribes
WS_SLOW_DOWN_S = 5.0  # our sends are held this long when the venue answers one of those

# Channels and message types.
ORDER_BOOK_SNAPSHOT = "subscribed/order_book"
ORDER_BOOK_UPDATE = "update/order_book"
ACCOUNT_ORDERS_SNAPSHOT = "subscribed/account_orders"
ACCOUNT_ORDERS_UPDATE = "update/account_orders"
ACCOUNT_ALL_SNAPSHOT = "subscribed/account_all"
ACCOUNT_ALL_UPDATE = "update/account_all"

# Order statuses (lower case on the wire).
NO_LIQUIDITY = frozenset({"canceled-not-enough-liquidity", "canceled-too-much-slippage"})
MARGIN = frozenset({"canceled-margin-not-allowed", "canceled-invalid-balance"})
POST_ONLY_CROSSED = "canceled-post-only"
TIF_WIRE_IOC = "immediate-or-cancel"
TIF_WIRE_POST_ONLY = "post-only"

# How far an order has got: an update that neither adds fills nor progress is stale.
PROGRESS = {
    OrderStatus.PENDING_NEW: 0,
    OrderStatus.OPEN: 1,
    OrderStatus.PARTIALLY_FILLED: 1,
    OrderStatus.PENDING_CANCEL: 1,
    OrderStatus.FILLED: 2,
    OrderStatus.CANCELED: 2,
    OrderStatus.EXPIRED: 2,
    OrderStatus.REJECTED: 2,
}

PARSE_ERRORS = (KeyError, IndexError, TypeError, ValueError, InvalidOperation, AttributeError)

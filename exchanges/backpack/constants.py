"""Backpack's names and numbers: the venue, symbols, wire words, limits (protocols/backpack.md)."""

from __future__ import annotations

VENUE = "backpack"
QUOTE = "USDC"


def perp_symbol(ticker: str) -> str:
    """`BTC` -> `BTC_USDC_PERP`."""
    return f"{ticker}_{QUOTE}_PERP"


def depth_stream(symbol: str) -> str:
    return f"depth.{symbol}"


def order_update_stream(symbol: str) -> str:
    return f"account.orderUpdate.{symbol}"


def position_update_stream(symbol: str) -> str:
    return f"account.positionUpdate.{symbol}"


# A post-only order that would take: HTTP 400 with this message, or (some venue versions) an
# order expired with this reason.
POST_ONLY_CROSS = "Order would immediately match and take"
POST_ONLY_EXPIRY = "PostOnlyTaker"
NOT_FOUND_CODE = "RESOURCE_NOT_FOUND"
NOT_FOUND_MESSAGE = "Order not found"  # older form of "gone"

MAX_CLIENT_ID = 2**32 - 1  # clientId is a uint32; bpx-py silently drops 0
SUBSCRIBE_WINDOW_MS = 5_000  # signing window of the private WS subscribe
FILL_PAGE_SIZE = 1_000  # rows per fill history page
ORDER_HISTORY_LOOKUP = 200  # order history rows read to find one ambiguous placement
ORDER_HISTORY_RECOVERY = 500  # order history rows read to recover our orders' states
LOOKUP_LOOKBACK_MS = 60_000  # an ambiguous placement's lookup reads history from this far back
NOT_TRADING_STATES = ("Closed", "CancelOnly")

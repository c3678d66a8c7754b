"""Moved to exchanges/common/orderbook.py (issue 12); this shim goes when Backpack moves."""

from exchanges.common.orderbook import *  # noqa: F403

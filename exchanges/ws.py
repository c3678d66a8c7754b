"""Moved to exchanges/common/ws.py (issue 12); this shim goes when Backpack moves."""

from exchanges.common.ws import *  # noqa: F403

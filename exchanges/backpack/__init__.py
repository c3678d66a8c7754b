"""Backpack, the maker venue: `BackpackVenue` (venue.py) and the parts it composes.

constants · auth (ED25519 signing) · rest (bpx-py clients, typed errors, retries) · parsing
(wire -> value types) · execution · user_stream · account · session.

The names below are the ones other code and the tests import from `exchanges.backpack`. They
are resolved on first use (PEP 562): importing a submodule runs this package first, so an
eager import here would make every submodule import the whole venue (and a cycle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchanges.common.lazy import lazy_exports

if TYPE_CHECKING:
    from exchanges.backpack.constants import VENUE
    from exchanges.backpack.rest import BackpackApiError, OrderNotFound
    from exchanges.backpack.rest import error_from_answer as _error_from_answer
    from exchanges.backpack.venue import BackpackVenue
    from exchanges.common.http import KeepAliveHttpClient, TransportError

_EXPORTS = {
    "VENUE": ("exchanges.backpack.constants", "VENUE"),
    "BackpackApiError": ("exchanges.backpack.rest", "BackpackApiError"),
    "OrderNotFound": ("exchanges.backpack.rest", "OrderNotFound"),
    "_error_from_answer": ("exchanges.backpack.rest", "error_from_answer"),
    "BackpackVenue": ("exchanges.backpack.venue", "BackpackVenue"),
    "KeepAliveHttpClient": ("exchanges.common.http", "KeepAliveHttpClient"),
    "TransportError": ("exchanges.common.http", "TransportError"),
}

__all__ = [
    "VENUE",
    "BackpackApiError",
    "BackpackVenue",
    "KeepAliveHttpClient",
    "OrderNotFound",
    "TransportError",
    "_error_from_answer",
]


__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)

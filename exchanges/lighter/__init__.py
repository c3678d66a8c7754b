"""Lighter, the hedge venue: `LighterVenue` (venue.py) and the parts it composes.

constants · scaling (Decimal <-> venue integers) · parsing (wire -> value types) · nonce ·
transport (sendTx) · rest · signing · presign · execution · user_stream · account · session.

The names below are the ones other code and the tests import from `exchanges.lighter`. They
are resolved on first use (PEP 562): importing a submodule runs this package first, so an
eager import here would make every submodule import the whole venue (and a cycle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchanges.common.lazy import lazy_exports

if TYPE_CHECKING:
    from exchanges.lighter.constants import MAX_CLIENT_ORDER_INDEX, MAX_PRICE, VENUE
    from exchanges.lighter.nonce import Mutex, NonceHold, NonceSequencer
    from exchanges.lighter.parsing import lighter_status
    from exchanges.lighter.scaling import (
        _worst_bounds,
        scale_limit_price,
        scale_qty,
        scale_worst_price,
        unscale,
    )
    from exchanges.lighter.signing import SignedTx
    from exchanges.lighter.transport import TxSender
    from exchanges.lighter.venue import LighterVenue

_EXPORTS = {
    "MAX_CLIENT_ORDER_INDEX": "constants",
    "MAX_PRICE": "constants",
    "VENUE": "constants",
    "Mutex": "nonce",
    "NonceHold": "nonce",
    "NonceSequencer": "nonce",
    "lighter_status": "parsing",
    "_worst_bounds": "scaling",
    "scale_limit_price": "scaling",
    "scale_qty": "scaling",
    "scale_worst_price": "scaling",
    "unscale": "scaling",
    "SignedTx": "signing",
    "TxSender": "transport",
    "LighterVenue": "venue",
}

__all__ = [
    "MAX_CLIENT_ORDER_INDEX",
    "MAX_PRICE",
    "VENUE",
    "LighterVenue",
    "Mutex",
    "NonceHold",
    "NonceSequencer",
    "SignedTx",
    "TxSender",
    "_worst_bounds",
    "lighter_status",
    "scale_limit_price",
    "scale_qty",
    "scale_worst_price",
    "unscale",
]


__getattr__ = lazy_exports(
    __name__, globals(), {name: (f"{__name__}.{module}", name) for name, module in _EXPORTS.items()}
)

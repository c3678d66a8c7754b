"""Decimal <-> Lighter's scaled integers: the only place the two meet.

Quantities are `base_amount` integers of `size_decimals`, prices uint32 of `price_decimals`.
Every rounding is in the safe direction: never trade more than asked, never a worst price
tighter than asked, never a limit that pays more.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from exchanges.base import Side, round_price, round_qty, round_worst_price
from exchanges.lighter.constants import MAX_CLIENT_ORDER_INDEX, MAX_PRICE


def unscale(value: int, decimals: int) -> Decimal:
    """A scaled integer back to Decimal: unscale(650001, 1) == Decimal("65000.1")."""
    return Decimal(value).scaleb(-decimals)


def scale_qty(qty: Decimal, size_decimals: int, min_qty: Decimal = Decimal(0)) -> int:
    """`base_amount` for `qty`, rounded DOWN to the size step (never trade more than asked).
    ValueError when nothing or less than the market minimum is left."""
    rounded = round_qty(qty, Decimal(1).scaleb(-size_decimals))
    if rounded <= 0 or rounded < min_qty:
        raise ValueError(f"quantity {qty} is below the minimum {min_qty} after rounding")
    return int(rounded.scaleb(size_decimals))


def scale_worst_price(price: Decimal, price_decimals: int, side: Side) -> int:
    """A taker's worst acceptable price as Lighter's uint32: a buy rounded UP, a sell DOWN
    (never tighter than asked). ValueError when not positive or beyond uint32."""
    return _checked_price(
        round_worst_price(price, Decimal(1).scaleb(-price_decimals), side), price_decimals
    )


def scale_limit_price(price: Decimal, price_decimals: int, side: Side) -> int:
    """A maker's limit price as a uint32: a buy rounded DOWN, a sell UP (never pay more)."""
    return _checked_price(
        round_price(price, Decimal(1).scaleb(-price_decimals), side), price_decimals
    )


def _checked_price(rounded: Decimal, price_decimals: int) -> int:
    value = int(rounded.scaleb(price_decimals))
    if value <= 0:
        raise ValueError(f"price {rounded} is not positive")
    if value > MAX_PRICE:
        raise ValueError(
            f"price {rounded} overflows Lighter's uint32 price ({value} > {MAX_PRICE})"
        )
    return value


def fmt(value: Decimal, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def worst_bounds(
    price: int, tolerance: Decimal, price_decimals: int, side: Side
) -> tuple[Decimal, Decimal]:
    """The asked worst prices w for which a tx signed at `price` may be sent: those whose
    `scale_worst_price(w)` is a valid uint32 within `tolerance` (a price difference) of
    `price`. As Decimal bounds, so that the hot path only compares: with x = w * 10^decimals,
    a buy rounds x up, and ceil(x) in [lo, hi] <=> lo - 1 < x <= hi; a sell rounds down, and
    floor(x) in [lo, hi] <=> lo <= x < hi + 1. Buy: lo < w <= hi; sell: lo <= w < hi."""
    slack = int(tolerance.scaleb(price_decimals).to_integral_value(rounding=ROUND_FLOOR))
    lo, hi = max(price - slack, 1), min(price + slack, MAX_PRICE)
    if side is Side.BUY:
        return unscale(lo - 1, price_decimals), unscale(hi, price_decimals)
    return unscale(lo, price_decimals), unscale(hi + 1, price_decimals)


_worst_bounds = worst_bounds  # the name the tests have always imported


@dataclass(frozen=True, slots=True)
class Scales:
    """One market's decimals, to convert its amounts both ways."""

    size_decimals: int
    price_decimals: int
    min_qty: Decimal

    def qty(self, qty: Decimal) -> int:
        return scale_qty(qty, self.size_decimals, self.min_qty)

    def worst_price(self, price: Decimal, side: Side) -> int:
        return scale_worst_price(price, self.price_decimals, side)

    def limit_price(self, price: Decimal, side: Side) -> int:
        return scale_limit_price(price, self.price_decimals, side)

    def unscale_qty(self, value: int) -> Decimal:
        return unscale(value, self.size_decimals)

    def unscale_price(self, value: int) -> Decimal:
        return unscale(value, self.price_decimals)


def check_client_id(client_id: int) -> None:
    """Lighter's client order index is 48 bits and never 0."""
    if not 0 < client_id <= MAX_CLIENT_ORDER_INDEX:
        raise ValueError(f"client_id must be within 1..2^48-1, got {client_id}")

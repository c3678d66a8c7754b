"""The order state machine and the rounding rules of exchanges/base.py."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchanges.base import (
    ORDER_TRANSITIONS,
    IllegalTransition,
    Order,
    OrderKind,
    OrderStatus,
    Side,
    round_price,
    round_qty,
    round_worst_price,
    transition,
)

S = OrderStatus
# In a fixed order (frozensets iterate in hash order, which differs between processes).
LEGAL = [
    (a, b)
    for a, targets in ORDER_TRANSITIONS.items()
    for b in sorted(targets, key=list(OrderStatus).index)
]
ILLEGAL = [
    (S.FILLED, S.OPEN),
    (S.FILLED, S.CANCELED),
    (S.REJECTED, S.OPEN),
    (S.REJECTED, S.FILLED),
    (S.CANCELED, S.OPEN),
    (S.CANCELED, S.PENDING_CANCEL),
    (S.OPEN, S.PENDING_NEW),
    (S.OPEN, S.REJECTED),
    (S.PARTIALLY_FILLED, S.OPEN),
    (S.EXPIRED, S.OPEN),
]


@pytest.mark.parametrize(("current", "new"), LEGAL)
def test_every_legal_transition_is_accepted(current: OrderStatus, new: OrderStatus) -> None:
    assert transition(current, new) is new


@pytest.mark.parametrize(("current", "new"), ILLEGAL)
def test_illegal_transitions_raise(current: OrderStatus, new: OrderStatus) -> None:
    with pytest.raises(IllegalTransition):
        transition(current, new)


def test_every_status_has_a_row_in_the_table() -> None:
    assert set(ORDER_TRANSITIONS) == set(OrderStatus)


@pytest.mark.parametrize("status", list(OrderStatus))
def test_repeating_a_status_is_a_no_op(status: OrderStatus) -> None:
    assert transition(status, status) is status


def test_real_world_races_are_legal() -> None:
    # A fill that arrives after our cancel was acknowledged.
    assert transition(S.CANCELED, S.FILLED) is S.FILLED
    assert transition(S.CANCELED, S.PARTIALLY_FILLED) is S.PARTIALLY_FILLED
    # A cancel that failed because the order was still live.
    assert transition(S.PENDING_CANCEL, S.OPEN) is S.OPEN


def test_terminal_states_accept_only_late_fills() -> None:
    assert not ORDER_TRANSITIONS[S.FILLED]
    assert not ORDER_TRANSITIONS[S.REJECTED]
    assert S.FILLED.is_terminal and not S.OPEN.is_terminal


def test_order_with_status_follows_the_table() -> None:
    order = Order(
        "backpack", "BTC_USDC_PERP", 1, Side.BUY, Decimal("1"), Decimal("10"), OrderKind.POST_ONLY
    )
    opened = order.with_status(S.OPEN)
    assert opened.status is S.OPEN and order.status is S.PENDING_NEW
    with pytest.raises(IllegalTransition):
        opened.with_status(S.PENDING_NEW)


def test_side_sign_and_opposite() -> None:
    assert Side.BUY.sign == 1 and Side.SELL.sign == -1
    assert Side.BUY.opposite is Side.SELL and Side.SELL.opposite is Side.BUY


ticks = st.sampled_from(
    [
        Decimal("0.1"),
        Decimal("0.01"),
        Decimal("0.5"),
        Decimal("1"),
        Decimal("0.00001"),
        Decimal("25"),
    ]
)
prices = st.decimals(
    min_value=Decimal("0.00001"),
    max_value=Decimal("1000000"),
    places=6,
    allow_nan=False,
    allow_infinity=False,
)


@given(price=prices, tick=ticks)
def test_rounded_buy_price_is_never_above_input(price: Decimal, tick: Decimal) -> None:
    rounded = round_price(price, tick, Side.BUY)
    assert rounded <= price
    assert price - rounded < tick
    assert rounded % tick == 0


@given(price=prices, tick=ticks)
def test_rounded_sell_price_is_never_below_input(price: Decimal, tick: Decimal) -> None:
    rounded = round_price(price, tick, Side.SELL)
    assert rounded >= price
    assert rounded - price < tick
    assert rounded % tick == 0


@given(price=prices, tick=ticks)
def test_worst_price_rounds_away_from_the_book(price: Decimal, tick: Decimal) -> None:
    assert round_worst_price(price, tick, Side.BUY) >= price
    assert round_worst_price(price, tick, Side.SELL) <= price


@given(qty=prices, step=ticks)
def test_rounded_size_is_never_above_input(qty: Decimal, step: Decimal) -> None:
    rounded = round_qty(qty, step)
    assert rounded <= qty
    assert qty - rounded < step
    assert rounded % step == 0


def test_rounding_examples() -> None:
    assert round_price(Decimal("65000.17"), Decimal("0.1"), Side.BUY) == Decimal("65000.1")
    assert round_price(Decimal("65000.11"), Decimal("0.1"), Side.SELL) == Decimal("65000.2")
    assert round_price(Decimal("65000.1"), Decimal("0.1"), Side.SELL) == Decimal("65000.1")
    assert round_qty(Decimal("0.0123456"), Decimal("0.00001")) == Decimal("0.01234")


@pytest.mark.parametrize("bad", [Decimal(0), Decimal(-1)])
def test_rounding_rejects_non_positive_increments(bad: Decimal) -> None:
    with pytest.raises(ValueError):
        round_price(Decimal(1), bad, Side.BUY)
    with pytest.raises(ValueError):
        round_qty(Decimal(1), bad)

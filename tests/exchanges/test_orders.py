"""The one in-flight order tracker (exchanges/common/orders.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchanges.base import ORDER_TRANSITIONS, OrderKind, OrderStatus, Side
from exchanges.common.orders import OrderTracker, TrackedOrder

D = Decimal


def new(tracker: OrderTracker, client_id: int = 1) -> TrackedOrder:
    return tracker.track(client_id, Side.BUY, D("0.01"), D("100"), OrderKind.POST_ONLY)


def test_an_order_is_known_by_client_id_before_the_venue_answers() -> None:
    tracker = OrderTracker("backpack")
    order = new(tracker, 7)
    assert tracker.get(7) is order and order.status is OrderStatus.PENDING_NEW
    assert tracker.is_ours(client_id=7) and not tracker.is_ours(order_id="x")
    tracker.bind(order, "x")
    assert tracker.find(None, "x") is order and tracker.is_ours(order_id="x")


def test_a_live_client_id_cannot_be_tracked_twice_but_a_finished_one_can() -> None:
    tracker = OrderTracker("lighter")
    order = new(tracker, 3)
    with pytest.raises(ValueError, match="still in use"):
        new(tracker, 3)
    assert tracker.move(order, OrderStatus.CANCELED)
    again = new(tracker, 3)
    assert tracker.get(3) is again and again.status is OrderStatus.PENDING_NEW


def test_a_fill_after_the_cancel_is_a_legal_race() -> None:
    tracker = OrderTracker("backpack")
    order = new(tracker)
    assert tracker.move(order, OrderStatus.OPEN)
    assert tracker.move(order, OrderStatus.CANCELED)
    assert tracker.move(order, OrderStatus.FILLED, filled=D("0.01"))
    assert order.status is OrderStatus.FILLED and order.filled == D("0.01")


def test_a_stale_update_changes_nothing() -> None:
    tracker = OrderTracker("lighter")
    order = new(tracker)
    assert tracker.move(order, OrderStatus.PARTIALLY_FILLED, filled=D("0.004"))
    assert not tracker.move(order, OrderStatus.OPEN)  # illegal: back to open
    assert not tracker.move(order, OrderStatus.PARTIALLY_FILLED, filled=D("0.002"))  # backwards
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.filled == D("0.004")
    assert tracker.refused_transitions == 2


def test_every_change_wakes_a_waiter() -> None:
    tracker = OrderTracker("lighter")
    order = new(tracker)
    assert not order.changed.is_set()
    tracker.move(order, OrderStatus.OPEN)
    assert order.changed.is_set()


def test_finished_orders_are_kept_for_late_fills_then_forgotten_oldest_first() -> None:
    tracker = OrderTracker("backpack", keep_finished=2)
    orders = [new(tracker, n) for n in range(4)]
    live = new(tracker, 99)
    for n, order in enumerate(orders):
        tracker.bind(order, f"o{n}")
        tracker.move(order, OrderStatus.CANCELED)
    assert [tracker.get(n) is not None for n in range(4)] == [False, False, True, True]
    assert tracker.by_order_id("o0") is None and tracker.by_order_id("o3") is orders[3]
    assert tracker.get(99) is live and tracker.live() == [live]


def test_fills_are_deduplicated_by_trade_id_and_a_missing_id_is_refused() -> None:
    tracker = OrderTracker("backpack")
    assert tracker.first_fill("t1")
    assert not tracker.first_fill("t1")
    assert tracker.first_fill("t2")
    for missing in ("", "0", "None"):
        with pytest.raises(ValueError, match="without a trade id"):
            tracker.first_fill(missing)


_STATUSES = list(OrderStatus)


@given(st.lists(st.sampled_from(_STATUSES), max_size=12))
def test_status_only_ever_moves_along_the_transition_table(path: list[OrderStatus]) -> None:
    tracker = OrderTracker("lighter")
    order = new(tracker)
    for status in path:
        before = order.status
        applied = tracker.move(order, status)
        legal = status is before or status in ORDER_TRANSITIONS[before]
        assert applied == legal
        assert order.status is (status if legal else before)


def test_an_order_never_received_is_forgotten_and_its_client_id_is_free() -> None:
    tracker = OrderTracker("lighter")
    order = new(tracker, 5)
    tracker.bind(order, "o5")
    tracker.forget(order)
    assert tracker.get(5) is None and tracker.by_order_id("o5") is None
    assert new(tracker, 5).status is OrderStatus.PENDING_NEW


def test_forgetting_a_replaced_order_leaves_its_successor() -> None:
    tracker = OrderTracker("lighter")
    first = new(tracker, 6)
    tracker.move(first, OrderStatus.CANCELED)
    second = new(tracker, 6)
    tracker.forget(first)
    assert tracker.get(6) is second


def test_the_price_actually_sent_is_recorded_and_wakes_a_waiter() -> None:
    tracker = OrderTracker("lighter")
    order = new(tracker)
    tracker.amend(order, price=D("101"))
    assert order.price == D("101") and order.changed.is_set()


def test_a_repeated_report_does_not_advance_the_order() -> None:
    tracker = OrderTracker("backpack")
    order = new(tracker)
    assert tracker.advance(order, OrderStatus.OPEN, filled=D(0))
    assert not tracker.advance(order, OrderStatus.OPEN, filled=D(0))
    assert tracker.advance(order, OrderStatus.PARTIALLY_FILLED, filled=D("0.004"))
    assert not tracker.advance(order, OrderStatus.PARTIALLY_FILLED, filled=D("0.004"))
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.filled == D("0.004")


def test_a_fill_report_overtaken_by_the_cancel_does_not_reopen_the_order() -> None:
    tracker = OrderTracker("backpack")
    order = new(tracker)
    assert tracker.advance(order, OrderStatus.CANCELED, filled=D("0.004"))
    assert not tracker.advance(order, OrderStatus.PARTIALLY_FILLED, filled=D("0.004"))
    assert order.status is OrderStatus.CANCELED
    assert tracker.advance(order, OrderStatus.PARTIALLY_FILLED, filled=D("0.006"))  # a late fill
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.filled == D("0.006")


def test_a_report_going_backwards_does_not_advance_the_order() -> None:
    tracker = OrderTracker("backpack")
    order = new(tracker)
    assert tracker.advance(order, OrderStatus.PARTIALLY_FILLED, filled=D("0.006"))
    assert not tracker.advance(order, OrderStatus.PARTIALLY_FILLED, filled=D("0.004"))
    assert tracker.advance(order, OrderStatus.FILLED, filled=D("0.01"))
    assert not tracker.advance(order, OrderStatus.CANCELED, filled=D("0.01"))
    assert order.status is OrderStatus.FILLED

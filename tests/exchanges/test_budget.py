"""One request budget per account (exchanges/common/budget.py): capacity, priorities, 429s."""

from __future__ import annotations

import asyncio

import pytest

from exchanges.common.budget import (
    LIGHTER_TIERS,
    WINDOW_S,
    Priority,
    RequestBudget,
    TierLimits,
    backpack_limits,
)
from tests.waiting import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_standard_allows_sixty_requests_a_rolling_minute() -> None:
    clock = Clock()
    budget = RequestBudget(LIGHTER_TIERS["standard"], clock=clock)
    granted = 0
    while budget.try_take("sendTx", Priority.HEDGE, tx=True):
        granted += 1
        clock.now += 0.1
    assert granted == 60
    clock.now = 100.0 + WINDOW_S  # the first request leaves the window
    assert budget.try_take("sendTx", Priority.HEDGE, tx=True)


def test_reads_and_orders_keep_out_of_the_hedges_reserve() -> None:
    clock = Clock()
    limits = TierLimits("t", capacity=10, reserve=2)
    budget = RequestBudget(limits, clock=clock)
    reads = 0
    while budget.try_take("account", Priority.READ):
        reads += 1
    assert reads == 6  # 10 - 2 * reserve
    assert budget.try_take("order", Priority.ORDER)
    assert budget.try_take("order", Priority.ORDER)
    assert not budget.try_take("order", Priority.ORDER)  # the last 2 are the hedges'
    assert budget.try_take("sendTx", Priority.HEDGE)
    assert budget.try_take("sendTx", Priority.HEDGE)
    assert not budget.try_take("sendTx", Priority.HEDGE)
    assert budget.snapshot()["left"] == 0


def test_premium_requests_are_weighted_and_transactions_bounded_apart() -> None:
    clock = Clock()
    budget = RequestBudget(LIGHTER_TIERS["premium"], clock=clock)
    for _ in range(38):
        assert budget.try_take("trades", Priority.READ)  # 600 each
    assert budget.snapshot()["used"] == 22_800
    assert not budget.try_take("trades", Priority.READ)  # into the 1,200 read reserve
    assert budget.try_take("sendTx", Priority.HEDGE, tx=True)  # weighs 6
    assert budget.snapshot()["used"] == 22_806


def test_a_429_pauses_everything_for_retry_after_and_is_counted() -> None:
    clock = Clock()
    budget = RequestBudget(backpack_limits(2000), clock=clock)
    assert budget.penalize(retry_after_s=2.5) == 2.5
    assert not budget.try_take("order", Priority.HEDGE)
    clock.now += 2.5
    assert budget.try_take("order", Priority.HEDGE)
    snapshot = budget.snapshot()
    assert snapshot["rejected_429"] == 1 and snapshot["paused_s"] == 0


async def test_a_waiting_hedge_goes_before_reads_that_waited_longer() -> None:
    budget = RequestBudget(TierLimits("t", capacity=3, reserve=1), window_s=0.3)
    assert budget.try_take("a", Priority.HEDGE)
    assert budget.try_take("b", Priority.HEDGE)
    assert budget.try_take("c", Priority.HEDGE)
    served: list[str] = []

    async def request(name: str, priority: Priority) -> None:
        await budget.take(name, priority)
        served.append(name)

    tasks = [asyncio.create_task(request(f"read{n}", Priority.READ)) for n in range(2)]
    await wait_for(lambda: budget.snapshot()["waiting"] == 2)
    tasks.append(asyncio.create_task(request("hedge", Priority.HEDGE)))
    await wait_for(lambda: budget.snapshot()["waiting"] == 3)
    assert not budget.try_take("read-now", Priority.READ)  # no overtaking those waiting
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    assert served[0] == "hedge"
    assert sorted(served[1:]) == ["read0", "read1"]
    assert budget.snapshot()["waiting"] == 0


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    budget = RequestBudget(TierLimits("t", capacity=1), window_s=30)
    assert budget.try_take("a", Priority.HEDGE)
    waiter = asyncio.create_task(budget.take("b", Priority.READ))
    await wait_for(lambda: budget.snapshot()["waiting"] == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.snapshot()["waiting"] == 0
    budget.close()


async def test_close_fails_every_waiter() -> None:
    budget = RequestBudget(TierLimits("t", capacity=1), window_s=30)
    assert budget.try_take("a", Priority.HEDGE)
    waiter = asyncio.create_task(budget.take("b", Priority.ORDER))
    await wait_for(lambda: budget.snapshot()["waiting"] == 1)
    budget.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter


def test_transactions_have_their_own_bound_inside_the_request_budget() -> None:
    budget = RequestBudget(TierLimits("t", capacity=100, tx_capacity=2), clock=Clock())
    assert budget.try_take("sendTx", Priority.HEDGE, tx=True)
    assert budget.try_take("sendTx", Priority.HEDGE, tx=True)
    assert not budget.try_take("sendTx", Priority.HEDGE, tx=True)
    assert budget.try_take("account", Priority.READ)  # reads still fit
    assert budget.snapshot()["tx_used"] == 2


def test_seconds_until_room_spends_nothing_and_counts_the_oldest_leaving() -> None:
    clock = Clock()
    budget = RequestBudget(TierLimits("t", capacity=6, reserve=2), clock=clock)
    assert budget.seconds_until_room("sendTx", 2, Priority.ORDER) == 0.0
    for _ in range(4):
        assert budget.try_take("sendTx", Priority.ORDER)  # 4 = all the room outside the reserve
        clock.now += 1.0
    assert budget.snapshot()["used"] == 4  # asking spent nothing
    # Two must leave the window first: the second oldest was spent at 101.0.
    assert budget.seconds_until_room("sendTx", 2, Priority.ORDER) == pytest.approx(WINDOW_S - 3.0)
    assert budget.seconds_until_room("sendTx", 2, Priority.HEDGE) == 0.0  # the reserve is there
    budget.penalize(5.0)
    assert budget.seconds_until_room("sendTx", 1, Priority.HEDGE) == pytest.approx(5.0)


async def test_holds_says_whether_hedges_are_held_by_a_pause_or_a_full_minute() -> None:
    clock = Clock()
    budget = RequestBudget(LIGHTER_TIERS["standard"], clock=clock)
    assert not budget.holds(Priority.HEDGE)
    budget.penalize(2.0)
    assert budget.holds(Priority.HEDGE) and budget.holds(Priority.READ)
    clock.now += 2.0
    assert not budget.holds(Priority.HEDGE)
    while budget.try_take("sendTx", Priority.HEDGE, tx=True):
        pass  # the minute is full
    read = asyncio.ensure_future(budget.take("account", Priority.READ))
    await wait_for(lambda: budget.snapshot()["waiting"] == 1)
    assert budget.holds(Priority.READ) and not budget.holds(Priority.HEDGE)  # only a read waits
    hedge = asyncio.ensure_future(budget.take("sendTx", Priority.HEDGE, tx=True))
    await wait_for(lambda: budget.snapshot()["waiting"] == 2)
    assert budget.holds(Priority.HEDGE)
    for waiter in (read, hedge):
        waiter.cancel()
    await asyncio.gather(read, hedge, return_exceptions=True)

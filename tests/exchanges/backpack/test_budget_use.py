"""Every Backpack request passes the account's request budget (issue 13): one `take` per
attempt, at the priority of what it is for; a 429 pauses the budget and is sent again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from exchanges.backpack import BackpackVenue
from exchanges.base import OrderStatus, Side
from exchanges.common.budget import Priority, RequestBudget, TierLimits, backpack_limits
from exchanges.common.http import retry_after_s
from tests.exchanges.test_backpack import ACCOUNT, TICK, Rig, start_rig, stop_rig
from tests.waiting import wait_for


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = await start_rig(request_timeout=2.0)
    yield r
    await stop_rig(r)


def test_a_venue_without_a_budget_gets_backpacks_own() -> None:
    venue = BackpackVenue(
        "BTC",
        api_url="http://127.0.0.1:1/",
        ws_url="ws://127.0.0.1:1/",
        public_key=None,
        secret_key=None,
    )

    assert venue.budget.limits == backpack_limits(2000)


async def test_every_request_the_venue_receives_was_taken_from_the_budget(rig: Rig) -> None:
    order = await rig.place(client_id=3001)
    await rig.venue.cancel(order)
    await rig.venue.open_orders()
    await rig.venue.fills_since(int(time.time() * 1000) - 5_000)

    assert rig.venue.budget.granted == rig.server.requests_served
    assert rig.venue.budget.snapshot()["used"] == rig.server.requests_served


async def test_an_ioc_hedge_uses_the_reserve_while_reads_wait() -> None:
    budget = RequestBudget(TierLimits("test", capacity=100, reserve=10))
    rig = await start_rig(request_timeout=2.0, budget=budget)
    try:
        while budget.try_take("filler", Priority.ORDER):
            pass  # only the hedges' reserve is left
        reading = asyncio.create_task(rig.venue.open_orders())
        _, _, ask, _ = rig.book.top()

        order = await rig.venue.place_hedge(Side.BUY, Decimal("0.001"), ask + TICK * 10, 3002)

        assert order.status is OrderStatus.FILLED
        await asyncio.sleep(0.05)
        assert not reading.done()  # a read keeps out of the reserve
        assert budget.snapshot()["waiting"] == 1
        reading.cancel()
    finally:
        await stop_rig(rig)


async def test_a_429_pauses_the_budget_for_its_retry_after_then_the_read_is_sent_again(
    rig: Rig,
) -> None:
    rig.market.faults.arm("http_429")  # answered with Retry-After: 1
    started = time.monotonic()

    orders = await rig.venue.open_orders()

    assert orders == []
    assert time.monotonic() - started >= 0.9  # the venue's pause, honoured
    assert rig.venue.budget.rejected_429 == 1
    assert rig.market.faults.fired["http_429"] == 1


async def test_429s_never_use_up_the_retry_attempts() -> None:
    rig = await start_rig(request_timeout=2.0, retry_attempts=0)
    try:
        rig.market.faults.arm("http_429", count=2)

        order = await rig.place(client_id=3003)

        assert order.status is OrderStatus.OPEN
        assert [o.client_id for o in rig.book.orders(ACCOUNT)] == [3003]
        assert rig.venue.budget.rejected_429 == 2
    finally:
        await stop_rig(rig)


async def test_a_cancel_answered_429_is_sent_again_and_cancels(rig: Rig) -> None:
    order = await rig.place(client_id=3004)
    rig.market.faults.arm("http_429")

    await rig.venue.cancel(order)

    await wait_for(lambda: rig.order_events(order.order_id)[-1].status is OrderStatus.CANCELED)
    assert rig.venue.budget.rejected_429 == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_is_read_as_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header) == seconds


def test_retry_after_may_be_an_http_date() -> None:
    in_ten_s = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 10))

    seconds = retry_after_s(in_ten_s)

    assert seconds is not None and 8.0 <= seconds <= 10.0

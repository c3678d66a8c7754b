"""The position from `account.positionUpdate` (issue 13): no request per fill; one REST read
seeds each live connection; a stream update that beats the seed's answer wins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from exchanges.backpack.position import StreamedPosition
from tests.exchanges.test_backpack import ACCOUNT, Rig, start_rig, stop_rig
from tests.waiting import wait_for

POSITION_READS = "GET /api/v1/position"


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = await start_rig(request_timeout=2.0)
    yield r
    await stop_rig(r)


def position_reads(rig: Rig) -> int:
    counts = rig.server.ledger.account(str(ACCOUNT))["requests"]
    assert isinstance(counts, dict)
    return int(counts.get(POSITION_READS, 0))


async def test_a_flat_account_is_known_at_connect_from_one_rest_read(rig: Rig) -> None:
    assert rig.venue.streamed_position() == 0  # the venue sends no snapshot when flat
    assert position_reads(rig) == 1


async def test_fills_move_the_streamed_position_without_a_request(rig: Rig) -> None:
    order = await rig.place(client_id=4001, qty="0.004")

    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.001"))
    await wait_for(lambda: rig.venue.streamed_position() == Decimal("0.001"))
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.002"))
    await wait_for(lambda: rig.venue.streamed_position() == Decimal("0.003"))

    assert position_reads(rig) == 1  # the seed only
    assert await rig.venue.position() == Decimal("0.003")  # REST agrees


async def test_a_position_changed_while_down_is_known_again_after_the_reconnect(rig: Rig) -> None:
    order = await rig.place(client_id=4002, qty="0.004")
    ws = rig.venue._ws
    assert ws is not None

    rig.market.faults.arm("ws_drop")
    rig.book.fill_resting(int(order.order_id or 0), Decimal("0.002"))  # never sent on the WS
    await wait_for(lambda: ws.reconnects == 1)
    await wait_for(lambda: rig.venue.streamed_position() == Decimal("0.002"))

    assert position_reads(rig) == 2  # one seed per connection


async def test_the_streamed_position_is_unknown_once_closed() -> None:
    rig = await start_rig(request_timeout=2.0)
    await stop_rig(rig)

    assert rig.venue.streamed_position() is None


async def test_a_public_only_venue_never_knows_a_position() -> None:
    rig = await start_rig(keys=False, request_timeout=2.0)
    try:
        assert rig.venue.streamed_position() is None
    finally:
        await stop_rig(rig)


# -- StreamedPosition on its own ------------------------------------------------------------


async def test_a_stream_update_during_the_seed_read_wins() -> None:
    position = StreamedPosition()
    answer: asyncio.Future[Decimal] = asyncio.get_running_loop().create_future()
    seeding = asyncio.create_task(position.seed(lambda: answer))
    await asyncio.sleep(0)

    position.on_update(Decimal("0.5"))  # newer than whatever the read says
    answer.set_result(Decimal(0))
    await seeding

    assert position.value == Decimal("0.5")


async def test_a_seed_read_that_straddles_a_disconnect_is_dropped() -> None:
    position = StreamedPosition()
    answer: asyncio.Future[Decimal] = asyncio.get_running_loop().create_future()
    seeding = asyncio.create_task(position.seed(lambda: answer))
    await asyncio.sleep(0)

    position.down()
    answer.set_result(Decimal("1"))
    await seeding

    assert position.value is None


async def test_a_seed_read_with_no_update_meanwhile_is_kept() -> None:
    position = StreamedPosition()
    position.on_update(Decimal("0.2"))

    async def read() -> Decimal:
        return Decimal("0.3")

    await position.seed(read)

    assert position.value == Decimal("0.3")


def test_down_forgets_the_position() -> None:
    position = StreamedPosition()
    position.on_update(Decimal("-0.1"))

    position.down()

    assert position.value is None

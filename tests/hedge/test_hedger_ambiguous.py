"""A hedge whose outcome is unknown keeps its client id until the venue tells: a re-sent copy
that fails to go out says nothing of the first, so the hedger never hedges it again under a new
client id (which could execute twice)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from exchanges.base import AmbiguousOrderState, Fill, Order, Side, VenueError
from hedge import hedge_order
from tests.hedge.conftest import lighter_hedger


async def test_a_failed_resend_of_an_unknown_hedge_keeps_it_unknown_under_its_client_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hedge_order, "AMBIGUOUS_LOOKUP_AFTER_S", 0.05)
    monkeypatch.setattr(hedge_order, "AMBIGUOUS_RESEND_AFTER_S", 0.1)
    async with lighter_hedger(tmp_path, seed=4) as bed:
        venue, hedger = bed.venue, bed.hedger
        real_place: Callable[..., Awaitable[Order]] = venue.place_hedge
        real_find = venue.find_order
        sent: list[int] = []  # the client id of every hedge the hedger asked for

        async def place_hedge(side: Side, qty: Decimal, worst: Decimal, client_id: int) -> Order:
            sent.append(client_id)
            if len(sent) == 1:  # its answer lost, and the venue could not be asked
                raise AmbiguousOrderState("reply lost (test)", client_id=client_id)
            if len(sent) == 2:  # the copy sent again could not even connect
                raise VenueError("connection refused (test)", retryable=True)
            return await real_place(side, qty, worst, client_id)

        async def find_order(client_id: int) -> Order | None:
            return None if len(sent) < 3 else await real_find(client_id)

        monkeypatch.setattr(venue, "place_hedge", place_hedge)
        monkeypatch.setattr(venue, "find_order", find_order)
        monkeypatch.setattr(venue, "try_send_now", lambda *args, **kwargs: None)
        qty = venue.market().min_qty * 2
        hedger.on_maker_fill(
            Fill(
                "backpack",
                "BTC_USDC_PERP",
                "m1",
                "o1",
                1,
                Side.BUY,
                qty,
                Decimal(65000),
                is_maker=True,
            )
        )
        assert await hedger.wait_settled(20), f"not settled: exposure {hedger.exposure}"

        assert len(sent) >= 3 and len(set(sent)) == 1, sent  # one client id, however many sends
        assert hedger.exposure == 0 and not bed.halts
        assert bed.venue_position() == -qty  # hedged once, by the venue's own record

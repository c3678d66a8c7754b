"""LotBook: which hedge covered which maker fill, and the latency each fill is reported with."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from hedge.allocation import Lot, LotBook
from hedge.journal import Journal


class Deferred:
    """What a LotBook hands the journal: the allocations, as (method, args)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def defer(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))

    def latencies(self) -> list[int | None]:
        return [args[-1] for method, args in self.calls if method == "allocate"]


def book() -> tuple[LotBook, Deferred]:
    journal = Deferred()
    return LotBook(cast(Journal, journal)), journal


def maker(trade: str, qty: str, recv_ns: int) -> Lot:
    return Lot("backpack", trade, Decimal(qty), recv_ns, True)


def hedge(qty: str, sent_ns: int, client_id: int = 7) -> Lot:
    return Lot("lighter", f"h{client_id}", Decimal(qty), 0, False, client_id, sent_ns)


def test_a_fill_covered_by_its_first_hedge_has_that_hedges_latency() -> None:
    lots, journal = book()
    lots.add(maker("t1", "1", recv_ns=1_000))
    lots.hedge_started(1_300)
    lots.add(hedge("-1", sent_ns=1_300))
    assert journal.latencies() == [300]


def test_a_fill_covered_by_a_re_send_keeps_its_first_hedges_latency() -> None:
    # The first hedge filled nothing (an IOC past its worst price); a re-send 600 ms later
    # covered the fill: its latency is still the first send's, as the dashboard shows it.
    lots, journal = book()
    lots.add(maker("t1", "1", recv_ns=1_000))
    lots.hedge_started(1_300)
    lots.hedge_started(600_001_300)  # the re-send: not the fill's first hedge
    lots.add(hedge("-1", sent_ns=600_001_300, client_id=8))
    assert journal.latencies() == [300]


def test_a_hedge_started_before_a_fill_is_not_that_fills_first_hedge() -> None:
    lots, journal = book()
    lots.add(maker("t1", "1", recv_ns=1_000))
    lots.hedge_started(1_200)
    lots.add(maker("t2", "1", recv_ns=2_000))  # a second fill, after that hedge went out
    lots.hedge_started(2_500)
    lots.add(hedge("-2", sent_ns=2_500))
    assert journal.latencies() == [200, 500]

"""The cost split and the PnL figures (hedge/economics.py), on journals built by hand."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from exchanges.base import Side
from hedge.economics import HEDGE_FILL, MAKER_FILL, MID
from hedge.journal import Journal
from hedge.report import summarize
from tests.hedge.test_report import HEDGE, MAKER, record


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    book = Journal(tmp_path / "economics.sqlite")
    book.start_run(mode="live", ticker="BTC", settings={})
    try:
        yield book
    finally:
        book.close()


def hedged_buy(journal: Journal, trade: str, client: int, *, price: str, hedge: str) -> None:
    """A maker buy of 1 at `price` (fee 0.02), hedged by a sell of 1 at `hedge` (fee 0.01)."""
    record(journal, MAKER, trade, Side.BUY, "1", price, fee="0.02")
    record(journal, HEDGE, f"h{trade}", Side.SELL, "1", hedge, fee="0.01", client_id=client)
    journal.allocate(MAKER, trade, client, Decimal(1), None)


def test_one_round_trip_splits_exactly_into_fees_basis_adverse_and_slippage(
    journal: Journal,
) -> None:
    """Buy 1 at 100 when Lighter's bid was 100.30; it was 100.10 when the hedge executed, which
    sold at 100.05. Then sell 1 at 101 when Lighter's ask was 100.80, met 100.90, bought 100.95."""
    cycle = journal.start_cycle(1, "open", Side.BUY, Decimal(1))
    hedged_buy(journal, "m1", 7, price="100", hedge="100.05")
    journal.record_mark(MAKER_FILL, MAKER, "m1", Decimal("100.30"))
    journal.record_mark(HEDGE_FILL, HEDGE, "7", Decimal("100.10"))
    journal.end_cycle(cycle, "done")
    journal.start_cycle(1, "close", Side.SELL, Decimal(0))
    record(journal, MAKER, "m2", Side.SELL, "1", "101", fee="0.02")
    record(journal, HEDGE, "hm2", Side.BUY, "1", "100.95", fee="0.01", client_id=8)
    journal.allocate(MAKER, "m2", 8, Decimal(1), None)
    journal.record_mark(MAKER_FILL, MAKER, "m2", Decimal("100.80"))
    journal.record_mark(HEDGE_FILL, HEDGE, "8", Decimal("100.90"))

    summary = summarize(journal)

    money = {key: Decimal(summary[key]) for key in summary if key.endswith("_quote")}
    assert money["fees_maker_quote"] == Decimal("0.04")
    assert money["fees_hedge_quote"] == Decimal("0.02")
    assert money["basis_quote"] == Decimal("0.30") + Decimal("0.20")
    assert money["adverse_quote"] == Decimal("0.20") + Decimal("0.10")
    assert money["slippage_quote"] == Decimal("0.05") + Decimal("0.05")
    # Cash: -100 + 100.05 + 101 - 100.95 = 0.10, minus 0.06 of fees.
    assert money["pnl_realized_quote"] == Decimal("0.04")
    assert money["pnl_mark_quote"] == 0
    assert money["wear_quote"] == Decimal("-0.04")
    assert money["other_quote"] == 0
    assert money["wear_per_10k_quote"] == (Decimal("-0.04") / Decimal(201) * 10_000).quantize(
        Decimal("0.000001")
    )
    cycles = summary["per_cycle"]
    assert [(c["phase"], c["maker_volume"], c["wear_quote"]) for c in cycles] == [
        ("open", "100.000000", "-0.020000"),  # 0.02 + 0.01 + 0.05 slip + 0.20 adverse - 0.30
        ("close", "101.000000", "-0.020000"),  # 0.02 + 0.01 + 0.05 + 0.10 - 0.20
    ]


def test_open_legs_are_marked_at_the_mids_of_the_runs_end(journal: Journal) -> None:
    """An open hedged pair: realized is only the fees; the mark values each leg at its venue's
    mid at the end of the run, so the basis locked in shows up there."""
    hedged_buy(journal, "m1", 7, price="100", hedge="100.50")
    assert Decimal(summarize(journal)["pnl_mark_quote"]) == 0  # no mids: the fill prices
    journal.record_mark(MID, MAKER, str(journal.run_id), Decimal("99"))
    journal.record_mark(MID, HEDGE, str(journal.run_id), Decimal("99.20"))

    summary = summarize(journal)

    assert Decimal(summary["pnl_realized_quote"]) == Decimal("-0.03")
    # Backpack long 1 from 100 at 99: -1; Lighter short 1 from 100.50 at 99.20: +1.30.
    assert Decimal(summary["pnl_mark_quote"]) == Decimal("0.30")
    assert Decimal(summary["pnl_quote"]) == Decimal("0.27")
    assert Decimal(summary["wear_quote"]) == Decimal("-0.27")


def test_partial_closes_realize_at_average_cost(journal: Journal) -> None:
    """Buys of 1 at 100 and 1 at 102 (average 101), a sell of 1 at 104: 3 realized, the rest
    marked at the last price 104: +3."""
    record(journal, MAKER, "a", Side.BUY, "1", "100")
    record(journal, MAKER, "b", Side.BUY, "1", "102")
    record(journal, MAKER, "c", Side.SELL, "1", "104")

    summary = summarize(journal)

    assert Decimal(summary["pnl_realized_quote"]) == 3
    assert Decimal(summary["pnl_mark_quote"]) == 3

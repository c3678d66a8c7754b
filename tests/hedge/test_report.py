"""The run report, computed from journals built by hand."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from exchanges.base import Fill, Side
from hedge.journal import Journal
from hedge.report import REPORT_KEYS, decimal_text, percentile, summarize

MAKER, HEDGE = "backpack", "lighter"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    book = Journal(tmp_path / "report.sqlite")
    book.start_run(mode="live", ticker="BTC", settings={})
    try:
        yield book
    finally:
        book.close()


def record(
    journal: Journal,
    venue: str,
    trade_id: str,
    side: Side,
    qty: str,
    price: str,
    *,
    fee: str = "0",
    client_id: int | None = None,
) -> None:
    assert journal.record_fill(
        Fill(
            venue,
            "BTC",
            trade_id,
            f"order-{trade_id}",
            client_id,
            side,
            Decimal(qty),
            Decimal(price),
            Decimal(fee),
            is_maker=venue == MAKER,
        )
    )


def set_times(journal: Journal, sql: str, params: tuple[object, ...]) -> None:
    """Rewrite timestamps through a second connection, as if events happened at those times."""
    with sqlite3.connect(journal.path) as db:
        db.execute(sql, params)


def test_empty_journal_has_every_key_and_is_json(journal: Journal) -> None:
    summary = summarize(journal)
    assert set(summary) == set(REPORT_KEYS)
    json.dumps(summary)
    assert summary["maker_fills"] == summary["hedge_fills"] == summary["double_hedges"] == 0
    assert summary["net_delta"] == "0"
    assert summary["hedge_latency_ms"] == {"p50": 0.0, "p99": 0.0, "max": 0.0}
    assert summary["unhedged_max_s"] == 0.0 and summary["edge_bps"] == 0.0


def test_full_journal_has_every_key_and_survives_json(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "0.01", "65000.1", fee="-0.01")
    record(journal, HEDGE, "h1", Side.SELL, "0.01", "65010", fee="0.02", client_id=5)
    journal.allocate(MAKER, "m1", 5, Decimal("0.01"), 420_000)
    journal.record_halt("legs unbalanced")
    summary = summarize(journal)
    assert set(summary) == set(REPORT_KEYS)
    decoded = json.loads(json.dumps(summary))
    for key in ("maker_volume", "hedge_volume", "net_delta", "fees_quote", "pnl_quote"):
        assert isinstance(decoded[key], str)
        Decimal(decoded[key])  # a decimal string, nothing lost to floats


def test_counts_volumes_and_net_positions(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "0.01", "100")
    record(journal, MAKER, "m2", Side.BUY, "0.02", "101")
    record(journal, MAKER, "m3", Side.SELL, "0.005", "102")
    record(journal, HEDGE, "h1", Side.SELL, "0.02", "100.5", client_id=1)
    summary = summarize(journal)
    assert summary["maker_fills"] == 3 and summary["hedge_fills"] == 1
    assert Decimal(summary["maker_volume"]) == Decimal("3.53")  # 1 + 2.02 + 0.51
    assert Decimal(summary["hedge_volume"]) == Decimal("2.01")
    assert Decimal(summary["net_position_maker"]) == Decimal("0.025")
    assert Decimal(summary["net_position_hedge"]) == Decimal("-0.02")
    assert Decimal(summary["net_delta"]) == Decimal("0.005")


def test_decimal_strings_never_use_exponent_notation(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "0.00000010", "65000")
    record(journal, HEDGE, "h1", Side.SELL, "0.00000010", "65000", client_id=1)
    summary = summarize(journal)
    assert summary["net_delta"] == "0.00000000"
    assert "E" not in summary["maker_volume"] + summary["net_position_maker"]
    assert decimal_text(Decimal("-0.000")) == "0.000"
    assert decimal_text(Decimal("1E+3")) == "1000"


def test_maker_venue_name_decides_which_fills_are_maker_fills(journal: Journal) -> None:
    record(journal, "paper-maker", "m1", Side.BUY, "1", "100")
    record(journal, HEDGE, "h1", Side.SELL, "1", "100", client_id=1)
    summary = summarize(journal, maker_venue="paper-maker")
    assert summary["maker_fills"] == 1 and summary["hedge_fills"] == 1
    assert summary["net_position_maker"] == "1"


def test_double_hedges_count_over_allocated_maker_fills_and_over_hedges(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "0.01", "100")
    record(journal, MAKER, "m2", Side.BUY, "0.01", "100")
    journal.allocate(MAKER, "m1", 1, Decimal("0.01"), None)
    journal.allocate(MAKER, "m1", 2, Decimal("0.005"), None)  # covered 1.5 times
    journal.allocate(MAKER, "m2", 3, Decimal("0.01"), None)  # exactly once: fine
    assert summarize(journal)["double_hedges"] == 1
    journal.set_counter("over_hedges", 2)
    assert summarize(journal)["double_hedges"] == 3


def test_exact_coverage_is_no_double_hedge(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.SELL, "0.03", "100")
    for client_id in (1, 2, 3):
        journal.allocate(MAKER, "m1", client_id, Decimal("0.01"), None)
    journal.set_counter("over_hedges", 0)
    assert summarize(journal)["double_hedges"] == 0


def test_hedge_latency_percentiles_come_from_allocation_latency(journal: Journal) -> None:
    for i in range(1, 101):
        record(journal, MAKER, f"m{i}", Side.BUY, "0.01", "100")
        journal.allocate(MAKER, f"m{i}", i, Decimal("0.01"), i * 10_000)  # i / 100 ms
    # A second allocation of the same fill does not add a latency sample.
    journal.allocate(MAKER, "m1", 999, Decimal("0"), 999_000_000)
    latency = summarize(journal)["hedge_latency_ms"]
    assert latency == {"p50": 0.5, "p99": 0.99, "max": 1.0}


def test_allocations_without_latency_are_not_samples(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "0.01", "100")
    journal.allocate(MAKER, "m1", 1, Decimal("0.01"), None)
    assert summarize(journal)["hedge_latency_ms"] == {"p50": 0.0, "p99": 0.0, "max": 0.0}


def test_unhedged_max_runs_to_the_allocation_that_covered_the_last_of_a_fill(
    journal: Journal,
) -> None:
    record(journal, MAKER, "m1", Side.BUY, "0.02", "100")
    record(journal, MAKER, "m2", Side.BUY, "0.01", "100")
    journal.allocate(MAKER, "m1", 1, Decimal("0.01"), None)
    journal.allocate(MAKER, "m1", 2, Decimal("0.01"), None)
    journal.allocate(MAKER, "m2", 3, Decimal("0.01"), None)
    set_times(journal, "UPDATE fills SET recorded_at = 1000.0", ())
    set_times(journal, "UPDATE allocations SET created_at = 1000.2 WHERE hedge_client_id = 1", ())
    set_times(journal, "UPDATE allocations SET created_at = 1001.5 WHERE hedge_client_id = 2", ())
    set_times(journal, "UPDATE allocations SET created_at = 1000.1 WHERE hedge_client_id = 3", ())
    assert summarize(journal)["unhedged_max_s"] == 1.5


def test_a_partly_covered_fill_counts_to_the_end_of_its_run(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "0.02", "100")
    journal.allocate(MAKER, "m1", 1, Decimal("0.01"), None)  # half of it, then nothing
    journal.end_run(3, "halted")
    set_times(journal, "UPDATE fills SET recorded_at = 1000.0", ())
    set_times(journal, "UPDATE allocations SET created_at = 1000.1", ())
    set_times(journal, "UPDATE runs SET ended_at = 1007.25", ())
    assert summarize(journal)["unhedged_max_s"] == 7.25


def test_an_uncovered_fill_of_a_running_run_counts_until_now(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "0.02", "100")
    set_times(journal, "UPDATE fills SET recorded_at = ?", (time.time() - 30.0,))
    assert 29.0 <= summarize(journal)["unhedged_max_s"] <= 40.0


def test_fees_and_pnl_of_a_round_trip(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "1", "100", fee="0.04")
    record(journal, MAKER, "m2", Side.SELL, "1", "101", fee="0.06")
    summary = summarize(journal)
    assert Decimal(summary["fees_quote"]) == Decimal("0.1")
    assert Decimal(summary["pnl_quote"]) == Decimal("0.9")


def test_pnl_values_an_open_position_at_the_last_price_of_its_venue(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "1", "100")
    record(journal, MAKER, "m2", Side.BUY, "1", "102")  # long 2, last 102: +2 unrealized
    record(journal, HEDGE, "h1", Side.SELL, "1", "101", client_id=1)  # short 1 at last price
    assert Decimal(summarize(journal)["pnl_quote"]) == Decimal("2")


def test_maker_rebates_raise_pnl(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "1", "100", fee="-0.02")
    record(journal, HEDGE, "h1", Side.SELL, "1", "100", fee="0.05", client_id=1)
    summary = summarize(journal)
    assert Decimal(summary["fees_quote"]) == Decimal("0.03")
    assert Decimal(summary["pnl_quote"]) == Decimal("-0.03")


@pytest.mark.parametrize(
    ("maker_side", "maker_price", "hedge_price", "edge"),
    [
        (Side.BUY, "100", "100.5", 50.0),  # bought low, hedged higher: earned
        (Side.SELL, "100", "99.5", 50.0),  # sold high, hedged lower: earned
        (Side.BUY, "100", "99.9", -10.0),  # paid the spread
    ],
)
def test_edge_bps_is_positive_when_the_pair_earned_the_spread(
    journal: Journal, maker_side: Side, maker_price: str, hedge_price: str, edge: float
) -> None:
    record(journal, MAKER, "m1", maker_side, "1", maker_price)
    record(journal, HEDGE, "h1", maker_side.opposite, "1", hedge_price, client_id=9)
    journal.allocate(MAKER, "m1", 9, Decimal("1"), None)
    assert summarize(journal)["edge_bps"] == edge


def test_edge_bps_is_weighted_by_allocated_quantity_and_hedge_average(journal: Journal) -> None:
    record(journal, MAKER, "m1", Side.BUY, "3", "100")
    record(journal, HEDGE, "h1", Side.SELL, "1", "100.3", client_id=1)  # client 1 avg 100.2
    record(journal, HEDGE, "h2", Side.SELL, "1", "100.1", client_id=1)
    record(journal, HEDGE, "h3", Side.SELL, "1", "100.5", client_id=2)
    journal.allocate(MAKER, "m1", 1, Decimal("2"), None)  # 20 bps on 2
    journal.allocate(MAKER, "m1", 2, Decimal("1"), None)  # 50 bps on 1
    assert summarize(journal)["edge_bps"] == 30.0


def test_halts_cycles_and_reconnects_are_counted(journal: Journal) -> None:
    journal.record_halt("exposure unhedged for 15 s")
    journal.record_halt("legs unbalanced")
    done = journal.start_cycle(1, "open", Side.BUY, Decimal("0.01"))
    journal.end_cycle(done, "done")
    journal.start_cycle(1, "close", Side.SELL, Decimal("0"))  # never ended
    journal.set_counter("reconnects_backpack", 2)
    journal.set_counter("reconnects_lighter", 1)
    summary = summarize(journal)
    assert summary["halts"] == 2
    assert summary["halt_reasons"] == ["exposure unhedged for 15 s", "legs unbalanced"]
    assert summary["cycles"] == 1
    assert summary["reconnects"] == 3


def test_run_id_limits_the_report_to_one_run(journal: Journal) -> None:
    first = journal.run_id
    record(journal, MAKER, "m1", Side.BUY, "1", "100")
    journal.allocate(MAKER, "m1", 1, Decimal("2"), 1_000_000)  # over-allocated in run 1
    journal.record_halt("first run halted")
    journal.set_counter("over_hedges", 1)
    journal.end_run(3, "halted")
    second = journal.start_run(mode="live", ticker="BTC", settings={})
    record(journal, MAKER, "m2", Side.SELL, "2", "100")
    record(journal, HEDGE, "h2", Side.BUY, "2", "99", client_id=2)
    journal.allocate(MAKER, "m2", 2, Decimal("2"), 3_000_000)

    only_second = summarize(journal, run_id=second)
    assert only_second["maker_fills"] == 1 and only_second["hedge_fills"] == 1
    assert only_second["double_hedges"] == 0 and only_second["halts"] == 0
    assert only_second["hedge_latency_ms"]["max"] == 3.0
    # Positions carry over between runs: run 1's unhedged buy of 1 is still open.
    assert only_second["net_position_maker"] == "-1" and only_second["net_delta"] == "1"

    only_first = summarize(journal, run_id=first)
    assert only_first["maker_fills"] == 1 and only_first["double_hedges"] == 2
    assert only_first["halt_reasons"] == ["first run halted"]

    everything = summarize(journal)
    assert everything["maker_fills"] == 2 and everything["halts"] == 1


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, 0.0),
        ([7.0], 0.99, 7.0),
        ([1.0, 2.0], 0.5, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([4.0, 1.0, 3.0, 2.0], 0.75, 3.0),
        ([float(i) for i in range(1, 11)], 0.99, 10.0),
        ([float(i) for i in range(1, 101)], 0.99, 99.0),
        ([float(i) for i in range(1, 101)], 0.29, 29.0),
        ([float(i) for i in range(1, 101)], 0.0, 1.0),
        ([float(i) for i in range(1, 101)], 1.0, 100.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], fraction: float, expected: float) -> None:
    assert percentile(values, fraction) == expected


def test_requests_per_venue_come_from_the_runs_budget_counters(journal: Journal) -> None:
    journal.set_counter("budget_requests_lighter", 23)
    journal.set_counter("budget_waited_lighter", 2)
    journal.set_counter("budget_http_429_lighter", 1)
    journal.set_counter("budget_requests_backpack", 40)
    journal.set_counter("reconnects_lighter", 3)  # not a budget counter
    journal.flush()
    assert summarize(journal)["requests"] == {
        "backpack": {"requests": 40, "waited": 0, "http_429": 0},
        "lighter": {"requests": 23, "waited": 2, "http_429": 1},
    }


def test_re_sends_are_counted_apart_from_the_latency_per_run_and_in_all(journal: Journal) -> None:
    first = journal.run_id
    journal.set_counter("hedge_resends", 2)
    journal.set_counter("reconnects_lighter", 1)
    journal.start_run(mode="live", ticker="BTC", settings={})
    journal.set_counter("hedge_resends", 3)
    assert summarize(journal)["hedge_resends"] == 5
    assert summarize(journal, run_id=first)["hedge_resends"] == 2
    assert summarize(journal, run_id=first)["reconnects"] == 1
    assert summarize(journal, run_id=journal.run_id)["reconnects"] == 0

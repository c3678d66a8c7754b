"""The SQLite journal: idempotent fills, transactions, orders, allocations, runs, CSV log."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from exchanges.base import Fill, Order, OrderKind, OrderStatus, Side
from hedge.journal import CSV_HEADER, Journal


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    book = Journal(tmp_path / "j.sqlite", csv_path=tmp_path / "trades.csv")
    book.start_run(mode="live", ticker="BTC", settings={"size": "0.01"})
    try:
        yield book
    finally:
        book.close()


def fill(
    trade_id: str,
    *,
    venue: str = "backpack",
    side: Side = Side.BUY,
    qty: str = "0.01",
    price: str = "65000.1",
    fee: str = "0",
    client_id: int | None = 7,
) -> Fill:
    return Fill(
        venue,
        "BTC_USDC_PERP",
        trade_id,
        "order-1",
        client_id,
        side,
        Decimal(qty),
        Decimal(price),
        Decimal(fee),
        is_maker=venue == "backpack",
        venue_ts_ms=1_700_000_000_000,
        recv_ns=123,
    )


def order(
    client_id: int, *, venue: str = "backpack", status: OrderStatus = OrderStatus.PENDING_NEW
) -> Order:
    return Order(
        venue,
        "BTC_USDC_PERP",
        client_id,
        Side.BUY,
        Decimal("0.01"),
        Decimal("65000.1"),
        OrderKind.POST_ONLY,
        status,
    )


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_journal_uses_wal_mode(journal: Journal) -> None:
    assert journal.query("PRAGMA journal_mode") == [("wal",)]


# -- fills ---------------------------------------------------------------------------------------
def test_record_fill_is_idempotent_per_trade_id(journal: Journal) -> None:
    assert journal.record_fill(fill("t1")) is True
    assert journal.record_fill(fill("t1")) is False
    assert [f.trade_id for f in journal.fills()] == ["t1"]
    assert journal.has_fill("backpack", "t1")


def test_fills_are_unique_per_venue_and_trade_id_in_the_schema(journal: Journal) -> None:
    journal.record_fill(fill("t1"))
    with pytest.raises(sqlite3.IntegrityError):
        journal.query(
            "INSERT INTO fills (venue, trade_id, run_id, order_id, symbol, side, qty, price, fee,"
            " is_maker, venue_ts_ms, recv_ns, recorded_at)"
            " VALUES ('backpack', 't1', 1, 'o', 's', 'buy', '1', '1', '0', 1, 0, 0, 0)"
        )


def test_same_trade_id_on_two_venues_is_two_fills(journal: Journal) -> None:
    assert journal.record_fill(fill("42", venue="backpack"))
    assert journal.record_fill(fill("42", venue="lighter", side=Side.SELL))
    assert [(f.venue, f.trade_id) for f in journal.fills()] == [
        ("backpack", "42"),
        ("lighter", "42"),
    ]
    assert [f.trade_id for f in journal.fills("lighter")] == ["42"]
    assert not journal.has_fill("paper", "42")


@pytest.mark.parametrize(
    ("qty", "price", "fee"),
    [("0.00001", "65000.1", "0.0000325"), ("0.00000010", "0.000001", "-0.01"), ("12", "1E+3", "0")],
)
def test_decimals_round_trip_exactly(journal: Journal, qty: str, price: str, fee: str) -> None:
    journal.record_fill(fill("t1", qty=qty, price=price, fee=fee))
    (stored,) = journal.fills()
    assert (stored.qty, stored.price, stored.fee) == (Decimal(qty), Decimal(price), Decimal(fee))
    assert str(stored.qty) == str(Decimal(qty))  # not even the exponent changes


def test_journal_fill_carries_side_maker_flag_client_and_run(journal: Journal) -> None:
    journal.record_fill(fill("t1", side=Side.SELL, client_id=None))
    (stored,) = journal.fills()
    assert stored.side is Side.SELL and stored.is_maker and stored.client_id is None
    assert stored.run_id == journal.run_id


def test_net_position_is_the_signed_sum_of_a_venues_fills(journal: Journal) -> None:
    journal.record_fill(fill("t1", qty="0.03"))
    journal.record_fill(fill("t2", qty="0.01", side=Side.SELL))
    journal.record_fill(fill("h1", venue="lighter", qty="0.02", side=Side.SELL))
    assert journal.net_position("backpack") == Decimal("0.02")
    assert journal.net_position("lighter") == Decimal("-0.02")


def test_fills_can_be_limited_to_one_run(journal: Journal) -> None:
    first_run = journal.run_id
    journal.record_fill(fill("t1"))
    journal.start_run(mode="live", ticker="BTC", settings={})
    journal.record_fill(fill("t2"))
    assert [f.trade_id for f in journal.fills(run_id=first_run)] == ["t1"]
    assert [f.trade_id for f in journal.fills(run_id=journal.run_id)] == ["t2"]


# -- transactions --------------------------------------------------------------------------------
def test_transaction_commits_its_writes_together(journal: Journal, tmp_path: Path) -> None:
    with journal.transaction():
        journal.record_fill(fill("t1"))
        journal.allocate("backpack", "t1", 9, Decimal("0.01"), 1000)
        other = Journal(tmp_path / "j.sqlite")  # another connection sees nothing yet
        try:
            assert other.fills() == []
        finally:
            other.close()
    assert [f.trade_id for f in journal.fills()] == ["t1"]
    assert journal.allocated("backpack", "t1") == Decimal("0.01")


def test_transaction_rolls_back_everything_on_an_exception(journal: Journal) -> None:
    with pytest.raises(RuntimeError), journal.transaction():
        journal.record_fill(fill("t1"))
        journal.register_order(order(5), purpose="maker")
        raise RuntimeError("boom")
    assert journal.fills() == []
    assert not journal.is_our_order("backpack", 5)
    assert journal.record_fill(fill("t1")) is True  # the rollback forgot it entirely


def test_transaction_is_reentrant_and_the_outer_one_decides(journal: Journal) -> None:
    with pytest.raises(RuntimeError), journal.transaction():
        journal.record_fill(fill("t1"))
        with journal.transaction():
            journal.record_fill(fill("t2"))
        raise RuntimeError("after the inner block")
    assert journal.fills() == []

    with journal.transaction():
        with journal.transaction():
            journal.record_fill(fill("t3"))
        journal.record_fill(fill("t4"))
    assert [f.trade_id for f in journal.fills()] == ["t3", "t4"]


# -- orders --------------------------------------------------------------------------------------
def test_registered_order_is_ours_and_open_until_finished(journal: Journal) -> None:
    journal.register_order(order(11), purpose="maker", sent_ns=5)
    journal.register_order(order(12, venue="lighter"), purpose="hedge")
    assert journal.is_our_order("backpack", 11)
    assert not journal.is_our_order("lighter", 11)
    assert not journal.is_our_order("backpack", None)
    assert journal.open_orders("backpack") == [(11, "maker")]
    assert journal.open_orders("lighter") == [(12, "hedge")]

    journal.update_order("backpack", 11, status=OrderStatus.OPEN, order_id="B-1")
    assert journal.open_orders("backpack") == [(11, "maker")]
    journal.update_order(
        "backpack", 11, status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal("0.004")
    )
    journal.update_order("backpack", 11, status=OrderStatus.PENDING_CANCEL)
    assert journal.open_orders("backpack") == [(11, "maker")]
    journal.update_order("backpack", 11, status=OrderStatus.CANCELED)
    assert journal.open_orders("backpack") == []

    row = journal.query(
        "SELECT status, order_id, filled_qty, sent_ns FROM orders WHERE client_id = 11"
    )
    # order_id and filled_qty are kept when a later update does not give them.
    assert row == [("canceled", "B-1", "0.004", 5)]


def test_a_mark_keeps_the_first_price_recorded(journal: Journal) -> None:
    journal.record_mark("hedge_fill", "lighter", "7", Decimal("100.5"))
    journal.record_mark("hedge_fill", "lighter", "7", Decimal("99"))
    journal.record_mark("maker_fill", "backpack", "t1", Decimal("101"))
    rows = journal.query("SELECT kind, venue, key, price FROM marks ORDER BY kind")
    assert rows == [
        ("hedge_fill", "lighter", "7", "100.5"),
        ("maker_fill", "backpack", "t1", "101"),
    ]


def test_max_client_id_spans_venues(journal: Journal) -> None:
    assert journal.max_client_id() == 0
    journal.register_order(order(40), purpose="maker")
    journal.register_order(order(77, venue="lighter"), purpose="hedge")
    journal.register_order(order(50), purpose="maker")
    assert journal.max_client_id() == 77


# -- allocations ---------------------------------------------------------------------------------
def test_allocated_sums_every_hedge_covering_a_maker_fill(journal: Journal) -> None:
    assert journal.allocated("backpack", "t1") == Decimal(0)
    journal.allocate("backpack", "t1", 100, Decimal("0.004"), 250_000)
    journal.allocate("backpack", "t1", 101, Decimal("0.006"), None)
    journal.allocate("backpack", "t2", 101, Decimal("0.001"), None)
    assert journal.allocated("backpack", "t1") == Decimal("0.010")
    assert journal.allocated("paper", "t1") == Decimal(0)
    rows = journal.query(
        "SELECT maker_venue, maker_trade_id, hedge_client_id, qty, latency_ns FROM allocations"
    )
    assert rows == [
        ("backpack", "t1", 100, "0.004", 250_000),
        ("backpack", "t1", 101, "0.006", None),
        ("backpack", "t2", 101, "0.001", None),
    ]


# -- runs ----------------------------------------------------------------------------------------
def test_no_unfinished_run_in_a_new_journal(tmp_path: Path) -> None:
    book = Journal(tmp_path / "new.sqlite")
    try:
        assert book.unfinished_run() is None
    finally:
        book.close()


def test_a_run_that_ended_well_is_not_unfinished(journal: Journal) -> None:
    journal.set_baseline(Decimal("0.5"))
    journal.end_run(0, "done")
    assert journal.unfinished_run() is None


def test_a_killed_run_is_unfinished_with_its_baseline(journal: Journal) -> None:
    journal.set_baseline(Decimal("0.05"))
    started = journal.query("SELECT started_at FROM runs")[0][0]
    assert journal.unfinished_run() == (journal.run_id, Decimal("0.05"), started)


@pytest.mark.parametrize("exit_code", [1, 3, 130])
def test_a_halted_crashed_or_interrupted_run_is_unfinished(
    journal: Journal, exit_code: int
) -> None:
    journal.set_baseline(Decimal("-0.02"))
    journal.end_run(exit_code, "halted")
    unfinished = journal.unfinished_run()
    assert unfinished is not None
    assert unfinished[:2] == (journal.run_id, Decimal("-0.02"))


def test_set_baseline_replaces_the_current_runs_baseline(journal: Journal) -> None:
    journal.set_baseline(Decimal("0.01"))
    journal.set_baseline(Decimal("0.00002"))
    unfinished = journal.unfinished_run()
    assert unfinished is not None and unfinished[1] == Decimal("0.00002")


def test_a_run_that_failed_before_its_baseline_does_not_hide_an_earlier_unfinished_one(
    journal: Journal,
) -> None:
    killed = journal.run_id
    journal.set_baseline(Decimal("0.03"))  # then killed mid-iteration
    journal.start_run(mode="live", ticker="BTC", settings={})  # no book: halted before reconcile
    journal.end_run(3, "no order book")
    unfinished = journal.unfinished_run()
    assert unfinished is not None and unfinished[:2] == (killed, Decimal("0.03"))


def test_a_later_finished_run_clears_an_earlier_unfinished_one(journal: Journal) -> None:
    journal.set_baseline(Decimal("0.03"))
    journal.start_run(mode="live", ticker="BTC", settings={})
    journal.set_baseline(Decimal("0.03"))
    journal.end_run(0, "done")
    assert journal.unfinished_run() is None


def test_run_settings_are_stored_as_json(journal: Journal) -> None:
    assert journal.query("SELECT mode, ticker, settings FROM runs") == [
        ("live", "BTC", '{"size": "0.01"}')
    ]


# -- CSV trade log -------------------------------------------------------------------------------
def test_csv_has_a_header_and_one_row_per_new_fill(journal: Journal, tmp_path: Path) -> None:
    journal.record_fill(fill("t1", qty="0.00001", price="65000.1", fee="0.01"))
    journal.record_fill(fill("t1"))  # duplicate: no row
    journal.record_fill(fill("h1", venue="lighter", side=Side.SELL), hedge_of="t1")
    rows = csv_rows(tmp_path / "trades.csv")
    assert rows[0] == CSV_HEADER
    run = str(journal.run_id)
    assert [row[1:] for row in rows[1:]] == [
        [run, "live", "backpack", "buy", "65000.1", "0.00001", "0.01", "order-1", "7", "t1", ""],
        [run, "live", "lighter", "sell", "65000.1", "0.01", "0", "order-1", "7", "h1", "t1"],
    ]
    assert rows[1][0].endswith("+00:00")  # ISO time in UTC


def test_a_trade_log_with_older_columns_is_moved_aside_not_mixed(tmp_path: Path) -> None:
    old = tmp_path / "trades.csv"
    old.write_text("time,venue,side,price,qty,fee,order_id,trade_id\nx,backpack,buy,1,1,0,o,t\n")
    book = Journal(tmp_path / "j2.sqlite", csv_path=old)
    book.close()
    assert csv_rows(old) == [CSV_HEADER]
    aside = [p for p in tmp_path.glob("trades-old-*.csv")]
    assert len(aside) == 1 and "x,backpack" in aside[0].read_text()


def test_csv_rows_follow_the_transaction_outcome(journal: Journal, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), journal.transaction():
        journal.record_fill(fill("t1"))
        raise RuntimeError("boom")
    assert csv_rows(tmp_path / "trades.csv") == [CSV_HEADER]  # rolled back: no phantom row
    with journal.transaction():
        journal.record_fill(fill("t1"))
    assert [row[-2] for row in csv_rows(tmp_path / "trades.csv")[1:]] == ["t1"]


def test_csv_is_appended_across_reopen_with_one_header(tmp_path: Path) -> None:
    for trade_id in ("t1", "t2"):
        book = Journal(tmp_path / "j.sqlite", csv_path=tmp_path / "trades.csv")
        book.record_fill(fill(trade_id))
        book.close()
    rows = csv_rows(tmp_path / "trades.csv")
    assert rows[0] == CSV_HEADER and CSV_HEADER not in rows[1:]
    assert [row[-2] for row in rows[1:]] == ["t1", "t2"]


def test_an_empty_csv_file_gets_its_header(tmp_path: Path) -> None:
    (tmp_path / "trades.csv").touch()
    book = Journal(tmp_path / "j.sqlite", csv_path=tmp_path / "trades.csv")
    book.record_fill(fill("t1"))
    book.close()
    rows = csv_rows(tmp_path / "trades.csv")
    assert rows[0] == CSV_HEADER and len(rows) == 2


# -- restart -------------------------------------------------------------------------------------
def test_a_reopened_journal_sees_earlier_runs_orders_fills_and_allocations(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "BTC.sqlite"  # parent directory is created
    first = Journal(path)
    first.start_run(mode="live", ticker="BTC", settings={})
    first.set_baseline(Decimal("0.01"))
    first.register_order(order(900), purpose="maker")
    first.record_fill(fill("t1", qty="0.00001"))
    first.allocate("backpack", "t1", 901, Decimal("0.00001"), 5)
    first.close()  # as if killed after the last commit

    second = Journal(path)
    try:
        assert second.record_fill(fill("t1", qty="0.00001")) is False
        assert second.is_our_order("backpack", 900)
        assert second.open_orders("backpack") == [(900, "maker")]
        assert second.max_client_id() == 900
        assert second.allocated("backpack", "t1") == Decimal("0.00001")
        assert second.net_position("backpack") == Decimal("0.00001")
        unfinished = second.unfinished_run()
        assert unfinished is not None and unfinished[1] == Decimal("0.01")
    finally:
        second.close()


def test_cycles_halts_and_counters_are_recorded(journal: Journal) -> None:
    cycle = journal.start_cycle(1, "open", Side.BUY, Decimal("0.01"))
    journal.end_cycle(cycle, "done")
    journal.record_halt("legs unbalanced")
    journal.set_counter("over_hedges", 1)
    journal.set_counter("over_hedges", 2)  # replaces, per run
    assert journal.query("SELECT iteration, phase, side, target, result FROM cycles") == [
        (1, "open", "buy", "0.01", "done")
    ]
    assert journal.query("SELECT reason FROM halts") == [("legs unbalanced",)]
    assert journal.query("SELECT name, value FROM counters") == [("over_hedges", 2.0)]


# -- checkpoints -----------------------------------------------------------------------------------
def test_no_automatic_checkpoint_stalls_a_commit(journal: Journal) -> None:
    assert journal.query("PRAGMA wal_autocheckpoint") == [(0,)]


def test_checkpoint_folds_the_wal_into_the_database_file(journal: Journal, tmp_path: Path) -> None:
    journal.record_fill(fill("t1", qty="0.00001"))
    journal.checkpoint()
    # The database file alone (no -wal beside it) now holds the fill.
    copy = tmp_path / "copy" / "alone.sqlite"
    copy.parent.mkdir()
    copy.write_bytes(journal.path.read_bytes())
    alone = Journal(copy)
    try:
        assert [(f.trade_id, f.qty) for f in alone.fills()] == [("t1", Decimal("0.00001"))]
    finally:
        alone.close()


def test_csv_rows_written_by_the_writer_thread_carry_the_runs_mode(tmp_path: Path) -> None:
    book = Journal(tmp_path / "w.sqlite", csv_path=tmp_path / "w.csv")
    book.start_run(mode="demo", ticker="BTC", settings={})
    book.start_writer()
    try:
        book.defer("record_fill", fill("h1", venue="lighter", side=Side.SELL), "t1")
        assert book.flush()
    finally:
        book.close()
    (row,) = csv_rows(tmp_path / "w.csv")[1:]
    assert row[1:3] == [str(book.run_id), "demo"] and row[-2:] == ["h1", "t1"]

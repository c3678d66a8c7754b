"""Deferred journal writes (the hot path's) and reserved client-id blocks (restart safety)."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

from exchanges.base import Fill, Side
from hedge.hedger import ClientIds
from hedge.journal import Journal


def fill(trade_id: str, venue: str = "backpack", qty: str = "0.001") -> Fill:
    return Fill(
        venue,
        "BTC_USDC_PERP",
        trade_id,
        "o1",
        7,
        Side.BUY,
        Decimal(qty),
        Decimal("65000.1"),
        is_maker=True,
    )


def test_deferred_writes_are_committed_in_order_by_the_writer(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", csv_path=tmp_path / "t.csv")
    journal.start_run(mode="demo", ticker="BTC", settings={})
    journal.start_writer()
    main_thread = threading.get_ident()
    for n in range(50):
        journal.defer("record_fill", fill(f"t{n}"))
    journal.defer("allocate", "backpack", "t0", 9, Decimal("0.001"), 1234)

    assert journal.flush(5)
    assert [f.trade_id for f in journal.fills("backpack")] == [f"t{n}" for n in range(50)]
    assert journal.allocated("backpack", "t0") == Decimal("0.001")
    assert threading.get_ident() == main_thread
    journal.close()
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert len(rows) == 51  # header + one row per fill, written by the writer


def test_a_group_commits_together_and_duplicates_stay_ignored(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.start_run(mode="demo", ticker="BTC", settings={})
    journal.start_writer()
    with journal.group():
        journal.defer("record_fill", fill("a"))
        journal.defer("record_fill", fill("a"))  # the UNIQUE key still guards the database
        journal.defer("allocate", "backpack", "a", 3, Decimal("0.001"), None)
    journal.flush()
    assert len(journal.fills()) == 1 and journal.allocated("backpack", "a") == Decimal("0.001")
    journal.close()


def test_without_a_writer_defer_writes_at_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.start_run(mode="demo", ticker="BTC", settings={})
    journal.defer("record_fill", fill("x"))
    assert journal.has_fill("backpack", "x")
    journal.close()


def test_client_ids_come_from_durably_reserved_blocks(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.start_run(mode="demo", ticker="BTC", settings={})
    ids = ClientIds(journal)
    first = ids.next()
    # Nothing registered this id, yet the journal knows it is ours (the block was reserved).
    assert journal.is_our_order("lighter", first)
    assert not journal.is_our_order("lighter", first - 1)
    used = [ids.next() for _ in range(ClientIds.BLOCK * 2)]
    assert len(set(used)) == len(used) and all(journal.is_our_order("lighter", i) for i in used)
    journal.close()

    reopened = Journal(tmp_path / "j.sqlite")
    later = ClientIds(reopened)
    assert later.next() > max(used)  # a restart never reuses an id
    reopened.close()


def test_one_bad_deferred_write_does_not_lose_the_others(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.start_run(mode="demo", ticker="BTC", settings={})
    journal.start_writer()
    # Hold the database so the writer waits: the bad write then shares a batch with good-2.
    journal._db.execute("BEGIN IMMEDIATE")
    journal.defer("record_fill", fill("good-1"))
    journal.defer("allocate", "backpack", "x", 1, "not a decimal", None, "extra argument")
    journal.defer("record_fill", fill("good-2"))
    journal._db.execute("COMMIT")
    journal.flush()
    assert [f.trade_id for f in journal.fills()] == ["good-1", "good-2"]
    assert journal.writer_errors == 1
    journal.close()


def test_a_new_days_journal_points_at_yesterdays_unfinished_run(tmp_path: Path) -> None:
    from hedge.app import unfinished_elsewhere

    yesterday = tmp_path / "BTC-20261120.sqlite"
    old = Journal(yesterday)
    old.start_run(mode="live", ticker="BTC", settings={})
    old.set_baseline(Decimal(0))  # started trading, then was killed: no end_run
    old.close()
    today = tmp_path / "BTC-20261121.sqlite"
    assert unfinished_elsewhere(today) == yesterday

    finished = Journal(yesterday)
    finished.start_run(mode="live", ticker="BTC", settings={})
    finished.set_baseline(Decimal(0))
    finished.end_run(0, "done")
    finished.close()
    assert unfinished_elsewhere(today) is None
    assert unfinished_elsewhere(yesterday) is None  # an existing journal resumes itself

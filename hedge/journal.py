"""The journal: every order, fill, hedge, cycle and halt of a run, in SQLite, plus a CSV trade log.

Written before acting ("track before you send"): a maker order is registered before its request
leaves, and a hedge with the maker quantities it covers is registered before it is sent, so a
crash at any point leaves enough to reconcile on restart. Fills carry a UNIQUE (venue, trade_id)
key: recording the same fill twice is a no-op that reports itself, which is what makes hedging
idempotent across duplicated events, REST backfills and restarts.

SQLite in WAL mode with synchronous=NORMAL: a commit reaches the OS before the call returns, so
a killed process (kill -9) loses nothing; only a power cut can lose the last commits. Money is
stored as decimal text and read back as Decimal.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TextIO, cast

from exchanges.base import ConfigError, Fill, Order, OrderStatus, Side

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    ended_at REAL,
    mode TEXT NOT NULL,
    ticker TEXT NOT NULL,
    settings TEXT NOT NULL,
    exit_code INTEGER,
    reason TEXT,
    maker_baseline TEXT             -- maker position the iterations return to
);
CREATE TABLE IF NOT EXISTS orders (
    venue TEXT NOT NULL,
    client_id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    purpose TEXT NOT NULL,          -- maker | hedge | flatten
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty TEXT NOT NULL,
    price TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    order_id TEXT,
    filled_qty TEXT NOT NULL DEFAULT '0',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    sent_ns INTEGER,                -- perf_counter_ns just before the request was handed over
    PRIMARY KEY (venue, client_id)
);
CREATE TABLE IF NOT EXISTS fills (
    venue TEXT NOT NULL,
    trade_id TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    order_id TEXT NOT NULL,
    client_id INTEGER,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty TEXT NOT NULL,
    price TEXT NOT NULL,
    fee TEXT NOT NULL,
    is_maker INTEGER NOT NULL,
    venue_ts_ms INTEGER NOT NULL,
    recv_ns INTEGER NOT NULL,
    recorded_at REAL NOT NULL,
    UNIQUE (venue, trade_id)
);
CREATE TABLE IF NOT EXISTS allocations (
    maker_venue TEXT NOT NULL,
    maker_trade_id TEXT NOT NULL,
    hedge_client_id INTEGER NOT NULL,
    qty TEXT NOT NULL,
    latency_ns INTEGER,             -- maker fill frame read -> hedge request handed over
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS allocations_by_maker ON allocations (maker_venue, maker_trade_id);
CREATE TABLE IF NOT EXISTS cycles (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    iteration INTEGER NOT NULL,
    phase TEXT NOT NULL,            -- open | close
    side TEXT NOT NULL,
    target TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    result TEXT
);
CREATE TABLE IF NOT EXISTS halts (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS id_blocks (  -- client ids reserved before use: ours on restart
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS external_changes (  -- trades on the account not ours (G9)
    venue TEXT NOT NULL,
    key TEXT NOT NULL,              -- the trade id, or position-N for a move without a fill
    run_id INTEGER NOT NULL,
    qty TEXT NOT NULL,              -- signed
    detail TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (venue, key)
);
CREATE TABLE IF NOT EXISTS marks (  -- the hedge venue's touch, for the cost accounting
    kind TEXT NOT NULL,             -- maker_fill: at a maker fill | hedge_fill: at a hedge's fill
    venue TEXT NOT NULL,            -- the venue of the fill (maker or hedge)
    key TEXT NOT NULL,              -- the maker fill's trade id | the hedge's client id
    run_id INTEGER NOT NULL,
    price TEXT NOT NULL,            -- the price a hedge would take there and then
    PRIMARY KEY (kind, venue, key)
);
CREATE TABLE IF NOT EXISTS counters (
    run_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""

_log = logging.getLogger(__name__)
_Op = tuple[str, tuple[Any, ...], dict[str, Any]]
_Item = object  # (run_id, [ops]) | threading.Event (flush marker) | _STOP
_STOP = object()

CSV_HEADER = [
    "time",
    "run_id",
    "mode",
    "venue",
    "side",
    "price",
    "qty",
    "fee",
    "order_id",
    "client_id",
    "trade_id",
    "hedge_of",
]


def open_csv(path: Path) -> tuple[TextIO, Any]:
    """The trade log for appending, its header written when new. A file with another header
    (an older version's columns) is moved aside to `<name>-old-<time>.csv`, never mixed."""
    if path.exists() and path.stat().st_size > 0:
        with path.open(newline="", encoding="utf-8") as existing:
            header = next(csv.reader(existing), [])
        if header != CSV_HEADER:
            path.rename(path.with_name(f"{path.stem}-old-{int(path.stat().st_mtime)}.csv"))
    # An empty file (created, then killed before the header) still gets its header.
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.open("a", newline="", encoding="utf-8")
    writer = csv.writer(file)
    if new:
        writer.writerow(CSV_HEADER)
        file.flush()
    return file, writer


class ExternalChangeRow(Protocol):
    """What the journal keeps of an external change (hedge/external.py)."""

    venue: str
    key: str
    qty: Decimal
    detail: str


@dataclass(frozen=True, slots=True)
class JournalFill:
    venue: str
    trade_id: str
    client_id: int | None
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    is_maker: bool
    recorded_at: float
    run_id: int = 0

    @property
    def signed(self) -> Decimal:
        """The quantity with its direction: positive for a buy."""
        return self.qty * self.side.sign


JOURNAL_MAGIC = b"SQLite format 3\x00"


def _schema_columns() -> dict[str, set[str]]:
    """Each journal table's columns, read from SCHEMA itself."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        return _columns(db)
    finally:
        db.close()


def _columns(db: sqlite3.Connection) -> dict[str, set[str]]:
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: {str(c[1]) for c in db.execute(f'PRAGMA table_info("{t}")')} for t in tables}


JOURNAL_COLUMNS = _schema_columns()


def journal_problem(path: Path, *, readonly: bool = False) -> str | None:
    """Why `path` cannot be opened as a hedgebot journal (for writing unless `readonly`), or
    None when it can. Reads nothing but the file's header and schema; never writes."""
    if path.is_dir():
        return "is a folder, expected a journal file"
    if not path.exists():
        return "no such file" if readonly else _creatable(path)
    try:
        with path.open("rb") as file:
            header = file.read(len(JOURNAL_MAGIC))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if not header:
        return "is empty, not a hedgebot journal" if readonly else None
    if header != JOURNAL_MAGIC:
        return "is not a SQLite database, so not a hedgebot journal"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            columns = _columns(db)
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"cannot be read as a SQLite database ({exc})"
    if not columns:
        return "holds no tables, not a hedgebot journal" if readonly else None
    return _schema_problem(columns) or (
        None if readonly or os.access(path, os.W_OK) else "is read-only"
    )


def _schema_problem(columns: dict[str, set[str]]) -> str | None:
    """Why a database with these tables is not a hedgebot journal. A table it lacks is fine (an
    older journal: opening it for writing adds the table); a table with other columns is not."""
    ours = set(columns) & set(JOURNAL_COLUMNS)
    if "runs" not in ours:
        shown = ", ".join(sorted(columns)[:4])
        return f"is another program's SQLite database (tables {shown}), not a hedgebot journal"
    for table in sorted(ours):
        missing = JOURNAL_COLUMNS[table] - columns[table]
        if missing:
            return (
                f"has another schema than this hedgebot's journal (table {table} lacks "
                f"{', '.join(sorted(missing))})"
            )
    return None


def _creatable(path: Path) -> str | None:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot be created: {folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot be created: {folder} is not writable"
    return None


def open_database(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """The journal's connection: WAL, no automatic checkpoints, the schema in place (or, when
    `readonly`, a read-only connection to an existing journal)."""
    problem = journal_problem(path, readonly=readonly)
    if problem is not None:
        raise ConfigError(f"--journal {path}: {problem}")
    if readonly:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"--journal {path}: cannot be opened ({exc})") from None
    db.execute("PRAGMA synchronous=NORMAL")
    # No automatic checkpoints: one would stall the fill -> hedge path for milliseconds.
    # The engine calls checkpoint() between steps, from a thread.
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.executescript(SCHEMA)
    return db


class Journal:
    """One SQLite file per ticker and day; many runs append to it."""

    def __init__(self, path: Path, *, csv_path: Path | None = None, readonly: bool = False) -> None:
        """Open (or create) the journal at `path`; `readonly` opens an existing one for reading
        only (report, status). ConfigError naming the path when it is not a hedgebot journal."""
        self.path = path
        self._db = open_database(path, readonly=readonly)
        self.run_id: int = 0
        self._queue: queue.SimpleQueue[_Item] | None = None
        self._writer: threading.Thread | None = None
        self._grouping: list[_Op] | None = None
        self.writer_errors = 0
        self.on_write_error: Callable[[str], object] | None = None  # told of failed writes
        self._csv_path = csv_path
        self._csv_file = None
        self._csv: csv.writer | None = None  # type: ignore[valid-type]
        # CSV rows of fills inserted inside an open transaction: written at COMMIT, dropped at
        # ROLLBACK, so the CSV never shows a fill the database does not hold (nor twice).
        self._csv_pending: list[list[object]] = []
        self._mode = ""  # the run's, for the CSV
        if csv_path is not None:
            self._csv_file, self._csv = open_csv(csv_path)

    def close(self) -> None:
        self.stop_writer()
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
        self._db.close()

    # -- deferred writes (the hot path) ------------------------------------------------------
    def start_writer(self) -> None:
        """From now on `defer`red writes are executed by a writer thread on its own connection,
        in order, several per commit: the fill -> hedge path never waits for SQLite. The CSV
        trade log moves to the writer with them."""
        if self._writer is not None:
            return
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
            self._csv = None
        self._queue = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._write_loop, args=(self._queue,), name="journal-writer", daemon=True
        )
        self._writer.start()

    def stop_writer(self) -> None:
        if self._writer is None or self._queue is None:
            return
        self._queue.put(_STOP)
        self._writer.join(timeout=30)
        self._writer = None
        self._queue = None

    def defer(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Run a write method (`record_fill`, `register_order`, `update_order`, `allocate`...)
        on the writer thread, after every write deferred before it; synchronously when no
        writer runs (tests, tools)."""
        if self._queue is None:
            getattr(self, method)(*args, **kwargs)
            return
        op: _Op = (method, args, kwargs)
        if self._grouping is not None:
            self._grouping.append(op)
        else:
            self._queue.put((self.run_id, [op]))

    @contextmanager
    def group(self) -> Iterator[None]:
        """Deferred writes inside commit together (a hedge fill with its allocations)."""
        if self._queue is None:
            with self.transaction():
                yield
            return
        if self._grouping is not None:
            yield
            return
        self._grouping = []
        try:
            yield
        finally:
            ops, self._grouping = self._grouping, None
            if ops:
                self._queue.put((self.run_id, ops))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every deferred write is committed (before reading what they wrote)."""
        if self._queue is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _write_loop(self, items: queue.SimpleQueue[_Item]) -> None:
        writer = Journal(self.path, csv_path=self._csv_path)
        writer._mode = self._mode  # the run's, for the CSV rows it writes
        try:
            while True:
                batch = [items.get()]
                while True:
                    try:
                        batch.append(items.get_nowait())
                    except queue.Empty:
                        break
                stop = any(item is _STOP for item in batch)
                waiters = [item for item in batch if isinstance(item, threading.Event)]
                writes = [
                    cast(tuple[int, list[_Op]], item)
                    for item in batch
                    if item is not _STOP and not isinstance(item, threading.Event)
                ]
                try:
                    with writer.transaction():
                        for write in writes:
                            self._apply(writer, write)
                except Exception:
                    # One bad item must not take the others with it: again, one at a time.
                    for write in writes:
                        try:
                            with writer.transaction():
                                self._apply(writer, write)
                        except Exception as exc:
                            self.writer_errors += 1
                            what = write[1][0][0]
                            _log.exception("journal write failed: %s", what)
                            if self.on_write_error is not None:
                                self.on_write_error(f"journal write failed ({what}): {exc}")
                for waiter in waiters:
                    waiter.set()
                if stop:
                    return
        finally:
            writer.close()

    @staticmethod
    def _apply(writer: Journal, write: tuple[int, list[_Op]]) -> None:
        run_id, ops = write
        writer.run_id = run_id
        for method, args, kwargs in ops:
            getattr(writer, method)(*args, **kwargs)

    def checkpoint(self) -> None:
        """Fold the WAL into the database file. Blocking: call it from a thread, off the hot path.
        Uses its own connection so it never shares a cursor with the event loop's writes."""
        connection = sqlite3.connect(self.path, timeout=5)
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            connection.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit (one fsync-free WAL append); re-entrant."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._csv_pending.clear()
            # Some SQLite errors (disk full, I/O) roll back by themselves; a second ROLLBACK
            # would raise and hide the original error.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._flush_csv()

    # -- runs --------------------------------------------------------------------------------
    def foreign_runs(self, ticker: str, mode: str) -> list[tuple[str, str]]:
        """(ticker, mode) of the runs in this journal that are not `ticker` in `mode`: a
        journal belongs to one ticker and mode (its baseline and fills mean nothing to another)."""
        rows = self.query(
            "SELECT DISTINCT ticker, mode FROM runs WHERE ticker != ? OR mode != ? ORDER BY id",
            (ticker, mode),
        )
        return [(str(t), str(m)) for t, m in rows]

    def start_run(self, *, mode: str, ticker: str, settings: dict[str, str]) -> int:
        cursor = self._db.execute(
            "INSERT INTO runs (started_at, mode, ticker, settings) VALUES (?, ?, ?, ?)",
            (time.time(), mode, ticker, json.dumps(settings, sort_keys=True)),
        )
        self.run_id, self._mode = int(cursor.lastrowid or 0), mode
        return self.run_id

    def unfinished_run(self) -> tuple[int, Decimal, float] | None:
        """(run id, maker baseline, start time) of the latest run when it did not finish well
        (killed, crashed, halted or interrupted), so a restart returns to the same baseline."""
        # A run that stopped before reconciling (no baseline set, nothing quoted) says nothing
        # about the position: look past it, or the baseline of an earlier unfinished run is lost.
        row = self._db.execute(
            "SELECT id, maker_baseline, started_at, exit_code FROM runs"
            " WHERE maker_baseline IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None or row[3] == 0:
            return None
        return int(row[0]), Decimal(row[1]), float(row[2])

    def set_baseline(self, baseline: Decimal) -> None:
        self._db.execute(
            "UPDATE runs SET maker_baseline = ? WHERE id = ?", (str(baseline), self.run_id)
        )

    def end_run(self, exit_code: int, reason: str) -> None:
        self._db.execute(
            "UPDATE runs SET ended_at = ?, exit_code = ?, reason = ? WHERE id = ?",
            (time.time(), exit_code, reason, self.run_id),
        )

    # -- orders ------------------------------------------------------------------------------
    def register_order(self, order: Order, *, purpose: str, sent_ns: int | None = None) -> None:
        """Record an order before its request is sent."""
        now = time.time()
        self._db.execute(
            "INSERT OR REPLACE INTO orders (venue, client_id, run_id, purpose, symbol, side, qty,"
            " price, kind, status, order_id, filled_qty, created_at, updated_at, sent_ns)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order.venue,
                order.client_id,
                self.run_id,
                purpose,
                order.symbol,
                order.side.value,
                str(order.qty),
                str(order.price),
                order.kind.value,
                order.status.value,
                order.order_id,
                str(order.filled_qty),
                now,
                now,
                sent_ns,
            ),
        )

    def update_order(
        self,
        venue: str,
        client_id: int,
        *,
        status: OrderStatus,
        order_id: str | None = None,
        filled_qty: Decimal | None = None,
    ) -> None:
        self._db.execute(
            "UPDATE orders SET status = ?, order_id = COALESCE(?, order_id),"
            " filled_qty = COALESCE(?, filled_qty), updated_at = ?"
            " WHERE venue = ? AND client_id = ?",
            (
                status.value,
                order_id,
                None if filled_qty is None else str(filled_qty),
                time.time(),
                venue,
                client_id,
            ),
        )

    def is_our_order(self, venue: str, client_id: int | None) -> bool:
        """Registered, or drawn from a client-id block this journal reserved (a hedge whose
        own row a crash cut off is still recognized as ours)."""
        if client_id is None:
            return False
        row = self._db.execute(
            "SELECT 1 FROM orders WHERE venue = ? AND client_id = ?"
            " UNION ALL SELECT 1 FROM id_blocks WHERE ? >= start AND ? < end LIMIT 1",
            (venue, client_id, client_id, client_id),
        ).fetchone()
        return row is not None

    def reserve_ids(self, start: int, end: int) -> None:
        """Durably claim client ids [start, end) before any of them is used."""
        self._db.execute(
            "INSERT INTO id_blocks (start, end, run_id, created_at) VALUES (?, ?, ?, ?)",
            (start, end, self.run_id, time.time()),
        )

    def trade_keys(self) -> set[tuple[str, str]]:
        """(venue, trade id) of every journaled fill: the hedger's in-memory dedupe seed."""
        return {(str(v), str(t)) for v, t in self._db.execute("SELECT venue, trade_id FROM fills")}

    def open_orders(self, venue: str) -> list[tuple[int, str]]:
        """(client_id, purpose) of orders the journal still believes live."""
        rows = self._db.execute(
            "SELECT client_id, purpose FROM orders WHERE venue = ? AND status IN"
            " ('pending_new', 'open', 'partially_filled', 'pending_cancel')",
            (venue,),
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def max_client_id(self) -> int:
        row = self._db.execute(
            "SELECT MAX(m) FROM (SELECT MAX(client_id) AS m FROM orders"
            " UNION ALL SELECT MAX(end) - 1 FROM id_blocks)"
        ).fetchone()
        return int(row[0] or 0)

    # -- fills -------------------------------------------------------------------------------
    def record_fill(self, fill: Fill, hedge_of: str = "") -> bool:
        """Insert a fill; False when this (venue, trade_id) was already recorded."""
        now = time.time()
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO fills (venue, trade_id, run_id, order_id, client_id, symbol,"
            " side, qty, price, fee, is_maker, venue_ts_ms, recv_ns, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                fill.venue,
                fill.trade_id,
                self.run_id,
                fill.order_id,
                fill.client_id,
                fill.symbol,
                fill.side.value,
                str(fill.qty),
                str(fill.price),
                str(fill.fee),
                int(fill.is_maker),
                fill.venue_ts_ms,
                fill.recv_ns,
                now,
            ),
        )
        if cursor.rowcount == 0:
            return False
        if self._csv is not None:
            stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
            self._csv_pending.append(
                [
                    stamp,
                    self.run_id,
                    self._mode,
                    fill.venue,
                    fill.side.value,
                    fill.price,
                    fill.qty,
                    fill.fee,
                    fill.order_id,
                    fill.client_id,
                    fill.trade_id,
                    hedge_of,
                ]
            )
            if not self._db.in_transaction:
                self._flush_csv()
        return True

    def _flush_csv(self) -> None:
        if self._csv is not None and self._csv_file is not None and self._csv_pending:
            self._csv.writerows(self._csv_pending)
            self._csv_file.flush()
        self._csv_pending.clear()

    def filled_by_order(self, venue: str) -> dict[str, Decimal]:
        """Journaled fill quantity per order id on a venue."""
        totals: dict[str, Decimal] = {}
        for order_id, qty in self._db.execute(
            "SELECT order_id, qty FROM fills WHERE venue = ?", (venue,)
        ):
            totals[str(order_id)] = totals.get(str(order_id), Decimal(0)) + Decimal(qty)
        return totals

    def has_fill(self, venue: str, trade_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM fills WHERE venue = ? AND trade_id = ?", (venue, trade_id)
        ).fetchone()
        return row is not None

    def fills(self, venue: str | None = None, *, run_id: int | None = None) -> list[JournalFill]:
        query = "SELECT venue, trade_id, client_id, side, qty, price, fee, is_maker, recorded_at,"
        query += " run_id"
        query += " FROM fills WHERE 1 = 1"
        params: list[object] = []
        if venue is not None:
            query += " AND venue = ?"
            params.append(venue)
        if run_id is not None:
            query += " AND run_id = ?"
            params.append(run_id)
        query += " ORDER BY rowid"
        return [
            JournalFill(
                venue=r[0],
                trade_id=r[1],
                client_id=r[2],
                side=Side(r[3]),
                qty=Decimal(r[4]),
                price=Decimal(r[5]),
                fee=Decimal(r[6]),
                is_maker=bool(r[7]),
                recorded_at=float(r[8]),
                run_id=int(r[9]),
            )
            for r in self._db.execute(query, params)
        ]

    def net_position(self, venue: str) -> Decimal:
        """Signed sum of all journaled fills on a venue (every run of this journal)."""
        total = Decimal(0)
        for fill in self.fills(venue):
            total += fill.signed
        return total

    # -- hedges and allocations ----------------------------------------------------------------
    def allocate(
        self,
        maker_venue: str,
        maker_trade_id: str,
        hedge_client_id: int,
        qty: Decimal,
        latency_ns: int | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO allocations (maker_venue, maker_trade_id, hedge_client_id, qty,"
            " latency_ns, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (maker_venue, maker_trade_id, hedge_client_id, str(qty), latency_ns, time.time()),
        )

    def allocated(self, maker_venue: str, maker_trade_id: str) -> Decimal:
        rows = self._db.execute(
            "SELECT qty FROM allocations WHERE maker_venue = ? AND maker_trade_id = ?",
            (maker_venue, maker_trade_id),
        ).fetchall()
        return sum((Decimal(r[0]) for r in rows), Decimal(0))

    def uncovered_maker_fills(self, maker_venue: str) -> list[tuple[str, Decimal]]:
        """(trade id, signed quantity not yet covered by any hedge) for every maker fill of the
        journal that is not fully covered: what a restart must still hedge."""
        covered: dict[str, Decimal] = {}
        for trade_id, qty_text in self._db.execute(
            "SELECT maker_trade_id, qty FROM allocations WHERE maker_venue = ?", (maker_venue,)
        ):
            covered[trade_id] = covered.get(trade_id, Decimal(0)) + Decimal(qty_text)
        uncovered: list[tuple[str, Decimal]] = []
        for fill in self.fills(maker_venue):
            left = fill.qty - covered.get(fill.trade_id, Decimal(0))
            if left > 0:
                uncovered.append((fill.trade_id, left if fill.side is Side.BUY else -left))
        return uncovered

    def record_mark(self, kind: str, venue: str, key: str, price: Decimal) -> None:
        """The hedge venue's touch at a moment the accounting needs (the first one is kept)."""
        self._db.execute(
            "INSERT OR IGNORE INTO marks (kind, venue, key, run_id, price) VALUES (?, ?, ?, ?, ?)",
            (kind, venue, key, self.run_id, str(price)),
        )

    # -- cycles, halts, counters --------------------------------------------------------------
    def start_cycle(self, iteration: int, phase: str, side: Side, target: Decimal) -> int:
        cursor = self._db.execute(
            "INSERT INTO cycles (run_id, iteration, phase, side, target, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (self.run_id, iteration, phase, side.value, str(target), time.time()),
        )
        return int(cursor.lastrowid or 0)

    def end_cycle(self, cycle_id: int, result: str) -> None:
        self._db.execute(
            "UPDATE cycles SET ended_at = ?, result = ? WHERE id = ?",
            (time.time(), result, cycle_id),
        )

    def record_external(self, change: ExternalChangeRow) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO external_changes (venue, key, run_id, qty, detail, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (change.venue, change.key, self.run_id, str(change.qty), change.detail, time.time()),
        )

    def record_halt(self, reason: str) -> None:
        self._db.execute(
            "INSERT INTO halts (run_id, at, reason) VALUES (?, ?, ?)",
            (self.run_id, time.time(), reason),
        )

    def set_counter(self, name: str, value: float) -> None:
        self._db.execute(
            "INSERT INTO counters (run_id, name, value) VALUES (?, ?, ?)"
            " ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value",
            (self.run_id, name, value),
        )

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Read-only access for the report."""
        return [tuple(row) for row in self._db.execute(sql, params).fetchall()]

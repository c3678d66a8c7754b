"""The run report: what happened, computed from the journal alone.

`summarize(journal)` returns one dict with stable keys (`REPORT_KEYS`, documented in the
README); the CLI prints it as a table or, with `--json`, as one JSON object. Quantities and money
are plain decimal strings in JSON (never exponent notation) so nothing is lost to floats.
`run_id` limits the report to one run of the journal (a journal holds every run of a day).

Definitions:
- maker_volume / hedge_volume: sum of price x qty of the fills, in quote (USDC).
- net_position_*: signed sum of all journaled fills on that venue (every run of the journal,
  even when the report is scoped to one run: positions carry over); net_delta their sum.
- double_hedges: maker fills covered by more hedge quantity than they had, plus hedge fills
  that went beyond every maker fill (the hedger's over-hedge count). 0 is the only good value.
- unhedged_max_s: the longest time from a maker fill being recorded to the hedge allocation
  that covered the last of it (or to the end of its run, or now while the run is still going,
  for one never fully covered). A remainder below the hedge venue's minimum size (the run's
  `hedge_min_qty` setting) is carried, not unhedged, and does not count.
- hedge_latency_ms: per maker fill, WS frame read -> the first hedge request after it handed
  over, in-process; hedge_resends: hedges sent that were not a fill's first (retries,
  remainders, escalations), counted apart.
- edge_bps: quantity-weighted (hedge price - maker price) / maker price, signed so that
  positive means the pair earned the spread.
- pnl_quote: pnl_realized_quote + pnl_mark_quote: cash flow of the fills minus fees, plus
  the open positions valued at the venues' mids when the run ended (or the last fill prices).
- wear_per_10k_quote, wear_quote, fees_maker_quote, fees_hedge_quote, slippage_quote,
  adverse_quote, basis_quote, other_quote, pnl_realized_quote, pnl_mark_quote: what the maker
  volume cost and why (hedge/economics.py defines each).
- external_changes: trades on the account the bot did not make (never hedged, kept out of
  every figure above): their count and signed net per venue.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hedge.economics import (
    CENT,
    SPLIT_KEYS,
    Allocation,
    costs,
    decimal_text,
    hedge_totals,
    per_cycle,
)
from hedge.external import journaled
from hedge.journal import Journal, JournalFill

COST_KEYS = (
    "wear_per_10k_quote",
    "wear_quote",
    *SPLIT_KEYS,
    "pnl_realized_quote",
    "pnl_mark_quote",
)
REPORT_KEYS = (
    "cycles",
    "maker_fills",
    "hedge_fills",
    "maker_volume",
    "hedge_volume",
    "net_position_maker",
    "net_position_hedge",
    "net_delta",
    "double_hedges",
    "unhedged_max_s",
    "hedge_latency_ms",
    "hedge_resends",
    "edge_bps",
    "fees_quote",
    "pnl_quote",
    *COST_KEYS,
    "halts",
    "halt_reasons",
    "reconnects",
    "requests",
    "external_changes",
    "per_cycle",
)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (the smallest value with at least `fraction` of the values at or
    below it); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    # The epsilon keeps float noise (0.29 * 100 = 28.999...97) from moving the rank.
    rank = math.ceil(fraction * len(ordered) - 1e-9)
    return ordered[max(0, min(len(ordered) - 1, rank - 1))]


def summarize(
    journal: Journal, *, maker_venue: str = "backpack", run_id: int | None = None
) -> dict[str, Any]:
    fills = journal.fills(run_id=run_id)
    maker_fills = [f for f in fills if f.venue == maker_venue]
    hedge_fills = [f for f in fills if f.venue != maker_venue]
    scope = _Scope(run_id)
    # Positions are cumulative: a run that resumed a killed one carries its open position, so
    # the legs' balance is judged on every fill of the journal, whatever the report's scope.
    everything = fills if run_id is None else journal.fills()
    position_maker = sum((f.signed for f in everything if f.venue == maker_venue), Decimal(0))
    position_hedge = sum((f.signed for f in everything if f.venue != maker_venue), Decimal(0))
    allocations = _allocations(journal, maker_venue, maker_fills)
    latencies_ms = [ns / 1e6 for ns in allocations.first_latency.values()]
    halts = journal.query(
        "SELECT reason FROM halts WHERE 1 = 1" + scope.filter + " ORDER BY id", scope.params
    )
    money = costs(
        journal,
        fills,
        maker_venue,
        [Allocation(allocations.maker_by_trade[t], h, q) for t, h, q in allocations.rows],
    )
    return {
        "cycles": _cycles(journal, scope),
        "maker_fills": len(maker_fills),
        "hedge_fills": len(hedge_fills),
        "maker_volume": decimal_text(sum((f.qty * f.price for f in maker_fills), Decimal(0))),
        "hedge_volume": decimal_text(sum((f.qty * f.price for f in hedge_fills), Decimal(0))),
        "net_position_maker": decimal_text(position_maker),
        "net_position_hedge": decimal_text(position_hedge),
        "net_delta": decimal_text(position_maker + position_hedge),
        "double_hedges": _double_hedges(journal, scope, maker_fills, allocations),
        "unhedged_max_s": round(max(_unhedged_max(journal, maker_fills, allocations), 0.0), 3),
        "hedge_latency_ms": {
            "p50": round(percentile(latencies_ms, 0.5), 3),
            "p99": round(percentile(latencies_ms, 0.99), 3),
            "max": round(max(latencies_ms, default=0.0), 3),
        },
        "hedge_resends": _counter(journal, scope, "hedge_resends"),
        "edge_bps": _edge_bps(hedge_fills, allocations),
        "fees_quote": decimal_text(sum((f.fee for f in fills), Decimal(0))),
        "pnl_quote": decimal_text((money.pnl_realized + money.pnl_mark).quantize(CENT)),
        **money.report(),
        "halts": len(halts),
        "halt_reasons": [str(row[0]) for row in halts],
        "reconnects": _counter(journal, scope, "reconnects%"),
        "requests": _requests(journal, scope),
        "external_changes": _external(journal, scope),
        "per_cycle": per_cycle(journal, maker_fills, money.per_fill),
    }


def _external(journal: Journal, scope: _Scope) -> dict[str, object]:
    """Trades on the account not made by the bot (G9): how many, and their net per venue."""
    changes = journaled(journal, scope.run_id)
    net: dict[str, Decimal] = defaultdict(Decimal)
    for venue, _, qty in changes:
        net[venue] += qty
    return {"count": len(changes), "net": {v: decimal_text(q) for v, q in sorted(net.items())}}


@dataclass(frozen=True)
class _Scope:
    """The SQL condition limiting a query to one run (or to none)."""

    run_id: int | None

    @property
    def filter(self) -> str:
        return "" if self.run_id is None else " AND run_id = ?"

    @property
    def params(self) -> tuple[object, ...]:
        return () if self.run_id is None else (self.run_id,)


@dataclass
class _Allocations:
    """Which hedge covered which maker fill, how fast, and when fully."""

    maker_by_trade: dict[str, JournalFill]
    rows: list[tuple[str, int, Decimal]] = field(default_factory=list)  # trade, hedge, qty
    allocated: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    first_latency: dict[str, int] = field(default_factory=dict)
    covered_at: dict[str, float] = field(default_factory=dict)
    last_cover: dict[str, float] = field(default_factory=dict)


def _allocations(
    journal: Journal, maker_venue: str, maker_fills: list[JournalFill]
) -> _Allocations:
    found = _Allocations({f.trade_id: f for f in maker_fills})
    rows = journal.query(
        "SELECT maker_trade_id, hedge_client_id, qty, latency_ns, created_at FROM allocations"
        " WHERE maker_venue = ? ORDER BY rowid",
        (maker_venue,),
    )
    for trade_id, hedge_client, qty_text, latency, created_at in rows:
        maker_fill = found.maker_by_trade.get(str(trade_id))
        if maker_fill is None:
            continue  # another run's fill (run_id given)
        trade = maker_fill.trade_id
        qty = Decimal(qty_text)
        found.rows.append((trade, int(hedge_client), qty))
        found.allocated[trade] += qty
        if trade not in found.covered_at and found.allocated[trade] >= maker_fill.qty:
            found.covered_at[trade] = float(created_at)
        found.last_cover[trade] = max(found.last_cover.get(trade, 0.0), float(created_at))
        if latency is not None and trade not in found.first_latency:
            found.first_latency[trade] = int(latency)
    return found


def _double_hedges(
    journal: Journal, scope: _Scope, maker_fills: list[JournalFill], allocations: _Allocations
) -> int:
    over_allocated = sum(1 for f in maker_fills if allocations.allocated[f.trade_id] > f.qty)
    over_hedges = int(
        sum(
            float(row[0])
            for row in journal.query(
                "SELECT value FROM counters WHERE name = 'over_hedges'" + scope.filter,
                scope.params,
            )
        )
    )
    return over_allocated + over_hedges


def _unhedged_max(
    journal: Journal, maker_fills: list[JournalFill], allocations: _Allocations
) -> float:
    # A fill never fully covered counts to the end of its run; `now` only while that run is
    # still going (or unknown), so a report read days later does not grow by itself.
    run_ends = {int(r[0]): r[1] for r in journal.query("SELECT id, ended_at FROM runs")}
    now = time.time()
    unhedged_max = 0.0
    dust = _dust_by_run(journal)
    for fill in maker_fills:
        end = allocations.covered_at.get(fill.trade_id)
        min_qty, min_notional = dust.get(fill.run_id, (Decimal(0), Decimal(0)))
        threshold = max(min_qty, min_notional / fill.price if fill.price else Decimal(0))
        if end is None and fill.qty - allocations.allocated[fill.trade_id] < threshold:
            # The rest is below what the hedge venue can trade: carried, not unhedged (it is
            # offset by the next opposite fill). Covered when its tradable part was.
            end = allocations.last_cover.get(fill.trade_id, fill.recorded_at)
        if end is None:
            ended_at = run_ends.get(fill.run_id)
            end = float(ended_at) if ended_at is not None else now
        unhedged_max = max(unhedged_max, end - fill.recorded_at)
    return unhedged_max


def _edge_bps(hedge_fills: list[JournalFill], allocations: _Allocations) -> float:
    hedge_price = hedge_totals(hedge_fills)
    edge_weight = Decimal(0)
    edge_sum = Decimal(0)
    for trade_id, hedge_client, qty in allocations.rows:
        maker_fill = allocations.maker_by_trade[trade_id]
        totals = hedge_price.get(hedge_client)
        if totals is None or not totals[0]:
            continue
        hedge_avg = totals[1] / totals[0]
        edge = (hedge_avg - maker_fill.price) / maker_fill.price * 10_000 * maker_fill.side.sign
        edge_sum += edge * qty
        edge_weight += qty
    return float(round(edge_sum / edge_weight, 3)) if edge_weight else 0.0


def _cycles(journal: Journal, scope: _Scope) -> int:
    query = "SELECT COUNT(*) FROM cycles WHERE ended_at IS NOT NULL" + scope.filter
    return int(journal.query(query, scope.params)[0][0])


def _counter(journal: Journal, scope: _Scope, pattern: str) -> int:
    """The sum of the runs' counters named like `pattern` (SQL LIKE)."""
    query = "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name LIKE ?" + scope.filter
    return int(journal.query(query, (pattern, *scope.params))[0][0])


BUDGET_COUNTERS = ("requests", "waited", "http_429")


def _requests(journal: Journal, scope: _Scope) -> dict[str, dict[str, int]]:
    """Per venue, the requests the run's budget granted, how many had to wait, and the 429s
    the venue answered (counters `budget_<what>_<venue>`)."""
    rows = journal.query(
        "SELECT name, SUM(value) FROM counters WHERE name LIKE 'budget_%'"
        + scope.filter
        + " GROUP BY name",
        scope.params,
    )
    per_venue: dict[str, dict[str, int]] = {}
    for name, value in rows:
        for what in BUDGET_COUNTERS:
            prefix = f"budget_{what}_"
            if str(name).startswith(prefix):
                venue = str(name)[len(prefix) :]
                per_venue.setdefault(venue, dict.fromkeys(BUDGET_COUNTERS, 0))[what] = int(value)
    return dict(sorted(per_venue.items()))


def _dust_by_run(journal: Journal) -> dict[int, tuple[Decimal, Decimal]]:
    """Per run, the hedge venue's minimum size and minimum notional (from its settings)."""
    dust: dict[int, tuple[Decimal, Decimal]] = {}
    for run_id, settings_text in journal.query("SELECT id, settings FROM runs"):
        try:
            values = json.loads(settings_text)
            dust[int(run_id)] = (
                Decimal(values.get("hedge_min_qty", "0")),
                Decimal(values.get("hedge_min_notional", "0")),
            )
        except (ValueError, ArithmeticError, AttributeError):
            continue
    return dust

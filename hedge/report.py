"""The run report: what happened, computed from the journal alone.

`summarize(journal)` returns one dict with stable keys (documented in the README); the CLI
prints it as a table or, with `--json`, as one JSON object. Quantities and money are decimal
strings in JSON so nothing is lost to floats.

Definitions:
- maker_volume / hedge_volume: sum of price x qty of the fills, in quote (USDC).
- net_position_*: signed sum of the journaled fills on that venue; net_delta their sum.
- double_hedges: maker fills covered by more hedge quantity than they had, plus hedge fills
  that went beyond every maker fill (the hedger's over-hedge count). 0 is the only good value.
- unhedged_max_s: the longest time from a maker fill being recorded to its last covering
  hedge fill (or to the end of the run, for one never covered).
- hedge_latency_ms: per maker fill, WS frame read -> hedge request handed over, in-process.
- edge_bps: quantity-weighted (hedge price - maker price) / maker price, signed so that
  positive means the pair earned the spread.
- pnl_quote: cash flow of all fills minus fees, plus any open position valued at the last
  fill price of its venue.
"""

from __future__ import annotations

import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

from exchanges.base import Side
from hedge.journal import Journal

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
    "fees_quote",
    "pnl_quote",
    "halts",
)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))
    return ordered[rank]


def summarize(journal: Journal, *, maker_venue: str = "backpack") -> dict[str, Any]:
    fills = journal.fills()
    maker_fills = [f for f in fills if f.venue == maker_venue]
    hedge_fills = [f for f in fills if f.venue != maker_venue]

    def signed(qty: Decimal, side: Side) -> Decimal:
        return qty if side is Side.BUY else -qty

    net_maker = sum((signed(f.qty, f.side) for f in maker_fills), Decimal(0))
    net_hedge = sum((signed(f.qty, f.side) for f in hedge_fills), Decimal(0))
    fees = sum((f.fee for f in fills), Decimal(0))

    cash = Decimal(0)
    last_price: dict[str, Decimal] = {}
    for fill in fills:
        cash -= signed(fill.qty, fill.side) * fill.price
        last_price[fill.venue] = fill.price
    open_value = net_maker * last_price.get(maker_venue, Decimal(0))
    hedge_venue = next((f.venue for f in hedge_fills), None)
    if hedge_venue is not None:
        open_value += net_hedge * last_price[hedge_venue]
    pnl = cash + open_value - fees

    # Allocations: which hedge covered which maker fill, and how fast.
    allocated: dict[str, Decimal] = defaultdict(Decimal)
    first_latency: dict[str, int] = {}
    last_cover: dict[str, float] = {}
    hedge_qty_by_client: dict[int, Decimal] = defaultdict(Decimal)
    for maker, trade_id, hedge_client, qty, latency in journal.allocation_rows():
        if maker != maker_venue:
            continue
        allocated[trade_id] += qty
        hedge_qty_by_client[hedge_client] += qty
        if latency is not None and trade_id not in first_latency:
            first_latency[trade_id] = latency
    for trade_id, created_at in journal.query(
        "SELECT maker_trade_id, MAX(created_at) FROM allocations WHERE maker_venue = ?"
        " GROUP BY maker_trade_id",
        (maker_venue,),
    ):
        last_cover[str(trade_id)] = float(created_at)

    over_allocated = sum(1 for f in maker_fills if allocated[f.trade_id] > f.qty)
    over_hedges = int(
        sum(
            float(row[0])
            for row in journal.query("SELECT value FROM counters WHERE name = 'over_hedges'")
        )
    )
    now = time.time()
    unhedged_max = 0.0
    for fill in maker_fills:
        end = last_cover.get(fill.trade_id, now if allocated[fill.trade_id] < fill.qty else 0.0)
        if end:
            unhedged_max = max(unhedged_max, end - fill.recorded_at)

    latencies_ms = [ns / 1e6 for ns in first_latency.values()]

    hedge_price: dict[int, tuple[Decimal, Decimal]] = {}
    for fill in hedge_fills:
        if fill.client_id is None:
            continue
        qty, notional = hedge_price.get(fill.client_id, (Decimal(0), Decimal(0)))
        hedge_price[fill.client_id] = (qty + fill.qty, notional + fill.qty * fill.price)
    maker_by_trade = {f.trade_id: f for f in maker_fills}
    edge_weight = Decimal(0)
    edge_sum = Decimal(0)
    for maker, trade_id, hedge_client, qty, _latency in journal.allocation_rows():
        maker_fill = maker_by_trade.get(trade_id)
        totals = hedge_price.get(hedge_client)
        if maker != maker_venue or maker_fill is None or totals is None or not totals[0]:
            continue
        hedge_avg = totals[1] / totals[0]
        edge = (hedge_avg - maker_fill.price) / maker_fill.price * 10_000 * maker_fill.side.sign
        edge_sum += edge * qty
        edge_weight += qty

    cycles = journal.query("SELECT COUNT(*) FROM cycles WHERE ended_at IS NOT NULL")[0][0]
    halts = journal.query("SELECT reason FROM halts ORDER BY id")
    reconnects = journal.query(
        "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name LIKE 'reconnects%'"
    )[0][0]
    return {
        "cycles": int(cycles),
        "maker_fills": len(maker_fills),
        "hedge_fills": len(hedge_fills),
        "maker_volume": str(sum((f.qty * f.price for f in maker_fills), Decimal(0))),
        "hedge_volume": str(sum((f.qty * f.price for f in hedge_fills), Decimal(0))),
        "net_position_maker": str(net_maker),
        "net_position_hedge": str(net_hedge),
        "net_delta": str(net_maker + net_hedge),
        "double_hedges": over_allocated + over_hedges,
        "unhedged_max_s": round(unhedged_max, 3),
        "hedge_latency_ms": {
            "p50": round(percentile(latencies_ms, 0.5), 3),
            "p99": round(percentile(latencies_ms, 0.99), 3),
            "max": round(max(latencies_ms, default=0.0), 3),
        },
        "fees_quote": str(fees),
        "pnl_quote": str(pnl.quantize(Decimal("0.000001"))),
        "halts": len(halts),
        "halt_reasons": [str(row[0]) for row in halts],
        "edge_bps": float(round(edge_sum / edge_weight, 3)) if edge_weight else 0.0,
        "reconnects": int(reconnects),
    }

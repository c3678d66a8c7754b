"""What the maker volume costs: the money of every fill, split by cause.

Each maker fill (maker venue) is hedged by one or more hedge orders (hedge venue); the journal's
allocations say which hedge covered how much of which fill. For one allocation of `q` at maker
price `P` on side `s` (+1 buy, -1 sell), hedged at `H` (the hedge order's average fill price):

    gross = s * (H - P) * q = basis + adverse + slippage, where
    basis    = s * (T0 - P) * q   the hedge venue's touch at the maker fill against our price,
    adverse  = s * (T1 - T0) * q  how that touch moved until the hedge executed,
    slippage = s * (H - T1) * q   the hedge's price against the touch it met,

`T0` being the price a hedge would have taken when the maker fill arrived (the hedge venue's
bid for a maker buy, its ask for a maker sell) and `T1` that price when the hedge's first fill
arrived, both as the bot's own book showed them (journal table `marks`). Costs are reported
positive: `adverse_quote = -adverse`, `slippage_quote = -slippage`; `basis_quote` is what the
quote earned against the hedge venue (positive: earned).

Run totals, from the venues' own fills (every fill of ours in the journal's scope):
- `pnl_realized_quote`: per venue, the profit of the quantity closed (average cost), minus
  every fee paid; on a run that ends flat it is all the money the run made.
- `pnl_mark_quote`: the open positions valued at each venue's mid when the (last) run ended,
  or its last fill price when no mid was recorded, against their average cost (0 when flat).
  Funding is not included (the venues' fill feeds do not carry it).
- `wear_quote = -(pnl_realized_quote + pnl_mark_quote)`: what the run cost, all in, and
  `wear_per_10k_quote` that per 10,000 of maker volume. It splits exactly into
  `fees_maker_quote + fees_hedge_quote + slippage_quote + adverse_quote - basis_quote +
  other_quote`, where `other_quote` is what no allocation explains: unhedged or swept dust,
  close-outs and their marks.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from exchanges.base import BookTop, Fill, Side, Venue
from hedge.journal import Journal, JournalFill

MAKER_FILL = "maker_fill"
HEDGE_FILL = "hedge_fill"
MID = "mid"  # a venue's mid when a run ended: where its open leg is marked
# The wear by cause, as report keys: wear = maker + hedge fees + slippage + adverse - basis + other.
SPLIT_KEYS = (
    "fees_maker_quote",
    "fees_hedge_quote",
    "slippage_quote",
    "adverse_quote",
    "basis_quote",
    "other_quote",
)
TEN_K = Decimal(10_000)
CENT = Decimal("0.000001")  # figures are kept to the micro-dollar, shown as the venues' units


def taking_price(side: Side, top: BookTop) -> Decimal:
    """What a taker order on `side` meets at this top: the ask for a buy, the bid for a sell."""
    return top.ask if side is Side.BUY else top.bid


class Marks:
    """Records the hedge venue's touch at the two moments the cost split needs. Called on the
    hedger's hot path after the hedge is on the wire: one book read and one deferred write."""

    def __init__(self, journal: Journal, hedge_venue: Venue) -> None:
        self.journal = journal
        self.venue = hedge_venue

    def maker_fill(self, fill: Fill) -> None:
        """A maker fill arrived: the price its hedge (the opposite side) would take now."""
        self._record(MAKER_FILL, fill.venue, fill.trade_id, fill.side.opposite)

    def hedge_fill(self, fill: Fill) -> None:
        """A hedge order's first fill arrived: the touch it met (its own side)."""
        self._record(HEDGE_FILL, fill.venue, str(fill.client_id), fill.side)

    def _record(self, kind: str, venue: str, key: str, side: Side) -> None:
        top = self.venue.top()
        if top is not None:
            self.journal.defer("record_mark", kind, venue, key, taking_price(side, top))


def decimal_text(value: Decimal) -> str:
    """A Decimal as plain text: '0.00000000', never '0E-8'; no negative zero."""
    if value == 0:
        value = abs(value)
    return format(value, "f")


def hedge_totals(hedge_fills: list[JournalFill]) -> dict[int, tuple[Decimal, Decimal, Decimal]]:
    """Per hedge order (client id): filled quantity, notional and fees of its fills."""
    totals: dict[int, tuple[Decimal, Decimal, Decimal]] = {}
    for fill in hedge_fills:
        if fill.client_id is not None:
            qty, notional, fee = totals.get(fill.client_id, (Decimal(0), Decimal(0), Decimal(0)))
            totals[fill.client_id] = (
                qty + fill.qty,
                notional + fill.qty * fill.price,
                fee + fill.fee,
            )
    return totals


@dataclass
class _Book:
    """One venue's position at average cost, and what closing it realized."""

    qty: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)  # signed quote paid for the open qty
    realized: Decimal = Decimal(0)
    last_price: Decimal = Decimal(0)

    def apply(self, signed: Decimal, price: Decimal) -> None:
        self.last_price = price
        if self.qty and (self.qty > 0) != (signed > 0):
            closing = min(abs(signed), abs(self.qty)) * (1 if signed > 0 else -1)
            average = self.cost / self.qty
            self.realized += -closing * (price - average)
            self.cost -= average * -closing
            self.qty += closing
            signed -= closing
            if not self.qty:
                self.cost = Decimal(0)
        self.qty += signed
        self.cost += signed * price

    @property
    def unrealized(self) -> Decimal:
        return self.qty * self.last_price - self.cost


@dataclass
class Costs:
    """The run's money, by cause (see the module docstring); all in quote (USDC)."""

    maker_volume: Decimal = Decimal(0)
    fees_maker: Decimal = Decimal(0)
    fees_hedge: Decimal = Decimal(0)
    basis: Decimal = Decimal(0)
    adverse: Decimal = Decimal(0)  # a cost: positive when the touch moved against us
    slippage: Decimal = Decimal(0)  # a cost
    pnl_realized: Decimal = Decimal(0)
    pnl_mark: Decimal = Decimal(0)
    per_venue: dict[str, _Book] = field(default_factory=dict)
    per_fill: dict[str, FillCost] = field(default_factory=dict)  # by maker trade id

    @property
    def wear(self) -> Decimal:
        return -(self.pnl_realized + self.pnl_mark)

    @property
    def other(self) -> Decimal:
        explained = self.fees_maker + self.fees_hedge + self.slippage + self.adverse - self.basis
        return self.wear - explained

    @property
    def wear_per_10k(self) -> Decimal:
        return self.wear / self.maker_volume * TEN_K if self.maker_volume else Decimal(0)

    def report(self) -> dict[str, str]:
        """The report's keys, as plain decimal strings."""
        figures = {
            "wear_per_10k_quote": self.wear_per_10k,
            "wear_quote": self.wear,
            "fees_maker_quote": self.fees_maker,
            "fees_hedge_quote": self.fees_hedge,
            "slippage_quote": self.slippage,
            "adverse_quote": self.adverse,
            "basis_quote": self.basis,
            "other_quote": self.other,
            "pnl_realized_quote": self.pnl_realized,
            "pnl_mark_quote": self.pnl_mark,
        }
        return {k: decimal_text(v.quantize(CENT)) for k, v in figures.items()}


def money_line(summary: Mapping[str, object]) -> str:
    """A report's money in one line: volume, wear per 10k and its causes."""

    def get(key: str) -> Decimal:
        return Decimal(str(summary.get(key, "0")))

    return (
        f"maker volume {get('maker_volume'):.2f} USDC, wear {get('wear_per_10k_quote'):.2f} "
        f"USDC per 10k ({get('wear_quote'):.4f} USDC = maker fees {get('fees_maker_quote'):.4f}"
        f" + hedge fees {get('fees_hedge_quote'):.4f} + slippage {get('slippage_quote'):.4f}"
        f" + adverse {get('adverse_quote'):.4f} - basis {get('basis_quote'):.4f}"
        f" + other {get('other_quote'):.4f})"
    )


def costs(
    journal: Journal, fills: list[JournalFill], maker_venue: str, allocations: list[Allocation]
) -> Costs:
    """The money of `fills` (the report's scope) and of the allocations among them."""
    found = Costs()
    for fill in fills:
        book = found.per_venue.setdefault(fill.venue, _Book())
        book.apply(fill.signed, fill.price)
        if fill.venue == maker_venue:
            found.fees_maker += fill.fee
            found.maker_volume += fill.qty * fill.price
        else:
            found.fees_hedge += fill.fee
    for venue, mid in _end_mids(journal, {f.run_id for f in fills}).items():
        if venue in found.per_venue:
            found.per_venue[venue].last_price = mid
    fees = found.fees_maker + found.fees_hedge
    found.pnl_realized = sum((b.realized for b in found.per_venue.values()), Decimal(0)) - fees
    found.pnl_mark = sum((b.unrealized for b in found.per_venue.values()), Decimal(0))
    hedge_fills = [f for f in fills if f.venue != maker_venue]
    found.per_fill = _split(found, journal, hedge_fills, allocations)
    return found


def _end_mids(journal: Journal, run_ids: set[int]) -> dict[str, Decimal]:
    """Each venue's mid at the end of the latest of these runs that recorded one."""
    mids: dict[str, Decimal] = {}
    rows = journal.query(
        "SELECT venue, run_id, price FROM marks WHERE kind = ? ORDER BY run_id", (MID,)
    )
    for venue, run_id, price in rows:
        if int(run_id) in run_ids:
            mids[str(venue)] = Decimal(price)
    return mids


@dataclass(frozen=True)
class Allocation:
    """`qty` of the maker fill `maker` covered by the hedge order `hedge_client`."""

    maker: JournalFill
    hedge_client: int
    qty: Decimal


@dataclass
class FillCost:
    """One maker fill's money: its fee, and its share of the hedges that covered it."""

    volume: Decimal
    fee_maker: Decimal
    fee_hedge: Decimal = Decimal(0)
    basis: Decimal = Decimal(0)
    adverse: Decimal = Decimal(0)
    slippage: Decimal = Decimal(0)

    @property
    def wear(self) -> Decimal:
        return self.fee_maker + self.fee_hedge + self.slippage + self.adverse - self.basis


def _split(
    found: Costs, journal: Journal, hedge_fills: list[JournalFill], allocations: list[Allocation]
) -> dict[str, FillCost]:
    """Adds the allocations' basis, adverse move and slippage to `found`; each maker fill's
    money (its hedges' fees shared by quantity) by trade id."""
    marks: dict[tuple[str, str], Decimal] = {
        (str(kind), str(key)): Decimal(price)
        for kind, key, price in journal.query("SELECT kind, key, price FROM marks")
    }
    zero = (Decimal(0), Decimal(0), Decimal(0))
    hedged = hedge_totals(hedge_fills)
    per_fill: dict[str, FillCost] = {}
    for row in allocations:
        maker = row.maker
        cost = per_fill.setdefault(maker.trade_id, FillCost(maker.qty * maker.price, maker.fee))
        qty, notional, fee = hedged.get(row.hedge_client, zero)
        touch_then = marks.get((MAKER_FILL, maker.trade_id))
        touch_met = marks.get((HEDGE_FILL, str(row.hedge_client)))
        if not qty or touch_then is None or touch_met is None:
            continue  # no price or no marks: its money stays in `other`
        sign = maker.side.sign
        cost.fee_hedge += fee * row.qty / qty
        cost.basis += sign * (touch_then - maker.price) * row.qty
        cost.adverse -= sign * (touch_met - touch_then) * row.qty
        cost.slippage -= sign * (notional / qty - touch_met) * row.qty
    for cost in per_fill.values():
        found.basis += cost.basis
        found.adverse += cost.adverse
        found.slippage += cost.slippage
    return per_fill


def per_cycle(
    journal: Journal, maker_fills: list[JournalFill], per_fill: dict[str, FillCost]
) -> list[dict[str, object]]:
    """Each cycle's maker volume and what its maker fills cost (their fees, their hedges' fees,
    slippage, adverse move, basis): the report's `per_cycle`. A fill belongs to the last cycle
    of its run that started before it was recorded."""
    rows = journal.query(
        "SELECT id, run_id, iteration, phase, started_at FROM cycles ORDER BY run_id, started_at"
    )
    starts: dict[int, list[tuple[float, int]]] = defaultdict(list)  # run -> (start, cycle)
    for cycle_id, run_id, _, _, started in rows:
        starts[int(run_id)].append((float(started), int(cycle_id)))
    totals: dict[int, FillCost] = {}
    for fill in maker_fills:
        cycles = starts.get(fill.run_id, [])
        index = bisect.bisect_right(cycles, (fill.recorded_at, math.inf)) - 1
        if index < 0:
            continue  # before the run's first cycle (a fill recovered at start)
        cost = per_fill.get(fill.trade_id, FillCost(fill.qty * fill.price, fill.fee))
        acc = totals.setdefault(cycles[index][1], FillCost(Decimal(0), Decimal(0)))
        for name in ("volume", "fee_maker", "fee_hedge", "basis", "adverse", "slippage"):
            setattr(acc, name, getattr(acc, name) + getattr(cost, name))
    out: list[dict[str, object]] = []
    for cycle_id, run_id, iteration, phase, _ in sorted(rows):
        total = totals.get(int(cycle_id))
        if total is None:
            continue
        per_10k = total.wear / total.volume * TEN_K if total.volume else Decimal(0)
        out.append(
            {
                "cycle": int(cycle_id),
                "run_id": int(run_id),
                "iteration": int(iteration),
                "phase": str(phase),
                "maker_volume": decimal_text(total.volume.quantize(CENT)),
                "wear_quote": decimal_text(total.wear.quantize(CENT)),
                "wear_per_10k_quote": decimal_text(per_10k.quantize(CENT)),
            }
        )
    return out

"""Which hedge covered which maker fill: open lots netted first in, first out.

Every fill of ours becomes a signed lot. A new lot is netted against the oldest open lots of
the opposite sign; a maker lot netted against a hedge lot is an allocation (that hedge covers
that much of that maker fill), journaled with the fill -> hedge latency. What is left of the
new lot stays open: a maker fill awaiting its hedge, or a hedge beyond every maker fill (an
over-hedge, which the hedger counts).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from hedge.journal import Journal

SEED_VENUE = "seed"  # a lot standing for a net found at start, not for a fill


@dataclass(slots=True)
class Lot:
    """A signed quantity not yet matched by the opposite fill (a maker fill awaiting its hedge,
    or an over-hedge awaiting a correction)."""

    venue: str
    trade_id: str
    qty: Decimal  # signed, shrinks towards 0 as opposite fills match it
    recv_ns: int  # maker lots: when the fill's frame was read
    is_maker: bool
    client_id: int = 0  # hedge lots: the hedge order's client id
    # Hedge lots: when the hedge request was handed over. Maker lots: when the first hedge
    # after the fill was (a re-send covering it later is not its latency: the report measures
    # first sends, as the dashboard and the metrics do).
    sent_ns: int = 0


class LotBook:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._lots: deque[Lot] = deque()

    def oldest_maker_ns(self) -> int:
        """When the oldest maker fill not yet covered was read (perf_counter_ns; 0: none)."""
        return next((lot.recv_ns for lot in self._lots if lot.is_maker and lot.recv_ns), 0)

    def open_maker_trades(self) -> str:
        """The trade ids of the maker fills not yet covered, space-separated."""
        return " ".join(lot.trade_id for lot in self._lots if lot.is_maker)

    def hedge_started(self, sent_ns: int) -> None:
        """A hedge went out at `sent_ns`: the first one for every open maker lot before it."""
        for lot in self._lots:
            if lot.is_maker and not lot.sent_ns and 0 < lot.recv_ns <= sent_ns:
                lot.sent_ns = sent_ns

    def add(self, lot: Lot) -> Decimal:
        """Net `lot` against the oldest open lots of the opposite sign, FIFO, journaling each
        allocation; returns what is left of it (0 when fully matched), which stays open."""
        lots = self._lots
        while lot.qty and lots and lots[0].qty * lot.qty < 0:
            front = lots[0]
            take = min(abs(front.qty), abs(lot.qty))
            if front.is_maker != lot.is_maker:
                maker, hedge = (front, lot) if front.is_maker else (lot, front)
                if maker.venue != SEED_VENUE:
                    sent = maker.sent_ns or hedge.sent_ns
                    latency = sent - maker.recv_ns if sent >= maker.recv_ns > 0 else None
                    self.journal.defer(
                        "allocate", maker.venue, maker.trade_id, hedge.client_id, take, latency
                    )
            front.qty += take if front.qty < 0 else -take
            lot.qty += take if lot.qty < 0 else -take
            if front.qty == 0:
                lots.popleft()
        if lot.qty:
            lots.append(lot)
        return lot.qty

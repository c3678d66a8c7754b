"""G9: only our orders are hedged. A fill of an order the bot did not place, or a position
that moved without a fill of ours, is an *external change*: someone (the owner, another bot)
traded on the same account.

An external change is never hedged. It is logged loudly, shown on the dashboard, journaled and
counted in the report, and kept out of the bot's own books: every position the bot compares or
trades from is the venue's position minus the external quantity on that venue (`own()`), so
the bot never trades the owner's position away and never mistakes it for an imbalance of its
own. One policy decides what follows, the same way live and at restart:

- `halt` (the default): stop quoting, leave the bot's own legs balanced, exit 3 naming the
  external trade and its quantity;
- `ignore`: keep trading around it.

Ours means: the fill's client id was drawn from a block of client ids this journal reserved
(hedge/hedger.py `ClientIds`), which covers every order the bot ever sent from this journal.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from exchanges.base import Fill
from hedge.journal import Journal
from hedge.risk import Halt

log = logging.getLogger(__name__)


class ExternalPolicy(enum.StrEnum):
    HALT = "halt"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class ExternalChange:
    venue: str
    qty: Decimal  # signed: + bought, - sold
    key: str  # the trade id, or "position" for a move without a fill
    detail: str

    def describe(self, ticker: str) -> str:
        return (
            f"external change on {self.venue}: {self.qty.normalize():+f} {ticker} not traded "
            "by this bot "
            f"({self.detail}); kept out of the bot's books, not hedged"
        )


class ExternalChanges:
    """The account's external changes for one run: which fills are ours, what is not, and the
    offsets that keep the rest out of the bot's books."""

    def __init__(
        self,
        policy: ExternalPolicy,
        ticker: str,
        venues: tuple[str, str],
        *,
        owns: Callable[[int | None], bool],
        journal: Journal,
        warn: Callable[[str], None],
        halt: Callable[[str], None],
    ) -> None:
        self.policy = policy
        self.ticker = ticker
        self.venues = venues  # (maker, hedge) venue names
        self.owns = owns
        self.journal = journal
        self.warn = warn  # one line for the operator's dashboard
        self.halt = halt  # ends the run (the `halt` policy)
        self.changes: list[ExternalChange] = []  # new in this run
        self.offsets: dict[str, Decimal] = {}  # venue -> signed external quantity
        self._keys: set[tuple[str, str]] = set()
        for venue, key, qty in journaled(journal):  # reported earlier: known, not new
            self._keys.add((venue, key))
            self.offsets[venue] = self.offsets.get(venue, Decimal(0)) + qty

    # -- what is ours ----------------------------------------------------------------------------
    def ours(self, fill: Fill, *, act: bool = True) -> bool:
        """True for a fill of an order we placed; anything else is recorded and reported once
        (and, when `act`, the policy applied) and must not be hedged."""
        if self.owns(fill.client_id):
            return True
        detail = (
            f"{fill.side.value} {fill.qty} @ {fill.price}, trade {fill.trade_id}, "
            f"order {fill.order_id}, client id {fill.client_id}"
        )
        change = ExternalChange(fill.venue, fill.qty * fill.side.sign, fill.trade_id, detail)
        self._record(change, act=act)
        return False

    def position_moved(self, venue: str, delta: Decimal) -> bool:
        """The balance guard saw `venue` move by `delta` without a fill of ours: an external
        change (False when this very move was already recorded)."""
        detail = f"the position moved by {delta.normalize():+f} without a fill of ours"
        change = ExternalChange(venue, delta, f"position-{len(self.changes)}", detail)
        return self._record(change, act=True)

    def _record(self, change: ExternalChange, *, act: bool) -> bool:
        if (change.venue, change.key) in self._keys:
            return False
        self._keys.add((change.venue, change.key))
        self.changes.append(change)
        self.offsets[change.venue] = self.offsets.get(change.venue, Decimal(0)) + change.qty
        line = change.describe(self.ticker)
        log.error("%s (policy: %s)", line, self.policy.value)
        self.warn(line)
        self.journal.defer("record_external", change)
        if act and self.policy is ExternalPolicy.HALT:
            self.halt(f"{line} (--on-external-change halt)")
        return True

    def halt_if_changed_while_down(self) -> None:
        """At start, after the bot's own legs are balanced: the policy for what recovery found
        (recorded with act=False)."""
        if self.changes and self.policy is ExternalPolicy.HALT:
            raise Halt(
                f"{self.changes[0].describe(self.ticker)}; {len(self.changes)} external "
                "change(s) while the bot was down (--on-external-change halt)"
            )

    # -- the bot's own books -----------------------------------------------------------------------
    def own(self, venue: str, position: Decimal) -> Decimal:
        """The bot's part of a venue position: the external quantity taken out."""
        return position - self.offsets.get(venue, Decimal(0))

    def own_pair(self, maker: Decimal, hedge: Decimal) -> tuple[Decimal, Decimal]:
        return self.own(self.venues[0], maker), self.own(self.venues[1], hedge)


def journaled(journal: Journal, run_id: int | None = None) -> list[tuple[str, str, Decimal]]:
    """(venue, key, signed qty) of the external changes a journal holds (of one run if given);
    none for a journal from before G9."""
    if not journal.query(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'external_changes'"
    ):
        return []
    query = "SELECT venue, key, qty FROM external_changes"
    rows = (
        journal.query(query + " WHERE run_id = ?", (run_id,))
        if run_id is not None
        else journal.query(query)
    )
    return [(str(v), str(k), Decimal(q)) for v, k, q in rows]

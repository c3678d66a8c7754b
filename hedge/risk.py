"""Risk guards: the balance guard, the stale-book guard, and the reasons a run halts.

The balance guard compares the venues' own positions (REST) with what the journal and the
hedger know. Outside an in-flight hedge, |maker + hedge| must be within one hedge step; and each
venue's position must equal its start plus the fills we counted, or something traded that we
did not see. Either breach halts the run (the kill switch lives in the engine).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from exchanges.base import BookTop, Venue

log = logging.getLogger(__name__)


class Halt(Exception):
    """A risk guard stopped the run. The message is for the operator."""


@dataclass(frozen=True, slots=True)
class BalanceReport:
    maker_position: Decimal
    hedge_position: Decimal
    maker_expected: Decimal
    hedge_expected: Decimal

    @property
    def net(self) -> Decimal:
        return self.maker_position + self.hedge_position


async def check_balance(
    maker: Venue,
    hedge: Venue,
    *,
    maker_expected: Decimal,
    hedge_expected: Decimal,
    tolerance: Decimal,
    hedge_in_flight: bool,
) -> BalanceReport:
    """Read both positions and raise Halt on a breach; returns what it saw."""
    maker_position = await maker.position()
    hedge_position = await hedge.position()
    report = BalanceReport(maker_position, hedge_position, maker_expected, hedge_expected)
    if hedge_in_flight:
        return report
    if abs(report.net) > tolerance:
        raise Halt(
            f"legs unbalanced: {maker.name} {maker_position} + {hedge.name} {hedge_position} "
            f"= {report.net} (tolerance {tolerance})"
        )
    for name, seen, expected in (
        (maker.name, maker_position, maker_expected),
        (hedge.name, hedge_position, hedge_expected),
    ):
        if abs(seen - expected) > tolerance:
            raise Halt(
                f"{name} position {seen} differs from the journal's {expected}: something "
                "traded that the bot did not see"
            )
    return report


def book_age(top: BookTop | None, now: float | None = None) -> float:
    """Seconds since the book last changed (infinite when there is no book)."""
    if top is None:
        return float("inf")
    return (time.monotonic() if now is None else now) - top.updated_at

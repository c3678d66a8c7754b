"""Risk guards: the balance guard, the stale-book guard, and the reasons a run halts.

The balance guard compares the venues' own positions with what the journal and the hedger
know: as the account streams last said them (no request), and over REST only to confirm what
looks like a breach before it halts the run. Outside an in-flight hedge, |maker + hedge| must
be within one hedge step; and each venue's position must equal its start plus the fills we
counted, or something traded that we did not see. Either breach halts the run (the kill
switch lives in the engine).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from exchanges.base import BookTop, Market, Venue
from exchanges.common.retry import OUTAGE_WINDOW_S, within_window

log = logging.getLogger(__name__)

BALANCE_RETRIES = 4


class Halt(Exception):
    """A risk guard stopped the run. The message is for the operator."""


class PositionMoved(Halt):
    """A venue position differs from its start plus the fills we counted: something traded
    that the bot did not see (an external change, G9)."""

    def __init__(self, message: str, venue: str, delta: Decimal) -> None:
        super().__init__(message)
        self.venue = venue
        self.delta = delta


Own = Callable[[Decimal, Decimal], tuple[Decimal, Decimal]]


def as_is(maker: Decimal, hedge: Decimal) -> tuple[Decimal, Decimal]:
    return maker, hedge


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
    streamed: bool = False,
    own: Own = as_is,
    window_s: float = OUTAGE_WINDOW_S,
) -> BalanceReport:
    """Read both positions and raise Halt on a breach; returns what it saw. `streamed`: take
    them from the account streams when both venues know them (no request). `own` takes the
    external changes out of what the venues say (hedge/external.py)."""
    maker_position, hedge_position = own(
        *await within_window(
            lambda: read_positions(maker, hedge, streamed=streamed),
            what="reading positions",
            window_s=window_s,
        )
    )
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
            raise PositionMoved(
                f"{name} position {seen} differs from the journal's {expected}: something "
                "traded that the bot did not see",
                name,
                seen - expected,
            )
    return report


async def read_positions(maker: Venue, hedge: Venue, *, streamed: bool) -> tuple[Decimal, Decimal]:
    """Both signed positions: from the streams when asked and both know them, else REST."""
    if streamed:
        maker_position, hedge_position = maker.streamed_position(), hedge.streamed_position()
        if maker_position is not None and hedge_position is not None:
            return maker_position, hedge_position
    return await maker.position(), await hedge.position()


async def check_balance_patiently(
    maker: Venue,
    hedge: Venue,
    *,
    expected: Callable[[], tuple[Decimal, Decimal, bool]],
    tolerance: Decimal,
    attempts: int = BALANCE_RETRIES,
    streamed: bool = True,
    own: Own = as_is,
    window_s: float = OUTAGE_WINDOW_S,
) -> None:
    """`check_balance`, looked at again before a breach halts. The first look is the account
    streams' (no request); a breach there is looked at again over REST, a few times, since a
    venue's views may lag each other by a moment. `expected` gives (maker expected, hedge
    expected, hedge in flight) as of each look."""
    for attempt in range(attempts):
        maker_expected, hedge_expected, hedge_in_flight = expected()
        try:
            await check_balance(
                maker,
                hedge,
                maker_expected=maker_expected,
                hedge_expected=hedge_expected,
                tolerance=tolerance,
                hedge_in_flight=hedge_in_flight,
                streamed=streamed and attempt == 0,
                own=own,
                window_s=window_s,
            )
            return
        except Halt:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.25 * (attempt + 1))


def book_age(top: BookTop | None, now: float | None = None) -> float:
    """Seconds since the book last changed (infinite when there is no book)."""
    if top is None:
        return float("inf")
    return (time.monotonic() if now is None else now) - top.updated_at


def tradable_minimum(market: Market, top: BookTop | None) -> Decimal:
    """The smallest quantity the venue accepts on its own: its minimum size and step, and its
    minimum notional at the top's mid rounded up to the step. Below it a net cannot be traded
    away (the legs count as balanced), only carried or swept."""
    minimum = max(market.step_size, market.min_qty)
    if market.min_notional > 0 and top is not None and top.mid > 0:
        steps = (market.min_notional / top.mid / market.step_size).to_integral_value(ROUND_CEILING)
        minimum = max(minimum, steps * market.step_size)
    return minimum

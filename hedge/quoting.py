"""Maker prices: post-only, rounded to the tick the safe way, never at or through the other side.

Two modes (`--quote-mode`):
- `bbo`: a buy is priced `maker_ticks` ticks below the best ask (a sell mirrored), so with a
  one-tick spread and `maker_ticks=1` it joins the best bid, and in a wider spread it improves
  the bid without ever taking. Rounding goes away from the other side (buy down, sell up).
- `edge` (the default): the `bbo` price, but never beyond the edge bound the hedge venue's book
  allows at quote time. A maker buy at P is hedged by a sell at the hedge venue's bid B, so it
  pays back fees and `min_edge_bps` only while

      B * (1 - hedge_fee) - P * (1 + maker_fee) >= P * min_edge,  i.e.
      P <= B * (1 - hedge_fee) / (1 + maker_fee + min_edge)

  (rounded down to the tick); a maker sell mirrored against the hedge venue's ask A:
  P >= A * (1 + hedge_fee) / (1 - maker_fee - min_edge) (rounded up). A negative `min_edge`
  is the most the user accepts to pay per fill. The bound only ever moves a quote away from
  the maker book's other side, so it can never make a post-only order cross.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from exchanges.base import BookTop, Side, round_price, round_worst_price


def maker_price(side: Side, top: BookTop, tick: Decimal, maker_ticks: int) -> Decimal:
    """The post-only price for `side` against `top`; strictly inside the opposite best."""
    offset = tick * maker_ticks
    if side is Side.BUY:
        price = round_price(top.ask - offset, tick, Side.BUY)
        if price >= top.ask:
            price = round_price(top.ask - tick, tick, Side.BUY)
    else:
        price = round_price(top.bid + offset, tick, Side.SELL)
        if price <= top.bid:
            price = round_price(top.bid + tick, tick, Side.SELL)
    if price <= 0:
        raise ValueError(f"no positive maker price for {side.value} against {top}")
    return price


class QuoteMode(Enum):
    BBO = "bbo"
    EDGE = "edge"


BPS = Decimal(10_000)


def bps_text(value: Decimal) -> str:
    """2.0000 -> "2", 0.40 -> "0.4", -1 -> "-1"."""
    return format(value.normalize(), "f") if value else "0"


@dataclass(frozen=True)
class EdgeTerms:
    """What one maker fill and its hedge cost in fees, and the edge the user asks of it."""

    maker_fee: Decimal  # fraction of notional the maker venue charges a maker fill
    hedge_fee: Decimal  # fraction the hedge venue charges a taker fill
    min_edge_bps: Decimal  # may be negative: the most the user accepts to pay per fill

    def bound(self, side: Side, hedge_top: BookTop, tick: Decimal) -> Decimal:
        """The highest maker buy (lowest maker sell) whose hedge at the hedge venue's top pays
        back both fees and `min_edge_bps`, on the maker venue's tick."""
        edge = self.min_edge_bps / BPS
        if side is Side.BUY:
            limit = hedge_top.bid * (1 - self.hedge_fee) / (1 + self.maker_fee + edge)
        else:
            limit = hedge_top.ask * (1 + self.hedge_fee) / (1 - self.maker_fee - edge)
        return round_price(limit, tick, side)

    def describe(self, side: Side, hedge_top: BookTop, tick: Decimal) -> str:
        """The bound in a trader's words, for `check`."""
        bound = self.bound(side, hedge_top, tick)
        hedge = "bid" if side is Side.BUY else "ask"
        word, limit = ("above", "at most") if side is Side.BUY else ("below", "at least")
        return (
            f"a maker {side.value} is never {word} {bound} ({limit} the hedge venue's {hedge} "
            f"{getattr(hedge_top, hedge)} after maker fee {bps_text(self.maker_fee * BPS)} bps, "
            f"hedge fee {bps_text(self.hedge_fee * BPS)} bps and min edge "
            f"{bps_text(self.min_edge_bps)} bps)"
        )


@dataclass(frozen=True)
class Quoter:
    """Where to quote, and when a resting quote has drifted too far from it."""

    tick: Decimal
    maker_ticks: int
    requote_ticks: int
    terms: EdgeTerms | None = None  # None: `bbo` mode

    def price(self, side: Side, maker_top: BookTop, hedge_top: BookTop | None) -> Decimal | None:
        """The post-only price now. In edge mode: never beyond the bound, and None (do not
        quote: wait) when the bound sits more than `requote_ticks` ticks behind the `bbo`
        price. A quote resting that deep is filled when the price runs through it, and then
        the hedge venue has moved as much: the bound held at quote time, not at the fill
        (bench/economics.py measures it). A missing hedge book gives no bound: ValueError."""
        price = maker_price(side, maker_top, self.tick, self.maker_ticks)
        if self.terms is None:
            return price
        if hedge_top is None:
            raise ValueError("no hedge venue book to bound the quote")
        bound = self.terms.bound(side, hedge_top, self.tick)
        behind = (price - bound) * side.sign  # how far the bound holds us off the touch
        if behind > self.tick * self.requote_ticks:
            return None
        price = min(price, bound) if side is Side.BUY else max(price, bound)
        if price <= 0:
            raise ValueError(f"no positive maker price for {side.value} under the edge bound")
        return price

    def drift(
        self,
        side: Side,
        order_price: Decimal,
        maker_top: BookTop | None,
        hedge_top: BookTop | None,
    ) -> str:
        """Why the resting order must be re-quoted ("" while it may rest): where we would
        quote now is more than `requote_ticks` ticks away, or nowhere (edge mode)."""
        if maker_top is None:
            return ""  # no maker book: nothing to compare with
        try:
            ideal = self.price(side, maker_top, hedge_top)
        except ValueError:
            return ""  # no bound to compare with: the book is resyncing
        if ideal is None:
            return "the hedge venue's book no longer pays back the quote (edge bound)"
        if abs(ideal - order_price) / self.tick > self.requote_ticks:
            what = "quote" if self.terms is None else "quote or its edge bound"
            return f"{what} moved more than {self.requote_ticks} ticks"
        return ""


class RateLimiter:
    """At most `limit` events in any `window` seconds: bounds the re-quote rate.

    An event is recorded at the time it is allowed (now + the returned delay), so callers that
    ask again before their delay has passed are queued behind it, not let through.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        if limit < 1 or window <= 0:
            raise ValueError("RateLimiter needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.clock = clock
        # Only the last `limit` allowed times matter: the next event may come `window` after
        # the oldest of them.
        self._events: deque[float] = deque(maxlen=limit)

    def delay(self) -> float:
        """Seconds to wait before the next event is allowed (0 when allowed now); records it."""
        now = self.clock()
        at = now
        if len(self._events) == self.limit:
            at = max(now, self._events[0] + self.window)
        self._events.append(at)
        return at - now


def worst_price(side: Side, top: BookTop, slippage_bps: Decimal, tick: Decimal) -> Decimal:
    """An IOC's limit: the opposite best moved `slippage_bps` against us, rounded the safe way
    (a buy up, a sell down) so the order can still fill."""
    slippage = slippage_bps / Decimal(10_000)
    reference = top.ask if side is Side.BUY else top.bid
    worst = reference * (1 + slippage) if side is Side.BUY else reference * (1 - slippage)
    return round_worst_price(worst, tick, side)

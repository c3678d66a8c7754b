"""Maker prices: post-only, rounded to the tick the safe way, never at or through the other side.

A buy is priced `maker_ticks` ticks below the best ask (a sell mirrored), so with a one-tick
spread and `maker_ticks=1` it joins the best bid, and in a wider spread it improves the bid
without ever taking. Rounding goes away from the other side (buy down, sell up).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal

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


def ticks_away(
    side: Side, order_price: Decimal, top: BookTop, tick: Decimal, maker_ticks: int
) -> int:
    """How many ticks our resting price is from where we would quote now."""
    ideal = maker_price(side, top, tick, maker_ticks)
    return int(abs(ideal - order_price) / tick)


def should_requote(
    side: Side,
    order_price: Decimal,
    top: BookTop,
    tick: Decimal,
    maker_ticks: int,
    requote_ticks: int,
) -> bool:
    return ticks_away(side, order_price, top, tick, maker_ticks) > requote_ticks


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

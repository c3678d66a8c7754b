"""One request budget per venue account: every REST call and every transaction passes here.

The venues count requests per account over a rolling minute (Lighter Standard: 60 requests and
60 sendTx; Premium: 24,000 weighted and 4,000 sendTx; Backpack: about 2,000) and answer 429
past it. Whoever spends the budget, a hedge must still find room: so requests come in three
priorities and the lower ones keep out of a reserve:

- `HEDGE`   may use the whole budget and is served first;
- `ORDER`   (maker orders, cancels) may not use the last `reserve` units;
- `READ`    (positions, reconciliation, history) may not use the last `2 * reserve`.

`try_take()` is the synchronous fast path (the fill -> hedge path calls it and never waits);
`take()` waits, in priority order, until the request fits. A 429 from the venue
(`penalize()`) closes the budget for `Retry-After` seconds (or a short backoff): a 429 is
never by itself a reason to halt. `snapshot()` is what logs, the dashboard and the report show.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The venues' minute, plus a margin: we book a request when we send it, the venue when it
# arrives; a slot we free must already be free at the venue.
WINDOW_S = 61.0
DEFAULT_BACKOFF_S = 1.0  # a 429 without Retry-After
MAX_BACKOFF_S = 60.0


class Priority(enum.IntEnum):
    HEDGE = 0
    ORDER = 1
    READ = 2


@dataclass(frozen=True, slots=True)
class TierLimits:
    """What one account may spend a rolling minute. `tx_capacity` bounds transactions
    (sendTx) on top of the request capacity they also use; None = no separate bound."""

    name: str
    capacity: int
    tx_capacity: int | None = None
    reserve: int = 1
    # Weights by request kind; a kind not listed weighs `default_weight`.
    weights: tuple[tuple[str, int], ...] = ()
    default_weight: int = 1

    def weight(self, kind: str) -> int:
        for name, weight in self.weights:
            if name == kind:
                return weight
        return self.default_weight


LIGHTER_TIERS: dict[str, TierLimits] = {
    # Standard: 60 requests a minute, not weighted; sendTx limited to 60 as well.
    "standard": TierLimits("lighter standard", capacity=60, tx_capacity=60, reserve=4),
    # Premium: 24,000 weighted requests (sendTx and nextNonce 6, inactive orders 100,
    # trades 600, others 300) and about 4,000 sendTx.
    "premium": TierLimits(
        "lighter premium",
        capacity=24_000,
        tx_capacity=4_000,
        reserve=600,
        weights=(
            ("sendTx", 6),
            ("nextNonce", 6),
            ("accountInactiveOrders", 100),
            ("trades", 600),
            ("recentTrades", 600),
        ),
        default_weight=300,
    ),
}


def backpack_limits(per_minute: int = 2000) -> TierLimits:
    return TierLimits("backpack", capacity=per_minute, reserve=max(1, per_minute // 50))


class RequestBudget:
    """A rolling-minute budget for one account, shared by every path that talks to it."""

    def __init__(
        self,
        limits: TierLimits,
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.window_s = window_s
        self._clock = clock
        self._spent: deque[tuple[float, int, bool]] = deque()  # (time, weight, is_tx)
        self._used = 0
        self._tx_used = 0
        self._closed_until = 0.0
        self._waiters: list[tuple[int, int, asyncio.Future[None], int, bool]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.granted = 0
        self.waited = 0
        self.rejected_429 = 0

    # -- spending -----------------------------------------------------------------------------

    def try_take(self, kind: str, priority: Priority, *, tx: bool = False) -> bool:
        """Spend one request of `kind` now if it fits; never waits. Requests already waiting
        at the same or a higher priority go first."""
        weight = self.limits.weight(kind)
        if any(w[0] <= priority for w in self._waiters):
            return False
        return self._fits_then_book(weight, priority, tx)

    async def take(self, kind: str, priority: Priority, *, tx: bool = False) -> None:
        """Spend one request of `kind`, waiting (in priority order) until it fits."""
        if self.try_take(kind, priority, tx=tx):
            return
        self.waited += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        weight = self.limits.weight(kind)
        heapq.heappush(self._waiters, (int(priority), next(self._order), future, weight, tx))
        self._schedule()
        try:
            await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                self._waiters = [w for w in self._waiters if w[2] is not future]
                heapq.heapify(self._waiters)
            raise

    def penalize(self, retry_after_s: float | None = None) -> float:
        """The venue answered 429: nothing is sent until it allows again. Returns the pause."""
        self.rejected_429 += 1
        pause = DEFAULT_BACKOFF_S if retry_after_s is None else retry_after_s
        pause = min(max(pause, 0.0), MAX_BACKOFF_S)
        self._closed_until = max(self._closed_until, self._clock() + pause)
        log.warning(
            "%s: the venue answered 429; pausing requests %.1f s (%s)",
            self.limits.name,
            pause,
            self.describe(),
        )
        self._schedule()
        return pause

    def seconds_until_room(self, kind: str, count: int, priority: Priority) -> float:
        """How long until `count` requests of `kind` at `priority` would fit (0.0: now),
        assuming nothing else is spent meanwhile. Spends nothing: a caller that must not start
        work whose requests cannot be paid for (a maker order and its hedge) asks this first."""
        now = self._clock()
        self._expire(now)
        limits = self.limits
        need = limits.weight(kind) * count
        room = limits.capacity - limits.reserve * int(priority)
        wait = max(self._closed_until - now, 0.0)
        if self._used + need <= room and not self._waiters:
            return wait
        freed, at = room - self._used, now + self.window_s
        for stamp, weight, _ in self._spent:
            freed += weight
            if freed >= need:
                at = stamp + self.window_s
                break
        return max(wait, at - now, 0.001)

    def holds(self, priority: Priority) -> bool:
        """Whether requests at `priority` are held now: the venue's 429 pause, or one of them
        (or of a higher priority) waiting for room in the minute."""
        if self._clock() < self._closed_until:
            return True
        return any(waiter[0] <= priority for waiter in self._waiters)

    # -- state --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        now = self._clock()
        self._expire(now)
        return {
            "tier": self.limits.name,
            "capacity": self.limits.capacity,
            "used": self._used,
            "left": max(self.limits.capacity - self._used, 0),
            "tx_used": self._tx_used,
            "waiting": len(self._waiters),
            "paused_s": round(max(self._closed_until - now, 0.0), 3),
            "granted": self.granted,
            "waited": self.waited,
            "rejected_429": self.rejected_429,
        }

    def describe(self) -> str:
        s = self.snapshot()
        return f"used {s['used']}/{s['capacity']} a minute, {s['waiting']} waiting"

    # -- internals ----------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        spent = self._spent
        while spent and spent[0][0] <= horizon:
            _, weight, is_tx = spent.popleft()
            self._used -= weight
            self._tx_used -= is_tx

    def _fits(self, weight: int, priority: Priority, tx: bool, now: float) -> bool:
        if now < self._closed_until:
            return False
        self._expire(now)
        limits = self.limits
        room = limits.capacity - limits.reserve * int(priority)
        if self._used + weight > room:
            return False
        return not (tx and limits.tx_capacity is not None and self._tx_used >= limits.tx_capacity)

    def _fits_then_book(self, weight: int, priority: Priority, tx: bool) -> bool:
        now = self._clock()
        if not self._fits(weight, priority, tx, now):
            return False
        self._spent.append((now, weight, tx))
        self._used += weight
        self._tx_used += tx
        self.granted += 1
        return True

    def _release(self) -> None:
        """Wake waiters, highest priority first, while they fit."""
        self._timer = None
        while self._waiters:
            priority, _, future, weight, tx = self._waiters[0]
            if future.done():
                heapq.heappop(self._waiters)
                continue
            if not self._fits_then_book(weight, Priority(priority), tx):
                break
            heapq.heappop(self._waiters)
            future.set_result(None)
        self._schedule()

    def _schedule(self) -> None:
        """Arm one timer for the moment the first waiter may fit (a slot expires or the
        429 pause ends)."""
        if not self._waiters or self._timer is not None:
            return
        now = self._clock()
        wake = max(self._closed_until, now)
        if self._spent and wake <= now:
            wake = self._spent[0][0] + self.window_s
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(wake - now, 0.001), self._release)

    def close(self) -> None:
        """Cancel the timer and fail every waiter (the owner is shutting down)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, _, future, _, _ in self._waiters:
            if not future.done():
                future.cancel()
        self._waiters.clear()

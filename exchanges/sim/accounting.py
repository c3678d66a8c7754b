"""What a simulated venue was asked, and how much it still allows: request accounting and
rolling-minute rate limits, shared by both simulated venues.

The real venues count requests per account and per IP over a rolling minute and answer HTTP
429 past the limit (../shared/protocols, "Second reading"). The simulators do the same with
`RollingLimit`, and record every request in a `RequestLedger` that tests and benchmarks read
over `GET /_sim/requests` (cleared by `POST /_sim/requests/reset`):

    {"venue": "lighter",
     "accounts": {"7": {"requests": {"/api/v1/sendTx": 3, ...}, "requests_total": 5,
                        "send_tx": 3, "http_429": 0, "ws_messages": 4}, ...},
     "ips": {"127.0.0.1": {... same shape ...}}}

Accounts are keyed by the venue's own id as a string (Lighter's account index, Backpack's API
key's account); requests that name no account count under their IP only.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

WINDOW_S = 60.0


class RollingLimit:
    """A weighted budget over a rolling window: at most `capacity` weight in any `window_s`.

    `capacity=None` means unlimited (still counted). `take()` either books the weight and
    returns None, or books nothing and returns the seconds until that weight would fit;
    `take_all()` does the same for one request against several budgets at once.
    """

    def __init__(
        self,
        capacity: int | None,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.window_s = window_s
        self._clock = clock
        self._events: deque[tuple[float, int]] = deque()
        self._used = 0

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        events = self._events
        while events and events[0][0] <= horizon:
            self._used -= events.popleft()[1]

    def used(self) -> int:
        self._expire(self._clock())
        return self._used

    def wait(self, weight: int = 1) -> float | None:
        """Seconds until `weight` would fit, or None if it fits now. Books nothing."""
        now = self._clock()
        self._expire(now)
        if self.capacity is None or self._used + weight <= self.capacity:
            return None
        # The oldest events leave first: wait until enough of them have.
        freed, wait = self.capacity - self._used, self.window_s
        for stamp, booked in self._events:
            freed += booked
            if freed >= weight:
                wait = stamp + self.window_s - now
                break
        return max(wait, 0.001)

    def book(self, weight: int = 1) -> None:
        """Book `weight` now, room or not (`wait` says whether there is)."""
        self._events.append((self._clock(), weight))
        self._used += weight

    def take(self, weight: int = 1) -> float | None:
        return take_all([(self, weight)])


def take_all(demands: Iterable[tuple[RollingLimit, int]]) -> float | None:
    """One request against several budgets (an account's and its IP's, say): books each
    weight only if every budget has room, else books nothing anywhere and returns the longest
    wait. A request refused by one budget must not spend the others."""
    demands = list(demands)
    waits = [wait for budget, weight in demands if (wait := budget.wait(weight)) is not None]
    if waits:
        return max(waits)
    for budget, weight in demands:
        budget.book(weight)
    return None


@dataclass
class _Counts:
    requests: dict[str, int] = field(default_factory=dict)
    requests_total: int = 0
    send_tx: int = 0
    http_429: int = 0
    ws_messages: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "requests_total": self.requests_total,
            "send_tx": self.send_tx,
            "http_429": self.http_429,
            "ws_messages": self.ws_messages,
        }


class RequestLedger:
    """Per-account and per-IP counts of what one simulated venue received."""

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self._accounts: dict[str, _Counts] = {}
        self._ips: dict[str, _Counts] = {}
        # WebSocket connections: opened in all, open now, the most open at once.
        self.ws_opened = 0
        self.ws_open = 0
        self.ws_most_open = 0

    def ws_connected(self) -> None:
        self.ws_opened += 1
        self.ws_open += 1
        self.ws_most_open = max(self.ws_most_open, self.ws_open)

    def ws_closed(self) -> None:
        self.ws_open -= 1

    def websockets(self) -> dict[str, int]:
        return {"opened": self.ws_opened, "open": self.ws_open, "most_open": self.ws_most_open}

    def _each(self, account: str | None, ip: str) -> list[_Counts]:
        rows = [self._ips.setdefault(ip, _Counts())]
        if account is not None:
            rows.append(self._accounts.setdefault(account, _Counts()))
        return rows

    def request(self, account: str | None, ip: str, endpoint: str) -> None:
        """One REST request received (counted whether or not it was then refused)."""
        for counts in self._each(account, ip):
            counts.requests[endpoint] = counts.requests.get(endpoint, 0) + 1
            counts.requests_total += 1

    def send_tx(self, account: str | None, ip: str) -> None:
        """One transaction submitted (REST or WebSocket)."""
        for counts in self._each(account, ip):
            counts.send_tx += 1

    def rejected_429(self, account: str | None, ip: str) -> None:
        for counts in self._each(account, ip):
            counts.http_429 += 1

    def ws_message(self, account: str | None, ip: str) -> None:
        """One client message received on a WebSocket (any kind)."""
        for counts in self._each(account, ip):
            counts.ws_messages += 1

    def account(self, account: str) -> dict[str, object]:
        return self._accounts.get(account, _Counts()).as_json()

    def snapshot(self) -> dict[str, object]:
        return {
            "venue": self.venue,
            "websockets": self.websockets(),
            "accounts": {k: v.as_json() for k, v in sorted(self._accounts.items())},
            "ips": {k: v.as_json() for k, v in sorted(self._ips.items())},
        }

    def reset(self) -> None:
        self._accounts.clear()
        self._ips.clear()
        self.ws_opened = self.ws_most_open = self.ws_open


def add_requests_route(app: web.Application, ledger: RequestLedger) -> None:
    """`GET /_sim/requests` (the ledger) and `POST /_sim/requests/reset` (clear it)."""

    async def read(_: web.Request) -> web.Response:
        return web.json_response(ledger.snapshot())

    async def reset(_: web.Request) -> web.Response:
        ledger.reset()
        return web.json_response({"reset": True})

    app.router.add_get("/_sim/requests", read)
    app.router.add_post("/_sim/requests/reset", reset)


def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"

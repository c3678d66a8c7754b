"""What the parts of one BackpackVenue share: its settings, the market once loaded, the socket
once open, the history clock, and the counters tests, benchmarks and the dashboard read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from exchanges.base import Market, VenueError
from exchanges.common.ws import ReconnectingWebSocket


@dataclass(slots=True)
class Stats:
    fills_delivered: int = 0
    duplicates_dropped: int = 0
    malformed: int = 0
    resyncs: int = 0
    recoveries: int = 0


@dataclass(slots=True)
class Session:
    """Settings (fixed), plus what connect() sets up and close() clears."""

    ticker: str
    symbol: str
    api_url: str
    request_timeout: float
    retry_attempts: int
    order_window_ms: int
    # How far fill/order history may trail the engine (the sim: 0.5 s; the venue publishes no
    # figure). Reads that must be complete wait this long after the last thing they must show.
    history_lag_s: float
    stats: Stats = field(default_factory=Stats)
    market: Market | None = None
    ws: ReconnectingWebSocket | None = None
    last_event_ms: int = 0  # venue time of the last account event seen
    disconnected_ms: int = 0  # our wall clock when the socket last dropped
    connected_ms: int = 0
    history_settles_at: float = 0.0  # monotonic: fill history is complete up to now after it

    def require_market(self) -> Market:
        if self.market is None:
            raise VenueError("backpack: market rules not loaded; call connect() first")
        return self.market

    def history_moved(self) -> None:
        """Something just happened that fill history may not show for `history_lag_s`."""
        self.history_settles_at = time.monotonic() + self.history_lag_s


def now_ms() -> int:
    return time.time_ns() // 1_000_000

"""What an operator must hear about while the bot runs unattended, told through `Alerts`.

`RunWatch` looks at the running pairs once a second from its own task, off the hedge path,
reading only in-memory state: a trade on the account not made by the bot (each pair's
`ExternalChanges`), a reconnect storm or a 429 storm on a venue (the shared sockets' and
budgets' running totals through `StormDetector`), and, when asked, a periodic summary. A pair's
end is told by `finished`: a halt, or legs left unbalanced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hedge.alerts import Alerts, StormDetector, rate_limit_storms, reconnect_storms
from hedge.engine import EXIT_HALTED, EXIT_UNBALANCED, HedgeEngine, RunResult

WATCH_INTERVAL_S = 1.0


class RunWatch:
    def __init__(
        self,
        alerts: Alerts,
        engines: Callable[[], list[HedgeEngine]],
        *,
        summary_every_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.alerts = alerts
        self.engines = engines
        self.summary_every_s = summary_every_s
        self.clock = clock
        self._external_seen: dict[str, int] = {}
        self._reconnects: dict[str, StormDetector] = {}
        self._rate_limits: dict[str, StormDetector] = {}
        self._next_summary = clock() + summary_every_s

    def finished(self, ticker: str, result: RunResult) -> None:
        """A pair's run ended: halted or unbalanced is told at once."""
        if result.exit_code == EXIT_UNBALANCED:
            self.alerts.unbalanced(ticker, result.reason)
        elif result.exit_code == EXIT_HALTED:
            self.alerts.halt(ticker, result.reason)

    async def run(self) -> None:
        """Owned task: one look a second until cancelled."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            self.look()

    def look(self) -> None:
        engines = self.engines()
        for engine in engines:
            self._external(engine)
        self._storms(engines)
        if self.summary_every_s > 0 and self.clock() >= self._next_summary:
            self._next_summary = self.clock() + self.summary_every_s
            self.alerts.summary(summary_text(engines))

    def _external(self, engine: HedgeEngine) -> None:
        external = engine.external
        if external is None:
            return
        ticker = engine.settings.ticker
        seen = self._external_seen.get(ticker, 0)
        changes = external.changes
        if len(changes) > seen:
            self._external_seen[ticker] = len(changes)
            latest = changes[-1].describe(ticker)
            more = f" ({len(changes) - seen} new)" if len(changes) - seen > 1 else ""
            self.alerts.external_change(ticker, f"{latest}{more}; policy {external.policy.value}")

    def _storms(self, engines: list[HedgeEngine]) -> None:
        """Running totals per venue (the pairs share each venue's socket and budget: the
        largest reconnect count, each budget's 429s once)."""
        reconnects: dict[str, int] = {}
        rejected: dict[str, int] = {}
        budgets: set[int] = set()
        for engine in engines:
            for venue in (engine.maker, engine.hedge):
                count = int(getattr(venue, "reconnects", 0))
                reconnects[venue.name] = max(reconnects.get(venue.name, 0), count)
                budget: Any = getattr(venue, "budget", None)
                if budget is not None and id(budget) not in budgets:
                    budgets.add(id(budget))
                    rejected[venue.name] = rejected.get(venue.name, 0) + int(budget.rejected_429)
        for name, total in reconnects.items():
            detector = self._reconnects.setdefault(name, reconnect_storms(self.clock))
            storm = detector.observe(total)
            if storm is not None:
                self.alerts.reconnect_storm(name, storm, detector.window_s)
        for name, total in rejected.items():
            detector = self._rate_limits.setdefault(name, rate_limit_storms(self.clock))
            storm = detector.observe(total)
            if storm is not None:
                self.alerts.rate_limit_storm(name, storm, detector.window_s)


def summary_text(engines: list[HedgeEngine]) -> str:
    """One line: each pair's state, fills and maker volume, and the account's volume."""
    parts = []
    volume = Decimal(0)
    for engine in engines:
        hedger = engine.hedger
        if hedger is None:
            parts.append(f"{engine.settings.ticker} {engine.status.state}")
            continue
        stats = hedger.stats
        volume += stats.maker_volume
        parts.append(
            f"{engine.settings.ticker} {engine.status.state}, fills {stats.maker_fills}/"
            f"{stats.hedge_fills}, volume {stats.maker_volume:.2f}"
        )
    return f"{'; '.join(parts)}; maker volume {volume:.2f} USDC"

"""Prometheus metrics of the running pairs, served on `--metrics-port` (prometheus-client).

Exported: `serve(port, engines, host)` starts the standard exposition HTTP server (its own
registry, a daemon thread) and returns a `MetricsServer` to `close()`; `parse_port(raw)` checks
the flag's text; `HedgebotCollector` is the collector itself; `METRIC_NAMES` lists what it
exports and `LATENCY_BUCKETS_S` the latency histogram's bounds.

It costs nothing between scrapes: nothing is counted on the hedge path. A scrape reads the
engines' in-memory state (status, hedger counters, book tops, request budgets) once, on the
event loop that owns it (one callback; the state is never read from the server's thread while
the loop mutates it), and builds the answer in the server's thread. Decimals become floats
here only. Every series has the label `pair` (the ticker), and `venue` (the venue's name) and
`role` (maker/hedge) where it concerns one leg; the request budget belongs to the account,
shared by the pairs: it is exported once per venue, labelled `venue` only.

Metrics (counters end in `_total`; amounts in the quote currency, USDC):

- `hedgebot_fills_total{pair,venue,role}`: fills counted by the hedger, per leg
- `hedgebot_volume_quote_total{pair,venue,role}`: traded notional, per leg
- `hedgebot_fees_quote{pair,venue,role}`: fees paid so far, per leg (negative: rebates)
- `hedgebot_position{pair,venue,role}`: the leg's position, base quantity, signed
- `hedgebot_reconnects_total{pair,venue,role}`: the venue's WebSocket sessions after the first
- `hedgebot_hedges_sent_total{pair}`: hedge orders sent
- `hedgebot_hedge_failures_total{pair}`: hedges that failed
- `hedgebot_escalations_total{pair}`: hedges escalated (wider slippage) after the timeout
- `hedgebot_hedge_resends_total{pair}`: hedges sent that were not a fill's first (retries,
  remainders, escalations, sweeps): `hedges_sent` = first sends + these
- `hedgebot_over_hedges_total{pair}`: hedges that filled more than the exposure
- `hedgebot_duplicate_fills_total{pair}`: fill events seen twice and ignored
- `hedgebot_pnl_quote{pair}`: cash of the fills minus fees, open legs at the mids (absent
  while an open leg has no book to be valued at)
- `hedgebot_wear_per_10k{pair}`: -PnL per 10,000 of maker volume (absent before any)
- `hedgebot_net_position{pair}`: maker + hedge position, base quantity
- `hedgebot_unhedged{pair}`: base quantity not covered by hedge fills nor hedges in flight
- `hedgebot_unhedged_age_seconds{pair}`: how long a tradable exposure has waited
- `hedgebot_max_unhedged_seconds{pair}`: the longest wait of the run
- `hedgebot_hedge_latency_seconds{pair}`: histogram, maker fill read -> hedge sent, over the
  hedger's window of the last 10,000 hedges (all of them until then: past 10,000 the count
  stays at 10,000, so read quantiles from the buckets themselves rather than from `rate()`)
- `hedgebot_engine_state{pair,state}`: 1 for the engine's current state, 0 for the others
- `hedgebot_iteration{pair}`: the iteration being traded
- `hedgebot_requotes_total{pair}`: maker orders re-quoted
- `hedgebot_post_only_rejects_total{pair}`: post-only orders the maker venue refused
- `hedgebot_budget_used{venue}`: requests spent in the rolling minute (weighted)
- `hedgebot_budget_capacity{venue}`: requests allowed in the rolling minute
- `hedgebot_budget_waiting{venue}`: requests waiting for room
- `hedgebot_budget_paused_seconds{venue}`: what is left of a pause after a 429
- `hedgebot_budget_granted_total{venue}`: requests granted
- `hedgebot_budget_waited_total{venue}`: requests that had to wait
- `hedgebot_budget_rejected_429_total{venue}`: 429 answers from the venue
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import errno
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from exchanges.base import ConfigError
from hedge.dashboard import Dashboard
from hedge.engine import BUDGET_WAIT

if TYPE_CHECKING:
    from exchanges.base import Venue
    from hedge.engine import HedgeEngine
    from hedge.hedger import Hedger

__all__ = [
    "LATENCY_BUCKETS_S",
    "METRIC_NAMES",
    "HedgebotCollector",
    "MetricsServer",
    "parse_port",
    "serve",
]

log = logging.getLogger(__name__)

Engines = Callable[[], Iterable["HedgeEngine"]]
FLAG = "--metrics-port"
SCRAPE_TIMEOUT_S = 5.0  # how long a scrape waits for the event loop (Prometheus: 10 s)
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
# The engine's states (hedge/engine.py), exported as 0 when not current so a dashboard sees
# every state; a state not listed here is exported too while it is the current one.
ENGINE_STATES = (
    "starting", "connecting", "reconciling", "sleeping", "waiting for edge", "quoting",
    "hedging", "settling", "waiting for fresh book", BUDGET_WAIT, "stopping", "halting",
    "done", "halted", "stopped",
)  # fmt: skip

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
LEG, PAIR, VENUE = ("pair", "venue", "role"), ("pair",), ("venue",)
# (name without `_total`, type, labels, help), in the order of the exposition.
_SPECS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("hedgebot_fills", COUNTER, LEG, "Fills counted by the hedger, per leg."),
    ("hedgebot_volume_quote", COUNTER, LEG, "Traded notional in the quote currency, per leg."),
    ("hedgebot_fees_quote", GAUGE, LEG, "Fees paid in the quote currency, per leg."),
    ("hedgebot_position", GAUGE, LEG, "The leg's position, base quantity, signed."),
    ("hedgebot_reconnects", COUNTER, LEG, "WebSocket sessions after the first."),
    ("hedgebot_hedges_sent", COUNTER, PAIR, "Hedge orders sent."),
    ("hedgebot_hedge_failures", COUNTER, PAIR, "Hedges that failed."),
    ("hedgebot_escalations", COUNTER, PAIR, "Hedges escalated (wider slippage) after the timeout."),
    ("hedgebot_hedge_resends", COUNTER, PAIR, "Hedges sent that were not a fill's first."),
    ("hedgebot_over_hedges", COUNTER, PAIR, "Hedges that filled more than the exposure."),
    ("hedgebot_duplicate_fills", COUNTER, PAIR, "Fill events seen twice and ignored."),
    ("hedgebot_pnl_quote", GAUGE, PAIR, "Cash of the fills minus fees, open legs at the mids."),
    ("hedgebot_wear_per_10k", GAUGE, PAIR, "-PnL per 10,000 of maker volume."),
    ("hedgebot_net_position", GAUGE, PAIR, "Maker plus hedge position, base quantity."),
    ("hedgebot_unhedged", GAUGE, PAIR, "Base quantity not hedged nor in flight, signed."),
    ("hedgebot_unhedged_age_seconds", GAUGE, PAIR, "How long a tradable exposure has waited."),
    ("hedgebot_max_unhedged_seconds", GAUGE, PAIR, "The longest unhedged wait of the run."),
    (
        "hedgebot_hedge_latency_seconds",
        HISTOGRAM,
        PAIR,
        "Maker fill read to hedge sent, over the last 10,000 hedges.",
    ),
    ("hedgebot_engine_state", GAUGE, ("pair", "state"), "1 for the engine's current state."),
    ("hedgebot_iteration", GAUGE, PAIR, "The iteration being traded."),
    ("hedgebot_requotes", COUNTER, PAIR, "Maker orders re-quoted."),
    ("hedgebot_post_only_rejects", COUNTER, PAIR, "Post-only orders the maker venue refused."),
    ("hedgebot_budget_used", GAUGE, VENUE, "Requests spent in the rolling minute (weighted)."),
    ("hedgebot_budget_capacity", GAUGE, VENUE, "Requests allowed in the rolling minute."),
    ("hedgebot_budget_waiting", GAUGE, VENUE, "Requests waiting for room in the budget."),
    ("hedgebot_budget_paused_seconds", GAUGE, VENUE, "What is left of a pause after a 429."),
    ("hedgebot_budget_granted", COUNTER, VENUE, "Requests granted by the budget."),
    ("hedgebot_budget_waited", COUNTER, VENUE, "Requests that waited for the budget."),
    ("hedgebot_budget_rejected_429", COUNTER, VENUE, "429 answers from the venue."),
)
METRIC_NAMES: tuple[str, ...] = tuple(
    name + "_total" if kind == COUNTER else name for name, kind, _, _ in _SPECS
)


# -- what one scrape reads -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegSample:
    role: str
    venue: str
    fills: int
    volume: float
    fees: float
    position: float


@dataclass(frozen=True, slots=True)
class HedgeSample:
    legs: tuple[LegSample, LegSample]
    hedges_sent: int
    hedge_failures: int
    escalations: int
    resends: int
    over_hedges: int
    duplicates_ignored: int
    pnl: float | None  # None while an open leg has no book to be valued at
    wear_per_10k: float | None
    net: float
    unhedged: float
    unhedged_age_s: float
    max_unhedged_s: float
    latencies_ns: list[int]


@dataclass(frozen=True, slots=True)
class PairSample:
    pair: str
    state: str
    iteration: int
    requotes: int
    post_only_rejects: int
    reconnects: tuple[tuple[str, str, int], ...]  # (role, venue, count)
    hedge: HedgeSample | None  # None before the hedger exists


@dataclass(frozen=True, slots=True)
class Snapshot:
    pairs: list[PairSample]
    budgets: list[tuple[str, dict[str, object]]]  # (venue label, RequestBudget.snapshot())


def read_snapshot(engines: Iterable[HedgeEngine]) -> Snapshot:
    """Everything a scrape exports, read at once (on the thread that owns the state)."""
    pairs: list[PairSample] = []
    budgets: list[tuple[str, dict[str, object]]] = []
    seen: list[object] = []  # budgets by identity: one per account, shared by the pairs
    for engine in engines:
        try:
            pairs.append(_read_pair(engine))
        except Exception as exc:  # a pair half built or torn down: the others still count
            log.warning("metrics: could not read pair %s: %s", _ticker(engine), exc)
        for venue in (engine.maker, engine.hedge):
            budget = getattr(venue, "budget", None)
            if budget is None or any(budget is other for other in seen):
                continue
            seen.append(budget)
            label = _unique(venue.name, {name for name, _ in budgets})
            budgets.append((label, budget.snapshot()))
    return Snapshot(pairs, budgets)


def _ticker(engine: HedgeEngine) -> str:
    return str(getattr(getattr(engine, "settings", None), "ticker", "?"))


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name#2`, `name#3`... when two separate accounts share a venue name."""
    label, n = name, 1
    while label in taken:
        n += 1
        label = f"{name}#{n}"
    return label


def _read_pair(engine: HedgeEngine) -> PairSample:
    status, hedger = engine.status, engine.hedger
    reconnects = []
    for role, venue in (("maker", engine.maker), ("hedge", engine.hedge)):
        count = getattr(venue, "reconnects", None)
        if isinstance(count, int):
            reconnects.append((role, venue.name, count))
    return PairSample(
        pair=engine.settings.ticker,
        state=status.state,
        iteration=status.iteration,
        requotes=status.requotes,
        post_only_rejects=status.post_only_rejects,
        reconnects=tuple(reconnects),
        hedge=None if hedger is None else _read_hedger(engine, hedger),
    )


def _leg(
    role: str, venue: Venue, fills: int, volume: Decimal, fees: Decimal, position: Decimal
) -> LegSample:
    return LegSample(role, venue.name, fills, float(volume), float(fees), float(position))


def _read_hedger(engine: HedgeEngine, hedger: Hedger) -> HedgeSample:
    stats = hedger.stats
    pnl = Dashboard._pnl(engine)  # the dashboard's PnL, so both show the same number
    maker_position, hedge_position = engine.maker_position, engine.hedge_position
    fees_hedge = stats.fees - stats.fees_maker
    return HedgeSample(
        legs=(
            _leg(
                "maker",
                engine.maker,
                stats.maker_fills,
                stats.maker_volume,
                stats.fees_maker,
                maker_position,
            ),
            _leg(
                "hedge",
                engine.hedge,
                stats.hedge_fills,
                stats.hedge_volume,
                fees_hedge,
                hedge_position,
            ),
        ),
        hedges_sent=stats.hedges_sent,
        hedge_failures=stats.hedge_failures,
        escalations=stats.escalations,
        resends=max(stats.hedges_sent - stats.first_sends, 0),
        over_hedges=stats.over_hedges,
        duplicates_ignored=stats.duplicates_ignored,
        pnl=None if pnl is None else float(pnl),
        wear_per_10k=(
            float(-pnl / stats.maker_volume * 10_000)
            if pnl is not None and stats.maker_volume
            else None
        ),
        net=float(maker_position + hedge_position),
        unhedged=float(hedger.unhedged),
        unhedged_age_s=hedger.unhedged_age(),
        max_unhedged_s=stats.max_unhedged_s,
        latencies_ns=list(stats.latencies_ns),  # a C-level copy: the sorting is done later
    )


# -- the exposition --------------------------------------------------------------------------


class _Families:
    """One metric family per spec, filled sample by sample."""

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}
        for name, kind, labels, doc in _SPECS:
            family: Metric
            if kind == COUNTER:
                family = CounterMetricFamily(name, doc, labels=labels)
            elif kind == GAUGE:
                family = GaugeMetricFamily(name, doc, labels=labels)
            else:
                family = HistogramMetricFamily(name, doc, labels=labels)
            self._by_name[name] = family

    def add(self, name: str, labels: Iterable[str], value: float) -> None:
        family: Any = self._by_name[name]
        family.add_metric(list(labels), value)

    def histogram(self, name: str, labels: Iterable[str], latencies_ns: list[int]) -> None:
        values = sorted(latencies_ns)
        buckets = [
            (floatToGoString(bound), float(bisect.bisect_right(values, round(bound * 1e9))))
            for bound in LATENCY_BUCKETS_S
        ]
        buckets.append(("+Inf", float(len(values))))
        family: Any = self._by_name[name]
        family.add_metric(list(labels), buckets, sum_value=sum(values) / 1e9)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._by_name.values())


def build_families(snapshot: Snapshot) -> _Families:
    """The metric families of one snapshot (Decimals are already floats)."""
    families = _Families()
    for pair in snapshot.pairs:
        _add_pair(families, pair)
    for venue, state in snapshot.budgets:
        for name, key in (
            ("hedgebot_budget_used", "used"),
            ("hedgebot_budget_capacity", "capacity"),
            ("hedgebot_budget_waiting", "waiting"),
            ("hedgebot_budget_paused_seconds", "paused_s"),
            ("hedgebot_budget_granted", "granted"),
            ("hedgebot_budget_waited", "waited"),
            ("hedgebot_budget_rejected_429", "rejected_429"),
        ):
            value = state.get(key)
            if isinstance(value, int | float):
                families.add(name, (venue,), float(value))
    return families


def _add_pair(families: _Families, pair: PairSample) -> None:
    p = (pair.pair,)
    states = ENGINE_STATES if pair.state in ENGINE_STATES else (*ENGINE_STATES, pair.state)
    for state in states:
        families.add("hedgebot_engine_state", (*p, state), float(state == pair.state))
    families.add("hedgebot_iteration", p, pair.iteration)
    families.add("hedgebot_requotes", p, pair.requotes)
    families.add("hedgebot_post_only_rejects", p, pair.post_only_rejects)
    for role, venue, count in pair.reconnects:
        families.add("hedgebot_reconnects", (*p, venue, role), count)
    hedge = pair.hedge
    if hedge is None:
        return
    for leg in hedge.legs:
        labels = (*p, leg.venue, leg.role)
        families.add("hedgebot_fills", labels, leg.fills)
        families.add("hedgebot_volume_quote", labels, leg.volume)
        families.add("hedgebot_fees_quote", labels, leg.fees)
        families.add("hedgebot_position", labels, leg.position)
    for name, value in (
        ("hedgebot_hedges_sent", hedge.hedges_sent),
        ("hedgebot_hedge_failures", hedge.hedge_failures),
        ("hedgebot_escalations", hedge.escalations),
        ("hedgebot_hedge_resends", hedge.resends),
        ("hedgebot_over_hedges", hedge.over_hedges),
        ("hedgebot_duplicate_fills", hedge.duplicates_ignored),
        ("hedgebot_pnl_quote", hedge.pnl),
        ("hedgebot_wear_per_10k", hedge.wear_per_10k),
        ("hedgebot_net_position", hedge.net),
        ("hedgebot_unhedged", hedge.unhedged),
        ("hedgebot_unhedged_age_seconds", hedge.unhedged_age_s),
        ("hedgebot_max_unhedged_seconds", hedge.max_unhedged_s),
    ):
        if value is not None:
            families.add(name, p, value)
    families.histogram("hedgebot_hedge_latency_seconds", p, hedge.latencies_ns)


# -- the collector and its server ------------------------------------------------------------


class HedgebotCollector(Collector):
    """Reads the engines at scrape time only. With `loop` (the event loop the engines run on)
    the state is read by a callback on that loop, never from the server's thread while the loop
    mutates it; a loop not running (the run is over) or none is read directly."""

    def __init__(
        self,
        engines: Engines,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout_s: float = SCRAPE_TIMEOUT_S,
    ) -> None:
        self._engines = engines
        self._loop = loop
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Snapshot]] = set()
        self._closed = False

    def describe(self) -> Iterable[Metric]:
        return []  # the registry must not scrape at registration

    def collect(self) -> Iterable[Metric]:
        return build_families(self.snapshot())

    def snapshot(self) -> Snapshot:
        loop = self._loop
        if loop is None or not loop.is_running() or _running_loop() is loop:
            return read_snapshot(self._engines())
        future: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the metrics server is closing")
            self._pending.add(future)
        try:
            try:
                loop.call_soon_threadsafe(self._read_into, future)
            except RuntimeError:  # the loop closed meanwhile: nothing mutates the state now
                return read_snapshot(self._engines())
            return future.result(timeout=self._timeout_s)
        finally:
            with self._lock:
                self._pending.discard(future)

    def _read_into(self, future: concurrent.futures.Future[Snapshot]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(read_snapshot(self._engines()))
        except Exception as exc:
            future.set_exception(exc)

    def close(self) -> None:
        """Fail the scrapes waiting for the loop (so the server's threads end at once)."""
        with self._lock:
            self._closed = True
            for future in self._pending:
                future.cancel()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class MetricsServer:
    """The exposition server of `serve()`: `close()` (or `await aclose()`) shuts it down."""

    def __init__(
        self, server: WSGIServer, thread: threading.Thread, collector: HedgebotCollector
    ) -> None:
        self._server = server
        self._thread = thread
        self.collector = collector
        self.host: str = str(server.server_address[0])
        self.port: int = int(server.server_address[1])  # the bound one (`serve(0, ...)`)
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port; blocks up to half a second (the server's poll)."""
        if self._closed:
            return
        self._closed = True
        self.collector.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(port: int, engines: Engines, host: str = "127.0.0.1") -> MetricsServer:
    """Serve the metrics of `engines()` (one engine per pair) on http://host:port/metrics from a
    daemon thread, on a registry of its own. Called inside the running event loop, the engines
    are read on that loop at each scrape. Port 0 takes a free port (`MetricsServer.port`).
    A port in use or refused: ConfigError naming `--metrics-port`."""
    registry = CollectorRegistry(auto_describe=False)
    collector = HedgebotCollector(engines, loop=_running_loop())
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = "is already in use (another process listens there)"
        else:
            why = f"cannot be listened on: {exc.strerror or exc}"
        raise ConfigError(f"{FLAG} {port}: {host}:{port} {why}") from None
    log.info("metrics served on http://%s:%s/metrics", host, server.server_address[1])
    return MetricsServer(server, thread, collector)


def parse_port(raw: str) -> int:
    """The `--metrics-port` value: a port number from 1 to 65535, or ConfigError."""
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ConfigError(f"{FLAG} {raw!r}: expected a port number from 1 to 65535")
    return int(text)

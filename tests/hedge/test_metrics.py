"""hedge/metrics.py: the Prometheus exposition of two pairs sharing one account, scraped over
HTTP from the server `serve()` starts, parsed with prometheus-client's own parser."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exchanges.base import BookTop, ConfigError
from exchanges.common.budget import LIGHTER_TIERS, Priority, RequestBudget, backpack_limits
from hedge import metrics
from hedge.engine import EngineStatus
from hedge.hedger import HedgerStats
from hedge.metrics import LATENCY_BUCKETS_S, METRIC_NAMES, MetricsServer, parse_port, serve

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# -- fakes: just the attributes the collector reads ------------------------------------------


@dataclass
class FakeVenue:
    name: str
    mid: Decimal | None
    budget: RequestBudget | None = None
    reconnects: int = 0

    def top(self) -> BookTop | None:
        if self.mid is None:
            return None
        return BookTop(self.mid - 1, Decimal(1), self.mid + 1, Decimal(1), time.monotonic())


@dataclass
class FakeHedger:
    stats: HedgerStats = field(default_factory=HedgerStats)
    maker_net: Decimal = Decimal(0)
    hedge_net: Decimal = Decimal(0)
    unhedged: Decimal = Decimal(0)
    age: float = 0.0

    def unhedged_age(self) -> float:
        return self.age


@dataclass
class FakeSettings:
    ticker: str


@dataclass
class FakeEngine:
    settings: FakeSettings
    maker: FakeVenue
    hedge: FakeVenue
    hedger: FakeHedger | None
    status: EngineStatus = field(default_factory=EngineStatus)
    maker_position: Decimal = Decimal(0)  # the engine derives these; the exposition reads them
    hedge_position: Decimal = Decimal(0)


def _stats(fills: int, volume: str, fee_maker: str, fee_hedge: str, cash: str) -> HedgerStats:
    stats = HedgerStats()
    stats.maker_fills, stats.hedge_fills = fills, fills + 1
    stats.hedges_sent, stats.hedge_failures, stats.escalations = fills + 1, 1, 2
    stats.first_sends = fills  # one re-send
    stats.over_hedges, stats.duplicates_ignored = 3, 4
    stats.maker_volume, stats.hedge_volume = Decimal(volume), Decimal(volume) + 1
    stats.fees_maker = Decimal(fee_maker)
    stats.fees = Decimal(fee_maker) + Decimal(fee_hedge)
    stats.cash = Decimal(cash)
    stats.max_unhedged_s = 0.75
    return stats


@pytest.fixture
def budgets() -> tuple[RequestBudget, RequestBudget]:
    backpack = RequestBudget(backpack_limits(100))
    lighter = RequestBudget(LIGHTER_TIERS["standard"])
    for _ in range(3):
        assert backpack.try_take("GET /api/v1/depth", Priority.READ)
    for _ in range(5):
        assert lighter.try_take("sendTx", Priority.HEDGE, tx=True)
    lighter.penalize(0.0)
    return backpack, lighter


@pytest.fixture
def engines(budgets: tuple[RequestBudget, RequestBudget]) -> list[FakeEngine]:
    """BTC and ETH on one account: each pair its own venue objects, one budget per venue."""
    backpack, lighter = budgets
    btc_hedger = FakeHedger(
        _stats(10, "5000", "-0.5", "1.5", "2"),
        maker_net=Decimal("0.1"),
        hedge_net=Decimal("-0.1"),
        unhedged=Decimal("0.002"),
        age=1.25,
    )
    btc_hedger.stats.latencies_ns.extend(
        [50_000, 100_000, 300_000, 900_000, 2_000_000, 40_000_000, 3_000_000_000]
    )
    btc = FakeEngine(
        FakeSettings("BTC"),
        FakeVenue("backpack", Decimal(60_000), backpack, reconnects=1),
        FakeVenue("lighter", Decimal(60_010), lighter, reconnects=2),
        btc_hedger,
        maker_position=Decimal("0.6"),  # started at 0.5, then 0.1 more
        hedge_position=Decimal("-0.6"),
    )
    btc.status.state, btc.status.iteration, btc.status.requotes = "quoting", 3, 7
    btc.status.post_only_rejects = 2
    eth = FakeEngine(
        FakeSettings("ETH"),
        FakeVenue("backpack", Decimal(3_000), backpack),
        FakeVenue("lighter", None, lighter),
        FakeHedger(_stats(4, "800", "0.1", "0.2", "-1")),
    )
    eth.status.state = "hedging"
    return [btc, eth]


@pytest.fixture
def server(engines: list[FakeEngine]) -> Callable[..., MetricsServer]:
    started: list[MetricsServer] = []

    def start(source: Callable[[], list[FakeEngine]] | None = None) -> MetricsServer:
        started.append(serve(0, source or (lambda: engines)))  # type: ignore[arg-type]
        return started[-1]

    yield start  # type: ignore[misc]
    for one in started:
        one.close()


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


def _port_free(port: int) -> bool:
    """Nothing listens on `port`: a server (SO_REUSEADDR, as every server) could bind it; a
    closed connection in TIME_WAIT does not count."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- the values -------------------------------------------------------------------------------


def test_per_pair_counters_match_the_stats(server, engines) -> None:
    samples = _scrape(server().url)
    for engine in engines:
        pair, stats = engine.settings.ticker, engine.hedger.stats
        maker = {"pair": pair, "venue": "backpack", "role": "maker"}
        hedge = {"pair": pair, "venue": "lighter", "role": "hedge"}
        assert _get(samples, "hedgebot_fills_total", **maker) == stats.maker_fills
        assert _get(samples, "hedgebot_fills_total", **hedge) == stats.hedge_fills
        assert _get(samples, "hedgebot_volume_quote_total", **maker) == float(stats.maker_volume)
        assert _get(samples, "hedgebot_volume_quote_total", **hedge) == float(stats.hedge_volume)
        assert _get(samples, "hedgebot_fees_quote", **maker) == float(stats.fees_maker)
        assert _get(samples, "hedgebot_fees_quote", **hedge) == float(stats.fees - stats.fees_maker)
        for name, value in (
            ("hedgebot_hedges_sent_total", stats.hedges_sent),
            ("hedgebot_hedge_failures_total", stats.hedge_failures),
            ("hedgebot_escalations_total", stats.escalations),
            ("hedgebot_hedge_resends_total", 1),
            ("hedgebot_over_hedges_total", stats.over_hedges),
            ("hedgebot_duplicate_fills_total", stats.duplicates_ignored),
            ("hedgebot_max_unhedged_seconds", stats.max_unhedged_s),
        ):
            assert _get(samples, name, pair=pair) == value, name
    # only the two legs of the two pairs: no mixing of pairs
    assert len(_named(samples, "hedgebot_fills_total")) == 4


def test_pnl_wear_positions_and_unhedged(server) -> None:
    samples = _scrape(server().url)
    # BTC: cash 2 - fees 1.0, open legs 0.1 @ 60,000 and -0.1 @ 60,010 -> 1 - 1 = 0
    assert _get(samples, "hedgebot_pnl_quote", pair="BTC") == pytest.approx(0.0)
    # ETH: cash -1 - fees 0.3, no open legs -> -1.3; wear 1.3 / 800 * 10,000 = 16.25
    assert _get(samples, "hedgebot_pnl_quote", pair="ETH") == pytest.approx(-1.3)
    assert _get(samples, "hedgebot_wear_per_10k", pair="ETH") == pytest.approx(16.25)
    leg = {"pair": "BTC", "venue": "backpack", "role": "maker"}
    assert _get(samples, "hedgebot_position", **leg) == pytest.approx(0.6)
    assert _get(samples, "hedgebot_net_position", pair="BTC") == pytest.approx(0.0)
    assert _get(samples, "hedgebot_unhedged", pair="BTC") == pytest.approx(0.002)
    assert _get(samples, "hedgebot_unhedged_age_seconds", pair="BTC") == 1.25
    assert _get(samples, "hedgebot_reconnects_total", **leg) == 1
    assert (
        _get(samples, "hedgebot_reconnects_total", pair="BTC", venue="lighter", role="hedge") == 2
    )


def test_engine_status(server) -> None:
    samples = _scrape(server().url)
    states = _named(samples, "hedgebot_engine_state")
    current = {dict(labels)["pair"]: dict(labels)["state"] for labels, v in states.items() if v}
    assert current == {"BTC": "quoting", "ETH": "hedging"}
    assert len(states) == 2 * len(metrics.ENGINE_STATES)
    assert _get(samples, "hedgebot_iteration", pair="BTC") == 3
    assert _get(samples, "hedgebot_requotes_total", pair="BTC") == 7
    assert _get(samples, "hedgebot_post_only_rejects_total", pair="BTC") == 2


def test_latency_histogram_from_the_latencies(server, engines) -> None:
    samples = _scrape(server().url)
    latencies = list(engines[0].hedger.stats.latencies_ns)
    assert _get(samples, "hedgebot_hedge_latency_seconds_count", pair="BTC") == len(latencies)
    assert _get(samples, "hedgebot_hedge_latency_seconds_sum", pair="BTC") == pytest.approx(
        sum(latencies) / 1e9
    )
    buckets = {
        float(dict(labels)["le"]): value
        for labels, value in _named(samples, "hedgebot_hedge_latency_seconds_bucket").items()
        if dict(labels)["pair"] == "BTC"
    }
    bounds = sorted(buckets)
    assert bounds == [*LATENCY_BUCKETS_S, float("inf")]
    counts = [buckets[b] for b in bounds]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == len(latencies)
    for bound in LATENCY_BUCKETS_S:
        assert buckets[bound] == sum(ns <= bound * 1e9 for ns in latencies), bound
    assert buckets[0.0001] == 2  # 50 us and exactly 100 us (le: less than or equal)
    assert buckets[1.0] == 6  # the 3 s one is only in +Inf
    # ETH has no latency yet: an empty histogram
    assert _get(samples, "hedgebot_hedge_latency_seconds_count", pair="ETH") == 0


def test_shared_budget_once_per_venue(server) -> None:
    samples = _scrape(server().url)
    for name in ("hedgebot_budget_used", "hedgebot_budget_capacity", "hedgebot_budget_waiting"):
        series = _named(samples, name)
        assert set(series) == {
            frozenset({("venue", "backpack")}),
            frozenset({("venue", "lighter")}),
        }
    assert _get(samples, "hedgebot_budget_used", venue="backpack") == 3
    assert _get(samples, "hedgebot_budget_capacity", venue="backpack") == 100
    assert _get(samples, "hedgebot_budget_used", venue="lighter") == 5
    assert _get(samples, "hedgebot_budget_capacity", venue="lighter") == 60
    assert _get(samples, "hedgebot_budget_waiting", venue="lighter") == 0
    assert _get(samples, "hedgebot_budget_rejected_429_total", venue="lighter") == 1
    assert _get(samples, "hedgebot_budget_rejected_429_total", venue="backpack") == 0
    assert _get(samples, "hedgebot_budget_granted_total", venue="lighter") == 5


def test_separate_budgets_with_one_venue_name_stay_apart(engines) -> None:
    engines[1].maker.budget = RequestBudget(backpack_limits(50))
    snapshot = metrics.read_snapshot(engines)
    assert [label for label, _ in snapshot.budgets] == ["backpack", "lighter", "backpack#2"]


def test_a_pair_before_its_hedger_exports_its_status_only(server, engines) -> None:
    engines[1].hedger = None
    engines[1].status.state = "connecting"
    samples = _scrape(server().url)
    assert _get(samples, "hedgebot_engine_state", pair="ETH", state="connecting") == 1
    assert {dict(labels)["pair"] for labels in _named(samples, "hedgebot_fills_total")} == {"BTC"}
    assert ("hedgebot_hedge_latency_seconds_count", frozenset({("pair", "ETH")})) not in samples


def test_a_pair_that_cannot_be_read_leaves_the_others(server, engines) -> None:
    broken = FakeEngine(FakeSettings("SOL"), engines[0].maker, engines[0].hedge, FakeHedger())
    broken.status = None  # type: ignore[assignment]
    samples = _scrape(server(lambda: [broken, *engines]).url)
    pairs = {dict(labels)["pair"] for labels in _named(samples, "hedgebot_iteration")}
    assert pairs == {"BTC", "ETH"}


def test_every_metric_is_listed_in_the_docstring(server) -> None:
    samples = _scrape(server().url)
    histogram = "hedgebot_hedge_latency_seconds"
    exported = {histogram if name.startswith(histogram) else name for name, _ in samples}
    doc = metrics.__doc__ or ""
    for name in METRIC_NAMES:
        assert f"`{name}{{" in doc, name
    assert exported <= set(METRIC_NAMES)
    assert all(name.startswith("hedgebot_") for name in METRIC_NAMES)


# -- the server -------------------------------------------------------------------------------


def test_a_port_in_use_is_a_config_error(server) -> None:
    first = server()
    with pytest.raises(ConfigError) as refused:
        serve(first.port, lambda: [])
    text = str(refused.value)
    assert text.startswith(f"--metrics-port {first.port}: ") and "in use" in text
    assert "\n" not in text
    _scrape(first.url)  # the first server is untouched


def test_close_frees_the_port(server) -> None:
    running = server()
    port, url = running.port, running.url
    assert not _port_free(port)
    running.close()
    assert _port_free(port)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
    running.close()  # twice is harmless
    again = serve(port, lambda: [])  # the port can be served again at once
    again.close()


@pytest.mark.parametrize("raw", ["9100", " 9100 ", "1", "65535"])
def test_parse_port_accepts(raw: str) -> None:
    assert parse_port(raw) == int(raw)


@pytest.mark.parametrize("raw", ["0", "65536", "-1", "abc", "", "91.0", "9 100", "٩١٠٠"])
def test_parse_port_refuses(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^--metrics-port .*1 to 65535$"):
        parse_port(raw)


# -- inside the running loop: the state is read on the loop's thread -------------------------


async def test_a_scrape_reads_the_engines_on_the_event_loop(engines) -> None:
    readers: list[int] = []

    def source() -> list[FakeEngine]:
        readers.append(threading.get_ident())
        return engines

    running = serve(0, source)  # type: ignore[arg-type]
    try:
        samples = await asyncio.to_thread(_scrape, running.url)
        assert _get(samples, "hedgebot_fills_total", pair="ETH", venue="backpack", role="maker")
        assert readers == [threading.get_ident()]
    finally:
        await running.aclose()
    assert _port_free(running.port)


async def test_close_does_not_wait_for_a_scrape_stuck_on_a_busy_loop(engines) -> None:
    running = serve(0, lambda: engines)  # type: ignore[arg-type]
    scrape = asyncio.get_running_loop().run_in_executor(None, _scrape, running.url)
    deadline = time.monotonic() + 5
    while not running.collector._pending:  # blocks the loop: the scrape waits for it
        assert time.monotonic() < deadline
        time.sleep(0.01)  # noqa: ASYNC251 (blocking the loop is the point)
    started = time.monotonic()
    running.close()
    assert time.monotonic() - started < metrics.SCRAPE_TIMEOUT_S - 1
    with pytest.raises(urllib.error.HTTPError):  # the scrape fails (500), it does not hang
        await scrape

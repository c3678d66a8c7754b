"""The live dashboard: one rich screen, redrawn a few times a second from in-memory state.

It reads the engine's status, the hedger's counters, the venues' book tops, reconnect counts
and request budgets, and the last warnings of every layer (`WarningFeed`, a logging handler on
the root logger while the screen is up); it never asks a venue anything over the network, so
it costs a fraction of a core. `render()` returns the screen as a renderable that lays itself
out for the console it is drawn on, so tests can draw it on recording consoles of any size.

Layout: every line is one terminal line (clipped with an ellipsis, never wrapped), the most
important first, and the screen is never taller than the terminal (less one line): a small
terminal loses the oldest of the last warnings and nothing else. At 80×24: state and uptime,
what needs a human, the exposure, the hedges (sent, re-sent, failed), latency, reconnects,
request budgets, books, the maker order, the money, then as many warnings as fit, newest
first. From WIDE (100 columns × 32 rows) on, the screen uses the room: books and request
budgets as small tables, the cost split, more warnings.

Colour: green when healthy, yellow while waiting, red for what needs a look (an external
change, a 429 storm, a stale book), red bold for a halt or unbalanced legs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import textwrap
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from exchanges.base import BookTop, Venue
from exchanges.common.tasks import PAIR
from hedge.engine import STALE_BOOK_S, EngineStatus, HedgeEngine
from hedge.hedger import Hedger, HedgerStats
from hedge.logsetup import REDACTOR
from hedge.report import percentile
from hedge.risk import book_age

__all__ = ["REFRESH_PER_SECOND", "Dashboard", "PairsDashboard", "Warned", "WarningFeed"]

log = logging.getLogger(__name__)

REFRESH_PER_SECOND = 3  # a few redraws a second; each costs ~1-2 ms of rich layout
# Latency percentiles over the most recent hedges only: the hedger keeps every latency of the
# run, and sorting all of them four times a second would grow the dashboard's cost with the run.
LATENCY_WINDOW = 1000
WARNINGS_KEPT = 40  # records the feed keeps: more than the tallest screen shows
MESSAGE_MAX = 400  # characters of one warning kept (after redaction)
WIDE = (100, 32)  # columns, rows from which the roomy layout is used
# A 429 storm: this many answered 429 by one venue within STORM_WINDOW_S (hedge/alerts.py
# alerts on the same figures).
STORM_WINDOW_S = 60.0
STORM_429 = 5

GREEN, YELLOW, RED, RED_BOLD, DIM = "green", "yellow", "red", "bold red", "dim"
HEALTHY_STATES = frozenset({"quoting", "hedging", "settling", "done"})
HALT_STATES = frozenset({"halting", "halted"})
SOURCES = ("venues", "budget", "hedger", "engine", "sim", "other")


def _fmt(value: Decimal | None, places: int = 6) -> str:
    if value is None:
        return "-"
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _line(*parts: str | tuple[str, str]) -> Text:
    """One terminal line: clipped with an ellipsis, never wrapped."""
    return Text.assemble(*parts, no_wrap=True, overflow="ellipsis")


def _uptime(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def state_style(state: str) -> str:
    """Green for healthy states, yellow for waiting ones, red bold for halts."""
    if state in HALT_STATES:
        return RED_BOLD
    return GREEN if state in HEALTHY_STATES else YELLOW


# -- the warnings of every layer ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Warned:
    """One WARNING-or-worse record, as the screen shows it."""

    created: float  # time.time() of the record
    level: int
    source: str  # one of SOURCES
    name: str  # the logger's short name: "lighter.user_stream", "hedger", "engine"
    message: str  # redacted, at most MESSAGE_MAX characters
    pair: str  # the pair whose task logged it ("" outside any pair: threads, shared tasks)


@functools.lru_cache(maxsize=512)
def warning_source(logger_name: str) -> tuple[str, str]:
    """(source, short name) of a logger: `exchanges.common.budget` is the budget, any other
    `exchanges.*` a venue (`exchanges.sim.*` the simulators), `hedge.hedger`/`hedge_order` the
    hedger, any other `hedge.*` the engine (recovery, close-out, journal...)."""
    head, _, rest = logger_name.partition(".")
    short = rest or logger_name
    if head == "exchanges":
        if rest == "common.budget":
            return "budget", "budget"
        return ("sim" if rest.startswith("sim") else "venues"), short
    if head == "hedge":
        return ("hedger" if rest in ("hedger", "hedge_order") else "engine"), short
    return "other", logger_name


class WarningFeed(logging.Handler):
    """The last WARNING-or-worse records of every layer (venues, budget, hedger, engine) and a
    count per source. Cheap: `getMessage()` and one redaction per record, a bounded deque; no
    formatting. Records may come from any thread (the journal's writer): `handle()` holds the
    handler's lock around `emit()`, and `snapshot()` reads under the same lock."""

    def __init__(self, keep: int = WARNINGS_KEPT) -> None:
        super().__init__(logging.WARNING)
        self._recent: deque[Warned] = deque(maxlen=keep)
        self._counts: dict[str, int] = {}
        self._logger: logging.Logger | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # bad arguments: the message as written
            message = str(record.msg)
        source, name = warning_source(record.name)
        text = REDACTOR.redact(message)[:MESSAGE_MAX]
        self._recent.append(Warned(record.created, record.levelno, source, name, text, PAIR.get()))
        self._counts[source] = self._counts.get(source, 0) + 1

    def install(self, logger: logging.Logger | None = None) -> None:
        """Listen on `logger` (the root logger): every module's warnings reach it."""
        if self._logger is None:
            self._logger = logger or logging.getLogger()
            self._logger.addHandler(self)

    def remove(self) -> None:
        if self._logger is not None:
            self._logger.removeHandler(self)
            self._logger = None

    @property
    def installed(self) -> bool:
        return self._logger is not None

    def snapshot(self) -> tuple[list[Warned], dict[str, int]]:
        """The records kept (oldest first) and the count per source since the feed began."""
        self.acquire()
        try:
            return list(self._recent), dict(self._counts)
        finally:
            self.release()


# -- counters derived between redraws ----------------------------------------------------------


class RiseWatch:
    """How much a running count (a venue's 429 answers) rose within the last `window_s`: the
    count is sampled at each redraw, and kept only when it changed."""

    def __init__(
        self, window_s: float = STORM_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.clock = clock
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def rise(self, key: str, count: int) -> int:
        now = self.clock()
        samples = self._samples.setdefault(key, deque())
        if not samples or samples[-1][1] != count:
            samples.append((now, count))
        # The baseline: the last sample taken at or before the window's start (the first one
        # while the window is younger than the dashboard).
        while len(samples) > 1 and samples[1][0] <= now - self.window_s:
            samples.popleft()
        return count - samples[0][1]


# -- the screen ----------------------------------------------------------------------------------


class _Screen:
    """The screen's lines, built at once for the dashboard's own console (so a fault surfaces
    in `render()`, where the redraw catches it, never later inside rich) and built again for
    any other console it is drawn on: its width, and its height less one line, so the screen
    never scrolls."""

    def __init__(self, build: Callable[[int, int], list[Text]], options: ConsoleOptions) -> None:
        self._build = build
        self._size = (options.max_width, options.max_height - 1)
        self._lines = build(*self._size)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        size = (options.max_width, options.max_height - 1)
        lines = self._lines
        if size != self._size:
            try:
                lines = self._build(*size)
            except Exception:  # drawn as built for the dashboard's console, clipped
                log.debug("dashboard: no frame for %s", size, exc_info=True)
        yield from lines


class Dashboard:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = EngineStatus()
        self.engine: HedgeEngine | None = None
        self._task: asyncio.Task[None] | None = None
        self._live: Live | None = None
        self.renders = 0
        # The demo shows the simulated venues' fault counters here.
        self.faults_seen: Callable[[], dict[str, int]] | None = None
        self.draw_failures = 0
        self.feed = WarningFeed()
        self.attached_at: float | None = None  # time.monotonic(): the uptime counts from here
        self.storms = RiseWatch()

    def attach(self, engine: HedgeEngine) -> None:
        self.engine = engine
        self.attached_at = time.monotonic()
        self.feed.install()
        self._live = Live(self.render(), console=self.console, auto_refresh=False, transient=False)
        self._live.start()
        self._task = asyncio.create_task(self._refresh(), name="dashboard")

    async def stop(self) -> None:
        try:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None
            if self._live is not None:
                try:
                    self._draw()
                finally:
                    self._live.stop()  # always give the terminal back
                    self._live = None
        finally:
            self.feed.remove()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(1 / REFRESH_PER_SECOND)
            self._draw()

    def _draw(self) -> None:
        """One redraw. A display fault is logged and skipped: it must never end the run, nor
        surface from stop() in place of the run's own result."""
        if self._live is None:
            return
        try:
            self._live.update(self.render(), refresh=True)
        except Exception:
            self.draw_failures += 1
            if self.draw_failures == 1:  # once with the traceback, not four times a second
                log.exception("dashboard redraw failed")

    def render(self) -> _Screen:
        self.renders += 1
        return _Screen(self._lines, self.console.options)

    @staticmethod
    def _pnl(engine: HedgeEngine) -> Decimal | None:
        """Cash of the run's fills minus fees, the open net valued at the mids; None while an
        open leg has no book to be valued at (the dashboard and the metrics alike)."""
        assert engine.hedger is not None
        stats = engine.hedger.stats
        value = stats.cash - stats.fees
        for venue, net in (
            (engine.maker, engine.hedger.maker_net),
            (engine.hedge, engine.hedger.hedge_net),
        ):
            top = venue.top()
            if net and top is None:
                return None
            if net and top is not None:
                value += net * top.mid
        return value

    # -- one pair ------------------------------------------------------------------------------
    def _lines(self, width: int, rows: int) -> list[Text]:
        wide = width >= WIDE[0] and rows >= WIDE[1] - 1
        engine = self.engine
        # The engine's own status is the truth once attached (the same object when the engine
        # was built with status=dashboard.status).
        status = engine.status if engine is not None else self.status
        lines = [self._header(engine, status, wide)]
        if engine is None:
            lines += _attention_lines(_halt_items(status), width, wide)
        else:
            lines += _attention_lines(self._attention(engine, status), width, wide)
            lines += self._body(engine, status, wide)
        return lines + self._warning_lines(list(status.warnings), rows - len(lines), width)

    def _header(self, engine: HedgeEngine | None, status: EngineStatus, wide: bool) -> Text:
        parts: list[str | tuple[str, str]] = [("hedgebot", "bold")]
        if engine is not None:
            parts.append(f" {engine.settings.ticker}")
            if wide:
                parts.append(f" · {engine.maker.name} maker / {engine.hedge.name} hedge")
        if self.attached_at is not None:
            parts.append(f" · up {_uptime(time.monotonic() - self.attached_at)}")
        parts += [" · state: ", (status.state, _state_colour(status))]
        parts.append(f" · iteration {status.iteration}/{status.iterations}")
        if status.phase:
            parts.append(f" · {status.phase}")
        return _line(*parts)

    def _attention(
        self, engine: HedgeEngine, status: EngineStatus, *, budgets: bool = True
    ) -> list[tuple[str, str]]:
        """What needs a human, most urgent first: (text, style). `budgets=False` leaves out
        the request budgets' storms (pairs share them: told once for the account)."""
        items = _halt_items(status)
        external = engine.external
        changes = len(external.changes) if external is not None else 0
        if changes:
            items.append((f"external change ×{changes}", RED))
        venues = (engine.maker, engine.hedge)
        if budgets:
            items += self._storm_alarms(venues)
        for venue in venues:
            top = venue.top()
            if top is not None and book_age(top) > STALE_BOOK_S:
                items.append((f"stale book on {venue.name}: {book_age(top):.0f} s old", RED))
        return items

    def _storm_alarms(self, venues: Sequence[Venue]) -> list[tuple[str, str]]:
        items = []
        for venue, state in _budgets(venues):
            rise = self.storms.rise(venue.name, int(str(state["rejected_429"])))
            if rise >= STORM_429:
                items.append((f"429 storm on {venue.name}: {rise} in the last minute", RED))
        return items

    def _body(self, engine: HedgeEngine, status: EngineStatus, wide: bool) -> list[Text]:
        maker, hedge = engine.maker, engine.hedge
        maker_top, hedge_top = maker.top(), hedge.top()
        hedger = engine.hedger
        lines: list[Text] = []
        if hedger is not None:
            lines.append(_exposure_line(engine, hedger, wide))
            lines.append(_hedges_line(hedger.stats, hedger.stats.first_sends, wide))
            lines.append(_latency_line(hedger.stats, wide))
        lines.append(_reconnects_line((maker, hedge), engine, wide))
        lines += _budget_lines((maker, hedge), self.storms, wide)
        lines += _books_lines(((maker, maker_top), (hedge, hedge_top)), wide)
        lines.append(_order_line(status, maker_top, wide))
        if hedger is not None:
            lines += _money_lines(engine, hedger, wide)
        faults = self._faults_text()
        if faults:
            lines.append(_line(_label("faults seen", wide), faults))
        return lines

    def _faults_text(self) -> str:
        fired = self.faults_seen() if self.faults_seen is not None else {}
        seen = {name: count for name, count in fired.items() if count}
        return ", ".join(f"{name} {count}" for name, count in sorted(seen.items()))

    # -- the warnings ---------------------------------------------------------------------------
    def _warning_lines(
        self, engine_lines: list[str], rows: int, width: int, *, pairs: bool = False
    ) -> list[Text]:
        """A rule with the count per source, then the newest warnings first, as many as fit.
        Before the feed listens (not attached) the engine's own lines (`EngineStatus.warnings`,
        oldest first) stand in; once it does, the feed holds those too (the engine logs each
        line it shows)."""
        entries, counts = self.feed.snapshot()
        room = max(rows - 1, 1)
        if not self.feed.installed and not entries:
            head = f"last warnings (engine) {len(engine_lines)}"
            shown = [_line((line, YELLOW)) for line in reversed(engine_lines)]
        else:
            split = ", ".join(f"{s} {counts[s]}" for s in SOURCES if counts.get(s))
            head = f"warnings {sum(counts.values())}" + (f": {split}" if split else "")
            shown = [
                _warning_text(entry, times, pairs)
                for entry, times in itertools.islice(_collapse(entries), room)
            ]
        return _rule(head, width) + (shown[:room] or [_line(("no warnings", DIM))])


# -- the lines of one pair -----------------------------------------------------------------------


def _label(text: str, wide: bool) -> tuple[str, str]:
    return (f"{text:<13}" if wide else f"{text} ", "bold")


def _halt_items(status: EngineStatus) -> list[tuple[str, str]]:
    items = []
    if status.halt_reason or status.state in HALT_STATES:
        items.append((f"HALT: {status.halt_reason or status.state}", RED_BOLD))
    unbalanced = next((w for w in reversed(status.warnings) if "legs NOT" in w), None)
    if unbalanced is not None:
        items.append((f"UNBALANCED: {unbalanced.partition(' ')[2]}", RED_BOLD))
    return items


def _state_colour(status: EngineStatus) -> str:
    """The state's colour; red bold whatever the state once the run halted or ended with its
    legs unbalanced (that ends as "stopped")."""
    return RED_BOLD if _halt_items(status) else state_style(status.state)


def _attention_lines(items: list[tuple[str, str]], width: int, wide: bool) -> list[Text]:
    """A halt or unbalanced legs get up to 2 lines each (3 when wide); the other alarms share
    one "attention" line (2 when they do not fit)."""
    lines: list[Text] = []
    for text, style in items:
        if style == RED_BOLD:
            for piece in textwrap.wrap(text, max(width, 20), max_lines=3 if wide else 2):
                lines.append(_line((piece, style)))
    others = " · ".join(text for text, style in items if style != RED_BOLD)
    if others:
        for piece in textwrap.wrap("attention: " + others, max(width, 20), max_lines=2):
            lines.append(_line((piece, RED)))
    return lines


def exposure_words(hedger: Hedger, ticker: str) -> tuple[str, str]:
    """The one exposure figure and its style. `exposure` is the signed net of every fill of
    ours on both legs (hedge/hedger.py); `in_flight` what hedges sent and not yet done cover;
    `oldest_unhedged_age()` how long ago the oldest maker fill not yet covered was read."""
    exposure, in_flight = hedger.exposure, hedger.in_flight
    if not exposure and not in_flight:
        return "0 (flat)", GREEN
    age = hedger.oldest_unhedged_age()
    text = f"{_fmt(exposure)} {ticker}" + (f", {age:.1f} s old" if age >= 0.05 else "")
    uncovered = exposure + in_flight  # hedger.unhedged
    notes = [f"{_fmt(abs(in_flight))} in flight"] if in_flight else []
    style = RED if age >= hedger.hedge_timeout else YELLOW
    if uncovered and not hedger.hedgeable(uncovered):
        notes.append(f"{_fmt(uncovered)} carried: below the hedge minimum")
        style = GREEN if not in_flight else style
    elif uncovered:
        notes.append(f"{_fmt(uncovered)} not covered by a hedge")
    if hedger.halted:
        style = RED_BOLD
    return text + (f" ({', '.join(notes)})" if notes else ""), style


def _exposure_line(engine: HedgeEngine, hedger: Hedger, wide: bool) -> Text:
    words, style = exposure_words(hedger, engine.settings.ticker)
    parts: list[str | tuple[str, str]] = [_label("exposure", wide), (words, style)]
    if wide:
        maker, hedge = engine.maker_position, engine.hedge_position
        parts.append(
            f" · legs {engine.maker.name} {_fmt(maker)}, {engine.hedge.name} {_fmt(hedge)}"
        )
    return _line(*parts)


def _hedges_line(stats: HedgerStats, first_sends: int, wide: bool) -> Text:
    resent = max(stats.hedges_sent - first_sends, 0)
    failed = (str(stats.hedge_failures), RED if stats.hedge_failures else GREEN)
    if wide:
        return _line(
            _label("hedges", wide),
            f"{stats.hedges_sent} sent = {first_sends} first + {resent} re-sent · ",
            failed,
            f" failed · {stats.escalations} escalations · {stats.over_hedges} over-hedges · "
            f"{stats.duplicates_ignored} duplicate fills ignored",
        )
    return _line(
        _label("hedges", wide),
        f"{stats.hedges_sent} sent, {resent} re-sent, ",
        failed,
        f" failed, {stats.escalations} escalated, {stats.over_hedges} over, "
        f"{stats.duplicates_ignored} dup",
    )


def _latency_line(stats: HedgerStats, wide: bool) -> Text:
    """Maker fill frame read -> the first hedge sent after it handed over, in-process: the
    definition of `report`'s hedge_latency_ms (a re-send covering the fill later is not its
    latency, hedge/allocation.py `hedge_started`) and of the metrics. The figures come from the
    hedger's `latencies_ns`, one per hedge started after a maker fill; the report has one per
    maker fill from the journal. They differ only when several maker fills wait for one hedge
    (a fill below the hedge minimum, carried): the report counts each of those fills (the
    older ones with their longer wait), the dashboard the newest. Re-sends are counted on the
    hedges line, never here."""
    recent = [ns / 1e6 for ns in itertools.islice(reversed(stats.latencies_ns), LATENCY_WINDOW)]
    p50, p99 = percentile(recent, 0.5), percentile(recent, 0.99)
    if wide:
        return _line(
            _label("latency", wide),
            f"fill → first hedge send, in-process: p50 {p50:.3f} · p99 {p99:.3f} · max "
            f"{max(recent, default=0.0):.3f} ms (last {len(recent)} fills)",
        )
    return _line(_label("latency", wide), f"fill→first send p50 {p50:.3f} p99 {p99:.3f} ms")


def _reconnects_line(venues: Sequence[Venue], engine: HedgeEngine | None, wide: bool) -> Text:
    counts = ", ".join(f"{v.name} {getattr(v, 'reconnects', 0)}" for v in venues)
    parts: list[str | tuple[str, str]] = [_label("reconnects", wide), counts]
    if engine is not None:
        changes = len(engine.external.changes) if engine.external is not None else 0
        parts += [" · external changes ", (str(changes), RED if changes else GREEN)]
    return _line(*parts)


def _budgets(venues: Iterable[Venue]) -> Iterator[tuple[Venue, dict[str, object]]]:
    for venue in venues:
        budget = getattr(venue, "budget", None)
        if budget is not None:
            yield venue, budget.snapshot()


def _budget_lines(venues: Sequence[Venue], storms: RiseWatch, wide: bool) -> list[Text]:
    """Each venue's request budget: used of capacity this minute, waiting, 429s answered."""
    budgets = list(_budgets(venues))
    if not budgets:
        return [_line(_label("requests/min", wide), "n/a")]
    if not wide:
        parts: list[str | tuple[str, str]] = [_label("requests/min", wide)]
        for venue, state in budgets:
            rejected = int(str(state["rejected_429"]))
            storm = storms.rise(venue.name, rejected) >= STORM_429
            parts += [
                f"{venue.name} {state['used']}/{state['capacity']} ({state['waiting']} wait, ",
                (f"{rejected} 429s", RED if storm else ""),
                ") · ",
            ]
        return [_line(*parts[:-1], ")")]
    head = f"{'':13}{'venue':<10}{'used/capacity':>14}{'waiting':>9}{'paused s':>10}"
    lines = [_line(_label("requests", wide), (head[13:] + f"{'granted':>9}{'429s':>6}", DIM))]
    for venue, state in budgets:
        used = f"{state['used']}/{state['capacity']}"
        rejected = int(str(state["rejected_429"]))
        lines.append(
            _line(
                f"{'':13}{venue.name:<10}{used:>14}{state['waiting']!s:>9}"
                f"{state['paused_s']!s:>10}{state['granted']!s:>9}",
                (f"{rejected:>6}", RED if storms.rise(venue.name, rejected) >= STORM_429 else ""),
            )
        )
    return lines


def _age_cell(top: BookTop) -> tuple[str, str]:
    age = book_age(top)
    return f"{age:.1f} s", RED if age > STALE_BOOK_S else ""


def _books_lines(venues: Sequence[tuple[Venue, BookTop | None]], wide: bool) -> list[Text]:
    spread = _cross_spread(venues[0][1], venues[1][1])
    if not wide:
        cells: list[str | tuple[str, str]] = []
        for venue, top in venues:
            cells.append(f"{venue.name} -" if top is None else f"{venue.name} ")
            if top is not None:
                age, style = _age_cell(top)
                cells += [f"{_fmt(top.bid, 4)}/{_fmt(top.ask, 4)} ", (age.replace(" ", ""), style)]
            cells.append(" · ")
        return [_line(_label("books", wide), *cells, spread)]
    head = f"{'venue':<10}{'bid':>14}{'ask':>14}{'spread':>10}{'book age':>10}"
    lines = [_line(_label("books", wide), (head, DIM))]
    for venue, top in venues:
        if top is None:
            lines.append(_line(f"{'':13}{venue.name:<10}{'-':>14}{'-':>14}{'-':>10}{'-':>10}"))
            continue
        age, style = _age_cell(top)
        lines.append(
            _line(
                f"{'':13}{venue.name:<10}{_fmt(top.bid, 4):>14}{_fmt(top.ask, 4):>14}"
                f"{_fmt(top.spread, 4):>10}",
                (f"{age:>10}", style),
            )
        )
    hedge, maker = venues[1][0].name, venues[0][0].name
    lines.append(_line(_label("cross-venue", wide), f"{spread} ({hedge} mid - {maker} mid)"))
    return lines


def _cross_spread(maker_top: BookTop | None, hedge_top: BookTop | None) -> str:
    """The hedge venue's mid against the maker venue's, in bps of the maker mid."""
    if maker_top is None or hedge_top is None or not maker_top.mid:
        return "-"
    return f"{(hedge_top.mid - maker_top.mid) / maker_top.mid * 10_000:+.2f} bps"


def _order_line(status: EngineStatus, maker_top: BookTop | None, wide: bool) -> Text:
    counts = f"re-quotes {status.requotes} · post-only rejects {status.post_only_rejects}"
    order = status.maker_order
    if order is None:
        return _line(_label("maker order", wide), "none · " + counts)
    age = time.monotonic() - status.maker_order_since
    distance = ""
    if maker_top is not None:
        best = maker_top.bid if order.side.value == "buy" else maker_top.ask
        distance = f", {_fmt(abs(order.price - best), 4)} from the top"
    if not wide:
        return _line(
            _label("order", wide),
            f"{order.side.value} {_fmt(order.qty)} @ {_fmt(order.price, 4)} ({age:.1f} s"
            f"{distance.replace(' the top', ' top')}) · re-quotes {status.requotes} · "
            f"rejects {status.post_only_rejects}",
        )
    return _line(
        _label("maker order", wide),
        f"{order.side.value} {_fmt(order.qty)} @ {_fmt(order.price, 4)} "
        f"(client {order.client_id}, {age:.1f} s{distance}) · {counts}",
    )


def _unmarked(engine: HedgeEngine, hedger: Hedger) -> str:
    """The venues whose open leg has no book to be valued at ("" when every leg is marked):
    the PnL would count that leg's cash without its value."""
    legs = ((engine.maker, hedger.maker_net), (engine.hedge, hedger.hedge_net))
    return ", ".join(venue.name for venue, net in legs if net and venue.top() is None)


def _pnl_or_none(engine: HedgeEngine, hedger: Hedger) -> tuple[Decimal | None, str]:
    """The PnL (Dashboard._pnl), or None and why when an open leg cannot be marked."""
    pnl = Dashboard._pnl(engine)
    if pnl is None:
        return None, f"n/a (no {_unmarked(engine, hedger)} book to mark the open leg at)"
    return pnl, f"{_fmt(pnl, 4)} USDC"


def _money_lines(engine: HedgeEngine, hedger: Hedger, wide: bool) -> list[Text]:
    """Fills and volume, PnL, wear per 10k of maker volume, and (wide) the wear split into the
    fees of each leg and the rest (price moves, slippage, basis: `report` splits it further)."""
    stats = hedger.stats
    pnl, pnl_text = _pnl_or_none(engine, hedger)
    wear = _wear_text(pnl, stats.maker_volume)
    if not wide:
        return [
            _line(
                _label("money", wide),
                f"fills {stats.maker_fills}/{stats.hedge_fills} · volume "
                f"{_fmt(stats.maker_volume, 2)} USDC · wear/10k {wear} · PnL {pnl_text}",
            )
        ]
    fees_hedge = stats.fees - stats.fees_maker
    split = (
        f"maker fees {_fmt(stats.fees_maker, 4)} + hedge fees {_fmt(fees_hedge, 4)}"
        + (
            ""
            if pnl is None
            else f" + price moves, slippage and basis {_fmt(-pnl - stats.fees, 4)}"
        )
        + ("" if pnl is None else f" = wear {_fmt(-pnl, 4)} USDC")
    )
    return [
        _line(
            _label("fills", wide),
            f"maker {stats.maker_fills} / hedge {stats.hedge_fills} · volume "
            f"{_fmt(stats.maker_volume, 2)} / {_fmt(stats.hedge_volume, 2)} USDC",
        ),
        _line(
            _label("money", wide),
            f"PnL {pnl_text}{'' if pnl is None else ' (open legs at the mids)'} · wear per 10k "
            f"maker volume {wear}",
        ),
        _line(_label("cost split", wide), split),
    ]


def _wear_text(pnl: Decimal | None, maker_volume: Decimal) -> str:
    """What the maker volume cost so far, per 10,000 of it (report: the split by cause)."""
    if not maker_volume:
        return "n/a (no maker volume yet)"
    if pnl is None:
        return "n/a"
    return f"{_fmt(-pnl / maker_volume * 10_000, 2)} USDC"


# -- the warnings' lines -------------------------------------------------------------------------


def _rule(head: str, width: int) -> list[Text]:
    text = f"── {head} "
    return [_line((text + "─" * max(width - len(text), 0), DIM))]


def _collapse(entries: list[Warned]) -> Iterator[tuple[Warned, int]]:
    """Newest first; a record repeating the one before it (same logger, pair and message)
    is shown once with its count."""
    previous: Warned | None = None
    times = 0
    for entry in reversed(entries):
        if previous is not None and (entry.name, entry.pair, entry.message) == (
            previous.name,
            previous.pair,
            previous.message,
        ):
            times += 1
            continue
        if previous is not None:
            yield previous, times
        previous, times = entry, 1
    if previous is not None:
        yield previous, times


def _warning_text(entry: Warned, times: int, pairs: bool) -> Text:
    stamp = time.strftime("%H:%M:%S", time.localtime(entry.created))
    pair = f"{entry.pair or 'account'} " if pairs else ""
    repeat = f" (×{times})" if times > 1 else ""
    style = RED if entry.level >= logging.ERROR else YELLOW
    return _line(f"{stamp} {pair}", (entry.name, "bold"), (f": {entry.message}{repeat}", style))


# -- several pairs ---------------------------------------------------------------------------------

# (heading, width, shown at 80 columns): the pairs' table; cells are clipped to their width.
PAIR_COLUMNS: tuple[tuple[str, int, bool], ...] = (
    ("pair", 8, True),
    ("state", 13, True),
    ("iter", 6, False),
    ("exposure", 16, True),
    ("in flight", 10, False),
    ("sent", 5, False),
    ("re-sent", 8, True),
    ("failed", 7, True),
    ("p99 ms", 8, True),
    ("fills m/h", 10, True),
    ("volume", 10, False),
    ("PnL", 10, False),
    ("wear/10k", 9, True),
)


def _wear_cell(pnl: Decimal | None, maker_volume: Decimal) -> str:
    return "-" if not maker_volume else _wear_text(pnl, maker_volume).removesuffix(" USDC")


def _cells(values: Sequence[tuple[str, str]], wide: bool) -> Text:
    parts: list[tuple[str, str]] = []
    for (_, width, compact), (value, style) in zip(PAIR_COLUMNS, values, strict=True):
        if wide or compact:
            cell = value if len(value) < width else value[: width - 2] + "…"
            parts.append((f"{cell:<{width}}", style))
    return _line(*parts)


class PairsDashboard(Dashboard):
    """The live screen of several pairs on one account: a row per pair, the account's totals,
    the shared request budgets and reconnects, and the last warnings of every pair (each
    tagged with its pair)."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.engines: list[HedgeEngine] = []

    def attach(self, engine: HedgeEngine) -> None:
        self.engines.append(engine)
        if self._live is None:
            super().attach(engine)

    def _lines(self, width: int, rows: int) -> list[Text]:
        wide = width >= WIDE[0] and rows >= WIDE[1] - 1
        engines = list(self.engines)
        states = [e.status.state for e in engines]
        summary = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        header: list[str | tuple[str, str]] = [("hedgebot", "bold"), f" {len(engines)} pairs"]
        if engines and wide:
            header.append(f" · {engines[0].maker.name} maker / {engines[0].hedge.name} hedge")
        if self.attached_at is not None:
            header.append(f" · up {_uptime(time.monotonic() - self.attached_at)}")
        lines = [_line(*header, f" · {summary}" if summary else "")]
        items = [
            (f"{engine.settings.ticker} {text}", style)
            for engine in engines
            for text, style in self._attention(engine, engine.status, budgets=False)
        ]
        if engines:
            items += self._storm_alarms((engines[0].maker, engines[0].hedge))
        lines += _attention_lines(items, width, wide)
        lines += self._table(engines, wide)
        if engines:
            first = engines[0]
            lines.append(_reconnects_line((first.maker, first.hedge), None, wide))
            lines += _budget_lines((first.maker, first.hedge), self.storms, wide)
        faults = self._faults_text()
        if faults:
            lines.append(_line(_label("faults seen", wide), faults))
        own = sorted(  # "HH:MM:SS text" -> "HH:MM:SS PAIR text", by time
            (stamp, f"{stamp} {engine.settings.ticker} {text}")
            for engine in engines
            for stamp, _, text in (line.partition(" ") for line in engine.status.warnings)
        )
        return lines + self._warning_lines(
            [line for _, line in own], rows - len(lines), width, pairs=True
        )

    def _table(self, engines: list[HedgeEngine], wide: bool) -> list[Text]:
        lines = [_cells([(heading, "bold") for heading, _, _ in PAIR_COLUMNS], wide)]
        volume = Decimal(0)
        pnl: Decimal | None = Decimal(0)
        totals = [0, 0, 0, 0, 0]  # sent, re-sent, failed, maker fills, hedge fills
        for engine in engines:
            status, hedger = engine.status, engine.hedger
            head = [
                (engine.settings.ticker, "bold"),
                (status.state, _state_colour(status)),
                (f"{status.iteration}/{status.iterations}", ""),
            ]
            if hedger is None:
                lines.append(_cells(head + [("", "")] * (len(PAIR_COLUMNS) - 3), wide))
                continue
            row, engine_pnl, counts = self._pair_row(engine, hedger)
            lines.append(_cells(head + row, wide))
            volume += hedger.stats.maker_volume
            pnl = None if pnl is None or engine_pnl is None else pnl + engine_pnl
            totals = [a + b for a, b in zip(totals, counts, strict=True)]
        sent, resent, failed, maker_fills, hedge_fills = (str(n) for n in totals)
        account = [
            ("account", "bold"),
            (f"{len(engines)} pairs", ""),
            *[("", "")] * 3,
            (sent, ""),
            (resent, ""),
            (failed, RED if totals[2] else ""),
            ("", ""),
            (f"{maker_fills}/{hedge_fills}", ""),
            (_fmt(volume, 2), ""),
            ("n/a" if pnl is None else _fmt(pnl, 4), ""),
            (_wear_cell(pnl, volume), ""),
        ]
        return [*lines, _cells(account, wide)]

    def _pair_row(
        self, engine: HedgeEngine, hedger: Hedger
    ) -> tuple[list[tuple[str, str]], Decimal | None, list[int]]:
        """One pair's cells from `exposure` on, its PnL (None: not markable) and its counts."""
        stats = hedger.stats
        resent = max(stats.hedges_sent - stats.first_sends, 0)
        recent = [ns / 1e6 for ns in itertools.islice(reversed(stats.latencies_ns), LATENCY_WINDOW)]
        pnl, _ = _pnl_or_none(engine, hedger)
        exposure, style = "0 flat", GREEN
        if hedger.exposure or hedger.in_flight:
            _, style = exposure_words(hedger, engine.settings.ticker)
            age = hedger.unhedged_age()
            exposure = _fmt(hedger.exposure) + (f" {age:.1f}s" if age >= 0.05 else "")
        row = [
            (exposure, style),
            (_fmt(abs(hedger.in_flight)), ""),
            (str(stats.hedges_sent), ""),
            (str(resent), ""),
            (str(stats.hedge_failures), RED if stats.hedge_failures else ""),
            (f"{percentile(recent, 0.99):.3f}", ""),
            (f"{stats.maker_fills}/{stats.hedge_fills}", ""),
            (_fmt(stats.maker_volume, 2), ""),
            ("n/a" if pnl is None else _fmt(pnl, 4), ""),
            (_wear_cell(pnl, stats.maker_volume), ""),
        ]
        counts = [stats.hedges_sent, resent, stats.hedge_failures]
        return row, pnl, [*counts, stats.maker_fills, stats.hedge_fills]

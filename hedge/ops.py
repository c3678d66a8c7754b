"""The work behind the CLI commands: settings shown and checked, the start checks, the
simulated venues served, the account read or closed, reports (`run` and `demo` themselves are
in hedge/launch.py, which builds on this module).

`runbot.py` parses flags and maps outcomes to exit codes; each command calls one function here
or in launch.py. Everything that needs an event loop runs its own `asyncio.run` here, never in
the CLI. Output goes to `out` (stdout) and `err` (stderr), the consoles the CLI shares.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from rich.console import Console
from rich.table import Table

from exchanges.base import ConfigError, Side, Venue, VenueError
from hedge.config import (
    DEFAULT_URLS,
    KEYS_HINT,
    Direction,
    Mode,
    Settings,
    TradingFlags,
    load_settings,
    market_problems,
)
from hedge.economics import money_line
from hedge.logsetup import REDACTOR
from hedge.quoting import BPS, bps_text

if TYPE_CHECKING:
    from exchanges.sim.market import MarketParams
    from exchanges.sim.runner import SimCluster
    from hedge.app import Accounts
    from hedge.journal import Journal

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def write_crash_log() -> Path:
    """The traceback goes to a file (redacted), never to the terminal."""
    import traceback
    from datetime import UTC, datetime

    folder = Path("logs")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"crash-{datetime.now(UTC):%Y%m%d-%H%M%S}.log"
    path.write_text(REDACTOR.redact(traceback.format_exc()), encoding="utf-8")
    return path


# -- settings --------------------------------------------------------------------------------


def resolve_settings(
    flags: TradingFlags, *, mode: Mode, env_file: Path | None, keys_hint: str = KEYS_HINT
) -> Settings:
    """Settings from flags and env/.env; secrets registered with the log redactor."""
    settings = load_settings(
        flags,
        mode=mode,
        env_file=env_file if env_file is not None else Path(".env"),
        env_file_explicit=env_file is not None,
        keys_hint=keys_hint,
    )
    for secret in (
        settings.backpack_public_key,
        settings.backpack_secret_key,
        settings.lighter_private_key,
    ):
        if secret is not None:
            REDACTOR.add(secret.reveal())
    for notice in settings.notices:
        err.print(notice)
    return settings


def account_settings(ticker: str, env_file: Path | None) -> Settings:
    """Settings for commands that only read or close the account (no trading flags needed)."""
    flags = TradingFlags(ticker=ticker, size="1")
    hint = "status and flatten read the account: put the keys in .env (see .env.example)"
    return resolve_settings(flags, mode=Mode.LIVE, env_file=env_file, keys_hint=hint)


def plan_text(settings: Settings) -> str:
    """What a run with these settings would do, in a trader's words."""
    direction = settings.direction
    first = "buy" if direction is not Direction.SELL else "sell"
    flips = " (then sell, alternating)" if direction is Direction.ALTERNATE else ""
    orders_per_leg = (settings.max_position / settings.size).to_integral_value(ROUND_CEILING)
    hedge = "sell" if first == "buy" else "buy"
    return (
        f"{settings.iterations} iteration(s): {first}{flips} {settings.max_position} "
        f"{settings.ticker} on Backpack {settings.backpack_symbol} in {orders_per_leg} post-only "
        f"order(s) of {settings.size}, priced {settings.maker_ticks} tick(s) inside the best "
        f"opposite price{_edge_clause(settings)}, then close back to flat the same way. Each "
        f"maker fill is hedged at "
        f"once by an IOC {hedge} on Lighter {settings.ticker} with a worst price "
        f"{settings.max_slippage_bps} bps past the Lighter top. Unfilled orders are re-quoted "
        f"after {settings.fill_timeout:g} s or a {settings.requote_ticks}-tick move; an "
        f"unhedged amount older than {settings.hedge_timeout:g} s escalates (wider slippage, "
        f"then halt with legs balanced, exit 3)."
    )


def _edge_clause(settings: Settings) -> str:
    terms = settings.edge_terms
    if terms is None:
        return " (bbo mode)"
    return (
        f" but never beyond what the Lighter top pays back after both fees (maker "
        f"{bps_text(terms.maker_fee * BPS)} bps, hedge {bps_text(terms.hedge_fee * BPS)} bps) "
        f"and a minimum edge of {bps_text(terms.min_edge_bps)} bps (edge mode)"
    )


def settings_table(settings: Settings) -> Table:
    table = Table(title="Resolved settings", show_header=True, header_style="bold")
    table.add_column("setting")
    table.add_column("value")
    for name, value in (*_trading_rows(settings), *_account_rows(settings)):
        table.add_row(name, value)
    return table


def _trading_rows(settings: Settings) -> list[tuple[str, str]]:
    return [
        ("mode", settings.mode.value),
        (
            "ticker",
            f"{settings.ticker}: Backpack {settings.backpack_symbol}, Lighter {settings.ticker}",
        ),
        ("size", f"{settings.size} {settings.ticker}"),
        ("max position", f"{settings.max_position} {settings.ticker}"),
        ("iterations", str(settings.iterations)),
        ("direction", settings.direction.value),
        ("fill timeout", f"{settings.fill_timeout:g} s"),
        ("requote ticks", str(settings.requote_ticks)),
        ("maker ticks", str(settings.maker_ticks)),
        ("quote mode", settings.quote_mode.value),
        ("min edge", f"{settings.min_edge_bps} bps"),
        ("max slippage", f"{settings.max_slippage_bps} bps"),
        ("hedge timeout", f"{settings.hedge_timeout:g} s"),
        ("sleep", f"{settings.sleep:g} s"),
        ("journal", str(settings.journal)),
        ("log dir", str(settings.log_dir)),
        ("rebalance", "yes" if settings.rebalance else "no"),
    ]


def _account_rows(settings: Settings) -> list[tuple[str, str]]:
    """Keys only as set/missing, never their values; URLs marked when they are the default."""
    secrets = {
        "BACKPACK_PUBLIC_KEY": settings.backpack_public_key,
        "BACKPACK_SECRET_KEY": settings.backpack_secret_key,
        "LIGHTER_API_PRIVATE_KEY": settings.lighter_private_key,
    }
    return [
        *((name, "set" if value is not None else "missing") for name, value in secrets.items()),
        ("LIGHTER_ACCOUNT_INDEX", _opt(settings.lighter_account_index)),
        ("LIGHTER_API_KEY_INDEX", _opt(settings.lighter_api_key_index)),
        ("BACKPACK_API_URL", _url(settings.backpack_api_url, "BACKPACK_API_URL")),
        ("BACKPACK_WS_URL", _url(settings.backpack_ws_url, "BACKPACK_WS_URL")),
        ("LIGHTER_API_URL", _url(settings.lighter_api_url, "LIGHTER_API_URL")),
        ("LIGHTER_WS_URL", _url(settings.lighter_ws_url, "LIGHTER_WS_URL")),
    ]


def _opt(value: int | None) -> str:
    return "missing" if value is None else str(value)


def _url(value: str, name: str) -> str:
    return value if value != DEFAULT_URLS[name] else f"{value} (default)"


# -- start checks: before any order ----------------------------------------------------------

CONNECT_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 5.0
URL_VARIABLES = {
    "backpack": ("BACKPACK_API_URL", "BACKPACK_WS_URL"),
    "lighter": ("LIGHTER_API_URL", "LIGHTER_WS_URL"),
}


# What Lighter's key check answers for an account or key index it does not have. The adapter
# reports these as a failed read (exchanges/lighter/signing.py); to the user they are a refusal.
def check_paths(settings: Settings) -> None:
    """The log folder is usable and the journal is (or can become) this run's hedgebot journal:
    ConfigError naming the path otherwise. Creates the log folder, nothing else."""
    from hedge.journal import Journal, journal_problem

    problem = _folder_problem(settings.log_dir)
    if problem is not None:
        raise ConfigError(f"--log-dir {settings.log_dir}: {problem}")
    problem = journal_problem(settings.journal)
    if problem is not None:
        raise ConfigError(f"--journal {settings.journal}: {problem}")
    if not settings.journal.exists() or settings.journal.stat().st_size == 0:
        return
    book = Journal(settings.journal, readonly=True)
    try:
        foreign = book.foreign_runs(settings.ticker, settings.mode.value)
    finally:
        book.close()
    if foreign:
        held = ", ".join(f"{ticker} {mode}" for ticker, mode in foreign)
        raise ConfigError(
            f"--journal {settings.journal}: it holds {held} runs and this is a "
            f"{settings.ticker} {settings.mode.value} run; a journal belongs to one ticker and "
            "mode: choose another --journal"
        )


@contextmanager
def quiet_console() -> Iterator[None]:
    """Log records stay out of the terminal while the start checks run (their retries are in
    the log file): a refused start is the one error line the CLI prints."""
    root = logging.getLogger()
    consoles = [h for h in root.handlers if type(h) is logging.StreamHandler]
    levels = [h.level for h in consoles]
    silence = logging.NullHandler() if not root.handlers else None  # not Python's last resort
    if silence is not None:
        root.addHandler(silence)
    for handler in consoles:
        handler.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for handler, level in zip(consoles, levels, strict=True):
            handler.setLevel(level)
        if silence is not None:
            root.removeHandler(silence)


async def preflight(
    settings: Settings, *, describe: bool = False, accounts: Accounts | None = None
) -> tuple[list[dict[str, object]], list[str]]:
    """What a run checks before its first order: every venue address answers, both venues
    accept the keys (when trading) and list the ticker, and `--size` fits both markets.
    ConfigError (exit 2) for what the user must change, VenueError (exit 1) naming the URL
    variable when a venue cannot be reached. With `describe`, each venue's summary and where
    the run would quote now (`quote_bound_words`)."""
    import asyncio

    from hedge.app import build_venues

    await probe_endpoints(settings)
    maker, hedge = build_venues(settings, paper=False, accounts=accounts)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await connect_both(maker, hedge)
            markets = [(v.market(), _mid(v)) for v in (maker, hedge)]
            problems = market_problems(settings, markets)
            if problems:
                raise ConfigError("\n".join(problems))
            if not describe:
                return [], []
            summaries = [await _describe(maker), await _describe(hedge)]
            return summaries, quote_bound_words(settings, maker, hedge)
    except TimeoutError:
        raise not_up_in_time() from None
    finally:
        await asyncio.gather(maker.close(), hedge.close(), return_exceptions=True)


async def preflight_pairs(pairs: list[Settings], accounts: Accounts) -> None:
    """`preflight` for every pair, over the accounts they will share (the run's: its request
    budget counts these requests too): one connection per venue, every pair's market problems
    reported at once."""
    if len(pairs) == 1:
        await preflight(pairs[0], accounts=accounts)
        return
    await probe_endpoints(pairs[0])
    async with connected_pairs(pairs, accounts, paper=False) as venues:
        problems = [
            problem
            for settings, (maker, hedge) in zip(pairs, venues, strict=True)
            for problem in market_problems(
                settings, [(v.market(), _mid(v)) for v in (maker, hedge)]
            )
        ]
    if problems:
        raise ConfigError("\n".join(problems))


def not_up_in_time() -> VenueError:
    return VenueError(
        f"the venues did not come up within {CONNECT_TIMEOUT_S:g} s: check the network/DNS "
        "or the BACKPACK_* and LIGHTER_* URL variables",
        retryable=True,
    )


@contextlib.asynccontextmanager
async def connected_pairs(
    pairs: list[Settings], accounts: Accounts | None = None, *, paper: bool | None = None
) -> AsyncIterator[list[tuple[Venue, Venue]]]:
    """Every pair's venues over one set of shared accounts, connected (within
    CONNECT_TIMEOUT_S) for the block and closed after it whatever happens."""
    import asyncio

    from hedge.app import build_venues, shared_accounts

    shared = accounts or shared_accounts(pairs[0])
    venues = [build_venues(s, paper=paper, accounts=shared) for s in pairs]
    try:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await asyncio.gather(*(connect_both(maker, hedge) for maker, hedge in venues))
        except TimeoutError:
            raise not_up_in_time() from None
        yield venues
    finally:
        every = [venue for pair in venues for venue in pair]
        await asyncio.gather(*(v.close() for v in every), return_exceptions=True)


async def connect_both(maker: Venue, hedge: Venue) -> None:
    """Connect both venues; every refusal at once as one ConfigError line, else the first
    failure as a VenueError naming the venue's URL variables."""
    import asyncio

    outcomes = await asyncio.gather(maker.connect(), hedge.connect(), return_exceptions=True)
    errors = [
        _start_error(venue.name, outcome)
        for venue, outcome in zip((maker, hedge), outcomes, strict=True)
        if isinstance(outcome, BaseException)
    ]
    refusals = [str(e) for e in errors if isinstance(e, ConfigError)]
    if refusals:
        raise ConfigError("; ".join(" ".join(r.split()) for r in refusals))
    if errors:
        raise errors[0]


def _start_error(venue: str, exc: BaseException) -> BaseException:
    """What a venue's failure to connect means to the user: a refusal (ConfigError), an
    unreachable venue (VenueError), or a bug (as it is: the CLI writes a crash log)."""
    if isinstance(exc, ConfigError) or not isinstance(exc, VenueError):
        return exc
    text = str(exc)
    if exc.status in (400, 401, 403):
        return ConfigError(f"{venue.capitalize()} refused the API keys: {text}")
    api, ws = URL_VARIABLES.get(venue, ("its URL", "its WebSocket URL"))
    return VenueError(
        f"{venue} did not come up at start ({text}): check the network/DNS, or {api} and {ws}",
        retryable=True,
    )


async def probe_endpoints(settings: Settings) -> None:
    """Open (and close) one TCP connection to each venue URL: an address that does not answer
    is one line naming its variable, within seconds, instead of a run that retries forever."""
    import asyncio

    urls = {
        "BACKPACK_API_URL": settings.backpack_api_url,
        "BACKPACK_WS_URL": settings.backpack_ws_url,
        "LIGHTER_API_URL": settings.lighter_api_url,
        "LIGHTER_WS_URL": settings.lighter_ws_url,
    }
    problems = await asyncio.gather(*(_probe(name, url) for name, url in urls.items()))
    found = [problem for problem in problems if problem is not None]
    if found:
        raise VenueError(found[0], retryable=True)


async def _probe(variable: str, url: str) -> str | None:
    """Why nothing answers at `url` (the value is never shown), or None."""
    import asyncio
    import socket

    parsed = urlparse(url)
    secure = parsed.scheme in ("https", "wss")
    host, port = parsed.hostname or "", parsed.port or (443 if secure else 80)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            _reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return (
            f"{variable}: no answer within {PROBE_TIMEOUT_S:g} s; check the network "
            f"(firewall, proxy) or the URL in {variable}"
        )
    except socket.gaierror:
        return f"{variable}: its host name does not resolve; check the network/DNS or {variable}"
    except OSError as exc:  # its own text may name the address: only the errno's is shown
        reason = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
        return (
            f"{variable}: nothing answers at that address ({reason}); check {variable} "
            "or that the venue is up"
        )
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


def quote_bound_words(settings: Settings, maker: Venue, hedge: Venue) -> list[str]:
    """Where a run would quote now, in plain words (edge mode: the bound of each side)."""
    terms = settings.edge_terms
    if terms is None:
        return [f"bbo mode: {settings.maker_ticks} tick(s) inside the Backpack touch, no bound"]
    hedge_top = hedge.top()
    if hedge_top is None:
        return ["edge mode: no Lighter book yet, so no bound to show"]
    tick = maker.market().tick_size
    return [terms.describe(side, hedge_top, tick) for side in (Side.BUY, Side.SELL)]


def _mid(venue: Venue) -> Decimal | None:
    top = venue.top()
    return None if top is None else top.mid


async def _describe(venue: Venue) -> dict[str, object]:
    describe = getattr(venue, "describe", None)
    if describe is None:
        return {"venue": venue.name, "symbol": venue.market().symbol}
    summary: dict[str, object] = await describe()
    return summary


# -- check -----------------------------------------------------------------------------------


def check(settings: Settings, *, connect: bool) -> None:
    """Show the settings and the plan; with `connect`, run the start checks of a run and show
    what each venue says about the account. Nothing is sent."""
    out.print(settings_table(settings))
    out.print(f"[bold]Plan:[/] {plan_text(settings)}")
    if not connect:
        out.print("Settings are valid.")
        return
    import asyncio

    check_paths(settings)
    with quiet_console():
        summaries, bound = asyncio.run(preflight(settings, describe=True))
    for summary in summaries:
        out.print(_venue_table(summary))
    for line in bound:
        out.print(f"Quote bound now: {line}", soft_wrap=True)
    out.print(
        "Settings are valid. Both venues answered and accept the keys, the ticker and the "
        "size; nothing was sent."
    )


def _venue_table(summary: dict[str, object]) -> Table:
    table = Table(title=f"{summary.get('venue', '?')}: connected", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key, value in summary.items():
        if key == "venue":
            continue
        if isinstance(value, list):
            value = "; ".join(str(item) for item in value) or "none"
        table.add_row(key.replace("_", " "), str(value))
    return table


# -- run / demo ------------------------------------------------------------------------------


def print_summary(summary: dict[str, object], journal: Path, result_reason: str) -> None:
    latency = summary["hedge_latency_ms"]
    assert isinstance(latency, dict)
    s = summary
    table = Table(title="Summary", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for label, value in (
        ("result", result_reason),
        ("cycles", summary["cycles"]),
        ("maker fills / volume", f"{summary['maker_fills']} / {summary['maker_volume']} USDC"),
        ("hedge fills / volume", f"{summary['hedge_fills']} / {summary['hedge_volume']} USDC"),
        ("net position maker", summary["net_position_maker"]),
        ("net position hedge", summary["net_position_hedge"]),
        ("net delta", summary["net_delta"]),
        ("double hedges", summary["double_hedges"]),
        ("max unhedged", f"{summary['unhedged_max_s']} s"),
        ("hedge latency p50/p99/max", f"{latency['p50']} / {latency['p99']} / {latency['max']} ms"),
        ("hedges re-sent", summary.get("hedge_resends", 0)),
        ("edge", f"{summary['edge_bps']} bps"),
        ("fees maker / hedge", f"{s['fees_maker_quote']} / {s['fees_hedge_quote']} USDC"),
        ("PnL realized / open legs", f"{s['pnl_realized_quote']} / {s['pnl_mark_quote']} USDC"),
        ("halts", summary["halts"]),
        ("journal", str(journal)),
    ):
        table.add_row(label, str(value))
    out.print(table)
    out.print(f"money: {money_line(summary)}", soft_wrap=True)
    out.print(
        f"net delta {summary['net_delta']} | double hedges {summary['double_hedges']} | "
        f"exit: {result_reason}",
        soft_wrap=True,
    )


def fit_budget(pairs: list[Settings], *, yes: bool) -> None:
    """Several pairs: say whether their expected fills fit the Lighter account's budget;
    when they do not, refuse (ConfigError) unless the user chose to run throttled."""
    from hedge.pairs import budget_fit

    if len(pairs) == 1:
        return
    fits, text = budget_fit(pairs)
    if fits:
        out.print(f"budget: {text}", soft_wrap=True)
    elif yes:
        out.print(f"budget: {text}; running throttled (--yes): hedges first", soft_wrap=True)
    else:
        raise ConfigError(
            f"{text}: the pairs would wait for the budget. Trade fewer pairs, use a Premium "
            "account, or run throttled with --yes (hedges always go first)"
        )


def print_totals(totals: dict[str, object], what: str = "pairs") -> None:
    nets = totals["net_delta_by_pair"]
    assert isinstance(nets, dict)
    out.print(
        f"account totals over {totals['pairs']} {what}: maker fills {totals.get('maker_fills')}, "
        f"hedge fills {totals.get('hedge_fills')}, double hedges "
        f"{totals.get('double_hedges')}, halts {totals.get('halts')}; net delta "
        + ", ".join(f"{t} {n}" for t, n in nets.items()),
        soft_wrap=True,
    )
    out.print(f"account money: {money_line(totals)}", soft_wrap=True)


def sim_options(
    ticker: str, seed: str, faults: str, lighter_tier: str = "standard"
) -> tuple[str, int, str]:
    """The simulated venues' ticker, seed and fault plan, validated (ConfigError)."""
    from exchanges.sim.faults import PRESETS
    from exchanges.sim.market import DEFAULT_TICKERS
    from exchanges.sim.runner import LIGHTER_TIERS

    problems = []
    ticker = ticker.strip().upper()
    if ticker not in DEFAULT_TICKERS:
        problems.append(
            f"--ticker {ticker!r}: the simulated venues list {', '.join(sorted(DEFAULT_TICKERS))}"
        )
    if not seed.strip().isdigit():
        problems.append(f"--seed {seed!r}: expected a non-negative whole number")
    if faults not in PRESETS:
        problems.append(f"--faults {faults!r}: expected one of {' | '.join(PRESETS)}")
    if lighter_tier not in LIGHTER_TIERS:
        problems.append(
            f"--lighter-tier {lighter_tier!r}: expected one of {' | '.join(LIGHTER_TIERS)}"
        )
    if problems:
        raise ConfigError("\n".join(problems))
    return ticker, int(seed), faults


def market_params(items: list[str] | None) -> MarketParams:
    """The simulated market's `--market NAME=VALUE` flags (ConfigError naming a bad one)."""
    from exchanges.sim.market import MarketParams

    try:
        return MarketParams.parse(list(items or ()))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# -- sim -------------------------------------------------------------------------------------


def serve_sim(
    *,
    ticker: str,
    seed: str,
    faults: str,
    write_env: Path,
    backpack_port: str,
    lighter_port: str,
    fill_rate: str,
    market: list[str] | None,
    lighter_tier: str,
    backpack_rate_limit: str,
    history_lag_ms: str,
) -> None:
    """Run the simulated venues on loopback until SIGINT/SIGTERM. Every flag is checked (and
    the ports and the env file tried) before anything starts."""
    ticker, seed_value, faults = sim_options(ticker, seed, faults, lighter_tier)
    problems: list[str] = []
    ports = [_whole("--backpack-port", backpack_port, (0, 65535), problems)]
    ports.append(_whole("--lighter-port", lighter_port, (0, 65535), problems))
    rate_limit = _whole("--backpack-rate-limit", backpack_rate_limit, (0, 1_000_000), problems)
    lag_ms = _whole("--history-lag-ms", history_lag_ms, (0, 60_000), problems)
    rate = _rate("--fill-rate", fill_rate, problems)
    model = market_params(market)
    if not problems:
        problems += _port_problems(ports) + _writable_file("--write-env", write_env)
    if problems:
        raise ConfigError("\n".join(problems))
    import asyncio

    from exchanges.sim.runner import SimCluster

    def cluster_factory() -> SimCluster:
        return SimCluster(
            seed=seed_value,
            faults=faults,
            fill_rate=rate,
            backpack_port=ports[0],
            lighter_port=ports[1],
            lighter_tier=lighter_tier,
            backpack_rate_limit=rate_limit or None,
            backpack_history_lag_s=lag_ms / 1000,
            market_params=model,
        )

    about = f"seed {seed_value}; faults {faults}; Lighter tier {lighter_tier}"
    asyncio.run(_serve(cluster_factory, ticker, write_env, about))


def _whole(name: str, raw: str, bounds: tuple[int, int], problems: list[str]) -> int:
    low, high = bounds
    text = raw.strip()
    if text.isascii() and text.isdigit() and len(text) <= 9 and low <= int(text) <= high:
        return int(text)
    problems.append(f"{name} {raw!r}: expected a whole number from {low} to {high}")
    return 0


def _rate(name: str, raw: str, problems: list[str]) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not 0 <= value <= 100:  # False for NaN
        problems.append(f"{name} {raw!r}: expected a number from 0 to 100")
        return 0.0
    return value


def _port_problems(ports: list[int]) -> list[str]:
    """Each chosen port is free on loopback (0 means any free port)."""
    import socket

    if ports[0] and ports[0] == ports[1]:
        return [f"--lighter-port {ports[1]}: the same as --backpack-port; each venue needs its own"]
    problems = []
    for name, port in zip(("--backpack-port", "--lighter-port"), ports, strict=True):
        if not port:
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                reason = (exc.strerror or type(exc).__name__).lower()
                problems.append(f"{name} {port}: cannot listen on it ({reason}); choose another")
    return problems


def _writable_file(name: str, path: Path) -> list[str]:
    """`path` can be written (its folder created): else one line naming it."""
    if path.is_dir():
        return [f"{name} {path}: is a folder, expected a file"]
    problem = _folder_problem(path.parent)
    return [] if problem is None else [f"{name} {path}: cannot be written: its folder {problem}"]


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be written in `folder` (created when missing), or None."""
    if folder.exists() and not folder.is_dir():
        return "is a file, expected a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
        return f"is not a writable folder ({reason})"
    return None


async def _serve(
    cluster_factory: Callable[[], SimCluster], ticker: str, write_env: Path, about: str
) -> None:
    import asyncio
    import signal

    cluster = cluster_factory()
    try:
        await cluster.start()
    except OSError as exc:  # a port taken between the check and the start
        with contextlib.suppress(Exception):
            await cluster.stop()
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"--backpack-port/--lighter-port: cannot listen ({reason})") from None
    cluster.write_env(write_env)
    spec = cluster.market.tickers[ticker]
    out.print(f"Backpack  REST {cluster.backpack.api_url}  WS {cluster.backpack.ws_url}")
    out.print(f"Lighter   REST {cluster.lighter.api_url}  WS {cluster.lighter.ws_url}")
    out.print(
        f"Markets   {spec.backpack.symbol} / Lighter {spec.lighter.symbol} "
        f"(market {spec.lighter.market_id}); {about}"
    )
    out.print(f"Env file  {write_env}  (python runbot.py run --env-file {write_env} ...)")
    out.print("Control   POST /_sim/... on either venue; Ctrl-C stops.")
    out.file.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await cluster.stop()
        out.print("simulated venues stopped")


# -- status / flatten / report ---------------------------------------------------------------


def latest_journal(folder: Path, ticker: str | None = None, tag: str = "live") -> Path | None:
    """The newest journal of `ticker` (any pair when None) and mode `tag` under `folder`: a
    journal of another mode is never taken by default. Older live journals, named
    `<PAIR>-<date>.sqlite`, count as live."""
    pair = ticker or "*"
    candidates = list(folder.glob(f"{pair}-{tag}-*.sqlite"))
    if tag == "live":
        candidates += [p for p in folder.glob(f"{pair}-*.sqlite") if p.stem.split("-")[1].isdigit()]
    candidates.sort(key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def no_journal(ticker: str | None) -> ConfigError:
    """No live journal to default to: say so, and name the newest of another mode if any."""
    folder, pair = Path("logs"), ticker or "*"
    others = sorted(folder.glob(f"{pair}-*.sqlite"), key=lambda p: p.stat().st_mtime)
    hint = f"; the newest of another mode is {others[-1]}: name it with --journal" if others else ""
    return ConfigError(
        f"--journal logs/{pair}-live-*.sqlite: no live journal found (run the bot first, or "
        f"name one with --journal){hint}"
    )


def status(pairs: list[Settings], journal: str | None) -> None:
    """Positions, open orders and collateral on both venues, the net, the journal's view; for
    several tickers, each pair and the account's nets (one connection per venue)."""
    import asyncio

    if journal and len(pairs) > 1:
        raise ConfigError("--journal names one pair's journal: give one --ticker with it")
    paths: dict[str, Path | None] = {}
    for settings in pairs:
        path = Path(journal) if journal else latest_journal(Path("logs"), settings.ticker)
        if path is not None and (journal or path.exists()):
            _readable_journal(path).close()  # a bad one is refused before connecting
        paths[settings.ticker] = path
    asyncio.run(_status(pairs, paths))


async def _status(pairs: list[Settings], paths: dict[str, Path | None]) -> None:
    await probe_endpoints(pairs[0])
    async with connected_pairs(pairs) as venues:
        nets = {}
        for settings, pair in zip(pairs, venues, strict=True):
            nets[settings.ticker] = await _pair_status(settings, pair, paths[settings.ticker])
        if len(pairs) > 1:
            out.print(
                "account: net delta " + ", ".join(f"{t} {n}" for t, n in nets.items()),
                soft_wrap=True,
            )


async def _pair_status(
    settings: Settings, venues: tuple[Venue, Venue], journal_path: Path | None
) -> Decimal:
    """One pair's table, its net delta and the journal's view; returns the net."""
    table = Table(title=f"{settings.ticker} account status")
    for column in ("venue", "position", "open orders", "equity", "available"):
        table.add_column(column)
    positions = {}
    for venue in venues:
        position = await venue.position()
        positions[venue.name] = position
        orders = await venue.open_orders()
        balance = await venue.balance()
        described = ", ".join(
            f"{o.side.value} {o.qty}@{o.price} (client {o.client_id})" for o in orders
        )
        table.add_row(
            venue.name,
            str(position),
            described or "none",
            str(balance.equity),
            str(balance.available),
        )
    out.print(table)
    net = sum(positions.values(), Decimal(0))
    out.print(f"net delta: {net} {settings.ticker}")
    _compare_with_journal(positions, journal_path)
    return net


def _compare_with_journal(positions: dict[str, Decimal], journal_path: Path | None) -> None:
    from hedge.journal import Journal

    if journal_path is None or not journal_path.exists():
        out.print("no journal found to compare with")
        return
    book = Journal(journal_path, readonly=True)
    try:
        for name, position in positions.items():
            expected = book.net_position(name)
            verdict = "agrees" if expected == position else "DIFFERS"
            out.print(
                f"journal {journal_path.name}: {name} {expected} ({verdict} with "
                f"the venue's {position})"
            )
    finally:
        book.close()


def flatten(pairs: list[Settings], *, slippage_bps: Decimal) -> bool:
    """Cancel open orders on both venues and close both positions of each pair; True when
    all are flat with no order left (what is still open is printed)."""
    import asyncio

    outcomes = asyncio.run(_flatten(pairs, slippage_bps))
    flat = True
    for settings, (actions, remaining) in zip(pairs, outcomes, strict=True):
        prefix = f"{settings.ticker}: " if len(pairs) > 1 else ""
        for line in actions:
            out.print(prefix + line)
        if any(remaining.values()):
            err.print(f"{prefix}still open: {remaining}")
            flat = False
    if flat:
        what = "every pair" if len(pairs) > 1 else "both venues"
        out.print(f"{what} flat, no open orders")
    return flat


async def _flatten(
    pairs: list[Settings], slippage_bps: Decimal
) -> list[tuple[list[str], dict[str, Decimal]]]:
    from hedge.flatten import flatten_account

    await probe_endpoints(pairs[0])
    async with connected_pairs(pairs) as venues:
        return [await flatten_account(pair, slippage_bps=slippage_bps) for pair in venues]


def _readable_journal(path: Path) -> Journal:
    """A hedgebot journal opened read-only (it is never written, nor is any other file):
    ConfigError naming the path when it is not one."""
    from hedge.journal import Journal

    return Journal(path, readonly=True)


def report(journals: list[str] | None, *, as_json: bool, tickers: list[str] | None = None) -> None:
    """Summarize a journal (the pair's latest live one under logs/ when none is named) as a
    table or JSON; several tickers: the latest live journal of each and the account's totals;
    several journals (or a folder of them): each one's figures, one row per journal (a live
    journal is a day), and the totals."""
    import json

    from hedge.pairs import account_totals

    paths = journal_paths(journals or [])
    if tickers and len(tickers) > 1 and paths:
        raise ConfigError("--journal names journals: give it without --ticker A,B (or one ticker)")
    if len(paths) > 1 or (tickers and len(tickers) > 1):
        named = {p.name: _summary(p) for p in paths} or {
            t: _summary(_default_journal(t)) for t in tickers or []
        }
        totals = account_totals(named)
        key = "journals" if paths else "pairs"
        if as_json:
            text = json.dumps({key: named, "totals": totals}, sort_keys=True, default=str)
            out.file.write(text + "\n")
            return
        _print_rows(named)
        print_totals(totals, what=key)
        return
    path = paths[0] if paths else _default_journal(tickers[0] if tickers else None)
    summary = _summary(path)
    if as_json:
        out.file.write(json.dumps(summary, sort_keys=True) + "\n")
        return
    _print_report(path, summary)


def journal_paths(names: list[str]) -> list[Path]:
    """`--journal` values: files, or folders standing for every journal in them."""
    paths: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(path.glob("*.sqlite"))
            if not found:
                raise ConfigError(f"--journal {name}: the folder holds no journal (*.sqlite)")
            paths += found
        else:
            paths.append(path)
    return paths


def _default_journal(ticker: str | None) -> Path:
    path = latest_journal(Path("logs"), ticker)
    if path is None:
        raise no_journal(ticker)
    return path


def _summary(path: Path) -> dict[str, object]:
    from hedge.report import summarize

    book = _readable_journal(path)
    try:
        return summarize(book)
    finally:
        book.close()


def _print_rows(summaries: dict[str, dict[str, object]]) -> None:
    """One row per journal (or pair): what a run of days or pairs looks like at a glance."""
    table = Table(title="Journals")
    for column in ("journal", "maker fills", "volume", "wear/10k", "PnL", "double", "halts"):
        table.add_column(column)
    for name, s in summaries.items():
        table.add_row(
            name,
            str(s.get("maker_fills")),
            f"{Decimal(str(s.get('maker_volume', 0))):.2f}",
            str(s.get("wear_per_10k_quote")),
            str(s.get("pnl_quote")),
            str(s.get("double_hedges")),
            str(s.get("halts")),
        )
    out.print(table)


def _print_report(path: Path, summary: dict[str, object]) -> None:
    reasons = summary.get("halt_reasons") or []
    assert isinstance(reasons, list)
    print_summary(summary, path, "; ".join(str(r) for r in reasons) or "no halts")

"""hedgebot: maker on Backpack perps, every fill hedged at once on Lighter.

The command-line entry point (`python runbot.py ...` or the `hedgebot` console script).
Commands parse flags into `TradingFlags`, validate them into `Settings` (hedge/config.py) and
hand over to the engine. A bad flag or setting is one line naming it and exit code 2; an
unexpected error is one line plus the log file path and exit code 1 — never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from decimal import ROUND_CEILING, Decimal
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from exchanges.base import ConfigError, VenueError
from hedge.config import (
    DEFAULT_URLS,
    Direction,
    Mode,
    Settings,
    TradingFlags,
    load_settings,
    with_endpoints,
)
from hedge.logsetup import REDACTOR

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_HALTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    help="Quote post-only maker orders on Backpack perps and hedge every fill at once on "
    "Lighter, so the account stays delta-neutral while it earns maker volume.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

# --------------------------------------------------------------------------------------------
# Options shared by run / demo / check. Numbers are taken as text and validated by
# hedge/config.py so that every problem gets the same one-line message.
# --------------------------------------------------------------------------------------------

TickerOpt = Annotated[
    str,
    typer.Option(
        "--ticker",
        "-t",
        metavar="TICKER",
        help="Base asset of the pair: BTC trades BTC_USDC_PERP on Backpack and BTC on Lighter.",
    ),
]
SizeOpt = Annotated[
    str | None,
    typer.Option(
        "--size", metavar="QTY", help="Size of each maker order, in base units (e.g. 0.01 BTC)."
    ),
]
MaxPositionOpt = Annotated[
    str | None,
    typer.Option(
        "--max-position",
        metavar="QTY",
        help="Position an iteration builds before closing it, in base units. \\[default: --size]",
    ),
]
IterationsOpt = Annotated[
    str,
    typer.Option(
        "--iterations",
        "-n",
        metavar="N",
        help="Iterations: each opens to --max-position and closes back to flat.",
    ),
]
DirectionOpt = Annotated[
    str,
    typer.Option(
        "--direction",
        metavar="buy|sell|alternate",
        help="Side of the opening maker orders on Backpack; alternate flips every iteration.",
    ),
]
FillTimeoutOpt = Annotated[
    str,
    typer.Option(
        "--fill-timeout",
        metavar="SECONDS",
        help="Seconds a maker order may rest unfilled before it is cancelled and re-quoted.",
    ),
]
RequoteTicksOpt = Annotated[
    str,
    typer.Option(
        "--requote-ticks",
        metavar="TICKS",
        help="Re-quote at once when the book top moves more than this many ticks away.",
    ),
]
MakerTicksOpt = Annotated[
    str,
    typer.Option(
        "--maker-ticks",
        metavar="TICKS",
        help="Maker price distance inside the opposite best: buy at best ask - TICKS x tick.",
    ),
]
SlippageOpt = Annotated[
    str,
    typer.Option(
        "--max-slippage-bps",
        metavar="BPS",
        help="Hedge worst price = Lighter top +/- this many basis points (1 bp = 0.01 %).",
    ),
]
HedgeTimeoutOpt = Annotated[
    str,
    typer.Option(
        "--hedge-timeout",
        metavar="SECONDS",
        help="Seconds an unhedged amount may wait before the escalation ladder (wider "
        "slippage, then halt).",
    ),
]
SleepOpt = Annotated[
    str,
    typer.Option("--sleep", metavar="SECONDS", help="Pause between iterations, in seconds."),
]
JournalOpt = Annotated[
    str | None,
    typer.Option(
        "--journal",
        metavar="PATH",
        help="SQLite journal of orders, fills and hedges. \\[default: logs/<TICKER>-<date>.sqlite]",
    ),
]
LogDirOpt = Annotated[
    str,
    typer.Option("--log-dir", metavar="DIR", help="Folder for run logs, journals and CSV logs."),
]
EnvFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--env-file",
        metavar="PATH",
        help="File of KEY=value settings (keys, URLs). Values in it override the environment. "
        "\\[default: .env if present]",
    ),
]
RebalanceOpt = Annotated[
    bool,
    typer.Option(
        "--rebalance",
        help="On start, close an unbalanced net on Lighter instead of refusing to quote.",
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn project errors into one clear line and the documented exit code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            for line in str(exc).splitlines():
                err.print(f"[bold red]error:[/] {line}", markup=True, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            path = _write_crash_log()
            err.print(
                f"[bold red]unexpected error:[/] {type(exc).__name__}: {REDACTOR.redact(str(exc))}"
                f" (details in {path})",
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def _write_crash_log() -> Path:
    """The traceback goes to a file (redacted), never to the terminal."""
    import traceback
    from datetime import UTC, datetime

    folder = Path("logs")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"crash-{datetime.now(UTC):%Y%m%d-%H%M%S}.log"
    path.write_text(REDACTOR.redact(traceback.format_exc()), encoding="utf-8")
    return path


def flags_from(params: dict[str, object], **overrides: object) -> TradingFlags:
    """The trading flags among a command's parameters (its `locals()`), plus overrides."""
    names = {f.name for f in fields(TradingFlags)}
    chosen = {k: v for k, v in {**params, **overrides}.items() if k in names}
    return TradingFlags(**chosen)  # type: ignore[arg-type]


def resolve_settings(flags: TradingFlags, *, mode: Mode, env_file: Path | None) -> Settings:
    settings = load_settings(
        flags,
        mode=mode,
        env_file=env_file if env_file is not None else Path(".env"),
        env_file_explicit=env_file is not None,
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
        f"opposite price, then close back to flat the same way. Each maker fill is hedged at "
        f"once by an IOC {hedge} on Lighter {settings.ticker} with a worst price "
        f"{settings.max_slippage_bps} bps past the Lighter top. Unfilled orders are re-quoted "
        f"after {settings.fill_timeout:g} s or a {settings.requote_ticks}-tick move; an "
        f"unhedged amount older than {settings.hedge_timeout:g} s escalates (wider slippage, "
        f"then halt with legs balanced, exit 3)."
    )


def settings_table(settings: Settings) -> Table:
    table = Table(title="Resolved settings", show_header=True, header_style="bold")
    table.add_column("setting")
    table.add_column("value")
    rows: list[tuple[str, str]] = [
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
        ("max slippage", f"{settings.max_slippage_bps} bps"),
        ("hedge timeout", f"{settings.hedge_timeout:g} s"),
        ("sleep", f"{settings.sleep:g} s"),
        ("journal", str(settings.journal)),
        ("log dir", str(settings.log_dir)),
        ("rebalance", "yes" if settings.rebalance else "no"),
    ]
    secrets = {
        "BACKPACK_PUBLIC_KEY": settings.backpack_public_key,
        "BACKPACK_SECRET_KEY": settings.backpack_secret_key,
        "LIGHTER_API_PRIVATE_KEY": settings.lighter_private_key,
    }
    rows += [(name, "set" if value is not None else "missing") for name, value in secrets.items()]
    rows += [
        ("LIGHTER_ACCOUNT_INDEX", _opt(settings.lighter_account_index)),
        ("LIGHTER_API_KEY_INDEX", _opt(settings.lighter_api_key_index)),
        ("BACKPACK_API_URL", _url(settings.backpack_api_url, "BACKPACK_API_URL")),
        ("BACKPACK_WS_URL", _url(settings.backpack_ws_url, "BACKPACK_WS_URL")),
        ("LIGHTER_API_URL", _url(settings.lighter_api_url, "LIGHTER_API_URL")),
        ("LIGHTER_WS_URL", _url(settings.lighter_ws_url, "LIGHTER_WS_URL")),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _opt(value: int | None) -> str:
    return "missing" if value is None else str(value)


def _url(value: str, name: str) -> str:
    return value if value != DEFAULT_URLS[name] else f"{value} (default)"


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    """Quote post-only maker orders on Backpack perps and hedge every fill on Lighter."""
    if version:
        from importlib.metadata import version as package_version

        out.print(f"hedgebot {package_version('hedgebot')}")
        raise typer.Exit(EXIT_OK)


@app.command()
@cli_errors
def check(
    ticker: TickerOpt = "BTC",
    size: SizeOpt = None,
    max_position: MaxPositionOpt = None,
    iterations: IterationsOpt = "1",
    direction: DirectionOpt = "buy",
    fill_timeout: FillTimeoutOpt = "30",
    requote_ticks: RequoteTicksOpt = "5",
    maker_ticks: MakerTicksOpt = "1",
    max_slippage_bps: SlippageOpt = "20",
    hedge_timeout: HedgeTimeoutOpt = "5",
    sleep: SleepOpt = "1",
    journal: JournalOpt = None,
    log_dir: LogDirOpt = "logs",
    env_file: EnvFileOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check for a paper run: no keys needed.")
    ] = False,
    connect: Annotated[
        bool,
        typer.Option(
            "--connect/--no-connect",
            help="Also connect to both venues and show market rules, collateral, position and "
            "open orders.",
        ),
    ] = True,
) -> None:
    """Validate settings, connect to both venues and show what a run would do. Sends no order."""
    flags = flags_from(locals())
    mode = Mode.DRY_RUN if dry_run else Mode.LIVE
    settings = resolve_settings(flags, mode=mode, env_file=env_file)
    out.print(settings_table(settings))
    out.print(f"[bold]Plan:[/] {plan_text(settings)}")
    out.print("Settings are valid.")
    if not connect:
        return
    import asyncio

    from hedge.app import describe_venues

    try:
        summaries = asyncio.run(describe_venues(settings))
    except VenueError as exc:
        err.print(f"[bold red]error:[/] venue check failed: {exc}", soft_wrap=True)
        bad_credentials = exc.status in (400, 401, 403)
        raise typer.Exit(EXIT_USAGE if bad_credentials else EXIT_ERROR) from None
    for summary in summaries:
        table = Table(title=f"{summary.get('venue', '?')}: connected", show_header=False)
        table.add_column("what")
        table.add_column("value")
        for key, value in summary.items():
            if key == "venue":
                continue
            if isinstance(value, list):
                value = "; ".join(str(item) for item in value) or "none"
            table.add_row(key.replace("_", " "), str(value))
        out.print(table)
    out.print("Both venues answered; nothing was sent.")


PlainOpt = Annotated[
    bool,
    typer.Option(
        "--plain",
        help="One log line per event instead of the live dashboard (automatic when stdout is "
        "not a terminal).",
    ),
]


def print_summary(summary: dict[str, object], journal: Path, result_reason: str) -> None:
    latency = summary["hedge_latency_ms"]
    assert isinstance(latency, dict)
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
        ("edge", f"{summary['edge_bps']} bps"),
        ("fees", f"{summary['fees_quote']} USDC"),
        ("realized PnL", f"{summary['pnl_quote']} USDC"),
        ("halts", summary["halts"]),
        ("journal", str(journal)),
    ):
        table.add_row(label, str(value))
    out.print(table)
    out.print(
        f"net delta {summary['net_delta']} | double hedges {summary['double_hedges']} | "
        f"exit: {result_reason}",
        soft_wrap=True,
    )


def execute(settings: Settings, *, plain: bool, cluster_factory: object | None = None) -> int:
    """Run the bot (and, for the demo, the simulated venues first); returns the exit code."""
    import asyncio

    from hedge.app import run_bot
    from hedge.logsetup import setup_logging

    plain = plain or not out.is_terminal
    log_path = setup_logging(
        settings.log_dir, name=f"{settings.ticker}-{settings.mode.value}", console=plain
    )
    out.print(f"log file: {log_path}")

    async def main() -> int:
        from hedge.dashboard import Dashboard

        cluster = None
        run_settings = settings
        if cluster_factory is not None:
            cluster = cluster_factory()  # type: ignore[operator]
            await cluster.start()
            run_settings = with_endpoints(settings, cluster.env())
        dashboard = None if plain else Dashboard(out)
        if dashboard is not None and cluster is not None:
            dashboard.faults_seen = lambda: dict(cluster.fault_plan.fired)
        try:
            bot = await run_bot(
                run_settings,
                status=None if dashboard is None else dashboard.status,
                on_started=None if dashboard is None else dashboard.attach,
            )
        finally:
            if dashboard is not None:
                await dashboard.stop()
            if cluster is not None:
                venue_truth = cluster.bot_positions(run_settings.ticker)
                await cluster.stop()
        print_summary(bot.summary, bot.journal_path, bot.result.reason)
        if cluster is not None:
            out.print(f"simulated venues' own records: {venue_truth}", soft_wrap=True)
        return bot.result.exit_code

    return asyncio.run(main())


SeedOpt = Annotated[
    str, typer.Option("--seed", metavar="N", help="Seed of the simulated market and its faults.")
]
FaultsOpt = Annotated[
    str,
    typer.Option(
        "--faults",
        metavar="none|light|chaos",
        help="Fault plan of the simulated venues: dropped sockets, 429/5xx bursts, duplicated "
        "and reordered events, thin books, invalid nonces...",
    ),
]


LighterTierOpt = Annotated[
    str,
    typer.Option(
        "--lighter-tier",
        metavar="standard|premium|unlimited",
        help="Account tier of the simulated Lighter: standard (the venue's default: taker orders "
        "executed 300 ms after acceptance, 60 requests a minute), premium (200 ms, 24,000 "
        "weighted requests, fees) or unlimited (no delays, no limits: not a real venue).",
    ),
]


def _sim_options(
    ticker: str, seed: str, faults: str, lighter_tier: str = "standard"
) -> tuple[str, int, str]:
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


@app.command()
@cli_errors
def sim(
    ticker: TickerOpt = "BTC",
    seed: SeedOpt = "0",
    faults: FaultsOpt = "none",
    write_env: Annotated[
        Path,
        typer.Option(
            "--write-env",
            metavar="PATH",
            help="Write the venues' URLs and generated keys here, for `run --env-file PATH`.",
        ),
    ] = Path("logs/sim.env"),
    backpack_port: Annotated[
        int, typer.Option("--backpack-port", metavar="PORT", help="0 = any free port.")
    ] = 0,
    lighter_port: Annotated[
        int, typer.Option("--lighter-port", metavar="PORT", help="0 = any free port.")
    ] = 0,
    fill_rate: Annotated[
        float,
        typer.Option(
            "--fill-rate",
            metavar="RATE",
            help="How often background flow fills resting orders: 1 = typically within seconds, "
            "0 = never by itself (fill them with POST /_sim/trade_through).",
        ),
    ] = 1.0,
    lighter_tier: LighterTierOpt = "standard",
    backpack_rate_limit: Annotated[
        int,
        typer.Option(
            "--backpack-rate-limit",
            metavar="N",
            help="Requests a rolling minute per Backpack API key (0 = unlimited).",
        ),
    ] = 2000,
    history_lag_ms: Annotated[
        int,
        typer.Option(
            "--history-lag-ms",
            metavar="MS",
            help="How far Backpack's history endpoints trail its matching engine.",
        ),
    ] = 500,
) -> None:
    """Run the simulated Backpack and Lighter venues on loopback until Ctrl-C."""
    ticker, seed_value, faults = _sim_options(ticker, seed, faults, lighter_tier)
    if backpack_rate_limit < 0:
        raise ConfigError(f"--backpack-rate-limit {backpack_rate_limit}: expected 0 or more")
    if not 0 <= history_lag_ms <= 60_000:
        raise ConfigError(f"--history-lag-ms {history_lag_ms}: expected 0 to 60000")
    if not 0 <= fill_rate <= 100:
        raise ConfigError(f"--fill-rate {fill_rate}: expected a number from 0 to 100")
    import asyncio
    import signal

    from exchanges.sim.runner import SimCluster

    async def serve() -> None:
        cluster = SimCluster(
            seed=seed_value,
            faults=faults,
            fill_rate=fill_rate,
            backpack_port=backpack_port,
            lighter_port=lighter_port,
            lighter_tier=lighter_tier,
            backpack_rate_limit=backpack_rate_limit or None,
            backpack_history_lag_s=history_lag_ms / 1000,
        )
        await cluster.start()
        cluster.write_env(write_env)
        spec = cluster.market.tickers[ticker]
        out.print(f"Backpack  REST {cluster.backpack.api_url}  WS {cluster.backpack.ws_url}")
        out.print(f"Lighter   REST {cluster.lighter.api_url}  WS {cluster.lighter.ws_url}")
        out.print(
            f"Markets   {spec.backpack.symbol} / Lighter {spec.lighter.symbol} "
            f"(market {spec.lighter.market_id}); seed {seed_value}; faults {faults}; "
            f"Lighter tier {lighter_tier}"
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

    asyncio.run(serve())


@app.command()
@cli_errors
def run(
    ticker: TickerOpt = "BTC",
    size: SizeOpt = None,
    max_position: MaxPositionOpt = None,
    iterations: IterationsOpt = "1",
    direction: DirectionOpt = "buy",
    fill_timeout: FillTimeoutOpt = "30",
    requote_ticks: RequoteTicksOpt = "5",
    maker_ticks: MakerTicksOpt = "1",
    max_slippage_bps: SlippageOpt = "20",
    hedge_timeout: HedgeTimeoutOpt = "5",
    sleep: SleepOpt = "1",
    journal: JournalOpt = None,
    log_dir: LogDirOpt = "logs",
    env_file: EnvFileOpt = None,
    rebalance: RebalanceOpt = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Paper trading on real public market data: no keys, no orders sent.",
        ),
    ] = False,
    plain: PlainOpt = False,
) -> None:
    """Trade: quote post-only on Backpack, hedge every fill on Lighter."""
    flags = flags_from(locals())
    mode = Mode.DRY_RUN if dry_run else Mode.LIVE
    settings = resolve_settings(flags, mode=mode, env_file=env_file)
    from hedge.app import unfinished_elsewhere

    unfinished = unfinished_elsewhere(settings.journal)
    if unfinished is not None:
        err.print(
            f"note: {unfinished} has an unfinished run; to resume its state use "
            f"--journal {unfinished}",
            soft_wrap=True,
        )
    raise typer.Exit(execute(settings, plain=plain))


@app.command()
@cli_errors
def demo(
    ticker: TickerOpt = "BTC",
    size: SizeOpt = None,
    max_position: MaxPositionOpt = None,
    iterations: IterationsOpt = "3",
    direction: DirectionOpt = "alternate",
    fill_timeout: FillTimeoutOpt = "10",
    requote_ticks: RequoteTicksOpt = "5",
    maker_ticks: MakerTicksOpt = "1",
    max_slippage_bps: SlippageOpt = "20",
    hedge_timeout: HedgeTimeoutOpt = "5",
    sleep: SleepOpt = "0.5",
    journal: JournalOpt = None,
    log_dir: LogDirOpt = "logs",
    faults: FaultsOpt = "none",
    seed: SeedOpt = "0",
    lighter_tier: LighterTierOpt = "standard",
    plain: PlainOpt = False,
) -> None:
    """Offline demo: simulated Backpack and Lighter on loopback, the real bot against them."""
    sim_ticker, seed_value, faults = _sim_options(ticker, seed, faults, lighter_tier)
    from datetime import UTC, datetime

    from exchanges.sim.market import DEFAULT_TICKERS
    from exchanges.sim.runner import SimCluster

    spec = DEFAULT_TICKERS[sim_ticker]
    default_size = max(spec.backpack.min_qty, spec.lighter.min_qty) * 10
    stamp = f"{datetime.now(UTC):%Y%m%d-%H%M%S}"
    flags = flags_from(
        locals(),
        ticker=sim_ticker,
        size=size or str(default_size),
        journal=journal or str(Path(log_dir) / f"demo-{sim_ticker}-{stamp}.sqlite"),
    )
    settings = load_settings(flags, mode=Mode.DEMO, env={})

    def cluster_factory() -> SimCluster:
        return SimCluster(seed=seed_value, faults=faults, lighter_tier=lighter_tier)

    out.print(
        f"demo: simulated venues on loopback (seed {seed_value}, faults {faults}, "
        f"Lighter tier {lighter_tier}); "
        f"{settings.iterations} iteration(s) of {settings.size} {settings.ticker}"
    )
    raise typer.Exit(execute(settings, plain=plain, cluster_factory=cluster_factory))


def _account_settings(ticker: str, env_file: Path | None) -> Settings:
    """Settings for commands that only read or close the account (no trading flags needed)."""
    flags = TradingFlags(ticker=ticker, size="1")
    return resolve_settings(flags, mode=Mode.LIVE, env_file=env_file)


@app.command()
@cli_errors
def status(
    ticker: TickerOpt = "BTC",
    env_file: EnvFileOpt = None,
    journal: JournalOpt = None,
) -> None:
    """Positions, open orders and collateral on both venues, the net, and the journal's view."""
    import asyncio

    from hedge.app import build_venues
    from hedge.journal import Journal

    settings = _account_settings(ticker, env_file)
    journal_path = Path(journal) if journal else _latest_journal(Path("logs"), settings.ticker)

    async def main() -> None:
        maker, hedge = build_venues(settings)
        try:
            await asyncio.gather(maker.connect(), hedge.connect())
            table = Table(title=f"{settings.ticker} account status")
            for column in ("venue", "position", "open orders", "equity", "available"):
                table.add_column(column)
            positions = {}
            for venue in (maker, hedge):
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
            if journal_path is not None and journal_path.exists():
                book = Journal(journal_path)
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
            else:
                out.print("no journal found to compare with")
        finally:
            await asyncio.gather(maker.close(), hedge.close(), return_exceptions=True)

    asyncio.run(main())


@app.command()
@cli_errors
def flatten(
    ticker: TickerOpt = "BTC",
    env_file: EnvFileOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    max_slippage_bps: SlippageOpt = "50",
) -> None:
    """Cancel open orders on both venues and close both positions with IOC orders."""
    import asyncio

    from hedge.app import build_venues
    from hedge.flatten import flatten_account

    settings = _account_settings(ticker, env_file)
    try:
        slippage = Decimal(max_slippage_bps)
    except ArithmeticError:
        raise ConfigError(f"--max-slippage-bps {max_slippage_bps!r}: expected a number") from None
    if not yes and not typer.confirm(
        f"Cancel all {settings.ticker} orders and close both positions at market?"
    ):
        out.print("nothing done")
        raise typer.Exit(EXIT_OK)

    async def main() -> int:
        maker, hedge = build_venues(settings)
        try:
            await asyncio.gather(maker.connect(), hedge.connect())
            actions, remaining = await flatten_account((maker, hedge), slippage_bps=slippage)
        finally:
            await asyncio.gather(maker.close(), hedge.close(), return_exceptions=True)
        for line in actions:
            out.print(line)
        if any(remaining.values()):
            err.print(f"still open: {remaining}")
            return EXIT_HALTED
        out.print("both venues flat, no open orders")
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


def _latest_journal(folder: Path, ticker: str | None = None) -> Path | None:
    pattern = f"*{ticker}*.sqlite" if ticker else "*.sqlite"
    candidates = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


@app.command()
@cli_errors
def report(
    journal: JournalOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object with stable keys (see README).")
    ] = False,
) -> None:
    """Summarize a journal: fills, volume, net delta, hedge latency, fees, PnL, halts."""
    import json

    from hedge.journal import Journal
    from hedge.report import summarize

    path = Path(journal) if journal else _latest_journal(Path("logs"))
    if path is None or not path.exists():
        raise ConfigError(
            f"--journal {journal or 'logs/*.sqlite'}: no journal found (run the bot first, or "
            "name one with --journal)"
        )
    book = Journal(path)
    try:
        summary = summarize(book)
    finally:
        book.close()
    if as_json:
        out.file.write(json.dumps(summary, sort_keys=True) + "\n")
        return
    reasons = summary.get("halt_reasons") or []
    print_summary(summary, path, "; ".join(str(r) for r in reasons) or "no halts")


if __name__ == "__main__":
    app()

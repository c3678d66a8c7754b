"""hedgebot: maker on Backpack perps, every fill hedged at once on Lighter.

The command-line entry point (`python runbot.py ...` or the `hedgebot` console script): the
Typer commands, their flags and the exit codes, nothing else. Each command hands its flags to
one function of hedge/ops.py (or hedge/launch.py: run, demo), which does the work. A bad flag
or setting is one line naming it and exit code 2; an unexpected error is one line plus the log
file path and exit code 1 — never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.markup import escape

from exchanges.base import ConfigError, VenueError
from hedge import launch, ops
from hedge.cli_options import (
    BackpackPortOpt,
    CheckDryRunOpt,
    ConfigOpt,
    ConnectOpt,
    DemoJournalOpt,
    DirectionOpt,
    DryRunOpt,
    EnvFileOpt,
    ExternalOpt,
    FaultsOpt,
    FillRateOpt,
    FillTimeoutOpt,
    FitYesOpt,
    HedgeTimeoutOpt,
    HistoryLagOpt,
    IterationsOpt,
    JournalOpt,
    JsonOpt,
    LighterPortOpt,
    LighterTierOpt,
    LogDirOpt,
    MakerTicksOpt,
    MarketOpt,
    MaxNetOpt,
    MaxPositionOpt,
    MetricsPortOpt,
    MinEdgeOpt,
    NotifyOpt,
    NotifySummaryOpt,
    OutageOpt,
    PlainOpt,
    QuoteModeOpt,
    RateLimitOpt,
    RebalanceOpt,
    ReportJournalOpt,
    ReportTickerOpt,
    RequoteTicksOpt,
    SeedOpt,
    SizeOpt,
    SleepOpt,
    SlippageOpt,
    TickerOpt,
    WriteEnvOpt,
    YesOpt,
)
from hedge.config import DEFAULT_MIN_EDGE_BPS, Mode, parse_slippage
from hedge.logsetup import REDACTOR
from hedge.ops import err, out, resolve_settings
from hedge.pairs import tickers_of
from hedge.profile import sources_table

__all__ = ["app", "resolve_settings"]  # resolve_settings: what `run --env-file` does (bench/)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_HALTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    help="Quote post-only maker orders on Backpack perps and hedge every fill at once on "
    "Lighter, so the account stays delta-neutral while it earns maker volume.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

P = ParamSpec("P")
R = TypeVar("R")


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn project errors into one clear line and the documented exit code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            for line in str(exc).splitlines():  # `[run]` in a line is text, not markup
                err.print(f"[bold red]error:[/] {escape(line)}", markup=True, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except VenueError as exc:  # a venue unreachable or failing: not a bug, no crash log
            err.print(f"[bold red]error:[/] {REDACTOR.redact(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            path = ops.write_crash_log()
            err.print(
                f"[bold red]unexpected error:[/] {type(exc).__name__}: {REDACTOR.redact(str(exc))}"
                f" (details in {path})",
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def _mode(dry_run: bool) -> Mode:
    return Mode.DRY_RUN if dry_run else Mode.LIVE


def _print_version(value: bool) -> None:
    """`--version`: handled while the flags are parsed, before a command is required."""
    if value:
        from importlib.metadata import version as package_version

        out.print(f"hedgebot {package_version('hedgebot')}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """Quote post-only maker orders on Backpack perps and hedge every fill on Lighter."""


@app.command()
@cli_errors
def check(
    ctx: typer.Context,
    ticker: TickerOpt = "BTC",
    size: SizeOpt = None,
    max_position: MaxPositionOpt = None,
    iterations: IterationsOpt = "1",
    direction: DirectionOpt = "buy",
    fill_timeout: FillTimeoutOpt = "30",
    requote_ticks: RequoteTicksOpt = "5",
    maker_ticks: MakerTicksOpt = "1",
    quote_mode: QuoteModeOpt = "edge",
    min_edge_bps: MinEdgeOpt = DEFAULT_MIN_EDGE_BPS,
    max_slippage_bps: SlippageOpt = "20",
    hedge_timeout: HedgeTimeoutOpt = "5",
    outage_window: OutageOpt = "60",
    sleep: SleepOpt = "1",
    journal: JournalOpt = None,
    log_dir: LogDirOpt = "logs",
    env_file: EnvFileOpt = None,
    dry_run: CheckDryRunOpt = False,
    connect: ConnectOpt = True,
    on_external_change: ExternalOpt = "halt",
    config: ConfigOpt = None,
) -> None:
    """Validate settings, connect to both venues and show what a run would do. Sends no order."""
    resolved, _, _ = launch.chosen(ctx, locals())
    pairs = resolved.each(lambda f: resolve_settings(f, mode=_mode(dry_run), env_file=env_file))
    for flags, settings in zip(resolved.flags, pairs, strict=True):
        ops.check(settings, connect=connect)
        if resolved.profile is not None:  # where each value came from
            out.print(sources_table(flags, resolved.sources[settings.ticker]))


@app.command()
@cli_errors
def sim(
    ticker: TickerOpt = "BTC",
    seed: SeedOpt = "0",
    faults: FaultsOpt = "none",
    write_env: WriteEnvOpt = Path("logs/sim.env"),
    backpack_port: BackpackPortOpt = "0",
    lighter_port: LighterPortOpt = "0",
    fill_rate: FillRateOpt = "1",
    market: MarketOpt = None,
    lighter_tier: LighterTierOpt = "standard",
    backpack_rate_limit: RateLimitOpt = "2000",
    history_lag_ms: HistoryLagOpt = "500",
) -> None:
    """Run the simulated Backpack and Lighter venues on loopback until Ctrl-C."""
    ops.serve_sim(**locals())


@app.command()
@cli_errors
def run(
    ctx: typer.Context,
    ticker: TickerOpt = "BTC",
    size: SizeOpt = None,
    max_position: MaxPositionOpt = None,
    iterations: IterationsOpt = "1",
    direction: DirectionOpt = "buy",
    fill_timeout: FillTimeoutOpt = "30",
    requote_ticks: RequoteTicksOpt = "5",
    maker_ticks: MakerTicksOpt = "1",
    quote_mode: QuoteModeOpt = "edge",
    min_edge_bps: MinEdgeOpt = DEFAULT_MIN_EDGE_BPS,
    max_slippage_bps: SlippageOpt = "20",
    hedge_timeout: HedgeTimeoutOpt = "5",
    outage_window: OutageOpt = "60",
    sleep: SleepOpt = "1",
    journal: JournalOpt = None,
    log_dir: LogDirOpt = "logs",
    env_file: EnvFileOpt = None,
    rebalance: RebalanceOpt = False,
    on_external_change: ExternalOpt = "halt",
    dry_run: DryRunOpt = False,
    plain: PlainOpt = False,
    max_net_usd: MaxNetOpt = None,
    yes: FitYesOpt = False,
    notify: NotifyOpt = None,
    notify_summary: NotifySummaryOpt = None,
    metrics_port: MetricsPortOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Trade: quote post-only on Backpack, hedge every fill on Lighter (--ticker BTC,ETH
    trades several pairs in one process on the one account)."""
    resolved, cap, outputs = launch.chosen(ctx, locals())
    pairs = resolved.each(lambda f: resolve_settings(f, mode=_mode(dry_run), env_file=env_file))
    raise typer.Exit(launch.run(pairs, plain=plain, max_net_usd=cap, yes=yes, outputs=outputs))


@app.command()
@cli_errors
def demo(
    ctx: typer.Context,
    ticker: TickerOpt = "BTC",
    size: SizeOpt = None,
    max_position: MaxPositionOpt = None,
    iterations: IterationsOpt = "3",
    direction: DirectionOpt = "alternate",
    fill_timeout: FillTimeoutOpt = "10",
    requote_ticks: RequoteTicksOpt = "5",
    maker_ticks: MakerTicksOpt = "1",
    quote_mode: QuoteModeOpt = "bbo",
    min_edge_bps: MinEdgeOpt = DEFAULT_MIN_EDGE_BPS,
    max_slippage_bps: SlippageOpt = "20",
    hedge_timeout: HedgeTimeoutOpt = "5",
    outage_window: OutageOpt = "60",
    sleep: SleepOpt = "0.5",
    journal: DemoJournalOpt = None,
    log_dir: LogDirOpt = "logs",
    faults: FaultsOpt = "none",
    seed: SeedOpt = "0",
    lighter_tier: LighterTierOpt = "standard",
    market: MarketOpt = None,
    on_external_change: ExternalOpt = "halt",
    plain: PlainOpt = False,
    max_net_usd: MaxNetOpt = None,
    yes: FitYesOpt = False,
    notify: NotifyOpt = None,
    notify_summary: NotifySummaryOpt = None,
    metrics_port: MetricsPortOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Offline demo: simulated Backpack and Lighter on loopback, the real bot against them."""
    resolved, cap, outputs = launch.chosen(ctx, locals())
    with resolved.blamed():
        code = launch.demo(
            resolved.flags,
            market=market,
            seed=seed,
            faults=faults,
            lighter_tier=lighter_tier,
            plain=plain,
            max_net_usd=cap,
            yes=yes,
            outputs=outputs,
        )
    raise typer.Exit(code)


@app.command()
@cli_errors
def status(
    ticker: TickerOpt = "BTC",
    env_file: EnvFileOpt = None,
    journal: JournalOpt = None,
) -> None:
    """Positions, open orders and collateral on both venues, the net, and the journal's view."""
    ops.status([ops.account_settings(t, env_file) for t in tickers_of(ticker)], journal)


@app.command()
@cli_errors
def flatten(
    ticker: TickerOpt = "BTC",
    env_file: EnvFileOpt = None,
    yes: YesOpt = False,
    max_slippage_bps: SlippageOpt = "50",
) -> None:
    """Cancel open orders on both venues and close both positions with IOC orders."""
    slippage = parse_slippage(max_slippage_bps)  # the flag first, then the environment
    pairs = [ops.account_settings(t, env_file) for t in tickers_of(ticker)]
    names = ", ".join(s.ticker for s in pairs)
    if not yes and not typer.confirm(
        f"Cancel all {names} orders and close both positions of each at market?"
    ):
        out.print("nothing done")
        raise typer.Exit(EXIT_OK)
    flat = ops.flatten(pairs, slippage_bps=slippage)
    raise typer.Exit(EXIT_OK if flat else EXIT_HALTED)


@app.command()
@cli_errors
def report(
    journal: ReportJournalOpt = None,
    as_json: JsonOpt = False,
    ticker: ReportTickerOpt = None,
) -> None:
    """Summarize journals: fills, volume, net delta, hedge latency, fees, PnL, halts."""
    ops.report(journal, as_json=as_json, tickers=tickers_of(ticker) if ticker else None)


if __name__ == "__main__":
    app()

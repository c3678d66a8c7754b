"""hedgebot: maker on Backpack perps, every fill hedged at once on Lighter.

The command-line entry point (`python runbot.py ...` or the `hedgebot` console script): the
Typer commands, their flags and the exit codes, nothing else. Each command hands its flags to
one function of hedge/ops.py, which does the work. A bad flag or setting is one line naming it
and exit code 2; an unexpected error is one line plus the log file path and exit code 1 —
never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from exchanges.base import ConfigError, VenueError
from hedge import ops
from hedge.config import DEFAULT_MIN_EDGE_BPS, Mode, parse_slippage
from hedge.logsetup import REDACTOR
from hedge.ops import err, flags_from, out, resolve_settings

__all__ = ["app", "resolve_settings"]  # resolve_settings: what `run --env-file` does (bench/)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_HALTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    help="Quote post-only maker orders on Backpack perps and hedge every fill at once on "
    "Lighter, so the account stays delta-neutral while it earns maker volume.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# --------------------------------------------------------------------------------------------
# Options shared by run / demo / check. Numbers are taken as text and validated by
# hedge/config.py so that every problem gets the same one-line message.
# --------------------------------------------------------------------------------------------

Opt = typer.Option

_TICKER = "Base asset of the pair: BTC trades BTC_USDC_PERP on Backpack and BTC on Lighter."
TickerOpt = Annotated[str, Opt("--ticker", "-t", metavar="TICKER", help=_TICKER)]
_SIZE = "Size of each maker order, in base units (e.g. 0.01 BTC)."
SizeOpt = Annotated[str | None, Opt("--size", metavar="QTY", help=_SIZE)]
_MAX_POSITION = "Position an iteration builds before closing it, in base units. \\[default: --size]"
MaxPositionOpt = Annotated[str | None, Opt("--max-position", metavar="QTY", help=_MAX_POSITION)]
_ITERATIONS = "Iterations: each opens to --max-position and closes back to flat."
IterationsOpt = Annotated[str, Opt("--iterations", "-n", metavar="N", help=_ITERATIONS)]
_DIRECTION = "Side of the opening maker orders on Backpack; alternate flips every iteration."
DirectionOpt = Annotated[str, Opt("--direction", metavar="buy|sell|alternate", help=_DIRECTION)]
_FILL_TIMEOUT = "Seconds a maker order may rest unfilled before it is cancelled and re-quoted."
FillTimeoutOpt = Annotated[str, Opt("--fill-timeout", metavar="SECONDS", help=_FILL_TIMEOUT)]
_REQUOTE = "Re-quote at once when the book top moves more than this many ticks away."
RequoteTicksOpt = Annotated[str, Opt("--requote-ticks", metavar="TICKS", help=_REQUOTE)]
_MAKER_TICKS = "Maker price distance inside the opposite best: buy at best ask - TICKS x tick."
MakerTicksOpt = Annotated[str, Opt("--maker-ticks", metavar="TICKS", help=_MAKER_TICKS)]
_QUOTE_MODE = (
    "bbo: the Backpack book only; edge: also bounded by Lighter's book, fees and min edge."
)
QuoteModeOpt = Annotated[str, Opt("--quote-mode", metavar="bbo|edge", help=_QUOTE_MODE)]
_MIN_EDGE = (
    "Edge mode: what each fill must earn after fees, in bps; negative = the most you accept to pay."
)
MinEdgeOpt = Annotated[str, Opt("--min-edge-bps", metavar="BPS", help=_MIN_EDGE)]
_SLIPPAGE = "Hedge worst price = Lighter top +/- this many basis points (1 bp = 0.01 %)."
SlippageOpt = Annotated[str, Opt("--max-slippage-bps", metavar="BPS", help=_SLIPPAGE)]
_HEDGE_TIMEOUT = (
    "Seconds an unhedged amount may wait before the escalation ladder (wider slippage, then halt)."
)
HedgeTimeoutOpt = Annotated[str, Opt("--hedge-timeout", metavar="SECONDS", help=_HEDGE_TIMEOUT)]
_OUTAGE = "How long venue errors (5xx, 429, timeouts) are retried before they halt a run."
OutageOpt = Annotated[str, Opt("--outage-window", metavar="SECONDS", help=_OUTAGE)]
_SLEEP = "Pause between iterations, in seconds."
SleepOpt = Annotated[str, Opt("--sleep", metavar="SECONDS", help=_SLEEP)]
_JOURNAL = "SQLite journal of orders, fills and hedges. \\[default: logs/<TICKER>-<date>.sqlite]"
JournalOpt = Annotated[str | None, Opt("--journal", metavar="PATH", help=_JOURNAL)]
_LOG_DIR = "Folder for run logs, journals and CSV logs."
LogDirOpt = Annotated[str, Opt("--log-dir", metavar="DIR", help=_LOG_DIR)]
_ENV_FILE = (
    "File of KEY=value settings (keys, URLs). Values in it override the environment. "
    "\\[default: .env if present]"
)
EnvFileOpt = Annotated[Path | None, Opt("--env-file", metavar="PATH", help=_ENV_FILE)]
_REBALANCE = "On start, close an unbalanced net on Lighter instead of refusing to quote."
RebalanceOpt = Annotated[bool, Opt("--rebalance", help=_REBALANCE)]
_EXTERNAL = (
    "A trade on the account not made by the bot: halt (stop, own legs balanced, exit 3) or "
    "ignore (keep trading around it). Never hedged either way."
)
ExternalOpt = Annotated[str, Opt("--on-external-change", metavar="halt|ignore", help=_EXTERNAL)]
_PLAIN = (
    "One log line per event instead of the live dashboard (automatic when stdout is not a "
    "terminal)."
)
PlainOpt = Annotated[bool, Opt("--plain", help=_PLAIN)]
_SEED = "Seed of the simulated market and its faults."
SeedOpt = Annotated[str, Opt("--seed", metavar="N", help=_SEED)]
_FAULTS = (
    "Fault plan of the simulated venues: dropped sockets, 429/5xx bursts, duplicated and "
    "reordered events, thin books, invalid nonces..."
)
FaultsOpt = Annotated[str, Opt("--faults", metavar="none|light|chaos", help=_FAULTS)]
_TIER = (
    "Account tier of the simulated Lighter: standard (the venue's default: taker orders executed "
    "300 ms after acceptance, 60 requests a minute), premium (200 ms, 24,000 weighted requests, "
    "fees) or unlimited (no delays, no limits: not a real venue)."
)
LighterTierOpt = Annotated[
    str, Opt("--lighter-tier", metavar="standard|premium|unlimited", help=_TIER)
]
# check / run
_CHECK_DRY_RUN = "Check for a paper run: no keys needed."
CheckDryRunOpt = Annotated[bool, Opt("--dry-run", help=_CHECK_DRY_RUN)]
_CONNECT = (
    "Also connect to both venues and show market rules, collateral, position and open orders."
)
ConnectOpt = Annotated[bool, Opt("--connect/--no-connect", help=_CONNECT)]
_DRY_RUN = "Paper trading on real public market data: no keys, no orders sent."
DryRunOpt = Annotated[bool, Opt("--dry-run", help=_DRY_RUN)]
# sim
_WRITE_ENV = "Write the venues' URLs and generated keys here, for `run --env-file PATH`."
WriteEnvOpt = Annotated[Path, Opt("--write-env", metavar="PATH", help=_WRITE_ENV)]
BackpackPortOpt = Annotated[str, Opt("--backpack-port", metavar="PORT", help="0 = any free port.")]
LighterPortOpt = Annotated[str, Opt("--lighter-port", metavar="PORT", help="0 = any free port.")]
_FILL_RATE = (
    "How often background flow fills resting orders: 1 = typically within seconds, 0 = never by "
    "itself (fill them with POST /_sim/trade_through)."
)
FillRateOpt = Annotated[str, Opt("--fill-rate", metavar="RATE", help=_FILL_RATE)]
_MARKET = "A simulated market parameter NAME=VALUE, repeatable (README lists the names)."
MarketOpt = Annotated[list[str] | None, Opt("--market", metavar="NAME=VALUE", help=_MARKET)]
_RATE_LIMIT = "Requests a rolling minute per Backpack API key (0 = unlimited)."
RateLimitOpt = Annotated[str, Opt("--backpack-rate-limit", metavar="N", help=_RATE_LIMIT)]
_HISTORY_LAG = "How far Backpack's history endpoints trail its matching engine."
HistoryLagOpt = Annotated[str, Opt("--history-lag-ms", metavar="MS", help=_HISTORY_LAG)]
# flatten / report
YesOpt = Annotated[bool, Opt("--yes", "-y", help="Do not ask for confirmation.")]
JsonOpt = Annotated[bool, Opt("--json", help="One JSON object with stable keys (see README).")]

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
) -> None:
    """Validate settings, connect to both venues and show what a run would do. Sends no order."""
    settings = resolve_settings(flags_from(locals()), mode=_mode(dry_run), env_file=env_file)
    ops.check(settings, connect=connect)


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
) -> None:
    """Trade: quote post-only on Backpack, hedge every fill on Lighter."""
    settings = resolve_settings(flags_from(locals()), mode=_mode(dry_run), env_file=env_file)
    raise typer.Exit(ops.run(settings, plain=plain))


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
    quote_mode: QuoteModeOpt = "bbo",
    min_edge_bps: MinEdgeOpt = DEFAULT_MIN_EDGE_BPS,
    max_slippage_bps: SlippageOpt = "20",
    hedge_timeout: HedgeTimeoutOpt = "5",
    outage_window: OutageOpt = "60",
    sleep: SleepOpt = "0.5",
    journal: JournalOpt = None,
    log_dir: LogDirOpt = "logs",
    faults: FaultsOpt = "none",
    seed: SeedOpt = "0",
    lighter_tier: LighterTierOpt = "standard",
    market: MarketOpt = None,
    on_external_change: ExternalOpt = "halt",
    plain: PlainOpt = False,
) -> None:
    """Offline demo: simulated Backpack and Lighter on loopback, the real bot against them."""
    params = locals()
    code = ops.demo(params, seed=seed, faults=faults, lighter_tier=lighter_tier, plain=plain)
    raise typer.Exit(code)


@app.command()
@cli_errors
def status(
    ticker: TickerOpt = "BTC",
    env_file: EnvFileOpt = None,
    journal: JournalOpt = None,
) -> None:
    """Positions, open orders and collateral on both venues, the net, and the journal's view."""
    ops.status(ops.account_settings(ticker, env_file), journal)


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
    settings = ops.account_settings(ticker, env_file)
    if not yes and not typer.confirm(
        f"Cancel all {settings.ticker} orders and close both positions at market?"
    ):
        out.print("nothing done")
        raise typer.Exit(EXIT_OK)
    flat = ops.flatten(settings, slippage_bps=slippage)
    raise typer.Exit(EXIT_OK if flat else EXIT_HALTED)


@app.command()
@cli_errors
def report(
    journal: JournalOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Summarize a journal: fills, volume, net delta, hedge latency, fees, PnL, halts."""
    ops.report(journal, as_json=as_json)


if __name__ == "__main__":
    app()

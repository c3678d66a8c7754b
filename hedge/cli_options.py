"""The command-line flags of runbot.py: each an `Annotated` type with its flag names, metavar
and help text. Numbers are taken as text and validated by hedge/config.py so that every problem
gets the same one-line message."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Options shared by run / demo / check.
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
_JOURNAL = (
    "SQLite journal of orders, fills and hedges. \\[default: logs/<TICKER>-<mode>-<date>.sqlite]"
)
JournalOpt = Annotated[str | None, Opt("--journal", metavar="PATH", help=_JOURNAL)]
_DEMO_JOURNAL = (
    "SQLite journal of orders, fills and hedges. \\[default: <log-dir>/demo-<TICKER>-<time>.sqlite]"
)
DemoJournalOpt = Annotated[str | None, Opt("--journal", metavar="PATH", help=_DEMO_JOURNAL)]
_LOG_DIR = "Folder for run logs, journals and CSV logs."
LogDirOpt = Annotated[str, Opt("--log-dir", metavar="DIR", help=_LOG_DIR)]
_ENV_FILE = (
    "File of KEY=value settings (keys, URLs). Values in it override the environment. "
    "\\[default: .env if present]"
)
EnvFileOpt = Annotated[Path | None, Opt("--env-file", metavar="PATH", help=_ENV_FILE)]
_REBALANCE = "On start, close an unbalanced net on Lighter instead of refusing to quote."
RebalanceOpt = Annotated[bool, Opt("--rebalance", help=_REBALANCE, metavar="")]
_EXTERNAL = (
    "A trade on the account not made by the bot: halt (stop, own legs balanced, exit 3) or "
    "ignore (keep trading around it). Never hedged either way."
)
ExternalOpt = Annotated[str, Opt("--on-external-change", metavar="halt|ignore", help=_EXTERNAL)]
_PLAIN = (
    "One log line per event instead of the live dashboard (automatic when stdout is not a "
    "terminal)."
)
PlainOpt = Annotated[bool, Opt("--plain", help=_PLAIN, metavar="")]
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
CheckDryRunOpt = Annotated[bool, Opt("--dry-run", help=_CHECK_DRY_RUN, metavar="")]
_CONNECT = (
    "Also connect to both venues and show market rules, collateral, position and open orders."
)
ConnectOpt = Annotated[bool, Opt("--connect/--no-connect", help=_CONNECT, metavar="")]
_DRY_RUN = "Paper trading on real public market data: no keys, no orders sent."
DryRunOpt = Annotated[bool, Opt("--dry-run", help=_DRY_RUN, metavar="")]
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
YesOpt = Annotated[bool, Opt("--yes", "-y", help="Do not ask for confirmation.", metavar="")]
JsonOpt = Annotated[
    bool, Opt("--json", help="One JSON object with stable keys (see README).", metavar="")
]
# several pairs (run / demo)
_MAX_NET = (
    "Account-level cap: the sum over pairs of unhedged quantity, in USD, may stay above this "
    "no longer than --hedge-timeout before every pair halts."
)
MaxNetOpt = Annotated[str | None, Opt("--max-net-usd", metavar="USD", help=_MAX_NET)]
_FIT_YES = (
    "Run even when the pairs' expected fills do not fit the account's request budget "
    "(throttled: hedges always first)."
)
FitYesOpt = Annotated[bool, Opt("--yes", "-y", help=_FIT_YES, metavar="")]
_REPORT_TICKER = (
    "Report the latest journal of each pair (BTC or BTC,ETH) under logs/, with account totals."
)
ReportTickerOpt = Annotated[
    str | None, Opt("--ticker", "-t", metavar="TICKERS", help=_REPORT_TICKER)
]
_REPORT_JOURNAL = (
    "Journal to report, repeatable; a folder stands for every journal in it (one row each, "
    "then totals). \\[default: the newest live journal under logs/]"
)
ReportJournalOpt = Annotated[
    list[str] | None, Opt("--journal", metavar="PATH", help=_REPORT_JOURNAL)
]
# what the operator gets besides the screen (run / demo)
_NOTIFY = (
    "Send alerts here (an apprise URL: tgram://, lark://, discord://, slack://, ntfy://, "
    "json://...): halts, unbalanced exits, external changes, reconnect and 429 storms. "
    "Repeatable; also HEDGEBOT_NOTIFY."
)
NotifyOpt = Annotated[list[str] | None, Opt("--notify", metavar="URL", help=_NOTIFY)]
_NOTIFY_SUMMARY = "With --notify: also a summary alert every this many minutes."
NotifySummaryOpt = Annotated[
    str | None, Opt("--notify-summary", metavar="MINUTES", help=_NOTIFY_SUMMARY)
]
_METRICS = "Serve Prometheus metrics on 127.0.0.1:PORT/metrics (per pair; README lists them)."
MetricsPortOpt = Annotated[str | None, Opt("--metrics-port", metavar="PORT", help=_METRICS)]
_CONFIG = "Trading settings (and pairs) from a TOML profile (README); flags override it."
ConfigOpt = Annotated[Path | None, Opt("--config", metavar="FILE.toml", help=_CONFIG)]

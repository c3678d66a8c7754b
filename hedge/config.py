"""Settings: one frozen object built from CLI flags, the environment and an env file.

Every problem is reported as one line naming the flag or variable and what is expected, all at
once, in a `ConfigError`. Secret values never appear in a message, a repr or a log line: they
are held in `Secret`, whose str/repr is masked.

Precedence: CLI flag > an explicitly given `--env-file` > the process environment > the
default `.env`. An explicit file wins over the environment so that `run --env-file sim.env`
can never be silently pointed at live endpoints by a stray exported variable.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation, localcontext
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from dotenv import dotenv_values

from exchanges.base import ConfigError, FeeRates, Market
from exchanges.lighter.constants import TIER_FEES
from hedge.external import ExternalPolicy
from hedge.quoting import EdgeTerms, QuoteMode, Quoter


class Mode(Enum):
    LIVE = "live"
    DRY_RUN = "dry_run"
    DEMO = "demo"
    CHECK = "check"

    @property
    def tag(self) -> str:
        """The mode in file names: `<PAIR>-<tag>-...` (live, dry, demo): files of one mode are
        never taken for another's."""
        return "dry" if self is Mode.DRY_RUN else self.value


class Direction(Enum):
    BUY = "buy"
    SELL = "sell"
    ALTERNATE = "alternate"


DEFAULT_URLS: dict[str, str] = {
    "BACKPACK_API_URL": "https://api.backpack.exchange/",
    "BACKPACK_WS_URL": "wss://ws.backpack.exchange",
    "LIGHTER_API_URL": "https://mainnet.zklighter.elliot.ai",
    "LIGHTER_WS_URL": "wss://mainnet.zklighter.elliot.ai/stream",
}

LIGHTER_TIERS = ("standard", "premium")

# Sane bounds of the trading flags: beyond them a value is a typo, not a strategy. The market's
# own limits (minimum, maximum, step, minimum notional) are checked against the venues at start.
MAX_QUANTITY = Decimal(10) ** 12
MAX_DECIMALS = 18
MAX_SLIPPAGE_BPS = Decimal(1000)
MAX_EDGE_BPS = Decimal(100)  # --min-edge-bps from -100 to 100: beyond, a typo
DEFAULT_MIN_EDGE_BPS = "-2"  # pay at most the Backpack maker fee: no basis on top
MAX_FEE_BPS = Decimal(100)
BACKPACK_MAKER_FEE_BPS = Decimal(2)  # Backpack futures, tier 1 (its VIP page)
MAX_COUNT = 1_000_000
FILL_TIMEOUT_S = (0.5, 86_400.0)  # below half a second a maker order never gets a chance
HEDGE_TIMEOUT_S = (1.0, 600.0)  # above ten minutes "bounded exposure" means nothing
SLEEP_S = (0.0, 86_400.0)
OUTAGE_WINDOW_S = (1.0, 3_600.0)  # how long a venue may fail before it counts as down
LIGHTER_ACCOUNT_INDEX_RANGE = (1, 2**63 - 1)  # lighter-sdk's signer refuses 0 and above int64
LIGHTER_API_KEY_INDEX_RANGE = (0, 254)
DEFAULT_BACKPACK_RATE_LIMIT = 2000  # reported by a connector citing Backpack's support

KEYS_HINT = (
    "live trading needs them in .env or the environment (see .env.example), or use --dry-run"
)
SECRET_VARS = ("BACKPACK_PUBLIC_KEY", "BACKPACK_SECRET_KEY", "LIGHTER_API_PRIVATE_KEY")
INDEX_VARS = ("LIGHTER_ACCOUNT_INDEX", "LIGHTER_API_KEY_INDEX")
# perp-dex-tools' names, accepted so its users can reuse their .env.
ENV_ALIASES: dict[str, str] = {"API_KEY_PRIVATE_KEY": "LIGHTER_API_PRIVATE_KEY"}
# lighter-sdk's create_api_key() returns "0x" + 80 hex digits (a 40-byte key).
LIGHTER_KEY_HEX_LEN = 80

_E = TypeVar("_E", bound=Enum)

_TICKER_RE = re.compile(r"^[A-Z0-9]{1,20}$")


class Secret:
    """A secret string that never shows itself in str(), repr() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    mode: Mode
    ticker: str
    size: Decimal
    max_position: Decimal
    iterations: int
    direction: Direction
    fill_timeout: float  # seconds a maker order may rest before it is cancelled and re-quoted
    requote_ticks: int  # re-quote when the top moved more than this many ticks away
    maker_ticks: int  # distance of the maker price inside the opposite best, in ticks
    quote_mode: QuoteMode  # bbo: the maker book alone; edge: also bounded by the hedge book
    min_edge_bps: Decimal  # edge mode: what a fill must earn after fees (negative: may cost)
    max_slippage_bps: Decimal  # hedge worst price = hedge top +/- this
    hedge_timeout: float  # seconds before an unhedged amount escalates
    sleep: float  # seconds between iterations
    journal: Path
    log_dir: Path
    rebalance: bool = False
    outage_window: float = 60.0  # seconds venue errors are retried before they halt a run
    on_external_change: ExternalPolicy = ExternalPolicy.HALT  # a trade not ours (G9)
    backpack_public_key: Secret | None = None
    backpack_secret_key: Secret | None = None
    lighter_private_key: Secret | None = None
    lighter_account_index: int | None = None
    lighter_api_key_index: int | None = None
    backpack_api_url: str = DEFAULT_URLS["BACKPACK_API_URL"]
    backpack_ws_url: str = DEFAULT_URLS["BACKPACK_WS_URL"]
    lighter_api_url: str = DEFAULT_URLS["LIGHTER_API_URL"]
    lighter_ws_url: str = DEFAULT_URLS["LIGHTER_WS_URL"]
    lighter_account_tier: str = "standard"  # the Lighter account's tier: its request budget
    backpack_rate_limit: int = DEFAULT_BACKPACK_RATE_LIMIT  # requests a minute per API key
    backpack_maker_fee: Decimal = BACKPACK_MAKER_FEE_BPS / 10_000  # fraction, for the bound
    notices: tuple[str, ...] = field(default=(), compare=False)
    flags: TradingFlags | None = field(default=None, compare=False, repr=False)

    @property
    def dry_run(self) -> bool:
        return self.mode is Mode.DRY_RUN

    @property
    def backpack_symbol(self) -> str:
        return f"{self.ticker}_USDC_PERP"

    @property
    def hedge_fees(self) -> FeeRates:
        """The Lighter account's fees, by its tier."""
        return TIER_FEES[self.lighter_account_tier]

    @property
    def edge_terms(self) -> EdgeTerms | None:
        """What the quoting bound needs (None in bbo mode)."""
        if self.quote_mode is QuoteMode.BBO:
            return None
        return EdgeTerms(self.backpack_maker_fee, self.hedge_fees.taker, self.min_edge_bps)

    def quoter(self, tick: Decimal) -> Quoter:
        """Where this run quotes on a maker market with this tick."""
        return Quoter(tick, self.maker_ticks, self.requote_ticks, self.edge_terms)

    def has_keys(self) -> bool:
        return None not in (
            self.backpack_public_key,
            self.backpack_secret_key,
            self.lighter_private_key,
            self.lighter_account_index,
            self.lighter_api_key_index,
        )


@dataclass(frozen=True)
class TradingFlags:
    """The raw trading flags as typed by the user (strings), validated by `load_settings`."""

    ticker: str = "BTC"
    size: str | None = None
    max_position: str | None = None
    iterations: str = "1"
    direction: str = "buy"
    fill_timeout: str = "30"
    requote_ticks: str = "5"
    maker_ticks: str = "1"
    quote_mode: str = "edge"
    min_edge_bps: str = DEFAULT_MIN_EDGE_BPS
    max_slippage_bps: str = "20"
    hedge_timeout: str = "5"
    outage_window: str = "60"
    sleep: str = "1"
    journal: str | None = None
    log_dir: str = "logs"
    rebalance: bool = False
    on_external_change: str = "halt"


def read_env(env_file: Path | None, *, explicit: bool) -> tuple[dict[str, str], list[str]]:
    """Merge the env file and the process environment (see module docstring for precedence).

    Returns the merged variables and notices (alias use). Raises ConfigError when an explicit
    file is missing or unreadable.
    """
    file_values: dict[str, str] = {}
    if env_file is not None:
        if env_file.is_file():
            try:
                loaded = dotenv_values(env_file)
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.__class__.__name__
                raise ConfigError(f"--env-file {env_file}: cannot be read ({reason})") from None
            file_values = {k: v for k, v in loaded.items() if v is not None}
        elif explicit:
            what = "is a folder, expected a file" if env_file.is_dir() else "no such file"
            raise ConfigError(f"--env-file {env_file}: {what}")
    process = dict(os.environ)
    merged = {**file_values, **process} if not explicit else {**process, **file_values}
    notices: list[str] = []
    for alias, name in ENV_ALIASES.items():
        if alias in merged and not merged.get(name):
            merged[name] = merged[alias]
            notices.append(f"note: using {alias} (perp-dex-tools name) as {name}")
    return merged, notices


def load_settings(
    flags: TradingFlags,
    *,
    mode: Mode,
    env_file: Path | None = None,
    env_file_explicit: bool = False,
    env: Mapping[str, str] | None = None,
    require_keys: bool | None = None,
    keys_hint: str = KEYS_HINT,
) -> Settings:
    """Validate everything and build Settings, or raise ConfigError with one line per problem.

    `env` replaces reading the environment (tests, demo). `require_keys` defaults to True for
    live runs only.
    """
    notices: list[str] = []
    if env is None:
        env_values, notices = read_env(env_file, explicit=env_file_explicit)
    else:
        env_values = dict(env)
    if require_keys is None:
        require_keys = mode is Mode.LIVE

    problems: list[str] = []
    trading = _trading_values(flags, problems)
    # Flags first: a mistyped flag is reported alone, before anything about the environment.
    if trading is None:
        raise ConfigError("\n".join(problems))
    account = _account_values(env_values, require_keys, problems, keys_hint)
    urls = _endpoint_values(env_values, problems)
    if problems:
        raise ConfigError("\n".join(problems))

    log_dir = Path(flags.log_dir)
    # One journal per pair, mode and day (the demo: per run); `<PAIR>-<mode>-<date>.sqlite`.
    when = (
        f"{datetime.now(UTC):%Y%m%d-%H%M%S}" if mode is Mode.DEMO else f"{datetime.now(UTC):%Y%m%d}"
    )
    journal = (
        Path(flags.journal)
        if flags.journal
        else log_dir / f"{trading['ticker']}-{mode.tag}-{when}.sqlite"
    )
    return Settings(
        mode=mode,
        **trading,
        journal=journal,
        log_dir=log_dir,
        rebalance=flags.rebalance,
        **account,
        backpack_api_url=urls["BACKPACK_API_URL"],
        backpack_ws_url=urls["BACKPACK_WS_URL"],
        lighter_api_url=urls["LIGHTER_API_URL"],
        lighter_ws_url=urls["LIGHTER_WS_URL"],
        notices=tuple(notices),
        flags=flags,
    )


def _trading_values(flags: TradingFlags, problems: list[str]) -> dict[str, Any] | None:
    """The trading flags as Settings fields; None (with `problems` filled) when any is bad."""
    ticker = flags.ticker.strip().upper()
    if not _TICKER_RE.match(ticker):
        problems.append(f"--ticker {flags.ticker!r}: expected letters and digits only, e.g. BTC")
    size = _quantity("--size", flags.size, problems)
    max_position = (
        _quantity("--max-position", flags.max_position, problems)
        if flags.max_position is not None
        else size
    )
    if size is not None and max_position is not None and max_position < size:
        problems.append(f"--max-position {max_position}: must be at least --size ({size})")
    values: dict[str, Any] = {
        "ticker": ticker,
        "size": size,
        "max_position": max_position,
        "iterations": _int_within("--iterations", flags.iterations, 1, MAX_COUNT, problems),
        "direction": _choice("--direction", flags.direction, Direction, problems),
        "fill_timeout": _seconds("--fill-timeout", flags.fill_timeout, FILL_TIMEOUT_S, problems),
        "hedge_timeout": _seconds(
            "--hedge-timeout", flags.hedge_timeout, HEDGE_TIMEOUT_S, problems
        ),
        "outage_window": _seconds(
            "--outage-window", flags.outage_window, OUTAGE_WINDOW_S, problems
        ),
        "sleep": _seconds("--sleep", flags.sleep, SLEEP_S, problems),
        "requote_ticks": _int_within(
            "--requote-ticks", flags.requote_ticks, 1, MAX_COUNT, problems
        ),
        "maker_ticks": _int_within("--maker-ticks", flags.maker_ticks, 1, MAX_COUNT, problems),
        "quote_mode": _choice("--quote-mode", flags.quote_mode, QuoteMode, problems),
        "min_edge_bps": _bps_within("--min-edge-bps", flags.min_edge_bps, MAX_EDGE_BPS, problems),
        "max_slippage_bps": _slippage("--max-slippage-bps", flags.max_slippage_bps, problems),
        "on_external_change": _choice(
            "--on-external-change", flags.on_external_change, ExternalPolicy, problems
        ),
    }
    if problems:
        return None
    assert None not in values.values()
    return values


def _account_values(
    env_values: Mapping[str, str], require_keys: bool, problems: list[str], keys_hint: str
) -> dict[str, Any]:
    """Keys and account indices from the environment, as Settings fields."""
    secrets = {name: (env_values.get(name) or "").strip() for name in SECRET_VARS}
    bp_public = _base64_key("BACKPACK_PUBLIC_KEY", secrets["BACKPACK_PUBLIC_KEY"], problems)
    bp_secret = _base64_key("BACKPACK_SECRET_KEY", secrets["BACKPACK_SECRET_KEY"], problems)
    lt_key = _lighter_key(secrets["LIGHTER_API_PRIVATE_KEY"], problems)
    indices = {
        name: _index(name, (env_values.get(name) or "").strip(), problems) for name in INDEX_VARS
    }
    if require_keys:
        missing = [n for n in (*SECRET_VARS, *INDEX_VARS) if not (env_values.get(n) or "").strip()]
        if missing:
            problems.append(f"{', '.join(missing)}: missing; {keys_hint}")
    tier = (env_values.get("LIGHTER_ACCOUNT_TIER") or "standard").strip().lower()
    if tier not in LIGHTER_TIERS:
        # The value is not echoed: a key pasted into the wrong variable must not be printed.
        problems.append("LIGHTER_ACCOUNT_TIER: expected standard or premium (your account's tier)")
    rate_limit = _rate_limit(env_values.get("BACKPACK_RATE_LIMIT"), problems)
    maker_fee = _maker_fee(env_values.get("BACKPACK_MAKER_FEE_BPS"), problems)
    return {
        "backpack_maker_fee": maker_fee,
        "lighter_account_tier": tier,
        "backpack_rate_limit": rate_limit,
        "backpack_public_key": bp_public,
        "backpack_secret_key": bp_secret,
        "lighter_private_key": lt_key,
        "lighter_account_index": indices["LIGHTER_ACCOUNT_INDEX"],
        "lighter_api_key_index": indices["LIGHTER_API_KEY_INDEX"],
    }


def _rate_limit(raw: str | None, problems: list[str]) -> int:
    if raw is None or not raw.strip():
        return DEFAULT_BACKPACK_RATE_LIMIT
    text = raw.strip()
    if text.isdigit() and 1 <= int(text) <= 1_000_000:
        return int(text)
    problems.append("BACKPACK_RATE_LIMIT: expected a whole number of requests a minute (2000)")
    return DEFAULT_BACKPACK_RATE_LIMIT


def _endpoint_values(env_values: Mapping[str, str], problems: list[str]) -> dict[str, str]:
    """The four venue URLs (defaults where unset), each checked for its scheme."""
    urls: dict[str, str] = {}
    for name, default in DEFAULT_URLS.items():
        value = (env_values.get(name) or "").strip() or default
        ws = name.endswith("_WS_URL")
        if not _valid_url(value, ws=ws):
            expected = "ws:// or wss://" if ws else "http:// or https://"
            # Not echoed: a key pasted into the wrong variable must never be printed.
            problems.append(f"{name}: expected a {expected} URL (host and port)")
        urls[name] = value
    if not urls["BACKPACK_API_URL"].endswith("/"):
        urls["BACKPACK_API_URL"] += "/"  # bpx-py appends "api/v1/..." to it
    return urls


# --------------------------------------------------------------------------------------------
# Field validators: each appends one line per problem and returns None on failure
# --------------------------------------------------------------------------------------------


def _quantity(name: str, raw: str | None, problems: list[str]) -> Decimal | None:
    """A size in base units: a positive, finite decimal of sane magnitude. The market's own
    minimum, maximum and step are checked once the venues are known (`market_problems`)."""
    if raw is None or not raw.strip():
        problems.append(f"{name}: required, a positive decimal number (e.g. 0.01)")
        return None
    value = _decimal(raw)
    if value is None or value <= 0:
        problems.append(f"{name} {raw!r}: expected a positive decimal number (e.g. 0.01)")
        return None
    if value >= MAX_QUANTITY or _decimal_places(value) > MAX_DECIMALS:
        problems.append(
            f"{name} {raw!r}: expected a quantity below {MAX_QUANTITY:,} with at most "
            f"{MAX_DECIMALS} decimal places"
        )
        return None
    return value


def _slippage(name: str, raw: str, problems: list[str]) -> Decimal | None:
    value = _decimal(raw)
    if value is None or not 0 < value <= MAX_SLIPPAGE_BPS:
        problems.append(
            f"{name} {raw!r}: expected basis points above 0 and at most {MAX_SLIPPAGE_BPS} "
            f"({MAX_SLIPPAGE_BPS // 100} %)"
        )
        return None
    return value


def _bps_within(name: str, raw: str, limit: Decimal, problems: list[str]) -> Decimal | None:
    """Basis points from -limit to limit (a sign is allowed: a cost the user accepts)."""
    value = _decimal(raw)
    if value is None or not -limit <= value <= limit:
        problems.append(f"{name} {raw!r}: expected basis points from -{limit} to {limit}")
        return None
    return value


def _maker_fee(raw: str | None, problems: list[str]) -> Decimal:
    """BACKPACK_MAKER_FEE_BPS: the account's Backpack maker fee (its tier), for the bound."""
    if raw is None or not raw.strip():
        return BACKPACK_MAKER_FEE_BPS / 10_000
    value = _decimal(raw.strip())
    if value is None or not -MAX_FEE_BPS <= value <= MAX_FEE_BPS:
        problems.append(
            f"BACKPACK_MAKER_FEE_BPS: expected basis points from -{MAX_FEE_BPS} to {MAX_FEE_BPS}"
            " (your Backpack maker fee; 2 on tier 1, negative for a rebate)"
        )
        return BACKPACK_MAKER_FEE_BPS / 10_000
    return value / 10_000


def parse_slippage(raw: str, name: str = "--max-slippage-bps") -> Decimal:
    """One slippage flag on its own (`flatten`): the value, or ConfigError naming the flag."""
    problems: list[str] = []
    value = _slippage(name, raw, problems)
    if value is None:
        raise ConfigError("\n".join(problems))
    return value


def _decimal(raw: str) -> Decimal | None:
    """A finite Decimal, or None for text that is not one (NaN and infinities included)."""
    try:
        value = Decimal(raw.strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _int_within(name: str, raw: str, low: int, high: int, problems: list[str]) -> int | None:
    text = raw.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text) or not low <= int(text) <= high:
        problems.append(f"{name} {raw!r}: expected a whole number from {low} to {high:,}")
        return None
    return int(text)


def _seconds(name: str, raw: str, bounds: tuple[float, float], problems: list[str]) -> float | None:
    """A duration within `bounds` (inclusive): finite, never NaN, never a denormal."""
    low, high = bounds
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # False for NaN
        problems.append(f"{name} {raw!r}: expected a number of seconds from {low:g} to {high:g}")
        return None
    return value


def _choice(name: str, raw: str, enum: type[_E], problems: list[str]) -> _E | None:
    try:
        return enum(raw.strip().lower())
    except ValueError:
        allowed = " | ".join(str(member.value) for member in enum)
        problems.append(f"{name} {raw!r}: expected one of {allowed}")
        return None


def _base64_key(name: str, raw: str, problems: list[str]) -> Secret | None:
    if not raw:
        return None
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        problems.append(f"{name}: is not valid base64 (expected base64 of a 32-byte ED25519 key)")
        return None
    if len(decoded) != 32:
        problems.append(f"{name}: decodes to {len(decoded)} bytes, expected 32 (an ED25519 key)")
        return None
    return Secret(raw)


def _lighter_key(raw: str, problems: list[str]) -> Secret | None:
    if not raw:
        return None
    digits = raw[2:] if raw.lower().startswith("0x") else raw
    if len(digits) != LIGHTER_KEY_HEX_LEN or not re.fullmatch(r"[0-9a-fA-F]+", digits):
        problems.append(
            f"LIGHTER_API_PRIVATE_KEY: is not a Lighter API key (expected {LIGHTER_KEY_HEX_LEN} "
            "hex digits, optionally prefixed 0x, as lighter-sdk's create_api_key() makes)"
        )
        return None
    return Secret(digits)


INDEX_RANGES = {
    "LIGHTER_ACCOUNT_INDEX": (LIGHTER_ACCOUNT_INDEX_RANGE, "your account's index on Lighter"),
    "LIGHTER_API_KEY_INDEX": (LIGHTER_API_KEY_INDEX_RANGE, "the index your API key was made at"),
}


def _index(name: str, raw: str, problems: list[str]) -> int | None:
    if not raw:
        return None
    (low, high), meaning = INDEX_RANGES[name]
    if not re.fullmatch(r"[0-9]{1,19}", raw) or not low <= int(raw) <= high:
        # The value is not echoed: a key pasted into the wrong variable must not be printed.
        problems.append(f"{name}: expected a whole number from {low} to {high} ({meaning})")
        return None
    return int(raw)


def _valid_url(value: str, *, ws: bool) -> bool:
    parsed = urlparse(value)
    schemes = ("ws", "wss") if ws else ("http", "https")
    return parsed.scheme in schemes and bool(parsed.netloc)


def with_endpoints(settings: Settings, env: Mapping[str, str]) -> Settings:
    """The same settings pointed at other venues (the demo's simulators): URLs, keys, indices
    from `env`, validated like any other environment."""
    assert settings.flags is not None, "settings not built by load_settings"
    return load_settings(settings.flags, mode=settings.mode, env=env, require_keys=True)


# --------------------------------------------------------------------------------------------
# The settings against the markets as the venues list them (at start, before any order)
# --------------------------------------------------------------------------------------------


def market_problems(settings: Settings, markets: list[tuple[Market, Decimal | None]]) -> list[str]:
    """Why `--size` does not fit the markets' rules (at most one line, the first of: below a
    minimum quantity, above a maximum, off a step, below a minimum notional at `price`), or [].
    Every maker fill of `size` is hedged at once: the size must suit both venues' markets."""
    size, ticker = settings.size, settings.ticker
    flag = f"--size {format(size, 'f')}"
    where = {m.venue: f"{m.venue.capitalize()} {m.symbol}" for m, _ in markets}
    for market, _ in sorted(markets, key=lambda pair: pair[0].min_qty, reverse=True):
        if size < market.min_qty:
            smallest = f"({market.min_qty} {ticker})"
            return [f"{flag}: below the smallest order {where[market.venue]} accepts {smallest}"]
    for market, _ in markets:
        max_qty = market.max_qty  # when the venue lists one
        if max_qty is not None and size > max_qty:
            largest = f"({max_qty} {ticker})"
            return [f"{flag}: above the largest order {where[market.venue]} accepts {largest}"]
    for market, _ in markets:
        if market.step_size > 0 and _remainder(size, market.step_size) != 0:
            step = f"({market.step_size} {ticker})"
            return [f"{flag}: not a multiple of the step of {where[market.venue]} {step}"]
    for market, price in markets:
        if price is not None and size * price < market.min_notional:
            return [
                f"{flag}: worth about {size * price:.2f} USDC at the current price, below the "
                f"smallest order {where[market.venue]} accepts ({market.min_notional} USDC)"
            ]
    return []


def _remainder(value: Decimal, step: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = 80  # exact for any quantity the flags accept
        return value % step

"""Profile file: `--config FILE.toml` holds trading settings (and pairs); flags override it.

A profile is TOML, read with `tomllib`. It holds trading settings only: the keys stay in `.env`
(or the environment), and a profile with a key-like entry is refused::

    # hedgebot profile: trading settings only (keys stay in .env)
    [run]                 # defaults for every pair: any trading flag, by its name
    iterations = 10       # (dashes or underscores: quote-mode or quote_mode)
    direction = "alternate"
    quote-mode = "edge"
    min-edge-bps = -2
    max-net-usd = 500     # account-wide, [run] only: max-net-usd, notify, notify-summary,
    notify = ["tgram://..."]  # metrics-port
    [pairs.BTC]           # one table per pair, named by its ticker: its own settings
    size = 0.002
    [pairs.ETH]
    size = 0.05
    max-position = 0.1

* Values are TOML numbers, strings or booleans (`rebalance`). Numbers are read exactly
  (floats as `Decimal`): `size = 0.1` is the flag `--size 0.1`, never 0.1000000000000000055.
  They are validated as the flags are (hedge/config.py), and an error about a value that came
  from the profile says where it was set (`Resolved.blame`).
* The pairs: `ticker` in `[run]` (`"BTC,ETH"` or `["BTC", "ETH"]`) when given, else the
  `[pairs.<TICKER>]` tables in file order; a table of a pair not traded is not used.
* Precedence, per pair and setting: a flag typed on the command line > the pair's table >
  `[run]` > the command's default. A typed `--ticker` replaces the profile's pairs (only those
  are traded, each with its table if it has one); `--size BTC=..,ETH=..` works as without a
  profile (hedge/pairs.py). Paths (`journal`, `log-dir`) are relative to the working folder,
  as flags are.
* Every problem is one line naming `--config FILE`, the table and the key; no line ever prints
  a value read from the profile (a key pasted into the wrong entry must not be echoed).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from exchanges.base import ConfigError
from hedge.config import TradingFlags
from hedge.pairs import MAX_PAIRS, split_pairs

if TYPE_CHECKING:
    import typer
    from rich.table import Table

Value = str | bool  # what a TradingFlags field holds (rebalance is the one bool)
T = TypeVar("T")

FLAG = "--config"
TRADING: tuple[str, ...] = tuple(f.name for f in fields(TradingFlags))
TEXT_KEYS = frozenset(
    {"ticker", "direction", "quote_mode", "journal", "log_dir", "on_external_change"}
)
BOOL_KEYS = frozenset({"rebalance"})
# Account-wide settings of run/demo (not TradingFlags), allowed in [run] only.
EXTRAS: tuple[str, ...] = ("max_net_usd", "notify", "notify_summary", "metrics_port")
SECTIONS = ("run", "pairs")

FLAG_SOURCE = "flag"
RUN_SOURCE = "profile [run]"
DEFAULT_SOURCE = "default"

_TICKER_RE = re.compile(r"^[A-Z0-9]{1,20}$")
# Names of keys and secrets (compared in capitals, dashes as underscores): refused in a profile.
_KEY_LIKE = re.compile(
    r"^BACKPACK_.*KEY$|^(LIGHTER_)?API_(KEY_)?PRIVATE_KEY$|SECRET|PRIVATE.*KEY|PASSWORD"
    r"|PASSPHRASE|MNEMONIC|TOKEN|API_?KEY(?!_INDEX)"
)
_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_AT_END = re.compile(r"\s*\(at end of document\)$")


def pair_source(ticker: str) -> str:
    """The source of a value set in a pair's table: `profile [pairs.BTC]`."""
    return f"profile [pairs.{ticker}]"


def flag_name(name: str) -> str:
    """`max_position` -> `--max-position`."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Profile:
    """A profile file, checked: settings as the strings TradingFlags expects."""

    path: Path
    pairs: list[str] = field(default_factory=list)  # as in the file ([run] ticker, else tables)
    defaults: dict[str, Value] = field(default_factory=dict)  # [run], by TradingFlags field
    per_pair: dict[str, dict[str, Value]] = field(default_factory=dict)  # [pairs.T] by ticker
    extras: dict[str, object] = field(default_factory=dict)  # max_net_usd, notify, ...

    def where(self, source: str) -> str:
        """`bot.toml [pairs.BTC]` for the source `profile [pairs.BTC]`."""
        return f"{self.path} {source.removeprefix('profile ')}"


# -- reading ---------------------------------------------------------------------------------


def load_profile(path: Path) -> Profile:
    """Read and check a profile; ConfigError with one line per problem, each naming the file
    and the key (never a value)."""
    data = _read(path)
    problems = [f"{entry}: {_KEY_HINT}" for entry in key_like_entries(data)]
    defaults: dict[str, Value] = {}
    extras: dict[str, object] = {}
    tables: dict[str, dict[str, Value]] = {}
    for key, raw in data.items():
        if _is_key_like(key):
            continue
        if key == "run":
            if not isinstance(raw, dict):
                problems.append(f"run: expected a table [run], got {_kind(raw)}")
                continue
            defaults, extras = _section(raw, "[run]", problems, account=True)
        elif key == "pairs":
            tables = _pair_tables(raw, problems)
        else:
            problems.append(f"{key}: {_unknown_top(key)}")
    pairs = _pairs(defaults, tables, problems)
    if problems:
        raise ConfigError("\n".join(f"{FLAG} {path}: {problem}" for problem in problems))
    return Profile(path, pairs, defaults, tables, extras)


_KEY_HINT = "looks like a key or a secret: keys stay in .env (or the environment), not a profile"


def _read(path: Path) -> dict[str, Any]:
    """The TOML document, floats as Decimal; ConfigError (one line) when it cannot be."""
    where = f"{FLAG} {path}:"
    if not path.is_file():
        what = "is a folder, expected a TOML file" if path.is_dir() else "no such file"
        raise ConfigError(f"{where} {what}")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle, parse_float=Decimal)
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.__class__.__name__})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} not TOML: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} not TOML {_toml_place(str(exc))}") from None


def _toml_place(message: str) -> str:
    """tomllib's message as `at line 3, column 7: Invalid value`."""
    found = _AT_LINE.search(message)
    if found is not None:
        reason = message[: found.start()]
        return f"at line {found.group(1)}, column {found.group(2)}: {reason}"
    found = _AT_END.search(message)
    if found is not None:
        return f"at the end of the file: {message[: found.start()]}"
    return f"({message})"


def key_like_entries(data: Mapping[str, Any], table: str = "") -> list[str]:
    """Every entry named like a key or a secret, at any depth: `[run] BACKPACK_SECRET_KEY`."""
    found: list[str] = []
    for key, value in data.items():
        if _is_key_like(key):
            found.append(f"{table} {key}".strip())
            continue
        inner = f"[{table[1:-1]}.{key}]" if table else f"[{key}]"
        tables = value if isinstance(value, list) else [value]
        for item in tables:
            if isinstance(item, dict):
                found += key_like_entries(item, inner)
    return found


def _is_key_like(key: str) -> bool:
    return bool(_KEY_LIKE.search(key.upper().replace("-", "_")))


def _unknown_top(key: str) -> str:
    name = key.replace("-", "_")
    if name in TRADING or name in EXTRAS:
        return "a setting outside any table: put it under [run] (or [pairs.<TICKER>])"
    hint = "a profile has a [run] table and [pairs.<TICKER>] tables"
    return f"unknown entry ({hint}){_suggest(key, SECTIONS)}"


def _suggest(key: str, names: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key.lower(), list(names), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _pair_tables(raw: object, problems: list[str]) -> dict[str, dict[str, Value]]:
    """The [pairs.<TICKER>] tables by ticker, in file order."""
    if not isinstance(raw, dict):
        problems.append(f"pairs: expected tables [pairs.<TICKER>], got {_kind(raw)}")
        return {}
    tables: dict[str, dict[str, Value]] = {}
    for name, table in raw.items():
        if _is_key_like(name):
            continue
        ticker = name.strip().upper()
        label = f"[pairs.{name}]"
        if not _TICKER_RE.match(ticker):
            problems.append(f"{label}: not a ticker (letters and digits, e.g. [pairs.BTC])")
        elif ticker in tables:
            problems.append(f"{label}: {ticker} has two tables")
        elif not isinstance(table, dict):
            problems.append(f"{label}: expected a table [pairs.{ticker}], got {_kind(table)}")
        else:
            tables[ticker] = _section(table, label, problems, account=False)[0]
    return tables


def _section(
    table: Mapping[str, Any], label: str, problems: list[str], *, account: bool
) -> tuple[dict[str, Value], dict[str, object]]:
    """One table's trading settings and (in [run]) account-wide extras, by field name."""
    values: dict[str, Value] = {}
    extras: dict[str, object] = {}
    spelled: dict[str, str] = {}
    for key, raw in table.items():
        if _is_key_like(key):
            continue
        name = key.replace("-", "_")
        where = f"{label} {key}"
        if name in spelled:
            problems.append(f"{where}: given twice (as {spelled[name]} and {key})")
            continue
        spelled[name] = key
        if name == "ticker" and not account:
            problems.append(f"{where}: the table's name is its ticker; no ticker inside")
        elif name in EXTRAS and not account:
            problems.append(f"{where}: account-wide, for every pair: set it in [run]")
        elif name == "ticker":
            tickers = _tickers_value(raw, where, problems)
            if tickers:
                values[name] = ",".join(tickers)
        elif name in TRADING or name in EXTRAS:
            value = _value(name, raw)
            if isinstance(value, _Wrong):
                problems.append(f"{where}: expected {value.expected}, got {_kind(raw)}")
            elif name in EXTRAS or isinstance(value, list):
                extras[name] = value
            else:
                values[name] = value
        else:
            names = [n.replace("_", "-") for n in (*TRADING, *(EXTRAS if account else ()))]
            problems.append(f"{where}: unknown setting{_suggest(key.replace('_', '-'), names)}")
    return values, extras


@dataclass(frozen=True)
class _Wrong:
    expected: str


_NUMBER = "a number or a string"


def _value(name: str, raw: object) -> Value | list[str] | _Wrong:
    """A TOML value as the flag's text (Decimal-exact), or what was expected instead."""
    if name in BOOL_KEYS:
        return raw if isinstance(raw, bool) else _Wrong("true or false")
    if name == "notify":
        if isinstance(raw, str):
            return [raw]
        if isinstance(raw, list) and raw and all(isinstance(u, str) for u in raw):
            return list(raw)
        return _Wrong("a URL or a list of URLs")
    if isinstance(raw, str):
        return raw
    if name in TEXT_KEYS:
        return _Wrong("a string")
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal):
        return _Wrong(_NUMBER)
    if isinstance(raw, Decimal):
        return format(raw, "f") if raw.is_finite() else _Wrong("a finite number")
    return str(raw)


def _tickers_value(raw: object, where: str, problems: list[str]) -> list[str]:
    """[run] ticker: "BTC,ETH" or ["BTC", "ETH"], as capitals; [] after a problem."""
    if isinstance(raw, str):
        items = raw.split(",")
    elif isinstance(raw, list) and all(isinstance(t, str) for t in raw):
        items = list(raw)
    else:
        problems.append(f'{where}: expected "BTC,ETH" or ["BTC", "ETH"], got {_kind(raw)}')
        return []
    tickers = [t.strip().upper() for t in items]
    if not tickers or not all(_TICKER_RE.match(t) for t in tickers):
        problems.append(f'{where}: expected tickers of letters and digits, e.g. ["BTC", "ETH"]')
    elif len(set(tickers)) != len(tickers):
        problems.append(f"{where}: a ticker named twice")
    elif len(tickers) > MAX_PAIRS:
        problems.append(f"{where}: at most {MAX_PAIRS} pairs in one process")
    else:
        return tickers
    return []


def _pairs(
    defaults: Mapping[str, Value], tables: Mapping[str, object], problems: list[str]
) -> list[str]:
    """The profile's pairs: [run] ticker, else its tables in file order."""
    ticker = defaults.get("ticker")
    if isinstance(ticker, str):
        return ticker.split(",")
    if len(tables) > MAX_PAIRS:
        problems.append(f"[pairs]: at most {MAX_PAIRS} pairs in one process")
    return list(tables)


def _kind(raw: object) -> str:
    """A TOML value's type in words (its value is never shown)."""
    if isinstance(raw, Decimal) and not raw.is_finite():
        return "inf or nan"
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "true/false"),
        (int, "a whole number"),
        (Decimal, "a number"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
        ((datetime, date, time), "a date or time"),
    ]
    return next((word for kind, word in kinds if isinstance(raw, kind)), "another value")


# -- merging ---------------------------------------------------------------------------------


def merge(
    profile: Profile | None, given: Mapping[str, object], defaults: Mapping[str, object]
) -> tuple[list[TradingFlags], dict[str, dict[str, str]]]:
    """One TradingFlags per pair, and per pair (by ticker) where each field came from: "flag",
    "profile [pairs.BTC]", "profile [run]" or "default".

    `given` holds the flags typed on the command line, `defaults` the command's defaults for
    the rest (other parameters than trading flags are ignored in both). ConfigError naming each
    problem (as split_pairs does, plus a [run] journal shared by several pairs)."""
    typed = {k: v for k, v in given.items() if k in TRADING}
    base = {k: v for k, v in defaults.items() if k in TRADING}
    if "ticker" in typed:
        raw_ticker, ticker_from = str(typed["ticker"]), FLAG_SOURCE
    elif profile is not None and profile.pairs:
        raw_ticker = ",".join(profile.pairs)
        ticker_from = RUN_SOURCE if "ticker" in profile.defaults else ""
    else:
        raw_ticker, ticker_from = str(base.get("ticker", TradingFlags.ticker)), DEFAULT_SOURCE
    layer = TradingFlags(**{**base, **typed, "ticker": raw_ticker})  # type: ignore[arg-type]
    split = split_pairs(layer)
    if profile is not None and len(split) > 1 and "journal" in profile.defaults:
        raise ConfigError(
            f"{FLAG} {profile.path}: [run] journal names one journal; with several pairs "
            "each has its own under --log-dir (or set journal in each [pairs.<TICKER>])"
        )
    flags: list[TradingFlags] = []
    sources: dict[str, dict[str, str]] = {}
    for pair in split:
        ticker = pair.ticker.strip().upper()
        values, where = _resolve(pair, ticker, profile, typed)
        where = {"ticker": ticker_from or pair_source(ticker), **where}
        flags.append(replace(pair, **values))  # type: ignore[arg-type]
        sources[ticker] = where
    return flags, sources


def _resolve(
    pair: TradingFlags, ticker: str, profile: Profile | None, typed: Mapping[str, object]
) -> tuple[dict[str, Value | None], dict[str, str]]:
    """One pair's fields (ticker aside) by precedence, and the source of each."""
    own = profile.per_pair.get(ticker, {}) if profile is not None else {}
    run = profile.defaults if profile is not None else {}
    values: dict[str, Value | None] = {}
    where: dict[str, str] = {}
    for name in TRADING:
        if name == "ticker":
            continue
        if name in typed:  # split_pairs has already taken this pair's part of A=Q,B=Q
            values[name], where[name] = getattr(pair, name), FLAG_SOURCE
        elif name in own:
            values[name], where[name] = own[name], pair_source(ticker)
        elif name in run:
            values[name], where[name] = run[name], RUN_SOURCE
        else:
            values[name], where[name] = getattr(pair, name), DEFAULT_SOURCE
    return values, where


def extras(
    profile: Profile | None, given: Mapping[str, object]
) -> tuple[dict[str, object], dict[str, str]]:
    """The account-wide settings (max_net_usd, notify, notify_summary, metrics_port) as the
    command's parameters expect them (None when unset), and the source of each: a typed flag
    > the profile's [run] > "default"."""
    values: dict[str, object] = {}
    where: dict[str, str] = {}
    for name in EXTRAS:
        if name in given:
            values[name], where[name] = given[name], FLAG_SOURCE
        elif profile is not None and name in profile.extras:
            values[name], where[name] = profile.extras[name], RUN_SOURCE
        else:
            values[name], where[name] = None, DEFAULT_SOURCE
    return values, where


def blame(error: ConfigError, sources: Mapping[str, str], profile: Profile | None) -> ConfigError:
    """`error` (from load_settings and the like, one line per problem, each starting with its
    flag) with `(set in bot.toml [pairs.BTC])` after each line about a value from the
    profile: a flag the user never typed must not look like one they did."""
    if profile is None:
        return error
    by_flag = {flag_name(name): source for name, source in sources.items()}
    lines = []
    for line in str(error).splitlines():
        first = re.split(r"[\s:]", line, maxsplit=1)[0]
        source = by_flag.get(first, "")
        if source.startswith("profile"):
            line = f"{line} (set in {profile.where(source)})"
        lines.append(line)
    return ConfigError("\n".join(lines))


# -- showing ---------------------------------------------------------------------------------


def source_rows(flags: TradingFlags, sources: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(flag, value, source) for each trading flag of one pair: what `check` shows."""
    rows = []
    for name in TRADING:
        value = getattr(flags, name)
        text = "-" if value is None else str(value).lower() if isinstance(value, bool) else value
        rows.append((flag_name(name), text, sources.get(name, DEFAULT_SOURCE)))
    return rows


def sources_table(flags: TradingFlags, sources: Mapping[str, str]) -> Table:
    """The rows of `source_rows` as a rich table titled by the pair (cells as plain text: a
    source's `[run]` is not rich markup)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{flags.ticker.strip().upper()}: where each setting came from")
    for column in ("flag", "value", "from"):
        table.add_column(column)
    for row in source_rows(flags, sources):
        table.add_row(*(Text(cell) for cell in row))
    return table


# -- the command line ------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """What a command runs with: per-pair flags and account-wide settings, with sources."""

    flags: list[TradingFlags]
    sources: dict[str, dict[str, str]]  # by ticker, by field
    extras: dict[str, object]  # max_net_usd, notify, notify_summary, metrics_port
    extra_sources: dict[str, str]
    profile: Profile | None = None

    def blame(self, error: ConfigError, ticker: str | None = None) -> ConfigError:
        """`error` with the profile's table named on each line about a value from it (the
        pair's fields when `ticker` is given, else the account-wide ones)."""
        where = self.sources.get(ticker.strip().upper(), {}) if ticker else self.extra_sources
        return blame(error, where, self.profile)

    @contextmanager
    def blamed(self, ticker: str | None = None) -> Iterator[None]:
        """A ConfigError raised inside comes out through `blame` (for `ticker`'s fields, or
        the account-wide ones)."""
        try:
            yield
        except ConfigError as exc:
            raise self.blame(exc, ticker) from None

    def each(self, build: Callable[[TradingFlags], T]) -> list[T]:
        """`build(flags)` for each pair, in order (e.g. resolve_settings), errors blamed."""
        built = []
        for flags in self.flags:
            with self.blamed(flags.ticker):
                built.append(build(flags))
        return built


# click's ParameterSource members that mean "the user gave it"; compared by name, because typer
# 0.29 carries its own copy of click (typer._click), whose enum is not click.core's.
TYPED_SOURCES = frozenset({"COMMANDLINE", "ENVIRONMENT"})


def typed_and_defaults(
    ctx: typer.Context, params: Mapping[str, object]
) -> tuple[dict[str, object], dict[str, object]]:
    """Split a command's parameters (its `locals()`) into the ones the user typed (on the
    command line or through an environment variable) and the ones left at their default."""
    given: dict[str, object] = {}
    defaults: dict[str, object] = {}
    for name, value in params.items():
        if name == "ctx":
            continue
        source = ctx.get_parameter_source(name)
        chosen = given if source is not None and source.name in TYPED_SOURCES else defaults
        chosen[name] = value
    return given, defaults


def from_command(ctx: typer.Context, params: Mapping[str, object]) -> Resolved:
    """Everything a run/demo/check command needs from its parameters (its `locals()`, with
    `config` the `--config FILE` path or None): `Resolved.flags` for resolve_settings,
    `Resolved.extras` for max_net_usd / Outputs."""
    given, defaults = typed_and_defaults(ctx, params)
    config = params.get("config")
    profile = load_profile(Path(str(config))) if config is not None else None
    flags, sources = merge(profile, given, defaults)
    values, extra_sources = extras(profile, given)
    return Resolved(flags, sources, values, extra_sources, profile)

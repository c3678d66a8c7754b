"""The profile file (hedge/profile.py): reading, its one-line errors (never a value), exact
numbers, and the merge with typed flags and the command's defaults, with sources."""

from __future__ import annotations

import itertools
import re
import textwrap
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

import hedge.profile
from exchanges.base import ConfigError
from hedge.config import Mode, TradingFlags, load_settings
from hedge.pairs import split_pairs
from hedge.profile import (
    DEFAULT_SOURCE,
    FLAG_SOURCE,
    RUN_SOURCE,
    Profile,
    Resolved,
    blame,
    extras,
    from_command,
    load_profile,
    merge,
    source_rows,
    sources_table,
)

PLANTED = "Planted-SECRET.q7vLm2xWz9Tn4Yd8"
# The `run` command's defaults (runbot.py), and the demo's where they differ.
RUN_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(TradingFlags)}
DEMO_DEFAULTS = {**RUN_DEFAULTS, "iterations": "3", "direction": "alternate", "sleep": "0.5"}

EXAMPLE = """\
# hedgebot profile: trading settings only (keys stay in .env)
[run]
iterations = 10
direction = "alternate"
quote-mode = "edge"
min-edge-bps = -2
max-net-usd = 500
notify = ["json://localhost:1/alerts"]
metrics-port = 9100
[pairs.BTC]
size = 0.002
[pairs.ETH]
size = 0.05
max-position = 0.1
"""


def write(tmp_path: Path, text: str, name: str = "bot.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def profile_of(tmp_path: Path, text: str) -> Profile:
    return load_profile(write(tmp_path, text))


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"--config {path}: ") for line in lines), lines
    return [line.removeprefix(f"--config {path}: ") for line in lines]


# -- reading ---------------------------------------------------------------------------------


def test_the_example_loads(tmp_path: Path) -> None:
    profile = profile_of(tmp_path, EXAMPLE)
    assert profile.pairs == ["BTC", "ETH"]
    assert profile.defaults == {
        "iterations": "10",
        "direction": "alternate",
        "quote_mode": "edge",
        "min_edge_bps": "-2",
    }
    assert profile.per_pair == {
        "BTC": {"size": "0.002"},
        "ETH": {"size": "0.05", "max_position": "0.1"},
    }
    assert profile.extras == {
        "max_net_usd": "500",
        "notify": ["json://localhost:1/alerts"],
        "metrics_port": "9100",
    }


def test_the_docstring_example_is_a_valid_profile(tmp_path: Path) -> None:
    doc = hedge.profile.__doc__ or ""
    example = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    profile = profile_of(tmp_path, textwrap.dedent(example))
    assert profile.pairs == ["BTC", "ETH"]
    assert profile.per_pair["ETH"]["max_position"] == "0.1"


def test_pairs_keep_the_order_of_the_file(tmp_path: Path) -> None:
    profile = profile_of(tmp_path, "[pairs.SOL]\n[pairs.BTC]\nsize = 1\n[pairs.ETH]\n")
    assert profile.pairs == ["SOL", "BTC", "ETH"]
    assert profile.per_pair == {"SOL": {}, "BTC": {"size": "1"}, "ETH": {}}


@pytest.mark.parametrize("spelled", ['"BTC,eth"', '["BTC", "eth"]', '" BTC , ETH "'])
def test_a_run_ticker_names_the_pairs(tmp_path: Path, spelled: str) -> None:
    profile = profile_of(tmp_path, f"[run]\nticker = {spelled}\n[pairs.SOL]\nsize = 1\n")
    assert profile.pairs == ["BTC", "ETH"]
    assert profile.defaults["ticker"] == "BTC,ETH"


def test_an_empty_profile_holds_nothing(tmp_path: Path) -> None:
    profile = profile_of(tmp_path, "# nothing yet\n")
    assert (profile.pairs, profile.defaults, profile.per_pair, profile.extras) == ([], {}, {}, {})


def test_dashes_and_underscores_name_the_same_setting(tmp_path: Path) -> None:
    profile = profile_of(tmp_path, "[run]\nquote_mode = 'bbo'\nmax-slippage-bps = 30\n")
    assert profile.defaults == {"quote_mode": "bbo", "max_slippage_bps": "30"}


@pytest.mark.parametrize(
    ("toml", "text"),
    [
        ("0.1", "0.1"),
        ("0.30000000000000004", "0.30000000000000004"),
        ("1e-3", "0.001"),
        ("1.5e3", "1500"),
        ("2.50", "2.50"),
        ("-0.5", "-0.5"),
        ("10", "10"),
        ("1_000", "1000"),
        ("-2", "-2"),
        ('"0.05"', "0.05"),
        ("0.000000001", "0.000000001"),
    ],
)
def test_numbers_are_read_exactly(tmp_path: Path, toml: str, text: str) -> None:
    assert profile_of(tmp_path, f"[pairs.BTC]\nsize = {toml}\n").per_pair["BTC"]["size"] == text


def test_exact_numbers_reach_the_settings(tmp_path: Path) -> None:
    profile = profile_of(tmp_path, "[run]\nmin-edge-bps = -0.1\n[pairs.BTC]\nsize = 0.1\n")
    (flags,), _ = merge(profile, {}, RUN_DEFAULTS)
    settings = load_settings(flags, mode=Mode.CHECK, env={})
    assert settings.size == Decimal("0.1") and str(settings.size) == "0.1"
    assert settings.min_edge_bps == Decimal("-0.1")


def test_booleans_and_lists(tmp_path: Path) -> None:
    profile = profile_of(tmp_path, "[run]\nrebalance = true\nnotify = 'json://a/b'\n")
    assert profile.defaults == {"rebalance": True}
    assert profile.extras == {"notify": ["json://a/b"]}


# -- errors ----------------------------------------------------------------------------------


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=rf"^--config {re.escape(str(path))}: no such file$"):
        load_profile(path)


def test_a_folder_is_not_a_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a folder, expected a TOML file$"):
        load_profile(tmp_path)


def test_not_toml_names_the_line(tmp_path: Path) -> None:
    lines = problems(tmp_path, "[run]\niterations = 10\ndirection = \n")
    assert lines == ["not TOML at line 3, column 13: Invalid value"]


def test_not_toml_at_the_end(tmp_path: Path) -> None:
    assert problems(tmp_path, "[run]\nnotify = ['x'")[0].startswith("not TOML at the end")


def test_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_bytes(b"[run]\ndirection = '\xff'\n")
    with pytest.raises(ConfigError, match=r"^--config .*: not TOML: not UTF-8 text$"):
        load_profile(path)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "[run]\nquote-mod = 'edge'\n",
            "[run] quote-mod: unknown setting; did you mean quote-mode?",
        ),
        (
            "[run]\nitterations = 3\n",
            "[run] itterations: unknown setting; did you mean iterations?",
        ),
        ("[pairs.BTC]\nsise = 1\n", "[pairs.BTC] sise: unknown setting; did you mean size?"),
        ("[run]\nwhatever = 1\n", "[run] whatever: unknown setting"),
        (
            "[rnu]\nsize = 1\n",
            "rnu: unknown entry (a profile has a [run] table and [pairs.<TICKER>] tables); "
            "did you mean run?",
        ),
        (
            "size = 1\n",
            "size: a setting outside any table: put it under [run] (or [pairs.<TICKER>])",
        ),
        (
            "[pairs.BTC]\nmax-net-usd = 5\n",
            "[pairs.BTC] max-net-usd: account-wide, for every pair: set it in [run]",
        ),
        (
            "[pairs.BTC]\nticker = 'BTC'\n",
            "[pairs.BTC] ticker: the table's name is its ticker; no ticker inside",
        ),
        (
            "[run]\nquote-mode = 'bbo'\nquote_mode = 'edge'\n",
            "[run] quote_mode: given twice (as quote-mode and quote_mode)",
        ),
    ],
)
def test_unknown_and_misplaced_keys(tmp_path: Path, text: str, line: str) -> None:
    assert problems(tmp_path, text) == [line]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "[pairs.BTC]\nsize = true\n",
            "[pairs.BTC] size: expected a number or a string, got true/false",
        ),
        ("[run]\nrebalance = 'yes'\n", "[run] rebalance: expected true or false, got a string"),
        ("[run]\ndirection = 1\n", "[run] direction: expected a string, got a whole number"),
        ("[run]\nsleep = [1]\n", "[run] sleep: expected a number or a string, got an array"),
        ("[run]\nsleep = {a = 1}\n", "[run] sleep: expected a number or a string, got a table"),
        (
            "[run]\nsleep = 2024-01-01\n",
            "[run] sleep: expected a number or a string, got a date or time",
        ),
        ("[run]\nsleep = inf\n", "[run] sleep: expected a finite number, got inf or nan"),
        ("[run]\nsleep = nan\n", "[run] sleep: expected a finite number, got inf or nan"),
        (
            "[run]\nnotify = 3\n",
            "[run] notify: expected a URL or a list of URLs, got a whole number",
        ),
        ("[run]\nnotify = []\n", "[run] notify: expected a URL or a list of URLs, got an array"),
        ("run = 3\n", "run: expected a table [run], got a whole number"),
        ("pairs = 'BTC'\n", "pairs: expected tables [pairs.<TICKER>], got a string"),
        ("[pairs]\nBTC = 1\n", "[pairs.BTC]: expected a table [pairs.BTC], got a whole number"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, line: str) -> None:
    assert problems(tmp_path, text) == [line]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "[pairs.BTC-USD]\n",
            "[pairs.BTC-USD]: not a ticker (letters and digits, e.g. [pairs.BTC])",
        ),
        (
            '[pairs."BTC/USDC"]\n',
            "[pairs.BTC/USDC]: not a ticker (letters and digits, e.g. [pairs.BTC])",
        ),
        ('[pairs.""]\n', "[pairs.]: not a ticker (letters and digits, e.g. [pairs.BTC])"),
        ("[pairs.BTC]\n[pairs.btc]\n", "[pairs.btc]: BTC has two tables"),
        (
            "[run]\nticker = 'BTC,,ETH'\n",
            '[run] ticker: expected tickers of letters and digits, e.g. ["BTC", "ETH"]',
        ),
        ("[run]\nticker = ['BTC', 'btc']\n", "[run] ticker: a ticker named twice"),
        (
            "[run]\nticker = 5\n",
            '[run] ticker: expected "BTC,ETH" or ["BTC", "ETH"], got a whole number',
        ),
        (
            "[run]\nticker = '" + ",".join(f"T{i}" for i in range(21)) + "'\n",
            "[run] ticker: at most 20 pairs in one process",
        ),
        ("".join(f"[pairs.T{i}]\n" for i in range(21)), "[pairs]: at most 20 pairs in one process"),
    ],
)
def test_pairs_must_be_named_like_tickers(tmp_path: Path, text: str, line: str) -> None:
    assert problems(tmp_path, text) == [line]


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("BACKPACK_SECRET_KEY = '{v}'\n", "BACKPACK_SECRET_KEY"),
        ("[run]\nBACKPACK_PUBLIC_KEY = '{v}'\n", "[run] BACKPACK_PUBLIC_KEY"),
        ("[run]\nLIGHTER_API_PRIVATE_KEY = '{v}'\n", "[run] LIGHTER_API_PRIVATE_KEY"),
        ("[run]\nAPI_KEY_PRIVATE_KEY = '{v}'\n", "[run] API_KEY_PRIVATE_KEY"),
        ("[run]\nbackpack-secret-key = '{v}'\n", "[run] backpack-secret-key"),
        ("[pairs.BTC]\nlighter_private_key = '{v}'\n", "[pairs.BTC] lighter_private_key"),
        ("[pairs.BTC]\nmy_secret = 3\n", "[pairs.BTC] my_secret"),
        ("[run]\napi-key = '{v}'\n", "[run] api-key"),
        ("[run]\ntelegram_token = '{v}'\n", "[run] telegram_token"),
        ("[run.extra]\nprivatekey = '{v}'\n", "[run.extra] privatekey"),
        ("[secrets]\nbackpack = '{v}'\n", "secrets"),
        ("[[keys]]\nBACKPACK_SECRET_KEY = '{v}'\n", "[keys] BACKPACK_SECRET_KEY"),
    ],
)
def test_a_key_like_entry_is_refused_without_its_value(
    tmp_path: Path, text: str, entry: str
) -> None:
    lines = problems(tmp_path, text.format(v=PLANTED))
    hint = "looks like a key or a secret: keys stay in .env (or the environment), not a profile"
    assert f"{entry}: {hint}" in lines
    assert PLANTED not in "\n".join(lines)


def test_the_lighter_key_index_is_not_a_secret(tmp_path: Path) -> None:
    assert problems(tmp_path, "[run]\nLIGHTER_API_KEY_INDEX = 3\n") == [
        "[run] LIGHTER_API_KEY_INDEX: unknown setting"
    ]


PLANTED_EVERYWHERE = f"""\
stray = "{PLANTED}"
[run]
BACKPACK_SECRET_KEY = "{PLANTED}"
rebalance = "{PLANTED}"
direction = ["{PLANTED}"]
notify = {{ url = "{PLANTED}" }}
unknown = "{PLANTED}"
ticker = "{PLANTED}"
[pairs.BTC]
size = [{{ a = "{PLANTED}" }}]
[pairs."BTC-USD"]
"""


def test_no_error_line_prints_a_value(tmp_path: Path) -> None:
    lines = problems(tmp_path, PLANTED_EVERYWHERE)
    assert len(lines) == 9
    assert lines[-1].startswith("[pairs.BTC-USD]: not a ticker")
    text = "\n".join(lines)
    for piece in (PLANTED[i : i + 8] for i in range(len(PLANTED) - 8)):
        assert piece not in text


def test_a_syntax_error_does_not_print_the_line(tmp_path: Path) -> None:
    lines = problems(tmp_path, f"[run]\nBACKPACK_SECRET_KEY = {PLANTED}\n")
    assert lines[0].startswith("not TOML at line 2")
    assert "q7vLm2xW" not in lines[0]


def test_every_problem_is_its_own_line(tmp_path: Path) -> None:
    lines = problems(tmp_path, "[run]\nsise = 1\nrebalance = 1\n[pairs.B-1]\n")
    assert [line.split(":")[0] for line in lines] == [
        "[run] sise",
        "[run] rebalance",
        "[pairs.B-1]",
    ]


# -- merging ---------------------------------------------------------------------------------

LAYERS = ("flag", "pair", "run", "default")


@pytest.mark.parametrize("present", list(itertools.product([True, False], repeat=3)))
def test_precedence_flag_then_pair_then_run_then_default(
    tmp_path: Path, present: tuple[bool, bool, bool]
) -> None:
    typed, in_pair, in_run = present
    text = "[run]\n" + ("iterations = 30\n" if in_run else "")
    text += "[pairs.BTC]\n" + ("iterations = 20\n" if in_pair else "")
    given = {"iterations": "10"} if typed else {}
    (flags,), sources = merge(profile_of(tmp_path, text), given, DEMO_DEFAULTS)
    expected = next(
        (value, source)
        for ok, value, source in [
            (typed, "10", FLAG_SOURCE),
            (in_pair, "20", "profile [pairs.BTC]"),
            (in_run, "30", RUN_SOURCE),
            (True, "3", DEFAULT_SOURCE),
        ]
        if ok
    )
    assert (flags.iterations, sources["BTC"]["iterations"]) == expected


def test_every_field_has_a_source(tmp_path: Path) -> None:
    flags, sources = merge(profile_of(tmp_path, EXAMPLE), {"sleep": "2"}, RUN_DEFAULTS)
    assert [f.ticker for f in flags] == ["BTC", "ETH"]
    assert sources["ETH"] == {
        "ticker": "profile [pairs.ETH]",
        "size": "profile [pairs.ETH]",
        "max_position": "profile [pairs.ETH]",
        "iterations": RUN_SOURCE,
        "direction": RUN_SOURCE,
        "fill_timeout": DEFAULT_SOURCE,
        "requote_ticks": DEFAULT_SOURCE,
        "maker_ticks": DEFAULT_SOURCE,
        "quote_mode": RUN_SOURCE,
        "min_edge_bps": RUN_SOURCE,
        "max_slippage_bps": DEFAULT_SOURCE,
        "hedge_timeout": DEFAULT_SOURCE,
        "outage_window": DEFAULT_SOURCE,
        "sleep": FLAG_SOURCE,
        "journal": DEFAULT_SOURCE,
        "log_dir": DEFAULT_SOURCE,
        "rebalance": DEFAULT_SOURCE,
        "on_external_change": DEFAULT_SOURCE,
    }
    assert flags[1] == TradingFlags(
        ticker="ETH",
        size="0.05",
        max_position="0.1",
        iterations="10",
        direction="alternate",
        quote_mode="edge",
        min_edge_bps="-2",
        sleep="2",
    )
    assert flags[0].max_position is None and sources["BTC"]["max_position"] == DEFAULT_SOURCE


def test_a_typed_ticker_replaces_the_profiles_pairs(tmp_path: Path) -> None:
    profile = profile_of(tmp_path, EXAMPLE + "[pairs.SOL]\nsize = 1\n")
    flags, sources = merge(profile, {"ticker": "sol,DOGE", "size": "SOL=2,DOGE=50"}, RUN_DEFAULTS)
    assert [(f.ticker, f.size, f.iterations) for f in flags] == [
        ("SOL", "2", "10"),
        ("DOGE", "50", "10"),
    ]
    assert set(sources) == {"SOL", "DOGE"}
    assert sources["DOGE"]["ticker"] == FLAG_SOURCE and sources["DOGE"]["size"] == FLAG_SOURCE


def test_a_typed_single_ticker_takes_its_table(tmp_path: Path) -> None:
    (flags,), sources = merge(profile_of(tmp_path, EXAMPLE), {"ticker": "eth"}, RUN_DEFAULTS)
    assert (flags.size, flags.max_position) == ("0.05", "0.1")
    assert sources["ETH"]["size"] == "profile [pairs.ETH]"
    assert sources["ETH"]["ticker"] == FLAG_SOURCE


def test_a_typed_ticker_without_a_table_takes_run(tmp_path: Path) -> None:
    (flags,), sources = merge(profile_of(tmp_path, EXAMPLE), {"ticker": "SOL"}, RUN_DEFAULTS)
    assert (flags.ticker, flags.size, flags.direction) == ("SOL", None, "alternate")
    assert sources["SOL"]["size"] == DEFAULT_SOURCE


def test_per_pair_sizes_typed_override_the_tables(tmp_path: Path) -> None:
    flags, sources = merge(profile_of(tmp_path, EXAMPLE), {"size": "BTC=0.01,ETH=0.2"}, {})
    assert [(f.ticker, f.size, f.max_position) for f in flags] == [
        ("BTC", "0.01", None),
        ("ETH", "0.2", "0.1"),
    ]
    assert sources["ETH"]["size"] == FLAG_SOURCE
    assert sources["ETH"]["max_position"] == "profile [pairs.ETH]"


def test_one_typed_size_is_every_pairs_size(tmp_path: Path) -> None:
    flags, _ = merge(profile_of(tmp_path, EXAMPLE), {"size": "0.5"}, RUN_DEFAULTS)
    assert [f.size for f in flags] == ["0.5", "0.5"]


def test_per_pair_sizes_are_checked_as_without_a_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--size: no value for ETH"):
        merge(profile_of(tmp_path, EXAMPLE), {"size": "BTC=0.01"}, RUN_DEFAULTS)


def test_a_run_ticker_chooses_among_the_tables(tmp_path: Path) -> None:
    profile = profile_of(tmp_path, EXAMPLE.replace("[run]\n", "[run]\nticker = 'ETH'\n"))
    (flags,), sources = merge(profile, {}, RUN_DEFAULTS)
    assert (flags.ticker, flags.size) == ("ETH", "0.05")
    assert sources["ETH"]["ticker"] == RUN_SOURCE


def test_without_pairs_the_commands_ticker(tmp_path: Path) -> None:
    (flags,), sources = merge(profile_of(tmp_path, "[run]\nsize = 1\n"), {}, RUN_DEFAULTS)
    assert (flags.ticker, flags.size) == ("BTC", "1")
    assert sources["BTC"]["ticker"] == DEFAULT_SOURCE


def test_a_run_journal_cannot_serve_several_pairs(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE.replace("[run]\n", "[run]\njournal = 'j.sqlite'\n"))
    with pytest.raises(ConfigError, match=rf"^--config {re.escape(str(path))}: \[run\] journal"):
        merge(load_profile(path), {}, RUN_DEFAULTS)
    (flags,), _ = merge(load_profile(path), {"ticker": "BTC"}, RUN_DEFAULTS)
    assert flags.journal == "j.sqlite"


def test_a_journal_per_pair_is_fine(tmp_path: Path) -> None:
    profile = profile_of(tmp_path, EXAMPLE + "journal = 'eth.sqlite'\n")
    flags, _ = merge(profile, {}, RUN_DEFAULTS)
    assert [f.journal for f in flags] == [None, "eth.sqlite"]


def test_a_typed_journal_with_several_pairs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--journal names one journal"):
        merge(profile_of(tmp_path, EXAMPLE), {"journal": "x.sqlite"}, RUN_DEFAULTS)


def test_without_a_profile_it_is_split_pairs(tmp_path: Path) -> None:
    given = {"ticker": "BTC,ETH", "size": "BTC=1,ETH=2", "plain": True, "env_file": None}
    flags, sources = merge(None, given, {**DEMO_DEFAULTS, "seed": "0"})
    trading = {k: v for k, v in {**DEMO_DEFAULTS, **given}.items() if k in RUN_DEFAULTS}
    expected = split_pairs(TradingFlags(**trading))  # type: ignore[arg-type]
    assert flags == expected
    assert {s for pair in sources.values() for s in pair.values()} == {FLAG_SOURCE, DEFAULT_SOURCE}


def test_a_boolean_from_the_profile(tmp_path: Path) -> None:
    (flags,), sources = merge(profile_of(tmp_path, "[run]\nrebalance = true\n"), {}, {})
    assert flags.rebalance is True and sources["BTC"]["rebalance"] == RUN_SOURCE
    (flags,), _ = merge(profile_of(tmp_path, "[run]\nrebalance = true\n"), {"rebalance": False}, {})
    assert flags.rebalance is False


def test_extras_flag_then_run_then_nothing(tmp_path: Path) -> None:
    profile = profile_of(tmp_path, EXAMPLE)
    values, sources = extras(profile, {"metrics_port": "9200", "ticker": "BTC"})
    assert values == {
        "max_net_usd": "500",
        "notify": ["json://localhost:1/alerts"],
        "notify_summary": None,
        "metrics_port": "9200",
    }
    assert sources == {
        "max_net_usd": RUN_SOURCE,
        "notify": RUN_SOURCE,
        "notify_summary": DEFAULT_SOURCE,
        "metrics_port": FLAG_SOURCE,
    }
    assert extras(None, {})[0] == dict.fromkeys(values)


# -- errors about merged values, and showing the sources -------------------------------------


def test_blame_names_the_table_of_a_bad_value(tmp_path: Path) -> None:
    path = write(tmp_path, "[run]\niterations = 0\n[pairs.BTC]\nsize = 'lots'\n")
    profile = load_profile(path)
    (flags,), sources = merge(profile, {"direction": "up"}, RUN_DEFAULTS)
    with pytest.raises(ConfigError) as caught:
        load_settings(flags, mode=Mode.CHECK, env={})
    lines = str(blame(caught.value, sources["BTC"], profile)).splitlines()
    assert [line.split()[0] for line in lines] == ["--size", "--iterations", "--direction"]
    assert lines[0].endswith(f" (set in {path} [pairs.BTC])")
    assert lines[1].endswith(f" (set in {path} [run])")
    assert "(set in" not in lines[2]  # typed: the user knows where it came from


def test_blame_without_a_profile_is_the_error() -> None:
    error = ConfigError("--size 'x': bad")
    assert blame(error, {"size": FLAG_SOURCE}, None) is error


def test_source_rows_and_table(tmp_path: Path) -> None:
    flags, sources = merge(profile_of(tmp_path, EXAMPLE), {"sleep": "2"}, RUN_DEFAULTS)
    rows = source_rows(flags[1], sources["ETH"])
    assert rows[:3] == [
        ("--ticker", "ETH", "profile [pairs.ETH]"),
        ("--size", "0.05", "profile [pairs.ETH]"),
        ("--max-position", "0.1", "profile [pairs.ETH]"),
    ]
    assert ("--sleep", "2", FLAG_SOURCE) in rows
    assert ("--journal", "-", DEFAULT_SOURCE) in rows
    assert ("--rebalance", "false", DEFAULT_SOURCE) in rows
    console = Console(record=True, width=120)
    console.print(sources_table(flags[1], sources["ETH"]))
    text = console.export_text()
    assert "ETH: where each setting came from" in text
    assert "profile [run]" in text and "--min-edge-bps" in text


# -- the command line (a small typer app: runbot.py is not wired yet) ------------------------

probe = typer.Typer()
SEEN: list[Resolved] = []


@probe.command()
def trade(
    ctx: typer.Context,
    ticker: Annotated[str, typer.Option("--ticker")] = "BTC",
    size: Annotated[str | None, typer.Option("--size")] = None,
    iterations: Annotated[str, typer.Option("--iterations", envvar="PROBE_ITERATIONS")] = "1",
    direction: Annotated[str, typer.Option("--direction")] = "buy",
    max_net_usd: Annotated[str | None, typer.Option("--max-net-usd")] = None,
    config: Annotated[Path | None, typer.Option("--config")] = None,
) -> None:
    SEEN.append(from_command(ctx, locals()))


def invoke(*args: str, env: dict[str, str] | None = None) -> Resolved:
    SEEN.clear()
    result = CliRunner().invoke(probe, list(args), env=env)
    assert result.exit_code == 0, result.output
    return SEEN[-1]


def test_from_command_typed_flags_beat_the_profile(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    chosen = invoke("--config", str(path), "--iterations", "1", "--max-net-usd", "50")
    assert [(f.ticker, f.size, f.iterations, f.direction) for f in chosen.flags] == [
        ("BTC", "0.002", "1", "alternate"),
        ("ETH", "0.05", "1", "alternate"),
    ]
    assert chosen.sources["BTC"]["iterations"] == FLAG_SOURCE  # typed, though equal to default
    assert chosen.extras["max_net_usd"] == "50" and chosen.extras["notify"] is not None
    assert chosen.profile is not None and chosen.profile.path == path


def test_from_command_an_environment_variable_counts_as_typed(tmp_path: Path) -> None:
    chosen = invoke("--config", str(write(tmp_path, EXAMPLE)), env={"PROBE_ITERATIONS": "7"})
    assert chosen.flags[0].iterations == "7"
    assert chosen.sources["BTC"]["iterations"] == FLAG_SOURCE


def test_from_command_without_a_profile() -> None:
    chosen = invoke("--ticker", "eth", "--size", "1")
    assert chosen.profile is None
    assert [(f.ticker, f.size, f.iterations) for f in chosen.flags] == [("eth", "1", "1")]
    assert chosen.sources["ETH"]["size"] == FLAG_SOURCE
    assert chosen.sources["ETH"]["iterations"] == DEFAULT_SOURCE


def test_resolved_blame_by_pair_and_account(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    chosen = invoke("--config", str(path))
    error = chosen.blame(ConfigError("--size '0.05': too small"), "eth")
    assert str(error) == f"--size '0.05': too small (set in {path} [pairs.ETH])"
    error = chosen.blame(ConfigError("--max-net-usd '500': bad"))
    assert str(error) == f"--max-net-usd '500': bad (set in {path} [run])"


def test_resolved_each_and_blamed(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE.replace("size = 0.05", "size = 'lots'"))
    chosen = invoke("--config", str(path))

    def build(flags: TradingFlags) -> Decimal:
        return load_settings(flags, mode=Mode.CHECK, env={}).size

    assert chosen.each(lambda f: f.ticker) == ["BTC", "ETH"]
    with pytest.raises(ConfigError, match=rf"--size 'lots'.* \(set in {re.escape(str(path))} "):
        chosen.each(build)
    with pytest.raises(ConfigError, match=r"\(set in .* \[run\]\)$"), chosen.blamed():
        raise ConfigError("--notify 'x': bad")
    with pytest.raises(ConfigError, match=r"^--notify-summary 'x': bad$"), chosen.blamed():
        raise ConfigError("--notify-summary 'x': bad")  # not from the profile: unchanged

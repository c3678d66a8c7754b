"""Settings validation: one line per problem, naming the flag or variable, never the secret."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path

import pytest

from exchanges.base import ConfigError
from hedge.config import Direction, Mode, Secret, TradingFlags, load_settings, read_env

BP_PUBLIC = base64.b64encode(bytes(range(32))).decode()
BP_SECRET = base64.b64encode(bytes(range(32, 64))).decode()
LT_KEY = "0x" + "ab" * 40
GOOD_ENV = {
    "BACKPACK_PUBLIC_KEY": BP_PUBLIC,
    "BACKPACK_SECRET_KEY": BP_SECRET,
    "LIGHTER_API_PRIVATE_KEY": LT_KEY,
    "LIGHTER_ACCOUNT_INDEX": "7",
    "LIGHTER_API_KEY_INDEX": "2",
}


def settings(env: dict[str, str] | None = None, mode: Mode = Mode.LIVE, **flags: str):
    values = {"size": "0.01", **flags}
    return load_settings(TradingFlags(**values), mode=mode, env=GOOD_ENV if env is None else env)


def problems(env: dict[str, str] | None = None, mode: Mode = Mode.LIVE, **flags: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings(env, mode, **flags)
    return str(info.value).splitlines()


def test_valid_live_settings_resolve_with_defaults() -> None:
    s = settings()
    assert s.ticker == "BTC" and s.size == Decimal("0.01") and s.max_position == Decimal("0.01")
    assert s.iterations == 1 and s.direction is Direction.BUY
    assert s.lighter_account_index == 7 and s.lighter_api_key_index == 2
    assert s.backpack_symbol == "BTC_USDC_PERP"
    assert s.lighter_private_key == Secret("ab" * 40)  # 0x stripped
    assert s.has_keys()


def test_ticker_is_upper_cased() -> None:
    assert settings(ticker="eth").ticker == "ETH"


@pytest.mark.parametrize("flag", ["size", "max_position"])
@pytest.mark.parametrize("value", ["-1", "0", "abc", "NaN", "Infinity", ""])
def test_sizes_must_be_positive_decimals(flag: str, value: str) -> None:
    lines = problems(**{flag: value})
    assert len(lines) == 1
    assert lines[0].startswith("--" + flag.replace("_", "-"))


def test_size_is_required() -> None:
    with pytest.raises(ConfigError, match="--size: required"):
        load_settings(TradingFlags(), mode=Mode.LIVE, env=GOOD_ENV)


def test_max_position_below_size_is_refused() -> None:
    assert problems(size="0.02", max_position="0.01")[0].startswith("--max-position")


@pytest.mark.parametrize("value", ["B-TC", "BTC/USDC", "", "₿"])
def test_ticker_must_be_letters_and_digits(value: str) -> None:
    assert problems(ticker=value)[0].startswith("--ticker")


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "x"])
def test_iterations_must_be_at_least_one(value: str) -> None:
    assert problems(iterations=value) == [problems(iterations=value)[0]]
    assert problems(iterations=value)[0].startswith("--iterations")


def test_direction_must_be_one_of_three() -> None:
    assert problems(direction="up") == ["--direction 'up': expected one of buy | sell | alternate"]
    assert settings(direction="ALTERNATE").direction is Direction.ALTERNATE


@pytest.mark.parametrize("flag", ["fill_timeout", "hedge_timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_timeouts_must_be_positive(flag: str, value: str) -> None:
    assert problems(**{flag: value})[0].startswith("--" + flag.replace("_", "-"))


def test_sleep_may_be_zero_but_not_negative() -> None:
    assert settings(sleep="0").sleep == 0
    assert problems(sleep="-1")[0].startswith("--sleep")


@pytest.mark.parametrize(("flag", "value"), [("requote_ticks", "0"), ("maker_ticks", "-2")])
def test_tick_counts_must_be_at_least_one(flag: str, value: str) -> None:
    assert problems(**{flag: value})[0].startswith("--" + flag.replace("_", "-"))


@pytest.mark.parametrize("value", ["0", "-5", "1001", "lots"])
def test_slippage_bounds(value: str) -> None:
    assert problems(max_slippage_bps=value)[0].startswith("--max-slippage-bps")


def test_several_flag_problems_are_reported_together() -> None:
    lines = problems(iterations="0", direction="up")
    assert [line.split()[0] for line in lines] == ["--iterations", "--direction"]


SECRET_GARBAGE = "this-is-my-private-garbage-value"


@pytest.mark.parametrize("name", ["BACKPACK_PUBLIC_KEY", "BACKPACK_SECRET_KEY"])
def test_backpack_keys_must_be_base64_of_32_bytes(name: str) -> None:
    lines = problems({**GOOD_ENV, name: SECRET_GARBAGE})
    assert lines == [f"{name}: is not valid base64 (expected base64 of a 32-byte ED25519 key)"]
    short = base64.b64encode(b"x" * 16).decode()
    (line,) = problems({**GOOD_ENV, name: short})
    assert line.startswith(name) and "16 bytes" in line and short not in line


@pytest.mark.parametrize("bad", [SECRET_GARBAGE, "0x" + "ab" * 39, "zz" * 40, "ab" * 41])
def test_lighter_key_must_be_80_hex_digits(bad: str) -> None:
    (line,) = problems({**GOOD_ENV, "LIGHTER_API_PRIVATE_KEY": bad})
    assert line.startswith("LIGHTER_API_PRIVATE_KEY") and bad not in line


def test_lighter_key_without_0x_prefix_is_accepted() -> None:
    s = settings({**GOOD_ENV, "LIGHTER_API_PRIVATE_KEY": "AB" * 40})
    assert s.lighter_private_key is not None


@pytest.mark.parametrize("name", ["LIGHTER_ACCOUNT_INDEX", "LIGHTER_API_KEY_INDEX"])
@pytest.mark.parametrize("value", ["-1", "1.5", "seven", "²"])
def test_indices_must_be_non_negative_integers(name: str, value: str) -> None:
    (line,) = problems({**GOOD_ENV, name: value})
    assert line.startswith(name)


def test_live_mode_names_every_missing_key_in_one_line() -> None:
    (line,) = problems({})
    for name in GOOD_ENV:
        assert name in line
    assert "--dry-run" in line


@pytest.mark.parametrize("mode", [Mode.DRY_RUN, Mode.DEMO])
def test_keys_are_optional_outside_live(mode: Mode) -> None:
    s = settings({}, mode)
    assert not s.has_keys()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKPACK_API_URL", "ftp://x"),
        ("BACKPACK_WS_URL", "https://ws.example"),
        ("LIGHTER_API_URL", "not a url"),
        ("LIGHTER_WS_URL", "http://127.0.0.1:1/stream"),
    ],
)
def test_urls_must_have_the_right_scheme(name: str, value: str) -> None:
    (line,) = problems({**GOOD_ENV, name: value})
    assert line.startswith(name)


def test_backpack_api_url_gets_its_trailing_slash() -> None:
    s = settings({**GOOD_ENV, "BACKPACK_API_URL": "http://127.0.0.1:9000"})
    assert s.backpack_api_url == "http://127.0.0.1:9000/"


def test_secrets_never_show_in_repr_or_str() -> None:
    s = settings()
    text = repr(s) + str(s)
    for value in (BP_PUBLIC, BP_SECRET, "ab" * 40):
        assert value not in text
    assert "Secret(***)" in text


def test_perp_dex_tools_alias_is_accepted_with_a_notice(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LIGHTER_API_PRIVATE_KEY", raising=False)
    env_file = tmp_path / "pdt.env"
    env_file.write_text(f"API_KEY_PRIVATE_KEY={LT_KEY}\n")
    merged, notices = read_env(env_file, explicit=True)
    assert merged["LIGHTER_API_PRIVATE_KEY"] == LT_KEY
    assert notices == [
        "note: using API_KEY_PRIVATE_KEY (perp-dex-tools name) as LIGHTER_API_PRIVATE_KEY"
    ]


def test_explicit_env_file_overrides_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LIGHTER_API_URL", "https://from-environment.example")
    env_file = tmp_path / "x.env"
    env_file.write_text("LIGHTER_API_URL=http://127.0.0.1:9999\n")
    assert read_env(env_file, explicit=True)[0]["LIGHTER_API_URL"] == "http://127.0.0.1:9999"
    # the implicit default .env loses to the environment, as python-dotenv does
    assert read_env(env_file, explicit=False)[0]["LIGHTER_API_URL"] == (
        "https://from-environment.example"
    )


def test_missing_explicit_env_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        read_env(tmp_path / "absent.env", explicit=True)
    assert read_env(tmp_path / "absent.env", explicit=False)[1] == []


def test_default_journal_path_is_per_ticker_and_date() -> None:
    s = settings(ticker="ETH", log_dir="somewhere")
    assert s.journal.parent == Path("somewhere")
    assert s.journal.name.startswith("ETH-") and s.journal.suffix == ".sqlite"


def test_request_budgets_default_to_the_standard_tier_and_backpacks_2000() -> None:
    s = settings()
    assert (s.lighter_account_tier, s.backpack_rate_limit) == ("standard", 2000)
    s = settings({**GOOD_ENV, "LIGHTER_ACCOUNT_TIER": "Premium", "BACKPACK_RATE_LIMIT": "600"})
    assert (s.lighter_account_tier, s.backpack_rate_limit) == ("premium", 600)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIGHTER_ACCOUNT_TIER", "unlimited"),
        ("BACKPACK_RATE_LIMIT", "0"),
        ("BACKPACK_RATE_LIMIT", "x"),
    ],
)
def test_a_bad_budget_setting_is_one_line_naming_it(name: str, value: str) -> None:
    [line] = problems({**GOOD_ENV, name: value})
    assert line.startswith(name + ":")


def test_a_key_pasted_into_the_tier_is_not_echoed() -> None:
    [line] = problems({**GOOD_ENV, "LIGHTER_ACCOUNT_TIER": LT_KEY})
    assert LT_KEY not in line and "ab" * 40 not in line


KEY_PLANTS = {
    "raw": "s3cr3tK3yPaSTED-" + "Zq9" * 12,
    "hex": "0x" + "9f3e" * 20,
    "base64": base64.b64encode(b"planted-secret-" * 3).decode(),
}
ENV_VARIABLES = [
    "LIGHTER_ACCOUNT_INDEX",
    "LIGHTER_API_KEY_INDEX",
    "BACKPACK_API_URL",
    "BACKPACK_WS_URL",
    "LIGHTER_API_URL",
    "LIGHTER_WS_URL",
    "LIGHTER_ACCOUNT_TIER",
    "BACKPACK_RATE_LIMIT",
    "BACKPACK_PUBLIC_KEY",
    "BACKPACK_SECRET_KEY",
    "LIGHTER_API_PRIVATE_KEY",
]


@pytest.mark.parametrize("kind", sorted(KEY_PLANTS))
@pytest.mark.parametrize("name", ENV_VARIABLES)
def test_a_key_pasted_into_any_variable_is_never_echoed(name: str, kind: str) -> None:
    planted = KEY_PLANTS[kind]
    try:
        settings({**GOOD_ENV, name: planted})
    except ConfigError as error:
        text = str(error)
        assert text.startswith(name), text
    else:  # accepted (a key that is also valid where it was put): nothing printed at all
        return
    fragments = {planted[i : i + 12] for i in range(len(planted) - 11)}
    assert not any(fragment in text for fragment in fragments), text

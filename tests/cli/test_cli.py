"""The command line as a user meets it: exit codes, one-line errors, no tracebacks, no secrets."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "my-very-secret-garbage-value-123"


def run_cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKPACK_", "LIGHTER_"))}
    env.pop("API_KEY_PRIVATE_KEY", None)
    env.update(env_extra or {})
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, str(ROOT / "runbot.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_clean_failure(result, *, names: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert names in lines[0]


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "check" in result.stdout


def test_negative_size_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    assert_clean_failure(
        run_cli("check", "--ticker", "BTC", "--size", "-1", cwd=tmp_path), names="--size"
    )


def test_zero_iterations_is_refused(tmp_path: Path) -> None:
    assert_clean_failure(
        run_cli("check", "--size", "0.01", "--iterations", "0", cwd=tmp_path), names="--iterations"
    )


def test_unknown_direction_is_refused(tmp_path: Path) -> None:
    assert_clean_failure(
        run_cli("check", "--size", "0.01", "--direction", "up", cwd=tmp_path), names="--direction"
    )


def test_missing_live_keys_are_named(tmp_path: Path) -> None:
    result = run_cli("check", "--size", "0.01", cwd=tmp_path)
    assert_clean_failure(result, names="BACKPACK_SECRET_KEY")


def test_garbage_secret_in_env_file_is_named_but_never_echoed(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    good = base64.b64encode(bytes(32)).decode()
    env_file.write_text(
        f"BACKPACK_PUBLIC_KEY={good}\nBACKPACK_SECRET_KEY={SECRET}\n"
        f"LIGHTER_API_PRIVATE_KEY={'ab' * 40}\nLIGHTER_ACCOUNT_INDEX=1\nLIGHTER_API_KEY_INDEX=2\n"
    )
    result = run_cli("check", "--size", "0.01", "--env-file", str(env_file), cwd=tmp_path)
    assert_clean_failure(result, names="BACKPACK_SECRET_KEY")
    assert SECRET not in result.stdout + result.stderr


def test_valid_check_shows_settings_without_secret_values(tmp_path: Path) -> None:
    public = base64.b64encode(bytes(range(32))).decode()
    secret = base64.b64encode(bytes(range(1, 33))).decode()
    env_file = tmp_path / "good.env"
    env_file.write_text(
        f"BACKPACK_PUBLIC_KEY={public}\nBACKPACK_SECRET_KEY={secret}\n"
        f"API_KEY_PRIVATE_KEY=0x{'cd' * 40}\nLIGHTER_ACCOUNT_INDEX=1\nLIGHTER_API_KEY_INDEX=2\n"
    )
    result = run_cli(
        "check", "--size", "0.01", "--env-file", str(env_file), "--no-connect", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Settings are valid" in result.stdout
    assert "BACKPACK_SECRET_KEY" in result.stdout and "set" in result.stdout
    for value in (public, secret, "cd" * 40):
        assert value not in result.stdout + result.stderr
    assert "perp-dex-tools" in result.stderr  # the alias notice


@pytest.mark.parametrize("args", [["check", "--size"], ["nonsense"]])
def test_usage_errors_exit_2_without_traceback(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr


def test_version_prints_the_version_and_exits_0(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"hedgebot {version('hedgebot')}"


def test_status_and_report_take_the_live_journal_of_the_pair_not_another_modes(
    tmp_path: Path,
) -> None:
    from hedge.ops import latest_journal

    logs = tmp_path / "logs"
    logs.mkdir()
    written = iter(range(1_000_000, 2_000_000, 10))  # mtimes in order, whatever the clock

    def write(name: str) -> None:
        (logs / f"{name}.sqlite").touch()
        at = next(written)
        os.utime(logs / f"{name}.sqlite", (at, at))

    for name in ("BTC-demo-20261130-101010", "BTC-dry-20261130", "ETH-live-20261130"):
        write(name)
    assert latest_journal(logs, "BTC") is None  # a demo and a dry run: no live journal
    assert latest_journal(logs, "BTC", "dry") == logs / "BTC-dry-20261130.sqlite"
    assert latest_journal(logs, "BTC", "demo") == logs / "BTC-demo-20261130-101010.sqlite"
    write("BTC-20261129")  # a live journal named as before this version
    assert latest_journal(logs, "BTC") == logs / "BTC-20261129.sqlite"
    write("BTC-live-20261130")
    assert latest_journal(logs, "BTC") == logs / "BTC-live-20261130.sqlite"
    assert latest_journal(logs) == logs / "BTC-live-20261130.sqlite"  # the newest of any pair
    result = run_cli("report", "--ticker", "SOL", cwd=tmp_path)
    assert_clean_failure(result, names="no live journal found")

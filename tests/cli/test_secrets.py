"""G7 secrets: keys planted wherever a user could paste them never come back out.

Distinctive secrets are planted in every variable the bot reads, the right ones and the wrong
ones: a raw string, a hex Lighter key and base64 Backpack keys (one set the simulated venues
accept, one set they refuse). They arrive through the process environment, `--env-file` and a
`.env` in the working folder. Every command then runs in its own process with forced errors
(misplaced keys, refused keys, unreachable venues, a `.env` given as the journal, an exception
that quotes the keys, a kill -9 mid-trade) and, with the accepted keys, a real trading run.
Its stdout, stderr and every file it leaves behind (run logs, crash logs, the journal with its
-wal and -shm, the CSV trade log) are searched as bytes for any 12-character piece of any
planted secret: as planted, and its bytes re-spelled (hex in either case, base64, raw bytes).

The simulated venues run in this process, shared by the whole module; the CLI cases run
concurrently, each in its own folder, and each test below asserts on one of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exchanges.sim.runner import SimCluster, SimKeys, generate_lighter_key
from hedge.logsetup import SecretRedactor
from tests.sims import clusters_in_thread
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = 12  # the acceptance: no 12-character piece of a secret anywhere
HALF = FRAGMENT // 2
RAW = "Planted-RAW_secret.Kq7vLm2xWz9Tn4Yd8"
FORMS = ("raw", "hex", "base64")
SOURCES = ("environment", "env-file")
# Files this test writes itself (they hold the planted secrets on purpose): never scanned.
PLANTED_FILES = frozenset({"planted.env", ".env"})
KNOWN_VARIABLES = {
    "BACKPACK_PUBLIC_KEY",
    "BACKPACK_SECRET_KEY",
    "LIGHTER_API_PRIVATE_KEY",
    "API_KEY_PRIVATE_KEY",
    "LIGHTER_ACCOUNT_INDEX",
    "LIGHTER_API_KEY_INDEX",
    "BACKPACK_API_URL",
    "BACKPACK_WS_URL",
    "LIGHTER_API_URL",
    "LIGHTER_WS_URL",
    "LIGHTER_ACCOUNT_TIER",
    "BACKPACK_RATE_LIMIT",
}


def bot_variables() -> list[str]:
    """Every variable the bot reads: the ones .env.example documents and hedge/config.py names."""
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.MULTILINE)
    config = (ROOT / "hedge" / "config.py").read_text(encoding="utf-8")
    named = re.findall(r'"((?:BACKPACK|LIGHTER|API_KEY)_[A-Z0-9_]+)"', config)
    return sorted(set(documented) | set(named) | KNOWN_VARIABLES)


VARIABLES = bot_variables()
ALIASES = {"API_KEY_PRIVATE_KEY": "LIGHTER_API_PRIVATE_KEY"}


# -- the planted secrets ---------------------------------------------------------------------


def backpack_pair(label: str) -> tuple[str, str]:
    """(base64 public key, base64 seed) of an ED25519 key derived from `label`."""
    seed = hashlib.sha256(f"hedgebot secrets test: {label}".encode()).digest()
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw_public = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw_public).decode(), base64.b64encode(seed).decode()


@dataclass(frozen=True)
class Planted:
    """The module's secrets. The accepted ones are the simulated accounts' own keys."""

    bp_public: str
    bp_secret: str
    lt_key: str
    lt_public: str  # not a secret: the venue publishes it (and the bot may quote it)
    wrong_bp_public: str
    wrong_bp_secret: str
    wrong_lt_key: str  # upper case: a leak that lower-cases it is still a leak
    raw: str = RAW

    @classmethod
    def make(cls) -> Planted:
        bp_public, bp_secret = backpack_pair("accepted")
        wrong_public, wrong_secret = backpack_pair("refused")
        lt_key, lt_public = generate_lighter_key()
        digits = hashlib.sha512(b"hedgebot secrets test: refused lighter key").hexdigest()
        return cls(
            bp_public=bp_public,
            bp_secret=bp_secret,
            lt_key=lt_key,
            lt_public=lt_public,
            wrong_bp_public=wrong_public,
            wrong_bp_secret=wrong_secret,
            wrong_lt_key="0x" + digits[:80].upper(),
        )

    def secrets(self) -> dict[str, str]:
        return {
            "accepted BACKPACK_PUBLIC_KEY": self.bp_public,
            "accepted BACKPACK_SECRET_KEY": self.bp_secret,
            "accepted LIGHTER_API_PRIVATE_KEY": self.lt_key,
            "refused BACKPACK_PUBLIC_KEY": self.wrong_bp_public,
            "refused BACKPACK_SECRET_KEY": self.wrong_bp_secret,
            "refused LIGHTER_API_PRIVATE_KEY": self.wrong_lt_key,
            "raw secret": self.raw,
        }

    def form(self, name: str) -> str:
        return {"raw": self.raw, "hex": self.wrong_lt_key, "base64": self.wrong_bp_secret}[name]

    def accepted(self, venue_env: dict[str, str]) -> dict[str, str]:
        """Every variable of a working setup against the simulated venues."""
        return {**venue_env, "BACKPACK_RATE_LIMIT": "2000"}

    def refused(self, venue_env: dict[str, str]) -> dict[str, str]:
        return {
            **self.accepted(venue_env),
            "BACKPACK_PUBLIC_KEY": self.wrong_bp_public,
            "BACKPACK_SECRET_KEY": self.wrong_bp_secret,
            "LIGHTER_API_PRIVATE_KEY": self.wrong_lt_key,
        }

    def misplaced(self, form: str) -> dict[str, str]:
        """Every variable the bot reads holding the same planted secret."""
        return {name: self.form(form) for name in VARIABLES}


# -- the search for leaks ----------------------------------------------------------------------


def respellings(secret: str) -> dict[str, bytes]:
    """The secret as planted, and its bytes as hex, base64 and raw (when it decodes)."""
    spellings = {"as planted": secret.encode()}
    digits = secret[2:] if secret[:2].lower() == "0x" else secret
    raw: bytes | None = None
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", digits):
        raw = bytes.fromhex(digits)
    else:
        try:
            raw = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is not None:
        spellings |= {"hex": raw.hex().encode(), "base64": base64.b64encode(raw), "bytes": raw}
    return spellings


class Needles:
    """Every FRAGMENT-byte piece of every planted secret in every spelling, ASCII case-folded
    (so hex matches in either case); found in any bytes with a cheap first pass."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.pieces: dict[bytes, str] = {}
        for label, secret in secrets.items():
            for spelling, data in respellings(secret).items():
                folded = data.lower()
                for start in range(len(folded) - FRAGMENT + 1):
                    piece = folded[start : start + FRAGMENT]
                    self.pieces.setdefault(piece, f"{label} ({spelling})")
        self.halves = {p[i : i + HALF] for p in self.pieces for i in range(HALF + 1)}

    def find(self, where: str, data: bytes) -> list[str]:
        """One line per leak in `data`: which secret, where, and the bytes around it."""
        folded = data.lower()
        found: list[str] = []
        covered_to = -1  # one line per run of overlapping pieces, not one per piece
        # A FRAGMENT-long piece always holds a HALF-long one starting at a multiple of HALF.
        for chunk in range(0, len(folded) - HALF + 1, HALF):
            if folded[chunk : chunk + HALF] not in self.halves:
                continue
            for start in range(max(0, chunk - HALF), chunk + 1):
                label = self.pieces.get(folded[start : start + FRAGMENT])
                if label is None:
                    continue
                if start > covered_to:
                    context = data[max(0, start - 60) : start + FRAGMENT + 60]
                    found.append(f"{where} byte {start}: a piece of the {label}: {context!r}")
                covered_to = max(covered_to, start + FRAGMENT)
        return found


# -- one CLI case in its own process ---------------------------------------------------------

# `python -c INJECT args...`: the real CLI, except that one venue method logs the keys and then
# raises an exception quoting them, as a careless library could: `connect` of the Lighter venue
# (a failure before any order) or `place_post_only` of the Backpack venue (inside the engine).
INJECT = """
import logging, runpy, sys
sys.path.insert(0, {root!r})
import hedge.app

_build_venues = hedge.app.build_venues

def build_venues(settings, **options):
    venues = _build_venues(settings, **options)
    lighter_key = settings.lighter_private_key.reveal()
    backpack_secret = settings.backpack_secret_key.reveal()

    async def refuse(*args, **kwargs):
        logging.getLogger("signer").error("loading key %s for %s", lighter_key, backpack_secret)
        raise ValueError(
            f"key {{lighter_key.lower()}} refused (it starts {{lighter_key[:16]}}; "
            f"backpack {{backpack_secret}})"
        )

    setattr(venues[{venue}], {method!r}, refuse)
    return venues

hedge.app.build_venues = build_venues
sys.argv = ["runbot.py", *sys.argv[1:]]
runpy.run_path({runbot!r}, run_name="__main__")
"""
INJECTED_AT = {"connect": (1, "connect"), "first maker order": (0, "place_post_only")}


@dataclass(frozen=True)
class Case:
    """One command line, with the variables it finds and where it finds them."""

    args: tuple[str, ...]
    environ: dict[str, str] = field(default_factory=dict)
    env_file: dict[str, str] | None = None  # written to planted.env, given as --env-file
    dotenv: dict[str, str] | None = None  # written to .env in the working folder
    inject: str | None = None  # where an exception quoting the keys is raised (INJECTED_AT)
    # The exit codes that show the run went where the case sends it (empty: any). A run that
    # trades may also halt (3) on a loaded machine: what matters here is what it printed.
    expect: tuple[int, ...] = ()


@dataclass
class Outcome:
    name: str
    code: int
    stdout: bytes
    stderr: bytes
    files: dict[str, bytes]  # every file the command left in its folder, as it left it
    expect: tuple[int, ...] = ()
    seconds: float = 0.0

    def leaks(self, needles: Needles) -> list[str]:
        found = needles.find(f"{self.name}: stdout", self.stdout)
        found += needles.find(f"{self.name}: stderr", self.stderr)
        for path, data in sorted(self.files.items()):
            found += needles.find(f"{self.name}: file {path}", data)
        return found

    def describe(self) -> str:
        return (
            f"{self.name}: exit {self.code} after {self.seconds:.1f} s; "
            f"files {sorted(self.files)}\n"
            f"stdout: {self.stdout[-1500:].decode(errors='replace')}\n"
            f"stderr: {self.stderr[-1500:].decode(errors='replace')}"
        )


def process_env(planted: dict[str, str]) -> dict[str, str]:
    """This process's environment without any bot variable, plus `planted`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BACKPACK_", "LIGHTER_")) and k not in VARIABLES
    }
    # Wide enough that no table wraps a value: a secret split across lines could hide.
    env |= {"COLUMNS": "400", "PYTHONUNBUFFERED": "1", **planted}
    return env


def write_env(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in PLANTED_FILES
    }


def command(case: Case, folder: Path) -> list[str]:
    args = list(case.args)
    if case.env_file is not None:
        write_env(folder / "planted.env", case.env_file)
        args += ["--env-file", str(folder / "planted.env")]
    if case.dotenv is not None:
        write_env(folder / ".env", case.dotenv)
    if case.inject is not None:
        venue, method = INJECTED_AT[case.inject]
        code = INJECT.format(
            root=str(ROOT), runbot=str(ROOT / "runbot.py"), venue=venue, method=method
        )
        return [sys.executable, "-c", code, *args]
    return [sys.executable, str(ROOT / "runbot.py"), *args]


def run_case(name: str, case: Case, folder: Path) -> Outcome:
    """Run `case` in `folder` (its working directory, so crash logs land there too)."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = command(case, folder)
    started = time.monotonic()
    result = subprocess.run(
        argv, cwd=folder, env=process_env(case.environ), capture_output=True, timeout=120
    )
    seconds = time.monotonic() - started
    files = snapshot(folder)
    return Outcome(
        name, result.returncode, result.stdout, result.stderr, files, case.expect, seconds
    )


# -- the cases -------------------------------------------------------------------------------

SIZE = ("--size", "0.002")
TRADED = (0, 3)  # done, or halted with the legs balanced
# bbo quoting: these cases are about secrets, and edge mode may wait a minute for the basis.
FAST = ("--fill-timeout", "3", "--hedge-timeout", "2", "--sleep", "0", "--quote-mode", "bbo")
PLAIN_LOGS = ("--plain", "--log-dir", "logs")  # inside the case's folder: scanned
ENV_COMMANDS: dict[str, tuple[str, ...]] = {
    "check": ("check", *SIZE),
    "check --no-connect": ("check", *SIZE, "--no-connect"),
    "check --dry-run": ("check", *SIZE, "--dry-run"),
    "run": ("run", *SIZE, "--iterations", "1", *FAST, *PLAIN_LOGS),
    "run --dry-run": ("run", *SIZE, "--iterations", "1", *FAST, *PLAIN_LOGS, "--dry-run"),
    "status": ("status",),
    "flatten": ("flatten", "--yes"),
}
# How each command meets the keys. Every one: every variable holding one planted secret
# (raw from the environment, hex from .env, base64 from --env-file), and unreachable venues.
# Refused keys where the command uses keys (a dry run does not: there refused = accepted), and
# accepted keys where the trading run below does not already run the command (one dry run).
EVERY_COMMAND = ("misplaced raw", "misplaced hex", "misplaced base64", "unreachable")
COMMAND_KINDS: dict[str, tuple[str, ...]] = {
    "check": (*EVERY_COMMAND, "refused", "accepted"),
    "check --dry-run": EVERY_COMMAND,
    "run": (*EVERY_COMMAND, "refused"),
    "run --dry-run": (*EVERY_COMMAND, "accepted"),
    "status": (*EVERY_COMMAND, "refused"),
    "flatten": (*EVERY_COMMAND, "refused"),
}
COMMAND_CASES = [
    f"{command} | {kind}" for command, kinds in COMMAND_KINDS.items() for kind in kinds
]
OTHER_CASES = (
    "--help",
    "--version",
    "report | no such journal",
    "report | the .env given as the journal",
    "status | the .env given as the journal",
    "demo | one iteration",
    "demo | unknown ticker",
    "sim | port out of range",
)
INJECTED_CASES = (
    "status | connect",
    "run | connect",
    "run | first maker order",
)
# Whichever the source, the same values reach the settings: the venues' answer to a wrong key
# is asked once, from --env-file; from the environment, `check --no-connect` shows the settings.
CHECK_FROM = {"environment": "check --no-connect", "env-file": "check"}
VARIABLE_CASES = [
    f"{CHECK_FROM[source]} | {variable} | {form} | {source}"
    for variable in VARIABLES
    for form in FORMS
    for source in SOURCES
]
TRADING_STAGES = (
    "run killed mid-trade",
    "run restarted on its journal",
    "status",
    "report",
    "report --json",
    "flatten",
)


def variable_case(name: str, planted: Planted, venue_env: dict[str, str]) -> Case:
    """`check` of a setup for the simulated venues with one variable holding a planted secret."""
    command, variable, form, source = name.split(" | ")
    values = planted.accepted(venue_env)
    values.pop(ALIASES.get(variable, ""), None)  # an alias is read only when its name is unset
    values[variable] = planted.form(form)
    if source == "environment":
        return Case(ENV_COMMANDS[command], environ=values)
    return Case(ENV_COMMANDS[command], env_file=values)


def command_case(name: str, planted: Planted, venue_env: dict[str, str], port: int) -> Case:
    command, kind = name.split(" | ")
    args = ENV_COMMANDS[command]
    if kind.startswith("misplaced"):
        values = planted.misplaced(kind.split()[1])
        if kind.endswith("raw"):
            return Case(args, environ=values, expect=(2,))
        if kind.endswith("hex"):
            return Case(args, dotenv=values, expect=(2,))
        return Case(args, env_file=values, environ={"API_KEY_PRIVATE_KEY": RAW}, expect=(2,))
    if kind == "refused":
        values = planted.refused(venue_env)
        return Case(args, env_file=values, environ={"API_KEY_PRIVATE_KEY": RAW})
    if kind == "unreachable":
        values = planted.accepted(venue_env)
        values |= {
            "BACKPACK_API_URL": f"http://127.0.0.1:{port}/",
            "BACKPACK_WS_URL": f"ws://127.0.0.1:{port}",
            "LIGHTER_API_URL": f"http://127.0.0.1:{port}",
            "LIGHTER_WS_URL": f"ws://127.0.0.1:{port}/stream",
        }
        return Case(args, environ=values)
    return Case(args, dotenv=planted.accepted(venue_env), expect=TRADED if "run" in args else (0,))


def other_case(name: str, planted: Planted) -> Case:
    """Commands that read no key: the planted variables are around them all the same."""
    around = {"environ": planted.misplaced("raw"), "dotenv": planted.misplaced("hex")}
    cases = {
        "--help": Case(("--help",), expect=(0,), **around),
        "--version": Case(("--version",), **around),
        "report | no such journal": Case(("report", "--journal", "none.sqlite"), **around),
        "report | the .env given as the journal": Case(("report", "--journal", ".env"), **around),
        "status | the .env given as the journal": Case(("status", "--journal", ".env"), **around),
        "demo | one iteration": Case(
            ("demo", "--iterations", "1", *PLAIN_LOGS),
            expect=TRADED,
            **around,
        ),
        "demo | unknown ticker": Case(("demo", "--ticker", "ZZZ"), expect=(2,), **around),
        "sim | port out of range": Case(
            ("sim", "--backpack-port", "70000", "--write-env", "sim.env"), **around
        ),
    }
    return cases[name]


def injected_case(name: str, planted: Planted, venue_env: dict[str, str]) -> Case:
    command, where = name.split(" | ")
    return Case(ENV_COMMANDS[command], env_file=planted.accepted(venue_env), inject=where)


# -- the trading run: kill -9 mid-trade, restart, then the account commands -----------------


def trading_run(planted: Planted, venue_env: dict[str, str], folder: Path) -> dict[str, Outcome]:
    """A run killed after its first hedged fill (the journal's WAL still open), a restart on
    the same journal, then status, report and flatten: one folder, scanned after each."""
    folder.mkdir(parents=True)
    write_env(folder / "planted.env", planted.accepted(venue_env))
    environ = process_env({"API_KEY_PRIVATE_KEY": RAW})
    base = ["--env-file", "planted.env"]
    journal = ["--journal", "journal.sqlite"]
    trade = [*SIZE, *FAST, *PLAIN_LOGS, *journal, *base]
    outcomes = {"run killed mid-trade": killed_run(folder, [*trade, "--iterations", "50"])}

    def step(stage: str, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, str(ROOT / "runbot.py"), *args],
            cwd=folder,
            env=environ,
            capture_output=True,
            timeout=120,
        )
        files = snapshot(folder)
        outcomes[stage] = Outcome(stage, result.returncode, result.stdout, result.stderr, files)

    step("run restarted on its journal", "run", *trade, "--iterations", "1", "--rebalance")
    step("status", "status", *journal, *base)
    step("report", "report", *journal)
    step("report --json", "report", *journal, "--json")
    step("flatten", "flatten", "--yes", *base)
    return outcomes


def killed_run(folder: Path, args: list[str]) -> Outcome:
    out_path, err_path = folder.parent / "killed.stdout", folder.parent / "killed.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        bot = subprocess.Popen(
            [sys.executable, str(ROOT / "runbot.py"), "run", *args],
            cwd=folder,
            env=process_env({"API_KEY_PRIVATE_KEY": RAW}),
            stdout=out,
            stderr=err,
        )
        try:
            wait_until(lambda: b"hedge fill" in err_path.read_bytes(), 60, "a hedged fill")
            wait_until(lambda: (folder / "journal.sqlite-wal").exists(), 10, "the journal's WAL")
        except AssertionError as exc:
            tail = err_path.read_bytes()[-2000:].decode(errors="replace")
            raise AssertionError(f"{exc}; exit {bot.poll()}; the bot's stderr:\n{tail}") from None
        finally:
            bot.send_signal(signal.SIGKILL)
            bot.wait(10)
    files = snapshot(folder)
    return Outcome("run killed mid-trade", -9, out_path.read_bytes(), err_path.read_bytes(), files)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted() -> Planted:
    return Planted.make()


@pytest.fixture(scope="module")
def needles(planted: Planted) -> Needles:
    return Needles(planted.secrets())


@pytest.fixture(scope="module")
def venues(planted: Planted) -> Iterator[dict[str, dict[str, str]]]:
    """Two simulated Backpack + Lighter pairs that accept the planted keys, in a thread of
    this process: one for the trading run alone, one for every other case."""
    keys = SimKeys(planted.bp_public, planted.bp_secret, planted.lt_key, planted.lt_public)
    clusters = {
        "trading": SimCluster(seed=11, fill_rate=4.0, keys=keys),
        "errors": SimCluster(seed=12, keys=keys),
    }
    with clusters_in_thread(list(clusters.values())) as envs:
        yield dict(zip(clusters, envs, strict=True))


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def outcomes(
    planted: Planted,
    venues: dict[str, dict[str, str]],
    closed_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Outcome]:
    """Every case of this module, run concurrently (most of them wait on a socket)."""
    root = tmp_path_factory.mktemp("secrets")
    errors = venues["errors"]
    cases: dict[str, Case] = {}
    cases |= {name: variable_case(name, planted, errors) for name in VARIABLE_CASES}
    cases |= {name: command_case(name, planted, errors, closed_port) for name in COMMAND_CASES}
    cases |= {name: other_case(name, planted) for name in OTHER_CASES}
    cases |= {f"injected | {c}": injected_case(c, planted, errors) for c in INJECTED_CASES}
    with ThreadPoolExecutor(4) as pool:
        trading = pool.submit(trading_run, planted, venues["trading"], root / "trading")
        futures = {
            name: pool.submit(run_case, name, case, root / f"case-{number}")
            for number, (name, case) in enumerate(cases.items())
        }
        results = {name: future.result() for name, future in futures.items()}
        results |= {f"trading | {k}": v for k, v in trading.result().items()}
    return results


def assert_no_leak(outcome: Outcome, needles: Needles) -> None:
    leaks = outcome.leaks(needles)
    assert not leaks, "secret pieces found:\n" + "\n".join(leaks[:10])


def assert_exit(outcome: Outcome) -> None:
    if outcome.expect:
        assert outcome.code in outcome.expect, outcome.describe()


# -- the tests -------------------------------------------------------------------------------


def test_every_variable_the_bot_reads_gets_a_planted_secret() -> None:
    assert set(VARIABLES) >= KNOWN_VARIABLES
    assert len(VARIABLE_CASES) == len(VARIABLES) * len(FORMS) * len(SOURCES)


@pytest.mark.parametrize("name", VARIABLE_CASES)
def test_a_secret_in_any_variable_is_never_shown(
    name: str, outcomes: dict[str, Outcome], needles: Needles
) -> None:
    assert_no_leak(outcomes[name], needles)


@pytest.mark.parametrize("name", COMMAND_CASES)
def test_every_command_with_wrong_keys_or_unreachable_venues_shows_no_secret(
    name: str, outcomes: dict[str, Outcome], needles: Needles
) -> None:
    outcome = outcomes[name]
    assert_exit(outcome)
    assert_no_leak(outcome, needles)


@pytest.mark.parametrize("name", OTHER_CASES)
def test_commands_that_read_no_key_show_none_of_the_planted_ones(
    name: str, outcomes: dict[str, Outcome], needles: Needles
) -> None:
    outcome = outcomes[name]
    assert_exit(outcome)
    assert_no_leak(outcome, needles)


@pytest.mark.parametrize(
    "name",
    [name for name in INJECTED_CASES],
)
def test_an_exception_quoting_the_keys_is_redacted_everywhere(
    name: str, outcomes: dict[str, Outcome], needles: Needles
) -> None:
    outcome = outcomes[f"injected | {name}"]
    assert outcome.code != 0, outcome.describe()
    assert_no_leak(outcome, needles)


def test_the_injected_exception_writes_a_crash_log_that_is_searched(
    outcomes: dict[str, Outcome],
) -> None:
    outcome = outcomes["injected | status | connect"]
    assert any("crash" in path for path in outcome.files), outcome.describe()


@pytest.mark.parametrize("stage", TRADING_STAGES)
def test_a_trading_run_killed_and_restarted_leaves_no_secret(
    stage: str, outcomes: dict[str, Outcome], needles: Needles
) -> None:
    assert_no_leak(outcomes[f"trading | {stage}"], needles)


def test_the_trading_run_wrote_what_is_searched(outcomes: dict[str, Outcome]) -> None:
    killed = outcomes["trading | run killed mid-trade"].files
    assert killed.get("journal.sqlite-wal"), sorted(killed)  # the WAL, not yet checkpointed
    restarted = outcomes["trading | run restarted on its journal"]
    assert restarted.code in TRADED, restarted.describe()
    files = restarted.files
    assert "journal.sqlite" in files
    assert any(path.endswith(".csv") for path in files), sorted(files)
    assert any(path.endswith(".log") for path in files), sorted(files)
    assert b"maker fill" in b"".join(data for path, data in files.items() if ".log" in path)


def test_sim_serving_with_planted_variables_around_shows_none(
    planted: Planted, needles: Needles, tmp_path: Path
) -> None:
    write_env(tmp_path / ".env", planted.misplaced("base64"))
    out_path = tmp_path.parent / f"{tmp_path.name}.out"
    with out_path.open("wb") as out:
        sim = subprocess.Popen(
            [sys.executable, str(ROOT / "runbot.py"), "sim", "--write-env", "sim.env"],
            cwd=tmp_path,
            env=process_env(planted.misplaced("raw")),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: b"Ctrl-C" in out_path.read_bytes(), 30, "the sim's banner")
        finally:
            sim.send_signal(signal.SIGINT)
            try:
                code = sim.wait(30)
            except subprocess.TimeoutExpired:
                sim.kill()
                raise
    outcome = Outcome("sim", code, out_path.read_bytes(), b"", snapshot(tmp_path))
    assert "sim.env" in outcome.files, outcome.describe()
    assert_no_leak(outcome, needles)


# -- the log redactor (hedge/logsetup.py), the last line of defence ------------------------


def test_the_redactor_hides_every_spelling_and_piece_of_a_registered_key(
    planted: Planted, needles: Needles
) -> None:
    redactor = SecretRedactor()
    redactor.add(planted.wrong_lt_key[2:])  # as Settings holds it: the digits
    redactor.add(planted.bp_secret)
    seed = base64.b64decode(planted.bp_secret)
    text = (
        f"key {planted.wrong_lt_key} lower {planted.wrong_lt_key.lower()} "
        f"prefix {planted.wrong_lt_key[2:18]}... seed {seed.hex()} "
        f"base64 {planted.bp_secret} tail {planted.bp_secret[-14:]} order=1796011070 ok"
    )

    redacted = redactor.redact(text)

    assert needles.find("redacted", redacted.encode()) == []
    assert redacted.endswith("order=1796011070 ok")
    assert redactor.redact("maker fill backpack buy 0.002 @ 65000.6") == (
        "maker fill backpack buy 0.002 @ 65000.6"
    )


def test_the_redactor_covers_arguments_and_tracebacks(planted: Planted, needles: Needles) -> None:
    redactor = SecretRedactor()
    redactor.add(planted.bp_secret)
    try:
        raise ValueError(f"bad key {planted.bp_secret}")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "loading %s", (planted.bp_secret,), sys.exc_info()
        )

    assert redactor.filter(record)
    formatted = logging.Formatter().format(record)

    assert "ValueError: bad key ***" in formatted
    assert needles.find("formatted", formatted.encode()) == []

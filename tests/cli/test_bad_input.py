"""G6 bad input: the table. Each case runs the real command line (`python runbot.py ...` in its
own process and folder) with one bad flag, variable, file, port or key, and must end with the
documented exit code (2 for what the user must change, 1 for a venue that cannot be reached),
exactly one error line on stderr naming the problem, no traceback, no crash log, and no value
of the environment echoed. Cases that reach the simulated venues also leave no order there:
the venues' own request ledgers (`GET /_sim/requests`) show no order or cancel for the case.

The simulated venues run in a thread of this process, shared by the module. Cases that need no
venue run four at a time; the venue cases run one after the other, so each one's ledger delta
is its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from exchanges.sim.runner import SimCluster
from hedge.journal import Journal
from tests.sims import clusters_in_thread

ROOT = Path(__file__).resolve().parents[2]
OK_SIZE = "0.001"
# Keys of the right shape that no venue is asked about (cases that stop before connecting).
SHAPED_ENV = {
    "BACKPACK_PUBLIC_KEY": base64.b64encode(bytes(range(32))).decode(),
    "BACKPACK_SECRET_KEY": base64.b64encode(bytes(range(32, 64))).decode(),
    "LIGHTER_API_PRIVATE_KEY": "0x" + "ab" * 40,
    "LIGHTER_ACCOUNT_INDEX": "7",
    "LIGHTER_API_KEY_INDEX": "4",
}
PLANTED = "Pasted-Secret-Value-Zq9Kx7Lm3Wp"  # a "key" put where it does not belong


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]  # after `runbot.py`; {env}, {folder}, {busy}, {closed} are filled in
    names: tuple[str, ...]  # what the one error line must say
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)  # written to {env} over the base env
    process_env: dict[str, str] = field(default_factory=dict)
    venue: bool = False  # against the shared simulated venues (their ledgers are checked)
    unchanged: tuple[str, ...] = ()  # files of the case folder whose bytes must not change
    root_can: bool = False  # root reads and writes anything: skipped when running as root


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    requests: dict[str, int]  # venue -> requests the venue received during the case
    orders: dict[str, int]  # venue -> orders and cancels among them
    changed: list[str]
    crash_logs: list[str]

    def describe(self) -> str:
        return f"exit {self.code}\nstdout: {self.stdout[-1500:]}\nstderr: {self.stderr[-1500:]}"


# -- the table -------------------------------------------------------------------------------


def flag_case(command: str, flag: str, value: str, *names: str) -> tuple[str, Case]:
    base = {
        "check": ("check", "--no-connect", "--size", OK_SIZE),
        "run": ("run", "--size", OK_SIZE, "--iterations", "1", "--log-dir", "{folder}/logs"),
        "demo": ("demo", "--size", OK_SIZE, "--iterations", "1", "--log-dir", "{folder}/logs"),
        "flatten": ("flatten", "--yes", "--env-file", "{env}"),
    }[command]
    return f"{command} {flag} {value!r}", Case((*base, flag, value), (flag, *names))


FLAG_VALUES = {
    "--size": ["1e309", "NaN", "inf", "-inf", "sNaN", "-1", "0", "abc", "", "1e12", "1e-30"],
    "--max-position": ["NaN", "1e309", "0.0001"],
    "--iterations": ["0", "1.5", "1e309"],
    "--direction": ["up"],
    "--fill-timeout": ["5e-324", "0", "0.1", "nan", "inf", "1e309", "1e6"],
    "--hedge-timeout": ["0.5", "nan", "inf", "601"],
    "--sleep": ["-1", "nan", "1e309"],
    "--requote-ticks": ["0"],
    "--maker-ticks": ["2.5"],
    "--max-slippage-bps": ["0", "-100", "NaN", "1e309", "1001"],
    "--ticker": ["B-TC", ""],
}

CASES: dict[str, Case] = dict(
    flag_case("check", flag, value) for flag, values in FLAG_VALUES.items() for value in values
)
CASES |= dict(
    [
        flag_case("run", "--size", "1e309"),
        flag_case("run", "--fill-timeout", "5e-324"),
        flag_case("demo", "--size", "NaN"),
        *(
            flag_case("flatten", "--max-slippage-bps", value)
            for value in ("-100", "NaN", "1e309", "0")
        ),
    ]
)


def env_case(name: str, value: str, *names: str, secret: bool = True) -> tuple[str, Case]:
    """A bad value in the env file (a pasted key: never echoed), the flags all fine."""
    args = ("check", "--no-connect", "--size", OK_SIZE, "--env-file", "{env}")
    return f"env {name}={value[:24]!r}", Case(args, (name, *names), env={name: value})


CASES |= dict(
    [
        env_case("BACKPACK_PUBLIC_KEY", PLANTED),
        env_case("BACKPACK_PUBLIC_KEY", base64.b64encode(b"k" * 16).decode()),
        env_case("BACKPACK_SECRET_KEY", PLANTED),
        env_case("LIGHTER_API_PRIVATE_KEY", PLANTED),
        env_case("LIGHTER_API_PRIVATE_KEY", "0x" + "ab" * 39),
        env_case("LIGHTER_ACCOUNT_INDEX", PLANTED),
        env_case("LIGHTER_ACCOUNT_INDEX", "-1"),
        env_case("LIGHTER_ACCOUNT_INDEX", "0"),
        env_case("LIGHTER_API_KEY_INDEX", "255"),
        env_case("BACKPACK_API_URL", PLANTED),
        env_case("BACKPACK_WS_URL", "https://127.0.0.1:1"),
        env_case("LIGHTER_WS_URL", "http://127.0.0.1:1/stream"),
        env_case("LIGHTER_ACCOUNT_TIER", PLANTED),
        env_case("BACKPACK_RATE_LIMIT", PLANTED),
    ]
)
CASES["env keys missing"] = Case(
    ("check", "--no-connect", "--size", OK_SIZE), ("BACKPACK_SECRET_KEY", "--dry-run")
)
CASES["env pasted key in the process environment"] = Case(
    ("check", "--no-connect", "--size", OK_SIZE),
    ("LIGHTER_ACCOUNT_INDEX",),
    process_env={**SHAPED_ENV, "LIGHTER_ACCOUNT_INDEX": PLANTED},
)

RUN = ("run", "--size", OK_SIZE, "--iterations", "1", "--env-file", "{env}")
RUN_LOGS = (*RUN, "--log-dir", "{folder}/logs")
CASES |= {
    "file --env-file missing": Case(
        ("check", "--no-connect", "--size", OK_SIZE, "--env-file", "{folder}/absent.env"),
        ("--env-file", "absent.env"),
    ),
    "file --env-file a folder": Case(
        ("run", "--size", OK_SIZE, "--env-file", "{folder}/adir"), ("--env-file", "adir")
    ),
    "file --env-file binary": Case(
        ("check", "--no-connect", "--size", OK_SIZE, "--env-file", "{folder}/binary.env"),
        ("--env-file", "binary.env"),
    ),
    "file --env-file unreadable": Case(
        ("run", "--size", OK_SIZE, "--env-file", "{folder}/locked.env"),
        ("--env-file", "locked.env"),
        root_can=True,
    ),
    "file --journal garbage": Case(
        (*RUN_LOGS, "--journal", "{folder}/garbage.sqlite"), ("--journal", "garbage.sqlite")
    ),
    "file --journal a folder": Case((*RUN_LOGS, "--journal", "{folder}/adir"), ("--journal",)),
    "file --journal another program's database": Case(
        (*RUN_LOGS, "--journal", "{folder}/other.sqlite"),
        ("--journal", "other.sqlite"),
        unchanged=("other.sqlite",),
    ),
    "file --journal another schema": Case(
        (*RUN_LOGS, "--journal", "{folder}/old.sqlite"),
        ("--journal", "old.sqlite", "schema"),
        unchanged=("old.sqlite",),
    ),
    "file --journal inside a file": Case(
        (*RUN_LOGS, "--journal", "{folder}/afile/j.sqlite"), ("--journal", "afile")
    ),
    "file --journal of another ticker": Case(
        (*RUN_LOGS, "--journal", "{folder}/eth.sqlite"), ("--journal", "ETH live", "BTC live")
    ),
    "file --journal of another mode": Case(
        (*RUN_LOGS, "--journal", "{folder}/dry.sqlite"), ("--journal", "BTC dry_run")
    ),
    "file --journal unreadable": Case(
        (*RUN_LOGS, "--journal", "{folder}/locked.sqlite"),
        ("--journal", "locked.sqlite"),
        root_can=True,
    ),
    "file --log-dir a file": Case((*RUN, "--log-dir", "{folder}/afile"), ("--log-dir", "afile")),
    "file --log-dir inside a file": Case(
        (*RUN, "--log-dir", "{folder}/afile/logs"), ("--log-dir", "afile/logs")
    ),
    "file check --log-dir a file": Case(
        ("check", "--size", OK_SIZE, "--env-file", "{env}", "--log-dir", "{folder}/afile"),
        ("--log-dir", "afile"),
    ),
    "file --log-dir read-only": Case(
        (*RUN, "--log-dir", "{folder}/readonly"), ("--log-dir", "readonly"), root_can=True
    ),
    "file demo --log-dir a file": Case(
        ("demo", "--size", OK_SIZE, "--log-dir", "{folder}/afile"), ("--log-dir", "afile")
    ),
    "file demo --journal garbage": Case(
        (
            "demo",
            "--size",
            OK_SIZE,
            "--log-dir",
            "{folder}/l",
            "--journal",
            "{folder}/garbage.sqlite",
        ),
        ("--journal", "garbage.sqlite"),
    ),
}
for label, target, names in [
    ("garbage", "garbage.sqlite", ("garbage.sqlite",)),
    ("a folder", "adir", ("adir",)),
    ("another program's database", "other.sqlite", ("other.sqlite",)),
    ("another schema", "old.sqlite", ("old.sqlite",)),
    ("an empty file", "empty.sqlite", ("empty.sqlite",)),
    ("an empty database", "blank.sqlite", ("blank.sqlite",)),
    ("missing", "absent.sqlite", ("absent.sqlite",)),
    ("a text file", "afile", ("afile",)),
]:
    CASES[f"file report --journal {label}"] = Case(
        ("report", "--journal", f"{{folder}}/{target}"),
        ("--journal", *names),
        unchanged=(target,) if target.endswith(".sqlite") and target != "absent.sqlite" else (),
    )
CASES["file report --json --journal another program's database"] = Case(
    ("report", "--json", "--journal", "{folder}/other.sqlite"),
    ("--journal", "other.sqlite"),
    unchanged=("other.sqlite",),
)
for target in ("other.sqlite", "garbage.sqlite"):
    CASES[f"file status --journal {target}"] = Case(
        ("status", "--env-file", "{env}", "--journal", f"{{folder}}/{target}"),
        ("--journal", target),
        unchanged=(target,),
    )

SIM = ("sim", "--write-env", "{folder}/sim.env")
CASES |= {
    f"port sim {flag} {value!r}": Case((*SIM, flag, value), (flag,))
    for flag, value in [
        ("--backpack-port", "70000"),
        ("--backpack-port", "-1"),
        ("--backpack-port", "abc"),
        ("--lighter-port", "70000"),
        ("--backpack-port", "{busy}"),
        ("--fill-rate", "nan"),
        ("--backpack-rate-limit", "-1"),
        ("--history-lag-ms", "70000"),
        ("--faults", "x"),
        ("--ticker", "ZZZ"),
    ]
}
CASES |= {
    "port sim both ports the same": Case(
        (*SIM, "--backpack-port", "{free}", "--lighter-port", "{free}"), ("--lighter-port",)
    ),
    "file sim --write-env a folder": Case(
        ("sim", "--write-env", "{folder}/adir"), ("--write-env", "adir")
    ),
    "file sim --write-env inside a file": Case(
        ("sim", "--write-env", "{folder}/afile/sim.env"), ("--write-env", "afile")
    ),
    "demo --faults x": Case(("demo", "--faults", "x"), ("--faults",)),
    "demo --ticker ZZZ": Case(("demo", "--ticker", "ZZZ"), ("--ticker", "ZZZ", "BTC")),
    "demo --size under the market minimum": Case(
        ("demo", "--size", "0.000000001", "--log-dir", "{folder}/logs"), ("--size", "0.00020")
    ),
}

# -- against the simulated venues: the market's rules, the keys, the addresses ---------------

CHECK = ("check", "--size", OK_SIZE, "--env-file", "{env}", "--log-dir", "{folder}/logs")
RUN_ONE = (*RUN_LOGS, "--journal", "{folder}/j.sqlite")


def venue_case(args: tuple[str, ...], *names: str, code: int = 2, **env: str) -> Case:
    return Case(args, names, code=code, env=env, venue=True)


VENUE_CASES = {
    "venue check --ticker ZZZ": venue_case((*CHECK, "--ticker", "ZZZ"), "ZZZ", "Backpack"),
    "venue run --ticker ZZZ": venue_case((*RUN_ONE, "--ticker", "ZZZ"), "ZZZ", "Lighter"),
    "venue check --size under both minimums": venue_case(
        (*CHECK, "--size", "0.000000001"), "--size 0.000000001", "0.00020"
    ),
    "venue run --size under both minimums": venue_case(
        (*RUN_ONE, "--size", "0.000000001"), "--size 0.000000001", "0.00020"
    ),
    "venue run --dry-run --size under the minimum": venue_case(
        (*RUN_ONE, "--dry-run", "--size", "0.000000001"), "--size", "0.00020"
    ),
    "venue check --size under the hedge minimum": venue_case(
        (*CHECK, "--size", "0.0001"), "--size", "Lighter", "0.00020"
    ),
    "venue check --size off the step": venue_case(
        (*CHECK, "--size", "0.000205"), "--size", "step", "0.00001"
    ),
    "venue check --size under the minimum notional": venue_case(
        (*CHECK, "--ticker", "SOL", "--size", "0.05"), "--size", "USDC", "10"
    ),
    "venue check wrong BACKPACK_SECRET_KEY": venue_case(
        CHECK, "Backpack", BACKPACK_SECRET_KEY=base64.b64encode(b"s" * 32).decode()
    ),
    "venue run wrong BACKPACK_SECRET_KEY": venue_case(
        RUN_ONE, "Backpack", BACKPACK_SECRET_KEY=base64.b64encode(b"s" * 32).decode()
    ),
    "venue check unknown BACKPACK_PUBLIC_KEY": venue_case(
        CHECK, "Backpack", BACKPACK_PUBLIC_KEY=base64.b64encode(b"p" * 32).decode()
    ),
    "venue check wrong LIGHTER_API_PRIVATE_KEY": venue_case(
        CHECK, "Lighter", LIGHTER_API_PRIVATE_KEY="0x" + "cd" * 40
    ),
    "venue check wrong LIGHTER_ACCOUNT_INDEX": venue_case(
        CHECK, "Lighter", "LIGHTER_ACCOUNT_INDEX", LIGHTER_ACCOUNT_INDEX="8"
    ),
    "venue run wrong LIGHTER_ACCOUNT_INDEX": venue_case(
        RUN_ONE, "Lighter", "LIGHTER_ACCOUNT_INDEX", LIGHTER_ACCOUNT_INDEX="8"
    ),
    "venue check LIGHTER_API_KEY_INDEX=0": venue_case(
        CHECK, "Lighter", "LIGHTER_API_KEY_INDEX", LIGHTER_API_KEY_INDEX="0"
    ),
    "venue run LIGHTER_API_KEY_INDEX=0": venue_case(
        RUN_ONE, "Lighter", "LIGHTER_API_KEY_INDEX", LIGHTER_API_KEY_INDEX="0"
    ),
    "venue status wrong BACKPACK_SECRET_KEY": venue_case(
        ("status", "--env-file", "{env}"),
        "Backpack",
        BACKPACK_SECRET_KEY=base64.b64encode(b"s" * 32).decode(),
    ),
    "venue flatten wrong LIGHTER_API_PRIVATE_KEY": venue_case(
        ("flatten", "--yes", "--env-file", "{env}"),
        "Lighter",
        LIGHTER_API_PRIVATE_KEY="0x" + "cd" * 40,
    ),
    **{
        f"venue {command} {name} unreachable": venue_case(
            CHECK if command == "check" else RUN_ONE, name, code=1, **{name: url}
        )
        for command, name, url in [
            ("check", "BACKPACK_API_URL", "http://127.0.0.1:{closed}/"),
            ("run", "BACKPACK_API_URL", "http://127.0.0.1:{closed}/"),
            ("check", "BACKPACK_WS_URL", "ws://127.0.0.1:{closed}/"),
            ("check", "LIGHTER_API_URL", "http://127.0.0.1:{closed}"),
            ("run", "LIGHTER_WS_URL", "ws://127.0.0.1:{closed}/stream"),
            ("check", "BACKPACK_API_URL", "http://no-such-host.invalid/"),
        ]
    },
    # Paper trading with the public endpoints out of reach: one line and a hint, exit 1.
    "venue run --dry-run BACKPACK_API_URL unreachable": venue_case(
        (*RUN_ONE, "--dry-run"),
        "BACKPACK_API_URL",
        code=1,
        BACKPACK_API_URL="http://127.0.0.1:{closed}/",
    ),
    "venue run --dry-run no DNS": venue_case(
        (*RUN_ONE, "--dry-run"),
        "BACKPACK_API_URL",
        "DNS",
        code=1,
        BACKPACK_API_URL="http://no-such-host.invalid/",
    ),
    "venue status LIGHTER_API_URL unreachable": venue_case(
        ("status", "--env-file", "{env}"),
        "LIGHTER_API_URL",
        code=1,
        LIGHTER_API_URL="http://127.0.0.1:{closed}",
    ),
}
CASES |= VENUE_CASES


# -- running a case --------------------------------------------------------------------------


def prepare(folder: Path) -> None:
    """The files the cases point at: unusable journals, env files and folders."""
    folder.mkdir(parents=True)
    (folder / "adir").mkdir()
    (folder / "afile").write_text("not a folder\n")
    (folder / "garbage.sqlite").write_bytes(hashlib.sha512(b"garbage").digest() * 40)
    (folder / "binary.env").write_bytes(bytes(range(128, 256)) * 8)
    (folder / "empty.sqlite").write_bytes(b"")
    for name, sql in [
        ("other.sqlite", "CREATE TABLE users (id, name); INSERT INTO users VALUES (1, 'a')"),
        ("old.sqlite", "CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at REAL)"),
        ("blank.sqlite", "PRAGMA user_version = 1"),
    ]:
        db = sqlite3.connect(folder / name)
        db.executescript(sql)
        db.close()
    for name, ticker, mode in [("eth.sqlite", "ETH", "live"), ("dry.sqlite", "BTC", "dry_run")]:
        journal = Journal(folder / name)
        journal.start_run(mode=mode, ticker=ticker, settings={})
        journal.end_run(0, "done")
        journal.close()
    for name in ("locked.env", "locked.sqlite"):
        (folder / name).write_text("x\n")
        (folder / name).chmod(0)
    (folder / "readonly").mkdir(mode=0o555)


def hashes(folder: Path, names: tuple[str, ...]) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def ledgers(venues: dict[str, str]) -> dict[str, tuple[int, int]]:
    """(requests, orders and cancels) each simulated venue received so far, from all callers:
    the venues' own records (`GET /_sim/requests`)."""
    counts = {}
    for venue, url in venues.items():
        with urllib.request.urlopen(f"{url.rstrip('/')}/_sim/requests", timeout=10) as answer:
            rows = json.loads(answer.read())["ips"].values()
        counts[venue] = (
            sum(int(row["requests_total"]) for row in rows),
            sum(int(row["send_tx"]) for row in rows),
        )
    return counts


def run_case(case: Case, folder: Path, ports: dict[str, str], sim_env: dict[str, str]) -> Outcome:
    prepare(folder)
    env_file = folder / "case.env"
    base_env = sim_env if case.venue else SHAPED_ENV
    values = {k: v.format(**ports) for k, v in {**base_env, **case.env}.items()}
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    fill = {"env": str(env_file), "folder": str(folder), **ports}
    args = [arg.format(**fill) for arg in case.args]
    process_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BACKPACK_", "LIGHTER_", "API_KEY"))
    }
    process_env |= {**case.process_env, "COLUMNS": "200"}
    before = hashes(folder, case.unchanged)
    venues = {"backpack": sim_env["BACKPACK_API_URL"], "lighter": sim_env["LIGHTER_API_URL"]}
    ledgers_before = ledgers(venues) if case.venue else {}
    result = subprocess.run(
        [sys.executable, str(ROOT / "runbot.py"), *args],
        cwd=folder,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    requests, orders = {}, {}
    if case.venue:
        after = ledgers(venues)
        for venue in venues:
            requests[venue] = after[venue][0] - ledgers_before[venue][0]
            orders[venue] = after[venue][1] - ledgers_before[venue][1]
    return Outcome(
        code=result.returncode,
        stdout=result.stdout,
        stderr=result.stderr,
        requests=requests,
        orders=orders,
        changed=[n for n, digest in hashes(folder, case.unchanged).items() if before[n] != digest],
        crash_logs=[p.name for p in folder.rglob("crash-*.log")],
    )


# -- fixtures --------------------------------------------------------------------------------


VENUE_LANES = 2  # venue cases run one at a time per lane; each lane has its own venues


@pytest.fixture(scope="module")
def sim_envs() -> Iterator[list[dict[str, str]]]:
    """Simulated Backpack + Lighter pairs (one per lane) in a thread of this process, on the
    venues' default limits (Lighter Standard); what is checked is that no order arrives at
    all."""
    clusters = [SimCluster(seed=14 + lane) for lane in range(VENUE_LANES)]
    with clusters_in_thread(clusters) as envs:
        yield envs


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, str]]:
    """{busy}: a port something listens on; {closed}: bound, not listening (refused at once);
    {free}: free now."""
    with socket.socket() as busy, socket.socket() as closed, socket.socket() as free:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        closed.bind(("127.0.0.1", 0))
        free.bind(("127.0.0.1", 0))
        free_port = free.getsockname()[1]
        free.close()
        yield {
            "busy": str(busy.getsockname()[1]),
            "closed": str(closed.getsockname()[1]),
            "free": str(free_port),
        }


@pytest.fixture(scope="module")
def outcomes(
    sim_envs: list[dict[str, str]],
    ports: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Outcome]:
    """Every case of the table: the venue cases one at a time in each lane (so each one's
    ledger delta is its own), the other cases beside them, four processes at a time."""
    root = tmp_path_factory.mktemp("bad-input")
    folders = {name: root / f"case-{number}" for number, name in enumerate(CASES)}
    venue_names = [name for name, case in CASES.items() if case.venue]

    def lane(number: int) -> dict[str, Outcome]:
        names = venue_names[number::VENUE_LANES]
        return {
            name: run_case(CASES[name], folders[name], ports, sim_envs[number]) for name in names
        }

    with ThreadPoolExecutor(VENUE_LANES + 2) as pool:
        lanes = [pool.submit(lane, number) for number in range(VENUE_LANES)]
        local = {
            name: pool.submit(run_case, case, folders[name], ports, sim_envs[0])
            for name, case in CASES.items()
            if not case.venue
        }
        results = {name: future.result() for name, future in local.items()}
        for future in lanes:
            results |= future.result()
    return results


# -- the tests -------------------------------------------------------------------------------


def test_the_table_has_at_least_a_hundred_cases() -> None:
    assert sum(not case.root_can for case in CASES.values()) >= 100, len(CASES)
    assert len(VENUE_CASES) >= 20


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_naming_it_and_nothing_is_sent(
    name: str, outcomes: dict[str, Outcome]
) -> None:
    case, outcome = CASES[name], outcomes[name]
    if case.root_can and os.geteuid() == 0:
        pytest.skip("root reads and writes any file")
    output = outcome.stdout + outcome.stderr
    assert outcome.code == case.code, outcome.describe()
    assert "Traceback" not in output, outcome.describe()
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, outcome.describe()
    assert lines[0].startswith("error: "), outcome.describe()
    for expected in case.names:
        assert expected in lines[0], f"{expected!r} not in {lines[0]!r}"
    assert "unexpected error" not in output and "halted" not in output, outcome.describe()
    assert not outcome.crash_logs, outcome.describe()
    assert not outcome.changed, f"{outcome.changed} written to"
    for value in (PLANTED, *case.env.values(), *case.process_env.values()):
        if len(value) >= 12 and not value.startswith(("http", "ws")):
            assert value not in output, f"{value!r} echoed"
    assert all(count == 0 for count in outcome.orders.values()), outcome.orders
    if case.venue and case.code == 2:  # refused by what the venues said: they were asked
        assert sum(outcome.requests.values()) > 0, outcome.requests


# -- what needs a change in exchanges/ (see the issue 14 report) -----------------------------


def check_against(sim_env: dict[str, str], folder: Path, *args: str) -> Outcome:
    case = Case(("check", "--env-file", "{env}", "--log-dir", "{folder}/logs", *args), ())
    return run_case(replace(case, venue=True), folder, {}, sim_env)


def test_a_size_over_the_market_maximum_is_refused_naming_the_limit(
    sim_envs: list[dict[str, str]], tmp_path: Path
) -> None:
    outcome = check_against(sim_envs[0], tmp_path / "case", "--size", "5000")
    assert outcome.code == 2, outcome.describe()
    assert "--size" in outcome.stderr and "1000" in outcome.stderr
    assert sum(outcome.orders.values()) == 0


def test_an_unknown_ticker_lists_a_few_available_ones(
    sim_envs: list[dict[str, str]], tmp_path: Path
) -> None:
    outcome = check_against(sim_envs[0], tmp_path / "case", "--size", OK_SIZE, "--ticker", "ZZZ")
    assert outcome.code == 2, outcome.describe()
    assert "BTC" in outcome.stderr and "ETH" in outcome.stderr

"""What an unattended operator gets on the side of a run (issue 17): alerts through `--notify`
reach a webhook once per event and never carry a secret; `--metrics-port` serves counters that
agree with `report` on the run's journal.

Both tests run the CLI in subprocesses as an operator would: `runbot.py sim` + `runbot.py run`
for the alerts (so a trade can be forced on the bot's account through the simulator's
`/_sim/order` control route), `runbot.py demo` for the metrics. Each subprocess gets its own
TMPDIR (the Lighter key lock lives under it).
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from exchanges.sim.runner import BACKPACK_ACCOUNT
from tests.e2e.conftest import SimProcess, isolated_env, runbot_argv

SECRET_NAMES = ("BACKPACK_SECRET_KEY", "BACKPACK_PUBLIC_KEY", "LIGHTER_API_PRIVATE_KEY")
SECRET_PIECE = 12  # no run of this many characters of a secret may appear in an alert
FOREIGN_QTY = "0.001"
EXIT_HALTED = 3
EXIT_INTERRUPTED = 130


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no output)"


# -- 1. alerts: one per forced event, no secret ----------------------------------------------


class Receiver:
    """A local webhook (aiohttp, 127.0.0.1, a free port) recording every POST body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            self.bodies.append(await request.read())
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"json://{host}:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.bodies]


async def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` (run in a thread: it may call the simulator over HTTP) until it holds;
    the event loop stays free for the receiver meanwhile."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


def _secrets(env_file: Path) -> dict[str, str]:
    values = dict(
        line.split("=", 1)
        for line in env_file.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    secrets = {name: values[name].strip() for name in SECRET_NAMES}
    assert all(len(value) >= SECRET_PIECE for value in secrets.values()), "keys too short"
    return secrets


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """The secrets of which `text` holds the whole value or any piece of SECRET_PIECE
    characters, in any case."""
    lower = text.lower()
    found = []
    for name, value in secrets.items():
        pieces = {value[i : i + SECRET_PIECE] for i in range(len(value) - SECRET_PIECE + 1)}
        if any(piece.lower() in lower for piece in pieces | {value}):
            found.append(name)
    return found


async def test_notify_sends_one_alert_per_external_change_and_halt_and_no_secret(
    tmp_path: Path, make_sim: Callable[..., SimProcess]
) -> None:
    """`run --notify json://...` against the sim: a trade on the bot's Backpack account that
    the bot did not make is an external change, which halts the run (exit 3). The webhook
    receives exactly one "external change" alert and one "halted" alert, nothing else, as
    apprise's JSON objects, and no body holds any key of the env file or a piece of one."""
    receiver = Receiver()
    await receiver.start()
    bot: asyncio.subprocess.Process | None = None
    try:
        sim = make_sim("--seed", "3")
        secrets = _secrets(sim.env_file)
        out_path = tmp_path / "bot.out"
        with out_path.open("wb") as out:
            bot = await asyncio.create_subprocess_exec(
                *runbot_argv(
                    "run",
                    "--env-file",
                    str(sim.env_file),
                    "--ticker",
                    "BTC",
                    "--size",
                    "0.002",
                    "--iterations",
                    "100",  # never reached: the foreign trade halts the run
                    "--sleep",
                    "0",
                    "--plain",
                    "--quote-mode",
                    "bbo",
                    "--on-external-change",
                    "halt",
                    "--notify",
                    receiver.url,
                    "--journal",
                    str(tmp_path / "journal.sqlite"),
                    "--log-dir",
                    str(tmp_path / "logs"),
                ),
                cwd=tmp_path,
                env=isolated_env(tmp_path),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running = bot

        def hedged() -> bool:
            """The bot made a fill and hedged it, and its legs are balanced now."""
            assert running.returncode is None, _tail(out_path)
            lighter = sim.account("lighter")
            return bool(lighter["fills"]) and (
                sim.position("backpack") + sim.position("lighter") == 0
            )

        await _wait(hedged, 90, "the bot's first hedged fill")
        assert receiver.bodies == []  # trading alone tells nobody anything

        # Someone trades on the bot's Backpack account by hand: a market buy, no client id.
        made = await asyncio.to_thread(
            sim.call,
            sim.backpack,
            "order",
            {
                "venue": "backpack",
                "account": BACKPACK_ACCOUNT,
                "ticker": "BTC",
                "side": "buy",
                "qty": FOREIGN_QTY,
            },
        )
        assert "order" in made, made

        await asyncio.wait_for(bot.wait(), 90)  # halted by the foreign trade
        output = _tail(out_path, 20_000)
        assert bot.returncode == EXIT_HALTED, output[-4000:]
        assert "Traceback" not in output
        assert "alerts to: json://127.0.0.1/***" in output, output[-4000:]
    finally:
        if bot is not None and bot.returncode is None:
            bot.kill()
            await bot.wait()
        await receiver.stop()  # the bot flushed its alerts before it exited

    alerts = receiver.alerts()
    titles = sorted(str(alert.get("title")) for alert in alerts)
    assert titles == ["hedgebot BTC external change", "hedgebot BTC halted"], alerts
    by_title = {alert["title"]: alert for alert in alerts}
    external = by_title["hedgebot BTC external change"]
    halted = by_title["hedgebot BTC halted"]
    for alert in alerts:
        assert {"title", "message", "type"} <= alert.keys(), alert
        assert alert["message"].startswith(alert["title"] + ": "), alert
        assert "\n" not in alert["message"], alert
    assert "external change on backpack: +0.001 BTC" in external["message"], external
    assert "policy halt" in external["message"], external
    assert external["type"] == "warning", external
    assert "external change on backpack: +0.001 BTC" in halted["message"], halted
    assert halted["type"] == "failure", halted
    for body, alert in zip(receiver.bodies, alerts, strict=True):
        raw = body.decode("utf-8", errors="replace")  # as sent, and as decoded from JSON
        assert _leaks(raw, secrets) == [], raw
        assert _leaks(f"{alert['title']} {alert['message']}", secrets) == [], alert


# -- 2. metrics: the scraped counters are the report's ---------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(url: str) -> Samples | None:
    """Every sample of one scrape by (name, labels); None when the server did not answer."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _state(samples: Samples, pair: str) -> str | None:
    current = [
        dict(labels)["state"]
        for (name, labels), value in samples.items()
        if name == "hedgebot_engine_state" and dict(labels).get("pair") == pair and value == 1
    ]
    return current[0] if len(current) == 1 else None


METRICS_TICKERS = ("BTC", "ETH")
VENUES = {"maker": "backpack", "hedge": "lighter"}


def _pair_counters(samples: Samples, pair: str) -> dict[str, float]:
    """What the test compares with the report, for one pair."""
    values = {}
    for role, venue in VENUES.items():
        labels = {"pair": pair, "venue": venue, "role": role}
        values[f"{role}_fills"] = _value(samples, "hedgebot_fills_total", **labels)
        values[f"{role}_volume"] = _value(samples, "hedgebot_volume_quote_total", **labels)
        values[f"{role}_fees"] = _value(samples, "hedgebot_fees_quote", **labels)
        values[f"{role}_position"] = _value(samples, "hedgebot_position", **labels)
    values["net"] = _value(samples, "hedgebot_net_position", pair=pair)
    values["unhedged"] = _value(samples, "hedgebot_unhedged", pair=pair)
    values["iteration"] = _value(samples, "hedgebot_iteration", pair=pair)
    return values


def _all_between_iterations(samples: Samples) -> bool:
    """Every pair sleeps after its first iteration, its fills all hedged: nothing trades until
    the sleep ends, so the counters are what the run will end with once it is stopped."""
    try:
        for pair in METRICS_TICKERS:
            values = _pair_counters(samples, pair)
            if _state(samples, pair) != "sleeping" or values["iteration"] != 1:
                return False
            if values["maker_fills"] < 1 or values["hedge_fills"] < 1:
                return False
            if values["net"] != 0 or values["unhedged"] != 0:
                return False
    except KeyError:  # a pair not started yet
        return False
    return True


def _report(journal: Path, env: dict[str, str], folder: Path) -> dict[str, Any]:
    done = subprocess.run(
        runbot_argv("report", "--journal", str(journal), "--json"),
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        with (tmp_path / "demo.out").open("wb") as out:
            process = subprocess.Popen(
                runbot_argv("demo", *args),
                cwd=tmp_path,
                env=isolated_env(tmp_path),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_metrics_scraped_during_a_demo_agree_with_the_report(
    tmp_path: Path, demo_process: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """`demo --ticker BTC,ETH --metrics-port P`, scraped while it runs. A run's last counters
    cannot be caught reliably at its natural end (the server closes a few milliseconds after
    the last pair is done), so the demo sleeps long between its two iterations: once every
    pair sleeps with its fills hedged and two scrapes in a row agree, SIGINT stops it there
    (exit 130, nothing more traded). Then `report --json` on each pair's journal gives the
    same maker and hedge fills, volumes and fees as the last scrape, and flat legs."""
    port = _free_port()
    logs = tmp_path / "logs"
    demo = demo_process(
        "--ticker",
        ",".join(METRICS_TICKERS),
        "--iterations",
        "2",
        "--sleep",
        "120",  # never waited out: the test stops the demo during this pause
        "--plain",
        "--quote-mode",
        "bbo",
        "--metrics-port",
        str(port),
        "--log-dir",
        str(logs),
    )
    url = f"http://127.0.0.1:{port}/metrics"
    started = time.monotonic()
    deadline = started + 120
    previous: Samples | None = None
    settled: Samples | None = None
    scrapes = 0
    while settled is None:
        assert demo.poll() is None, _tail(tmp_path / "demo.out")
        assert time.monotonic() < deadline, (
            f"no two scrapes with every pair between iterations ({scrapes} scrapes): "
            + _tail(tmp_path / "demo.out")
        )
        samples = _scrape(url)
        if samples is None:
            time.sleep(0.1)
            continue
        scrapes += 1
        if (
            previous is not None
            and _all_between_iterations(samples)
            and _all_between_iterations(previous)
            and all(
                _pair_counters(samples, p) == _pair_counters(previous, p) for p in METRICS_TICKERS
            )
        ):
            settled = samples
        previous = samples
        time.sleep(0.1)
    to_stop = time.monotonic() - started

    demo.send_signal(signal.SIGINT)
    code = demo.wait(90)
    output = _tail(tmp_path / "demo.out", 20_000)
    assert code == EXIT_INTERRUPTED, output[-4000:]
    assert "Traceback" not in output
    assert f"metrics: {url}" in output
    assert _scrape(url) is None  # the server ended with the run

    env = isolated_env(tmp_path)
    for pair in METRICS_TICKERS:
        [journal] = logs.glob(f"{pair}-demo-*.sqlite")
        report = _report(journal, env, tmp_path)
        scraped = _pair_counters(settled, pair)
        facts = (pair, scraped, report)
        assert scraped["maker_fills"] == float(report["maker_fills"]), facts
        assert scraped["hedge_fills"] == float(report["hedge_fills"]), facts
        assert math.isclose(scraped["maker_volume"], float(report["maker_volume"]), abs_tol=1e-6)
        assert math.isclose(scraped["hedge_volume"], float(report["hedge_volume"]), abs_tol=1e-6)
        assert math.isclose(
            scraped["maker_fees"], float(report["fees_maker_quote"]), abs_tol=1e-5
        ), facts
        assert math.isclose(
            scraped["hedge_fees"], float(report["fees_hedge_quote"]), abs_tol=1e-5
        ), facts
        assert Decimal(report["net_position_maker"]) == 0 == scraped["maker_position"], facts
        assert Decimal(report["net_position_hedge"]) == 0 == scraped["hedge_position"], facts
        assert report["cycles"] == 2, facts  # the first iteration's open and close legs
        assert report["double_hedges"] == 0, facts
    # The account's request budgets are exported once per venue, not once per pair.
    for venue in VENUES.values():
        assert _value(settled, "hedgebot_budget_capacity", venue=venue) > 0
    print(f"scrapes {scrapes}, every pair between iterations after {to_stop:.1f} s")

"""Alerts (hedge/alerts.py) against a local HTTP receiver: apprise's `json://` service posts to
it; the rate gate, the redactor, failed sends, closing, URL checks and the storm detectors."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from exchanges.base import ConfigError
from hedge.alerts import (
    Alerts,
    RateGate,
    StormDetector,
    mask_url,
    rate_limit_storms,
    reconnect_storms,
    split_urls,
    urls_from,
)
from hedge.logsetup import REDACTOR
from tests.waiting import wait_for

SECRET = "Zq7Xv2Lm9Pw4Rt8Yk3Hn6Bd1Fs5Gc0Jx2Vb7Nm4Q"  # 40 characters
TG_TOKEN = "123456789:AAHq7Xv2Lm9Pw4Rt8Yk3Hn6Bd1Fs5Gc0Jx"
BAD_TOKEN = "NotATelegramTokenButSecret0123456789abcdef"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Receiver:
    url: str
    bodies: list[str] = field(default_factory=list)
    status: int = 200
    hang: bool = False
    arrived: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def messages(self) -> list[str]:
        return [json.loads(body)["message"] for body in self.bodies]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    box: list[Receiver] = []

    async def hook(request: web.Request) -> web.Response:
        rec = box[0]
        rec.arrived += 1
        if rec.hang:
            await rec.release.wait()
        rec.bodies.append(await request.text())
        return web.Response(status=rec.status, text="ok")

    app.router.add_post("/hook", hook)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    box.append(Receiver(url=f"json://127.0.0.1:{port}/hook"))
    yield box[0]
    box[0].release.set()
    await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hedge.alerts" and r.levelno == logging.WARNING
    ]


# --- sending --------------------------------------------------------------------------------


async def test_a_halt_is_one_post_naming_the_pair_and_the_reason(receiver: Receiver) -> None:
    alerts = Alerts([receiver.url])
    alerts.start()
    alerts.halt("BTC", "exposure 0.031 BTC over the 0.02 limit for 12 s")
    await wait_for(lambda: len(receiver.bodies) == 1, what="the halt's POST")
    await alerts.close()
    assert len(receiver.bodies) == 1
    posted = json.loads(receiver.bodies[0])
    assert posted["title"] == "hedgebot BTC halted"
    assert (
        posted["message"] == "hedgebot BTC halted: exposure 0.031 BTC over the 0.02 limit for 12 s"
    )
    assert posted["type"] == "failure"


async def test_the_rate_window_holds_back_and_the_next_alert_counts_them(
    receiver: Receiver,
) -> None:
    clock = FakeClock()
    alerts = Alerts([receiver.url], every_s=60, clock=clock)
    alerts.start()
    alerts.halt("BTC", "first")
    alerts.halt("BTC", "second, 5 s later")
    alerts.summary("a barrier: sent after whatever was queued before it")
    await wait_for(lambda: len(receiver.bodies) == 2, what="the halt and the barrier")
    assert [m for m in receiver.messages() if "halted" in m] == ["hedgebot BTC halted: first"]
    clock.now += 61
    alerts.halt("BTC", "third")
    await wait_for(lambda: len(receiver.bodies) == 3, what="the halt after the window")
    assert receiver.messages()[2] == "hedgebot BTC halted: third (+1 more since the last)"
    await alerts.close()
    assert len(receiver.bodies) == 3


async def test_kinds_and_pairs_have_their_own_windows_under_a_global_cap(
    receiver: Receiver,
) -> None:
    clock = FakeClock()
    alerts = Alerts([receiver.url], per_minute=3, clock=clock)
    alerts.start()
    alerts.halt("BTC", "a")
    alerts.halt("ETH", "b")
    alerts.unbalanced("BTC", "c")
    alerts.external_change("BTC", "d")  # the fourth in a minute: held back
    await alerts.close()  # flushes what was queued
    assert receiver.messages() == [
        "hedgebot BTC halted: a",
        "hedgebot ETH halted: b",
        "hedgebot BTC unbalanced: c",
    ]
    assert alerts.gate.held() == {("external", "BTC"): 1}


async def test_storms_and_summary_read_as_one_line(receiver: Receiver) -> None:
    alerts = Alerts([receiver.url])
    alerts.start()
    alerts.reconnect_storm("lighter", 4, 60.0)
    alerts.rate_limit_storm("backpack", 6, 60.0)
    alerts.summary("ran 8 h\n 112 fills,\t volume 1.2M USD")
    await alerts.close()
    assert receiver.messages() == [
        "hedgebot lighter reconnect storm: 4 reconnects in 60 s",
        "hedgebot backpack rate-limit storm: 6 answers 429 (rate limited) in 60 s",
        "hedgebot summary: ran 8 h 112 fills, volume 1.2M USD",
    ]


async def test_a_registered_secret_never_goes_out(receiver: Receiver) -> None:
    REDACTOR.add(SECRET)
    alerts = Alerts([receiver.url])
    alerts.start()
    alerts.halt("BTC", f"venue said: bad signature for key {SECRET}")
    alerts.unbalanced(SECRET, "a pair name is no place for a key either")
    alerts.summary(f"{SECRET.lower()} and a piece {SECRET[5:25]}")
    await alerts.close()
    assert len(receiver.bodies) == 3
    for body in receiver.bodies:
        assert SECRET not in body
        assert SECRET.lower() not in body
        assert SECRET[5:25] not in body
        assert SECRET[:12] not in body
    assert receiver.messages()[0] == "hedgebot BTC halted: venue said: bad signature for key ***"


async def test_a_receiver_answering_500_is_a_warning(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 500
    alerts = Alerts([receiver.url], flush_s=5.0)
    alerts.start()
    alerts.halt("BTC", "exposure")
    started = time.monotonic()
    await alerts.close()
    assert time.monotonic() - started < 5.5
    assert len(receiver.bodies) == 1
    assert _warnings(caplog) == ["alert to json://127.0.0.1/*** not sent: FAILURE"]


async def test_a_receiver_that_is_down_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    url = f"json://127.0.0.1:{_free_port()}/hook"
    alerts = Alerts([url], flush_s=5.0)
    alerts.start()
    alerts.halt("BTC", "exposure")
    started = time.monotonic()
    await alerts.close()
    assert time.monotonic() - started < 5.5
    assert _warnings(caplog) == ["alert to json://127.0.0.1/*** not sent: FAILURE"]


async def test_close_gives_up_on_a_hung_receiver_within_its_bound(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.hang = True
    alerts = Alerts([receiver.url], flush_s=0.3, send_timeout_s=30.0)
    alerts.start()
    alerts.halt("BTC", "exposure")
    alerts.halt("ETH", "exposure")
    await wait_for(lambda: receiver.arrived == 1, what="the first POST to arrive")
    started = time.monotonic()
    await alerts.close()
    assert time.monotonic() - started < 1.0
    assert _warnings(caplog) == ["alerts: 2 not sent within 0.3 s of closing"]
    alerts.halt("SOL", "after close: dropped")
    receiver.release.set()
    await wait_for(lambda: len(receiver.bodies) == 1, what="the hung POST to end")
    assert receiver.arrived == 1


async def test_a_send_that_takes_too_long_is_a_warning(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.hang = True
    alerts = Alerts([receiver.url], send_timeout_s=0.2)
    alerts.start()
    alerts.halt("BTC", "exposure")
    await wait_for(lambda: bool(_warnings(caplog)), what="the timeout's warning")
    assert _warnings(caplog) == ["alert to json://127.0.0.1/*** not sent: no answer in 0.2 s"]
    receiver.release.set()
    await alerts.close()


async def test_the_alert_methods_return_at_once_while_a_send_hangs(receiver: Receiver) -> None:
    receiver.hang = True
    alerts = Alerts([receiver.url], flush_s=0.1)
    alerts.start()
    alerts.halt("BTC", "exposure")
    await wait_for(lambda: receiver.arrived == 1, what="the POST to arrive")
    started = time.monotonic()
    for pair in ("ETH", "SOL", "DOGE"):
        alerts.halt(pair, "exposure")
    assert time.monotonic() - started < 1.0  # the hanging send would block them for good
    await alerts.close()


async def test_without_urls_every_method_does_nothing() -> None:
    alerts = Alerts([])
    assert not alerts.enabled
    alerts.start()
    alerts.halt("BTC", "x")
    alerts.unbalanced("BTC", "x")
    alerts.external_change("BTC", "x")
    alerts.reconnect_storm("lighter", 3, 60)
    alerts.rate_limit_storm("backpack", 5, 60)
    alerts.summary("x")
    await alerts.close()
    assert alerts.gate.held() == {}


async def test_close_without_start_returns() -> None:
    alerts = Alerts(["json://127.0.0.1:9/hook"])
    alerts.halt("BTC", "x")
    await asyncio.wait_for(alerts.close(), 1.0)


# --- URLs -----------------------------------------------------------------------------------


def test_urls_from_merges_the_flags_and_the_environment() -> None:
    tgram = f"tgram://{TG_TOKEN}/12345"
    env = {"HEDGEBOT_NOTIFY": f" json://127.0.0.1:9/b, {tgram}  json://127.0.0.1:9/a ,"}
    assert urls_from(["json://127.0.0.1:9/a"], env) == [
        "json://127.0.0.1:9/a",
        "json://127.0.0.1:9/b",
        tgram,
    ]
    assert urls_from(None, {}) == []
    assert urls_from([], {"HEDGEBOT_NOTIFY": "  "}) == []


def test_a_comma_inside_a_url_stays_in_it() -> None:
    text = "json://hooks.example.com/a?x=1,2, ntfy://topic123;discord://1234/abcd"
    assert split_urls(text) == [
        "json://hooks.example.com/a?x=1,2",
        "ntfy://topic123",
        "discord://1234/abcd",
    ]


@pytest.mark.parametrize(
    ("flags", "env", "source", "shown"),
    [
        ([f"tgram://{BAD_TOKEN}/12345"], {}, "--notify", "tgram://***"),
        (None, {"HEDGEBOT_NOTIFY": f"tgram://{BAD_TOKEN}/12345"}, "HEDGEBOT_NOTIFY", "tgram://***"),
        ([f"nosuchservice://{BAD_TOKEN}@example.com/x"], {}, "--notify", "example.com/***"),
        ([BAD_TOKEN], {}, "--notify", ": *** is not"),
        (
            ["json://127.0.0.1:9/a"],
            {"HEDGEBOT_NOTIFY": f"json://u:{BAD_TOKEN}@127.0.0.1:9/x?method=BOGUS"},
            "HEDGEBOT_NOTIFY",
            "json://127.0.0.1/***",
        ),
    ],
)
def test_a_bad_url_is_one_line_naming_its_source_with_the_token_masked(
    flags: list[str] | None,
    env: dict[str, str],
    source: str,
    shown: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as caught:
        urls_from(flags, env)
    message = str(caught.value)
    assert message.startswith(f"{source}: ")
    assert shown in message
    assert "\n" not in message
    for piece in (BAD_TOKEN, BAD_TOKEN[:12], BAD_TOKEN[-12:]):
        assert piece not in message
        assert all(piece not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"tgram://{TG_TOKEN}/12345", "tgram://***"),
        ("discord://1234567890/abcdefghijklmnopqrstuvwxyz", "discord://***"),
        ("lark://0123456789abcdef0123456789abcdef", "lark://***"),
        ("ntfy://my-secret-topic", "ntfy://***"),
        ("mailto://me:hunter2hunter2@gmail.com", "mailto://gmail.com/***"),
        ("json://user:pass@127.0.0.1:8080/path/token", "json://127.0.0.1/***"),
        ("jsons://hooks.example.com/abcdefghijklmnop", "jsons://hooks.example.com/***"),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "slack://***"),
        ("not a url at all", "***"),
    ],
)
def test_mask_url_shows_the_scheme_and_a_real_host_only(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_the_tokens_of_the_urls_given_are_redacted_from_the_logs() -> None:
    token = "T0kenOfAWebhookNobodyShouldSee42"
    Alerts([f"jsons://hooks.example.com/{token}"])
    assert REDACTOR.redact(f"POST https://hooks.example.com/{token}") == (
        "POST https://hooks.example.com/***"
    )


# --- the rate gate and storms ---------------------------------------------------------------


def test_the_rate_gate_counts_what_it_holds_back() -> None:
    clock = FakeClock()
    gate = RateGate(every_s=60, per_minute=20, clock=clock)
    assert gate.admit(("halt", "BTC")) == 0
    clock.now += 59.9
    assert gate.admit(("halt", "BTC")) is None
    assert gate.admit(("halt", "BTC")) is None
    assert gate.admit(("halt", "ETH")) == 0
    clock.now += 0.1
    assert gate.admit(("halt", "BTC")) == 2
    assert gate.held() == {}


def test_the_global_cap_is_per_minute_sliding() -> None:
    clock = FakeClock()
    gate = RateGate(every_s=1, per_minute=2, clock=clock)
    assert gate.admit(("a", "")) == 0
    clock.now += 30
    assert gate.admit(("b", "")) == 0
    assert gate.admit(("c", "")) is None
    clock.now += 30  # the first one left the minute
    assert gate.admit(("c", "")) == 1
    assert gate.admit(("d", "")) is None


def test_three_reconnects_within_a_minute_are_a_storm_told_once() -> None:
    clock = FakeClock()
    storms = reconnect_storms(clock)
    assert storms.add() is None
    clock.now += 30
    assert storms.add() is None
    clock.now += 29
    assert storms.add() == 3
    assert storms.storming
    assert storms.add() is None  # the same storm
    clock.now += 60
    assert storms.in_window() == 0
    assert not storms.storming
    assert [storms.add() for _ in range(3)] == [None, None, 3]  # a new storm


def test_reconnects_spread_over_more_than_a_minute_are_no_storm() -> None:
    clock = FakeClock()
    storms = reconnect_storms(clock)
    for _ in range(10):
        assert storms.add() is None
        clock.now += 30.0


def test_five_429s_within_a_minute_are_a_storm() -> None:
    clock = FakeClock()
    storms = rate_limit_storms(clock)
    assert storms.add(4) is None
    clock.now += 59
    assert storms.add(1) == 5
    clock.now += 1  # the four left the window
    assert storms.in_window() == 1
    assert not storms.storming


def test_a_running_total_can_feed_the_detector() -> None:
    clock = FakeClock()
    storms = StormDetector(threshold=5, window_s=60, clock=clock)
    assert storms.observe(100) is None  # the baseline
    assert storms.observe(104) is None
    assert storms.observe(105) == 5
    clock.now += 60
    assert storms.observe(3) is None  # a reset counter counts from there
    assert storms.observe(8) == 5


def test_a_detector_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        StormDetector(threshold=0)
    with pytest.raises(ValueError):
        StormDetector(threshold=3, window_s=0)
    with pytest.raises(ValueError):
        StormDetector(threshold=3).add(-1)

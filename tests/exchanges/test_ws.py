"""Specification of the reconnecting WebSocket, against a real `websockets` server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from exchanges.base import ConfigError, VenueError
from exchanges.common.ws import Backoff, Frame, ReconnectingWebSocket, SendPace
from tests.waiting import wait_for as wait_until

FAST = {"ping_interval": None, "open_timeout": 2.0, "close_timeout": 1.0}


class MaxJitter(random.Random):
    """Makes full jitter deterministic: every delay is its ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def fast_backoff() -> Backoff:
    return Backoff(base=0.001, cap=0.005)


class FakeVenue:
    """A tiny WebSocket server: records what clients send, pushes frames, drops connections."""

    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.received: list[str] = []
        self.close_on_message = False  # drop each connection after its first message
        self._server: Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await serve(self._handler, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _handler(self, conn: ServerConnection) -> None:
        self.connections.append(conn)
        with contextlib.suppress(ConnectionClosed):
            async for message in conn:
                self.received.append(str(message))
                if self.close_on_message:
                    await conn.close()

    async def push(self, *frames: str) -> None:
        for frame in frames:
            await self.connections[-1].send(frame)

    async def drop(self) -> None:
        await self.connections[-1].close()


@pytest.fixture
async def venue() -> AsyncIterator[FakeVenue]:
    server = FakeVenue()
    await server.start()
    yield server
    await server.stop()


class Recorder:
    """The venue side of a client: collects frames and hook calls."""

    def __init__(self) -> None:
        self.frames: list[tuple[Frame, int]] = []
        self.on_connect_calls = 0
        self.on_reconnect_calls = 0
        self.on_disconnect_calls = 0

    def on_message(self, frame: Frame, recv_ns: int) -> None:
        self.frames.append((frame, recv_ns))

    async def on_connect(self, ws: ReconnectingWebSocket) -> None:
        self.on_connect_calls += 1
        await ws.send(f"subscribe {self.on_connect_calls}")

    async def on_reconnect(self) -> None:
        self.on_reconnect_calls += 1

    def on_disconnect(self) -> None:
        self.on_disconnect_calls += 1

    @property
    def texts(self) -> list[Frame]:
        return [frame for frame, _ in self.frames]


def client_for(url: str, rec: Recorder, **kwargs: Any) -> ReconnectingWebSocket:
    options: dict[str, Any] = {
        "name": "test",
        "on_message": rec.on_message,
        "on_connect": rec.on_connect,
        "on_reconnect": rec.on_reconnect,
        "on_disconnect": rec.on_disconnect,
        "backoff": fast_backoff(),
        **FAST,
    }
    options.update(kwargs)
    return ReconnectingWebSocket(url, **options)


@pytest.fixture
async def owned() -> AsyncIterator[list[ReconnectingWebSocket]]:
    """Clients registered here are closed even when a test fails."""
    clients: list[ReconnectingWebSocket] = []
    yield clients
    for client in clients:
        await client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Receiving and sending
# --------------------------------------------------------------------------------------------


async def test_frames_are_delivered_in_order_with_their_read_time(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    rec = Recorder()
    client = client_for(venue.url, rec)
    owned.append(client)
    client.start()
    assert await client.wait_connected(3)
    before = time.perf_counter_ns()

    await venue.push("a", "b", "c")
    await wait_until(lambda: len(rec.frames) == 3)

    assert rec.texts == ["a", "b", "c"]
    stamps = [ns for _, ns in rec.frames]
    assert before <= stamps[0] <= stamps[1] <= stamps[2] <= time.perf_counter_ns()
    assert client.messages == 3
    assert 0 < client.last_message_at <= time.monotonic()


async def test_on_connect_subscribes_and_send_reaches_the_server(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    rec = Recorder()
    client = client_for(venue.url, rec)
    owned.append(client)
    client.start()
    assert await client.wait_connected(3)

    await client.send('{"method":"PING"}')

    await wait_until(lambda: len(venue.received) == 2)
    assert venue.received == ["subscribe 1", '{"method":"PING"}']
    assert (client.connects, client.reconnects, rec.on_reconnect_calls) == (1, 0, 0)


async def test_send_soon_answers_an_application_ping_from_on_message(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    holder: list[ReconnectingWebSocket] = []

    def on_message(frame: Frame, recv_ns: int) -> None:
        if frame == '{"type":"ping"}':
            holder[0].send_soon('{"type":"pong"}')

    client = ReconnectingWebSocket(
        venue.url, name="lighter", on_message=on_message, backoff=fast_backoff(), **FAST
    )
    holder.append(client)
    owned.append(client)
    client.start()
    assert await client.wait_connected(3)

    await venue.push('{"type":"ping"}')

    await wait_until(lambda: venue.received == ['{"type":"pong"}'])


async def test_app_ping_text_is_sent_periodically(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    client = ReconnectingWebSocket(
        venue.url,
        name="pinger",
        on_message=lambda frame, ns: None,
        app_ping_text='{"type":"ping"}',
        app_ping_interval=0.01,
        backoff=fast_backoff(),
        **FAST,
    )
    owned.append(client)
    client.start()

    await wait_until(lambda: venue.received.count('{"type":"ping"}') >= 2)


async def test_send_while_disconnected_is_a_retryable_venue_error() -> None:
    client = ReconnectingWebSocket(
        f"ws://127.0.0.1:{free_port()}", name="down", on_message=lambda f, ns: None
    )

    with pytest.raises(VenueError) as error:
        await client.send("x")

    assert error.value.retryable


def test_an_invalid_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid WebSocket URL"):
        ReconnectingWebSocket("http://not-a-ws-url", name="bad", on_message=lambda f, ns: None)


# --------------------------------------------------------------------------------------------
# Handler failures
# --------------------------------------------------------------------------------------------


async def test_an_exception_in_on_message_skips_the_frame_and_keeps_reading(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    seen: list[Frame] = []

    def on_message(frame: Frame, recv_ns: int) -> None:
        if frame == "boom":
            raise ValueError("handler bug")
        seen.append(frame)

    client = ReconnectingWebSocket(
        venue.url, name="t", on_message=on_message, backoff=fast_backoff(), **FAST
    )
    owned.append(client)
    client.start()
    assert await client.wait_connected(3)

    await venue.push("boom", "after")

    await wait_until(lambda: seen == ["after"])
    assert client.handler_errors == 1
    assert client.connected and client.connects == 1


async def test_a_failing_on_connect_is_retried_and_is_not_a_reconnect(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    rec = Recorder()
    attempts: list[int] = []

    async def flaky_on_connect(ws: ReconnectingWebSocket) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("subscribe bug")
        await rec.on_connect(ws)

    client = client_for(venue.url, rec, on_connect=flaky_on_connect)
    owned.append(client)
    client.start()

    assert await client.wait_connected(3)
    assert len(attempts) == 2
    assert (client.connects, client.reconnects, client.connect_failures) == (1, 0, 1)
    assert rec.on_reconnect_calls == 0 and rec.on_disconnect_calls == 0


# --------------------------------------------------------------------------------------------
# Reconnecting
# --------------------------------------------------------------------------------------------


async def test_server_drop_reconnects_and_resubscribes(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    rec = Recorder()
    client = client_for(venue.url, rec)
    owned.append(client)
    client.start()
    assert await client.wait_connected(3)

    await venue.drop()

    await wait_until(lambda: client.connects == 2 and client.connected)
    assert rec.on_connect_calls == 2
    await wait_until(lambda: rec.on_reconnect_calls == 1)
    assert rec.on_disconnect_calls == 1
    assert client.reconnects == 1
    assert venue.received == ["subscribe 1", "subscribe 2"]
    await venue.push("on the new connection")
    await wait_until(lambda: rec.texts == ["on the new connection"])


async def test_client_reconnects_when_the_server_comes_back_on_the_same_port(
    owned: list[ReconnectingWebSocket],
) -> None:
    first = FakeVenue()
    await first.start()
    port = first.port
    rec = Recorder()
    client = client_for(first.url, rec)
    owned.append(client)
    client.start()
    assert await client.wait_connected(3)

    await first.stop()
    await wait_until(lambda: not client.connected)
    second = FakeVenue()
    await second.start(port)
    try:
        await wait_until(lambda: client.connected and client.reconnects == 1)
        await wait_until(lambda: second.received == ["subscribe 2"])
        await wait_until(lambda: rec.on_reconnect_calls == 1)
    finally:
        await client.close()
        await second.stop()


async def test_on_reconnect_runs_alongside_the_reader_so_frames_keep_flowing(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    rec = Recorder()
    backfill_started = asyncio.Event()
    release_backfill = asyncio.Event()

    async def slow_backfill() -> None:
        backfill_started.set()
        await release_backfill.wait()

    client = client_for(venue.url, rec, on_reconnect=slow_backfill)
    owned.append(client)
    client.start()
    assert await client.wait_connected(3)
    await venue.drop()
    await asyncio.wait_for(backfill_started.wait(), 3)

    await venue.push("live fill")

    await wait_until(lambda: rec.texts == ["live fill"])
    release_backfill.set()


async def test_reconnect_from_on_message_drops_the_connection_and_later_frames(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    holder: list[ReconnectingWebSocket] = []
    seen: list[Frame] = []

    def on_message(frame: Frame, recv_ns: int) -> None:
        seen.append(frame)
        if frame == "gap":
            holder[0].reconnect("book gap")

    client = ReconnectingWebSocket(
        venue.url, name="t", on_message=on_message, backoff=fast_backoff(), **FAST
    )
    holder.append(client)
    owned.append(client)
    client.start()
    assert await client.wait_connected(3)
    old = venue.connections[-1]

    with contextlib.suppress(ConnectionClosed):
        await venue.push("gap", "stale")

    await wait_until(lambda: client.reconnects == 1 and client.connected)
    await asyncio.wait_for(old.wait_closed(), 3)
    assert seen == ["gap"]
    await venue.push("fresh")
    await wait_until(lambda: seen == ["gap", "fresh"])


async def test_reconnect_from_another_task_wakes_an_idle_reader(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    rec = Recorder()
    client = client_for(venue.url, rec)
    owned.append(client)
    client.start()
    assert await client.wait_connected(3)

    client.reconnect("operator")

    await wait_until(lambda: client.reconnects == 1 and client.connected)
    assert rec.on_connect_calls == 2


async def test_reconnect_from_on_connect_drops_that_connection_before_reading(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    rec = Recorder()

    async def on_connect(ws: ReconnectingWebSocket) -> None:
        await rec.on_connect(ws)
        if rec.on_connect_calls == 1:
            ws.reconnect("stale session")

    client = client_for(venue.url, rec, on_connect=on_connect)
    owned.append(client)
    client.start()

    await wait_until(lambda: client.reconnects == 1 and client.connected)
    await venue.push("read on the second connection")
    await wait_until(lambda: rec.texts == ["read on the second connection"])
    assert rec.on_connect_calls == 2


# --------------------------------------------------------------------------------------------
# Backoff
# --------------------------------------------------------------------------------------------


def test_backoff_doubles_its_ceiling_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(base=0.2, cap=10.0, rng=MaxJitter())

    delays = [backoff.next_delay() for _ in range(9)]

    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.2)


def test_backoff_jitter_stays_within_the_ceiling() -> None:
    backoff = Backoff(base=0.2, cap=10.0, rng=random.Random(1))
    for _ in range(50):
        ceiling = backoff.ceiling
        assert 0.0 <= backoff.next_delay() <= ceiling
    assert backoff.ceiling == 10.0


async def test_backoff_grows_while_the_server_is_down_and_is_capped(
    owned: list[ReconnectingWebSocket],
) -> None:
    delays: list[float] = []

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    rec = Recorder()
    client = client_for(
        f"ws://127.0.0.1:{free_port()}",
        rec,
        backoff=Backoff(base=0.2, cap=1.6, rng=MaxJitter()),
        sleep=record_sleep,
    )
    owned.append(client)
    client.start()

    await wait_until(lambda: len(delays) >= 6)

    assert delays[:6] == pytest.approx([0.2, 0.4, 0.8, 1.6, 1.6, 1.6])
    assert client.connect_failures >= 6
    assert not await client.wait_connected(0.01)
    assert rec.on_connect_calls == 0


async def test_a_connection_that_lived_long_enough_resets_the_backoff(
    venue: FakeVenue, owned: list[ReconnectingWebSocket]
) -> None:
    venue.close_on_message = True  # every connection dies right after its subscribe
    now = [0.0]
    delays: list[float] = []

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    rec = Recorder()

    async def on_connect(ws: ReconnectingWebSocket) -> None:
        await rec.on_connect(ws)
        if rec.on_connect_calls == 3:
            now[0] += 100.0  # this connection "lives" 100 s

    client = client_for(
        venue.url,
        rec,
        on_connect=on_connect,
        backoff=Backoff(base=0.01, cap=1.0, rng=MaxJitter()),
        stable_after=30.0,
        sleep=record_sleep,
        clock=lambda: now[0],
    )
    owned.append(client)
    client.start()

    await wait_until(lambda: len(delays) >= 4)

    assert delays[:4] == pytest.approx([0.01, 0.02, 0.01, 0.02])


# --------------------------------------------------------------------------------------------
# Closing
# --------------------------------------------------------------------------------------------


async def test_close_stops_everything_it_started(venue: FakeVenue) -> None:
    rec = Recorder()
    never = asyncio.Event()

    async def stuck_backfill() -> None:
        await never.wait()

    client = client_for(
        venue.url,
        rec,
        on_reconnect=stuck_backfill,
        app_ping_text="ping",
        app_ping_interval=0.01,
    )
    client.start()
    assert await client.wait_connected(3)
    await venue.drop()
    await wait_until(lambda: client.reconnects == 1)

    await client.close()

    ours = [t for t in asyncio.all_tasks() if t.get_name().startswith("ws-test")]
    assert ours == []
    assert not client.connected
    await asyncio.wait_for(venue.connections[-1].wait_closed(), 3)
    assert venue.connections[-1].close_code == 1000  # a clean close frame, not a dropped socket


async def test_close_while_waiting_to_reconnect_returns_at_once() -> None:
    client = ReconnectingWebSocket(
        f"ws://127.0.0.1:{free_port()}",
        name="down",
        on_message=lambda f, ns: None,
        backoff=Backoff(base=60.0, cap=60.0),
        **FAST,
    )
    client.start()
    await wait_until(lambda: client.connect_failures >= 1)

    await asyncio.wait_for(client.close(), 1.0)

    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("ws-down")] == []
    with pytest.raises(RuntimeError):
        client.start()


class FakeTime:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_send_pace_lets_n_messages_a_rolling_minute_through_then_waits_for_the_oldest() -> (
    None
):
    time_ = FakeTime()
    pace = SendPace(3, sleep=time_.sleep, clock=time_.clock)
    for _ in range(3):
        await pace.wait()
        time_.now += 10.0
    assert time_.slept == []  # three in 30 s: under the limit
    await pace.wait()  # the fourth waits until the first is a minute old
    assert time_.slept == [30.0] and pace.waits == 1
    assert time_.now == 1060.0


async def test_send_pace_holds_every_send_while_the_venue_asks_to_slow_down() -> None:
    time_ = FakeTime()
    pace = SendPace(100, sleep=time_.sleep, clock=time_.clock)
    await pace.wait()
    pace.slow_down(5.0)
    assert pace.delay() == 5.0
    await pace.wait()
    assert time_.slept == [5.0] and pace.delay() == 0.0
    with pytest.raises(ValueError):
        SendPace(0)


class RecordingSocket:
    """Stands in for a live connection: records what is sent on it."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)


def paced_client() -> ReconnectingWebSocket:
    return ReconnectingWebSocket(
        "ws://127.0.0.1:9/",
        name="paced",
        on_message=lambda frame, ns: None,
        messages_per_minute=180,
    )


async def test_frames_held_by_the_pace_leave_in_the_order_they_were_queued() -> None:
    client, socket = paced_client(), RecordingSocket()
    client._ws = socket  # type: ignore[assignment]
    client.slow_down(0.02)  # the venue said: too many
    client.send_soon("unsubscribe", "subscribe")
    client.send_soon("third")
    client.send_soon("fourth")
    await wait_until(lambda: len(socket.sent) == 4)
    assert socket.sent == ["unsubscribe", "subscribe", "third", "fourth"]


async def test_a_frame_that_waited_through_a_reconnect_is_not_sent_on_the_new_connection() -> None:
    client, old, new = paced_client(), RecordingSocket(), RecordingSocket()
    client._ws = old  # type: ignore[assignment]
    client.slow_down(0.05)
    waiting = asyncio.ensure_future(client.send("subscribe to the old connection"))
    client.send_soon("unsubscribe on the old", "subscribe on the old")
    await asyncio.sleep(0)
    client._ws = new  # type: ignore[assignment]  # replaced while the frames waited
    with pytest.raises(VenueError, match="replaced"):
        await waiting
    await client.send("the new connection's own subscribe")
    assert old.sent == [] and new.sent == ["the new connection's own subscribe"]

"""One WebSocket shared by several pairs, against a real `websockets` server on loopback."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from exchanges.base import VenueError
from exchanges.common.shared_ws import ANY, SharedSocket
from exchanges.common.ws import Backoff, Frame, ReconnectingWebSocket
from tests.exchanges.test_ws import FakeVenue
from tests.waiting import wait_for

FAST: dict[str, Any] = {
    "ping_interval": None,
    "open_timeout": 2.0,
    "close_timeout": 1.0,
    "backoff": None,  # replaced per socket: Backoff keeps a failure count
}


class Venue(FakeVenue):
    """test_ws's server, also telling which connection sent what and which connections ended."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: list[ServerConnection] = []  # connections whose handler ended
        self.numbered: list[tuple[int, str]] = []  # (connection number, message)

    async def _handler(self, conn: ServerConnection) -> None:
        self.connections.append(conn)
        number = len(self.connections)
        try:
            with contextlib.suppress(ConnectionClosed):
                async for message in conn:
                    self.numbered.append((number, str(message)))
        finally:
            self.closed.append(conn)

    def messages(self, connection: int) -> list[str]:
        return [m for n, m in self.numbered if n == connection]

    async def push_json(self, **frame: object) -> None:
        await self.push(json.dumps(frame))


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    server = Venue()
    await server.start()
    yield server
    await server.stop()


class Pair:
    """One pair's hooks on the shared socket: what it received and how often each ran."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.frames: list[dict[str, Any]] = []
        self.connects: list[ReconnectingWebSocket] = []
        self.sessions: list[int] = []  # ws.connects when on_connect ran (0: the first session)
        self.reconnects = 0
        self.disconnects = 0
        self.fail_on: Callable[[dict[str, Any]], bool] = lambda frame: False

    def on_message(self, frame: Frame, recv_ns: int) -> None:
        assert recv_ns > 0
        message = json.loads(frame)
        self.frames.append(message)
        if self.fail_on(message):
            raise RuntimeError(f"{self.key} cannot handle {message}")

    async def on_connect(self, ws: ReconnectingWebSocket) -> None:
        self.connects.append(ws)
        self.sessions.append(ws.connects)
        await ws.send(f"subscribe {self.key}")

    async def on_reconnect(self) -> None:
        self.reconnects += 1

    def on_disconnect(self) -> None:
        self.disconnects += 1

    def got(self, n: object) -> bool:
        return any(f.get("n") == n for f in self.frames)

    @property
    def numbers(self) -> list[object]:
        return [f.get("n") for f in self.frames]


class Routes:
    """`{"k": KEY, ...}` is KEY's ("" being ANY); a frame without "k" is everyone's."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frame: Frame) -> str | None:
        self.calls += 1
        key = json.loads(frame).get("k")
        return key if isinstance(key, str) else None


@pytest.fixture
async def sockets() -> AsyncIterator[list[SharedSocket]]:
    """Sockets registered here are closed (every pair detached) even when a test fails."""
    owned: list[SharedSocket] = []
    yield owned
    for socket in owned:
        for key in socket.keys:
            await socket.detach(key)


def shared(venue: Venue, owned: list[SharedSocket], route: Routes | None = None) -> SharedSocket:
    options = {**FAST, "backoff": Backoff(base=0.001, cap=0.005)}
    socket = SharedSocket(venue.url, name="test", route=route or Routes(), **options)
    owned.append(socket)
    return socket


async def attach(socket: SharedSocket, pair: Pair) -> ReconnectingWebSocket:
    return await socket.attach(
        pair.key,
        on_message=pair.on_message,
        on_connect=pair.on_connect,
        on_reconnect=pair.on_reconnect,
        on_disconnect=pair.on_disconnect,
    )


async def until(condition: Callable[[], bool]) -> None:
    """Wait for the condition, polling; the test fails after 10 s."""
    await wait_for(condition, timeout=10)


async def connected_pairs(venue: Venue, socket: SharedSocket, *pairs: Pair) -> None:
    """Attach the pairs and wait until the venue has every pair's subscription."""
    for pair in pairs:
        await attach(socket, pair)
    wanted = {f"subscribe {p.key}" for p in pairs}
    await until(lambda: wanted <= {m for _, m in venue.numbered})
    assert socket.ws is not None
    await until(lambda: socket.ws is not None and socket.ws.connected)


async def end_marker(venue: Venue, *pairs: Pair, n: str = "end") -> None:
    """A frame to everyone, then wait for it: frames are read in order, so every frame pushed
    before it has been handed out once each pair has it."""
    await venue.push_json(n=n)
    await until(lambda: all(p.got(n) for p in pairs))


# -- routing -----------------------------------------------------------------------------------


async def test_frames_reach_the_pair_their_route_names(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    socket = shared(venue, sockets)
    a, b = Pair("A"), Pair("B")
    await connected_pairs(venue, socket, a, b)

    await venue.push_json(k="A", n=1)
    await venue.push_json(k="B", n=2)
    await venue.push_json(n=3)  # routed to None: every pair's (account-wide, errors)
    await venue.push_json(k=ANY, n=4)  # a ping: answered by one pair only
    await venue.push_json(k="B", n=5)
    await venue.push_json(k="A", n=6)
    await end_marker(venue, a, b)

    assert [n for n in a.numbers if n != 4] == [1, 3, 6, "end"]
    assert [n for n in b.numbers if n != 4] == [2, 3, 5, "end"]
    assert a.numbers.count(4) + b.numbers.count(4) == 1
    assert socket.dropped == 0


async def test_a_lone_pair_gets_every_frame_unrouted(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    routes = Routes()
    socket = shared(venue, sockets, routes)
    a = Pair("A")
    await connected_pairs(venue, socket, a)

    await venue.push_json(k="B", n=1)  # another market's, on a socket only A ever used: A's own
    await venue.push_json(k=ANY, n=2)
    await end_marker(venue, a)

    assert a.numbers == [1, 2, "end"]
    assert routes.calls == 0
    assert socket.dropped == 0


async def test_frames_of_a_pair_that_left_are_dropped_not_given_to_the_one_left(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    socket = shared(venue, sockets)
    a, b = Pair("A"), Pair("B")
    await connected_pairs(venue, socket, a, b)

    await socket.detach("B")
    assert socket.keys == ["A"]
    # B's channels still flow on the connection: they must never reach A's book.
    await venue.push_json(k="B", n=1)
    await venue.push_json(k="A", n=2)
    await venue.push_json(k="B", n=3)
    await venue.push_json(k="C", n=4)  # a market nobody ever held
    await venue.push_json(k=ANY, n=5)  # the ping goes to the pair that is left
    await end_marker(venue, a)

    assert a.numbers == [2, 5, "end"]
    assert b.numbers == []
    assert socket.dropped == 3


# -- subscriptions and the one connection ------------------------------------------------------


async def test_one_connection_for_both_pairs_and_a_late_pair_subscribes_at_once(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    socket = shared(venue, sockets)
    a, b = Pair("A"), Pair("B")
    ws_a = await attach(socket, a)
    await until(lambda: ws_a.connected)
    assert len(a.connects) == 1
    assert venue.messages(1) == ["subscribe A"]

    ws_b = await attach(socket, b)
    # On the live connection, before attach returns.
    assert ws_b is ws_a
    assert b.connects == [ws_a]
    assert b.sessions == [1]  # the session already up, not a new one
    await until(lambda: "subscribe B" in venue.messages(1))

    await venue.push_json(k="B", n=1)
    await end_marker(venue, a, b)
    assert b.numbers == [1, "end"]
    assert len(a.connects) == 1 and len(b.connects) == 1  # once per connection
    assert len(venue.connections) == 1
    assert ws_a.connects == 1 and socket.reconnects == 0


async def test_pairs_attached_before_the_connection_is_up_subscribe_once_each(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    socket = shared(venue, sockets)
    pairs = [Pair(k) for k in "ABC"]
    for pair in pairs:  # attach does not yield before the connection is opened
        await attach(socket, pair)
    assert socket.ws is not None and not socket.ws.connected
    await until(lambda: len(venue.messages(1)) == 3)
    assert sorted(venue.messages(1)) == ["subscribe A", "subscribe B", "subscribe C"]
    assert all(len(p.connects) == 1 for p in pairs)
    assert len(venue.connections) == 1


async def test_a_key_attaches_once(venue: Venue, sockets: list[SharedSocket]) -> None:
    socket = shared(venue, sockets)
    a = Pair("A")
    await connected_pairs(venue, socket, a)
    with pytest.raises(VenueError, match="A is already attached"):
        await attach(socket, Pair("A"))
    assert socket.keys == ["A"]
    assert len(a.connects) == 1


# -- drops and reconnects ----------------------------------------------------------------------


async def test_a_drop_reaches_every_pair_and_the_reconnect_resubscribes_them(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    socket = shared(venue, sockets)
    a, b = Pair("A"), Pair("B")
    await connected_pairs(venue, socket, a)
    await connected_pairs(venue, socket, b)  # subscribed on the live connection

    await venue.drop()
    await until(lambda: a.disconnects == 1 and b.disconnects == 1)
    await until(lambda: a.reconnects == 1 and b.reconnects == 1)

    assert len(venue.connections) == 2
    assert len(a.connects) == 2 and len(b.connects) == 2
    assert a.sessions == [0, 1] and b.sessions == [1, 1]
    await until(lambda: sorted(venue.messages(2)) == ["subscribe A", "subscribe B"])
    assert socket.reconnects == 1
    assert a.disconnects == 1 and b.disconnects == 1

    # The new connection routes as the old one did.
    await venue.push_json(k="B", n=1)
    await venue.push_json(k="A", n=2)
    await end_marker(venue, a, b)
    assert a.numbers == [2, "end"] and b.numbers == [1, "end"]


async def test_a_pair_that_left_hears_nothing_of_later_drops(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    socket = shared(venue, sockets)
    a, b = Pair("A"), Pair("B")
    await connected_pairs(venue, socket, a, b)
    await socket.detach("B")

    await venue.drop()
    await until(lambda: a.reconnects == 1)
    assert a.disconnects == 1 and len(a.connects) == 2
    assert b.disconnects == 0 and b.reconnects == 0 and len(b.connects) == 1
    await until(lambda: venue.messages(2) == ["subscribe A"])


async def test_a_late_pair_that_cannot_subscribe_yet_subscribes_on_the_next_connection(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    socket = shared(venue, sockets)
    a, b = Pair("A"), Pair("B")
    await connected_pairs(venue, socket, a)
    refusals = 0

    async def on_connect(ws: ReconnectingWebSocket) -> None:
        nonlocal refusals
        if refusals == 0:
            refusals += 1
            raise VenueError("test: WebSocket closed while sending", retryable=True)
        await b.on_connect(ws)

    await socket.attach(
        "B",
        on_message=b.on_message,
        on_connect=on_connect,
        on_reconnect=b.on_reconnect,
        on_disconnect=b.on_disconnect,
    )
    assert refusals == 1 and b.connects == []
    assert socket.keys == ["A", "B"]

    await venue.drop()
    await until(lambda: a.reconnects == 1 and b.reconnects == 1)
    assert a.disconnects == 1
    assert b.disconnects == 0  # it was never subscribed on the connection that dropped
    assert len(b.connects) == 1
    await until(lambda: sorted(venue.messages(2)) == ["subscribe A", "subscribe B"])


async def test_an_attach_that_fails_leaves_nothing_attached(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    socket = shared(venue, sockets)
    a, b = Pair("A"), Pair("B")
    await connected_pairs(venue, socket, a)

    async def broken(ws: ReconnectingWebSocket) -> None:
        raise RuntimeError("a bug in B's subscribe")

    with pytest.raises(RuntimeError):
        await socket.attach("B", on_message=b.on_message, on_connect=broken)
    await venue.push_json(k="B", n=1)
    await end_marker(venue, a)
    assert socket.keys == ["A"]
    assert b.numbers == []


# -- closing and failures ----------------------------------------------------------------------


async def test_the_last_pair_out_closes_the_connection(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    socket = shared(venue, sockets)
    a, b = Pair("A"), Pair("B")
    await connected_pairs(venue, socket, a, b)
    ws = socket.ws
    assert ws is not None

    await socket.detach("A")
    await venue.push_json(k="B", n=1)
    await end_marker(venue, b)
    assert b.numbers == [1, "end"]  # still open for B
    assert venue.closed == []

    await socket.detach("B")
    assert socket.ws is None and socket.keys == []
    assert not ws.connected
    await until(lambda: len(venue.closed) == 1)
    assert venue.closed == venue.connections
    assert a.disconnects == 0 and b.disconnects == 0  # a close is no drop
    assert len(venue.connections) == 1  # and nothing reconnects


async def test_a_pair_failing_on_a_frame_for_everyone_does_not_keep_it_from_the_others(
    venue: Venue, sockets: list[SharedSocket]
) -> None:
    socket = shared(venue, sockets)
    a, b, c = Pair("A"), Pair("B"), Pair("C")
    a.fail_on = lambda frame: frame.get("n") == 1
    await connected_pairs(venue, socket, a, b, c)

    await venue.push_json(n=1)  # everyone's; A, the first in line, raises on it
    await venue.push_json(k="A", n=2)  # A goes on reading its own
    await end_marker(venue, a, b, c)

    assert a.numbers == [1, 2, "end"]
    assert b.numbers == [1, "end"]
    assert c.numbers == [1, "end"]
    assert socket.ws is not None and socket.ws.handler_errors == 0
    assert len(venue.connections) == 1

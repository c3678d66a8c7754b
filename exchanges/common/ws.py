"""One reconnecting WebSocket connection, shared by the Backpack and Lighter adapters.

`ReconnectingWebSocket` owns one reader task that connects, calls the venue's `on_connect`
(subscribe), then hands every frame to `on_message` *synchronously*, with the
`time.perf_counter_ns()` taken right when the frame was read: a fill can be hedged straight
from the callback, with no queue hop. When the connection drops (or a handler asks for it with
`reconnect()`), it waits a backoff delay (exponential, full jitter) and connects again.

Per-connection state is the venue's business, with two hooks:

* `on_connect(ws)` is awaited after every (re)connect and before any frame of that connection
  is read. Reset per-connection state here (order book, "subscribed" flags) and subscribe with
  `await ws.send(...)`. If it raises, the connection is dropped and retried with backoff.
* `on_reconnect()` runs after every *re*-connect, once `on_connect` succeeded, as a task owned
  by this object and concurrent with the reader, so that live frames (fills!) keep flowing
  while it does slow recovery work: REST backfill of fills missed while down, a book snapshot.
  It must do its own retries; an exception is logged at ERROR and not retried here.
* `on_disconnect()` (optional, synchronous) is called as soon as a connection is lost, e.g. to
  mark the book stale at once rather than at the next connect.

Keep-alive: websockets sends protocol pings (`ping_interval`/`ping_timeout`) and answers the
server's. Venues with application-level pings (Lighter: `{"type":"ping"}` -> `{"type":"pong"}`)
answer from `on_message` with `send_soon(text)`; `app_ping_text` additionally sends a message of
our own every `app_ping_interval` seconds.

Pacing: a venue that limits the messages a client sends (Lighter: 200 a minute) gets
`messages_per_minute`; `send` then waits for room, and `slow_down(seconds)` holds every send
when the venue says there were too many (`SendPace`).

Exceptions raised by `on_message` are logged and the frame skipped; they never stop the reader.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidURI,
    WebSocketException,
)
from websockets.uri import parse_uri

from exchanges.base import ConfigError, VenueError

log = logging.getLogger(__name__)

Frame = str | bytes
OnMessage = Callable[[Frame, int], None]
OnConnect = Callable[["ReconnectingWebSocket"], Awaitable[None]]
OnReconnect = Callable[[], Awaitable[None]]
OnDisconnect = Callable[[], None]
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class Backoff:
    """Exponential backoff with full jitter: the n-th consecutive failure waits a uniform
    random time in [0, min(cap, base * 2**n)]. Full jitter spreads the reconnects of many
    clients after a venue outage instead of having them all retry in lockstep."""

    def __init__(self, base: float = 0.2, cap: float = 10.0, rng: random.Random | None = None):
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    @property
    def ceiling(self) -> float:
        """Upper bound of the next delay."""
        return min(self.cap, self.base * 2 ** min(self.failures, 62))

    def next_delay(self) -> float:
        delay = self._rng.uniform(0.0, self.ceiling)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class SendPace:
    """The messages a client may send in any rolling minute, and the venue's requests to slow
    down: `wait()` returns once one more message may go (and counts it). Waiters go in the
    order they came (an unsubscribe queued before its subscribe must leave first)."""

    def __init__(
        self, per_minute: int, *, sleep: Sleep = asyncio.sleep, clock: Clock = time.monotonic
    ) -> None:
        if per_minute < 1:
            raise ValueError("a send pace needs at least one message a minute")
        self.per_minute = per_minute
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._sleep = sleep
        self._clock = clock
        self._turn = asyncio.Lock()  # first come, first sent
        self.waits = 0  # sends that had to wait (for the logs and the tests)

    def slow_down(self, seconds: float) -> None:
        """Hold every send for `seconds` from now (the venue said: too many messages)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def resume(self) -> None:
        """A new connection: the old one's hold does not apply to it."""
        self._paused_until = 0.0

    def delay(self) -> float:
        """Seconds until the next message may go (0: now)."""
        now = self._clock()
        while self._sent and now - self._sent[0] >= 60.0:
            self._sent.popleft()
        full = 60.0 - (now - self._sent[0]) if len(self._sent) >= self.per_minute else 0.0
        return max(self._paused_until - now, full, 0.0)

    async def wait(self) -> None:
        async with self._turn:
            while (delay := self.delay()) > 0:
                self.waits += 1
                await self._sleep(delay)
            self._sent.append(self._clock())


class ReconnectingWebSocket:
    """A WebSocket client connection that stays connected until `close()`."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        on_message: OnMessage,
        on_connect: OnConnect | None = None,
        on_reconnect: OnReconnect | None = None,
        on_disconnect: OnDisconnect | None = None,
        headers: Mapping[str, str] | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
        max_size: int | None = 8 * 2**20,
        compression: str | None = "deflate",
        app_ping_text: str | None = None,
        app_ping_interval: float = 30.0,
        backoff: Backoff | None = None,
        stable_after: float = 30.0,
        messages_per_minute: int | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        try:
            parse_uri(url)
        except InvalidURI as exc:
            raise ConfigError(f"{name}: invalid WebSocket URL {url!r}") from exc
        self.url = url
        self.name = name
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_reconnect = on_reconnect
        self._on_disconnect = on_disconnect
        self._connect_kwargs: dict[str, Any] = {
            "additional_headers": dict(headers) if headers else None,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "open_timeout": open_timeout,
            "close_timeout": close_timeout,
            "max_size": max_size,
            "compression": compression,
        }
        self._app_ping_text = app_ping_text
        self._app_ping_interval = app_ping_interval
        self.backoff = backoff or Backoff()
        self._stable_after = stable_after  # a connection that lived this long resets backoff
        self._sleep = sleep
        self._clock = clock
        self.pace = (
            None
            if messages_per_minute is None
            else SendPace(messages_per_minute, sleep=sleep, clock=clock)
        )
        self._init_state()

    def _init_state(self) -> None:
        """The connection's state and counters, before the first connect."""
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._children: set[asyncio.Task[Any]] = set()  # on_reconnect, app pings, closers
        self._soon_turn = asyncio.Lock()  # `send_soon` batches leave whole, first come first
        self._connected = asyncio.Event()
        self._closing = False
        self._reconnect_requested = False

        # Counters, for the dashboard and the tests.
        self.connects = 0  # sessions established (socket open and on_connect done)
        self.reconnects = 0  # sessions after the first
        self.connect_failures = 0  # failed handshakes and failed on_connect
        self.messages = 0
        self.handler_errors = 0
        self.last_message_at = 0.0  # time.monotonic() of the last frame read
        self.last_delay = 0.0  # the most recent backoff delay

    # ---------------------------------------------------------------------------------------
    # Lifecycle
    # ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader task (owned; `close()` ends it). Needs a running event loop."""
        if self._closing:
            raise RuntimeError(f"{self.name}: WebSocket already closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ws-{self.name}")
            self._task.add_done_callback(self._reader_done)

    async def close(self) -> None:
        """Close the socket cleanly, stop the reader and every task it owns, and wait for them."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            # A close frame first, so the venue sees a clean goodbye; bounded by close_timeout.
            await ws.close()
        tasks = set(self._children)
        if self._task is not None:
            tasks.add(self._task)
        current = asyncio.current_task()
        if current is not None:
            tasks.discard(current)  # close() called from one of our own hooks
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._children.clear()
        self._connected.clear()

    @property
    def connected(self) -> bool:
        """True while a connection is open and its `on_connect` has completed."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected; False if `timeout` seconds passed first."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def reconnect(self, reason: str = "") -> None:
        """Drop the current connection on purpose (e.g. to force a resync) and connect again.

        Safe to call from `on_message`: frames still queued on the dropped connection are not
        delivered. `on_connect` (and `on_reconnect`) run again on the new connection.
        """
        ws = self._ws
        if ws is None or self._reconnect_requested:
            return
        log.info("%s: reconnect requested%s", self.name, f" ({reason})" if reason else "")
        self._reconnect_requested = True
        if asyncio.current_task() is not self._task:
            # The reader may be parked in recv(): closing the socket wakes it up.
            self._spawn(ws.close(), "close")

    # ---------------------------------------------------------------------------------------
    # Sending
    # ---------------------------------------------------------------------------------------

    async def send(self, message: str | bytes, *, on: ClientConnection | None = None) -> None:
        """Send one frame on the current connection (once the pace allows), or only on `on`
        if given. Raises a retryable VenueError if down, or if the connection was replaced
        while the frame waited (it was meant for the old one; the new one subscribes afresh)."""
        ws = self._ws if on is None else on
        if ws is None or ws is not self._ws:
            raise VenueError(f"{self.name}: WebSocket not connected", retryable=True)
        if self.pace is not None:
            await self.pace.wait()
            if self._ws is not ws:
                raise VenueError(
                    f"{self.name}: connection replaced while a frame waited; not sent",
                    retryable=True,
                )
        try:
            await ws.send(message)
        except ConnectionClosed as exc:
            raise VenueError(
                f"{self.name}: WebSocket closed while sending", retryable=True
            ) from exc

    def slow_down(self, seconds: float) -> None:
        """The venue says we sent too many messages: hold our sends for `seconds`."""
        if self.pace is not None:
            self.pace.slow_down(seconds)
            log.warning("%s: sends held %.0f s (the venue asked to slow down)", self.name, seconds)

    def send_soon(self, *messages: str | bytes) -> None:
        """Send from synchronous code (e.g. a pong from `on_message`), in one owned task, in
        order. A failure is logged: the connection is going down anyway and will be replaced."""
        if self._ws is not None:
            self._spawn(self._send_logged(messages, self._ws), "send")

    async def _send_logged(self, messages: tuple[str | bytes, ...], on: ClientConnection) -> None:
        try:
            async with self._soon_turn:  # one batch after the other, in the order queued
                for message in messages:
                    await self.send(message, on=on)  # meant for this connection only
        except VenueError as exc:
            log.warning("%s: %s", self.name, exc)

    # ---------------------------------------------------------------------------------------
    # The reader
    # ---------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            try:
                ws = await connect(self.url, **self._connect_kwargs)
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.connect_failures += 1
                await self._wait_before_retry(f"connect failed: {type(exc).__name__}: {exc}")
                continue
            except Exception:
                # Unknown failure inside the client library: keep trying rather than leave the
                # venue without a stream, but show the traceback.
                self.connect_failures += 1
                log.exception("%s: unexpected error while connecting", self.name)
                await self._wait_before_retry("connect failed")
                continue
            connected_at = self._clock()
            await self._session(ws)
            if self._closing:
                break
            if self._clock() - connected_at >= self._stable_after:
                self.backoff.reset()
            await self._wait_before_retry(
                "reconnect requested" if self._reconnect_requested else "disconnected"
            )

    async def _wait_before_retry(self, why: str) -> None:
        delay = self.backoff.next_delay()
        self.last_delay = delay
        log.warning("%s: %s; reconnecting in %.2fs", self.name, why, delay)
        await self._sleep(delay)

    async def _session(self, ws: ClientConnection) -> None:
        """One connection: subscribe, then read until it ends. Always closes `ws`."""
        self._ws = ws
        if self.pace is not None:
            self.pace.resume()
        self._reconnect_requested = False
        pinger: asyncio.Task[None] | None = None
        established = False
        try:
            if self._on_connect is not None:
                try:
                    await self._on_connect(self)
                except (ConnectionClosed, VenueError) as exc:
                    self.connect_failures += 1
                    log.warning("%s: connection lost while subscribing: %s", self.name, exc)
                    return
                except Exception:
                    # Venue code: a bug in it must not end the reader; retry with backoff.
                    self.connect_failures += 1
                    log.exception("%s: on_connect failed; dropping the connection", self.name)
                    return
            established = True
            is_reconnect = self.connects > 0
            self.connects += 1
            if is_reconnect:
                self.reconnects += 1
            self._connected.set()
            log.info("%s: connected to %s (session %d)", self.name, self.url, self.connects)
            if is_reconnect and self._on_reconnect is not None:
                self._spawn(self._after_reconnect(self._on_reconnect), "on_reconnect")
            if self._app_ping_text is not None:
                pinger = self._spawn(self._app_ping(ws, self._app_ping_text), "app ping")
            if not self._reconnect_requested:  # on_connect itself may have asked for it
                await self._read(ws)
        finally:
            self._connected.clear()
            self._ws = None
            if pinger is not None:
                pinger.cancel()
            if established and self._on_disconnect is not None and not self._closing:
                try:
                    self._on_disconnect()
                except Exception:
                    log.exception("%s: on_disconnect failed", self.name)
            await ws.close()

    async def _read(self, ws: ClientConnection) -> None:
        # Hot path: locals instead of attribute lookups, one try per frame (free in 3.11).
        recv = ws.recv
        on_message = self._on_message
        perf_ns = time.perf_counter_ns
        monotonic = time.monotonic
        while True:
            try:
                frame = await recv()
            except ConnectionClosedOK as exc:
                # Venues close sockets routinely (Lighter after ~30 min): normal operation.
                if not self._closing and not self._reconnect_requested:
                    log.info("%s: connection closed by the server: %s", self.name, exc)
                return
            except ConnectionClosed as exc:
                if not self._closing and not self._reconnect_requested:
                    log.warning("%s: connection lost: %s", self.name, exc)
                return
            recv_ns = perf_ns()
            if self._reconnect_requested:  # reconnect() from another task: drop the rest
                return
            self.messages += 1
            self.last_message_at = monotonic()
            try:
                on_message(frame, recv_ns)
            except Exception:
                self.handler_errors += 1
                log.exception("%s: on_message failed; frame skipped", self.name)
            if self._reconnect_requested:  # the handler called reconnect()
                return

    async def _after_reconnect(self, hook: OnReconnect) -> None:
        await hook()

    async def _app_ping(self, ws: ClientConnection, text: str) -> None:
        while True:
            await asyncio.sleep(self._app_ping_interval)
            try:
                await ws.send(text)
            except ConnectionClosed:
                return

    # ---------------------------------------------------------------------------------------
    # Owned child tasks
    # ---------------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"ws-{self.name}-{what}")
        self._children.add(task)
        task.add_done_callback(self._child_done)
        return task

    def _child_done(self, task: asyncio.Task[Any]) -> None:
        self._children.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "%s: %s failed: %s: %s",
                self.name,
                task.get_name(),
                type(exc).__name__,
                exc,
                exc_info=exc,
            )

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.critical("%s: WebSocket reader stopped: %r", self.name, exc, exc_info=exc)

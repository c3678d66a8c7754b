"""One WebSocket connection of a venue account, shared by every pair traded on it.

A venue counts connections and client messages per account and per IP, and a process that
trades ten pairs needs no more sockets than one that trades one. `SharedSocket` owns one
`ReconnectingWebSocket` and multiplexes it: each pair attaches under a key (its market) with
the same four hooks a lone connection takes (exchanges/common/ws.py), and

* every (re)connect runs the `on_connect` of each attached pair in turn (each subscribes its
  own channels); a pair attached while the connection is up subscribes at once;
* every frame is handed to the pair whose key `route(frame)` names, synchronously as before;
  `route` returning None hands it to every pair (account-wide channels, error frames), ANY
  ("") to one pair (a ping, answered once); a frame of a key nobody holds (a pair that has
  left) is dropped: it must never reach another market's book;
* a drop calls each pair's `on_disconnect`, a reconnect runs each pair's `on_reconnect`;
* the connection closes when the last pair detaches.

While only one pair has ever attached nothing is routed: its frames reach it exactly as on a
socket of its own. Once a second pair has attached, every frame is routed for good: a pair
that left may still have channels flowing on the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exchanges.base import VenueError
from exchanges.common.tasks import start_unpaired
from exchanges.common.ws import (
    Frame,
    OnConnect,
    OnDisconnect,
    OnMessage,
    OnReconnect,
    ReconnectingWebSocket,
)

log = logging.getLogger(__name__)

Route = Callable[[Frame], str | None]
ANY = ""  # route(): any one pair


@dataclass(slots=True)
class _Subscriber:
    key: str
    on_message: OnMessage
    on_connect: OnConnect | None
    on_reconnect: OnReconnect | None
    on_disconnect: OnDisconnect | None


class SharedSocket:
    """A venue account's one connection for one stream kind, shared by its pairs."""

    def __init__(self, url: str, *, name: str, route: Route, **options: Any) -> None:
        self.url = url
        self.name = name
        self._route = route
        self._options = options
        self._subs: dict[str, _Subscriber] = {}
        self._live: set[str] = set()  # pairs subscribed on the current connection
        self._lock = asyncio.Lock()  # a connect's subscriptions vs a pair attaching
        self.ws: ReconnectingWebSocket | None = None
        self._reconnects_at_close = 0
        self.dropped = 0  # frames of a market no pair holds any more
        self._routed = False  # a second pair has attached: route every frame from now on

    @property
    def keys(self) -> list[str]:
        return list(self._subs)

    @property
    def reconnects(self) -> int:
        return self.ws.reconnects if self.ws is not None else self._reconnects_at_close

    async def attach(
        self,
        key: str,
        *,
        on_message: OnMessage,
        on_connect: OnConnect | None = None,
        on_reconnect: OnReconnect | None = None,
        on_disconnect: OnDisconnect | None = None,
    ) -> ReconnectingWebSocket:
        """Add a pair; the connection is opened by the first. Returns the shared connection."""
        if key in self._subs:
            raise VenueError(f"{self.name}: {key} is already attached to this connection")
        sub = _Subscriber(key, on_message, on_connect, on_reconnect, on_disconnect)
        async with self._lock:
            self._subs[key] = sub
            self._routed = self._routed or len(self._subs) > 1
            try:
                if self.ws is None:
                    self.ws = ReconnectingWebSocket(
                        self.url,
                        name=self.name,
                        on_message=self._on_message,
                        on_connect=self._on_connect,
                        on_reconnect=self._on_reconnect,
                        on_disconnect=self._on_disconnect,
                        **self._options,
                    )
                    start_unpaired(self.ws.start)
                elif self.ws.connected:
                    await self._subscribe(sub, self.ws)
            except BaseException:
                # A pair that failed to join is not attached: no frames, nothing to detach.
                self._subs.pop(key, None)
                self._live.discard(key)
                raise
        return self.ws

    async def detach(self, key: str) -> None:
        """Remove a pair (its channels end with the connection or stay unread); the last pair
        out closes the connection."""
        self._subs.pop(key, None)
        self._live.discard(key)
        if not self._subs and self.ws is not None:
            ws, self.ws = self.ws, None
            await ws.close()
            self._reconnects_at_close = ws.reconnects

    # -- the connection's hooks, fanned out ------------------------------------------------------

    async def _on_connect(self, ws: ReconnectingWebSocket) -> None:
        async with self._lock:
            self._live.clear()
            for sub in list(self._subs.values()):
                if sub.on_connect is not None:
                    await sub.on_connect(ws)
                self._live.add(sub.key)

    async def _subscribe(self, sub: _Subscriber, ws: ReconnectingWebSocket) -> None:
        """A pair joining a live connection subscribes now; if the connection fails meanwhile,
        the next connect subscribes it with the others."""
        try:
            if sub.on_connect is not None:
                await sub.on_connect(ws)
        except VenueError as exc:
            log.warning("%s: %s could not subscribe yet: %s", self.name, sub.key, exc)
            return
        self._live.add(sub.key)

    def _on_disconnect(self) -> None:
        live, self._live = self._live, set()
        for sub in list(self._subs.values()):
            if sub.key in live and sub.on_disconnect is not None:
                try:
                    sub.on_disconnect()
                except Exception:
                    log.exception("%s: on_disconnect of %s failed", self.name, sub.key)

    async def _on_reconnect(self) -> None:
        hooks = [s.on_reconnect() for s in list(self._subs.values()) if s.on_reconnect]
        results = await asyncio.gather(*hooks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("%s: recovery after reconnect failed: %r", self.name, result)

    def _on_message(self, frame: Frame, recv_ns: int) -> None:
        subs = self._subs
        if not self._routed:
            for sub in subs.values():
                sub.on_message(frame, recv_ns)
            return
        key = self._route(frame)
        if key is None:
            for sub in list(subs.values()):
                try:
                    sub.on_message(frame, recv_ns)
                except Exception:  # one pair's bug must not keep the frame from the others
                    log.exception("%s: %s failed on a frame; skipped", self.name, sub.key)
            return
        target = subs.get(key) if key != ANY else next(iter(subs.values()), None)
        if target is not None:
            target.on_message(frame, recv_ns)
        else:
            self.dropped += 1

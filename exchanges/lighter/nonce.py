"""The nonce sequencer of one API key, and the one lock every transaction holds.

The venue must see a key's nonces in order, so a transaction holds the sequencer from taking
its nonce until the venue has answered it. Holding is an object, `NonceHold`: taken by
`await NonceSequencer.hold()` (or, without yielding, `try_hold()` from a synchronous fill
callback), passed to whoever finishes the transaction, and given back exactly once by
`release()` (idempotent). Only the holder may advance, refresh or invalidate the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger(__name__)


class Mutex:
    """A FIFO lock for one event loop that can also be taken synchronously (`try_acquire`).

    asyncio.Lock can only be taken by awaiting, and between its release and the woken waiter
    running it reports itself unlocked, so a synchronous taker could overtake that waiter and
    both would hold it. Here a release hands the lock straight to the first waiter (it stays
    locked throughout), so "not locked" really means free: `try_acquire` then takes it at once
    without yielding. That lets the fill callback write a pre-signed hedge to the socket itself
    (`LighterVenue.try_send_now`) under the same locks as every other transaction.
    """

    def __init__(self) -> None:
        self._locked = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._locked

    def try_acquire(self) -> bool:
        """Take the lock now if it is free; never yields."""
        if self._locked:
            return False
        self._locked = True
        return True

    async def acquire(self) -> None:
        if not self._locked:
            self._locked = True  # free: taken without yielding, like asyncio.Lock
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        if not self._locked:
            raise RuntimeError("Mutex released while not locked")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter is skipped
                waiter.set_result(None)  # ownership passes on; the lock stays taken
                return
        self._locked = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class NonceSequencer:
    """The one source of nonces for one API key: a lock plus a local counter."""

    def __init__(self, fetch: Callable[[], Awaitable[int]]) -> None:
        self.lock = Mutex()  # held by exactly one NonceHold at a time
        self._fetch = fetch
        self._next: int | None = None
        self.refreshes = 0
        self.listeners: list[Callable[[], None]] = []
        # Set when another process sends with this API key (its nonces move under us): the
        # reason, told once to each `on_contested` callback (the run halts instead of fighting).
        self.contested: str | None = None
        self.on_contested: list[Callable[[str], None]] = []

    def contest(self, reason: str) -> None:
        if self.contested is None:
            self.contested = reason
            log.critical("%s", reason)
            for callback in list(self.on_contested):
                callback(reason)

    @property
    def next(self) -> int | None:
        """The nonce the next transaction will carry (None: unknown, refresh first)."""
        return self._next

    async def hold(self) -> NonceHold:
        """Wait for the sequencer; the caller must `release()` the hold (see `holding`)."""
        await self.lock.acquire()
        return NonceHold(self)

    def try_hold(self) -> NonceHold | None:
        """The sequencer now, without yielding, if it is free; else None."""
        return NonceHold(self) if self.lock.try_acquire() else None

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[NonceHold]:
        hold = await self.hold()
        try:
            yield hold
        finally:
            hold.release()

    def _set(self, value: int | None) -> None:
        self._next = value
        for listener in self.listeners:
            listener()


class NonceHold:
    """The right to use (and to move) the sequencer's count until `release()`."""

    __slots__ = ("_held", "_seq")

    def __init__(self, seq: NonceSequencer) -> None:
        self._seq = seq
        self._held = True

    @property
    def next(self) -> int | None:
        return self._seq.next

    async def ensure(self) -> int:
        nonce = self._seq.next
        return await self.refresh() if nonce is None else nonce

    async def refresh(self) -> int:
        """Ask the venue (`nextNonce`). VenueError if it cannot be reached."""
        nonce = await self._seq._fetch()
        self._seq.refreshes += 1
        self._seq._set(nonce)
        return nonce

    def consumed(self, nonce: int) -> None:
        """The venue accepted the transaction with `nonce`."""
        self._seq._set(nonce + 1)

    def invalidate(self) -> None:
        """Our count is not trustworthy any more: the next transaction refreshes first."""
        self._seq._set(None)

    def release(self) -> None:
        """Give the sequencer back; a second call does nothing."""
        if self._held:
            self._held = False
            self._seq.lock.release()

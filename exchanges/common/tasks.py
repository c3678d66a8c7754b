"""A venue's background tasks: each is owned here, logged if it fails, cancelled on close
(no fire-and-forget)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

# The pair a task works for ("" for what the pairs of an account share): set by the run of
# each pair, inherited by the tasks it starts, read by the logs (hedge/logsetup.py).
PAIR: contextvars.ContextVar[str] = contextvars.ContextVar("pair", default="")


def start_unpaired(start: Callable[[], None]) -> None:
    """Call `start` (which creates tasks) outside any pair: what an account's pairs share
    (a connection, its reader) logs as the account's, not as the first pair's."""
    contextvars.Context().run(start)


# What a venue part is given to start an owned background task: `spawn(coroutine, name)`.
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


class Tasks:
    def __init__(self, venue: str) -> None:
        self.venue = venue
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.venue}-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("%s failed: %r", task.get_name(), exc, exc_info=exc)

    async def cancel_all(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._tasks.clear()

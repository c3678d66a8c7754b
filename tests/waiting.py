"""Waiting in tests: on a condition, with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_for(
    condition: Callable[[], bool], timeout: float = 5.0, what: str = "the condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """The same for tests outside an event loop (other processes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)

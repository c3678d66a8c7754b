"""The retry policy of idempotent venue requests: tenacity, exponential backoff with jitter,
bounded attempts, retrying only errors that say so (`VenueError.retryable`: transport faults,
429, 5xx). Each attempt calls the request again, so a signed request is signed afresh.

    async for attempt in retry_policy(attempts=4, venue="backpack"):
        with attempt:
            return await call()

or, for a plain awaitable factory, `await with_retries(call, attempts=4, venue="backpack")`.
Requests sent through a `RequestBudget` (exchanges/common/http.py) may pass
`budget_waits_out_429s=True`: a 429 (`RateLimited`) is then retried as often as it takes, with
no wait of ours and without using an attempt, because the budget already holds the next send
until the venue's `Retry-After` has passed.

Work that must finish whatever it takes (recovery after a reconnect) runs `until_done`; work
that must ride out a burst but not a sustained outage runs `within_window`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from exchanges.base import VenueError
from exchanges.common.http import RateLimited

log = logging.getLogger(__name__)

_T = TypeVar("_T")

FIRST_WAIT_S = 0.05
MAX_WAIT_S = 2.0
JITTER_S = 0.05


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, VenueError) and exc.retryable


def retry_policy(
    *,
    attempts: int,
    venue: str,
    logger: logging.Logger = log,
    budget_waits_out_429s: bool = False,
) -> AsyncRetrying:
    """At most `attempts` failed calls in all; the last failure is re-raised as it is. With
    `budget_waits_out_429s`, a `RateLimited` failure is not one of them and is retried with no
    backoff of ours: the request budget has paused for the venue's `Retry-After`. It counts
    the 429s of one request: make a policy per request."""
    rate_limited = 0

    def budget_waits(state: RetryCallState) -> bool:
        return budget_waits_out_429s and isinstance(_failure(state), RateLimited)

    def stop(state: RetryCallState) -> bool:
        nonlocal rate_limited
        if budget_waits(state):
            rate_limited += 1
            return False
        return state.attempt_number - rate_limited >= attempts

    backoff = wait_exponential_jitter(initial=FIRST_WAIT_S, max=MAX_WAIT_S, jitter=JITTER_S)

    def wait(state: RetryCallState) -> float:
        return 0.0 if budget_waits(state) else backoff(state)

    def log_retry(state: RetryCallState) -> None:
        logger.warning(
            "%s request failed (attempt %d): %s; retrying",
            venue,
            state.attempt_number,
            _failure(state),
        )

    return AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(is_retryable),
        before_sleep=log_retry,
        reraise=True,
    )


def _failure(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    return outcome.exception() if outcome is not None else None


async def with_retries(
    call: Callable[[], Awaitable[_T]],
    *,
    attempts: int,
    venue: str,
    logger: logging.Logger = log,
) -> _T:
    """Run an idempotent request under `retry_policy`; `call` makes a new request each time."""
    async for attempt in retry_policy(attempts=attempts, venue=venue, logger=logger):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


async def until_done(
    call: Callable[[], Awaitable[object]],
    *,
    what: str,
    logger: logging.Logger = log,
    first_delay: float = 0.1,
    max_delay: float = 5.0,
) -> None:
    """Run `call` until it succeeds, however many VenueErrors it takes, backing off in between
    (any other error propagates; cancelling the caller stops it)."""
    delay = first_delay
    while True:
        try:
            await call()
            return
        except VenueError as exc:
            logger.warning("%s failed: %s; retrying", what, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)


OUTAGE_WINDOW_S = 60.0  # a venue failing longer than this is down, not in a burst
WINDOW_FIRST_WAIT_S = 0.2
WINDOW_MAX_WAIT_S = 5.0


async def within_window(
    call: Callable[[], Awaitable[_T]],
    *,
    what: str,
    window_s: float = OUTAGE_WINDOW_S,
    logger: logging.Logger = log,
) -> _T:
    """Run `call` again after each retryable VenueError (backoff with jitter) until it
    succeeds or `window_s` has passed since the first try: a burst of 5xx/429 is ridden out,
    only a sustained outage raises (its last error). Each call spends its own requests from
    the venue's budget, so the retries stay inside it."""
    retrying = AsyncRetrying(
        stop=stop_after_delay(window_s),
        wait=wait_exponential_jitter(
            initial=WINDOW_FIRST_WAIT_S, max=WINDOW_MAX_WAIT_S, jitter=WINDOW_FIRST_WAIT_S
        ),
        retry=retry_if_exception(is_retryable),
        before_sleep=lambda state: logger.warning(
            "%s failed (%s); trying again within %.0f s",
            what,
            state.outcome.exception() if state.outcome is not None else None,
            window_s,
        ),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

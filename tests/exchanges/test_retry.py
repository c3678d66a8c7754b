"""The common retry policy (exchanges/common/retry.py): an ordinary retryable failure uses one
of the attempts and is backed off; with `budget_waits_out_429s`, a 429 uses none and gets no
wait of ours. No sockets: the request is a scripted function; no real sleep: the policy's
sleep only records what it was asked to wait."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from exchanges.base import VenueError
from exchanges.common.http import RateLimited
from exchanges.common.retry import FIRST_WAIT_S, retry_policy


def server_error() -> VenueError:
    return VenueError("HTTP 503", retryable=True, status=503)


def rate_limited() -> RateLimited:
    return RateLimited("HTTP 429", retry_after_s=1.0)


class Script:
    """A request that fails with the given errors, in order, then answers "ok"."""

    def __init__(self, *failures: VenueError) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def run(
    call: Callable[[], Awaitable[str]],
    *,
    attempts: int,
    slept: list[float],
    budget_waits_out_429s: bool = False,
) -> str:
    """The request under the policy; the waits it asks for between calls go to `slept`."""

    async def record(seconds: float) -> None:
        slept.append(seconds)

    policy = retry_policy(
        attempts=attempts, venue="test", budget_waits_out_429s=budget_waits_out_429s
    ).copy(sleep=record)
    async for attempt in policy:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises")


async def test_a_retryable_failure_is_backed_off_and_retried() -> None:
    request = Script(server_error(), server_error())
    slept: list[float] = []

    answer = await run(request, attempts=3, slept=slept)

    assert answer == "ok"
    assert request.calls == 3
    assert len(slept) == 2 and all(wait >= FIRST_WAIT_S for wait in slept)


async def test_retryable_failures_use_up_the_attempts_and_the_last_is_raised() -> None:
    last = server_error()
    request = Script(server_error(), server_error(), last)

    with pytest.raises(VenueError) as raised:
        await run(request, attempts=3, slept=[])

    assert raised.value is last
    assert request.calls == 3


async def test_a_failure_that_is_not_retryable_is_raised_at_once() -> None:
    request = Script(VenueError("HTTP 400", retryable=False, status=400))

    with pytest.raises(VenueError):
        await run(request, attempts=3, slept=[])

    assert request.calls == 1


async def test_without_the_option_a_429_uses_an_attempt_like_any_failure() -> None:
    request = Script(rate_limited(), rate_limited())
    slept: list[float] = []

    with pytest.raises(RateLimited):
        await run(request, attempts=2, slept=slept)

    assert request.calls == 2
    assert len(slept) == 1 and slept[0] >= FIRST_WAIT_S


async def test_429s_waited_out_by_the_budget_use_no_attempt_and_no_wait_of_ours() -> None:
    request = Script(*(rate_limited() for _ in range(5)))
    slept: list[float] = []

    answer = await run(request, attempts=1, slept=slept, budget_waits_out_429s=True)

    assert answer == "ok"
    assert request.calls == 6
    assert slept == [0.0] * 5


async def test_between_429s_ordinary_failures_still_use_the_attempts() -> None:
    last = server_error()
    request = Script(rate_limited(), server_error(), rate_limited(), rate_limited(), last)
    slept: list[float] = []

    with pytest.raises(VenueError) as raised:
        await run(request, attempts=2, slept=slept, budget_waits_out_429s=True)

    assert raised.value is last
    assert request.calls == 5
    assert slept[0] == 0.0 and slept[1] >= FIRST_WAIT_S and slept[2:] == [0.0, 0.0]

"""Backpack REST: bpx-py's `Public`/`Account` build and sign the requests; our keep-alive
client (exchanges/common/http.py) sends them, each attempt through the account's request
budget, and turns answers into typed errors; idempotent requests are retried with backoff
(the policy of exchanges/common/retry.py), each attempt signed afresh by bpx-py. A 429
(`RateLimited`) is retried as often as it takes and never counts as a failed attempt
(`budget_waits_out_429s`): the budget holds the next attempt until the venue's `Retry-After`
has passed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bpx.async_.account import Account as BpxAccount
from bpx.async_.public import Public

from exchanges.backpack.auth import make_account
from exchanges.backpack.constants import (
    NOT_FOUND_CODE,
    NOT_FOUND_MESSAGE,
    POST_ONLY_CROSS,
    VENUE,
)
from exchanges.backpack.session import Session
from exchanges.base import ConfigError, PostOnlyRejected, VenueError
from exchanges.common.budget import RequestBudget
from exchanges.common.http import KeepAliveHttpClient, TransportError
from exchanges.common.retry import retry_policy

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class BackpackApiError(VenueError):
    """The venue answered a request with an error: HTTP status and its `{code, message}`."""

    def __init__(self, message: str, *, code: str = "", status: int | None, retryable: bool):
        super().__init__(message, retryable=retryable, status=status)
        self.code = code


class OrderNotFound(BackpackApiError):
    """The order is not (or no longer) resting: code `RESOURCE_NOT_FOUND` (HTTP 400 or 404),
    any 404, or the older "Order not found" message."""


def error_from_answer(status: int, body: object) -> VenueError | None:
    """The typed error an answer stands for, or None when it is a success."""
    code = message = ""
    if isinstance(body, dict) and "code" in body and "message" in body and "id" not in body:
        code, message = str(body["code"]), str(body["message"])
    elif status < 400:
        return None
    elif isinstance(body, str):
        message = body[:200]
    text = f"backpack HTTP {status}: {code or 'error'}: {message}".rstrip(": ")
    if POST_ONLY_CROSS in message:
        return PostOnlyRejected(text, status=status)
    if status == 429 or status >= 500:
        return BackpackApiError(text, code=code, status=status, retryable=True)
    if code == NOT_FOUND_CODE or status == 404 or message == NOT_FOUND_MESSAGE:
        return OrderNotFound(text, code=code, status=status, retryable=False)
    return BackpackApiError(text, code=code, status=status, retryable=False)


def certainly_not_placed(exc: VenueError) -> bool:
    """True when the venue cannot have acted on an order: rate-limited, or never connected."""
    if isinstance(exc, TransportError):
        return not exc.maybe_sent
    return exc.status == 429


class BackpackRest:
    """The REST clients of one venue connection, over one keep-alive HTTP client."""

    def __init__(
        self,
        session: Session,
        public_key: str | None,
        secret_key: str | None,
        budget: RequestBudget,
    ) -> None:
        self.session = session
        self.budget = budget
        self.http = KeepAliveHttpClient(
            timeout=session.request_timeout,
            venue=VENUE,
            error_from_answer=error_from_answer,
            budget=budget,
        )
        self.public = Public(http_client=self.http)
        self.public.BASE_URL = session.api_url
        self.account: BpxAccount | None = None
        if public_key or secret_key:
            if not (public_key and secret_key):
                raise ConfigError("Backpack needs both BACKPACK_PUBLIC_KEY and BACKPACK_SECRET_KEY")
            self.account = make_account(public_key, secret_key, self.http, session.api_url)

    async def close(self) -> None:
        await self.http.close()

    def trading_account(self) -> BpxAccount:
        if self.account is None:
            raise ConfigError("Backpack API keys are required for trading")
        return self.account

    async def retrying(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run an idempotent request, retrying retryable failures; `call` re-signs each time."""
        retrying = retry_policy(
            attempts=self.session.retry_attempts + 1,
            venue=VENUE,
            logger=log,
            budget_waits_out_429s=True,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def check_keys(self) -> None:
        """ConfigError when the venue refuses the API key."""
        try:
            await self.retrying(lambda: self.trading_account().get_collateral())
        except BackpackApiError as exc:
            if exc.status in (400, 401, 403):
                raise ConfigError(f"Backpack rejected the API key: {exc.code or exc}") from exc
            raise

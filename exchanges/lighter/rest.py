"""Reads through the SDK's `ApiClient` (OrderApi, AccountApi, TransactionApi): idempotent,
retried with tenacity on 5xx/timeouts; private reads carry an auth token, replaced once when
refused. Transactions do not go this way (see transport.py).

Every attempt (retries too) first takes one request of the account's budget at READ priority,
named by its endpoint ("account", "nextNonce", "trades", ...). A 429 pauses the budget for the
venue's `Retry-After` and the read is tried again after it: a 429 is never a failure by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import lighter

from exchanges.base import VenueError
from exchanges.common.budget import Priority
from exchanges.common.retry import retry_policy
from exchanges.lighter.parsing import retry_after_s
from exchanges.lighter.session import Session

log = logging.getLogger(__name__)

_T = TypeVar("_T")
MAX_RATE_LIMITED = 20  # 429s in a row on one attempt before it counts as a (retryable) failure
TokenSource = Callable[[bool], Awaitable[str]]  # force -> a valid auth token


def _error_text(exc: lighter.ApiException) -> str:
    data = getattr(exc, "data", None)
    message = getattr(data, "message", None)
    if message:
        return str(message)
    return str(exc.body or exc.reason or "")[:200]


def _header(exc: lighter.ApiException, name: str) -> str | None:
    headers = getattr(exc, "headers", None)
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name:
            return str(value)
    return None


class LighterRest:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._api: lighter.ApiClient | None = None
        self.tokens: TokenSource | None = None  # set once the signer exists

    def open(self, api_url: str) -> None:
        self._api = lighter.ApiClient(lighter.Configuration(host=api_url))

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    def client(self) -> lighter.ApiClient:
        if self._api is None:
            raise VenueError("lighter: not connected; call connect() first")
        return self._api

    async def read(
        self, call: Callable[[], Awaitable[_T]], what: str, priority: Priority = Priority.READ
    ) -> _T:
        """An idempotent read through the SDK, retried on retryable failures. `what` is the
        endpoint's name: the kind of request the budget counts."""
        # Reads are idempotent: ride out a burst of 5xx (a few in a row is normal).
        retrying = retry_policy(
            attempts=self.session.retry_attempts + 3, venue="lighter", logger=log
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(call, what, priority)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _attempt(
        self, call: Callable[[], Awaitable[_T]], what: str, priority: Priority
    ) -> _T:
        """One attempt: budget, then the call; a 429 pauses the budget and asks again."""
        budget = self.session.budget
        for _ in range(MAX_RATE_LIMITED):
            await budget.take(what, priority)
            try:
                return await call()
            except lighter.ApiException as exc:
                status = exc.status or 0
                if status == 429:
                    budget.penalize(retry_after_s(_header(exc, "retry-after")))
                    continue
                retryable = status >= 500 or status == 0
                raise VenueError(
                    f"lighter {what}: HTTP {status}: {_error_text(exc)}",
                    retryable=retryable,
                    status=status,
                ) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise VenueError(
                    f"lighter {what}: {type(exc).__name__}: {exc}", retryable=True
                ) from exc
        raise VenueError(f"lighter {what}: rate limited (429)", retryable=True, status=429)

    async def private_read(
        self,
        call: Callable[[str], Awaitable[_T]],
        what: str,
        priority: Priority = Priority.READ,
    ) -> _T:
        """A read that needs an auth token; a refused token is replaced once."""
        if self.tokens is None:
            raise VenueError("lighter: no signer for private reads")
        token = await self.tokens(False)
        try:
            return await self.read(lambda: call(token), what, priority)
        except VenueError as exc:
            if exc.status != 400 or "auth" not in str(exc).lower():
                raise
            log.info("lighter %s: auth token refused (%s); refreshing it", what, exc)
        token = await self.tokens(True)
        return await self.read(lambda: call(token), what, priority)

    async def next_nonce(self) -> int:
        session = self.session
        assert session.account_index is not None and session.api_key_index is not None
        api = lighter.TransactionApi(self.client())
        account, key = session.account_index, session.api_key_index
        reply = await self.read(
            lambda: api.next_nonce(
                account_index=account, api_key_index=key, _request_timeout=session.request_timeout
            ),
            "nextNonce",
            # Asked while a transaction holds the nonce (a hedge, often): never behind reads.
            Priority.HEDGE,
        )
        if reply.code != 200:
            raise VenueError(
                f"lighter nextNonce: code {reply.code} {reply.message}", retryable=True
            )
        return int(reply.nonce)

"""A keep-alive HTTP client for venue REST APIs: one aiohttp session per venue connection,
with a pooled keep-alive connector, one SSL context, bounded timeouts, and typed errors.

It speaks the `get/post/delete/patch(url, headers, params|data)` interface of bpx-py's
`AsyncHttpClient`, so it can be injected as an SDK's `http_client` (bpx-py's own client opens
a new TCP/TLS connection per call and returns error bodies as plain dicts). How an answer maps
to an error is the venue's: pass `error_from_answer`; the default treats any HTTP status of 400
or more as a `VenueError` (retryable for 429 and 5xx).

With a `RequestBudget` (exchanges/common/budget.py) every attempt first takes one request of
its endpoint ("METHOD /path") from the account's budget: reads at `Priority.READ`, everything
else at `Priority.ORDER`, unless the caller runs it under `request_priority(...)` (a hedge).
A 429 closes the budget for the answer's `Retry-After` and raises `RateLimited`: the venue did
not act on the request, and the caller sends it again (signed afresh) once the budget lets it.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi

from exchanges.base import VenueError
from exchanges.common.budget import Priority, RequestBudget

ErrorFromAnswer = Callable[[int, object], VenueError | None]

# The priority of the requests the current task sends (None: by method, see `_priority`).
_PRIORITY: ContextVar[Priority | None] = ContextVar("request_priority", default=None)


@contextlib.contextmanager
def request_priority(priority: Priority) -> Iterator[None]:
    """Requests sent inside this block (by this task) take the budget at `priority`: how an
    order the bot must get out (a hedge) goes before quotes and reads through an SDK that knows
    nothing of budgets."""
    token = _PRIORITY.set(priority)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


class TransportError(VenueError):
    """No answer. `maybe_sent` is False only when the request certainly never left (connect
    failed); otherwise the venue may have acted on it."""

    def __init__(self, message: str, *, maybe_sent: bool):
        super().__init__(message, retryable=True)
        self.maybe_sent = maybe_sent


class RateLimited(VenueError):
    """HTTP 429: the venue refused the request unread (it acted on nothing). The budget is
    already paused for `retry_after_s`; sending again waits for it."""

    def __init__(self, message: str, *, retry_after_s: float | None):
        super().__init__(message, retryable=True, status=429)
        self.retry_after_s = retry_after_s


def http_status_error(venue: str) -> ErrorFromAnswer:
    """The default mapping: a success below 400, else a VenueError with the body's text."""

    def error_from_answer(status: int, body: object) -> VenueError | None:
        if status < 400:
            return None
        return VenueError(
            f"{venue} HTTP {status}: {str(body)[:200]}",
            retryable=status == 429 or status >= 500,
            status=status,
        )

    return error_from_answer


class KeepAliveHttpClient:
    """`get/post/delete/patch` over one keep-alive aiohttp session, raising typed errors
    instead of returning error bodies. `requests` counts the requests sent."""

    def __init__(
        self,
        *,
        timeout: float,
        venue: str = "venue",
        error_from_answer: ErrorFromAnswer | None = None,
        max_connections: int = 8,
        budget: RequestBudget | None = None,
    ) -> None:
        self.proxy: str | None = None  # bpx-py's constructors assign it
        self.venue = venue
        self._error_from_answer = error_from_answer or http_status_error(venue)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 5.0))
        self._max_connections = max_connections
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
        self.budget = budget
        self.requests = 0

    def _ensure_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=certifi.where())
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=60.0,
                ssl=self._ssl,
                ttl_dns_cache=300,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                json_serialize=json.dumps,
                raise_for_status=False,
            )
            self._session = session
        return session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        return await self._request("GET", url, headers, params=params)

    async def post(
        self, url: str, headers: Mapping[str, str] | None = None, data: object = None
    ) -> Any:
        return await self._request("POST", url, headers, body=json.dumps(data))

    async def delete(
        self, url: str, headers: Mapping[str, str] | None = None, data: object = None
    ) -> Any:
        return await self._request("DELETE", url, headers, body=json.dumps(data))

    async def patch(
        self, url: str, headers: Mapping[str, str] | None = None, data: object = None
    ) -> Any:
        return await self._request("PATCH", url, headers, body=json.dumps(data))

    async def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        *,
        params: Mapping[str, Any] | None = None,
        body: str | None = None,
    ) -> Any:
        if self.budget is not None:
            await self.budget.take(endpoint(method, url), _priority(method))
        session = self._ensure_session()
        self.requests += 1
        query = {k: query_value(v) for k, v in params.items()} if params else None
        what = f"{self.venue} {method}"
        try:
            async with session.request(
                method, url, headers=headers, params=query, data=body, proxy=self.proxy or None
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                raw = await response.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise TransportError(f"{what}: connect timed out", maybe_sent=False) from exc
        except TimeoutError as exc:
            raise TransportError(f"{what} timed out", maybe_sent=True) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(f"{what}: cannot connect: {exc}", maybe_sent=False) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{what}: {type(exc).__name__}: {exc}", maybe_sent=True) from exc
        answer = decode_body(raw)
        if status == 429:
            raise self._rate_limited(what, answer, retry_after)
        error = self._error_from_answer(status, answer)
        if error is not None:
            raise error
        return answer

    def _rate_limited(self, what: str, answer: object, retry_after: str | None) -> RateLimited:
        pause = retry_after_s(retry_after)
        if self.budget is not None:
            self.budget.penalize(pause)
        return RateLimited(f"{what}: HTTP 429: {str(answer)[:200]}", retry_after_s=pause)


def _priority(method: str) -> Priority:
    chosen = _PRIORITY.get()
    if chosen is not None:
        return chosen
    return Priority.READ if method == "GET" else Priority.ORDER


def endpoint(method: str, url: str) -> str:
    """The budget's kind of a request: "METHOD /path" (as the venues' ledgers count them)."""
    return f"{method} {urlsplit(url).path}"


def retry_after_s(header: str | None) -> float | None:
    """`Retry-After` in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not header:
        return None
    text = header.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def query_value(value: object) -> str:
    # Signers (bpx-py) sign booleans lower-case, as JSON writes them; the query must match.
    return str(value).lower() if isinstance(value, bool) else str(value)


def decode_body(raw: bytes) -> object:
    """JSON when it parses, else the text; None for an empty body (e.g. a 202)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")

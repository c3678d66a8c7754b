"""BackpackVenue: the maker venue. bpx-py builds and signs requests; we send them and stream.

Sections, in the order `lighter.py` mirrors them: HTTP transport · markets · book · orders ·
account · stream parsing · recovery.

- REST goes through bpx-py's async `Account`/`Public` (request building and ED25519 signing),
  but is sent by `KeepAliveHttpClient`, injected as their `http_client`: one aiohttp session per
  venue with a keep-alive connection pool, one SSL context, bounded timeouts, and typed errors
  from HTTP statuses and `{code, message}` bodies (bpx-py's own client opens a new TCP/TLS
  connection per call and returns error bodies as plain dicts).
- Idempotent reads and cancels are retried with tenacity (exponential backoff with jitter,
  bounded attempts). Every attempt calls bpx-py again, so every attempt is signed afresh.
- An order placement that times out, drops after sending, or gets a 5xx is *ambiguous*:
  `place_post_only` resolves it by looking the order up by client id (order query, order
  history, fill history) until known. A lookup that starts after the request's signing window
  has closed and finds nothing proves the order was never placed (the venue refuses a request
  older than its window), and only then is the order sent again — never a duplicate.
- One `ReconnectingWebSocket` carries `depth.<symbol>` (the in-memory book behind `top()`) and,
  with keys, the signed `account.orderUpdate.<symbol>` (our fills and order events, delivered
  synchronously to the event callback). Fills are deduplicated by trade id; order events that
  would move an order backwards (a reordered or duplicated message) are dropped.
- After every reconnect the venue backfills over REST what the socket missed: fills since the
  last event seen, and the state of our orders still live. History trails the engine (by up to
  `history_lag_s`), so the backfill reads once at once and once more after that lag;
  `fills_since` likewise waits for the history to catch up with the last fill seen.
- Fill history rows with a null or 0 `tradeId` are the venue's own (system) fills: skipped with
  a log line, never a dedupe key (the bot hedges only its own maker fills, which always carry
  a trade id).
- Cancels are sent by our client with an integer `clientId` (bpx-py would send a string, which
  the venue refuses). `RESOURCE_NOT_FOUND` (HTTP 400 or 404) means the order is gone; a 202
  with no body means the cancel is requested: its outcome comes from the stream.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import logging
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import aiohttp
import certifi
from bpx.async_.account import Account
from bpx.async_.public import Public
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from exchanges.base import (
    AmbiguousOrderState,
    Balance,
    BookTop,
    ConfigError,
    EventEmitter,
    Fill,
    InsufficientLiquidity,
    Market,
    Order,
    OrderEvent,
    OrderKind,
    OrderStatus,
    PostOnlyRejected,
    Side,
    VenueError,
    describe_orders,
    describe_top,
)
from exchanges.orderbook import (
    BACKPACK,
    OrderBook,
    apply_backpack_depth,
    apply_backpack_snapshot,
)
from exchanges.ws import ReconnectingWebSocket

log = logging.getLogger(__name__)

VENUE = "backpack"
QUOTE = "USDC"
POST_ONLY_CROSS = "Order would immediately match and take"
POST_ONLY_EXPIRY = "PostOnlyTaker"
NOT_FOUND_CODE = "RESOURCE_NOT_FOUND"

_T = TypeVar("_T")

# --------------------------------------------------------------------------------------------
# HTTP transport
# --------------------------------------------------------------------------------------------


class BackpackApiError(VenueError):
    """The venue answered a request with an error: HTTP status and its `{code, message}`."""

    def __init__(self, message: str, *, code: str = "", status: int | None, retryable: bool):
        super().__init__(message, retryable=retryable, status=status)
        self.code = code


class OrderNotFound(BackpackApiError):
    """The order is not (or no longer) resting: code `RESOURCE_NOT_FOUND` (HTTP 400 or 404),
    any 404, or the older "Order not found" message."""


class TransportError(VenueError):
    """No answer. `maybe_sent` is False only when the request certainly never left (connect
    failed); otherwise the venue may have acted on it."""

    def __init__(self, message: str, *, maybe_sent: bool):
        super().__init__(message, retryable=True)
        self.maybe_sent = maybe_sent


def _error_from_answer(status: int, body: object) -> VenueError | None:
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
    if code == NOT_FOUND_CODE or status == 404 or message == "Order not found":
        return OrderNotFound(text, code=code, status=status, retryable=False)
    return BackpackApiError(text, code=code, status=status, retryable=False)


class KeepAliveHttpClient:
    """bpx-py's `AsyncHttpClient` interface (`get/post/delete/patch`) over one keep-alive
    aiohttp session, raising typed errors instead of returning error bodies."""

    def __init__(self, *, timeout: float, max_connections: int = 8) -> None:
        self.proxy: str | None = None  # bpx-py's constructors assign it
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 5.0))
        self._max_connections = max_connections
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
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
        session = self._ensure_session()
        self.requests += 1
        query = {k: _query_value(v) for k, v in params.items()} if params else None
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                params=query,
                data=body,
                proxy=self.proxy or None,
            ) as response:
                status = response.status
                raw = await response.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise TransportError(f"backpack {method}: connect timed out", maybe_sent=False) from exc
        except TimeoutError as exc:
            raise TransportError(f"backpack {method} timed out", maybe_sent=True) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(
                f"backpack {method}: cannot connect: {exc}", maybe_sent=False
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"backpack {method}: {type(exc).__name__}: {exc}", maybe_sent=True
            ) from exc
        answer = _decode(raw)
        error = _error_from_answer(status, answer)
        if error is not None:
            raise error
        return answer


def _query_value(value: object) -> str:
    # bpx-py signs booleans lower-case; the query must carry the same text.
    return str(value).lower() if isinstance(value, bool) else str(value)


def _decode(raw: bytes) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, VenueError) and exc.retryable


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    log.warning("backpack request failed (attempt %d): %s; retrying", state.attempt_number, exc)


# --------------------------------------------------------------------------------------------
# Wire helpers
# --------------------------------------------------------------------------------------------

_STATUS: dict[str, OrderStatus] = {
    "New": OrderStatus.OPEN,
    "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELED,
    "Expired": OrderStatus.EXPIRED,
    "TriggerPending": OrderStatus.OPEN,
    "TriggerFailed": OrderStatus.REJECTED,
}
_EVENT_STATUS: dict[str, OrderStatus] = {
    "orderAccepted": OrderStatus.OPEN,
    "orderCancelled": OrderStatus.CANCELED,
    "orderExpired": OrderStatus.EXPIRED,
}
# How far each status is along an order's life, to drop events that would move it back.
_PROGRESS: dict[OrderStatus, int] = {
    OrderStatus.PENDING_NEW: 0,
    OrderStatus.OPEN: 1,
    OrderStatus.PENDING_CANCEL: 1,
    OrderStatus.PARTIALLY_FILLED: 2,
    OrderStatus.CANCELED: 3,
    OrderStatus.EXPIRED: 3,
    OrderStatus.REJECTED: 3,
    OrderStatus.FILLED: 4,
}
_PARSE_ERRORS = (KeyError, TypeError, ValueError, InvalidOperation, AttributeError)


def _side(wire: object) -> Side:
    if wire == "Bid":
        return Side.BUY
    if wire == "Ask":
        return Side.SELL
    raise ValueError(f"unknown side {wire!r}")


def _wire_side(side: Side) -> str:
    return "Bid" if side is Side.BUY else "Ask"


def _dec(value: object) -> Decimal:
    result = Decimal(str(value))
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def _fmt(value: Decimal) -> str:
    return "0" if value == 0 else format(value.normalize(), "f")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _history_ts_ms(value: object) -> int:
    """History timestamps come as ISO-8601 (UTC, no zone) or as epoch milliseconds."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _client_id(value: object) -> int | None:
    return None if value is None or value == "" else int(str(value))


def _is_system_trade(trade_id: object) -> bool:
    """Fills the venue makes itself (backstop liquidation, ADL, ...) carry a null or 0 trade id:
    not an id at all, never a dedupe key."""
    return trade_id is None or str(trade_id) in ("", "0")


@dataclass(slots=True)
class _Delivered:
    """What the callback has been told about one order: drops stale or repeated events."""

    progress: int = 0
    filled: Decimal = Decimal(0)


# --------------------------------------------------------------------------------------------
# The venue
# --------------------------------------------------------------------------------------------


class BackpackVenue(EventEmitter):
    """Backpack perpetuals through bpx-py + our keep-alive HTTP client + one WebSocket."""

    name = VENUE

    # How long before an unresolved ambiguous placement is handed to the caller.
    resolve_timeout_s = 60.0
    # Slack on the venue's signing window before "not found" counts as "never placed".
    window_margin_ms = 500
    # Overlap when backfilling fills after a reconnect (clock skew; duplicates are dropped).
    backfill_overlap_ms = 5_000
    # How far fill/order history may trail the engine (the sim: 0.5 s; the venue publishes no
    # figure). Reads that must be complete wait this long after the last thing they must show.
    history_lag_s = 1.0
    max_remembered = 100_000

    def __init__(
        self,
        ticker: str,
        *,
        api_url: str,
        ws_url: str,
        public_key: str | None,
        secret_key: str | None,
        request_timeout: float = 10.0,
        retry_attempts: int = 4,
        order_window_ms: int = 5_000,
    ) -> None:
        """`retry_attempts` is how many times a failed idempotent request (or a placement known
        not to have happened) is sent again: up to `retry_attempts + 1` sends in all.
        `order_window_ms` is the signing window of order placements: after an ambiguous
        placement, "not found" is only final once that window has closed."""
        if not ticker or not ticker.isalnum():
            raise ConfigError(f"invalid ticker {ticker!r}")
        if retry_attempts < 0:
            raise ConfigError("retry_attempts must not be negative")
        if request_timeout <= 0:
            raise ConfigError("request_timeout must be positive")
        self.ticker = ticker.upper()
        self.symbol = f"{self.ticker}_{QUOTE}_PERP"
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.ws_url = ws_url
        self.request_timeout = request_timeout
        self.retry_attempts = retry_attempts
        self.order_window_ms = order_window_ms
        self.http = KeepAliveHttpClient(timeout=request_timeout)
        self._public = Public(http_client=self.http)
        self._public.BASE_URL = self.api_url
        self._account: Account | None = None
        if public_key or secret_key:
            if not (public_key and secret_key):
                raise ConfigError("Backpack needs both BACKPACK_PUBLIC_KEY and BACKPACK_SECRET_KEY")
            self._account = _make_account(public_key, secret_key, self.http, self.api_url)
        self._market: Market | None = None
        self._book = OrderBook(self.symbol, BACKPACK)
        self._ws: ReconnectingWebSocket | None = None
        self._reconnects_at_close = 0
        self._resync_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        EventEmitter.__init__(self)
        self._seen_trades: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._delivered: OrderedDict[str, _Delivered] = OrderedDict()
        self._ours: OrderedDict[str, int] = OrderedDict()  # live order ids we placed -> client
        self._last_event_ms = 0  # venue time of the last account event seen
        self._disconnected_ms = 0  # our wall clock when the socket last dropped
        self._connected_ms = 0
        self._history_settles_at = 0.0  # monotonic: fill history is complete up to now after it
        self.fills_delivered = 0
        self.duplicates_dropped = 0
        self.malformed = 0
        self.resyncs = 0
        self.recoveries = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Load the market rules, check the keys, start the stream and wait for a synced book."""
        self._connected_ms = _now_ms()
        self._history_moved()  # fills made before we connected may still be on their way
        try:
            await self._load_market()
            if self._account is not None:
                await self._check_keys()
            self._ws = ReconnectingWebSocket(
                self.ws_url,
                name="backpack",
                on_message=self._on_frame,
                on_connect=self._on_ws_connect,
                on_reconnect=self._on_ws_reconnect,
                on_disconnect=self._on_ws_disconnect,
            )
            self._ws.start()
            ready_by = time.monotonic() + max(10.0, 2 * self.request_timeout)
            while not self._book.synced:
                if time.monotonic() > ready_by:
                    raise VenueError("backpack: order book not synced in time", retryable=True)
                await asyncio.sleep(0.01)
        except BaseException:
            await self.close()
            raise
        log.info("backpack connected: %s", self.symbol)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._reconnects_at_close = self._ws.reconnects
            self._ws = None
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._tasks.clear()
        await self.http.close()

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=f"backpack-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("backpack %s failed: %r", task.get_name(), exc, exc_info=exc)

    # -- REST plumbing -------------------------------------------------------------------------

    async def _retrying(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run an idempotent request, retrying retryable failures; `call` re-signs each time."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry_attempts + 1),
            wait=wait_exponential_jitter(initial=0.05, max=2.0, jitter=0.05),
            retry=retry_if_exception(_is_retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _trading_account(self) -> Account:
        if self._account is None:
            raise ConfigError("Backpack API keys are required for trading")
        return self._account

    async def _check_keys(self) -> None:
        try:
            await self._retrying(lambda: self._trading_account().get_collateral())
        except BackpackApiError as exc:
            if exc.status in (400, 401, 403):
                raise ConfigError(f"Backpack rejected the API key: {exc.code or exc}") from exc
            raise

    # -- markets -------------------------------------------------------------------------------

    async def _load_market(self) -> None:
        markets = await self._retrying(self._public.get_markets)
        if not isinstance(markets, list):
            raise VenueError(f"backpack markets: unexpected answer {str(markets)[:200]}")
        for raw in markets:
            if isinstance(raw, dict) and raw.get("symbol") == self.symbol:
                self._market = self._parse_market(raw)
                return
        raise ConfigError(f"unknown Backpack market {self.symbol} for ticker {self.ticker!r}")

    def _parse_market(self, raw: Mapping[str, Any]) -> Market:
        state = raw.get("orderBookState", "Open")
        if state in ("Closed", "CancelOnly"):
            raise ConfigError(f"Backpack market {self.symbol} is not trading (state {state})")
        try:
            filters = raw["filters"]
            return Market(
                venue=VENUE,
                ticker=self.ticker,
                symbol=self.symbol,
                tick_size=_dec(filters["price"]["tickSize"]),
                step_size=_dec(filters["quantity"]["stepSize"]),
                min_qty=_dec(filters["quantity"]["minQuantity"]),
            )
        except _PARSE_ERRORS as exc:
            raise VenueError(f"backpack market {self.symbol}: malformed rules: {exc}") from exc

    def market(self) -> Market:
        if self._market is None:
            raise VenueError("backpack: market rules not loaded; call connect() first")
        return self._market

    # -- book ----------------------------------------------------------------------------------

    @property
    def reconnects(self) -> int:
        """WebSocket sessions after the first (the dashboard and the journal count them)."""
        return self._ws.reconnects if self._ws is not None else self._reconnects_at_close

    def top(self) -> BookTop | None:
        """Best bid/ask from the in-memory book; None while it is not synced."""
        return self._book.top()

    @property
    def book(self) -> OrderBook:
        return self._book

    def _request_resync(self) -> None:
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = self._spawn(self._resync(), "book-resync")

    async def _resync(self) -> None:
        """Seed the book from a REST snapshot; the stream's deltas are buffered meanwhile."""
        delay = 0.05
        while True:
            try:
                depth = await self._retrying(lambda: self._public.get_depth(self.symbol))
            except VenueError as exc:
                log.warning("backpack depth snapshot failed: %s", exc)
            else:
                if apply_backpack_snapshot(self._book, depth):
                    self.resyncs += 1
                    log.info("backpack book synced at %s", self._book.seq)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- orders ----------------------------------------------------------------------------------

    async def place_post_only(
        self, side: Side, qty: Decimal, price: Decimal, client_id: int
    ) -> Order:
        """A post-only GTC limit. PostOnlyRejected if it would take; never placed twice."""
        order = await self._place(side, qty, price, client_id, OrderKind.POST_ONLY)
        if order.status is OrderStatus.EXPIRED and order.filled_qty == 0:
            # Some venue versions expire a crossing post-only instead of refusing it.
            raise PostOnlyRejected(f"backpack post-only {client_id} expired ({POST_ONLY_EXPIRY})")
        return order

    async def place_hedge(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> Order:
        """An IOC limit at the worst acceptable price that never rests. Returns the order with
        what filled; InsufficientLiquidity when nothing did within the price."""
        order = await self._place(side, qty, worst_price, client_id, OrderKind.IOC)
        if order.status.is_terminal and order.filled_qty == 0:
            raise InsufficientLiquidity(
                f"backpack hedge {client_id}: nothing filled within {worst_price}"
            )
        return order

    async def _place(
        self, side: Side, qty: Decimal, price: Decimal, client_id: int, kind: OrderKind
    ) -> Order:
        account = self._trading_account()
        if not 0 < client_id < 2**32:
            # bpx-py silently drops a client id of 0, and the venue wants a uint32.
            raise ValueError(f"client_id must be a uint32 above 0, got {client_id}")
        quantity, limit_price = self._order_numbers(qty, price)
        post_only = kind is OrderKind.POST_ONLY
        last_error: VenueError | None = None
        for attempt in range(1, self.retry_attempts + 2):
            sent_ms = _now_ms()
            try:
                reply = await account.execute_order(
                    symbol=self.symbol,
                    side=_wire_side(side),
                    order_type="Limit",
                    time_in_force="GTC" if post_only else "IOC",
                    quantity=quantity,
                    price=limit_price,
                    client_id=client_id,
                    post_only=post_only,
                    window=self.order_window_ms,
                )
            except PostOnlyRejected:
                log.info("backpack post-only %d rejected: would take", client_id)
                raise
            except VenueError as exc:
                if not exc.retryable:
                    raise
                last_error = exc
                if _certainly_not_placed(exc):
                    log.warning("backpack order %d not placed (%s); retrying", client_id, exc)
                    await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
                    continue
                log.warning("backpack order %d ambiguous (%s); resolving", client_id, exc)
                found = await self._resolve(client_id, sent_ms, kind)
                if found is not None:
                    self._remember_ours(found)
                    return found
                log.warning("backpack order %d was never placed; sending again", client_id)
                continue
            order = self._order_from_wire(reply, kind)
            self._remember_ours(order)
            log.info(
                "backpack %s %s %s @ %s cid=%d -> %s %s",
                kind.value,
                side.value,
                quantity,
                limit_price,
                client_id,
                order.order_id,
                order.status.value,
            )
            return order
        raise VenueError(
            f"backpack order {client_id} not placed after {self.retry_attempts + 1} attempts: "
            f"{last_error}",
            retryable=True,
        )

    def _order_numbers(self, qty: Decimal, price: Decimal) -> tuple[str, str]:
        market = self.market()
        if qty <= 0 or qty % market.step_size != 0 or qty < market.min_qty:
            raise ValueError(
                f"quantity {qty} is not a multiple of {market.step_size} >= {market.min_qty}"
            )
        if price <= 0 or price % market.tick_size != 0:
            raise ValueError(f"price {price} is not a positive multiple of {market.tick_size}")
        return _fmt(qty), _fmt(price)

    async def _resolve(self, client_id: int, sent_ms: int, kind: OrderKind) -> Order | None:
        """Find out what happened to an ambiguous placement. The order when it exists; None when
        a lookup that began after the signing window closed found nothing (never placed)."""
        # ... and the history (read by the lookup) must have caught up with that moment.
        history_lag_ms = int(self.history_lag_s * 1000)
        window_closed_ms = sent_ms + self.order_window_ms + self.window_margin_ms + history_lag_ms
        give_up = time.monotonic() + self.resolve_timeout_s
        delay = 0.05
        while True:
            started_ms = _now_ms()
            try:
                order = await self._lookup(client_id, sent_ms, kind)
            except VenueError as exc:
                log.warning("backpack lookup of order %d failed: %s", client_id, exc)
            else:
                if order is not None:
                    log.info(
                        "backpack order %d resolved: %s %s",
                        client_id,
                        order.order_id,
                        order.status.value,
                    )
                    return order
                if started_ms > window_closed_ms:
                    return None
            if time.monotonic() > give_up:
                raise AmbiguousOrderState(
                    f"backpack order {client_id}: state unknown after "
                    f"{self.resolve_timeout_s:.0f}s",
                    client_id=client_id,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _lookup(self, client_id: int, sent_ms: int, kind: OrderKind) -> Order | None:
        account = self._trading_account()
        try:
            raw = await account.get_open_order(self.symbol, client_id=client_id)
            return self._order_from_wire(raw, kind)
        except OrderNotFound:
            pass
        # Finished already (filled, cancelled, expired): the order history knows it.
        not_before = sent_ms - 60_000
        history = await account.get_order_history(symbol=self.symbol, limit=200)
        for raw in history if isinstance(history, list) else []:
            if _client_id(raw.get("clientId")) == client_id and _created_ms(raw) >= not_before:
                return self._order_from_wire(raw, kind)
        # Last resort: its fills (an order that traded at once may show there first).
        fills = [f for f in await self._fetch_fills(not_before) if f.client_id == client_id]
        if not fills:
            return None
        return self._order_from_fills(fills, kind)

    def _order_from_fills(self, fills: list[Fill], kind: OrderKind) -> Order:
        first = fills[0]
        filled = sum((f.qty for f in fills), Decimal(0))
        return Order(
            venue=VENUE,
            symbol=self.symbol,
            client_id=first.client_id or 0,
            side=first.side,
            qty=filled,
            price=first.price,
            kind=kind,
            status=OrderStatus.FILLED,
            order_id=first.order_id,
            filled_qty=filled,
        )

    def _order_from_wire(self, raw: Mapping[str, Any], kind: OrderKind | None = None) -> Order:
        try:
            tif = raw.get("timeInForce")
            if kind is None:
                kind = OrderKind.IOC if tif in ("IOC", "FOK") else OrderKind.POST_ONLY
            price = raw.get("price")
            return Order(
                venue=VENUE,
                symbol=str(raw["symbol"]),
                client_id=_client_id(raw.get("clientId")) or 0,
                side=_side(raw["side"]),
                qty=_dec(raw["quantity"]),
                price=_dec(price) if price is not None else Decimal(0),
                kind=kind,
                status=_STATUS[str(raw["status"])],
                order_id=str(raw["id"]),
                filled_qty=_dec(raw.get("executedQuantity") or 0),
            )
        except _PARSE_ERRORS as exc:
            raise VenueError(f"backpack: malformed order {str(raw)[:200]}: {exc}") from exc

    def _remember_ours(self, order: Order) -> None:
        if order.order_id is None or order.status.is_terminal:
            return
        self._ours[order.order_id] = order.client_id
        while len(self._ours) > 10_000:
            self._ours.popitem(last=False)

    async def cancel(self, order: Order) -> None:
        """Cancel by order id (or client id). An order that is already gone is not an error:
        its final state arrives as events (a fill after a cancel is still delivered). A cancel
        answered 202 with no body is only requested: its outcome, too, comes from the stream."""
        order_id = order.order_id
        client_id = order.client_id if order_id is None else None
        try:
            answer = await self._retrying(lambda: self._send_cancel(order_id, client_id))
        except OrderNotFound:
            log.info("backpack cancel %s: already finished", order_id or client_id)
            return
        if answer is None:
            log.info("backpack cancel %s (cid=%d) requested (202)", order_id, order.client_id)
            return
        log.info("backpack cancel %s (cid=%d) accepted", order_id, order.client_id)

    async def _send_cancel(self, order_id: str | None, client_id: int | None) -> Any:
        """`DELETE api/v1/order`, signed by bpx-py, sent by our client. Not bpx-py's
        `cancel_order`: it sends a client id as a string, which the venue's parser refuses
        (it wants a JSON u32). The signature is the same either way (`str` of the value)."""
        account = self._trading_account()
        params: dict[str, Any] = {"symbol": self.symbol}
        if order_id is not None:
            params["orderId"] = order_id
        elif client_id:
            params["clientId"] = int(client_id)
        else:
            raise ValueError("cancel needs an order id or a client id")
        headers = account._headers(params, "orderCancel", window=None)
        return await self.http.delete(account.BPX_API_URL + "api/v1/order", headers, params)

    async def cancel_all(self) -> None:
        account = self._trading_account()
        cancelled = await self._retrying(lambda: account.cancel_all_orders(self.symbol))
        log.info("backpack cancel_all: %d orders", len(cancelled) if cancelled else 0)

    async def open_orders(self) -> list[Order]:
        account = self._trading_account()
        raw = await self._retrying(lambda: account.get_open_orders(symbol=self.symbol))
        return [self._order_from_wire(o) for o in raw if isinstance(o, dict)]

    # -- account -------------------------------------------------------------------------------

    async def position(self) -> Decimal:
        """Signed net position of our symbol (0 when none)."""
        account = self._trading_account()
        rows = await self._retrying(account.get_open_positions)
        for row in rows if isinstance(rows, list) else []:
            if row.get("symbol") == self.symbol:
                return _dec(row["netQuantity"])
        return Decimal(0)

    async def balance(self) -> Balance:
        account = self._trading_account()
        raw = await self._retrying(account.get_collateral)
        try:
            return Balance(
                venue=VENUE,
                equity=_dec(raw["netEquity"]),
                available=_dec(raw["netEquityAvailable"]),
                extra={"pnlUnrealized": str(raw.get("pnlUnrealized", "0"))},
            )
        except _PARSE_ERRORS as exc:
            raise VenueError(f"backpack collateral: malformed answer: {exc}") from exc

    async def fills_since(self, since_ms: int) -> list[Fill]:
        """Our fills on this symbol from `since_ms` (venue time) until the call, oldest first.

        Fill history trails the engine: a fill seen on the stream (or made while the stream was
        down, or before we connected) less than `history_lag_s` ago may not be there yet, so
        the read waits until that much time has passed since the last such moment."""
        self._trading_account()
        wait = self._history_settles_at - time.monotonic()
        if wait > 0:
            log.debug("backpack fills_since: waiting %.2fs for fill history to catch up", wait)
            await asyncio.sleep(wait)
        return await self._fetch_fills(since_ms)

    def _history_moved(self) -> None:
        """Something just happened that fill history may not show for `history_lag_s`."""
        self._history_settles_at = time.monotonic() + self.history_lag_s

    async def _fetch_fills(self, since_ms: int) -> list[Fill]:
        account = self._trading_account()
        page_size = 1000
        fills: dict[str, Fill] = {}
        offset = 0
        while True:
            rows = await self._retrying(
                functools.partial(
                    account.get_fill_history,
                    symbol=self.symbol,
                    limit=page_size,
                    offset=offset,
                    from_=max(since_ms, 1),
                )
            )
            recv_ns = time.perf_counter_ns()
            if not isinstance(rows, list):
                raise VenueError(f"backpack fills: unexpected answer {str(rows)[:200]}")
            for row in rows:
                fill = self._fill_from_history(row, recv_ns)
                if fill is not None:
                    fills[fill.trade_id] = fill
            if len(rows) < page_size:
                break
            offset += page_size
        return sorted(fills.values(), key=lambda f: (f.venue_ts_ms, _trade_order(f.trade_id)))

    def _fill_from_history(self, row: object, recv_ns: int) -> Fill | None:
        try:
            if not isinstance(row, dict):
                raise TypeError("fill row is not an object")
            if _is_system_trade(row.get("tradeId")):
                # A venue-made fill (liquidation, ADL, ...): never one of our maker fills, and
                # no id to deduplicate by. Position checks see its effect; the hedger must not.
                log.warning(
                    "backpack: system fill in history skipped (tradeId %r, %s): %.200s",
                    row.get("tradeId"),
                    row.get("systemOrderType"),
                    row,
                )
                return None
            return Fill(
                venue=VENUE,
                symbol=str(row["symbol"]),
                trade_id=str(row["tradeId"]),
                order_id=str(row["orderId"]),
                client_id=_client_id(row.get("clientId")),
                side=_side(row["side"]),
                qty=_dec(row["quantity"]),
                price=_dec(row["price"]),
                fee=_dec(row.get("fee") or 0),
                is_maker=bool(row.get("isMaker")),
                venue_ts_ms=_history_ts_ms(row["timestamp"]),
                recv_ns=recv_ns,
            )
        except _PARSE_ERRORS as exc:
            self.malformed += 1
            log.warning("backpack: malformed fill history row skipped (%s): %.200s", exc, row)
            return None

    async def describe(self) -> dict[str, object]:
        """A summary for `hedgebot check`: market rules, collateral, position, open orders."""
        market = self.market()
        summary: dict[str, object] = {
            "venue": VENUE,
            "symbol": market.symbol,
            "tick_size": str(market.tick_size),
            "step_size": str(market.step_size),
            "min_qty": str(market.min_qty),
            "book": describe_top(self.top()),
        }
        if self._account is None:
            summary["account"] = "no API keys (public data only)"
            return summary
        balance, position, orders = await asyncio.gather(
            self.balance(), self.position(), self.open_orders()
        )
        summary.update(
            {
                "equity": str(balance.equity),
                "available": str(balance.available),
                "position": str(position),
                "open_orders": describe_orders(orders),
            }
        )
        return summary

    # -- events ----------------------------------------------------------------------------------

    def _emit_fill(self, fill: Fill) -> bool:
        """Deliver a fill once per trade id. False when it was a duplicate."""
        if fill.trade_id in self._seen_trades:
            self.duplicates_dropped += 1
            return False
        self._seen_trades.add(fill.trade_id)
        self._seen_order.append(fill.trade_id)
        if len(self._seen_order) > self.max_remembered:
            self._seen_trades.discard(self._seen_order.popleft())
        self.fills_delivered += 1
        self._emit(fill)  # first: the hedge goes out from this call; logging can wait
        log.info(
            "backpack fill trade=%s order=%s cid=%s %s %s @ %s",
            fill.trade_id,
            fill.order_id,
            fill.client_id,
            fill.side.value,
            fill.qty,
            fill.price,
        )
        return True

    def _emit_order_event(self, event: OrderEvent) -> None:
        """Deliver an order event only if it moves the order forward (more filled, or a later
        stage): a duplicated or reordered message never sends an order backwards."""
        delivered = self._delivered.get(event.order_id)
        progress = _PROGRESS[event.status]
        if delivered is None:
            delivered = _Delivered()
            self._delivered[event.order_id] = delivered
            if len(self._delivered) > 10_000:
                self._delivered.popitem(last=False)
        elif event.filled_qty < delivered.filled or (
            event.filled_qty == delivered.filled and progress <= delivered.progress
        ):
            self.duplicates_dropped += 1
            return
        delivered.filled = event.filled_qty
        delivered.progress = max(progress, delivered.progress)
        if event.status.is_terminal:
            self._ours.pop(event.order_id, None)
        self._emit(event)

    # -- stream parsing ----------------------------------------------------------------------------

    async def _on_ws_connect(self, ws: ReconnectingWebSocket) -> None:
        self._book.reset()
        streams = [f"depth.{self.symbol}"]
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": streams}))
        if self._account is not None:
            await ws.send(json.dumps(self._private_subscribe()))
        self._request_resync()

    def _private_subscribe(self) -> dict[str, object]:
        account = self._trading_account()
        timestamp = _now_ms()
        window = 5000
        # bpx-py's own signer over exactly "instruction=subscribe&timestamp=..&window=..".
        signature = account._sign({}, "subscribe", timestamp, window)
        return {
            "method": "SUBSCRIBE",
            "params": [f"account.orderUpdate.{self.symbol}"],
            "signature": [account.public_key, signature, str(timestamp), str(window)],
        }

    def _on_ws_disconnect(self) -> None:
        self._disconnected_ms = _now_ms()
        self._history_moved()
        self._book.mark_gap("websocket disconnected")

    async def _on_ws_reconnect(self) -> None:
        """Backfill what the socket missed; retried until done (or the venue is closed)."""
        if self._account is None:
            return
        delay = 0.1
        while True:
            try:
                await self._recover()
                return
            except VenueError as exc:
                log.warning("backpack recovery after reconnect failed: %s; retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _on_frame(self, frame: str | bytes, recv_ns: int) -> None:
        try:
            message = json.loads(frame)
            stream = message.get("stream")
            data = message.get("data")
        except (ValueError, AttributeError):
            self.malformed += 1
            log.warning("backpack: unparsable frame skipped: %.200r", frame)
            return
        if stream is None:
            if "error" in message:
                # Most likely a refused subscription: the fill stream would stay silent. A new
                # connection resubscribes (with backoff) and its reconnect hook backfills fills
                # over REST, so nothing is lost meanwhile.
                log.error("backpack stream error: %s; reconnecting", message["error"])
                if self._ws is not None:
                    self._ws.reconnect("stream error")
            else:
                log.debug("backpack: frame without stream skipped: %.200r", frame)
            return
        if not isinstance(data, dict):
            self.malformed += 1
            log.warning("backpack: message without data skipped: %.200r", frame)
            return
        if stream.startswith("depth."):
            if not apply_backpack_depth(self._book, data):
                self._request_resync()
        elif stream.startswith("account.orderUpdate"):
            self._on_order_update(data, recv_ns)
        else:
            log.debug("backpack: message on unexpected stream %s skipped", stream)

    def _on_order_update(self, data: Mapping[str, Any], recv_ns: int) -> None:
        """One `account.orderUpdate` event: a Fill (then its order event) for `orderFill`, an
        OrderEvent for accepted/cancelled/expired; anything else or malformed is skipped."""
        kind = data.get("e")
        if data.get("s") != self.symbol:
            log.debug("backpack: order update for %s skipped", data.get("s"))
            return
        if kind != "orderFill" and kind not in _EVENT_STATUS:
            log.debug("backpack: order event %s skipped", kind)
            return
        try:
            order_id = str(data["i"])
            client_id = _client_id(data.get("c"))
            filled = _dec(data["z"])
            engine_ms = int(data.get("T") or data.get("E") or 0) // 1000
            fill: Fill | None = None
            if kind == "orderFill":
                if _is_system_trade(data["t"]):
                    raise ValueError(f"fill without a trade id ({data['t']!r})")
                fill = Fill(
                    venue=VENUE,
                    symbol=self.symbol,
                    trade_id=str(data["t"]),
                    order_id=order_id,
                    client_id=client_id,
                    side=_side(data["S"]),
                    qty=_dec(data["l"]),
                    price=_dec(data["L"]),
                    fee=_dec(data.get("n") or 0),
                    is_maker=bool(data.get("m")),
                    venue_ts_ms=engine_ms,
                    recv_ns=recv_ns,
                )
                if fill.qty <= 0 or fill.price <= 0:
                    raise ValueError("fill without a positive quantity and price")
                status = _STATUS[str(data["X"])]
            else:
                status = _EVENT_STATUS[str(kind)]
            reason = str(data.get("R") or "")
        except _PARSE_ERRORS as exc:
            self.malformed += 1
            log.warning("backpack: malformed %s skipped (%s): %.300s", kind, exc, data)
            return
        self._last_event_ms = max(self._last_event_ms, engine_ms)
        self._history_moved()
        if fill is not None:
            self._emit_fill(fill)  # the fill first: it is what the hedge waits for
        self._emit_order_event(
            OrderEvent(VENUE, self.symbol, order_id, client_id, status, filled, reason, recv_ns)
        )

    # -- recovery ------------------------------------------------------------------------------

    async def _recover(self) -> None:
        """After a reconnect: fills since the last event seen, then our live orders' states.

        Read twice: at once (most of the gap, hedged without delay), and again once the
        history has caught up with the reconnect. History trails the engine, so a fill made
        just before the stream came back may be missing from the first read; everything after
        the resubscription comes on the stream. Fills are deduplicated by trade id."""
        settled_at = time.monotonic() + self.history_lag_s
        since = (
            min(
                self._last_event_ms or self._connected_ms,
                self._disconnected_ms or _now_ms(),
            )
            - self.backfill_overlap_ms
        )
        recovered, seen = await self._backfill(since)
        wait = settled_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        late, seen = await self._backfill(since)
        self.recoveries += 1
        log.info(
            "backpack recovery: %d missed fills delivered (%d after the history lag; %d seen)",
            recovered + late,
            late,
            seen,
        )

    async def _backfill(self, since_ms: int) -> tuple[int, int]:
        """Deliver the fills in history since `since_ms` not delivered yet, then our orders'
        states: (fills delivered now, fills seen)."""
        fills = await self._fetch_fills(since_ms)
        delivered = sum(1 for fill in fills if self._emit_fill(fill))
        await self._recover_orders()
        return delivered, len(fills)

    async def _recover_orders(self) -> None:
        if not self._ours:
            return
        account = self._trading_account()
        open_rows = await self._retrying(lambda: account.get_open_orders(symbol=self.symbol))
        states = {str(r["id"]): r for r in open_rows if isinstance(r, dict) and "id" in r}
        if any(order_id not in states for order_id in self._ours):
            history = await self._retrying(
                lambda: account.get_order_history(symbol=self.symbol, limit=500)
            )
            for row in history if isinstance(history, list) else []:
                if isinstance(row, dict) and "id" in row:
                    states.setdefault(str(row["id"]), row)
        recv_ns = time.perf_counter_ns()
        for order_id in list(self._ours):
            row = states.get(order_id)
            if row is None:
                continue
            try:
                order = self._order_from_wire(row)
            except VenueError as exc:
                log.warning("backpack recovery: %s", exc)
                continue
            self._emit_order_event(
                OrderEvent(
                    VENUE,
                    self.symbol,
                    order_id,
                    order.client_id or None,
                    order.status,
                    order.filled_qty,
                    str(row.get("expiryReason") or ""),
                    recv_ns,
                )
            )


def _make_account(public_key: str, secret_key: str, http: KeepAliveHttpClient, url: str) -> Account:
    try:
        raw = base64.b64decode(secret_key, validate=True)
        if len(raw) != 32:
            raise ValueError("not 32 bytes")
        account = Account(public_key, secret_key, http_client=http)
    except (ValueError, binascii.Error) as exc:
        # The message never includes the key itself.
        raise ConfigError("BACKPACK_SECRET_KEY is not a base64 ED25519 seed") from exc
    account.BPX_API_URL = url
    return account


def _certainly_not_placed(exc: VenueError) -> bool:
    """True when the venue cannot have acted on the order: rate-limited, or never connected."""
    if isinstance(exc, TransportError):
        return not exc.maybe_sent
    return exc.status == 429


def _created_ms(raw: Mapping[str, Any]) -> int:
    created = raw.get("createdAt")
    if created is None:
        return 0
    with contextlib.suppress(*_PARSE_ERRORS):
        return _history_ts_ms(created)
    return 0


def _trade_order(trade_id: str) -> int:
    return int(trade_id) if trade_id.isdigit() else 0

"""LighterVenue: the hedge venue. lighter-sdk signs; we sequence nonces, send, stream and recover.

Sections, mirroring `backpack.py`: conversions · nonces · sendTx transport · lifecycle · REST
plumbing · markets · book · signing · transactions · orders · pre-signed hedges · account ·
events · stream parsing · recovery.

- Signing is the bundled Go library behind `lighter.SignerClient` (built inside the running loop
  in `connect()`). It runs in a small thread pool owned by the venue (ctypes releases the GIL;
  the library signs concurrently without trouble), so the event loop keeps reading fills while
  a transaction is being signed. Measured here: ~3.7 ms per order on the loop's own thread,
  ~0.9 ms in a worker thread (+0.25 ms hand-off).
- Reads go through the SDK's `ApiClient` (OrderApi, AccountApi), retried with tenacity.
- Transactions (`sendTx`) are posted on one keep-alive HTTP/1.1 connection of our own
  (`TxSender`), kept warm, with exactly the SDK's wire form (form-encoded `tx_type`, `tx_info`).
  Measured here: the SDK's `send_tx` costs ~0.65 ms more per call (pydantic validation and
  serialization) and aiohttp ~0.25 ms before the bytes leave; our writer puts a pre-signed
  hedge on the socket ~0.1 ms after `place_hedge` is called. Every reply's `code` is checked.
- ONE nonce sequencer for our API key: every transaction takes its nonce under its lock and
  sends while holding it (the venue must see nonces in order). An "invalid nonce" answer means
  the transaction was refused: the nonce is fetched again and the transaction re-signed once.
  A send that may have reached the venue (timeout, 5xx, dropped connection) is never re-signed:
  the venue's next nonce tells whether it was taken; if it was, the order is looked up by client
  order index; if not, the *same* signed transaction is sent again, which the venue can execute
  at most once (its nonce can only be used once).
- Hedges can be signed ahead (`presign_hedge`): the next nonce, the expected size and the worst
  price at the current top ± slippage, re-signed in the background when the top moves by a
  quarter of the slippage band, when another transaction takes the nonce, or before the signed
  transaction expires; its whole HTTP request is built then too. `place_hedge` with that side,
  size and client id sends it as is.
- `try_send_now` is the fast path for a synchronous fill callback: a task started from the
  callback would run only after every other ready callback of the loop (Python 3.11 has no
  eager tasks), ~0.2-1.6 ms here under load. When the pre-sign fits, the nonce lock is free
  and the sendTx connection is open and idle, the callback itself takes both (`Mutex`, which
  can be taken without awaiting) and writes the request; the returned task reads the reply
  through the same code as `place_hedge` and releases them.
- One `ReconnectingWebSocket` carries `order_book/{m}` (the book behind `top()`, resubscribed
  on a nonce gap) and `account_orders/{m}/{account}` (auth token, refreshed before expiry and
  on refusal). Our order updates become OrderEvents and Fills: a fill is the growth of an
  order's `filled_base_amount`, with trade id `"{order_index}:{filled_base_amount}"`, so a
  duplicated or reordered update never counts twice. After a reconnect (or a re-subscription),
  our orders are reconciled over REST and missed fills are emitted.

Decimal <-> Lighter's scaled integers happens in this module only (`scale_*`, `unscale`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import socket
import ssl
import time
import urllib.parse
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, TypeVar

import aiohttp
import certifi
import lighter
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
    round_price,
    round_qty,
    round_worst_price,
)
from exchanges.orderbook import LIGHTER, OrderBook, apply_lighter_order_book
from exchanges.ws import ReconnectingWebSocket

log = logging.getLogger(__name__)

VENUE = "lighter"
TRADES_PAGE = 100  # the API's maximum per request
MAX_TRADE_PAGES = 200

TX_CREATE_ORDER = 14
TX_CANCEL_ORDER = 15
TX_CANCEL_ALL_ORDERS = 16
ORDER_TYPE_LIMIT = 0
ORDER_TYPE_MARKET = 1
TIF_IOC = 0
TIF_GTT = 1
TIF_POST_ONLY = 2
CANCEL_ALL_IMMEDIATE = 0
DEFAULT_28_DAY_EXPIRY = -1  # the signer fills in now + 28 days
IOC_EXPIRY = 0
MAX_PRICE = 2**32 - 1  # Price is a uint32 on the wire
MAX_CLIENT_ORDER_INDEX = 2**48 - 1
# WebSocket error codes (apidocs "Data Structures, Constants and Errors").
WS_NOT_SUBSCRIBED = 30002  # our unsubscribe-before-subscribe of a channel already ended
WS_ALREADY_SUBSCRIBED = 30003
WS_TOO_MANY_MESSAGES = frozenset({30009, 30010})  # messages a minute / unacknowledged subscribes

# Order statuses that mean "the IOC found nothing within its price".
_NO_LIQUIDITY = frozenset({"canceled-not-enough-liquidity", "canceled-too-much-slippage"})
_MARGIN = frozenset({"canceled-margin-not-allowed", "canceled-invalid-balance"})
_PROGRESS = {
    OrderStatus.PENDING_NEW: 0,
    OrderStatus.OPEN: 1,
    OrderStatus.PARTIALLY_FILLED: 1,
    OrderStatus.PENDING_CANCEL: 1,
    OrderStatus.FILLED: 2,
    OrderStatus.CANCELED: 2,
    OrderStatus.EXPIRED: 2,
    OrderStatus.REJECTED: 2,
}
_PARSE_ERRORS = (KeyError, IndexError, TypeError, ValueError, InvalidOperation, AttributeError)

_T = TypeVar("_T")

# --------------------------------------------------------------------------------------------
# Conversions: the only place Decimal meets Lighter's scaled integers
# --------------------------------------------------------------------------------------------


def unscale(value: int, decimals: int) -> Decimal:
    """A scaled integer back to Decimal: unscale(650001, 1) == Decimal("65000.1")."""
    return Decimal(value).scaleb(-decimals)


def scale_qty(qty: Decimal, size_decimals: int, min_qty: Decimal = Decimal(0)) -> int:
    """`base_amount` for `qty`, rounded DOWN to the size step (never trade more than asked).
    ValueError when nothing or less than the market minimum is left."""
    rounded = round_qty(qty, Decimal(1).scaleb(-size_decimals))
    if rounded <= 0 or rounded < min_qty:
        raise ValueError(f"quantity {qty} is below the minimum {min_qty} after rounding")
    return int(rounded.scaleb(size_decimals))


def scale_worst_price(price: Decimal, price_decimals: int, side: Side) -> int:
    """A taker's worst acceptable price as Lighter's uint32: a buy rounded UP, a sell DOWN
    (never tighter than asked). ValueError when not positive or beyond uint32."""
    return _checked_price(
        round_worst_price(price, Decimal(1).scaleb(-price_decimals), side), price_decimals
    )


def scale_limit_price(price: Decimal, price_decimals: int, side: Side) -> int:
    """A maker's limit price as a uint32: a buy rounded DOWN, a sell UP (never pay more)."""
    return _checked_price(
        round_price(price, Decimal(1).scaleb(-price_decimals), side), price_decimals
    )


def _checked_price(rounded: Decimal, price_decimals: int) -> int:
    value = int(rounded.scaleb(price_decimals))
    if value <= 0:
        raise ValueError(f"price {rounded} is not positive")
    if value > MAX_PRICE:
        raise ValueError(
            f"price {rounded} overflows Lighter's uint32 price ({value} > {MAX_PRICE})"
        )
    return value


def fmt(value: Decimal, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def lighter_status(raw: str, filled: Decimal) -> OrderStatus:
    """Map Lighter's lower-case order status to ours."""
    if raw == "filled":
        return OrderStatus.FILLED
    if raw == "open":
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.OPEN
    if raw in ("pending", "in-progress"):
        return OrderStatus.PENDING_NEW
    if raw == "canceled-expired":
        return OrderStatus.EXPIRED
    if raw.startswith("canceled"):
        return OrderStatus.CANCELED
    raise ValueError(f"unknown lighter order status {raw!r}")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, VenueError) and exc.retryable


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("lighter request failed (%s); retry %d", exc, state.attempt_number)


# --------------------------------------------------------------------------------------------
# Nonces (and the lock they share with the sendTx connection)
# --------------------------------------------------------------------------------------------


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
    """The one source of nonces for one API key: a lock plus a local counter.

    Hold `lock` from taking a nonce until the venue has answered the transaction that used
    it: the venue must see this key's nonces in order, and only the holder may advance,
    refresh or invalidate the counter.
    """

    def __init__(self, fetch: Callable[[], Awaitable[int]]) -> None:
        self.lock = Mutex()
        self._fetch = fetch
        self._next: int | None = None
        self.refreshes = 0
        self.listeners: list[Callable[[], None]] = []

    @property
    def next(self) -> int | None:
        """The nonce the next transaction will carry (None: unknown, refresh first)."""
        return self._next

    async def ensure(self) -> int:
        if self._next is None:
            return await self.refresh()
        return self._next

    async def refresh(self) -> int:
        """Ask the venue (`nextNonce`). VenueError if it cannot be reached."""
        self._next = await self._fetch()
        self.refreshes += 1
        self._changed()
        return self._next

    def consumed(self, nonce: int) -> None:
        """The venue accepted the transaction with `nonce`."""
        self._next = nonce + 1
        self._changed()

    def invalidate(self) -> None:
        """Our count is not trustworthy any more: the next transaction refreshes first."""
        self._next = None
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()


# --------------------------------------------------------------------------------------------
# Small records
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SignedTx:
    """A signed transaction ready to post; `body` is the form exactly as the SDK sends it."""

    tx_type: int
    info: str
    nonce: int
    body: bytes
    signed_at: float  # time.monotonic()
    expires_ms: int  # ExpiredAt: the venue refuses it afterwards
    base_amount: int = 0
    price: int = 0
    reference: Decimal = Decimal(0)  # the book price the worst price was derived from
    # Pre-signed hedges only, computed when signed so that nothing is converted or encoded on
    # the hot path: the whole HTTP request, and the asked worst prices this tx may be sent for
    # (see `_worst_bounds`).
    request: bytes = b""
    worst_lo: Decimal = Decimal(0)
    worst_hi: Decimal = Decimal(0)


@dataclass(slots=True)
class _Presign:
    side: Side
    qty: Decimal
    base_amount: int
    slippage_bps: Decimal
    client_id: int
    signed: SignedTx | None = None


@dataclass(slots=True)
class _Track:
    """One order of ours, known before its transaction is sent (a fill may beat the reply)."""

    client_id: int
    side: Side
    qty: Decimal
    price: Decimal
    kind: OrderKind
    done: asyncio.Event = field(default_factory=asyncio.Event)  # a state beyond pending
    order_index: int | None = None
    status: OrderStatus = OrderStatus.PENDING_NEW
    lighter_status: str = ""
    filled: Decimal = Decimal(0)
    sent_ms: int = 0


@dataclass(slots=True)
class _Seen:
    """What has been delivered about one order: the basis for dropping stale updates."""

    filled: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    progress: int = -1


@dataclass(slots=True)
class _Started:
    """A sendTx request that `try_send_now` already wrote. Until its reply is read it holds the
    nonce lock and the sender's connection; `running` turns True once the task that reads the
    reply has begun (from then on that task's `finally` gives both back)."""

    tx: SignedTx
    sender: TxSender
    reader: asyncio.StreamReader
    running: bool = False


class _InvalidNonce(Exception):
    pass


class _NotSent(Exception):
    """The venue certainly did not act on the request (429, connection refused)."""


class _MaybeSent(Exception):
    """The request may have reached the venue: timeout, 5xx, dropped connection."""


# --------------------------------------------------------------------------------------------
# sendTx transport
# --------------------------------------------------------------------------------------------


class TxSender:
    """One keep-alive HTTP/1.1 connection for `POST /api/v1/sendTx` (and a warm-up GET).

    A request is written to the socket synchronously once the connection is held: a
    general-purpose client (aiohttp: ~0.1-0.3 ms of request building and scheduling per call
    here) would double the hedge path. The form is exactly the SDK's. An exchange is two steps,
    so that the first can also run inside a synchronous callback (`write_now`): write, then
    `read_reply`, which gives the connection back. Outcomes: `_NotSent` when the connection
    could not be opened (nothing left us), `_MaybeSent` when the request was written but no
    complete answer came back; otherwise (status, body text).
    """

    def __init__(self, api_url: str, timeout: float, connect_timeout: float | None = None) -> None:
        url = urllib.parse.urlsplit(api_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"invalid Lighter API URL {api_url!r}")
        self.host = url.hostname
        self.tls = url.scheme == "https"
        self.port = url.port or (443 if self.tls else 80)
        self.prefix = url.path.rstrip("/")
        self.timeout = timeout  # for an answer, once the request is written
        self.connect_timeout = connect_timeout or timeout
        default_port = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        self._host_header = self.host if default_port else f"{self.host}:{self.port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = Mutex()  # held from writing a request until its reply is read
        self.connections = 0
        self.last_write_ns = 0  # perf_counter_ns() right after the last request was written
        self.last_used = 0.0

    def _request(self, method: str, path: str, body: bytes = b"") -> bytes:
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
        if method == "POST":
            head += (
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n"
            )
        head += "Accept: application/json\r\nUser-Agent: hedgebot\r\n\r\n"
        return head.encode() + body

    def tx_request(self, body: bytes) -> bytes:
        """The complete sendTx request for a form body (built once per signed transaction)."""
        return self._request("POST", "/api/v1/sendTx", body)

    async def post_tx(
        self, body: bytes, on_write: Callable[[int], None] | None = None
    ) -> tuple[int, str]:
        return await self.exchange(self.tx_request(body), on_write)

    async def get(self, path_and_query: str) -> tuple[int, str]:
        return await self.exchange(self._request("GET", path_and_query))

    @property
    def idle(self) -> bool:
        """Open and unused: a request written now leaves at once (see `write_now`)."""
        return not self._lock.locked() and self._open() is not None

    def write_now(self, request: bytes) -> asyncio.StreamReader | None:
        """Take the open, idle connection and write `request` on it now, without yielding.
        None (nothing taken, nothing written) when it is busy or not open. After a write the
        caller owns the connection and must pass the reader to `read_reply` (or `abandon`)."""
        conn = self._open()
        if conn is None or not self._lock.try_acquire():
            return None
        reader, writer = conn
        try:
            self._write(writer, request)
        except (OSError, RuntimeError) as exc:
            log.warning("lighter sendTx write failed: %s", exc)
            self._drop()
            self._lock.release()
            return None
        return reader

    async def exchange(
        self, request: bytes, on_write: Callable[[int], None] | None = None
    ) -> tuple[int, str]:
        """Write `request` (when the connection is free) and read its reply. `on_write` gets
        the perf_counter_ns() taken right after the write."""
        await self._lock.acquire()
        try:
            reader, writer = await self._connection()
            write_ns = self._write(writer, request)
        except (OSError, RuntimeError) as exc:
            self._drop()
            self._lock.release()
            raise _NotSent(f"write failed: {exc}") from None
        except BaseException:
            self._lock.release()
            raise
        if on_write is not None:
            on_write(write_ns)
        return await self.read_reply(reader)

    def _write(self, writer: asyncio.StreamWriter, request: bytes) -> int:
        # The transport sends at once when its buffer is empty (always, between requests).
        writer.write(request)
        self.last_write_ns = now = time.perf_counter_ns()
        return now

    async def read_reply(self, reader: asyncio.StreamReader) -> tuple[int, str]:
        """Read the answer to the request just written on `reader`'s connection, then give
        the connection back (always: a failure drops it)."""
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    status, text, keep_alive = await _read_response(reader)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                self._drop()
                raise _MaybeSent(f"{type(exc).__name__}: {exc}") from None
            except BaseException:
                self._drop()  # cancelled mid-answer: the connection is out of step
                raise
            self.last_used = time.monotonic()
            if not keep_alive:
                self._drop()
            return status, text
        finally:
            self._lock.release()

    def abandon(self) -> None:
        """The reply to a request written by `write_now` will never be read: the connection
        is out of step, so it is dropped and given back."""
        self._drop()
        self._lock.release()

    def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None or reader.at_eof() or writer.is_closing():
            return None
        return reader, writer

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        conn = self._open()
        if conn is not None:
            return conn
        self._drop()  # closed by the server while idle: nothing was sent on it
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=_ssl_context() if self.tls else None,
                    server_hostname=self.host if self.tls else None,
                )
        except (OSError, TimeoutError) as exc:
            raise _NotSent(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        self._reader, self._writer = reader, writer
        return reader, writer

    def _drop(self) -> None:
        writer = self._writer
        self._reader = self._writer = None
        if writer is not None:
            writer.close()

    async def close(self) -> None:
        writer = self._writer
        self._drop()
        if writer is not None:
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, str, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 response: Content-Length, chunked, or
    delimited by the connection closing."""
    status_line = await reader.readline()
    if not status_line:
        raise asyncio.IncompleteReadError(b"", None)
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP response: {status_line[:100]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get("connection", "").lower() != "close" and parts[0] != "HTTP/1.0"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
        keep_alive = False
    return status, body.decode("utf-8", "replace"), keep_alive


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


# --------------------------------------------------------------------------------------------
# The venue
# --------------------------------------------------------------------------------------------


class LighterVenue(EventEmitter):
    """Lighter perpetuals: lighter-sdk signer + REST reads, our sendTx, one WebSocket."""

    name = VENUE

    # Auth tokens live 7 hours (the venue accepts up to 8) and are rotated when an hour is left,
    # as NautilusTrader does: a rotation is one unsubscribe + subscribe, a few times a day.
    token_ttl_s = 7 * 3600
    token_margin_s = 3600
    presign_max_age_s = 300.0  # re-sign well before the signer's ~10 minute ExpiredAt
    resolve_timeout_s = 30.0  # an accepted order whose outcome is still unknown after this
    keep_warm_s = 20.0  # an idle sendTx connection is touched this often
    max_remembered = 10_000

    def __init__(
        self,
        ticker: str,
        *,
        api_url: str,
        ws_url: str,
        private_key: str | None,
        account_index: int | None,
        api_key_index: int | None,
        request_timeout: float = 10.0,
        confirm_timeout: float = 1.0,
        retry_attempts: int = 3,
        send_timeout: float = 1.0,
    ) -> None:
        if not ticker or not ticker.isalnum():
            raise ConfigError(f"invalid ticker {ticker!r}")
        if min(request_timeout, confirm_timeout, send_timeout) <= 0:
            raise ConfigError("request_timeout, confirm_timeout and send_timeout must be positive")
        if retry_attempts < 1:
            raise ConfigError("retry_attempts must be at least 1")
        keys = (private_key, account_index, api_key_index)
        if any(k is not None and k != "" for k in keys) and not all(
            k is not None and k != "" for k in keys
        ):
            raise ConfigError(
                "Lighter needs LIGHTER_PRIVATE_KEY, LIGHTER_ACCOUNT_INDEX and "
                "LIGHTER_API_KEY_INDEX together"
            )
        if api_key_index is not None and not 0 <= api_key_index <= 254:
            raise ConfigError(f"LIGHTER_API_KEY_INDEX must be within 0..254, got {api_key_index}")
        if account_index is not None and account_index < 0:
            raise ConfigError(f"LIGHTER_ACCOUNT_INDEX must not be negative, got {account_index}")
        self.ticker = ticker.upper()
        self.api_url = api_url.rstrip("/")
        self.ws_url = ws_url
        self.request_timeout = request_timeout
        self.confirm_timeout = confirm_timeout
        # How long a sendTx answer is awaited while holding the nonce lock. A late answer is not
        # a failure: the venue's next nonce then says whether the transaction executed.
        self.send_timeout = min(send_timeout, request_timeout)
        self.retry_attempts = retry_attempts
        self._private_key = private_key.removeprefix("0x") if private_key else None
        self.account_index = account_index
        self.api_key_index = api_key_index

        self._market: Market | None = None
        self._size_decimals = 0
        self._price_decimals = 0
        self._book = OrderBook(self.ticker, LIGHTER)
        self._api: lighter.ApiClient | None = None
        self._signer: lighter.SignerClient | None = None
        self._sender: TxSender | None = None
        self._sign_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._nonces = NonceSequencer(self._fetch_next_nonce)
        self._nonces.listeners.append(self._on_nonce_change)
        self._ws: ReconnectingWebSocket | None = None
        self._reconnects_at_close = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._presign_task: asyncio.Task[None] | None = None
        self._presign_wakeup = asyncio.Event()
        self._presign: _Presign | None = None
        self._token: tuple[str, int] | None = None  # (token, expiry unix seconds)
        self._token_lock = asyncio.Lock()
        self._account_subscribed = False
        self._account_gap = False  # the account stream was down since the last subscription
        self._account_resubscribing = False
        self._book_resubscribing = False
        EventEmitter.__init__(self)
        self._tracks: OrderedDict[int, _Track] = OrderedDict()  # client id -> order
        self._seen: OrderedDict[int, _Seen] = OrderedDict()  # order index -> delivered
        self._seen_trades: set[str] = set()
        self._seen_trade_order: deque[str] = deque()

        # Counters for tests, benchmarks and the dashboard.
        self.sign_calls = 0  # transactions signed (any path)
        self.presign_signs = 0  # of which by the background pre-signer
        self.token_calls = 0
        self.presigned_used = 0
        self.signed_on_spot = 0
        self.last_hedge_path = ""  # "presigned" | "signed"
        self.last_send_ns = 0  # perf_counter_ns() right before the last sendTx was posted
        # client id -> perf_counter_ns() right after its (first) sendTx request was written,
        # either path; benchmarks pair it with the maker fill that triggered the hedge.
        self.write_ns_by_client: OrderedDict[int, int] = OrderedDict()
        self.fast_sends = 0  # hedges written by try_send_now
        self.fills_delivered = 0
        self.duplicates_dropped = 0
        self.malformed = 0
        self.resubscribes = 0
        self.reconciles = 0
        self.invalid_nonces = 0

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def keyed(self) -> bool:
        return self._private_key is not None

    async def connect(self) -> None:
        """Load the market, check the API key, fetch the nonce, start the stream, wait for the
        book. Needs the running loop (the SDK's clients bind to it)."""
        try:
            self._api = lighter.ApiClient(lighter.Configuration(host=self.api_url))
            self._sender = TxSender(self.api_url, self.send_timeout, self.request_timeout)
            await self._load_market()
            if self.keyed:
                await self._start_signer()
            self._ws = ReconnectingWebSocket(
                self.ws_url,
                name="lighter",
                on_message=self._on_frame,
                on_connect=self._on_ws_connect,
                on_reconnect=self._on_ws_reconnect,
                on_disconnect=self._on_ws_disconnect,
                # Lighter closes sockets that stay silent for 2 minutes.
                app_ping_text=json.dumps({"type": "pong"}),
                app_ping_interval=60.0,
            )
            self._ws.start()
            ready_by = time.monotonic() + max(10.0, 2 * self.request_timeout)
            while not self._book.synced or (self.keyed and not self._account_subscribed):
                if time.monotonic() > ready_by:
                    raise VenueError("lighter: streams not ready in time", retryable=True)
                await asyncio.sleep(0.01)
            if self.keyed:
                self._presign_task = self._spawn(self._presign_loop(), "presign")
                self._spawn(self._token_loop(), "token-refresh")
                self._spawn(self._keep_warm_loop(), "keep-warm")
        except BaseException:
            await self.close()
            raise
        log.info("lighter connected: %s (market %s)", self.ticker, self.market().market_id)

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
        if self._sender is not None:
            await self._sender.close()
            self._sender = None
        if self._signer is not None:
            await self._signer.close()
            self._signer = None
        if self._api is not None:
            await self._api.close()
            self._api = None
        if self._sign_pool is not None:
            # A signature in progress finishes in its thread; nothing waits for it.
            self._sign_pool.shutdown(wait=False, cancel_futures=True)
            self._sign_pool = None

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=f"lighter-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("lighter %s failed: %r", task.get_name(), exc, exc_info=exc)

    async def _start_signer(self) -> None:
        assert self._private_key is not None
        assert self.account_index is not None and self.api_key_index is not None
        self._sign_pool = concurrent.futures.ThreadPoolExecutor(2, "lighter-sign")
        try:
            self._signer = lighter.SignerClient(
                url=self.api_url,
                account_index=self.account_index,
                api_private_keys={self.api_key_index: self._private_key},
            )
        except Exception as exc:
            # The message never includes the key itself.
            raise ConfigError(f"LIGHTER_PRIVATE_KEY is not usable: {type(exc).__name__}") from None
        # check_client does blocking HTTP inside the Go library: run it off the loop.
        err = await asyncio.get_running_loop().run_in_executor(
            self._sign_pool, self._signer.check_client
        )
        if err is not None:
            if "failed to get" in err:
                raise VenueError(f"lighter: could not check the API key: {err}", retryable=True)
            raise ConfigError(
                f"Lighter rejected API key {self.api_key_index} of account "
                f"{self.account_index}: {err}"
            )
        async with self._nonces.lock:
            await self._nonces.refresh()
        await self._auth_token()
        await self._warm_up()

    async def _warm_up(self) -> None:
        """Open (or keep open) the sendTx connection with a cheap read, so that a hedge never
        pays for a TCP/TLS handshake."""
        sender = self._sender
        if sender is None:
            return
        path = (
            f"/api/v1/nextNonce?account_index={self.account_index}"
            f"&api_key_index={self.api_key_index}"
        )
        try:
            await sender.get(path)
        except (_NotSent, _MaybeSent) as exc:
            log.warning("lighter sendTx connection warm-up failed: %s", exc)

    async def _keep_warm_loop(self) -> None:
        """Owned task: touch the idle sendTx connection before servers drop it (~60 s)."""
        while True:
            await asyncio.sleep(self.keep_warm_s / 2)
            sender = self._sender
            if sender is not None and time.monotonic() - sender.last_used >= self.keep_warm_s:
                await self._warm_up()

    @property
    def last_write_ns(self) -> int:
        """perf_counter_ns() right after the last sendTx request was written to the socket."""
        return self._sender.last_write_ns if self._sender is not None else 0

    # -- REST plumbing -----------------------------------------------------------------------

    def _api_client(self) -> lighter.ApiClient:
        if self._api is None:
            raise VenueError("lighter: not connected; call connect() first")
        return self._api

    async def _read(self, call: Callable[[], Awaitable[_T]], what: str) -> _T:
        """An idempotent read through the SDK, retried on retryable failures."""
        retrying = AsyncRetrying(
            # Reads are idempotent: ride out a burst of 429/5xx (a few in a row is normal).
            stop=stop_after_attempt(self.retry_attempts + 3),
            wait=wait_exponential_jitter(initial=0.05, max=2.0, jitter=0.05),
            retry=retry_if_exception(_is_retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    return await call()
                except lighter.ApiException as exc:
                    status = exc.status or 0
                    retryable = status == 429 or status >= 500 or status == 0
                    raise VenueError(
                        f"lighter {what}: HTTP {status}: {_error_text(exc)}",
                        retryable=retryable,
                        status=status,
                    ) from exc
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise VenueError(
                        f"lighter {what}: {type(exc).__name__}: {exc}", retryable=True
                    ) from exc
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _private_read(self, call: Callable[[str], Awaitable[_T]], what: str) -> _T:
        """A read that needs an auth token; a refused token is replaced once."""
        token = await self._auth_token()
        try:
            return await self._read(lambda: call(token), what)
        except VenueError as exc:
            if exc.status != 400 or "auth" not in str(exc).lower():
                raise
            log.info("lighter %s: auth token refused (%s); refreshing it", what, exc)
        token = await self._auth_token(force=True)
        return await self._read(lambda: call(token), what)

    async def _fetch_next_nonce(self) -> int:
        assert self.account_index is not None and self.api_key_index is not None
        api = lighter.TransactionApi(self._api_client())
        account, key = self.account_index, self.api_key_index
        reply = await self._read(
            lambda: api.next_nonce(
                account_index=account, api_key_index=key, _request_timeout=self.request_timeout
            ),
            "nextNonce",
        )
        if reply.code != 200:
            raise VenueError(
                f"lighter nextNonce: code {reply.code} {reply.message}", retryable=True
            )
        return int(reply.nonce)

    async def _auth_token(self, *, force: bool = False) -> str:
        """A valid auth token for private reads and the account stream."""
        async with self._token_lock:
            token = self._token
            if not force and token is not None and token[1] - time.time() > self.token_margin_s:
                return token[0]
            signer = self._require_signer()
            key = self.api_key_index
            assert key is not None
            now = int(time.time())
            expiry = now + self.token_ttl_s
            fn = signer.create_auth_token_with_expiry
            text, err = await asyncio.get_running_loop().run_in_executor(
                self._sign_pool,
                lambda: fn(self.token_ttl_s, timestamp=now, api_key_index=key),
            )
            self.token_calls += 1
            if err is not None or not text:
                raise VenueError(f"lighter: could not create an auth token: {err}")
            self._token = (text, expiry)
            return text

    # -- markets -------------------------------------------------------------------------------

    async def _load_market(self) -> None:
        api = lighter.OrderApi(self._api_client())
        books = await self._read(
            lambda: api.order_books(_request_timeout=self.request_timeout), "orderBooks"
        )
        entry = next((b for b in books.order_books or [] if b.symbol == self.ticker), None)
        if entry is None:
            raise ConfigError(f"unknown Lighter market {self.ticker!r}")
        if entry.status != "active":
            raise ConfigError(f"Lighter market {self.ticker} is not trading ({entry.status})")
        market_id = int(entry.market_id)
        details = await self._read(
            lambda: api.order_book_details(
                market_id=market_id, _request_timeout=self.request_timeout
            ),
            "orderBookDetails",
        )
        detail = next(
            (d for d in details.order_book_details or [] if d.market_id == market_id), None
        )
        if detail is None:
            raise VenueError(f"lighter: no details for market {self.ticker} ({market_id})")
        try:
            self._size_decimals = int(detail.size_decimals)
            self._price_decimals = int(detail.price_decimals)
            self._market = Market(
                venue=VENUE,
                ticker=self.ticker,
                symbol=str(detail.symbol),
                tick_size=Decimal(1).scaleb(-self._price_decimals),
                step_size=Decimal(1).scaleb(-self._size_decimals),
                min_qty=Decimal(str(detail.min_base_amount)),
                min_notional=Decimal(str(detail.min_quote_amount)),
                market_id=market_id,
            )
        except _PARSE_ERRORS as exc:
            raise VenueError(f"lighter market {self.ticker}: malformed rules: {exc}") from exc

    def market(self) -> Market:
        if self._market is None:
            raise VenueError("lighter: market rules not loaded; call connect() first")
        return self._market

    @property
    def _market_id(self) -> int:
        market_id = self.market().market_id
        assert market_id is not None
        return market_id

    # -- book ----------------------------------------------------------------------------------

    @property
    def reconnects(self) -> int:
        """WebSocket sessions after the first (the dashboard and the journal count them)."""
        return self._ws.reconnects if self._ws is not None else self._reconnects_at_close

    def top(self) -> BookTop | None:
        """Best bid/ask from the WS-maintained book; None while it is not synced."""
        return self._book.top()

    @property
    def book(self) -> OrderBook:
        return self._book

    def _resubscribe_book(self) -> None:
        ws = self._ws
        if ws is None or self._book_resubscribing:
            return
        self._book_resubscribing = True
        self.resubscribes += 1
        channel = f"order_book/{self._market_id}"
        log.warning("lighter book gap (%s); resubscribing", self._book.gap_reason)
        ws.send_soon(json.dumps({"type": "unsubscribe", "channel": channel}))
        ws.send_soon(json.dumps({"type": "subscribe", "channel": channel}))

    # -- signing ---------------------------------------------------------------------------------

    def _require_signer(self) -> lighter.SignerClient:
        if self._signer is None:
            raise ConfigError("Lighter API keys are required for trading")
        return self._signer

    async def _sign(self, what: Callable[[], tuple[Any, Any, Any, Any]]) -> tuple[int, str]:
        """Run one signer call in the signing threads; (tx_type, tx_info)."""
        self.sign_calls += 1
        tx_type, info, _tx_hash, err = await asyncio.get_running_loop().run_in_executor(
            self._sign_pool, what
        )
        if err is not None or info is None:
            raise VenueError(f"lighter signer refused the transaction: {err}")
        return int(tx_type), str(info)

    async def _sign_create(
        self,
        nonce: int,
        *,
        client_id: int,
        base_amount: int,
        price: int,
        side: Side,
        order_type: int,
        tif: int,
        expiry: int,
        reference: Decimal = Decimal(0),
    ) -> SignedTx:
        signer = self._require_signer()
        market_id, key = self._market_id, self.api_key_index
        assert key is not None
        tx_type, info = await self._sign(
            lambda: signer.sign_create_order(
                market_id,
                client_id,
                base_amount,
                price,
                int(side is Side.SELL),
                order_type,
                tif,
                False,
                0,
                expiry,
                nonce=nonce,
                api_key_index=key,
            )
        )
        return _signed(
            tx_type, info, nonce, base_amount=base_amount, price=price, reference=reference
        )

    # -- transactions ----------------------------------------------------------------------------

    async def _transact(
        self,
        build: Callable[[int], Awaitable[SignedTx]],
        *,
        what: str,
        client_id: int | None = None,
        take_presigned: Callable[[int], SignedTx | None] | None = None,
        started: _Started | None = None,
    ) -> tuple[SignedTx, bool]:
        """Send one transaction through the nonce sequencer (or, with `started`, finish the
        one `try_send_now` wrote while taking the nonce lock for it).

        Returns (tx, confirmed): confirmed False means the reply was lost but the venue took
        the nonce (the transaction executed; look the order up). Raises VenueError for a
        refusal or when nothing was sent, AmbiguousOrderState when it cannot be known.
        """
        seq = self._nonces
        if started is None:
            await seq.lock.acquire()
        else:
            started.running = True  # the lock is ours already; released below from now on
        try:
            return await self._transact_locked(build, what, client_id, take_presigned, started)
        finally:
            seq.lock.release()

    async def _transact_locked(
        self,
        build: Callable[[int], Awaitable[SignedTx]],
        what: str,
        client_id: int | None,
        take_presigned: Callable[[int], SignedTx | None] | None,
        started: _Started | None,
    ) -> tuple[SignedTx, bool]:
        seq = self._nonces
        tx: SignedTx | None
        if started is not None:
            tx = started.tx  # chosen, counted and written by try_send_now
        else:
            nonce = await seq.ensure()
            tx = take_presigned(nonce) if take_presigned is not None else None
            if tx is None:
                tx = await build(nonce)
                self.last_hedge_path = "signed"
            else:
                self.last_hedge_path = "presigned"
        resigned = False
        maybe_sent = False  # a copy of `tx` may have reached the venue already
        attempts = 0
        while True:
            attempts += 1
            written, started = started, None  # only the first attempt was written already
            try:
                await self._post_tx(tx, what, client_id, written)
            except _InvalidNonce:
                self.invalid_nonces += 1
                fresh = await seq.refresh()
                if maybe_sent and fresh > tx.nonce:
                    # Only an earlier copy of this very transaction can have taken the
                    # nonce (we hold the lock): it executed, its reply was lost.
                    log.warning("lighter %s: an earlier copy executed", what)
                    return tx, False
                if resigned or (maybe_sent and fresh != tx.nonce):
                    seq.invalidate()
                    message = f"lighter {what}: invalid nonce {tx.nonce}, venue at {fresh}"
                    if maybe_sent and client_id is not None:
                        raise AmbiguousOrderState(message, client_id=client_id) from None
                    raise VenueError(message + "; not sent", retryable=True) from None
                # Refused, so not executed. A fresh signature is safe: with a copy possibly
                # in flight, it carries that copy's nonce, so at most one of them executes.
                log.warning("lighter %s: invalid nonce %d; re-signing", what, tx.nonce)
                tx = await build(fresh)
                self.last_hedge_path = "signed"
                resigned = True
                continue
            except _NotSent as exc:
                if attempts >= self.retry_attempts:
                    if maybe_sent and client_id is not None:
                        raise AmbiguousOrderState(
                            f"lighter {what}: {exc}", client_id=client_id
                        ) from None
                    raise VenueError(f"lighter {what}: {exc}", retryable=True) from None
                log.warning("lighter %s not sent (%s); retrying", what, exc)
                await asyncio.sleep(min(1.0, 0.05 * 2**attempts))
                continue
            except _MaybeSent as exc:
                maybe_sent = True
                taken = await self._nonce_taken(tx.nonce)
                if taken:
                    log.warning("lighter %s: reply lost (%s) but executed", what, exc)
                    seq.consumed(tx.nonce)
                    return tx, False
                if taken is False and attempts < self.retry_attempts:
                    # Same signed tx, same nonce: the venue executes it at most once.
                    log.warning("lighter %s: %s, not executed; resending it", what, exc)
                    await asyncio.sleep(min(1.0, 0.05 * 2**attempts))
                    continue
                seq.invalidate()
                message = f"lighter {what}: {exc}; outcome unknown"
                if client_id is not None:
                    raise AmbiguousOrderState(message, client_id=client_id) from None
                raise VenueError(message, retryable=True) from None
            except asyncio.CancelledError:
                seq.invalidate()  # it may have gone out: the next transaction asks first
                raise
            seq.consumed(tx.nonce)
            return tx, True

    async def _nonce_taken(self, nonce: int) -> bool | None:
        """After a lost reply: did the venue take `nonce`? None when it cannot be asked."""
        for attempt in range(self.retry_attempts):
            try:
                return await self._fetch_next_nonce() > nonce
            except VenueError as exc:
                log.warning("lighter nextNonce after a lost reply failed: %s", exc)
                await asyncio.sleep(min(1.0, 0.1 * 2**attempt))
        return None

    async def _post_tx(
        self,
        tx: SignedTx,
        what: str,
        client_id: int | None = None,
        written: _Started | None = None,
    ) -> None:
        """POST /api/v1/sendTx with the SDK's form, or only read the reply when `written`
        (try_send_now wrote it); raise by outcome (see the _* errors)."""
        if written is not None:
            status, text = await written.sender.read_reply(written.reader)
        else:
            sender = self._sender
            if sender is None:
                raise VenueError("lighter: not connected; call connect() first")
            on_write = (
                None if client_id is None else functools.partial(self._record_write, client_id)
            )
            self.last_send_ns = time.perf_counter_ns()
            status, text = await sender.exchange(self._tx_request(tx, sender), on_write)
        self._check_tx_reply(status, text, what)

    def _tx_request(self, tx: SignedTx, sender: TxSender) -> bytes:
        if not tx.request:
            tx.request = sender.tx_request(tx.body)
        return tx.request

    def _record_write(self, client_id: int, write_ns: int) -> None:
        # The first write is the hedge's latency; a re-send (5xx, invalid nonce) keeps it.
        if client_id not in self.write_ns_by_client:
            self.write_ns_by_client[client_id] = write_ns
            if len(self.write_ns_by_client) > self.max_remembered:
                self.write_ns_by_client.popitem(last=False)

    def _check_tx_reply(self, status: int, text: str, what: str) -> None:
        """What a sendTx answer means; returns only when the venue accepted the transaction."""
        if status == 429:
            raise _NotSent("rate limited (429)")
        if status >= 500:
            raise _MaybeSent(f"HTTP {status}")
        if status == 400 and "invalid nonce" in text.lower():
            raise _InvalidNonce(text)
        try:
            body = json.loads(text)
            code = int(body["code"])
        except (ValueError, KeyError, TypeError):
            if status == 200:
                raise _MaybeSent(f"unreadable reply {text[:200]!r}") from None
            raise VenueError(
                f"lighter {what}: HTTP {status}: {text[:200]}", status=status
            ) from None
        if status != 200 or code != 200:
            # A definite refusal. Whether it used the nonce is not said: ask next time.
            if status == 200:
                self._nonces.invalidate()
            raise VenueError(
                f"lighter {what} refused: code {code}: {body.get('message', '')}", status=status
            )

    # -- orders ----------------------------------------------------------------------------------

    async def place_hedge(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> Order:
        """An IOC (market order with a worst price) that never rests. Returns the order with
        what filled (its fills are also delivered as Fill events: count one or the other);
        InsufficientLiquidity when nothing filled within the price. A pre-signed hedge for this
        side, size and client id is sent as is when its worst price is within the re-sign
        threshold (a quarter of its slippage band) of `worst_price`; the returned order carries
        the worst price actually sent."""
        self._require_signer()
        _check_client_id(client_id)
        base_amount, price = self._hedge_amounts(side, qty, worst_price)
        track = self._new_track(
            client_id,
            side,
            unscale(base_amount, self._size_decimals),
            unscale(price, self._price_decimals),
            OrderKind.IOC,
        )
        return await self._run_hedge(track, base_amount, price, worst_price, None)

    def try_send_now(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> asyncio.Task[Order] | None:
        """Fast path of `place_hedge`, for a synchronous fill callback: when the pre-signed
        hedge fits (the same rules as place_hedge: side, size, client id, current nonce, age,
        worst price within the re-sign threshold), the nonce lock is free and the keep-alive
        sendTx connection is open and idle, write the sendTx request to the socket NOW, before
        returning, and return a task that completes exactly as `place_hedge` would (the same
        Order or exception; an invalid nonce is re-signed once, a lost reply resolved, never
        sent twice). Otherwise return None having changed nothing: await `place_hedge`.

        The task holds the nonce lock and the connection until the reply is read; await it
        (do not cancel it: cancelling gives up on the reply, as cancelling place_hedge would).
        """
        p = self._presign
        if p is None or p.client_id != client_id or p.side is not side:
            return None
        signed, sender, seq = p.signed, self._sender, self._nonces
        if (
            signed is None
            or sender is None
            or self._signer is None
            or signed.nonce != seq.next
            or seq.lock.locked()
            or not sender.idle
            or not signed.request
        ):
            return None
        try:
            # The size it was signed for (the usual case) needs no conversion.
            base_amount = (
                p.base_amount
                if qty == p.qty
                else scale_qty(qty, self._size_decimals, self.market().min_qty)
            )
            if not self._presign_fits(
                p, signed, side, base_amount, worst_price, client_id, seq.next
            ):
                return None
        except (ValueError, ArithmeticError):
            return None  # place_hedge raises it
        old = self._tracks.get(client_id)
        if old is not None and _live(old):
            return None  # place_hedge raises it
        loop = asyncio.get_running_loop()  # (raises outside the loop, before anything is sent)
        seq.lock.try_acquire()  # free (checked above), and nothing else runs until we return
        self.last_send_ns = time.perf_counter_ns()
        reader = sender.write_now(signed.request)
        if reader is None:
            seq.lock.release()
            return None
        # Written. The bookkeeping comes after the bytes left, still before anything can read
        # a reply or a fill (nothing yields until the caller does).
        started = _Started(signed, sender, reader)
        try:
            self._record_write(client_id, sender.last_write_ns)
            self._presign = None  # a client id is used once
            self.presigned_used += 1
            self.fast_sends += 1
            self.last_hedge_path = "presigned"
            # A worst price within the pre-sign's bounds scales to a valid uint32.
            price = scale_worst_price(worst_price, self._price_decimals, side)
            track = self._new_track(
                client_id,
                side,
                unscale(base_amount, self._size_decimals),
                unscale(price, self._price_decimals),
                OrderKind.IOC,
            )
            task = loop.create_task(
                self._run_hedge(track, base_amount, price, worst_price, started),
                name=f"lighter-hedge-{client_id}",
            )
        except BaseException:
            self._abandon(started)  # not expected; but never keep the locks
            raise
        task.add_done_callback(functools.partial(self._fast_hedge_done, started))
        return task

    def _fast_hedge_done(self, started: _Started, task: asyncio.Task[Order]) -> None:
        if started.running:
            return  # the task's own `finally` gave the locks back
        # Cancelled before it ever ran: the request went out but its reply will not be read.
        log.warning("lighter hedge %s abandoned before its reply was read", task.get_name())
        self._abandon(started)

    def _abandon(self, started: _Started) -> None:
        """Give back what a written fast-path request holds without reading its reply: it may
        have executed, so the next transaction asks the venue for the nonce first."""
        self._nonces.invalidate()
        self._nonces.lock.release()
        started.sender.abandon()

    def _hedge_amounts(self, side: Side, qty: Decimal, worst_price: Decimal) -> tuple[int, int]:
        """(base_amount, worst price) of a hedge as Lighter's integers; ValueError if invalid."""
        base_amount = scale_qty(qty, self._size_decimals, self.market().min_qty)
        return base_amount, scale_worst_price(worst_price, self._price_decimals, side)

    async def _run_hedge(
        self,
        track: _Track,
        base_amount: int,
        price: int,
        worst_price: Decimal,
        started: _Started | None,
    ) -> Order:
        """The one implementation of a hedge from sending to its outcome (both paths)."""
        side, client_id = track.side, track.client_id

        def take_presigned(nonce: int) -> SignedTx | None:
            return self._take_presigned(side, base_amount, worst_price, client_id, nonce)

        async def build(nonce: int) -> SignedTx:
            self.signed_on_spot += 1
            return await self._sign_create(
                nonce,
                client_id=client_id,
                base_amount=base_amount,
                price=price,
                side=side,
                order_type=ORDER_TYPE_MARKET,
                tif=TIF_IOC,
                expiry=IOC_EXPIRY,
            )

        try:
            order = await self._place(track, build, take_presigned, started)
        finally:
            # A client id is used once: a pre-sign for it is spent either way.
            if self._presign is not None and self._presign.client_id == client_id:
                self._presign = None
        if order.status.is_terminal and order.filled_qty == 0:
            reason = track.lighter_status
            if reason in _NO_LIQUIDITY:
                raise InsufficientLiquidity(f"lighter hedge {client_id}: nothing filled ({reason})")
            if reason in _MARGIN:
                raise VenueError(f"lighter hedge {client_id} refused: margin ({reason})")
            raise VenueError(f"lighter hedge {client_id} not filled ({reason})")
        return order

    async def place_post_only(
        self, side: Side, qty: Decimal, price: Decimal, client_id: int
    ) -> Order:
        """A post-only limit (28-day expiry). PostOnlyRejected when it would have crossed."""
        self._require_signer()
        _check_client_id(client_id)
        market = self.market()
        base_amount = scale_qty(qty, self._size_decimals, market.min_qty)
        price_int = scale_limit_price(price, self._price_decimals, side)

        async def build(nonce: int) -> SignedTx:
            return await self._sign_create(
                nonce,
                client_id=client_id,
                base_amount=base_amount,
                price=price_int,
                side=side,
                order_type=ORDER_TYPE_LIMIT,
                tif=TIF_POST_ONLY,
                expiry=DEFAULT_28_DAY_EXPIRY,
            )

        track = self._new_track(
            client_id,
            side,
            unscale(base_amount, self._size_decimals),
            unscale(price_int, self._price_decimals),
            OrderKind.POST_ONLY,
        )
        order = await self._place(track, build, None)
        if track.lighter_status == "canceled-post-only":
            raise PostOnlyRejected(f"lighter post-only {client_id} would have crossed")
        return order

    async def _place(
        self,
        track: _Track,
        build: Callable[[int], Awaitable[SignedTx]],
        take_presigned: Callable[[int], SignedTx | None] | None,
        started: _Started | None = None,
    ) -> Order:
        what = f"order {track.client_id}"
        try:
            tx, confirmed = await self._transact(
                build,
                what=what,
                client_id=track.client_id,
                take_presigned=take_presigned,
                started=started,
            )
        except AmbiguousOrderState:
            raise  # the track stays: the stream or a reconcile may still report the order
        except VenueError:
            self._tracks.pop(track.client_id, None)
            raise
        if tx.price:
            track.price = unscale(tx.price, self._price_decimals)  # a pre-signed price differs
        log.info(
            "lighter %s %s %s @ %s cid=%d nonce=%d via %s%s",
            track.kind.value,
            track.side.value,
            track.qty,
            track.price,
            track.client_id,
            tx.nonce,
            self.last_hedge_path,
            "" if confirmed else " (reply lost, executed)",
        )
        return await self._await_outcome(track)

    def _new_track(
        self, client_id: int, side: Side, qty: Decimal, price: Decimal, kind: OrderKind
    ) -> _Track:
        old = self._tracks.get(client_id)
        if old is not None and _live(old):
            raise ValueError(f"client id {client_id} is still in use by a live order")
        track = _Track(client_id, side, qty, price, kind, sent_ms=_now_ms())
        self._tracks[client_id] = track
        self._tracks.move_to_end(client_id)
        while len(self._tracks) > self.max_remembered:
            self._tracks.popitem(last=False)
        return track

    async def _await_outcome(self, track: _Track) -> Order:
        """Wait until the order's state is known: from the account stream, else over REST."""
        deadline = time.monotonic() + self.resolve_timeout_s

        def known() -> bool:
            if track.kind is OrderKind.IOC:
                return track.status.is_terminal
            return track.status is not OrderStatus.PENDING_NEW

        if self._account_live():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.confirm_timeout):
                    while not known():
                        track.done.clear()
                        await track.done.wait()
        delay = 0.05
        while not known():
            log.info("lighter order %d: no stream confirmation; asking REST", track.client_id)
            try:
                await self._reconcile()
            except VenueError as exc:
                log.warning("lighter lookup of order %d failed: %s", track.client_id, exc)
            if known():
                break
            if time.monotonic() > deadline:
                raise AmbiguousOrderState(
                    f"lighter order {track.client_id}: accepted, outcome unknown after "
                    f"{self.resolve_timeout_s:.0f}s",
                    client_id=track.client_id,
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    track.done.clear()
                    await track.done.wait()
            delay = min(delay * 2, 1.0)
        return self._order_of(track)

    def _order_of(self, track: _Track) -> Order:
        return Order(
            venue=VENUE,
            symbol=self.market().symbol,
            client_id=track.client_id,
            side=track.side,
            qty=track.qty,
            price=track.price,
            kind=track.kind,
            status=track.status,
            order_id=None if track.order_index is None else str(track.order_index),
            filled_qty=track.filled,
        )

    async def find_order(self, client_id: int) -> Order | None:
        """Look an order of ours up by client order index (active, then recent inactive)."""
        for raw in await self._recent_orders():
            if int(raw.get("client_order_index") or 0) == client_id:
                self._on_order_state(raw, time.perf_counter_ns())
                return self._order_from_wire(raw)
        return None

    async def cancel(self, order: Order) -> None:
        """Cancel by order index (or client order index). An order already gone is a no-op
        at the venue; its final state arrives as events."""
        signer = self._require_signer()
        index = int(order.order_id) if order.order_id is not None else None
        if index is None:
            track = self._tracks.get(order.client_id)
            index = track.order_index if track and track.order_index else order.client_id
        market_id, key = self._market_id, self.api_key_index
        assert key is not None

        async def build(nonce: int) -> SignedTx:
            tx_type, info = await self._sign(
                lambda: signer.sign_cancel_order(market_id, index, nonce=nonce, api_key_index=key)
            )
            return _signed(tx_type, info, nonce)

        await self._transact(build, what=f"cancel {index}")
        log.info("lighter cancel %s (cid=%d) accepted", index, order.client_id)

    async def cancel_all(self) -> None:
        signer = self._require_signer()
        key = self.api_key_index
        assert key is not None

        async def build(nonce: int) -> SignedTx:
            tx_type, info = await self._sign(
                lambda: signer.sign_cancel_all_orders(
                    CANCEL_ALL_IMMEDIATE, 0, nonce=nonce, api_key_index=key
                )
            )
            return _signed(tx_type, info, nonce)

        await self._transact(build, what="cancel all")
        log.info("lighter cancel_all accepted")

    async def _active_orders_reply(self) -> Any:
        api = lighter.OrderApi(self._api_client())
        account, market_id = self._account(), self._market_id
        return await self._private_read(
            lambda token: api.account_active_orders(
                authorization=token,
                account_index=account,
                market_id=market_id,
                _request_timeout=self.request_timeout,
            ),
            "accountActiveOrders",
        )

    def _trade_id(self, order_index: int, filled: Decimal) -> str:
        """Lighter gives no trade id in account_orders: ours is the order index and its
        cumulative filled amount. Stream and REST backfill must build it the same way."""
        return f"{order_index}:{fmt(filled, self._size_decimals)}"

    async def open_orders(self) -> list[Order]:
        reply = await self._active_orders_reply()
        return [self._order_from_wire(o.to_dict()) for o in reply.orders or []]

    def _order_from_wire(self, raw: Mapping[str, Any]) -> Order:
        try:
            filled = Decimal(str(raw["filled_base_amount"]))
            tif = raw.get("time_in_force")
            return Order(
                venue=VENUE,
                symbol=self.market().symbol,
                client_id=int(raw.get("client_order_index") or 0),
                side=Side.SELL if raw["is_ask"] else Side.BUY,
                qty=Decimal(str(raw["initial_base_amount"])),
                price=Decimal(str(raw["price"])),
                kind=OrderKind.IOC if tif == "immediate-or-cancel" else OrderKind.POST_ONLY,
                status=lighter_status(str(raw["status"]), filled),
                order_id=str(raw["order_index"]),
                filled_qty=filled,
            )
        except _PARSE_ERRORS as exc:
            raise VenueError(f"lighter: malformed order {str(raw)[:200]}: {exc}") from exc

    # -- pre-signed hedges -----------------------------------------------------------------------

    def presign_hedge(
        self, side: Side, qty: Decimal, slippage_bps: Decimal | float, client_id: int
    ) -> None:
        """Keep an IOC hedge of `qty` signed ahead with the next nonce, at the worst price
        top ± `slippage_bps`; a `place_hedge` with this side, size and client id sends it
        without signing. Replaces any previous pre-sign. Signing happens in the background."""
        self._require_signer()
        _check_client_id(client_id)
        slippage = Decimal(str(slippage_bps))
        if not 0 < slippage < 10_000:
            raise ValueError(f"slippage_bps must be within (0, 10000), got {slippage_bps}")
        base_amount = scale_qty(qty, self._size_decimals, self.market().min_qty)
        self._presign = _Presign(side, qty, base_amount, slippage, client_id)
        self._presign_wakeup.set()

    def cancel_presigned(self) -> None:
        self._presign = None

    def presigned(self) -> tuple[Side, Decimal, int, Decimal] | None:
        """(side, qty, client id, worst price) of the hedge signed and ready, if any."""
        p = self._presign
        if p is None or p.signed is None:
            return None
        return (
            p.side,
            unscale(p.base_amount, self._size_decimals),
            p.client_id,
            unscale(p.signed.price, self._price_decimals),
        )

    async def wait_presigned(self, timeout: float = 5.0) -> bool:
        """Wait until the current pre-sign is signed for the current nonce (benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self._presign
            if p is not None and p.signed is not None and p.signed.nonce == self._nonces.next:
                return True
            await asyncio.sleep(0.002)
        return False

    def _presign_target(self, p: _Presign) -> tuple[Decimal, int] | None:
        """(reference book price, worst price) for the pre-sign now; None without a top."""
        top = self._book.top()
        if top is None:
            return None
        band = p.slippage_bps / Decimal(10_000)
        if p.side is Side.BUY:
            reference = top.ask
            worst = reference * (1 + band)
        else:
            reference = top.bid
            worst = reference * (1 - band)
        return reference, scale_worst_price(worst, self._price_decimals, p.side)

    def _presign_threshold(self, p: _Presign, reference: Decimal) -> Decimal:
        # A quarter of the slippage band: re-signed before the signed price drifts far.
        return reference * p.slippage_bps / Decimal(40_000)

    def _presign_stale(self, p: _Presign) -> bool:
        signed = p.signed
        if signed is None or signed.nonce != self._nonces.next:
            return True
        if time.monotonic() - signed.signed_at > self.presign_max_age_s:
            return True
        target = self._presign_target(p)
        if target is None:
            return False
        reference, _ = target
        return abs(reference - signed.reference) >= self._presign_threshold(p, signed.reference)

    def _take_presigned(
        self, side: Side, base_amount: int, worst_price: Decimal, client_id: int, nonce: int
    ) -> SignedTx | None:
        """The pre-signed tx if it fits this hedge (called under the nonce lock)."""
        p = self._presign
        if p is None or p.client_id != client_id:
            return None
        self._presign = None  # a client id is used once: this pre-sign is spent either way
        signed = p.signed
        if signed is None or not self._presign_fits(
            p, signed, side, base_amount, worst_price, client_id, nonce
        ):
            return None
        self.presigned_used += 1
        return signed

    def _presign_fits(
        self,
        p: _Presign,
        signed: SignedTx,
        side: Side,
        base_amount: int,
        worst_price: Decimal,
        client_id: int,
        nonce: int | None,
    ) -> bool:
        """May `signed` be sent as this hedge? The same side, size, client id and nonce, not
        too old, and the asked worst price, once rounded to the tick, within the re-sign
        threshold of the signed one: both come from nearly the same top, and the pre-signer
        keeps them that close. The last test is two comparisons with bounds set at signing."""
        if (
            p.side is not side
            or p.base_amount != base_amount
            or p.client_id != client_id
            or signed.nonce != nonce
            or time.monotonic() - signed.signed_at > self.presign_max_age_s
        ):
            return False
        if side is Side.BUY:  # rounded up: (lo, hi]
            return signed.worst_lo < worst_price <= signed.worst_hi
        return signed.worst_lo <= worst_price < signed.worst_hi  # rounded down: [lo, hi)

    def _on_nonce_change(self) -> None:
        if self._presign is not None:
            self._presign_wakeup.set()

    def _check_presign_drift(self) -> None:
        """Called after each book update: wake the pre-signer when the top moved enough."""
        p = self._presign
        if p is None or p.signed is None or self._presign_wakeup.is_set():
            return
        top = self._book.top()
        if top is None:
            return
        reference = top.ask if p.side is Side.BUY else top.bid
        if abs(reference - p.signed.reference) >= self._presign_threshold(p, p.signed.reference):
            self._presign_wakeup.set()

    async def _presign_loop(self) -> None:
        """Owned task: keep the pre-sign signed for the current nonce and price."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.presign_max_age_s / 4):
                    await self._presign_wakeup.wait()
            self._presign_wakeup.clear()
            p = self._presign
            nonce = self._nonces.next
            if p is None or nonce is None or not self._presign_stale(p):
                continue
            target = self._presign_target(p)
            if target is None:
                continue
            reference, price = target
            try:
                signed = await self._sign_create(
                    nonce,
                    client_id=p.client_id,
                    base_amount=p.base_amount,
                    price=price,
                    side=p.side,
                    order_type=ORDER_TYPE_MARKET,
                    tif=TIF_IOC,
                    expiry=IOC_EXPIRY,
                    reference=reference,
                )
            except VenueError as exc:
                log.warning("lighter pre-sign failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            self.presign_signs += 1
            # Everything the hot path would otherwise convert or encode, done now.
            signed.worst_lo, signed.worst_hi = _worst_bounds(
                price,
                self._presign_threshold(p, reference),
                self._price_decimals,
                p.side,
            )
            if self._sender is not None:
                self._tx_request(signed, self._sender)
            if self._presign is p and self._nonces.next == nonce:
                p.signed = signed
                log.debug(
                    "lighter hedge pre-signed: %s %s @ %d nonce %d",
                    p.side.value,
                    p.qty,
                    price,
                    nonce,
                )
            else:
                self._presign_wakeup.set()  # overtaken while signing: again

    # -- account ---------------------------------------------------------------------------------

    def _account(self) -> int:
        if self.account_index is None:
            raise ConfigError("LIGHTER_ACCOUNT_INDEX is required for account data")
        return self.account_index

    async def _detailed_account(self) -> Any:
        api = lighter.AccountApi(self._api_client())
        account = self._account()
        reply = await self._read(
            lambda: api.account(
                by="index", value=str(account), _request_timeout=self.request_timeout
            ),
            "account",
        )
        for entry in reply.accounts or []:
            if int(entry.index) == account:
                return entry
        raise VenueError(f"lighter account {account} not found")

    async def position(self) -> Decimal:
        """Signed position of our market: Lighter gives |size| and a sign of ±1."""
        entry = await self._detailed_account()
        for pos in entry.positions or []:
            if int(pos.market_id) == self._market_id:
                try:
                    return int(pos.sign) * Decimal(str(pos.position))
                except _PARSE_ERRORS as exc:
                    raise VenueError(f"lighter position: malformed {pos}: {exc}") from exc
        return Decimal(0)

    async def balance(self) -> Balance:
        entry = await self._detailed_account()
        try:
            equity = Decimal(str(entry.total_asset_value or entry.collateral))
            return Balance(
                venue=VENUE,
                equity=equity,
                available=Decimal(str(entry.available_balance)),
                extra={"collateral": str(entry.collateral)},
            )
        except _PARSE_ERRORS as exc:
            raise VenueError(f"lighter account: malformed balance: {exc}") from exc

    async def fills_since(self, since_ms: int) -> list[Fill]:
        """Our fills on this market from `since_ms`, oldest first, with the same trade ids as
        the stream gives (order index : cumulative filled). Cumulative amounts are counted from
        trades up to 10 minutes earlier, so an order straddling `since_ms` keeps its ids."""
        api = lighter.OrderApi(self._api_client())
        account, market_id = self._account(), self._market_id
        page_from = max(since_ms - 600_000, 0)
        by_id: dict[object, Any] = {}

        # Pages of at most TRADES_PAGE, ascending, each starting at the last timestamp seen
        # (inclusive, deduped by trade id): a long run has more trades than one page holds,
        # and the newest are the ones a crash leaves unjournaled.
        def page_call(start: int) -> Callable[[str], Awaitable[Any]]:
            return lambda token: api.trades(
                sort_by="timestamp",
                limit=TRADES_PAGE,
                authorization=token,
                market_id=market_id,
                account_index=account,
                sort_dir="asc",
                var_from=start,
                _request_timeout=self.request_timeout,
            )

        for _ in range(MAX_TRADE_PAGES):
            reply = await self._private_read(page_call(page_from), "trades")
            page = reply.trades or []
            new = [t for t in page if t.trade_id not in by_id]
            for trade in new:
                by_id[trade.trade_id] = trade
            if len(page) < TRADES_PAGE or not new:
                break
            page_from = max(_ts_ms(int(t.timestamp)) for t in page)
        else:
            log.warning("lighter fills_since: stopped after %s pages", MAX_TRADE_PAGES)
        recv_ns = time.perf_counter_ns()
        rows = sorted(by_id.values(), key=lambda t: (t.timestamp, t.trade_id))
        cumulative: dict[int, Decimal] = {}
        fills: list[Fill] = []
        for trade in rows:
            try:
                is_ask = int(trade.ask_account_id) == account
                if not is_ask and int(trade.bid_account_id) != account:
                    continue
                order_index = int(trade.ask_id if is_ask else trade.bid_id)
                qty = Decimal(str(trade.size))
                filled = cumulative.get(order_index, Decimal(0)) + qty
                cumulative[order_index] = filled
                ts = _ts_ms(int(trade.timestamp))
                if ts < since_ms:
                    continue
                client = int(trade.ask_client_id if is_ask else trade.bid_client_id)
                fills.append(
                    Fill(
                        venue=VENUE,
                        symbol=self.market().symbol,
                        trade_id=self._trade_id(order_index, filled),
                        order_id=str(order_index),
                        client_id=client or None,
                        side=Side.SELL if is_ask else Side.BUY,
                        qty=qty,
                        price=Decimal(str(trade.price)),
                        is_maker=bool(trade.is_maker_ask) == is_ask,
                        venue_ts_ms=ts,
                        recv_ns=recv_ns,
                    )
                )
            except _PARSE_ERRORS as exc:
                self.malformed += 1
                log.warning("lighter: malformed trade skipped (%s): %.200s", exc, trade)
        return fills

    async def describe(self) -> dict[str, object]:
        """A summary for `hedgebot check`: market rules, collateral, position, open orders."""
        market = self.market()
        summary: dict[str, object] = {
            "venue": VENUE,
            "symbol": market.symbol,
            "market_id": market.market_id,
            "tick_size": str(market.tick_size),
            "step_size": str(market.step_size),
            "min_qty": str(market.min_qty),
            "min_notional": str(market.min_notional),
            "price_decimals": self._price_decimals,
            "size_decimals": self._size_decimals,
            "book": describe_top(self.top()),
        }
        if not self.keyed:
            summary["account"] = "no API keys (public data only)"
            return summary
        balance, position, orders = await asyncio.gather(
            self.balance(), self.position(), self.open_orders()
        )
        summary.update(
            {
                "account_index": self.account_index,
                "api_key_index": self.api_key_index,
                "next_nonce": self._nonces.next,
                "equity": str(balance.equity),
                "available": str(balance.available),
                "collateral": balance.extra.get("collateral", ""),
                "position": str(position),
                "open_orders": describe_orders(orders),
            }
        )
        return summary

    # -- events ----------------------------------------------------------------------------------

    def _emit_fill(self, fill: Fill) -> None:
        if fill.trade_id in self._seen_trades:
            self.duplicates_dropped += 1
            return
        self._seen_trades.add(fill.trade_id)
        self._seen_trade_order.append(fill.trade_id)
        if len(self._seen_trade_order) > 10 * self.max_remembered:
            self._seen_trades.discard(self._seen_trade_order.popleft())
        self.fills_delivered += 1
        log.info(
            "lighter fill trade=%s order=%s cid=%s %s %s @ %s",
            fill.trade_id,
            fill.order_id,
            fill.client_id,
            fill.side.value,
            fill.qty,
            fill.price,
        )
        self._emit(fill)

    def _on_order_state(self, raw: Mapping[str, Any], recv_ns: int) -> None:
        """One order snapshot (stream or REST): a Fill for the growth of its filled amount,
        then an OrderEvent, unless it is stale (a duplicate or an older reordered update)."""
        try:
            if int(raw["market_index"]) != self._market_id:
                return
            order_index = int(raw["order_index"])
            client_id = int(raw.get("client_order_index") or 0)
            filled = Decimal(str(raw["filled_base_amount"]))
            quote = Decimal(str(raw["filled_quote_amount"]))
            raw_status = str(raw["status"])
            status = lighter_status(raw_status, filled)
            side = Side.SELL if raw["is_ask"] else Side.BUY
            venue_ts = _ts_ms(int(raw.get("timestamp") or 0))
            maker = raw.get("time_in_force") == "post-only"
            limit_price = Decimal(str(raw["price"]))
        except _PARSE_ERRORS as exc:
            self.malformed += 1
            log.warning("lighter: malformed order update skipped (%s): %.300s", exc, raw)
            return
        seen = self._seen.get(order_index)
        if seen is None:
            seen = self._seen[order_index] = _Seen()
            while len(self._seen) > self.max_remembered:
                self._seen.popitem(last=False)
        progress = _PROGRESS[status]
        if filled < seen.filled or (filled == seen.filled and progress <= seen.progress):
            self.duplicates_dropped += 1
            return
        if filled > seen.filled:
            delta = filled - seen.filled
            quote_delta = quote - seen.quote
            price = quote_delta / delta if quote_delta > 0 else limit_price
            seen.filled, seen.quote = filled, quote
            self._emit_fill(
                Fill(
                    venue=VENUE,
                    symbol=self.market().symbol,
                    trade_id=self._trade_id(order_index, filled),
                    order_id=str(order_index),
                    client_id=client_id or None,
                    side=side,
                    qty=delta,
                    price=price,
                    is_maker=maker,
                    venue_ts_ms=venue_ts,
                    recv_ns=recv_ns,
                )
            )
        seen.progress = max(seen.progress, progress)
        track = self._tracks.get(client_id) if client_id else None
        if track is not None and track.order_index in (None, order_index):
            track.order_index = order_index
            track.filled = filled
            track.status = status
            track.lighter_status = raw_status
            track.done.set()
        self._emit(
            OrderEvent(
                VENUE,
                self.market().symbol,
                str(order_index),
                client_id or None,
                status,
                filled,
                raw_status,
                recv_ns,
            )
        )

    # -- stream parsing ----------------------------------------------------------------------------

    def _account_live(self) -> bool:
        return self._ws is not None and self._ws.connected and self._account_subscribed

    async def _on_ws_connect(self, ws: ReconnectingWebSocket) -> None:
        self._book.reset()
        self._book_resubscribing = False
        self._account_subscribed = False
        await ws.send(json.dumps({"type": "subscribe", "channel": f"order_book/{self._market_id}"}))
        if self.keyed:
            await ws.send(json.dumps(self._account_subscribe(await self._auth_token())))

    def _account_subscribe(self, token: str) -> dict[str, object]:
        channel = f"account_orders/{self._market_id}/{self._account()}"
        return {"type": "subscribe", "channel": channel, "auth": token}

    def _on_ws_disconnect(self) -> None:
        self._book.mark_gap("websocket disconnected")
        if self._account_subscribed:
            self._account_gap = True
        self._account_subscribed = False

    async def _on_ws_reconnect(self) -> None:
        if self.keyed:
            await self._reconcile_until_done()

    def _on_frame(self, frame: str | bytes, recv_ns: int) -> None:
        try:
            message = json.loads(frame)
            kind = message.get("type")
        except (ValueError, AttributeError):
            kind = None
            message = None
        if kind is None:
            # The venue's error frames carry no `type` (and no `channel`): {"error": {...}}.
            if isinstance(message, dict) and "error" in message:
                self._on_stream_error(message)
                return
            self.malformed += 1
            log.warning("lighter: unparsable frame skipped: %.200r", frame)
            return
        if kind == "update/order_book" or kind == "subscribed/order_book":
            if kind == "subscribed/order_book":
                self._book_resubscribing = False
            if not apply_lighter_order_book(self._book, message):
                self._resubscribe_book()
            elif self._presign is not None:
                self._check_presign_drift()
        elif kind == "update/account_orders" or kind == "subscribed/account_orders":
            self._on_account_orders(message, recv_ns, kind == "subscribed/account_orders")
        elif kind == "ping":
            if self._ws is not None:
                self._ws.send_soon(json.dumps({"type": "pong"}))
        elif kind == "error":
            self._on_stream_error(message)
        else:
            log.debug("lighter: message %s skipped", kind)

    def _on_account_orders(self, message: Mapping[str, Any], recv_ns: int, snapshot: bool) -> None:
        if snapshot:
            self._account_subscribed = True
            self._account_resubscribing = False
            if self._account_gap:
                self._account_gap = False
                self._spawn(self._reconcile_until_done(), "reconcile")
        try:
            orders = message["orders"].get(str(self._market_id), [])
        except (KeyError, AttributeError, TypeError):
            self.malformed += 1
            log.warning("lighter: malformed account_orders skipped: %.300s", message)
            return
        for raw in orders if isinstance(orders, list) else []:
            if isinstance(raw, dict):
                self._on_order_state(raw, recv_ns)

    def _on_stream_error(self, message: Mapping[str, Any]) -> None:
        error = message.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        text = str(error.get("message", error)) if isinstance(error, dict) else str(error)
        channel = str(message.get("channel") or "")
        where = f" on {channel}" if channel else ""
        if code in (WS_ALREADY_SUBSCRIBED, WS_NOT_SUBSCRIBED):
            # Harmless: a renewal's unsubscribe found the channel already ended, or a subscribe
            # found it live (we never subscribe twice on purpose).
            log.info("lighter stream: %s (code %s)", text, code)
            return
        if code in WS_TOO_MANY_MESSAGES:
            log.warning("lighter stream%s: the venue asks us to slow down: %s", where, text)
            return
        log.error("lighter stream error%s: %s", where, text)
        lowered = text.lower()
        account_related = "account" in channel or "account" in lowered or "auth" in lowered
        if self.keyed and (account_related or "token" in lowered):
            # The account subscription was refused or ended (e.g. its token expired): a fresh
            # token on a fresh subscription, then a reconcile for what happened in between.
            self._account_subscribed = False
            self._account_gap = True
            if not self._account_resubscribing:
                self._account_resubscribing = True
                self._spawn(self._resubscribe_account(), "account-resubscribe")

    async def _resubscribe_account(self) -> None:
        delay = 0.05
        while self._ws is not None and not self._account_subscribed:
            try:
                token = await self._auth_token(force=True)
                await self._send_account_subscription(self._ws, token)
                return
            except VenueError as exc:
                log.warning("lighter account re-subscription failed: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _send_account_subscription(self, ws: ReconnectingWebSocket, token: str) -> None:
        """Unsubscribe, then subscribe with `token`. The venue refuses a second subscribe to a
        live channel (30003) and sends no snapshot, so a subscription is only ever renewed
        this way; an unsubscribe of a channel that is not live is harmless."""
        subscribe = self._account_subscribe(token)
        await ws.send(json.dumps({"type": "unsubscribe", "channel": subscribe["channel"]}))
        await ws.send(json.dumps(subscribe))

    async def _token_loop(self) -> None:
        """Owned task: renew the auth token before it expires; the account stream is
        re-subscribed with the new one (the venue may end a subscription at expiry)."""
        while True:
            token = self._token
            wait = (token[1] - time.time() - self.token_margin_s) if token else 0.0
            await asyncio.sleep(max(wait, 1.0))
            try:
                fresh = await self._auth_token(force=True)
            except VenueError as exc:
                log.warning("lighter auth token refresh failed: %s", exc)
                continue
            ws = self._ws
            if ws is not None and ws.connected:
                # Events between the unsubscribe and the new snapshot are reconciled over REST.
                self._account_gap = True
                try:
                    await self._send_account_subscription(ws, fresh)
                except VenueError as exc:
                    log.warning("lighter account re-subscription failed: %s", exc)

    # -- recovery ----------------------------------------------------------------------------------

    async def _recent_orders(self) -> list[dict[str, Any]]:
        """Our active orders and the 100 most recent inactive ones on this market."""
        api = lighter.OrderApi(self._api_client())
        account, market_id = self._account(), self._market_id
        active = await self._active_orders_reply()
        inactive = await self._private_read(
            lambda token: api.account_inactive_orders(
                authorization=token,
                account_index=account,
                limit=100,
                market_id=market_id,
                _request_timeout=self.request_timeout,
            ),
            "accountInactiveOrders",
        )
        return [o.to_dict() for o in (active.orders or []) + (inactive.orders or [])]

    async def _reconcile(self) -> None:
        """Feed the venue's view of our tracked orders through the event path: fills missed
        by the stream are emitted (exactly once: fills are the growth of filled amounts)."""
        rows = await self._recent_orders()
        self.reconciles += 1
        recv_ns = time.perf_counter_ns()
        for raw in reversed(rows):  # oldest first
            try:
                ours = (
                    int(raw.get("client_order_index") or 0) in self._tracks
                    or int(raw["order_index"]) in self._seen
                )
            except _PARSE_ERRORS:
                ours = False
            if ours:
                self._on_order_state(raw, recv_ns)

    async def _reconcile_until_done(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._reconcile()
                return
            except VenueError as exc:
                log.warning("lighter reconciliation failed: %s; retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _signed(
    tx_type: int,
    info: str,
    nonce: int,
    *,
    base_amount: int = 0,
    price: int = 0,
    reference: Decimal = Decimal(0),
) -> SignedTx:
    try:
        expires_ms = int(json.loads(info).get("ExpiredAt", 0))
    except (ValueError, AttributeError):
        expires_ms = 0
    body = urllib.parse.urlencode({"tx_type": str(tx_type), "tx_info": info}).encode()
    return SignedTx(
        tx_type, info, nonce, body, time.monotonic(), expires_ms, base_amount, price, reference
    )


def _worst_bounds(
    price: int, tolerance: Decimal, price_decimals: int, side: Side
) -> tuple[Decimal, Decimal]:
    """The asked worst prices w for which a tx signed at `price` may be sent: those whose
    `scale_worst_price(w)` is a valid uint32 within `tolerance` (a price difference) of
    `price`. As Decimal bounds, so that the hot path only compares: with x = w * 10^decimals,
    a buy rounds x up, and ceil(x) in [lo, hi] <=> lo - 1 < x <= hi; a sell rounds down, and
    floor(x) in [lo, hi] <=> lo <= x < hi + 1. Buy: lo < w <= hi; sell: lo <= w < hi."""
    slack = int(tolerance.scaleb(price_decimals).to_integral_value(rounding=ROUND_FLOOR))
    lo, hi = max(price - slack, 1), min(price + slack, MAX_PRICE)
    if side is Side.BUY:
        return unscale(lo - 1, price_decimals), unscale(hi, price_decimals)
    return unscale(lo, price_decimals), unscale(hi + 1, price_decimals)


def _live(track: _Track) -> bool:
    """Known to be working at the venue (its client id cannot be reused yet)."""
    return not track.status.is_terminal and track.status is not OrderStatus.PENDING_NEW


def _check_client_id(client_id: int) -> None:
    if not 0 < client_id <= MAX_CLIENT_ORDER_INDEX:
        raise ValueError(f"client_id must be within 1..2^48-1, got {client_id}")


def _ts_ms(value: int) -> int:
    """Lighter timestamps in seconds or milliseconds -> milliseconds."""
    return value * 1000 if 0 < value < 100_000_000_000 else value


def _error_text(exc: lighter.ApiException) -> str:
    data = getattr(exc, "data", None)
    message = getattr(data, "message", None)
    if message:
        return str(message)
    return str(exc.body or exc.reason or "")[:200]

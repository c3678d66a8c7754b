"""The sendTx transport: one keep-alive HTTP/1.1 connection of our own (`TxSender`), the
meaning of a sendTx answer (`check_tx_reply`), and the three ways a send can end badly.

Measured here: the SDK's `send_tx` costs ~0.65 ms more per call (pydantic validation and
serialization) and aiohttp ~0.25 ms before the bytes leave; our writer puts a pre-signed hedge
on the socket ~0.1 ms after `place_hedge` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable

import certifi

from exchanges.base import ConfigError, VenueError
from exchanges.lighter.nonce import Mutex
from exchanges.lighter.parsing import retry_after_s

log = logging.getLogger(__name__)


class TxRefused(VenueError):
    """A definite refusal of a transaction (status 200 with an error code: whether it used
    the nonce is not said, so the sender asks the venue next time)."""


class InvalidNonce(Exception):
    """The venue refused the transaction's nonce: it was not executed."""


class NotSent(Exception):
    """The venue certainly did not act on the request (429, connection refused)."""


class RateLimited(NotSent):
    """HTTP 429: not acted on; the venue allows again after `retry_after` seconds (if said)."""

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("rate limited (429)")
        self.retry_after = retry_after


class MaybeSent(Exception):
    """The request may have reached the venue: timeout, 5xx, dropped connection."""


class ClientOrderIndexExists(VenueError):
    """21728: the account already has an order with this client order index, so this copy was
    refused (its nonce not used). After a lost reply it means the first copy was placed."""


CLIENT_ORDER_INDEX_EXISTS = 21728


class TxSender:
    """One keep-alive HTTP/1.1 connection for `POST /api/v1/sendTx` (and tests' GETs).

    A request is written to the socket synchronously once the connection is held: a
    general-purpose client (aiohttp: ~0.1-0.3 ms of request building and scheduling per call
    here) would double the hedge path. The form is exactly the SDK's. An exchange is two steps,
    so that the first can also run inside a synchronous callback (`write_now`): write, then
    `read_reply`, which gives the connection back. Outcomes: `NotSent` when the connection
    could not be opened (nothing left us), `MaybeSent` when the request was written but no
    complete answer came back; otherwise (status, body text).

    The connection is opened ahead (`preconnect`) and renewed while idle (`refresh`) without
    sending anything: a TCP/TLS handshake costs no request of the venue's budget.
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
        self.last_used = 0.0  # monotonic time of the last answer read (or connection opened)
        self.retry_after: float | None = None  # `Retry-After` of the last answer, if any

    async def preconnect(self) -> None:
        """Open the connection now if it is not open (a hedge then pays no handshake). A
        failure is only logged: the next request connects again."""
        await self._lock.acquire()
        try:
            await self._connection()
        except NotSent as exc:
            log.warning("lighter sendTx connection: %s", exc)
        finally:
            self._lock.release()

    async def refresh(self) -> None:
        """Replace an idle connection with a fresh one before servers drop it for idling:
        nothing is sent on either. A busy connection is left alone (it is in use)."""
        if not self._lock.try_acquire():
            return
        try:
            self._drop()
            await self._connection()
        except NotSent as exc:
            log.warning("lighter sendTx connection refresh: %s", exc)
        finally:
            self._lock.release()

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
            raise NotSent(f"write failed: {exc}") from None
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
                    status, text, keep_alive, headers = await _read_response(reader)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                self._drop()
                raise MaybeSent(f"{type(exc).__name__}: {exc}") from None
            except BaseException:
                self._drop()  # cancelled mid-answer: the connection is out of step
                raise
            self.last_used = time.monotonic()
            self.retry_after = retry_after_s(headers.get("retry-after"))
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
            raise NotSent(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        self.last_used = time.monotonic()
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


async def _read_response(
    reader: asyncio.StreamReader,
) -> tuple[int, str, bool, dict[str, str]]:
    """(status, body, keep-alive, headers by lower-case name) of one HTTP/1.1 response:
    Content-Length, chunked, or delimited by the connection closing."""
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
    return status, body.decode("utf-8", "replace"), keep_alive, headers


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


def check_tx_reply(status: int, text: str, what: str, retry_after: float | None = None) -> None:
    """What a sendTx answer means; returns only when the venue accepted the transaction."""
    if status == 429:
        raise RateLimited(retry_after)
    if status >= 500:
        raise MaybeSent(f"HTTP {status}")
    if status == 400 and "invalid nonce" in text.lower():
        raise InvalidNonce(text)
    try:
        body = json.loads(text)
        code = int(body["code"])
    except (ValueError, KeyError, TypeError):
        if status == 200:
            raise MaybeSent(f"unreadable reply {text[:200]!r}") from None
        raise VenueError(f"lighter {what}: HTTP {status}: {text[:200]}", status=status) from None
    if code == CLIENT_ORDER_INDEX_EXISTS:
        raise ClientOrderIndexExists(
            f"lighter {what} refused: code {code}: {body.get('message', '')}", status=status
        )
    if status != 200 or code != 200:
        error = TxRefused if status == 200 else VenueError
        raise error(
            f"lighter {what} refused: code {code}: {body.get('message', '')}", status=status
        )

"""Signing: the lighter-sdk `SignerClient` (its bundled Go library) behind a small thread pool,
the signed transaction record, and auth tokens.

The pool is owned here (ctypes releases the GIL; the library signs concurrently without
trouble), so the event loop keeps reading fills while a transaction is being signed. Measured
here: ~3.7 ms per order on the loop's own thread, ~0.9 ms in a worker thread (+0.25 ms
hand-off). Auth tokens live `token_ttl_s` and are rotated when `token_margin_s` is left.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import lighter

from exchanges.base import ConfigError, Side, VenueError
from exchanges.common.budget import Priority
from exchanges.lighter.constants import CANCEL_ALL_IMMEDIATE
from exchanges.lighter.session import Session


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
    # (see `scaling.worst_bounds`).
    request: bytes = b""
    worst_lo: Decimal = Decimal(0)
    worst_hi: Decimal = Decimal(0)


def signed_tx(
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


@dataclass(frozen=True, slots=True)
class CreateOrder:
    """The fields of one create-order transaction, as Lighter's integers."""

    client_id: int
    base_amount: int
    price: int
    side: Side
    order_type: int
    tif: int
    expiry: int
    reference: Decimal = Decimal(0)


class SignerKeys:
    """What signing needs once per API key: the SignerClient, its threads, the auth token."""

    def __init__(self) -> None:
        self.client: lighter.SignerClient | None = None
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.token: tuple[str, int] | None = None  # (token, expiry unix seconds)
        self.token_lock = asyncio.Lock()

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
        if self.pool is not None:
            # A signature in progress finishes in its thread; nothing waits for it.
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


class Signer:
    """Signs one market's transactions with the API key's `SignerKeys`."""

    def __init__(
        self,
        session: Session,
        token_ttl_s: int,
        token_margin_s: int,
        keys: SignerKeys | None = None,
    ) -> None:
        self.session = session
        self.token_ttl_s = token_ttl_s
        self.token_margin_s = token_margin_s
        # Shared by every pair on the API key (exchanges/lighter/shared.py): one signer
        # client, one pool of signing threads, one auth token.
        self.keys = keys if keys is not None else SignerKeys()

    @property
    def _client(self) -> lighter.SignerClient | None:
        return self.keys.client

    @property
    def _pool(self) -> concurrent.futures.ThreadPoolExecutor | None:
        return self.keys.pool

    @property
    def token(self) -> tuple[str, int] | None:
        """(token, expiry unix seconds) of the API key's auth token."""
        return self.keys.token

    @property
    def ready(self) -> bool:
        return self._client is not None

    def require(self) -> lighter.SignerClient:
        if self._client is None:
            raise ConfigError("Lighter API keys are required for trading")
        return self._client

    async def start(self, api_url: str, private_key: str) -> None:
        """Build the SignerClient and have the venue check our key; ConfigError if refused."""
        session, keys = self.session, self.keys
        assert session.account_index is not None and session.api_key_index is not None
        if keys.client is not None:
            return  # another pair on this API key started it
        if keys.pool is None:
            keys.pool = concurrent.futures.ThreadPoolExecutor(2, "lighter-sign")
        try:
            client = lighter.SignerClient(
                url=api_url,
                account_index=session.account_index,
                api_private_keys={session.api_key_index: private_key},
            )
        except Exception as exc:
            # The message never includes the key itself.
            raise ConfigError(
                f"LIGHTER_API_PRIVATE_KEY is not usable: {type(exc).__name__}"
            ) from None
        # check_client does blocking HTTP inside the Go library (GET apikeys): run it off the
        # loop, after the budget allows it.
        try:
            await session.budget.take("apikeys", Priority.READ)
            err = await asyncio.get_running_loop().run_in_executor(keys.pool, client.check_client)
        except BaseException:
            await client.close()
            raise
        if err is not None:
            await client.close()
            refused = _refused_index(err)
            if refused is not None:
                raise ConfigError(refused)
            if "failed to get" in err:
                raise VenueError(f"lighter: could not check the API key: {err}", retryable=True)
            raise ConfigError(
                f"Lighter rejected API key {session.api_key_index} of account "
                f"{session.account_index}: {err}"
            )
        keys.client = client

    async def _sign(self, what: Callable[[], tuple[Any, Any, Any, Any]]) -> tuple[int, str]:
        """Run one signer call in the signing threads; (tx_type, tx_info)."""
        self.session.stats.sign_calls += 1
        tx_type, info, _tx_hash, err = await asyncio.get_running_loop().run_in_executor(
            self._pool, what
        )
        if err is not None or info is None:
            raise VenueError(f"lighter signer refused the transaction: {err}")
        return int(tx_type), str(info)

    async def create_order(self, nonce: int, order: CreateOrder) -> SignedTx:
        client = self.require()
        market_id, key = self.session.market_id, self.session.api_key_index
        assert key is not None
        tx_type, info = await self._sign(
            lambda: client.sign_create_order(
                market_id,
                order.client_id,
                order.base_amount,
                order.price,
                int(order.side is Side.SELL),
                order.order_type,
                order.tif,
                False,
                0,
                order.expiry,
                nonce=nonce,
                api_key_index=key,
            )
        )
        return signed_tx(
            tx_type,
            info,
            nonce,
            base_amount=order.base_amount,
            price=order.price,
            reference=order.reference,
        )

    async def cancel_order(self, nonce: int, order_index: int) -> SignedTx:
        client = self.require()
        market_id, key = self.session.market_id, self.session.api_key_index
        assert key is not None
        tx_type, info = await self._sign(
            lambda: client.sign_cancel_order(market_id, order_index, nonce=nonce, api_key_index=key)
        )
        return signed_tx(tx_type, info, nonce)

    async def cancel_all_orders(self, nonce: int) -> SignedTx:
        client = self.require()
        key = self.session.api_key_index
        assert key is not None
        tx_type, info = await self._sign(
            lambda: client.sign_cancel_all_orders(
                CANCEL_ALL_IMMEDIATE, 0, nonce=nonce, api_key_index=key
            )
        )
        return signed_tx(tx_type, info, nonce)

    async def auth_token(self, force: bool = False) -> str:
        """A valid auth token for private reads and the account stream."""
        async with self.keys.token_lock:
            token = self.token
            if not force and token is not None and token[1] - time.time() > self.token_margin_s:
                return token[0]
            client = self.require()
            key = self.session.api_key_index
            assert key is not None
            now = int(time.time())
            expiry = now + self.token_ttl_s
            fn = client.create_auth_token_with_expiry
            text, err = await asyncio.get_running_loop().run_in_executor(
                self._pool,
                lambda: fn(self.token_ttl_s, timestamp=now, api_key_index=key),
            )
            self.session.stats.token_calls += 1
            if err is not None or not text:
                raise VenueError(f"lighter: could not create an auth token: {err}")
            self.keys.token = (text, expiry)
            return text


# The venue's words when an index names nothing: (marker, variable, meaning).
_INDEX_REFUSALS = (
    ("account not found", "LIGHTER_ACCOUNT_INDEX", "the venue has no account at that index"),
    ("no api key returned", "LIGHTER_API_KEY_INDEX", "the account has no API key at that index"),
    ("api key not found", "LIGHTER_API_KEY_INDEX", "the account has no API key at that index"),
)


def _refused_index(err: str) -> str | None:
    """A key check's error that says an index is wrong, as one line naming the variable."""
    for marker, variable, meaning in _INDEX_REFUSALS:
        if marker in err.lower():
            return f"Lighter refused {variable}: {meaning} (value not shown)"
    return None

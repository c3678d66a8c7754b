"""LighterVenue: the hedge venue, a thin facade over the parts of this package.

lighter-sdk signs (signing.py); we sequence nonces (nonce.py), send on our own keep-alive
connection (transport.py), sign hedges ahead (presign.py), place and resolve orders
(execution.py), stream and reconcile (user_stream.py) and read the account (account.py).
Decimal <-> Lighter's integers happens in scaling.py only; wire formats are read in
parsing.py only; our orders live in the one `OrderTracker` (exchanges/common/orders.py).

The fill -> hedge path, in four hops:

1. `hedge/hedger.py` `Hedger._start_hedge` (inside the maker fill callback) calls
   `LighterVenue.try_send_now`, which is `Execution.try_send_now`.
2. `Execution.try_send_now` asks `Presigner.ready` for the hedge signed ahead, takes the nonce
   with `NonceSequencer.try_hold()` (a `NonceHold`, never yielding) and writes the request
   with `TxSender.write_now`; it starts one task, which owns the hold from then on. (When
   any of that does not fit, the hedger awaits `place_hedge`, which signs or takes the
   pre-sign under an awaited hold: the same `Execution._place` below.)
3. That task, `Execution._hedge` (through `_place`), has `Transactor.complete` read the reply,
   resolve an invalid nonce or a lost answer, and release the hold as soon as the venue has
   answered.
4. `Execution.await_outcome` waits for the tracked order to reach a final state, moved by
   `UserStream.on_order_state` (account stream, or REST reconcile when the stream is quiet),
   and returns the Order; its fills reach the hedger as Fill events.

`try_send_now` exists because a task started from a synchronous fill callback would run only
after every other ready callback of the loop (Python 3.11 has no eager tasks), ~0.2-1.6 ms
here under load; writing from the callback itself puts the hedge on the socket ~0.1 ms after
the fill.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Generic, TypeVar, cast

from exchanges.base import (
    Balance,
    BookTop,
    ConfigError,
    EventEmitter,
    FeeRates,
    Fill,
    Market,
    Order,
    Side,
    VenueError,
    describe_orders,
    describe_top,
)
from exchanges.common.budget import RequestBudget
from exchanges.common.orderbook import LIGHTER, OrderBook
from exchanges.common.orders import OrderTracker
from exchanges.common.tasks import Tasks
from exchanges.common.ws import ReconnectingWebSocket
from exchanges.lighter.account import Account
from exchanges.lighter.constants import VENUE
from exchanges.lighter.execution import Execution, Transactor
from exchanges.lighter.presign import Presigner
from exchanges.lighter.session import Session
from exchanges.lighter.shared import SharedAccount
from exchanges.lighter.signing import Signer
from exchanges.lighter.transport import TxSender
from exchanges.lighter.user_stream import UserStream

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class _Stat(Generic[_T]):
    """A read-only view of one counter of `Session.stats` (tests, benchmarks, dashboard)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, venue: Any, owner: type | None = None) -> _T:
        return cast(_T, getattr(venue._session.stats, self._name))


class LighterVenue(EventEmitter):
    """Lighter perpetuals: lighter-sdk signer + REST reads, our sendTx, one WebSocket."""

    name = VENUE

    # Auth tokens live 7 hours (the venue accepts up to 8) and are rotated when an hour is left,
    # as NautilusTrader does: a rotation is one unsubscribe + subscribe, a few times a day.
    token_ttl_s = 7 * 3600
    token_margin_s = 3600
    presign_max_age_s = 300.0  # re-sign well before the signer's ~10 minute ExpiredAt
    resolve_timeout_s = 30.0  # an accepted order whose outcome is still unknown after this
    max_remembered = 10_000

    sign_calls = _Stat[int]()
    presign_signs = _Stat[int]()
    token_calls = _Stat[int]()
    presigned_used = _Stat[int]()
    signed_on_spot = _Stat[int]()
    last_hedge_path = _Stat[str]()
    last_send_ns = _Stat[int]()
    write_ns_by_client = _Stat[dict[int, int]]()
    fast_sends = _Stat[int]()
    fills_delivered = _Stat[int]()
    duplicates_dropped = _Stat[int]()
    malformed = _Stat[int]()
    resubscribes = _Stat[int]()
    reconciles = _Stat[int]()
    invalid_nonces = _Stat[int]()

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
        budget: RequestBudget | None = None,
        fees: FeeRates | None = None,
        shared: SharedAccount | None = None,
    ) -> None:
        """`shared` is what this pair shares with the other pairs on the same account and API
        key (exchanges/lighter/shared.py); without it the venue has its own."""
        _check_settings(ticker, request_timeout, confirm_timeout, send_timeout, retry_attempts)
        _check_keys(private_key, account_index, api_key_index)
        EventEmitter.__init__(self)
        self.ticker = ticker.upper()
        self.api_url = api_url.rstrip("/")
        self.ws_url = ws_url
        self._private_key = private_key.removeprefix("0x") if private_key else None
        self.account_index = account_index
        self.api_key_index = api_key_index
        if shared is None:
            shared = SharedAccount(self.api_url, ws_url, budget)
        self._shared = shared
        self._joined = False
        self._session = session = Session(
            self.ticker,
            account_index,
            api_key_index,
            keyed=self._private_key is not None,
            request_timeout=request_timeout,
            confirm_timeout=confirm_timeout,
            # How long a sendTx answer is awaited while holding the nonce. A late answer is
            # not a failure: the venue's next nonce then says whether the transaction executed.
            send_timeout=min(send_timeout, request_timeout),
            retry_attempts=retry_attempts,
            max_remembered=self.max_remembered,
            budget=shared.budget,
            fees=fees or FeeRates(),
        )
        self._reconnects_at_close = 0
        self._compose(session)

    def _compose(self, session: Session) -> None:
        """The parts, each given only what it uses."""
        self._book = OrderBook(self.ticker, LIGHTER)
        self._tracker = OrderTracker(VENUE, keep_finished=self.max_remembered)
        self._tasks = Tasks(VENUE)
        shared = self._shared
        self._rest = shared.rest_for(session)
        assert shared.nonces is not None
        self._nonces = shared.nonces
        self._signer = Signer(session, self.token_ttl_s, self.token_margin_s, shared.keys)
        self._rest.tokens = self._signer.auth_token
        self._presigner = Presigner(
            session, self._signer, self._nonces, self._book, self.presign_max_age_s
        )
        self._account = Account(session, self._rest)
        self._stream = UserStream(
            session,
            self._book,
            self._tracker,
            self._signer,
            self._presigner,
            self._account,
            self._emit,
            self._tasks.spawn,
        )
        self._execution = Execution(
            session,
            self._tracker,
            self._nonces,
            self._signer,
            self._presigner,
            Transactor(session, self._nonces, self._rest),
            self._stream,
            self._account,
            self.resolve_timeout_s,
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def keyed(self) -> bool:
        return self._session.keyed

    @property
    def budget(self) -> RequestBudget:
        """The account's request budget (every REST read and sendTx passes it)."""
        return self._session.budget

    async def connect(self) -> None:
        """Load the market, check the API key, fetch the nonce, start the stream, wait for the
        book. Needs the running loop (the SDK's clients bind to it). What the account shares
        with other pairs (exchanges/lighter/shared.py) is opened by the first of them."""
        session, shared = self._session, self._shared
        if not self._joined:
            shared.join()
            self._joined = True
        try:
            await shared.open(session, self._signer, self._private_key)
            session.sender = shared.sender
            await self._account.load_market()
            await self._stream.attach(shared.socket)
            ready_by = time.monotonic() + max(10.0, 2 * session.request_timeout)
            while not self._stream.ready():
                if time.monotonic() > ready_by:
                    raise VenueError("lighter: streams not ready in time", retryable=True)
                await asyncio.sleep(0.01)
            if self.keyed:
                self._tasks.spawn(self._presigner.run(), "presign")
                self._tasks.spawn(self._stream.token_loop(), "token-refresh")
        except BaseException:
            await self.close()
            raise
        log.info("lighter connected: %s (market %s)", self.ticker, self.market().market_id)

    async def close(self) -> None:
        session = self._session
        if session.ws is not None:
            self._reconnects_at_close = session.ws.reconnects
        await self._stream.detach()
        await self._tasks.cancel_all()
        self._presigner.cancel()
        session.sender = None
        joined, self._joined = self._joined, False
        await self._shared.leave(joined=joined)

    def watch_key(self, callback: Callable[[str], None]) -> None:
        """Call `callback(reason)` once if another process turns out to send with our API key
        (nonces taken under us; see exchanges/lighter/shared.py): at once if it already has."""
        self._nonces.on_contested.append(callback)
        if self._nonces.contested is not None:
            callback(self._nonces.contested)

    # -- what tests and the dashboard look at ---------------------------------------------------

    @property
    def last_write_ns(self) -> int:
        """perf_counter_ns() right after the last sendTx request was written to the socket."""
        sender = self._session.sender
        return sender.last_write_ns if sender is not None else 0

    @property
    def reconnects(self) -> int:
        """WebSocket sessions after the first (the dashboard and the journal count them)."""
        ws = self._session.ws
        return ws.reconnects if ws is not None else self._reconnects_at_close

    @property
    def _sender(self) -> TxSender | None:
        return self._session.sender

    @property
    def _ws(self) -> ReconnectingWebSocket | None:
        return self._session.ws

    @property
    def _token(self) -> tuple[str, int] | None:
        return self._signer.token

    def _account_live(self) -> bool:
        return self._stream.account_live()

    def _on_frame(self, frame: str | bytes, recv_ns: int) -> None:
        self._stream.on_frame(frame, recv_ns)

    # -- market and book ----------------------------------------------------------------------

    def market(self) -> Market:
        return self._session.require_market()

    def top(self) -> BookTop | None:
        """Best bid/ask from the WS-maintained book; None while it is not synced."""
        return self._book.top()

    @property
    def book(self) -> OrderBook:
        return self._book

    # -- orders (execution.py, presign.py) --------------------------------------------------------

    async def place_hedge(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> Order:
        """An IOC (market order with a worst price) that never rests. Returns the order with
        what filled (its fills are also delivered as Fill events: count one or the other);
        InsufficientLiquidity when nothing filled within the price. A pre-signed hedge for this
        side, size and client id is sent as is when its worst price is within the re-sign
        threshold (a quarter of its slippage band) of `worst_price`; the returned order carries
        the worst price actually sent."""
        return await self._execution.place_hedge(side, qty, worst_price, client_id)

    def try_send_now(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> asyncio.Task[Order] | None:
        """Fast path of `place_hedge`, for a synchronous fill callback: when the pre-signed
        hedge fits (the same rules as place_hedge), the nonce is free and the keep-alive sendTx
        connection is open and idle, write the sendTx request NOW, before returning, and
        return a task that completes exactly as `place_hedge` would. Otherwise return None
        having changed nothing: await `place_hedge`. Await the task; do not cancel it
        (cancelling gives up on the reply, as cancelling place_hedge would)."""
        return self._execution.try_send_now(side, qty, worst_price, client_id)

    async def place_post_only(
        self, side: Side, qty: Decimal, price: Decimal, client_id: int
    ) -> Order:
        """A post-only limit (28-day expiry). PostOnlyRejected when it would have crossed."""
        return await self._execution.place_post_only(side, qty, price, client_id)

    async def cancel(self, order: Order) -> None:
        await self._execution.cancel(order)

    async def cancel_all(self) -> None:
        await self._execution.cancel_all()

    async def find_order(self, client_id: int) -> Order | None:
        return await self._execution.find_order(client_id)

    def presign_hedge(
        self, side: Side, qty: Decimal, slippage_bps: Decimal | float, client_id: int
    ) -> None:
        """Keep an IOC hedge of `qty` signed ahead with the next nonce, at the worst price
        top ± `slippage_bps`; a `place_hedge` with this side, size and client id sends it
        without signing. Replaces any previous pre-sign. Signing happens in the background."""
        self._presigner.presign_hedge(side, qty, slippage_bps, client_id)

    def cancel_presigned(self) -> None:
        self._presigner.cancel()

    def presigned(self) -> tuple[Side, Decimal, int, Decimal] | None:
        """(side, qty, client id, worst price) of the hedge signed and ready, if any."""
        return self._presigner.presigned()

    async def wait_presigned(self, timeout: float = 5.0) -> bool:
        return await self._presigner.wait_presigned(timeout)

    # -- account (account.py) ---------------------------------------------------------------------

    async def open_orders(self) -> list[Order]:
        return await self._account.open_orders()

    async def position(self) -> Decimal:
        """Signed position of our market."""
        return await self._account.position()

    def streamed_position(self) -> Decimal | None:
        """Signed position of our market as the account stream last said it (no request);
        None until the stream has said it since it (re)connected, and while it is down."""
        return self._stream.position()

    async def balance(self) -> Balance:
        return await self._account.balance()

    async def fills_since(self, since_ms: int) -> list[Fill]:
        return await self._account.fills_since(since_ms)

    async def describe(self) -> dict[str, object]:
        """A summary for `hedgebot check`: market rules, collateral, position, open orders."""
        market, scales = self.market(), self._session.require_scales()
        summary: dict[str, object] = {
            "venue": VENUE,
            "symbol": market.symbol,
            "market_id": market.market_id,
            "tick_size": str(market.tick_size),
            "step_size": str(market.step_size),
            "min_qty": str(market.min_qty),
            "min_notional": str(market.min_notional),
            "price_decimals": scales.price_decimals,
            "size_decimals": scales.size_decimals,
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


def _check_settings(
    ticker: str,
    request_timeout: float,
    confirm_timeout: float,
    send_timeout: float,
    retry_attempts: int,
) -> None:
    if not ticker or not ticker.isalnum():
        raise ConfigError(f"invalid ticker {ticker!r}")
    if min(request_timeout, confirm_timeout, send_timeout) <= 0:
        raise ConfigError("request_timeout, confirm_timeout and send_timeout must be positive")
    if retry_attempts < 1:
        raise ConfigError("retry_attempts must be at least 1")


def _check_keys(
    private_key: str | None, account_index: int | None, api_key_index: int | None
) -> None:
    keys = (private_key, account_index, api_key_index)
    if any(k is not None and k != "" for k in keys) and not all(
        k is not None and k != "" for k in keys
    ):
        raise ConfigError(
            "Lighter needs LIGHTER_API_PRIVATE_KEY, LIGHTER_ACCOUNT_INDEX and "
            "LIGHTER_API_KEY_INDEX together"
        )
    if api_key_index is not None and not 0 <= api_key_index <= 254:
        raise ConfigError(f"LIGHTER_API_KEY_INDEX must be within 0..254, got {api_key_index}")
    if account_index is not None and account_index < 0:
        raise ConfigError(f"LIGHTER_ACCOUNT_INDEX must not be negative, got {account_index}")

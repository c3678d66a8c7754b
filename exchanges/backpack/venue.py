"""BackpackVenue: the maker venue, a thin facade over the parts of this package.

bpx-py builds and signs REST requests (auth.py, rest.py) and our keep-alive client sends them
(exchanges/common/http.py); we place, cancel and resolve orders (execution.py), stream the
book and our order events and recover after reconnects (user_stream.py), and read the account
(account.py). Wire formats are read in parsing.py only; our orders live in the one
`OrderTracker` (exchanges/common/orders.py).

The fill path: the socket's frame reaches `UserStream.on_frame` -> `on_order_update`, which
parses the `orderFill` (parsing.parse_order_update) and hands the Fill, deduplicated by trade
id, to the event callback synchronously: the hedge goes out from that call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

from bpx.async_.account import Account as BpxAccount

from exchanges.backpack.account import Account
from exchanges.backpack.constants import VENUE, perp_symbol
from exchanges.backpack.execution import Execution
from exchanges.backpack.session import Session, now_ms
from exchanges.backpack.shared import SharedAccount
from exchanges.backpack.user_stream import UserStream
from exchanges.base import (
    Balance,
    BookTop,
    ConfigError,
    EventEmitter,
    Fill,
    Market,
    Order,
    Side,
    VenueError,
    describe_orders,
    describe_top,
)
from exchanges.common.budget import RequestBudget
from exchanges.common.http import KeepAliveHttpClient
from exchanges.common.orderbook import BACKPACK, OrderBook
from exchanges.common.orders import OrderTracker
from exchanges.common.tasks import Tasks
from exchanges.common.ws import ReconnectingWebSocket

log = logging.getLogger(__name__)


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
    max_remembered = 10_000

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
        budget: RequestBudget | None = None,
        shared: SharedAccount | None = None,
    ) -> None:
        """`retry_attempts` is how many times a failed idempotent request (or a placement known
        not to have happened) is sent again: up to `retry_attempts + 1` sends in all (429s
        not counted: they wait for the budget). `order_window_ms` is the signing window of
        order placements: after an ambiguous placement, "not found" is only final once that
        window has closed. `budget` is the account's request budget, shared by every request
        to it (default: Backpack's 2,000 a minute, this venue's own). `shared` is what this
        pair shares with the other pairs on the same account (exchanges/backpack/shared.py):
        REST client, budget, WebSocket; without it the venue has its own."""
        _check_settings(ticker, request_timeout, retry_attempts)
        EventEmitter.__init__(self)
        self.ticker = ticker.upper()
        self.symbol = perp_symbol(self.ticker)
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.ws_url = ws_url
        self.request_timeout = request_timeout
        self.retry_attempts = retry_attempts
        self.order_window_ms = order_window_ms
        self._session = Session(
            self.ticker,
            self.symbol,
            self.api_url,
            request_timeout=request_timeout,
            retry_attempts=retry_attempts,
            order_window_ms=order_window_ms,
            history_lag_s=self.history_lag_s,
        )
        if shared is None:
            shared = SharedAccount(
                ws_url, public_key=public_key, secret_key=secret_key, budget=budget
            )
        self._shared = shared
        self._joined = False
        self.budget = shared.budget
        self._rest = shared.rest_for(self._session)
        self._reconnects_at_close = 0
        self._compose(self._session)

    def _compose(self, session: Session) -> None:
        """The parts, each given only what it uses."""
        self._book = OrderBook(self.symbol, BACKPACK)
        self._tracker = OrderTracker(VENUE, keep_finished=self.max_remembered)
        self._tasks = Tasks(VENUE)
        self._account_reads = Account(session, self._rest)
        self._stream = UserStream(
            session,
            self._rest,
            self._book,
            self._tracker,
            self._account_reads,
            self._emit,
            self._tasks.spawn,
            backfill_overlap_ms=self.backfill_overlap_ms,
        )
        self._execution = Execution(
            session,
            self._rest,
            self._tracker,
            self._account_reads,
            resolve_timeout_s=self.resolve_timeout_s,
            window_margin_ms=self.window_margin_ms,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Load the market rules, check the keys, start the stream and wait for a synced book."""
        session = self._session
        session.connected_ms = now_ms()
        session.history_moved()  # fills made before we connected may still be on their way
        try:
            if not self._joined:
                self._shared.join()
                self._joined = True
            await self._account_reads.load_market()
            if self._rest.account is not None:
                await self._shared.check_keys()
            session.ws = await self._shared.socket.attach(
                self.symbol,
                on_message=self._on_frame,
                on_connect=self._stream.on_connect,
                on_reconnect=self._stream.on_reconnect,
                on_disconnect=self._stream.on_disconnect,
            )
            await self._wait_until_ready(time.monotonic() + max(10.0, 2 * self.request_timeout))
        except BaseException:
            await self.close()
            raise
        log.info("backpack connected: %s", self.symbol)

    async def _wait_until_ready(self, ready_by: float) -> None:
        """The book synced (else VenueError), then, with keys, the position known: the first
        `streamed_position()` needs no REST read (if the seed is late, the caller reads)."""
        while not self._book.synced:
            if time.monotonic() > ready_by:
                raise VenueError("backpack: order book not synced in time", retryable=True)
            await asyncio.sleep(0.01)
        while self._rest.account is not None and self.streamed_position() is None:
            if time.monotonic() > ready_by:
                log.warning("backpack: streamed position not known yet; reads fall back to REST")
                return
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        session = self._session
        if session.ws is not None:
            self._reconnects_at_close = session.ws.reconnects
            session.ws = None
        await self._shared.socket.detach(self.symbol)
        await self._tasks.cancel_all()
        self._stream.position.down()
        joined, self._joined = self._joined, False
        await self._shared.leave(joined=joined)

    # -- what tests, benchmarks and the dashboard look at -----------------------------------------

    @property
    def http(self) -> KeepAliveHttpClient:
        return self._rest.http

    @property
    def _account(self) -> BpxAccount | None:
        """bpx-py's signing account (None without keys)."""
        return self._rest.account

    @property
    def _ws(self) -> ReconnectingWebSocket | None:
        return self._session.ws

    @property
    def reconnects(self) -> int:
        """WebSocket sessions after the first (the dashboard and the journal count them)."""
        ws = self._session.ws
        return ws.reconnects if ws is not None else self._reconnects_at_close

    @property
    def fills_delivered(self) -> int:
        return self._session.stats.fills_delivered

    @property
    def duplicates_dropped(self) -> int:
        return self._session.stats.duplicates_dropped

    @property
    def malformed(self) -> int:
        return self._session.stats.malformed

    @property
    def resyncs(self) -> int:
        return self._session.stats.resyncs

    @property
    def recoveries(self) -> int:
        return self._session.stats.recoveries

    def _on_frame(self, frame: str | bytes, recv_ns: int) -> None:
        self._stream.on_frame(frame, recv_ns)

    # -- market and book ----------------------------------------------------------------------

    def market(self) -> Market:
        return self._session.require_market()

    def top(self) -> BookTop | None:
        """Best bid/ask from the in-memory book; None while it is not synced."""
        return self._book.top()

    @property
    def book(self) -> OrderBook:
        return self._book

    # -- orders (execution.py) ------------------------------------------------------------------

    async def place_post_only(
        self, side: Side, qty: Decimal, price: Decimal, client_id: int
    ) -> Order:
        """A post-only GTC limit. PostOnlyRejected if it would take; never placed twice."""
        return await self._execution.place_post_only(side, qty, price, client_id)

    async def place_hedge(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> Order:
        """An IOC limit at the worst acceptable price that never rests. Returns the order with
        what filled; InsufficientLiquidity when nothing did within the price."""
        return await self._execution.place_hedge(side, qty, worst_price, client_id)

    async def place_ioc(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int, *, reduce_only: bool
    ) -> Order:
        """An IOC limit that may fill nothing; reduce-only trades our position down and never
        past zero (the kill switch's unwind of an uncovered maker quantity)."""
        return await self._execution.place_ioc(
            side, qty, worst_price, client_id, reduce_only=reduce_only
        )

    async def cancel(self, order: Order) -> None:
        await self._execution.cancel(order)

    async def cancel_all(self) -> None:
        await self._execution.cancel_all()

    # -- account (account.py) -------------------------------------------------------------------

    async def open_orders(self) -> list[Order]:
        return await self._account_reads.open_orders()

    async def position(self) -> Decimal:
        """Signed net position of our symbol (0 when none), read over REST."""
        return await self._account_reads.position()

    def streamed_position(self) -> Decimal | None:
        """The signed position as the account stream last said it (no request); None while
        the socket is down or before the stream (or the one REST seed) has said it."""
        return self._stream.position.value

    async def balance(self) -> Balance:
        return await self._account_reads.balance()

    async def fills_since(self, since_ms: int) -> list[Fill]:
        """Our fills on this symbol from `since_ms` (venue time) until the call, oldest first;
        waits for the fill history to catch up with the last fill seen."""
        return await self._account_reads.fills_since(since_ms)

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
        if self._rest.account is None:
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


def _check_settings(ticker: str, request_timeout: float, retry_attempts: int) -> None:
    if not ticker or not ticker.isalnum():
        raise ConfigError(f"invalid ticker {ticker!r}")
    if retry_attempts < 0:
        raise ConfigError("retry_attempts must not be negative")
    if request_timeout <= 0:
        raise ConfigError("request_timeout must be positive")

"""A local Lighter (zkLighter) venue: REST + WebSocket on 127.0.0.1 in front of a SimMarket.

It speaks the wire protocol of /work/shared/protocols/lighter.md closely enough that the real
lighter-sdk (SignerClient, ApiClient, WsClient) works against it with nothing changed but the
URL. Every JSON body validates against the SDK's pydantic response models.

What the simulator cannot do: verify signatures (the signer library has no verify function).
It parses `tx_info` and checks account, API key index, expiry and the per-key nonce, which is
what a client can get wrong. Scaled integers (`BaseAmount`, `Price`) are converted to Decimal
here and nowhere else on the server side.

Faults (`market.faults`) applied here: ws_drop, ws_delay, duplicate_event, reorder_event,
http_429/500/503, ambiguous_order, invalid_nonce, token_expiry, depth_gap, post_only_reject.
`thin_book` is applied by the SimMarket itself to taker orders.

Error codes: the real venue's numeric codes are not all documented; the ones used here are the
simulator's own choices (see the CODE_* constants). What clients rely on is documented: HTTP 400
with a body containing "invalid nonce" for a nonce error, and `code != 200` meaning failure.
Codes the venue documents are used as documented: 21104 invalid nonce, 21728 client order
index already exists, 30003 already subscribed, 30005 invalid channel, 30009 too many
messages, 30010 too many pending subscriptions, HTTP 429 over a rate limit.

Account tiers (`tier=` for every account, `account_tiers={account: tier}` to override):

| tier      | taker delay | maker/cancel delay | REST a minute      | sendTx a minute | fees m/t  |
|-----------|-------------|--------------------|--------------------|-----------------|-----------|
| standard  | 300 ms      | 200 ms             | 60                 | 60              | 0 / 0     |
| premium   | 200 ms      | 0 ms               | 24,000 weighted    | 4,000           | 0.4/2.8bp |
| unlimited | inline      | inline             | none               | none            | 0.4/2.8bp |

- A `sendTx` (REST or WS `jsonapi/sendtx`) is checked at once (tx info, API key, expiry, nonce,
  client order index: refused with an error, nothing consumed) and, accepted, answered at
  once with `predicted_execution_time_ms` (unix ms of the planned execution). A sequencer
  task executes it after the tier's delay, in submission order per account; the book keeps
  moving meanwhile. Order outcomes (fills, canceled-post-only, canceled-reduce-only,
  canceled-not-enough-liquidity) appear on the account streams and REST only then.
  "Taker" = market orders and IOC limits; "maker" = GTT and post-only limits. "unlimited"
  executes inside the handler, exactly as the simulator did before tiers existed.
- Rate limits: rolling minute per account (the one a request names: `account_index`,
  `by=index&value=`, the auth token, or the tx's AccountIndex) at its tier and per IP at the
  server's tier. Premium weights: sendTx/sendTxBatch/nextNonce 6, accountInactiveOrders 100,
  trades/recentTrades 600, others 300. A WS sendtx uses the same budgets. Over: HTTP 429
  `{"code":429,"message":"Too Many Requests"}` with `Retry-After` (seconds), and the refused
  request spends none of its budgets (the account's nor the IP's). Every request
  is counted in `ledger` (`GET /_sim/requests`); `/_sim/` routes and `/stream` are not limited.
- WebSocket (standard and premium): 200 client messages a minute per IP (30009 beyond, the
  message is ignored), at most 50 subscribes whose reply frame is not yet written (30010).
  In every tier: error frames are exactly `{"error":{"code":..,"message":..}}`; a second
  subscribe to a subscribed channel is refused (30003, no snapshot); unsubscribing what is not
  subscribed is 30002; a private subscription ends with an error frame (30013, "token
  expired") when its token expires; connections close after `connection_max_age_s`.
- Auth tokens expiring more than 8 h (+60 s) ahead are refused (REST 400, WS 30013).
- Nonces: per API key and sequential, except a tx carrying `"L2TxAttributes": {"4": 1}`
  (SkipNonce, as the bundled signer writes it with `skip_nonce=1`; ccxt always signs so, with
  a millisecond clock as nonce), which only needs a nonce above the last used (< 2^47); the
  next sequential nonce is then nonce + 1. API key indexes 0-2 are reserved: refused in
  the constructor and in a tx. A client order index the account ever had accepted (open,
  finished or canceled at matching) is refused with 21728.
- `GET /api/v1/trades` pages by `cursor`/`next_cursor` with `limit` <= 100 and `sort_dir`
  (`desc` default, `asc`). `from` is unconfirmed on the venue, so the simulator serves either
  reading (`trades_from=`): "start" (the default) reads it as where the walk starts, an upper
  bound descending and a lower bound ascending; "upper" reads it as an upper bound in both
  directions, as ccxt passes its `until` there. A client must be right under both.
- Fees: the tier's fee fractions are charged on every fill (SimMarket.set_account_fees);
  Trade JSON shows what the account paid in `taker_fee`/`maker_fee` as an integer amount in
  micro-USDC (the SDK types them as ints; the venue's unit is unconfirmed).
- WS `jsonapi/sendtx` replies `{"type":"jsonapi/sendtx","id":..,"code":200,"tx_hash":..,
  "predicted_execution_time_ms":..}`; a refusal carries the same `type` and `id` with its
  `code` and `message`, and the same as an `error` object (what ccxt.pro routes by `id`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from aiohttp import WSMsgType, web

from exchanges.base import Side
from exchanges.sim.accounting import (
    RequestLedger,
    RollingLimit,
    add_requests_route,
    client_ip,
    take_all,
)
from exchanges.sim.control import add_control_routes, add_timings_route
from exchanges.sim.market import (
    BookDelta,
    OrderNotFound,
    OrderUpdate,
    PublicTrade,
    SimFill,
    SimMarket,
    SimOrder,
    SimRejected,
    VenueBook,
    WouldCross,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Protocol constants (lighter-sdk SignerClient values)
# --------------------------------------------------------------------------------------------

TX_TYPE_CREATE_ORDER = 14
TX_TYPE_CANCEL_ORDER = 15
TX_TYPE_CANCEL_ALL_ORDERS = 16
TX_TYPE_MODIFY_ORDER = 17

ORDER_TYPE_LIMIT = 0
ORDER_TYPE_MARKET = 1
TIF_IOC = 0
TIF_GTT = 1
TIF_POST_ONLY = 2

MAX_CLIENT_ORDER_INDEX = 2**48 - 1
MAX_SKIP_NONCE = 2**47  # a SkipNonce transaction's nonce must stay below this
SKIP_NONCE_ATTRIBUTE = "4"  # L2TxAttributes {"4": 1}, as the bundled signer writes it
FIRST_USER_API_KEY = 3  # API key indexes 0-2 are reserved for the web and mobile apps
MAX_TOKEN_LIFETIME_S = 8 * 3600
TOKEN_LIFETIME_TOLERANCE_S = 60.0
MAX_TRADES_LIMIT = 100
WS_MESSAGES_PER_MINUTE = 200
WS_MAX_UNACKED_SUBSCRIBES = 50
MAX_PRICE = 2**32 - 1  # Price is a uint32
NIL_MARKET_INDEX = 255
ALL_API_KEYS = 255

CODE_OK = 200
# The simulator's error codes (the real venue's are not all documented).
CODE_INVALID_PARAM = 20001
CODE_INVALID_AUTH = 20013
CODE_NOT_FOUND = 21100
CODE_INVALID_NONCE = 21104
CODE_TOO_MANY_REQUESTS = 429
CODE_TX_EXPIRED = 21117
CODE_INVALID_TX = 21500
CODE_INVALID_MARKET = 21600
CODE_ORDER_REJECTED = 21700
CODE_CLIENT_ORDER_INDEX_EXISTS = 21728  # documented by the venue
CODE_UNSUPPORTED = 21800
WS_CODE_BAD_MESSAGE = 30001
WS_CODE_NOT_SUBSCRIBED = 30002  # seen in ccxt's recorded frames
WS_CODE_ALREADY_SUBSCRIBED = 30003  # documented
WS_CODE_INVALID_CHANNEL = 30005  # documented
WS_CODE_TOO_MANY_MESSAGES = 30009  # documented
WS_CODE_TOO_MANY_SUBSCRIBES = 30010  # documented
WS_CODE_INVALID_AUTH = 30013

QUOTE_DECIMALS = 6  # USDC
USDC_ASSET_ID = 3
DEFAULT_IMF = 500  # initial margin fraction in 1e-4 units (5 % -> 20x), like BTC on Lighter

_LIGHTER_CANCEL_STATUSES = frozenset(
    {
        "canceled",
        "canceled-post-only",
        "canceled-reduce-only",
        "canceled-position-not-allowed",
        "canceled-margin-not-allowed",
        "canceled-too-much-slippage",
        "canceled-not-enough-liquidity",
        "canceled-self-trade",
        "canceled-expired",
        "canceled-oco",
        "canceled-child",
        "canceled-liquidation",
        "canceled-invalid-balance",
    }
)

_dumps = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class Tier:
    """What an account tier changes: sequencer delays, request budgets, fees."""

    name: str
    taker_delay_s: float  # market orders and IOC limits
    maker_delay_s: float  # GTT and post-only limits
    cancel_delay_s: float  # cancel and cancel-all
    rest_per_minute: int | None  # None: no limit
    send_tx_per_minute: int | None
    weighted: bool  # REST requests weigh PREMIUM_WEIGHTS (else 1 each)
    maker_fee: Decimal  # fraction of notional
    taker_fee: Decimal
    ws_limits: bool  # 200 messages a minute, 50 unacknowledged subscribes

    @property
    def sequenced(self) -> bool:
        """False only for "unlimited": transactions execute inside the sendTx handler."""
        return self.name != "unlimited"


TIERS: dict[str, Tier] = {
    "standard": Tier(
        "standard", 0.3, 0.2, 0.2, 60, 60, False, Decimal(0), Decimal(0), ws_limits=True
    ),
    "premium": Tier(
        "premium",
        0.2,
        0.0,
        0.0,
        24_000,
        4_000,
        True,
        Decimal("0.00004"),
        Decimal("0.00028"),
        ws_limits=True,
    ),
    # Premium's fees (the bot budgets an unlimited account as Premium, SimCluster.env()).
    "unlimited": Tier(
        "unlimited",
        0.0,
        0.0,
        0.0,
        None,
        None,
        False,
        Decimal("0.00004"),
        Decimal("0.00028"),
        ws_limits=False,
    ),
}

# Premium request weights by endpoint (others weigh PREMIUM_DEFAULT_WEIGHT).
PREMIUM_WEIGHTS = {
    "/api/v1/sendTx": 6,
    "/api/v1/sendTxBatch": 6,
    "/api/v1/nextNonce": 6,
    "/api/v1/accountInactiveOrders": 100,
    "/api/v1/trades": 600,
    "/api/v1/recentTrades": 600,
}
PREMIUM_DEFAULT_WEIGHT = 300
SEND_TX_PATHS = frozenset({"/api/v1/sendTx", "/api/v1/sendTxBatch"})


def generate_api_key() -> tuple[str, str]:
    """A fresh Lighter API key pair `(private_hex, public_hex)` from the bundled signer."""
    from lighter.signer_client import create_api_key

    private_key, public_key, err = create_api_key()
    if err is not None or private_key is None or public_key is None:
        raise RuntimeError(f"lighter signer could not generate an API key: {err}")
    return private_key, public_key


def fmt(value: Decimal, decimals: int) -> str:
    """A Decimal with exactly `decimals` decimals (the SDK strips the dot to get integers)."""
    return f"{value:.{decimals}f}"


def _skips_nonce(info: dict[str, Any]) -> bool:
    """Whether a tx carries the SkipNonce attribute (`"L2TxAttributes": {"4": 1}`)."""
    attributes = info.get("L2TxAttributes")
    return isinstance(attributes, dict) and attributes.get(SKIP_NONCE_ATTRIBUTE) in (1, "1")


def _strip_0x(key: str) -> str:
    return key[2:] if key.startswith(("0x", "0X")) else key


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Refused(Exception):
    """A request answered with HTTP 400 and a ResultCode body."""

    def __init__(self, code: int, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(slots=True)
class _OrderMeta:
    """What the wire shows about an order that SimOrder does not hold."""

    nonce: int = 0
    time_in_force: str = "good-till-time"
    order_expiry: int = 0
    api_key_index: int = 0


@dataclass(slots=True, eq=False)
class _Conn:
    """One WebSocket connection: an outbound queue drained by a writer task."""

    conn_id: int
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    ip: str = "unknown"
    # (text, data, acknowledges a subscribe): `data` frames are subject to the ws faults
    queue: asyncio.Queue[tuple[str, bool, bool]] = field(default_factory=asyncio.Queue)
    order_books: set[int] = field(default_factory=set)
    trades: set[int] = field(default_factory=set)
    # (market_id or None for all markets, account) -> token expiry (unix seconds)
    account_orders: dict[tuple[int | None, int], int] = field(default_factory=dict)
    account_all: set[int] = field(default_factory=set)
    account_all_trades: set[int] = field(default_factory=set)
    # private channel key -> timer ending it when its token expires
    token_timers: dict[tuple[int | None, int], asyncio.TimerHandle] = field(default_factory=dict)
    unacked_subscribes: int = 0  # subscribes whose reply frame is not written yet
    age_handle: asyncio.TimerHandle | None = None  # closes the connection at its max age
    held: str | None = None  # a reordered account event waiting for the next one
    held_handle: asyncio.TimerHandle | None = None
    closed: bool = False


@dataclass(frozen=True, slots=True)
class _NewOrder:
    """A CreateOrder that passed the API's checks, waiting for the sequencer."""

    book: VenueBook
    account: int
    client_id: int
    side: Side
    qty: Decimal
    price: Decimal  # the limit, or a market order's worst price
    is_market: bool
    tif: int
    reduce_only: bool
    meta: _OrderMeta

    @property
    def is_taker(self) -> bool:
        """Market orders and IOC limits wait the taker delay; GTT and post-only the maker's."""
        return self.is_market or self.tif == TIF_IOC


@dataclass(order=True, slots=True)
class _Planned:
    """One accepted transaction waiting for the sequencer: ordered by due time, then by
    submission (an account's due times never decrease, so its FIFO order is kept)."""

    due: float  # loop time
    seq: int
    execute: Callable[[], None] = field(compare=False)


class LighterServer:
    """Lighter REST + WS for one SimMarket. `start()` binds a free port unless one is given."""

    def __init__(
        self,
        market: SimMarket,
        *,
        accounts: dict[int, dict[int, str]],
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float = 30.0,
        initial_nonce: int = 1,
        tier: str = "standard",
        account_tiers: dict[int, str] | None = None,
        connection_max_age_s: float = 24 * 3600,
        trades_from: Literal["start", "upper"] = "start",
    ) -> None:
        for name in [tier, *(account_tiers or {}).values()]:
            if name not in TIERS:
                raise ValueError(f"unknown lighter tier {name!r}; known: {sorted(TIERS)}")
        for account, keys in accounts.items():
            reserved = sorted(k for k in keys if k < FIRST_USER_API_KEY)
            if reserved:
                raise ValueError(
                    f"lighter account {account}: API key indexes {reserved} are reserved "
                    f"(0-{FIRST_USER_API_KEY - 1}); use {FIRST_USER_API_KEY}-254"
                )
        self.market = market
        self.tier = TIERS[tier]
        self.account_tiers = {a: TIERS[name] for a, name in (account_tiers or {}).items()}
        self.connection_max_age_s = connection_max_age_s
        if trades_from not in ("start", "upper"):
            raise ValueError(f"trades_from must be 'start' or 'upper', got {trades_from!r}")
        self.trades_from = trades_from  # how /api/v1/trades reads `from` (module docstring)
        self.ledger = RequestLedger("lighter")
        self.accounts: dict[int, dict[int, str]] = {
            account: {key: _strip_0x(pub) for key, pub in keys.items()}
            for account, keys in accounts.items()
        }
        self.host = host
        self.port = port
        self.ping_interval = ping_interval
        self.connections_opened = 0
        self.pongs_received = 0
        # Bounded: a sim left running for days must not grow without limit.
        self.sent_txs: deque[dict[str, Any]] = deque(maxlen=100_000)
        self._nonces: dict[tuple[int, int], int] = {
            (account, key): initial_nonce for account, keys in accounts.items() for key in keys
        }
        self._order_meta: dict[int, _OrderMeta] = {}
        self._synthetic: dict[int, list[dict[str, Any]]] = {}  # account -> rejected orders
        self._synthetic_ids = itertools.count(10**15)
        self._conn_ids = itertools.count(1)
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._unlisten: list[Callable[[], None]] = []
        self._book_offsets: dict[int, int] = {}
        self._book_nonce: dict[int, int] = {}  # market id -> nonce of the last update sent
        self._account_nonce = itertools.count(1)
        self._recent_trades: dict[int, deque[PublicTrade]] = {}
        # (account, client id, meta) of the order being placed: listeners fire inside place_*
        self._pending_meta: tuple[int, int, _OrderMeta] | None = None
        self._runner: web.AppRunner | None = None
        self._tcp: asyncio.AbstractServer | None = None
        # Every client order index each account ever had accepted (21728 on reuse).
        self._client_ids: dict[int, set[int]] = {}
        # The sequencer: accepted transactions by due time; one task executes them.
        self._planned: list[_Planned] = []
        self._planned_seq = itertools.count()
        self._last_due: dict[int, float] = {}  # account -> due time of its latest transaction
        self._sequencer_wake = asyncio.Event()
        # Rolling-minute budgets: REST (weighted on Premium) and sendTx, per account and IP.
        self._rest_limits: dict[int | str, RollingLimit] = {}
        self._tx_limits: dict[int | str, RollingLimit] = {}
        self._ws_limits: dict[str, RollingLimit] = {}
        for account in accounts:
            account_tier = self.tier_of(account)
            market.set_account_fees(
                "lighter", account, account_tier.maker_fee, account_tier.taker_fee
            )

    def tier_of(self, account: int | None) -> Tier:
        """The tier an account trades under (the server's tier for unknown accounts)."""
        if account is None:
            return self.tier
        return self.account_tiers.get(account, self.tier)

    # ---------------------------------------------------------------------------------------
    # Lifecycle
    # ---------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/stream"

    async def start(self) -> None:
        app = self._build_app()
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        server = runner.server
        assert server is not None

        def protocol_factory() -> asyncio.Protocol:
            # Counted here so tests can prove keep-alive: one TCP connection, many requests.
            self.connections_opened += 1
            return server()

        loop = asyncio.get_running_loop()
        self._tcp = await loop.create_server(
            protocol_factory, self.host, self.port, reuse_address=True
        )
        self.port = self._tcp.sockets[0].getsockname()[1]
        self._runner = runner
        for spec in self.market.tickers.values():
            book = self.market.book("lighter", spec.ticker)
            market_id = book.rules.market_id
            self._book_offsets[market_id] = 0
            self._book_nonce[market_id] = book.sequence
            self._recent_trades[market_id] = deque(maxlen=100)
            self._unlisten.append(book.on_book(self._make_book_listener(book)))
            self._unlisten.append(book.on_order(self._make_order_listener(book)))
            self._unlisten.append(book.on_trade(self._make_trade_listener(book)))
        self._spawn(self._sequencer())
        log.info("lighter sim listening on %s (tier %s)", self.api_url, self.tier.name)

    async def stop(self) -> None:
        for unlisten in self._unlisten:
            unlisten()
        self._unlisten.clear()
        for conn in list(self._conns):
            self._close_conn(conn, abort=False)
            with contextlib.suppress(Exception):
                await conn.ws.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tcp is not None:
            self._tcp.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)
            self._tcp = None

    def drop_ws(self) -> int:
        """Abort every WebSocket connection now (no close frame), like a network cut."""
        conns = list(self._conns)
        for conn in conns:
            self._close_conn(conn, abort=True)
        return len(conns)

    def next_nonce(self, account: int, api_key: int) -> int:
        """The nonce the next transaction of this key must carry (tests, control)."""
        return self._nonces[(account, api_key)]

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._limit_middleware, self._fault_middleware])
        get = [
            ("/api/v1/orderBooks", self._order_books),
            ("/api/v1/orderBookDetails", self._order_book_details),
            ("/api/v1/orderBookOrders", self._order_book_orders),
            ("/api/v1/account", self._account),
            ("/api/v1/apikeys", self._apikeys),
            ("/api/v1/accountLimits", self._account_limits),
            ("/api/v1/nextNonce", self._next_nonce),
            ("/api/v1/accountActiveOrders", self._active_orders),
            ("/api/v1/accountInactiveOrders", self._inactive_orders),
            ("/api/v1/accountOrders", self._orders_by_client_index),
            ("/api/v1/trades", self._trades),
            ("/api/v1/recentTrades", self._recent_trades_handler),
            ("/api/v1/assetDetails", self._asset_details),
            ("/stream", self._stream),
        ]
        for path, handler in get:
            app.router.add_get(path, handler)
        app.router.add_post("/api/v1/sendTx", self._send_tx)
        add_control_routes(app, self.market, "lighter")
        add_timings_route(app, self.timings)
        add_requests_route(app, self.ledger)
        return app

    def timings(self) -> dict[str, object]:
        """Benchmark timestamps (perf_counter_ns): `send_tx_ns`, when the sendTx of each executed
        create-order transaction reached its handler, by client order index (first one); and
        `pending_executions`, so a benchmark can wait for the sequencer before reading truth."""
        arrived: dict[str, int] = {}
        for tx in self.sent_txs:
            if tx["type"] != TX_TYPE_CREATE_ORDER:
                continue
            client_id = tx["info"].get("ClientOrderIndex")
            if client_id is not None:
                arrived.setdefault(str(client_id), tx["recv_ns"])
        return {"send_tx_ns": arrived, "pending_executions": self.pending_executions}

    # ---------------------------------------------------------------------------------------
    # REST plumbing
    # ---------------------------------------------------------------------------------------

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            status = self.market.faults.http_fault()
            if status is not None:
                return _json({"code": status, "message": _HTTP_REASONS[status]}, status=status)
        try:
            response: web.StreamResponse = await handler(request)
        except _Refused as refused:
            return _json({"code": refused.code, "message": refused.message}, status=refused.status)
        return response

    @web.middleware
    async def _limit_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Counts every /api/ request in the ledger and applies the rolling-minute limits."""
        path = request.path
        if not path.startswith("/api/"):
            response: web.StreamResponse = await handler(request)
            return response
        ip = client_ip(request)
        account = await self._request_account(request)
        is_tx = path in SEND_TX_PATHS
        retry_after = self._count_request(account, ip, path, is_tx)
        if retry_after is not None:
            return _too_many(retry_after)
        response = await handler(request)
        return response

    def _count_request(self, account: int | None, ip: str, path: str, is_tx: bool) -> float | None:
        """Ledger and budgets for one request (REST or a WS sendtx, which shares the REST
        budget). Returns the seconds to wait when it is over a limit, else None."""
        key = None if account is None else str(account)
        self.ledger.request(key, ip, path)
        if is_tx:
            self.ledger.send_tx(key, ip)
        budgets: list[tuple[RollingLimit, int]] = []
        for owner, tier in ((account, self.tier_of(account)), (ip, self.tier)):
            if owner is None or not tier.sequenced:
                continue
            weight = PREMIUM_WEIGHTS.get(path, PREMIUM_DEFAULT_WEIGHT) if tier.weighted else 1
            budgets.append((self._budget(self._rest_limits, owner, tier.rest_per_minute), weight))
            if is_tx:
                budgets.append((self._budget(self._tx_limits, owner, tier.send_tx_per_minute), 1))
        # All or nothing: a request refused by one budget (the IP's) spends none of the
        # others (the account's).
        retry_after = take_all(budgets)
        if retry_after is not None:
            self.ledger.rejected_429(key, ip)
        return retry_after

    @staticmethod
    def _budget(
        budgets: dict[int | str, RollingLimit], owner: int | str, capacity: int | None
    ) -> RollingLimit:
        budget = budgets.get(owner)
        if budget is None:
            budget = budgets[owner] = RollingLimit(capacity)
        return budget

    async def _request_account(self, request: web.Request) -> int | None:
        """The account a request names (query, `by=index&value=`, token or tx_info), if any."""
        query = request.query
        raw: Any = query.get("account_index")
        if raw is None and query.get("by", "index") == "index":
            raw = query.get("value")
        if raw is None:
            token = request.headers.get("authorization") or query.get("auth")
            if token:
                raw = token.split(":")[1] if token.count(":") >= 2 else None
        if raw is None and request.method == "POST" and request.path in SEND_TX_PATHS:
            form = await request.post()  # cached: the handler reads it again for free
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                raw = json.loads(str(form.get("tx_info", ""))).get("AccountIndex")
        try:
            return None if raw is None else int(raw)
        except (ValueError, TypeError):
            return None

    def _book_by_id(self, market_id: int) -> VenueBook:
        book = self.market.book_by_market_id(market_id)
        if book is None:
            raise _Refused(CODE_INVALID_MARKET, f"market {market_id} not found")
        return book

    def _books(self) -> list[VenueBook]:
        books = [self.market.book("lighter", t) for t in self.market.tickers]
        return sorted(books, key=lambda b: b.rules.market_id)

    def _check_token(self, token: str | None, account: int | None) -> int:
        """Validate an auth token; returns its account. Refuses with _Refused."""
        if not token:
            raise _Refused(CODE_INVALID_AUTH, "invalid auth: missing token")
        parts = token.split(":")
        try:
            expiry, token_account, api_key = int(parts[0]), int(parts[1]), int(parts[2])
            if len(parts) != 4 or not parts[3]:
                raise ValueError(token)
        except (ValueError, IndexError):
            raise _Refused(CODE_INVALID_AUTH, "invalid auth: malformed token") from None
        if account is not None and token_account != account:
            raise _Refused(CODE_INVALID_AUTH, "invalid auth: token is for another account")
        if api_key not in self.accounts.get(token_account, {}):
            raise _Refused(CODE_INVALID_AUTH, "invalid auth: api key not found")
        now = time.time()
        if expiry <= now or self.market.faults.check("token_expiry"):
            raise _Refused(CODE_INVALID_AUTH, "invalid auth: token expired")
        if expiry > now + MAX_TOKEN_LIFETIME_S + TOKEN_LIFETIME_TOLERANCE_S:
            raise _Refused(
                CODE_INVALID_AUTH, "invalid auth: token expiry is more than 8 hours ahead"
            )
        return token_account

    def _auth(self, request: web.Request, account: int | None) -> int:
        token = request.headers.get("authorization") or request.query.get("auth")
        return self._check_token(token, account)

    # ---------------------------------------------------------------------------------------
    # REST: markets
    # ---------------------------------------------------------------------------------------

    async def _order_books(self, request: web.Request) -> web.Response:
        market_id = _opt_int(request, "market_id")
        books = self._books() if market_id is None else [self._book_by_id(market_id)]
        return _json({"code": CODE_OK, "order_books": [self._order_book_info(b) for b in books]})

    async def _asset_details(self, request: web.Request) -> web.Response:
        """The collateral asset (USDC) as `models.AssetDetails` has it; ccxt's load_markets
        reads it first (currencies)."""
        asset_id = _opt_int(request, "asset_id")
        usdc = {
            "asset_id": USDC_ASSET_ID,
            "symbol": "USDC",
            "l1_decimals": QUOTE_DECIMALS,
            "decimals": QUOTE_DECIMALS,
            "min_transfer_amount": "1.000000",
            "min_withdrawal_amount": "1.000000",
            "margin_mode": "enabled",
            "index_price": "1.000000",
            "l1_address": "0x" + "00" * 20,
            "global_supply_cap": "0",
            "liquidation_fee": "0",
            "liquidation_threshold": "1",
            "loan_to_value": "1",
            "price_decimals": QUOTE_DECIMALS,
            "total_supplied": "0",
            "user_supply_cap": "0",
            "liquidation_factor": "1",
            "multiplier": "1",
        }
        assets = [usdc] if asset_id in (None, USDC_ASSET_ID) else []
        return _json({"code": CODE_OK, "asset_details": assets})

    async def _order_book_details(self, request: web.Request) -> web.Response:
        market_id = _opt_int(request, "market_id")
        books = self._books() if market_id is None else [self._book_by_id(market_id)]
        return _json(
            {
                "code": CODE_OK,
                "order_book_details": [self._order_book_detail(b) for b in books],
                "spot_order_book_details": [],
            }
        )

    def _order_book_info(self, book: VenueBook) -> dict[str, Any]:
        rules = book.rules
        return {
            "symbol": rules.symbol,
            "market_id": rules.market_id,
            "market_type": "perp",
            "base_asset_id": 0,
            "quote_asset_id": 3,
            "status": "active",
            "taker_fee": fmt(rules.taker_fee * 100, 4),
            "maker_fee": fmt(rules.maker_fee * 100, 4),
            "liquidation_fee": "1.0000",
            "min_base_amount": fmt(rules.min_qty, rules.size_decimals),
            "min_quote_amount": fmt(rules.min_quote, QUOTE_DECIMALS),
            "supported_size_decimals": rules.size_decimals,
            "supported_price_decimals": rules.price_decimals,
            "supported_quote_decimals": QUOTE_DECIMALS,
            "order_quote_limit": "",
            "is_maker_fee_enabled": rules.maker_fee != 0,
            "is_taker_fee_enabled": rules.taker_fee != 0,
            "created_at": "2024-01-01T00:00:00Z",
            "multiplier": "1",
            "start_timestamp": 0,
            "end_timestamp": 0,
            "settlement_type": 0,
            "settlement_price": 0,
            "settlement_cap": 0,
            "outcome": 0,
            "default_price": 0,
            "operator_account_index": 0,
            "is_frozen": False,
            "open_interest": "0",
        }

    def _order_book_detail(self, book: VenueBook) -> dict[str, Any]:
        rules = book.rules
        info = self._order_book_info(book)
        info.pop("open_interest")
        mid = self.market.mid(book.ticker)
        last = (
            float(self._recent_trades[rules.market_id][-1].price)
            if self._recent_trades.get(rules.market_id)
            else float(mid)
        )
        info.update(
            {
                "size_decimals": rules.size_decimals,
                "price_decimals": rules.price_decimals,
                "quote_multiplier": 1,
                "default_initial_margin_fraction": DEFAULT_IMF,
                "min_initial_margin_fraction": 200,
                "maintenance_margin_fraction": 120,
                "closeout_margin_fraction": 80,
                "last_trade_price": last,
                "daily_trades_count": 0,
                "daily_base_token_volume": 0.0,
                "daily_quote_token_volume": 0.0,
                "daily_price_low": float(mid),
                "daily_price_high": float(mid),
                "daily_price_change": 0.0,
                "open_interest": 0.0,
                "daily_chart": {},
                "market_config": {
                    "market_margin_mode": 0,
                    "insurance_fund_account_index": 0,
                    "liquidation_mode": 0,
                    "force_reduce_only": False,
                    "trading_hours": "",
                    "hidden": False,
                    "rfq_enabled": False,
                },
                "strategy_index": 0,
                "funding_clamp_small": "0.0500",
                "funding_clamp_big": "4.0000",
                "base_interest_rate": "0.0100",
                "mark_price": fmt(mid, rules.price_decimals),
                "index_price": fmt(mid, rules.price_decimals),
                "market_flags": 0,
                "funding_premium_multiplier": 0,
            }
        )
        return info

    async def _order_book_orders(self, request: web.Request) -> web.Response:
        book = self._book_by_id(_req_int(request, "market_id"))
        limit = _opt_int(request, "limit") or 50
        if not 1 <= limit <= 250:
            raise _Refused(CODE_INVALID_PARAM, "limit must be within 1..250")
        bids, asks = book.levels(limit)
        rules = book.rules
        now_us = _now_ms() * 1000

        def simple(i: int, price: Decimal, qty: Decimal) -> dict[str, Any]:
            # One aggregated "order" per level: index derived from the price so it is stable.
            index = int(price.scaleb(rules.price_decimals)) * 2 + i
            return {
                "order_index": index,
                "order_id": str(index),
                "owner_account_index": 0,
                "initial_base_amount": fmt(qty, rules.size_decimals),
                "remaining_base_amount": fmt(qty, rules.size_decimals),
                "price": fmt(price, rules.price_decimals),
                "order_expiry": 0,
                "transaction_time": now_us,
            }

        return _json(
            {
                "code": CODE_OK,
                "total_asks": len(asks),
                "asks": [simple(1, p, q) for p, q in asks],
                "total_bids": len(bids),
                "bids": [simple(0, p, q) for p, q in bids],
            }
        )

    # ---------------------------------------------------------------------------------------
    # REST: account, keys, nonces
    # ---------------------------------------------------------------------------------------

    async def _account(self, request: web.Request) -> web.Response:
        by = request.query.get("by", "index")
        if by != "index":
            raise _Refused(CODE_INVALID_PARAM, f"by={by} is not supported by the simulator")
        account = _req_int(request, "value")
        if account not in self.accounts:
            raise _Refused(CODE_NOT_FOUND, "account not found")
        return _json(
            {
                "code": CODE_OK,
                "total": 1,
                "accounts": [self._detailed_account(account)],
                "next_cursor": "",
            }
        )

    def _position_entry(self, book: VenueBook, account: int) -> dict[str, Any]:
        rules = book.rules
        pos = self.market.account("lighter", account).position(book.ticker)
        mid = self.market.mid(book.ticker)
        qty = pos.qty
        open_count = len(book.open_orders(account))
        unrealized = (mid - pos.entry_price) * qty if qty else Decimal(0)
        return {
            "market_id": rules.market_id,
            "symbol": rules.symbol,
            "initial_margin_fraction": fmt(Decimal(DEFAULT_IMF) / 100, 2),
            "open_order_count": open_count,
            "pending_order_count": 0,
            "position_tied_order_count": 0,
            # Lighter reports the size unsigned and the direction in `sign`.
            "sign": -1 if qty < 0 else 1,
            "position": fmt(abs(qty), rules.size_decimals),
            "avg_entry_price": fmt(pos.entry_price, rules.price_decimals),
            "position_value": fmt(abs(qty) * mid, QUOTE_DECIMALS),
            "unrealized_pnl": fmt(unrealized, QUOTE_DECIMALS),
            "realized_pnl": fmt(pos.realized_pnl, QUOTE_DECIMALS),
            "liquidation_price": "0",
            "total_funding_paid_out": "0",
            "margin_mode": 0,
            "allocated_margin": "0.000000",
            "total_discount": "0",
            "margin_set_flag": 0,
        }

    def _detailed_account(self, account: int) -> dict[str, Any]:
        sim_account = self.market.account("lighter", account)
        positions = [self._position_entry(book, account) for book in self._books()]
        margin_used = sum(
            (Decimal(p["position_value"]) * DEFAULT_IMF / 10_000 for p in positions), Decimal(0)
        )
        unrealized = sum((Decimal(p["unrealized_pnl"]) for p in positions), Decimal(0))
        collateral = sim_account.collateral
        equity = collateral + unrealized
        open_orders = sum(p["open_order_count"] for p in positions)
        return {
            "code": CODE_OK,
            "account_type": 0,
            "index": account,
            "l1_address": f"0x{account:040x}",
            "cancel_all_time": 0,
            "total_order_count": open_orders,
            "total_isolated_order_count": 0,
            "pending_order_count": 0,
            "available_balance": fmt(equity - margin_used, QUOTE_DECIMALS),
            "status": 1,
            "collateral": fmt(collateral, QUOTE_DECIMALS),
            "account_index": account,
            "name": "",
            "description": "",
            "can_invite": False,
            "referral_points_percentage": "0",
            "positions": positions,
            "assets": [],
            "total_asset_value": fmt(equity, QUOTE_DECIMALS),
            "cross_asset_value": fmt(equity, QUOTE_DECIMALS),
            "pool_info": {
                "status": 0,
                "operator_fee": "0",
                "min_operator_share_rate": "0",
                "total_shares": 0,
                "operator_shares": 0,
                "annual_percentage_yield": 0.0,
                "daily_returns": [],
                "share_prices": [],
                "sharpe_ratio": 0.0,
                "strategies": [],
            },
            "shares": [],
            "created_at": 0,
            "transaction_time": _now_ms() * 1000,
            "can_rfq": False,
            "cross_initial_margin_requirement": fmt(margin_used, QUOTE_DECIMALS),
            "cross_maintenance_margin_requirement": fmt(margin_used * 12 / 50, QUOTE_DECIMALS),
            "can_rfq_market_ids": [],
            "metadata": {"color": ""},
            "agent_enabled": False,
        }

    async def _apikeys(self, request: web.Request) -> web.Response:
        account = _req_int(request, "account_index")
        wanted = _opt_int(request, "api_key_index")
        keys = self.accounts.get(account)
        if keys is None:
            raise _Refused(CODE_NOT_FOUND, "account not found")
        api_keys = [
            {
                "account_index": account,
                "api_key_index": index,
                "nonce": self._nonces[(account, index)],
                "public_key": public_key,
                "transaction_time": 0,
            }
            for index, public_key in sorted(keys.items())
            if wanted in (None, ALL_API_KEYS, index)
        ]
        return _json({"code": CODE_OK, "api_keys": api_keys})

    async def _account_limits(self, request: web.Request) -> web.Response:
        """The account's tier and what it allows (`models.AccountLimits`); needs the account's
        auth token. ccxt reads `user_tier` before each order."""
        account = self._auth(request, _req_int(request, "account_index"))
        tier = self.tier_of(account)
        name = "premium" if tier.name == "premium" else "standard"  # unlimited: not a real tier
        # Fee ticks read as millionths of the notional (unconfirmed; nothing of ours reads them).
        maker, taker = (int(fee * 1_000_000) for fee in (tier.maker_fee, tier.taker_fee))
        return _json(
            {
                "code": CODE_OK,
                "max_llp_percentage": 100,
                "max_llp_amount": "0.000000",
                "user_tier": name,
                "user_tier_name": name,
                "user_tier_last_update": 0,
                "can_create_public_pool": False,
                "current_maker_fee_tick": maker,
                "current_taker_fee_tick": taker,
                "effective_lit_stakes": "0.00000000",
                "leased_lit": "0.00000000",
                "bo_user_tier_name": name,
                "bo_fee_rate": 1,
            }
        )

    async def _next_nonce(self, request: web.Request) -> web.Response:
        key = (_req_int(request, "account_index"), _req_int(request, "api_key_index"))
        if key not in self._nonces:
            raise _Refused(CODE_NOT_FOUND, "api key not found")
        return _json({"code": CODE_OK, "nonce": self._nonces[key]})

    # ---------------------------------------------------------------------------------------
    # REST: orders and trades of an account
    # ---------------------------------------------------------------------------------------

    def _account_books(self, request: web.Request) -> list[VenueBook]:
        market_id = _opt_int(request, "market_id")
        if market_id is None or market_id == NIL_MARKET_INDEX:
            return self._books()
        return [self._book_by_id(market_id)]

    async def _active_orders(self, request: web.Request) -> web.Response:
        account = _req_int(request, "account_index")
        self._auth(request, account)
        orders = [
            self.order_json(book, order)
            for book in self._account_books(request)
            for order in book.open_orders(account)
        ]
        return _json({"code": CODE_OK, "orders": orders})

    def _finished_orders(self, account: int, books: list[VenueBook]) -> list[dict[str, Any]]:
        """Finished orders newest first, including post-only orders rejected at matching."""
        market_ids = {b.rules.market_id for b in books}
        finished = [
            (order.updated_ms, order.order_id, self.order_json(book, order))
            for book in books
            for order in book.orders(account)
            if not order.is_open
        ]
        finished += [
            (o["updated_at"], o["order_index"], o)
            for o in self._synthetic.get(account, [])
            if o["market_index"] in market_ids
        ]
        finished.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [item[2] for item in finished]

    async def _inactive_orders(self, request: web.Request) -> web.Response:
        account = _req_int(request, "account_index")
        self._auth(request, account)
        limit = _req_int(request, "limit")
        if not 1 <= limit <= 100:
            raise _Refused(CODE_INVALID_PARAM, "limit must be within 1..100")
        orders = self._finished_orders(account, self._account_books(request))
        return _json({"code": CODE_OK, "orders": orders[:limit]})

    async def _orders_by_client_index(self, request: web.Request) -> web.Response:
        token_account = self._auth(request, _opt_int(request, "account_index"))
        account = _opt_int(request, "account_index") or token_account
        raw = request.query.get("client_order_indexes", "")
        try:
            wanted = {int(x) for x in raw.split(",") if x.strip()}
        except ValueError:
            raise _Refused(CODE_INVALID_PARAM, "client_order_indexes must be integers") from None
        if not wanted or len(wanted) > 20:
            raise _Refused(CODE_INVALID_PARAM, "between 1 and 20 client order indexes")
        orders = [
            self.order_json(book, order)
            for book in self._books()
            for order in book.orders(account)
            if order.client_id in wanted
        ]
        orders += [o for o in self._synthetic.get(account, []) if o["client_order_index"] in wanted]
        return _json({"code": CODE_OK, "orders": orders})

    async def _trades(self, request: web.Request) -> web.Response:
        """Trades of an account (or of the market), paged: `limit` (1..100), `sort_dir`
        (`desc` default, `asc`), `cursor` from the previous page's `next_cursor`, and `from`
        (ms) read as `trades_from` says: where the walk starts (an upper bound descending, a
        lower bound ascending), or an upper bound either way (see the module docstring)."""
        account = _opt_int(request, "account_index")
        limit = _opt_int(request, "limit") or MAX_TRADES_LIMIT
        if not 1 <= limit <= MAX_TRADES_LIMIT:
            raise _Refused(CODE_INVALID_PARAM, f"limit must be within 1..{MAX_TRADES_LIMIT}")
        sort_dir = request.query.get("sort_dir", "desc")
        if sort_dir not in ("asc", "desc"):
            raise _Refused(CODE_INVALID_PARAM, "sort_dir must be asc or desc")
        descending = sort_dir == "desc"
        start_ms = _opt_int(request, "from")
        after = _parse_cursor(request.query.get("cursor"))
        books = self._account_books(request)
        if account is None:
            trades = [
                self.public_trade_json(book, t)
                for book in books
                for t in self._recent_trades[book.rules.market_id]
            ]
        else:
            trades = [self.fill_trade_json(book, f) for book in books for f in book.fills(account)]
        if start_ms is not None:
            upper = descending or self.trades_from == "upper"
            trades = [
                t
                for t in trades
                if (t["timestamp"] <= start_ms if upper else t["timestamp"] >= start_ms)
            ]
        trades.sort(key=_trade_key, reverse=descending)
        if after is not None:
            trades = [t for t in trades if (_trade_key(t) < after) == descending]
            trades = [t for t in trades if _trade_key(t) != after]
        page = trades[:limit]
        body: dict[str, Any] = {"code": CODE_OK, "trades": page}
        if len(trades) > limit:
            last = _trade_key(page[-1])
            body["next_cursor"] = f"{last[0]}.{last[1]}"
        return _json(body)

    async def _recent_trades_handler(self, request: web.Request) -> web.Response:
        book = self._book_by_id(_req_int(request, "market_id"))
        limit = _opt_int(request, "limit") or 100
        trades = [
            self.public_trade_json(book, t)
            for t in reversed(self._recent_trades[book.rules.market_id])
        ]
        return _json({"code": CODE_OK, "trades": trades[:limit]})

    # ---------------------------------------------------------------------------------------
    # REST: sendTx
    # ---------------------------------------------------------------------------------------

    async def _send_tx(self, request: web.Request) -> web.Response:
        recv_ns = time.perf_counter_ns()
        form = await request.post()
        try:
            tx_type = int(str(form["tx_type"]))
            tx_info_raw = str(form["tx_info"])
            info = json.loads(tx_info_raw)
        except (KeyError, ValueError, TypeError):
            raise _Refused(CODE_INVALID_TX, "invalid tx info") from None
        reply, ambiguous = self._accept_tx(tx_type, info, tx_info_raw, recv_ns)
        if ambiguous:
            await asyncio.sleep(self.market.faults.ambiguous_delay_s)
        return _json(reply)

    def _accept_tx(
        self, tx_type: int, info: Any, tx_info_raw: str, recv_ns: int
    ) -> tuple[dict[str, Any], bool]:
        """What the API checks at once (REST and WS alike): tx info, key, expiry, nonce,
        client order index. Accepted: plans the execution after the tier's delay (unlimited:
        executes it here) and answers with the planned time. Refuses with _Refused."""
        if not isinstance(info, dict):
            raise _Refused(CODE_INVALID_TX, "invalid tx info")
        try:
            account = int(info["AccountIndex"])
            api_key = int(info["ApiKeyIndex"])
            nonce = int(info["Nonce"])
            expired_at = int(info.get("ExpiredAt", 0))
        except (KeyError, ValueError, TypeError):
            raise _Refused(CODE_INVALID_TX, "invalid tx info") from None
        if 0 <= api_key < FIRST_USER_API_KEY:
            raise _Refused(CODE_INVALID_PARAM, f"api key index {api_key} is reserved")
        if (account, api_key) not in self._nonces:
            raise _Refused(CODE_NOT_FOUND, "api key not found for account")
        if expired_at and expired_at <= _now_ms():
            raise _Refused(CODE_TX_EXPIRED, "transaction expired")
        expected = self._nonces[(account, api_key)]
        if _skips_nonce(info):
            # SkipNonce: the nonce only has to be above the last one used (and below 2^47).
            if not expected <= nonce < MAX_SKIP_NONCE:
                raise _Refused(
                    CODE_INVALID_NONCE, f"invalid nonce: expected at least {expected}, got {nonce}"
                )
        elif nonce != expected:
            raise _Refused(CODE_INVALID_NONCE, f"invalid nonce: expected {expected}, got {nonce}")
        faults = self.market.faults
        if faults.check("invalid_nonce"):
            # The real answer to a nonce race, without executing or consuming anything.
            raise _Refused(CODE_INVALID_NONCE, "invalid nonce")

        client_id: int | None = None
        ambiguous = False
        tier = self.tier_of(account)
        if tx_type == TX_TYPE_CREATE_ORDER:
            new_order = self._check_create_order(account, api_key, nonce, info)
            client_id = new_order.client_id
            if client_id in self._client_ids.get(account, ()) or self._client_id_known(
                account, client_id
            ):
                raise _Refused(CODE_CLIENT_ORDER_INDEX_EXISTS, "client order index already exists")
            delay = tier.taker_delay_s if new_order.is_taker else tier.maker_delay_s
            execute: Callable[[], None] = lambda: self._execute_create(new_order)  # noqa: E731
            ambiguous = faults.check("ambiguous_order")
        elif tx_type == TX_TYPE_CANCEL_ORDER:
            book, index = self._check_cancel_order(info)
            delay = tier.cancel_delay_s
            execute = lambda: self._execute_cancel(book, account, index)  # noqa: E731
        elif tx_type == TX_TYPE_CANCEL_ALL_ORDERS:
            self._check_cancel_all(info)
            delay = tier.cancel_delay_s
            execute = lambda: self._execute_cancel_all(account)  # noqa: E731
        else:
            raise _Refused(CODE_UNSUPPORTED, f"tx type {tx_type} is not supported by the sim")

        if tier.sequenced:
            predicted_ms = self._plan(account, delay, execute)
        else:
            # Unlimited: executed before answering, as the simulator always did. A refusal
            # at execution is an API error here and leaves the nonce unused.
            execute()
            predicted_ms = _now_ms()
        # Accepted: the nonce is used and the client order index is taken for good.
        self._nonces[(account, api_key)] = nonce + 1
        if client_id is not None:
            self._client_ids.setdefault(account, set()).add(client_id)
        self.sent_txs.append(
            {"type": tx_type, "info": info, "recv_ns": recv_ns, "time": time.time()}
        )
        tx_hash = hashlib.blake2b(tx_info_raw.encode(), digest_size=40).hexdigest()
        reply = {
            "code": CODE_OK,
            "message": '{"ratelimit": "didn\'t use volume quota"}',
            "tx_hash": tx_hash,
            "predicted_execution_time_ms": predicted_ms,
            "volume_quota_remaining": 10_000,
        }
        return reply, ambiguous

    def _client_id_known(self, account: int, client_id: int) -> bool:
        """Whether an order with this client id exists (placed on the books directly, too)."""
        if any(b.find_order(account, client_id=client_id) for b in self._books()):
            return True
        return any(o["client_order_index"] == client_id for o in self._synthetic.get(account, []))

    # ---------------------------------------------------------------------------------------
    # The sequencer: accepted transactions execute after the tier's delay, FIFO per account
    # ---------------------------------------------------------------------------------------

    @property
    def pending_executions(self) -> int:
        """Accepted transactions the sequencer has not executed yet (tests wait for 0)."""
        return len(self._planned)

    def _plan(self, account: int, delay_s: float, execute: Callable[[], None]) -> int:
        """Queue one execution; returns its planned time in unix ms."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Never before an earlier transaction of the same account (submission order).
        due = max(now + delay_s, self._last_due.get(account, 0.0))
        self._last_due[account] = due
        heapq.heappush(self._planned, _Planned(due, next(self._planned_seq), execute))
        self._sequencer_wake.set()
        return math.ceil(time.time() * 1000 + (due - now) * 1000)

    async def _sequencer(self) -> None:
        loop = asyncio.get_running_loop()
        planned = self._planned
        while True:
            self._sequencer_wake.clear()
            while planned and planned[0].due <= loop.time():
                item = heapq.heappop(planned)
                try:
                    item.execute()
                except Exception:  # one broken execution must not stop the venue
                    log.exception("lighter sim: execution failed")
            timeout = planned[0].due - loop.time() if planned else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sequencer_wake.wait(), timeout)

    # ---------------------------------------------------------------------------------------
    # Transactions: checked at once, executed by the sequencer
    # ---------------------------------------------------------------------------------------

    def _check_create_order(
        self, account: int, api_key: int, nonce: int, info: dict[str, Any]
    ) -> _NewOrder:
        try:
            market_id = int(info["MarketIndex"])
            client_id = int(info["ClientOrderIndex"])
            base_amount = int(info["BaseAmount"])
            price_int = int(info["Price"])
            is_ask = int(info["IsAsk"])
            order_type = int(info["Type"])
            tif = int(info["TimeInForce"])
            reduce_only = bool(int(info.get("ReduceOnly", 0)))
            order_expiry = int(info.get("OrderExpiry", 0))
        except (KeyError, ValueError, TypeError):
            raise _Refused(CODE_INVALID_TX, "invalid create order tx info") from None
        book = self._book_by_id(market_id)
        rules = book.rules
        if not 0 <= client_id <= MAX_CLIENT_ORDER_INDEX:
            raise _Refused(CODE_ORDER_REJECTED, "invalid client order index")
        if not 0 < price_int <= MAX_PRICE:
            raise _Refused(CODE_ORDER_REJECTED, "invalid order price")
        if base_amount <= 0:
            raise _Refused(CODE_ORDER_REJECTED, "invalid order base amount")
        if order_type not in (ORDER_TYPE_LIMIT, ORDER_TYPE_MARKET) or tif not in (
            TIF_IOC,
            TIF_GTT,
            TIF_POST_ONLY,
        ):
            raise _Refused(CODE_UNSUPPORTED, "order type not supported by the simulator")
        if order_type == ORDER_TYPE_MARKET and tif != TIF_IOC:
            raise _Refused(CODE_ORDER_REJECTED, "market orders must be immediate-or-cancel")
        qty = Decimal(base_amount).scaleb(-rules.size_decimals)
        price = Decimal(price_int).scaleb(-rules.price_decimals)
        if qty < rules.min_qty:
            raise _Refused(CODE_ORDER_REJECTED, "order base amount below the minimum")
        if qty > rules.max_qty:
            raise _Refused(CODE_ORDER_REJECTED, "order base amount above the maximum")
        if rules.min_quote and qty * price < rules.min_quote:
            raise _Refused(CODE_ORDER_REJECTED, "order quote amount below the minimum")
        tif_name = {TIF_IOC: "immediate-or-cancel", TIF_GTT: "good-till-time"}.get(tif, "post-only")
        return _NewOrder(
            book=book,
            account=account,
            client_id=client_id,
            side=Side.SELL if is_ask else Side.BUY,
            qty=qty,
            price=price,
            is_market=order_type == ORDER_TYPE_MARKET,
            tif=tif,
            reduce_only=reduce_only,
            meta=_OrderMeta(nonce, tif_name, order_expiry, api_key),
        )

    def _execute_create(self, new: _NewOrder) -> None:
        """Matching: the order-level outcomes (post-only cancel, reduce-only, not enough
        liquidity) happen here and show on the account stream and REST."""
        book, account, client_id, meta = new.book, new.account, new.client_id, new.meta
        order_type: Literal["limit", "market"] = "market" if new.is_market else "limit"
        # Listeners fire synchronously inside place_*: the meta must be findable before that.
        self._pending_meta = (account, client_id, meta)
        try:
            if new.is_market:
                order = book.place_market(
                    account,
                    new.side,
                    new.qty,
                    new.price,
                    client_id=client_id,
                    reduce_only=new.reduce_only,
                )
            elif new.tif == TIF_POST_ONLY and self.market.faults.check("post_only_reject"):
                raise WouldCross("post_only_reject fault")
            else:
                order = book.place_limit(
                    account,
                    new.side,
                    new.qty,
                    new.price,
                    client_id=client_id,
                    post_only=new.tif == TIF_POST_ONLY,
                    tif="IOC" if new.tif == TIF_IOC else "GTC",
                    reduce_only=new.reduce_only,
                )
        except WouldCross:
            # Lighter accepts the transaction and cancels the order at matching time.
            self._cancel_at_matching(new, "canceled-post-only")
            return
        except SimRejected as rejected:
            if rejected.reason == "reduce_only":
                self._cancel_at_matching(new, "canceled-reduce-only", order_type)
                return
            if not self.tier_of(account).sequenced:
                raise _Refused(CODE_ORDER_REJECTED, rejected.reason) from None
            self._cancel_at_matching(new, "canceled", order_type)
            return
        finally:
            self._pending_meta = None
        self._order_meta[order.order_id] = meta

    def _cancel_at_matching(
        self,
        new: _NewOrder,
        status: str,
        order_type: Literal["limit", "market"] = "limit",
    ) -> None:
        """An accepted order that the matching engine cancels at once (post-only crossing,
        reduce-only with nothing to reduce): it exists only on the wire."""
        book, account, meta = new.book, new.account, new.meta
        now = self.market.now_ms()
        order = SimOrder(
            order_id=next(self._synthetic_ids),
            account=account,
            venue="lighter",
            ticker=book.ticker,
            side=new.side,
            qty=new.qty,
            price=new.price,
            client_id=new.client_id,
            post_only=meta.time_in_force == "post-only",
            tif="GTC" if meta.time_in_force != "immediate-or-cancel" else "IOC",
            order_type=order_type,
            status="cancelled",
            created_ms=now,
            updated_ms=now,
            expiry_reason=status,
        )
        self._order_meta[order.order_id] = meta
        body = self.order_json(book, order)
        self._synthetic.setdefault(account, []).append(body)
        self._publish_account_order(book, account, body)

    def _check_cancel_order(self, info: dict[str, Any]) -> tuple[VenueBook, int]:
        try:
            market_id = int(info["MarketIndex"])
            index = int(info["Index"])
        except (KeyError, ValueError, TypeError):
            raise _Refused(CODE_INVALID_TX, "invalid cancel order tx info") from None
        return self._book_by_id(market_id), index

    def _execute_cancel(self, book: VenueBook, account: int, index: int) -> None:
        # Lighter accepts an order index or a client order index; a cancel of an order that
        # is no longer open is an accepted no-op (the outcome shows on the account stream).
        for key in ("order_id", "client_id"):
            with contextlib.suppress(OrderNotFound):
                book.cancel(account, **{key: index})
                return

    def _check_cancel_all(self, info: dict[str, Any]) -> None:
        try:
            tif = int(info.get("TimeInForce", 0))
        except (ValueError, TypeError):
            raise _Refused(CODE_INVALID_TX, "invalid cancel all tx info") from None
        if tif != 0:
            raise _Refused(CODE_UNSUPPORTED, "only immediate cancel-all is simulated")

    def _execute_cancel_all(self, account: int) -> None:
        for book in self._books():
            book.cancel_all(account)

    # ---------------------------------------------------------------------------------------
    # JSON shapes
    # ---------------------------------------------------------------------------------------

    def _meta(self, order: SimOrder) -> _OrderMeta:
        meta = self._order_meta.get(order.order_id)
        pending = self._pending_meta
        if meta is None and pending is not None and pending[:2] == (order.account, order.client_id):
            meta = pending[2]
        if meta is None:
            tif = "immediate-or-cancel" if order.tif == "IOC" else "good-till-time"
            meta = _OrderMeta(0, "post-only" if order.post_only else tif, 0, 0)
        return meta

    @staticmethod
    def lighter_status(order: SimOrder) -> str:
        if order.status in ("new", "partially_filled"):
            return "open"
        if order.status == "filled":
            return "filled"
        if order.expiry_reason in _LIGHTER_CANCEL_STATUSES:
            return order.expiry_reason
        if order.status == "cancelled":
            return "canceled"
        # An IOC remainder that found nothing more within its price.
        return "canceled-not-enough-liquidity" if order.tif == "IOC" else "canceled-expired"

    def order_json(self, book: VenueBook, order: SimOrder) -> dict[str, Any]:
        """An Order in the shape of lighter.models.Order (REST and account streams)."""
        rules = book.rules
        sd, pd = rules.size_decimals, rules.price_decimals
        meta = self._meta(order)
        remaining = order.qty - order.filled_qty if order.is_open else Decimal(0)
        is_ask = order.side is Side.SELL
        return {
            "order_index": order.order_id,
            "client_order_index": order.client_id or 0,
            "order_id": str(order.order_id),
            "client_order_id": str(order.client_id or 0),
            "market_index": rules.market_id,
            "owner_account_index": order.account,
            "initial_base_amount": fmt(order.qty, sd),
            "price": fmt(order.price, pd),
            "nonce": meta.nonce,
            "remaining_base_amount": fmt(remaining, sd),
            "is_ask": is_ask,
            "base_size": int(order.qty.scaleb(sd)),
            "base_price": int(order.price.scaleb(pd)),
            "filled_base_amount": fmt(order.filled_qty, sd),
            "filled_quote_amount": fmt(order.filled_quote, sd + pd),
            "side": "sell" if is_ask else "buy",
            "type": order.order_type,
            "time_in_force": meta.time_in_force,
            "reduce_only": order.reduce_only,
            "trigger_price": fmt(Decimal(0), pd),
            "order_expiry": meta.order_expiry,
            "status": self.lighter_status(order),
            "trigger_status": "na",
            "trigger_time": 0,
            "parent_order_index": 0,
            "parent_order_id": "0",
            "to_trigger_order_id_0": "0",
            "to_trigger_order_id_1": "0",
            "to_cancel_order_id_0": "0",
            "block_height": order.updated_ms,
            "timestamp": order.updated_ms,
            "created_at": order.created_ms,
            "updated_at": order.updated_ms,
            "transaction_time": order.updated_ms * 1000,
            "integrator_fee_collector_index": "0",
            "integrator_maker_fee": "0",
            "integrator_taker_fee": "0",
            "order_flags": 0,
            "order_version": 0,
            "market_symbol": rules.symbol,
            "market_kind": "perps",
        }

    def _trade_json(
        self,
        book: VenueBook,
        *,
        trade_id: int,
        price: Decimal,
        qty: Decimal,
        ts_ms: int,
        ask: tuple[int, int, int],  # (order id, account, client id)
        bid: tuple[int, int, int],
        is_maker_ask: bool,
        taker_fee: int = 0,
        maker_fee: int = 0,
    ) -> dict[str, Any]:
        rules = book.rules
        return {
            "trade_id": trade_id,
            "tx_hash": f"{trade_id:080x}",
            "type": "trade",
            "market_id": rules.market_id,
            "size": fmt(qty, rules.size_decimals),
            "price": fmt(price, rules.price_decimals),
            "usd_amount": fmt(price * qty, QUOTE_DECIMALS),
            "ask_id": ask[0],
            "bid_id": bid[0],
            "ask_account_id": ask[1],
            "bid_account_id": bid[1],
            "is_maker_ask": is_maker_ask,
            "block_height": ts_ms,
            "timestamp": ts_ms,
            "taker_fee": taker_fee,
            "taker_position_size_before": "0",
            "taker_entry_quote_before": "0",
            "taker_initial_margin_fraction_before": 0,
            "taker_position_sign_changed": False,
            "maker_fee": maker_fee,
            "maker_position_size_before": "0",
            "maker_entry_quote_before": "0",
            "maker_initial_margin_fraction_before": 0,
            "maker_position_sign_changed": False,
            "transaction_time": ts_ms * 1000,
            "bid_account_pnl": "0",
            "ask_account_pnl": "0",
            "ask_client_id": ask[2],
            "bid_client_id": bid[2],
            "ask_client_id_str": str(ask[2]),
            "bid_client_id_str": str(bid[2]),
            "trade_id_str": str(trade_id),
            "integrator_maker_fee": 0,
            "integrator_maker_fee_collector_index": 0,
            "integrator_taker_fee": 0,
            "integrator_taker_fee_collector_index": 0,
            "taker_allocated_margin_usdc_before": 0,
            "taker_allocated_margin_usdc_after": 0,
            "maker_allocated_margin_usdc_before": 0,
            "maker_allocated_margin_usdc_after": 0,
            "bid_order_version": 0,
            "ask_order_version": 0,
            "market_symbol": rules.symbol,
            "market_kind": "perps",
        }

    def fill_trade_json(self, book: VenueBook, fill: SimFill) -> dict[str, Any]:
        """One of our fills as a lighter Trade (our side filled in, the other side anonymous)."""
        ours = (fill.order_id, fill.account, fill.client_id or 0)
        other = (0, 0, 0)
        is_ask = fill.side is Side.SELL
        fee = int(fill.fee.scaleb(QUOTE_DECIMALS))
        return self._trade_json(
            book,
            trade_id=fill.trade_id,
            price=fill.price,
            qty=fill.qty,
            ts_ms=fill.ts_ms,
            ask=ours if is_ask else other,
            bid=other if is_ask else ours,
            is_maker_ask=is_ask == fill.is_maker,
            taker_fee=0 if fill.is_maker else fee,
            maker_fee=fee if fill.is_maker else 0,
        )

    def public_trade_json(self, book: VenueBook, trade: PublicTrade) -> dict[str, Any]:
        anonymous = (0, 0, 0)
        return self._trade_json(
            book,
            trade_id=trade.trade_id,
            price=trade.price,
            qty=trade.qty,
            ts_ms=trade.ts_ms,
            ask=anonymous,
            bid=anonymous,
            is_maker_ask=trade.taker_side is Side.BUY,
        )

    def _book_levels_json(
        self, book: VenueBook, levels: list[tuple[Decimal, Decimal]]
    ) -> list[dict[str, str]]:
        sd, pd = book.rules.size_decimals, book.rules.price_decimals
        return [{"price": fmt(p, pd), "size": fmt(q, sd)} for p, q in levels]

    # ---------------------------------------------------------------------------------------
    # Market listeners -> WebSocket fan-out
    # ---------------------------------------------------------------------------------------

    def _make_book_listener(self, book: VenueBook) -> Callable[[BookDelta], None]:
        market_id = book.rules.market_id
        channel = f"order_book:{market_id}"

        def on_book(delta: BookDelta) -> None:
            begin = self._book_nonce[market_id]
            self._book_nonce[market_id] = delta.last_id
            subscribers = [c for c in self._conns if market_id in c.order_books]
            if not subscribers:
                return
            if self.market.faults.check("depth_gap"):
                # The update is lost: the next one's begin_nonce no longer joins.
                return
            offset = self._book_offsets[market_id] = self._book_offsets[market_id] + 1
            text = _dumps(
                {
                    "type": "update/order_book",
                    "channel": channel,
                    "offset": offset,
                    "order_book": {
                        "code": 0,
                        "asks": self._book_levels_json(book, delta.asks),
                        "bids": self._book_levels_json(book, delta.bids),
                        "offset": offset,
                        "nonce": delta.last_id,
                        "begin_nonce": begin,
                    },
                    "timestamp": delta.ts_ms,
                }
            )
            for conn in subscribers:
                self._enqueue(conn, text)

        return on_book

    def _make_order_listener(self, book: VenueBook) -> Callable[[OrderUpdate], None]:
        def on_order(update: OrderUpdate) -> None:
            order = update.order
            body = self.order_json(book, order)
            self._publish_account_order(book, order.account, body)
            if update.fill is not None:
                self._publish_account_all(book, order.account, update.fill)

        return on_order

    def _make_trade_listener(self, book: VenueBook) -> Callable[[PublicTrade], None]:
        market_id = book.rules.market_id
        channel = f"trade:{market_id}"

        def on_trade(trade: PublicTrade) -> None:
            self._recent_trades[market_id].append(trade)
            subscribers = [c for c in self._conns if market_id in c.trades]
            if not subscribers:
                return
            text = _dumps(
                {
                    "type": "update/trade",
                    "channel": channel,
                    "trades": [self.public_trade_json(book, trade)],
                }
            )
            for conn in subscribers:
                self._enqueue(conn, text)

        return on_trade

    def _publish_account_order(self, book: VenueBook, account: int, body: dict[str, Any]) -> None:
        market_id = book.rules.market_id
        for conn in list(self._conns):
            for sub_market, sub_account in conn.account_orders:
                if sub_account != account or sub_market not in (None, market_id):
                    continue
                kind = "account_orders" if sub_market is not None else "account_all_orders"
                channel = f"{kind}:{market_id if sub_market is not None else account}"
                text = _dumps(
                    {
                        "type": f"update/{kind}",
                        "channel": channel,
                        "account": account,
                        "nonce": next(self._account_nonce),
                        "orders": {str(market_id): [body]},
                    }
                )
                self._enqueue_account_event(conn, text)

    def _publish_account_all(self, book: VenueBook, account: int, fill: SimFill) -> None:
        self._publish_account_trade(book, account, fill)
        subscribers = [c for c in self._conns if account in c.account_all]
        if not subscribers:
            return
        market_id = str(book.rules.market_id)
        text = _dumps(
            {
                "type": "update/account_all",
                "channel": f"account_all:{account}",
                "account": account,
                "positions": {market_id: self._position_entry(book, account)},
                "trades": {market_id: [self.fill_trade_json(book, fill)]},
                "funding_histories": {},
            }
        )
        for conn in subscribers:
            self._enqueue(conn, text)

    def _publish_account_trade(self, book: VenueBook, account: int, fill: SimFill) -> None:
        """`account_all_trades/{account}`: the account's own trades (ccxt's watch_my_trades)."""
        subscribers = [c for c in self._conns if account in c.account_all_trades]
        if not subscribers:
            return
        text = _dumps(
            {
                "type": "update/account_all_trades",
                "channel": f"account_all_trades:{account}",
                "trades": {str(book.rules.market_id): [self.fill_trade_json(book, fill)]},
            }
        )
        for conn in subscribers:
            self._enqueue(conn, text)

    def _enqueue(
        self, conn: _Conn, text: str, data: bool = True, acknowledges: bool = False
    ) -> None:
        if not conn.closed:
            conn.queue.put_nowait((text, data, acknowledges))

    def _enqueue_account_event(self, conn: _Conn, text: str) -> None:
        faults = self.market.faults
        if conn.held is not None:
            # Reorder: the held event goes out after this newer one.
            held, conn.held = conn.held, None
            if conn.held_handle is not None:
                conn.held_handle.cancel()
                conn.held_handle = None
            self._enqueue(conn, text)
            self._enqueue(conn, held)
        elif faults.check("reorder_event"):
            conn.held = text
            # If no newer event comes, the held one still arrives (late) rather than never.
            conn.held_handle = asyncio.get_running_loop().call_later(0.5, self._release_held, conn)
            return
        else:
            self._enqueue(conn, text)
        if faults.check("duplicate_event"):
            self._enqueue(conn, text)

    def _release_held(self, conn: _Conn) -> None:
        conn.held_handle = None
        if conn.held is not None:
            held, conn.held = conn.held, None
            self._enqueue(conn, held)

    # ---------------------------------------------------------------------------------------
    # WebSocket
    # ---------------------------------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Conn(next(self._conn_ids), ws, request.transport, client_ip(request))
        self._conns.add(conn)
        self.ledger.ws_connected()
        writer = self._spawn(self._writer(conn))
        pinger = self._spawn(self._pinger(conn))
        conn.age_handle = asyncio.get_running_loop().call_later(
            self.connection_max_age_s, self._end_old_conn, conn
        )
        self._enqueue(conn, _dumps({"type": "connected", "session_id": str(conn.conn_id)}), False)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_client_message(conn, msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self.ledger.ws_closed()
            self._close_conn(conn, abort=False)
            pinger.cancel()
            writer.cancel()
        return ws

    def _end_old_conn(self, conn: _Conn) -> None:
        """The venue drops every connection at its maximum age (24 h)."""
        log.info("lighter sim: connection %d reached its maximum age", conn.conn_id)
        self._close_conn(conn, abort=False)
        self._spawn(conn.ws.close())

    def _close_conn(self, conn: _Conn, *, abort: bool) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._conns.discard(conn)
        if conn.held_handle is not None:
            conn.held_handle.cancel()
        if conn.age_handle is not None:
            conn.age_handle.cancel()
        for timer in conn.token_timers.values():
            timer.cancel()
        conn.token_timers.clear()
        conn.queue.put_nowait(("", False, False))  # wakes the writer so it exits
        if abort and conn.transport is not None:
            conn.transport.abort()  # type: ignore[attr-defined]

    async def _writer(self, conn: _Conn) -> None:
        faults = self.market.faults
        ws = conn.ws
        queue = conn.queue
        try:
            while True:
                text, data, acknowledges = await queue.get()
                if conn.closed:
                    return
                if data:
                    if faults.check("ws_drop"):
                        log.info("lighter sim: ws_drop fault on connection %d", conn.conn_id)
                        self._close_conn(conn, abort=True)
                        return
                    delay = faults.delay_s()
                    if delay:
                        await asyncio.sleep(delay)
                await ws.send_str(text)
                if acknowledges:
                    conn.unacked_subscribes -= 1
        except (ConnectionError, RuntimeError) as exc:
            log.debug("lighter sim: ws writer %d ended: %s", conn.conn_id, exc)
            self._close_conn(conn, abort=True)

    async def _pinger(self, conn: _Conn) -> None:
        ping = _dumps({"type": "ping"})
        while not conn.closed:
            await asyncio.sleep(self.ping_interval)
            self._enqueue(conn, ping, False)

    def _ws_error(self, conn: _Conn, code: int, message: str, acknowledges: bool = False) -> None:
        """The venue's error frame: no `type`, no `channel`, only the error."""
        body = {"error": {"code": code, "message": message}}
        self._enqueue(conn, _dumps(body), False, acknowledges)

    def _on_client_message(self, conn: _Conn, raw: str) -> None:
        try:
            msg = json.loads(raw)
            kind = msg["type"]
        except (ValueError, KeyError, TypeError):
            msg, kind = None, None
        self.ledger.ws_message(_message_account(msg), conn.ip)
        if self.tier.ws_limits:
            budget = self._ws_limits.get(conn.ip)
            if budget is None:
                budget = self._ws_limits[conn.ip] = RollingLimit(WS_MESSAGES_PER_MINUTE)
            if budget.take() is not None:
                self._ws_error(conn, WS_CODE_TOO_MANY_MESSAGES, "Too Many Messages")
                return
        if kind is None:
            self._ws_error(conn, WS_CODE_BAD_MESSAGE, "invalid message")
            return
        if kind == "pong":
            self.pongs_received += 1
            return
        if kind == "ping":
            self._enqueue(conn, _dumps({"type": "pong"}), False)
            return
        if kind == "jsonapi/sendtx":
            self._ws_send_tx(conn, msg.get("data"))
            return
        channel = msg.get("channel")
        if kind not in ("subscribe", "unsubscribe") or not isinstance(channel, str):
            self._ws_error(conn, WS_CODE_BAD_MESSAGE, f"invalid message type {kind!r}")
            return
        if kind == "unsubscribe":
            try:
                self._unsubscribe(conn, channel)
            except _Refused as refused:
                self._ws_error(conn, refused.code, refused.message)
            return
        if self.tier.ws_limits and conn.unacked_subscribes >= WS_MAX_UNACKED_SUBSCRIBES:
            self._ws_error(conn, WS_CODE_TOO_MANY_SUBSCRIBES, "Too Many Pending Subscriptions")
            return
        conn.unacked_subscribes += 1  # until its reply (snapshot or error) is written
        try:
            self._subscribe(conn, channel, msg.get("auth"))
        except _Refused as refused:
            self._ws_error(conn, refused.code, refused.message, acknowledges=True)

    def _ws_send_tx(self, conn: _Conn, data: Any) -> None:
        """`jsonapi/sendtx`: the same checks, budget, delays and nonces as REST sendTx."""
        recv_ns = time.perf_counter_ns()
        request_id = str(data.get("id", "")) if isinstance(data, dict) else ""
        try:
            if not isinstance(data, dict):
                raise _Refused(CODE_INVALID_TX, "invalid tx info")
            info = data.get("tx_info")
            try:
                tx_type = int(data["tx_type"])
            except (KeyError, ValueError, TypeError):
                raise _Refused(CODE_INVALID_TX, "invalid tx type") from None
            account = info.get("AccountIndex") if isinstance(info, dict) else None
            retry_after = self._count_request(
                account if isinstance(account, int) else None,
                conn.ip,
                "/api/v1/sendTx",
                is_tx=True,
            )
            if retry_after is not None:
                raise _Refused(CODE_TOO_MANY_REQUESTS, _HTTP_REASONS[429], status=429)
            reply, _ = self._accept_tx(tx_type, info, _dumps(info), recv_ns)
        except _Refused as refused:
            # ccxt.pro routes an error by the message's `id` and its `error` object; a
            # client reading `code` sees a failure too.
            failure = {"code": refused.code, "message": refused.message}
            body = {"type": "jsonapi/sendtx", "id": request_id, **failure, "error": failure}
            self._enqueue(conn, _dumps(body), False)
            return
        self._enqueue(conn, _dumps({"type": "jsonapi/sendtx", "id": request_id, **reply}), False)

    def _check_not_subscribed(self, subscribed: bool, channel: str) -> None:
        if subscribed:
            raise _Refused(WS_CODE_ALREADY_SUBSCRIBED, f"Already Subscribed to : {channel}")

    def _subscribe(self, conn: _Conn, channel: str, auth: Any) -> None:
        parts = channel.split("/")
        name = parts[0]
        try:
            ids = [int(p) for p in parts[1:]]
        except ValueError:
            raise _Refused(WS_CODE_INVALID_CHANNEL, "Invalid Channel") from None
        if name == "order_book" and len(ids) == 1:
            book = self._ws_book(ids[0], channel)
            self._check_not_subscribed(ids[0] in conn.order_books, channel)
            conn.order_books.add(ids[0])
            self._enqueue(conn, self._book_snapshot(book), False, True)
        elif name == "trade" and len(ids) == 1:
            book = self._ws_book(ids[0], channel)
            self._check_not_subscribed(ids[0] in conn.trades, channel)
            conn.trades.add(ids[0])
            trades = [self.public_trade_json(book, t) for t in self._recent_trades[ids[0]]]
            self._enqueue(
                conn,
                _dumps(
                    {"type": "subscribed/trade", "channel": f"trade:{ids[0]}", "trades": trades}
                ),
                False,
                True,
            )
        elif name == "account_orders" and len(ids) == 2:
            market_id, account = ids
            book = self._ws_book(market_id, channel)
            self._check_not_subscribed((market_id, account) in conn.account_orders, channel)
            expiry = self._ws_token(auth, account)
            self._add_private(conn, (market_id, account), expiry, channel)
            orders = [self.order_json(book, o) for o in book.open_orders(account)]
            self._enqueue(
                conn,
                _dumps(
                    {
                        "type": "subscribed/account_orders",
                        "channel": f"account_orders:{market_id}",
                        "account": account,
                        "nonce": next(self._account_nonce),
                        "orders": {str(market_id): orders},
                    }
                ),
                False,
                True,
            )
        elif name == "account_all_orders" and len(ids) == 1:
            account = ids[0]
            self._check_not_subscribed((None, account) in conn.account_orders, channel)
            expiry = self._ws_token(auth, account)
            self._add_private(conn, (None, account), expiry, channel)
            by_market = {
                str(b.rules.market_id): [self.order_json(b, o) for o in b.open_orders(account)]
                for b in self._books()
            }
            self._enqueue(
                conn,
                _dumps(
                    {
                        "type": "subscribed/account_all_orders",
                        "channel": f"account_all_orders:{account}",
                        "account": account,
                        "nonce": next(self._account_nonce),
                        "orders": by_market,
                    }
                ),
                False,
                True,
            )
        elif name == "account_all" and len(ids) == 1:
            account = ids[0]
            if account not in self.accounts:
                raise _Refused(WS_CODE_INVALID_CHANNEL, "Invalid Channel")
            self._check_not_subscribed(account in conn.account_all, channel)
            conn.account_all.add(account)
            positions = {
                str(b.rules.market_id): self._position_entry(b, account) for b in self._books()
            }
            self._enqueue(
                conn,
                _dumps(
                    {
                        "type": "subscribed/account_all",
                        "channel": f"account_all:{account}",
                        "account": account,
                        "positions": positions,
                        "trades": {},
                        "funding_histories": {},
                    }
                ),
                False,
                True,
            )
        elif name == "account_all_trades" and len(ids) == 1:
            account = ids[0]
            if account not in self.accounts:
                raise _Refused(WS_CODE_INVALID_CHANNEL, "Invalid Channel")
            self._check_not_subscribed(account in conn.account_all_trades, channel)
            conn.account_all_trades.add(account)
            self._enqueue(
                conn,
                _dumps(
                    {
                        "type": "subscribed/account_all_trades",
                        "channel": f"account_all_trades:{account}",
                        "trades": {},
                    }
                ),
                False,
                True,
            )
        else:
            raise _Refused(WS_CODE_INVALID_CHANNEL, "Invalid Channel")

    def _add_private(
        self, conn: _Conn, key: tuple[int | None, int], expiry: int, channel: str
    ) -> None:
        """A private subscription lives until its token expires (then an error frame)."""
        conn.account_orders[key] = expiry
        delay = max(expiry - time.time(), 0.0)
        conn.token_timers[key] = asyncio.get_running_loop().call_later(
            delay, self._end_private, conn, key, channel
        )

    def _end_private(self, conn: _Conn, key: tuple[int | None, int], channel: str) -> None:
        conn.token_timers.pop(key, None)
        if conn.account_orders.pop(key, None) is not None:
            self._ws_error(conn, WS_CODE_INVALID_AUTH, f"{channel}: token expired")

    def _ws_book(self, market_id: int, channel: str) -> VenueBook:
        book = self.market.book_by_market_id(market_id)
        if book is None:
            raise _Refused(WS_CODE_INVALID_CHANNEL, "Invalid Channel")
        return book

    def _ws_token(self, auth: Any, account: int) -> int:
        try:
            self._check_token(auth if isinstance(auth, str) else None, account)
        except _Refused as refused:
            raise _Refused(WS_CODE_INVALID_AUTH, refused.message) from None
        return int(str(auth).split(":")[0])

    def _book_snapshot(self, book: VenueBook) -> str:
        market_id = book.rules.market_id
        bids, asks = book.levels(250)
        nonce = book.sequence
        # A fresh subscriber joins here: the next update's begin_nonce is this nonce.
        self._book_nonce[market_id] = nonce
        offset = self._book_offsets[market_id]
        return _dumps(
            {
                "type": "subscribed/order_book",
                "channel": f"order_book:{market_id}",
                "offset": offset,
                "order_book": {
                    "code": 0,
                    "asks": self._book_levels_json(book, asks),
                    "bids": self._book_levels_json(book, bids),
                    "offset": offset,
                    "nonce": nonce,
                    "begin_nonce": nonce,
                },
            }
        )

    def _unsubscribe(self, conn: _Conn, channel: str) -> None:
        parts = channel.split("/")
        try:
            ids = [int(p) for p in parts[1:]]
        except ValueError:
            raise _Refused(WS_CODE_INVALID_CHANNEL, "Invalid Channel") from None
        name = parts[0]
        subscribed: set[Any]
        key: Any
        if name == "order_book" and len(ids) == 1:
            subscribed, key = conn.order_books, ids[0]
        elif name == "trade" and len(ids) == 1:
            subscribed, key = conn.trades, ids[0]
        elif name == "account_all" and len(ids) == 1:
            subscribed, key = conn.account_all, ids[0]
        elif name == "account_all_trades" and len(ids) == 1:
            subscribed, key = conn.account_all_trades, ids[0]
        elif name in ("account_orders", "account_all_orders") and len(ids) in (1, 2):
            key = (ids[0], ids[1]) if len(ids) == 2 else (None, ids[0])
            if key not in conn.account_orders:
                raise _Refused(WS_CODE_NOT_SUBSCRIBED, f"Not Subscribed to : {channel}")
            del conn.account_orders[key]
            timer = conn.token_timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            subscribed = set()
        else:
            raise _Refused(WS_CODE_INVALID_CHANNEL, "Invalid Channel")
        if name not in ("account_orders", "account_all_orders"):
            if key not in subscribed:
                raise _Refused(WS_CODE_NOT_SUBSCRIBED, f"Not Subscribed to : {channel}")
            subscribed.discard(key)
        self._enqueue(conn, _dumps({"type": "unsubscribed", "channel": channel}), False)


_HTTP_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def _message_account(msg: Any) -> str | None:
    """The account a client WS message names (a tx's AccountIndex, an account channel)."""
    if not isinstance(msg, dict):
        return None
    data = msg.get("data")
    if isinstance(data, dict) and isinstance(data.get("tx_info"), dict):
        account = data["tx_info"].get("AccountIndex")
        return None if account is None else str(account)
    channel = msg.get("channel")
    if isinstance(channel, str) and channel.startswith("account"):
        return channel.rsplit("/", 1)[-1]
    return None


def _trade_key(trade: dict[str, Any]) -> tuple[int, int]:
    return trade["timestamp"], trade["trade_id"]


def _parse_cursor(raw: str | None) -> tuple[int, int] | None:
    """The simulator's cursor: "<timestamp>.<trade id>" of the last trade of a page."""
    if not raw:
        return None
    try:
        ts, trade_id = raw.split(".")
        return int(ts), int(trade_id)
    except ValueError:
        raise _Refused(CODE_INVALID_PARAM, "invalid cursor") from None


def _too_many(retry_after_s: float) -> web.Response:
    response = _json({"code": CODE_TOO_MANY_REQUESTS, "message": _HTTP_REASONS[429]}, status=429)
    response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return response


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=_dumps(body), status=status, content_type="application/json")


def _opt_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise _Refused(CODE_INVALID_PARAM, f"{name} must be an integer") from None


def _req_int(request: web.Request, name: str) -> int:
    value = _opt_int(request, name)
    if value is None:
        raise _Refused(CODE_INVALID_PARAM, f"{name} is required")
    return value

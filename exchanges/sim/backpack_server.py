"""A simulated Backpack venue on 127.0.0.1: the real REST + WebSocket protocol over a SimMarket.

The real bpx-py async `Account`/`Public` clients work against it unchanged but for their base
URL (`account.BPX_API_URL = server.api_url`, `public.BASE_URL = server.api_url`), and any
WebSocket client speaking Backpack's stream protocol works against `server.ws_url`.

REST and WebSocket share one port: `api_url` is `http://127.0.0.1:PORT/` and `ws_url` is
`ws://127.0.0.1:PORT/` (a WebSocket upgrade on the root path). All venue-side truth lives in
the `SimMarket`; this module only translates the wire protocol to and from it, and injects the
server-level faults of the market's `FaultPlan` (see `exchanges/sim/faults.py`):

- `http_429` / `http_500` / `http_503`: answered instead of serving an `api/`/`wapi/` request.
- `ambiguous_order`: the order is executed, but the reply is held `ambiguous_delay_s`.
- `post_only_reject`: a non-crossing post-only order is rejected as crossing.
- `ws_drop`: checked before each data message; the TCP connection is aborted (no close frame).
- `ws_delay`: each data message may be held `delay_s()` before it is sent (order is kept).
- `duplicate_event` / `reorder_event`: an `account.orderUpdate` message is sent twice / held
  and sent after the next one (or after `reorder_hold_s` when no next one comes).
- `depth_gap`: a depth delta is not sent, so the client sees a hole in the U/u sequence.

The per-event faults (duplicate, reorder, depth gap) are decided when the event is produced,
so an armed fault hits the very next event; the transport faults (drop, delay) when a message
is about to be written.

The venue is as strict as the real one ("Second reading" in protocols/backpack.md):

- Payloads are typed: `clientId` in an order or cancel body must be a JSON u32 (bpx-py's
  `cancel_order(client_id=...)` sends a string: 400 `INVALID_CLIENT_REQUEST` "parse request
  payload error: Expected input type "u32", ..."). A cancel of a gone order is 400
  `RESOURCE_NOT_FOUND` "Not Found" (404 now and then under a fault preset). With
  `cancel_accepted_202` (and now and then under a fault preset) a cancel is answered 202 with
  no body and executed `cancel_202_delay_s` later: the outcome comes on the stream only. (Under
  faults these draws use the plan's `ambiguous_order` probability and a generator of ours.)
- `/wapi/v1/history/fills|orders` trail the engine by `history_lag_s`: a fill shows there, and
  an order shows as it is now, only that long after the engine made the change. History
  `createdAt`/`timestamp` are ISO strings without a zone; `/api/v1/order(s)` give integer ms.
  `add_system_fill` (or `POST /_sim/system_fill {account, ticker, side, qty, price,
  trade_id: null|0}`) puts a venue-made fill (history only) with a null/0 `tradeId` there.
- `orderBookState` (`set_market_state`, or `POST /_sim/market_state {ticker|symbol, state}`):
  Open; Closed refuses orders and cancels; CancelOnly refuses new orders; LimitOnly refuses
  market orders; PostOnly refuses orders that are not post-only (400 `INVALID_ORDER`).
- `GET /api/v1/depth` `timestamp` is in microseconds; `/api/v1/assets` and
  `/api/v1/securities` answer in the shapes ccxt's `load_markets` parses.
- WebSocket: a Ping frame every `ping_interval`; a connection that leaves one unanswered
  `pong_timeout_s` is dropped.
- Rate limit: `rate_limit` requests per rolling minute per API key (public requests: per IP);
  past it, 429 `TOO_MANY_REQUESTS` with `Retry-After`. Every `api/`/`wapi/` request is counted
  in `ledger` (by the API key's account, and by IP; keys are "METHOD /path"; order placements
  and cancels also as `send_tx`), 429s too, and every client WebSocket message (by IP, and
  by the account of the key that signs it or of the connection's signed subscribe); `/_sim/`
  routes are neither counted nor limited. Read it at `GET /_sim/requests`.

Error bodies are `{"code": ..., "message": ...}` with the venue's codes (`INVALID_SIGNATURE`,
`INVALID_CLIENT_REQUEST`, `INVALID_MARKET`, `INVALID_ORDER`, `RESOURCE_NOT_FOUND`,
`TOO_MANY_REQUESTS`, ...). WebSocket errors are `{"id": <id or null>, "error": {"code": int,
"message": str}}`: 4000 bad request, 4001 bad signature / unknown key, 4002 expired
timestamp, 4003 unknown stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from aiohttp import WSMsgType, web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exchanges.base import Side
from exchanges.sim.accounting import RequestLedger, RollingLimit, add_requests_route, client_ip
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

VENUE: Final = "backpack"
QUOTE = "USDC"
POST_ONLY_CROSS_MESSAGE = "Order would immediately match and take."

# (HTTP method, path) -> the instruction bpx-py signs for it. Paths without an entry are public.
INSTRUCTIONS: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/order"): "orderExecute",
    ("DELETE", "/api/v1/order"): "orderCancel",
    ("GET", "/api/v1/order"): "orderQuery",
    ("GET", "/api/v1/orders"): "orderQueryAll",
    ("DELETE", "/api/v1/orders"): "orderCancelAll",
    ("GET", "/api/v1/position"): "positionQuery",
    ("GET", "/api/v1/capital"): "balanceQuery",
    ("GET", "/api/v1/capital/collateral"): "collateralQuery",
    ("GET", "/wapi/v1/history/fills"): "fillHistoryQueryAll",
    ("GET", "/wapi/v1/history/orders"): "orderHistoryQueryAll",
}

_STATUS = {
    "new": "New",
    "partially_filled": "PartiallyFilled",
    "filled": "Filled",
    "cancelled": "Cancelled",
    "expired": "Expired",
}
_EVENT = {
    "accepted": "orderAccepted",
    "fill": "orderFill",
    "cancelled": "orderCancelled",
    "expired": "orderExpired",
}
_HTTP_FAULT_BODY = {
    429: ("TOO_MANY_REQUESTS", "Too many requests"),
    500: ("SERVER_ERROR", "Internal server error"),
    503: ("SERVICE_UNAVAILABLE", "Service unavailable"),
}

WS_BAD_REQUEST = 4000
WS_BAD_SIGNATURE = 4001
WS_EXPIRED = 4002
WS_UNKNOWN_STREAM = 4003

# A slow reader is disconnected instead of letting its queue grow without bound.
_MAX_QUEUED_MESSAGES = 200_000
_MAX_TIMINGS = 100_000  # benchmark timestamps kept (fill events written)


def generate_keypair() -> tuple[str, str]:
    """A fresh ED25519 key pair as Backpack uses them: (base64 public key, base64 32-byte seed)."""
    private = ed25519.Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(public).decode(), base64.b64encode(seed).decode()


def signing_string(instruction: str, params: dict[str, Any], timestamp: int, window: int) -> str:
    """The exact string bpx-py signs: sorted params, booleans lower-case, then timestamp+window."""
    parts = [f"instruction={instruction}"]
    for key, value in sorted(params.items()):
        text = str(value).lower() if isinstance(value, bool) else str(value)
        parts.append(f"{key}={text}")
    parts.append(f"timestamp={timestamp}&window={window}")
    return "&".join(parts)


def fmt(value: Decimal) -> str:
    """A decimal as the venue writes it: plain notation, no exponent, no trailing zeros."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _now_us() -> int:
    return time.time_ns() // 1_000


def _iso_ms(ts_ms: int) -> str:
    """Backpack's history timestamps: ISO-8601 UTC without zone, millisecond precision."""
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}"


class ApiError(Exception):
    """An error answer: HTTP status and the venue's `{code, message}` body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.json_response({"code": self.code, "message": self.message}, status=self.status)


def _side_wire(side: Side) -> str:
    return "Bid" if side is Side.BUY else "Ask"


def _parse_side(text: object) -> Side:
    if text == "Bid":
        return Side.BUY
    if text == "Ask":
        return Side.SELL
    raise ApiError(400, "INVALID_CLIENT_REQUEST", f"Invalid side: {text!r}")


def _parse_decimal(value: object, name: str, code: str = "INVALID_CLIENT_REQUEST") -> Decimal:
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ApiError(400, code, f"Invalid {name}: {value!r}") from exc
    if not result.is_finite():
        raise ApiError(400, code, f"Invalid {name}: {value!r}")
    return result


def _parse_int(value: object, name: str) -> int:
    try:
        return int(str(value))
    except ValueError as exc:
        raise ApiError(400, "INVALID_CLIENT_REQUEST", f"Invalid {name}: {value!r}") from exc


def _expiry_reason(order: SimOrder) -> str:
    reason = order.expiry_reason
    if "PostOnly" in reason:
        return "PostOnlyTaker"
    if order.tif == "IOC" or order.order_type == "market":
        return "ImmediateOrCancel"
    return reason or "Unknown"


def order_object(order: SimOrder, symbol: str, *, history: bool = False) -> dict[str, Any]:
    """The REST order object, as `POST/GET/DELETE api/v1/order` and `api/v1/orders` return it
    (`createdAt` integer ms), or as order history does (`history`: ISO without a zone)."""
    body: dict[str, Any] = {
        "id": str(order.order_id),
        "clientId": order.client_id,
        "symbol": symbol,
        "side": _side_wire(order.side),
        "orderType": "Limit" if order.order_type == "limit" else "Market",
        "timeInForce": order.tif,
        "quantity": fmt(order.qty),
        "quoteQuantity": None,
        "executedQuantity": fmt(order.filled_qty),
        "executedQuoteQuantity": fmt(order.filled_quote),
        "price": fmt(order.price) if order.order_type == "limit" else None,
        "triggerPrice": None,
        "postOnly": order.post_only,
        "reduceOnly": order.reduce_only,
        "selfTradePrevention": "RejectTaker",
        "status": _STATUS[order.status],
        "createdAt": _iso_ms(order.created_ms) if history else order.created_ms,
    }
    if order.status == "expired":
        body["expiryReason"] = _expiry_reason(order)
    return body


def fill_object(fill: SimFill, symbol: str) -> dict[str, Any]:
    """One row of `wapi/v1/history/fills`."""
    return {
        "tradeId": fill.trade_id,
        "orderId": str(fill.order_id),
        "clientId": None if fill.client_id is None else str(fill.client_id),
        "symbol": symbol,
        "side": _side_wire(fill.side),
        "price": fmt(fill.price),
        "quantity": fmt(fill.qty),
        "fee": fmt(fill.fee),
        "feeSymbol": QUOTE,
        "isMaker": fill.is_maker,
        "systemOrderType": None,
        "timestamp": _iso_ms(fill.ts_ms),
    }


def order_update_data(update: OrderUpdate, symbol: str) -> dict[str, Any]:
    """The `data` of an `account.orderUpdate` message, with every documented field."""
    order = update.order
    fill = update.fill
    quote_qty = order.qty * order.price if order.order_type == "limit" else order.filled_quote
    engine_us = (fill.ts_ms if fill is not None else (order.updated_ms or order.created_ms)) * 1000
    data: dict[str, Any] = {
        "e": _EVENT[update.kind],
        "E": _now_us(),
        "s": symbol,
        "i": str(order.order_id),
    }
    if order.client_id is not None:
        data["c"] = order.client_id
    data.update(
        {
            "S": _side_wire(order.side),
            "o": "LIMIT" if order.order_type == "limit" else "MARKET",
            "f": order.tif,
            "q": fmt(order.qty),
            "Q": fmt(quote_qty),
            "p": fmt(order.price),
            "X": _STATUS[order.status],
            "z": fmt(order.filled_qty),
            "Z": fmt(order.filled_quote),
            "t": fill.trade_id if fill is not None else None,
            "V": "RejectTaker",
            "r": order.reduce_only,
            "y": order.post_only,
            "O": "USER",
            "T": engine_us,
        }
    )
    if fill is not None:
        data.update(
            {
                "l": fmt(fill.qty),
                "L": fmt(fill.price),
                "m": fill.is_maker,
                "n": fmt(fill.fee),
                "N": QUOTE,
            }
        )
    if update.kind == "expired":
        data["R"] = _expiry_reason(order)
    return data


def _levels_wire(levels: list[tuple[Decimal, Decimal]]) -> list[list[str]]:
    return [[fmt(price), fmt(qty)] for price, qty in levels]


MARKET_STATES: Final = ("Open", "Closed", "CancelOnly", "LimitOnly", "PostOnly")
_U32_MAX = 2**32 - 1
_MAX_TRAILS = 200_000  # orders whose history view is tracked (oldest forgotten first)


def _payload_type_error(expected: str, value: object, payload: str) -> ApiError:
    """The venue's strict payload parser, word for word in style: a wrong JSON type is refused
    before anything else is looked at."""
    found = "string" if isinstance(value, str) else type(value).__name__
    if isinstance(value, bool):
        found = "boolean"
    elif isinstance(value, int | float):
        found = "number"
    return ApiError(
        400,
        "INVALID_CLIENT_REQUEST",
        f'parse request payload error: Expected input type "{expected}", found "{found}" '
        f'(occurred while parsing "{payload}")',
    )


def _body_u32(params: dict[str, Any], name: str, payload: str) -> int | None:
    """A uint32 field of a JSON body: a JSON integer in range, never a string."""
    if name not in params or params[name] is None:
        return None
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U32_MAX:
        raise _payload_type_error("u32", value, payload)
    return value


@dataclass
class _OrderTrail:
    """What order history shows of one order while its newest changes are still in flight."""

    pending: deque[tuple[float, SimOrder]] = field(default_factory=deque)
    shown: SimOrder | None = None


class HistoryLag:
    """`/wapi/v1/history/*` trails the engine: a fill, or a change of an order, shows there only
    `lag_s` after the engine made it. Fed from the market's order events (snapshots); anything
    older than the lag (or never seen, e.g. before the server started) shows as it is now."""

    def __init__(self, lag_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if lag_s < 0:
            raise ValueError("history_lag_s must be >= 0")
        self.lag_s = lag_s
        self.clock = clock
        self._fills: dict[int, float] = {}  # trade id -> when the engine made it
        self._fill_queue: deque[tuple[float, int]] = deque()
        # Kept after they catch up (bounded): the next change must show the state before it.
        self._orders: OrderedDict[int, _OrderTrail] = OrderedDict()
        self._order_queue: deque[tuple[float, int]] = deque()

    def note(self, update: OrderUpdate) -> None:
        if self.lag_s <= 0:
            return
        now = self.clock()
        self._prune(now)
        order_id = update.order.order_id
        trail = self._orders.get(order_id)
        if trail is None:
            trail = self._orders[order_id] = _OrderTrail()
            while len(self._orders) > _MAX_TRAILS:
                self._orders.popitem(last=False)
        trail.pending.append((now, update.order))
        self._order_queue.append((now, order_id))
        if update.fill is not None:
            self._fills[update.fill.trade_id] = now
            self._fill_queue.append((now, update.fill.trade_id))

    def fill_visible(self, trade_id: int) -> bool:
        made = self._fills.get(trade_id)
        return made is None or made + self.lag_s <= self.clock()

    def visible_at(self, made: float) -> bool:
        return made + self.lag_s <= self.clock()

    def order_view(self, order: SimOrder) -> SimOrder | None:
        """The order as history shows it now; None while history has not heard of it yet."""
        trail = self._orders.get(order.order_id)
        if trail is None:
            return order
        self._mature(trail, self.clock())
        if not trail.pending:
            return order  # caught up: history shows the engine's state
        return trail.shown

    def _mature(self, trail: _OrderTrail, now: float) -> None:
        while trail.pending and trail.pending[0][0] + self.lag_s <= now:
            trail.shown = trail.pending.popleft()[1]

    def _prune(self, now: float) -> None:
        horizon = now - self.lag_s
        while self._fill_queue and self._fill_queue[0][0] <= horizon:
            _, trade_id = self._fill_queue.popleft()
            if self._fills.get(trade_id, now) <= horizon:
                del self._fills[trade_id]
        while self._order_queue and self._order_queue[0][0] <= horizon:
            _, order_id = self._order_queue.popleft()
            trail = self._orders.get(order_id)
            if trail is not None:
                self._mature(trail, now)


@dataclass(frozen=True, slots=True)
class SystemFill:
    """A fill the venue itself made on an account (liquidation, ADL, collateral conversion):
    it shows in fill history only, with a null or zero trade id and no order of the account."""

    account: int
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    trade_id: int | None
    ts_ms: int
    made: float  # monotonic, for the history lag
    system_order_type: str = "LiquidatePositionOnBackstop"

    def row(self) -> dict[str, Any]:
        return {
            "tradeId": self.trade_id,
            "orderId": None,
            "clientId": None,
            "symbol": self.symbol,
            "side": _side_wire(self.side),
            "price": fmt(self.price),
            "quantity": fmt(self.qty),
            "fee": "0",
            "feeSymbol": QUOTE,
            "isMaker": False,
            "systemOrderType": self.system_order_type,
            "timestamp": _iso_ms(self.ts_ms),
        }


class _WsConnection:
    """One accepted WebSocket: its subscriptions, its account (after a signed subscribe) and
    the queue its writer task drains, so market listeners never await."""

    __slots__ = (
        "account",
        "awaiting_pong_since",
        "held",
        "held_timer",
        "ip",
        "keepalive",
        "queue",
        "request",
        "streams",
        "writer",
        "ws",
    )

    def __init__(self, ws: web.WebSocketResponse, request: web.Request):
        self.ws = ws
        self.request = request
        self.account: int | None = None
        self.streams: set[str] = set()
        # (kind, text): kind is "depth", "order" or "other" (fault decisions depend on it)
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.held: str | None = None  # an order update held back by 'reorder_event'
        self.held_timer: asyncio.TimerHandle | None = None
        self.writer: asyncio.Task[None] | None = None
        self.keepalive: asyncio.Task[None] | None = None
        self.awaiting_pong_since: float | None = None  # monotonic time of an unanswered Ping
        self.ip = client_ip(request)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, as a network fault would."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class BackpackServer:
    """Backpack REST + WebSocket on loopback over a `SimMarket` (see the module docstring)."""

    def __init__(
        self,
        market: SimMarket,
        *,
        api_keys: dict[str, int],
        host: str = "127.0.0.1",
        port: int = 0,
        window_max_ms: int = 60_000,
        ping_interval: float = 60.0,
        reorder_hold_s: float = 0.5,
        rate_limit: int | None = 2000,
        history_lag_s: float = 0.5,
        cancel_accepted_202: bool = False,
        pong_timeout_s: float = 120.0,
    ):
        """`rate_limit`: requests per rolling minute per API key (public requests: per IP);
        None = unlimited. `history_lag_s`: how far `/wapi/v1/history/*` trails the engine.
        `cancel_accepted_202`: answer every cancel of a live order 202 with no body (the
        cancel happens `cancel_202_delay_s` later). `ping_interval`/`pong_timeout_s`: the
        server's WebSocket Ping period, and how long an unanswered Ping is tolerated."""
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError("rate_limit must be positive (or None for unlimited)")
        if ping_interval <= 0 or pong_timeout_s <= 0:
            raise ValueError("ping_interval and pong_timeout_s must be positive")
        self.market = market
        self.api_keys = dict(api_keys)
        self.host = host
        self.port = port
        self.window_max_ms = window_max_ms
        self.ping_interval = ping_interval
        self.pong_timeout_s = pong_timeout_s
        self.reorder_hold_s = reorder_hold_s
        self.rate_limit = rate_limit
        self.cancel_accepted_202 = cancel_accepted_202
        self.cancel_202_delay_s = 0.05
        self.history = HistoryLag(history_lag_s)
        self.ledger = RequestLedger(VENUE)
        self._limits: dict[str, RollingLimit] = {}  # "key:<api key>" or "ip:<address>"
        self._market_states: dict[str, str] = {}  # symbol -> orderBookState (absent: Open)
        self._system_fills: list[SystemFill] = []
        # Venue-shaped randomness not in the fault plan's vocabulary (a cancel answered 202, a
        # gone order answered 404 instead of 400), drawn at the plan's `ambiguous_order`
        # probability from a generator of our own, so the plan's own draws are untouched.
        self._cancel_rng = random.Random(f"{market.faults.seed}:backpack:cancel")
        self.cancels_accepted_202 = 0
        self.pongs_missed = 0
        self.connections_opened = 0
        self.requests_served = 0
        # Benchmarks: trade id -> perf_counter_ns() when its orderFill event was handed to a
        # WebSocket (the first time, for the first connection). Bounded.
        self.fill_written_ns: OrderedDict[str, int] = OrderedDict()
        self._verifiers: dict[str, ed25519.Ed25519PublicKey] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._conns: set[_WsConnection] = set()
        self._unsubscribe: list[Callable[[], None]] = []
        self._positions_seen: dict[tuple[int, str], Decimal] = {}
        self._ticker_stats: dict[str, dict[str, Decimal]] = {}
        self.app = self._build_app()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    async def start(self) -> None:
        for ticker in self.market.tickers:
            book = self.market.book(VENUE, ticker)
            self._unsubscribe.append(book.on_book(self._book_listener(book)))
            self._unsubscribe.append(book.on_order(self._order_listener(book)))
            self._unsubscribe.append(book.on_trade(self._trade_listener(book)))
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        self._count_connections(self._runner)
        self._site = web.TCPSite(self._runner, self.host, self.port)
        await self._site.start()
        self.port = self._site.port
        log.info("backpack sim listening on %s", self.api_url)

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for conn in list(self._conns):
            if conn.writer is not None:
                conn.writer.cancel()
            if conn.keepalive is not None:
                conn.keepalive.cancel()
            with contextlib.suppress(Exception):
                await conn.ws.close()
        self._conns.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def timings(self) -> dict[str, object]:
        """Benchmark timestamps (perf_counter_ns): `fill_written_ns` by trade id."""
        return {"fill_written_ns": dict(self.fill_written_ns)}

    def _note_fill_written(self, text: str, written_ns: int) -> None:
        """Remember when the orderFill event in `text` went out (benchmarks; first write of a
        trade only, so a duplicated event or a second connection does not move it)."""
        try:
            trade_id = json.loads(text)["data"]["t"]
        except (ValueError, KeyError, TypeError):
            return
        if trade_id is None or str(trade_id) in self.fill_written_ns:
            return
        self.fill_written_ns[str(trade_id)] = written_ns
        while len(self.fill_written_ns) > _MAX_TIMINGS:
            self.fill_written_ns.popitem(last=False)

    def drop_ws(self) -> None:
        """Abort every WebSocket connection now (clients see an abnormal close)."""
        for conn in list(self._conns):
            conn.abort()

    def publish_raw(self, stream: str, text: str, *, account: int | None = None) -> None:
        """Send `{"stream": stream, "data": <text>}` verbatim to the connections subscribed to
        `stream` (only those of `account` when given): tests use it to inject malformed data.
        The message goes through the same writer and faults as real ones."""
        kind = "order" if stream.startswith("account.orderUpdate") else "other"
        self._publish((stream,), kind, text, account=account)

    def send_stream_error(self, account: int, code: int = 4001, message: str = "refused") -> None:
        """Send a WebSocket error frame (`{"id": null, "error": {...}}`) to the connections of
        `account`, as the venue does when it refuses a subscription."""
        text = json.dumps({"id": None, "error": {"code": code, "message": message}})
        for conn in self._conns:
            if conn.account == account:
                self._enqueue(conn, "other", text)

    def _count_connections(self, runner: web.AppRunner) -> None:
        """Count accepted TCP connections: every one passes through the low-level server's
        `connection_made` (one RequestHandler per connection, however many requests it serves)."""
        server = runner.server
        assert server is not None
        original = server.connection_made

        def counting(handler: Any, transport: asyncio.Transport) -> None:
            self.connections_opened += 1
            original(handler, transport)

        server.connection_made = counting  # type: ignore[method-assign]

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_middleware])
        app.router.add_get("/", self._ws_handler)
        public = [
            ("GET", "/api/v1/markets", self._markets),
            ("GET", "/api/v1/depth", self._depth),
            ("GET", "/api/v1/ticker", self._ticker),
            ("GET", "/api/v1/ping", self._ping),
            ("GET", "/api/v1/time", self._time),
            ("GET", "/api/v1/assets", self._assets),
            ("GET", "/api/v1/securities", self._securities),
        ]
        for method, path, public_handler in public:
            app.router.add_route(method, path, public_handler)
        private = {
            ("POST", "/api/v1/order"): self._place_order,
            ("DELETE", "/api/v1/order"): self._cancel_order,
            ("GET", "/api/v1/order"): self._query_order,
            ("GET", "/api/v1/orders"): self._open_orders,
            ("DELETE", "/api/v1/orders"): self._cancel_all,
            ("GET", "/api/v1/position"): self._positions,
            ("GET", "/api/v1/capital"): self._balances,
            ("GET", "/api/v1/capital/collateral"): self._collateral,
            ("GET", "/wapi/v1/history/fills"): self._fill_history,
            ("GET", "/wapi/v1/history/orders"): self._order_history,
        }
        for (method, path), handler in private.items():
            app.router.add_route(method, path, self._signed(INSTRUCTIONS[(method, path)], handler))
        try:
            from exchanges.sim.control import add_control_routes, add_timings_route
        except ImportError:  # the control module is optional for the server itself
            log.debug("exchanges.sim.control not available; no control routes")
        else:
            add_control_routes(app, self.market, venue=VENUE)
            add_timings_route(app, self.timings)
        add_requests_route(app, self.ledger)
        app.router.add_post("/_sim/market_state", self._control_market_state)
        app.router.add_post("/_sim/system_fill", self._control_system_fill)
        return app

    # -- venue-level control (tests, demo) ---------------------------------------------------

    def set_market_state(self, symbol: str, state: str) -> None:
        """Set a market's `orderBookState` (a symbol like "BTC_USDC_PERP", or a ticker)."""
        if state not in MARKET_STATES:
            raise ValueError(f"unknown market state {state!r} (known: {', '.join(MARKET_STATES)})")
        self._market_states[self._resolve_book(symbol).rules.symbol] = state

    def market_state(self, symbol: str) -> str:
        return self._market_states.get(symbol, "Open")

    def add_system_fill(
        self,
        account: int,
        ticker: str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        trade_id: int | None = None,
    ) -> SystemFill:
        """Put a venue-made fill (tradeId null or 0) in the account's fill history, as a
        backstop liquidation would. History only: it moves neither the book nor the position."""
        if trade_id not in (None, 0):
            raise ValueError("a system fill's trade id is None or 0")
        if qty <= 0 or price <= 0:
            raise ValueError("qty and price must be positive")
        fill = SystemFill(
            account=account,
            symbol=self._resolve_book(ticker).rules.symbol,
            side=side,
            qty=qty,
            price=price,
            trade_id=trade_id,
            ts_ms=self.market.now_ms(),
            made=self.history.clock(),
        )
        self._system_fills.append(fill)
        return fill

    def _resolve_book(self, name: str) -> VenueBook:
        book = self.market.book_by_symbol(VENUE, name)
        if book is None and name.upper() in self.market.tickers:
            book = self.market.book(VENUE, name.upper())
        if book is None:
            raise ValueError(f"unknown market {name!r}")
        return book

    async def _control_market_state(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            name = body.get("symbol") or body.get("ticker")
            self.set_market_state(str(name), str(body.get("state")))
        except (ValueError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        symbol = self._resolve_book(str(name)).rules.symbol
        return web.json_response({"symbol": symbol, "orderBookState": self.market_state(symbol)})

    async def _control_system_fill(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            side = {"buy": Side.BUY, "sell": Side.SELL, "Bid": Side.BUY, "Ask": Side.SELL}
            fill = self.add_system_fill(
                int(body["account"]),
                str(body["ticker"]),
                side[body["side"]],
                Decimal(str(body["qty"])),
                Decimal(str(body["price"])),
                trade_id=body.get("trade_id"),
            )
        except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as exc:
            return web.json_response({"error": f"bad system fill: {exc!r}"}, status=400)
        return web.json_response({"fill": fill.row()})

    # -- REST plumbing -----------------------------------------------------------------------

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every venue request (`api/`, `wapi/`; never `/_sim/` nor the WebSocket upgrade): count
        it, apply the rate limit, then the HTTP faults, then serve it."""
        path = request.path
        if path.startswith(("/api/", "/wapi/")):
            self.requests_served += 1
            ip = client_ip(request)
            api_key, account = self._claimed_account(request)
            ledger_account = None if account is None else str(account)
            self.ledger.request(ledger_account, ip, f"{request.method} {path}")
            if request.method in ("POST", "DELETE") and path in ("/api/v1/order", "/api/v1/orders"):
                self.ledger.send_tx(ledger_account, ip)
            limit_key = f"key:{api_key}" if account is not None else f"ip:{ip}"
            retry_after = self._limit(limit_key).take()
            if retry_after is not None:
                self.ledger.rejected_429(ledger_account, ip)
                return web.json_response(
                    {"code": "TOO_MANY_REQUESTS", "message": "Too many requests"},
                    status=429,
                    headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
                )
            status = self.market.faults.http_fault()
            if status is not None:
                if status == 429:
                    self.ledger.rejected_429(ledger_account, ip)
                code, message = _HTTP_FAULT_BODY.get(status, ("SERVER_ERROR", "Server error"))
                headers = {"Retry-After": "1"} if status == 429 else None
                return web.json_response(
                    {"code": code, "message": message}, status=status, headers=headers
                )
        try:
            return await handler(request)
        except ApiError as error:
            return error.response()

    def _claimed_account(self, request: web.Request) -> tuple[str | None, int | None]:
        """(API key, its account) for a private endpoint with a known key, else (None, None).
        Counted and limited by the key it claims, before the signature is checked (a refused
        request still spends its budget, as on the venue)."""
        if (request.method, request.path) not in INSTRUCTIONS:
            return None, None
        api_key = request.headers.get("X-API-Key")
        if api_key is None or api_key not in self.api_keys:
            return None, None
        return api_key, self.api_keys[api_key]

    def _limit(self, key: str) -> RollingLimit:
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = RollingLimit(self.rate_limit)
        return limit

    def _signed(self, instruction: str, handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            params = await self._request_params(request)
            account = self._authenticate(request, instruction, params)
            return await handler(request, account, params)

        return wrapped

    async def _request_params(self, request: web.Request) -> dict[str, Any]:
        if request.method == "GET":
            return dict(request.query)
        raw = await request.read()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "INVALID_CLIENT_REQUEST", "Body is not valid JSON") from exc
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_CLIENT_REQUEST", "Body must be a JSON object")
        return body

    def _verifier(self, api_key: str) -> ed25519.Ed25519PublicKey | None:
        verifier = self._verifiers.get(api_key)
        if verifier is None and api_key in self.api_keys:
            try:
                verifier = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(api_key))
            except ValueError:
                return None
            self._verifiers[api_key] = verifier
        return verifier

    def _authenticate(self, request: web.Request, instruction: str, params: dict[str, Any]) -> int:
        headers = request.headers
        api_key = headers.get("X-API-Key")
        signature = headers.get("X-Signature")
        timestamp_text = headers.get("X-Timestamp")
        if not api_key or not signature or not timestamp_text:
            raise ApiError(401, "UNAUTHORIZED", "Missing authentication headers")
        return self.verify(
            api_key, signature, timestamp_text, headers.get("X-Window", "5000"), instruction, params
        )

    def verify(
        self,
        api_key: str,
        signature: str,
        timestamp_text: str,
        window_text: str,
        instruction: str,
        params: dict[str, Any],
    ) -> int:
        """Check a signed request the way the venue does; the account id, or ApiError."""
        verifier = self._verifier(api_key)
        if verifier is None:
            raise ApiError(401, "UNAUTHORIZED", "Invalid API key")
        try:
            timestamp = int(timestamp_text)
            window = int(window_text)
        except ValueError as exc:
            raise ApiError(400, "INVALID_CLIENT_REQUEST", "Invalid timestamp or window") from exc
        if window <= 0 or window > self.window_max_ms:
            raise ApiError(400, "INVALID_CLIENT_REQUEST", "Invalid window")
        now = _now_ms()
        if now > timestamp + window:
            raise ApiError(400, "INVALID_CLIENT_REQUEST", "Request has expired")
        if timestamp > now + window:
            raise ApiError(400, "INVALID_CLIENT_REQUEST", "Request timestamp is in the future")
        message = signing_string(instruction, params, timestamp, window).encode()
        try:
            verifier.verify(base64.b64decode(signature), message)
        except (InvalidSignature, ValueError) as exc:
            raise ApiError(401, "INVALID_SIGNATURE", "Invalid signature") from exc
        return self.api_keys[api_key]

    def _book(self, symbol: object) -> VenueBook:
        book = self.market.book_by_symbol(VENUE, str(symbol)) if symbol else None
        if book is None:
            raise ApiError(400, "INVALID_MARKET", f"Invalid market: {symbol}")
        return book

    def _books(self, symbol: object) -> list[VenueBook]:
        if symbol:
            return [self._book(symbol)]
        return [self.market.book(VENUE, ticker) for ticker in self.market.tickers]

    # -- public REST ---------------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def _time(self, request: web.Request) -> web.Response:
        return web.Response(text=str(_now_ms()))

    async def _markets(self, request: web.Request) -> web.Response:
        markets = []
        for ticker, spec in self.market.tickers.items():
            rules = spec.backpack
            markets.append(
                {
                    "symbol": rules.symbol,
                    "baseSymbol": ticker,
                    "quoteSymbol": QUOTE,
                    "marketType": "PERP",
                    "orderBookState": self.market_state(rules.symbol),
                    "filters": {
                        "price": {
                            "minPrice": fmt(rules.tick),
                            "maxPrice": None,
                            "tickSize": fmt(rules.tick),
                        },
                        "quantity": {
                            "minQuantity": fmt(rules.min_qty),
                            "maxQuantity": fmt(rules.max_qty),
                            "stepSize": fmt(rules.step),
                        },
                    },
                    "fundingInterval": 3_600_000,
                    "createdAt": "2024-01-01T00:00:00",
                }
            )
        return web.json_response(markets)

    async def _depth(self, request: web.Request) -> web.Response:
        book = self._book(request.query.get("symbol"))
        bids, asks = book.levels(1000)
        # The venue lists both sides ascending by price (best bid last, best ask first).
        return web.json_response(
            {
                "asks": _levels_wire(asks),
                "bids": _levels_wire(list(reversed(bids))),
                "lastUpdateId": str(book.sequence),
                "timestamp": _now_us(),  # microseconds, unlike most other REST times
            }
        )

    async def _assets(self, request: web.Request) -> web.Response:
        """`GET api/v1/assets`: every asset of the listed markets, in the shape ccxt's
        `fetch_currencies` parses (`symbol`, `displayName`, `tokens` per blockchain)."""
        symbols = [QUOTE, *self.market.tickers]
        return web.json_response([_asset_row(symbol) for symbol in symbols])

    async def _securities(self, request: web.Request) -> web.Response:
        """`GET api/v1/securities`: tokenized stocks (`{asset, name, sessions}`); none here,
        so ccxt's `fetch_markets` adds no RFQ markets."""
        return web.json_response([])

    async def _ticker(self, request: web.Request) -> web.Response:
        book = self._book(request.query.get("symbol"))
        bid, _, ask, _ = book.top()
        stats = self._ticker_stats.get(book.ticker)
        last = stats["last"] if stats else (bid + ask) / 2
        body = {
            "symbol": book.rules.symbol,
            "firstPrice": fmt(stats["first"] if stats else last),
            "lastPrice": fmt(last),
            "priceChange": fmt(last - (stats["first"] if stats else last)),
            "priceChangePercent": "0",
            "high": fmt(stats["high"] if stats else last),
            "low": fmt(stats["low"] if stats else last),
            "volume": fmt(stats["volume"] if stats else Decimal(0)),
            "quoteVolume": fmt(stats["quote_volume"] if stats else Decimal(0)),
            "trades": str(int(stats["trades"]) if stats else 0),
        }
        return web.json_response(body)

    # -- private REST --------------------------------------------------------------------------

    async def _place_order(
        self, request: web.Request, account: int, params: dict[str, Any]
    ) -> web.Response:
        book = self._book(params.get("symbol"))
        side = _parse_side(params.get("side"))
        order_type = params.get("orderType")
        if "quantity" not in params:
            raise ApiError(400, "INVALID_CLIENT_REQUEST", "quantity is required")
        qty = _parse_decimal(params["quantity"], "quantity", "INVALID_QUANTITY")
        client_id = _body_u32(params, "clientId", "OrderExecutePayload")
        post_only = params.get("postOnly") is True
        reduce_only = params.get("reduceOnly") is True
        tif = params.get("timeInForce", "GTC")
        if tif not in ("GTC", "IOC"):
            raise ApiError(400, "INVALID_ORDER", f"timeInForce {tif} is not supported here")
        self._check_state_allows(book, order_type, post_only)
        faults = self.market.faults
        try:
            if order_type == "Limit":
                if "price" not in params:
                    raise ApiError(400, "INVALID_CLIENT_REQUEST", "price is required")
                price = _parse_decimal(params["price"], "price", "INVALID_PRICE")
                if post_only and faults.check("post_only_reject"):
                    raise ApiError(400, "INVALID_ORDER", POST_ONLY_CROSS_MESSAGE)
                order = book.place_limit(
                    account,
                    side,
                    qty,
                    price,
                    client_id=client_id,
                    post_only=post_only,
                    tif=tif,
                    reduce_only=reduce_only,
                )
            elif order_type == "Market":
                order = book.place_market(
                    account,
                    side,
                    qty,
                    self._market_worst_price(book, side),
                    client_id=client_id,
                    reduce_only=reduce_only,
                )
            else:
                raise ApiError(400, "INVALID_CLIENT_REQUEST", f"Invalid orderType: {order_type!r}")
        except WouldCross as exc:
            raise ApiError(400, "INVALID_ORDER", POST_ONLY_CROSS_MESSAGE) from exc
        except SimRejected as exc:
            raise ApiError(400, _reject_code(exc.reason), exc.reason) from exc
        body = order_object(order, book.rules.symbol)
        if faults.check("ambiguous_order"):
            # Executed, but the reply comes too late: the client cannot know the outcome.
            log.info("fault ambiguous_order: holding reply to order %s", order.order_id)
            await asyncio.sleep(faults.ambiguous_delay_s)
        return web.json_response(body)

    def _check_state_allows(self, book: VenueBook, order_type: object, post_only: bool) -> None:
        """Refuse a new order the market's `orderBookState` does not take."""
        state = self.market_state(book.rules.symbol)
        refused = {
            "Closed": "Order book is closed",
            "CancelOnly": "Order book is in cancel only mode",
        }.get(state)
        if state == "LimitOnly" and order_type != "Limit":
            refused = "Order book is in limit only mode"
        elif state == "PostOnly" and not post_only:
            refused = "Order book is in post only mode"
        if refused is not None:
            raise ApiError(400, "INVALID_ORDER", refused)

    @staticmethod
    def _market_worst_price(book: VenueBook, side: Side) -> Decimal:
        # Backpack market orders carry no price: a sell takes any bid (0 = no limit), a buy
        # anything up to twice the best ask.
        if side is Side.SELL:
            return Decimal(0)
        _, _, ask, _ = book.top()
        return ask * 2

    @staticmethod
    def _order_ref(params: dict[str, Any]) -> tuple[int | None, int | None]:
        order_id = _parse_int(params["orderId"], "orderId") if params.get("orderId") else None
        client_id = _parse_int(params["clientId"], "clientId") if params.get("clientId") else None
        if order_id is None and client_id is None:
            raise ApiError(400, "INVALID_CLIENT_REQUEST", "orderId or clientId is required")
        return order_id, client_id

    @staticmethod
    def _cancel_ref(params: dict[str, Any]) -> tuple[int | None, int | None]:
        """A cancel body's `orderId` (a string) or `clientId` (a JSON u32, never a string)."""
        client_id = _body_u32(params, "clientId", "OrderCancelPayload")
        raw_order_id = params.get("orderId")
        order_id = _parse_int(raw_order_id, "orderId") if raw_order_id else None
        if order_id is None and client_id is None:
            raise ApiError(400, "INVALID_CLIENT_REQUEST", "orderId or clientId is required")
        return order_id, client_id

    def _not_found(self) -> ApiError:
        """A gone order: 400 RESOURCE_NOT_FOUND; under faults sometimes 404 (the spec lists no
        404 for a cancel, a connector has seen one: both forms are "not found")."""
        status = 400
        probability = self.market.faults.probability("ambiguous_order")
        if probability > 0 and self._cancel_rng.random() < 0.5:
            status = 404
        return ApiError(status, "RESOURCE_NOT_FOUND", "Not Found")

    def _cancel_later(self) -> bool:
        """Answer this cancel 202 (accepted, executed shortly after)?"""
        if self.cancel_accepted_202:
            return True
        probability = self.market.faults.probability("ambiguous_order")
        return probability > 0 and self._cancel_rng.random() < probability

    async def _cancel_order(
        self, request: web.Request, account: int, params: dict[str, Any]
    ) -> web.Response:
        order_id, client_id = self._cancel_ref(params)
        book = self._book(params.get("symbol"))
        if self.market_state(book.rules.symbol) == "Closed":
            raise ApiError(400, "INVALID_ORDER", "Order book is closed")
        order = book.find_order(account, order_id=order_id, client_id=client_id)
        if order is None or not order.is_open:
            raise self._not_found()
        if self._cancel_later():
            self.cancels_accepted_202 += 1
            asyncio.get_running_loop().call_later(
                self.cancel_202_delay_s, self._cancel_accepted, book, account, order.order_id
            )
            return web.Response(status=202)
        book.cancel(account, order_id=order.order_id)
        return web.json_response(order_object(order, book.rules.symbol))

    @staticmethod
    def _cancel_accepted(book: VenueBook, account: int, order_id: int) -> None:
        """Execute a cancel answered 202; the outcome goes out on the order stream only."""
        with contextlib.suppress(OrderNotFound):  # filled meanwhile: its events tell
            book.cancel(account, order_id=order_id)

    async def _query_order(
        self, request: web.Request, account: int, params: dict[str, Any]
    ) -> web.Response:
        book = self._book(params.get("symbol"))
        order_id, client_id = self._order_ref(params)
        order = book.find_order(account, order_id=order_id, client_id=client_id)
        if order is None or not order.is_open:
            raise ApiError(404, "RESOURCE_NOT_FOUND", "Order not found")
        return web.json_response(order_object(order, book.rules.symbol))

    async def _open_orders(
        self, request: web.Request, account: int, params: dict[str, Any]
    ) -> web.Response:
        result: list[dict[str, Any]] = []
        for book in self._books(params.get("symbol")):
            result.extend(order_object(o, book.rules.symbol) for o in book.open_orders(account))
        return web.json_response(result)

    async def _cancel_all(
        self, request: web.Request, account: int, params: dict[str, Any]
    ) -> web.Response:
        book = self._book(params.get("symbol"))
        cancelled = book.cancel_all(account)
        return web.json_response([order_object(o, book.rules.symbol) for o in cancelled])

    def _position_row(self, book: VenueBook, account: int) -> dict[str, Any] | None:
        position = self.market.account(VENUE, account).positions.get(book.ticker)
        if position is None or position.qty == 0:
            return None
        bid, _, ask, _ = book.top()
        mark = (bid + ask) / 2
        unrealized = position.qty * (mark - position.entry_price)
        return {
            "symbol": book.rules.symbol,
            "netQuantity": fmt(position.qty),
            "netCost": fmt(position.qty * position.entry_price),  # signed: ccxt's side
            "netExposureQuantity": fmt(abs(position.qty)),
            "netExposureNotional": fmt(abs(position.qty) * mark),
            "entryPrice": fmt(position.entry_price),
            "breakEvenPrice": fmt(position.entry_price),
            "markPrice": fmt(mark),
            "estLiquidationPrice": "0",
            "pnlRealized": fmt(position.realized_pnl),
            "pnlUnrealized": fmt(unrealized),
            "cumulativeFundingPayment": "0",
            "positionId": f"{account}-{book.ticker}",
            "subaccountId": None,
            "imf": "0.02",
            "mmf": "0.0125",
        }

    async def _positions(
        self, request: web.Request, account: int, params: dict[str, Any]
    ) -> web.Response:
        rows = []
        for ticker in self.market.tickers:
            row = self._position_row(self.market.book(VENUE, ticker), account)
            if row is not None:
                rows.append(row)
        return web.json_response(rows)

    def _equity(self, account: int) -> tuple[Decimal, Decimal]:
        """(net equity, unrealized pnl) of an account."""
        sim_account = self.market.account(VENUE, account)
        equity = sim_account.collateral
        unrealized = Decimal(0)
        for ticker, position in sim_account.positions.items():
            equity += position.realized_pnl - position.fees_paid
            if position.qty:
                bid, _, ask, _ = self.market.book(VENUE, ticker).top()
                unrealized += position.qty * ((bid + ask) / 2 - position.entry_price)
        return equity + unrealized, unrealized

    async def _collateral(
        self, request: web.Request, account: int, params: dict[str, Any]
    ) -> web.Response:
        equity, unrealized = self._equity(account)
        quantity = self.market.account(VENUE, account).collateral
        return web.json_response(
            {
                "assetsValue": fmt(quantity),
                "borrowLiability": "0",
                "collateral": [
                    {
                        "symbol": QUOTE,
                        "assetMarkPrice": "1",
                        "totalQuantity": fmt(quantity),
                        "balanceNotional": fmt(quantity),
                        "collateralWeight": "1",
                        "collateralValue": fmt(quantity),
                        "openOrderQuantity": "0",
                        "lendQuantity": "0",
                        "availableQuantity": fmt(quantity),
                    }
                ],
                "imf": "0.02",
                "mmf": "0.0125",
                "liabilitiesValue": "0",
                "marginFraction": None,
                "unsettledEquity": fmt(equity - quantity),
                "pnlUnrealized": fmt(unrealized),
                "netEquity": fmt(equity),
                "netEquityAvailable": fmt(equity),
                "netEquityLocked": "0",
                "netExposureFutures": "0",
            }
        )

    async def _balances(
        self, request: web.Request, account: int, params: dict[str, Any]
    ) -> web.Response:
        equity, _ = self._equity(account)
        return web.json_response({QUOTE: {"available": fmt(equity), "locked": "0", "staked": "0"}})

    @staticmethod
    def _page(params: dict[str, Any]) -> tuple[int, int]:
        limit = _parse_int(params.get("limit", 100), "limit")
        offset = _parse_int(params.get("offset", 0), "offset")
        if not 0 <= limit <= 1000 or offset < 0:
            raise ApiError(400, "INVALID_CLIENT_REQUEST", "Invalid limit or offset")
        return limit, offset

    async def _fill_history(
        self, request: web.Request, account: int, params: dict[str, Any]
    ) -> web.Response:
        limit, offset = self._page(params)
        since = _parse_int(params.get("from", 0), "from")
        until = _parse_int(params["to"], "to") if "to" in params else None
        order_id = _parse_int(params["orderId"], "orderId") if params.get("orderId") else None
        symbols = {book.rules.symbol for book in self._books(params.get("symbol"))}
        history = self.history
        rows: list[tuple[int, int, dict[str, Any]]] = []  # (time, trade id, row)
        for book in self._books(params.get("symbol")):
            for fill in book.fills(account, since):
                if until is not None and fill.ts_ms >= until:
                    continue
                if order_id is not None and fill.order_id != order_id:
                    continue
                if not history.fill_visible(fill.trade_id):
                    continue  # made, but not in history yet
                rows.append((fill.ts_ms, fill.trade_id, fill_object(fill, book.rules.symbol)))
        if order_id is None:
            for system in self._system_fills:
                if (
                    system.account == account
                    and system.symbol in symbols
                    and since <= system.ts_ms
                    and (until is None or system.ts_ms < until)
                    and history.visible_at(system.made)
                ):
                    rows.append((system.ts_ms, system.trade_id or 0, system.row()))
        ascending = params.get("sortDirection") == "Asc"
        rows.sort(key=lambda row: (row[0], row[1]), reverse=not ascending)
        return web.json_response([row for _, _, row in rows[offset : offset + limit]])

    async def _order_history(
        self, request: web.Request, account: int, params: dict[str, Any]
    ) -> web.Response:
        limit, offset = self._page(params)
        order_id = _parse_int(params["orderId"], "orderId") if params.get("orderId") else None
        rows: list[tuple[SimOrder, str]] = []
        for book in self._books(params.get("symbol")):
            for order in book.orders(account):
                if order_id is not None and order.order_id != order_id:
                    continue
                shown = self.history.order_view(order)  # as it was `history_lag_s` ago
                if shown is not None:
                    rows.append((shown, book.rules.symbol))
        rows.sort(key=lambda row: row[0].order_id, reverse=True)  # newest first
        page = rows[offset : offset + limit]
        return web.json_response(
            [order_object(order, symbol, history=True) for order, symbol in page]
        )

    # -- market listeners -> WebSocket messages ------------------------------------------------

    def _book_listener(self, book: VenueBook) -> Callable[[BookDelta], None]:
        symbol = book.rules.symbol
        depth_streams = (f"depth.{symbol}", f"depth.200ms.{symbol}")
        ticker_stream = f"bookTicker.{symbol}"
        last_top: list[tuple[Decimal, Decimal, Decimal, Decimal] | None] = [None]

        def on_book(delta: BookDelta) -> None:
            if not self._conns:
                return
            data = {
                "e": "depth",
                "E": _now_us(),
                "s": symbol,
                "a": _levels_wire(delta.asks),
                "b": _levels_wire(delta.bids),
                "U": delta.first_id,
                "u": delta.last_id,
                "T": delta.ts_ms * 1000,
            }
            self._publish(depth_streams, "depth", json.dumps(data, separators=(",", ":")))
            top = book.top()
            if top != last_top[0]:
                last_top[0] = top
                ticker = {
                    "e": "bookTicker",
                    "E": _now_us(),
                    "s": symbol,
                    "a": fmt(top[2]),
                    "A": fmt(top[3]),
                    "b": fmt(top[0]),
                    "B": fmt(top[1]),
                    "u": str(delta.last_id),
                    "T": delta.ts_ms * 1000,
                }
                self._publish((ticker_stream,), "other", json.dumps(ticker, separators=(",", ":")))

        return on_book

    def _order_listener(self, book: VenueBook) -> Callable[[OrderUpdate], None]:
        symbol = book.rules.symbol
        order_streams = ("account.orderUpdate", f"account.orderUpdate.{symbol}")
        position_streams = ("account.positionUpdate", f"account.positionUpdate.{symbol}")

        def on_order(update: OrderUpdate) -> None:
            self.history.note(update)
            account = update.order.account
            data = order_update_data(update, symbol)
            self._publish(
                order_streams, "order", json.dumps(data, separators=(",", ":")), account=account
            )
            if update.fill is not None:
                self._publish_position(book, account, position_streams)

        return on_order

    def _publish_position(self, book: VenueBook, account: int, streams: tuple[str, ...]) -> None:
        key = (account, book.ticker)
        before = self._positions_seen.get(key, Decimal(0))
        data = self._position_data(book, account)
        after = Decimal(data["q"])
        self._positions_seen[key] = after
        if before == 0 and after != 0:
            data["e"] = "positionOpened"
        elif after == 0:
            data["e"] = "positionClosed"
        else:
            data["e"] = "positionAdjusted"
        self._publish(streams, "other", json.dumps(data, separators=(",", ":")), account=account)

    def _position_data(self, book: VenueBook, account: int) -> dict[str, Any]:
        position = self.market.account(VENUE, account).position(book.ticker)
        bid, _, ask, _ = book.top()
        mark = (bid + ask) / 2
        return {
            "E": _now_us(),
            "s": book.rules.symbol,
            "b": fmt(position.entry_price),
            "B": fmt(position.entry_price),
            "l": "0",
            "f": "0.02",
            "M": fmt(mark),
            "m": "0.0125",
            "q": fmt(position.qty),
            "Q": fmt(abs(position.qty)),
            "n": fmt(abs(position.qty) * mark),
            "i": f"{account}-{book.ticker}",
            "p": fmt(position.realized_pnl),
            "P": fmt(position.qty * (mark - position.entry_price)),
            "T": _now_us(),
        }

    def _trade_listener(self, book: VenueBook) -> Callable[[PublicTrade], None]:
        symbol = book.rules.symbol
        streams = (f"trade.{symbol}",)

        def on_trade(trade: PublicTrade) -> None:
            stats = self._ticker_stats.setdefault(
                book.ticker,
                {
                    "first": trade.price,
                    "high": trade.price,
                    "low": trade.price,
                    "volume": Decimal(0),
                    "quote_volume": Decimal(0),
                    "trades": Decimal(0),
                    "last": trade.price,
                },
            )
            stats["last"] = trade.price
            stats["high"] = max(stats["high"], trade.price)
            stats["low"] = min(stats["low"], trade.price)
            stats["volume"] += trade.qty
            stats["quote_volume"] += trade.qty * trade.price
            stats["trades"] += 1
            if not self._conns:
                return
            data = {
                "e": "trade",
                "E": _now_us(),
                "s": symbol,
                "p": fmt(trade.price),
                "q": fmt(trade.qty),
                "t": trade.trade_id,
                "m": trade.taker_side is Side.SELL,  # the buyer was the maker
                "T": trade.ts_ms * 1000,
            }
            self._publish(streams, "other", json.dumps(data, separators=(",", ":")))

        return on_trade

    def _publish(
        self, streams: tuple[str, ...], kind: str, data_json: str, *, account: int | None = None
    ) -> None:
        """Queue one event for every connection subscribed to one of `streams` (private events
        only for connections authenticated as `account`). Never awaits: called from the market."""
        for conn in self._conns:
            if account is not None and conn.account != account:
                continue
            for stream in streams:
                if stream in conn.streams:
                    if conn.queue.qsize() >= _MAX_QUEUED_MESSAGES:
                        log.warning("ws reader too slow, dropping its connection")
                        conn.abort()
                        break
                    self._enqueue(conn, kind, f'{{"stream":"{stream}","data":{data_json}}}')
                    break

    def _enqueue(self, conn: _WsConnection, kind: str, text: str) -> None:
        """Queue one message, taking the per-event faults now, in event order (so an armed
        fault hits the next event produced, whatever the writer task is doing): a depth delta
        may be skipped; an order update may be held until the next one, or sent twice."""
        faults = self.market.faults
        put = conn.queue.put_nowait
        if kind == "depth":
            if faults.check("depth_gap"):
                log.info("fault depth_gap: skipping a depth delta")
                return
        elif kind == "order":
            if conn.held is None and faults.check("reorder_event"):
                conn.held = text
                conn.held_timer = asyncio.get_running_loop().call_later(
                    self.reorder_hold_s, self._release_held, conn
                )
                return
            put((kind, text))
            if faults.check("duplicate_event"):
                put((kind, text))
            self._release_held(conn)
            return
        put((kind, text))

    @staticmethod
    def _release_held(conn: _WsConnection) -> None:
        """Queue the order update held back by 'reorder_event' (late, never lost)."""
        held, conn.held = conn.held, None
        if conn.held_timer is not None:
            conn.held_timer.cancel()
            conn.held_timer = None
        if held is not None:
            conn.queue.put_nowait(("order", held))

    # -- WebSocket -----------------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        # Our own keep-alive, not aiohttp's `heartbeat=` (which pings only after `heartbeat` s
        # without incoming data and closes after heartbeat/2 without a Pong): the venue pings
        # every `ping_interval` and drops a peer that leaves a Ping unanswered `pong_timeout_s`.
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        conn = _WsConnection(ws, request)
        self._conns.add(conn)
        self.ledger.ws_connected()
        conn.writer = asyncio.create_task(self._ws_writer(conn), name="bpx-sim-ws-writer")
        conn.keepalive = asyncio.create_task(self._ws_keepalive(conn), name="bpx-sim-ws-ping")
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._ws_command(conn, message.data)
                elif message.type == WSMsgType.BINARY:
                    self._count_ws_message(conn, None)
                    self._ws_error(conn, None, WS_BAD_REQUEST, "Expected a text frame")
                elif message.type == WSMsgType.PING:
                    await ws.pong(message.data)
                elif message.type == WSMsgType.PONG:
                    conn.awaiting_pong_since = None
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            self._conns.discard(conn)
            self.ledger.ws_closed()
            if conn.held_timer is not None:
                conn.held_timer.cancel()
            for task in (conn.writer, conn.keepalive):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return ws

    def _count_ws_message(self, conn: _WsConnection, command: object) -> None:
        """Counted under the IP and an account: the one whose key signs this message (checked
        or not, as a REST request counts under the key it claims), else the connection's
        since its signed subscribe. A connection's first signed subscribe counts under its
        account too, although the account is set only while it is handled."""
        account = conn.account
        if isinstance(command, dict):
            signature = command.get("signature")
            if isinstance(signature, list) and signature:
                account = self.api_keys.get(str(signature[0]), account)
        self.ledger.ws_message(None if account is None else str(account), conn.ip)

    async def _ws_keepalive(self, conn: _WsConnection) -> None:
        """Ping every `ping_interval`; abort the connection when a Ping has gone unanswered for
        `pong_timeout_s` (checked at that deadline, not at the next Ping)."""
        loop = asyncio.get_running_loop()
        while not conn.ws.closed:
            await asyncio.sleep(self.ping_interval)
            try:
                await conn.ws.ping()
            except (ConnectionError, RuntimeError):
                return
            if conn.awaiting_pong_since is None:
                sent = loop.time()
                conn.awaiting_pong_since = sent
                loop.call_later(self.pong_timeout_s, self._check_pong, conn, sent)

    def _check_pong(self, conn: _WsConnection, sent: float) -> None:
        if conn.awaiting_pong_since == sent and conn in self._conns:
            self.pongs_missed += 1
            log.info("no Pong within %.1f s: dropping a websocket connection", self.pong_timeout_s)
            conn.abort()

    def _ws_error(self, conn: _WsConnection, request_id: object, code: int, message: str) -> None:
        text = json.dumps({"id": request_id, "error": {"code": code, "message": message}})
        conn.queue.put_nowait(("control", text))

    def _ws_command(self, conn: _WsConnection, text: str) -> None:
        try:
            command = json.loads(text)
        except ValueError:
            self._count_ws_message(conn, None)
            self._ws_error(conn, None, WS_BAD_REQUEST, "Invalid JSON")
            return
        self._count_ws_message(conn, command)
        if not isinstance(command, dict):
            self._ws_error(conn, None, WS_BAD_REQUEST, "Expected a JSON object")
            return
        request_id = command.get("id")
        method = command.get("method")
        params = command.get("params")
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            self._ws_error(conn, request_id, WS_BAD_REQUEST, "Invalid method or params")
            return
        streams = [str(p) for p in params]
        if method == "UNSUBSCRIBE":
            conn.streams.difference_update(streams)
            return
        unknown = [s for s in streams if not self._known_stream(s)]
        if unknown:
            self._ws_error(conn, request_id, WS_UNKNOWN_STREAM, f"Invalid stream: {unknown[0]}")
            return
        if any(s.startswith("account.") for s in streams):
            account = self._ws_authenticate(conn, request_id, command.get("signature"))
            if account is None:
                return
            conn.account = account
        new = [s for s in streams if s not in conn.streams]
        conn.streams.update(streams)
        for stream in new:
            if stream.startswith("account.positionUpdate") and conn.account is not None:
                self._send_position_snapshot(conn, stream)

    def _known_stream(self, stream: str) -> bool:
        if stream in ("account.orderUpdate", "account.positionUpdate"):
            return True
        prefix, _, symbol = stream.rpartition(".")
        if prefix in (
            "depth",
            "depth.200ms",
            "bookTicker",
            "trade",
            "account.orderUpdate",
            "account.positionUpdate",
        ):
            return self.market.book_by_symbol(VENUE, symbol) is not None
        return False

    def _ws_authenticate(
        self, conn: _WsConnection, request_id: object, signature: object
    ) -> int | None:
        if not (isinstance(signature, list) and len(signature) == 4):
            self._ws_error(conn, request_id, WS_BAD_SIGNATURE, "Missing signature")
            return None
        api_key, sig, timestamp, window = (str(part) for part in signature)
        try:
            return self.verify(api_key, sig, timestamp, window, "subscribe", {})
        except ApiError as error:
            code = WS_EXPIRED if "expired" in error.message else WS_BAD_SIGNATURE
            self._ws_error(conn, request_id, code, error.message)
            return None

    def _send_position_snapshot(self, conn: _WsConnection, stream: str) -> None:
        assert conn.account is not None
        _, _, symbol = stream.partition("account.positionUpdate")
        symbol = symbol.lstrip(".")
        for ticker in self.market.tickers:
            book = self.market.book(VENUE, ticker)
            if symbol and book.rules.symbol != symbol:
                continue
            position = self.market.account(VENUE, conn.account).positions.get(ticker)
            if position is None or position.qty == 0:
                continue
            data = json.dumps(self._position_data(book, conn.account), separators=(",", ":"))
            conn.queue.put_nowait(("other", f'{{"stream":"{stream}","data":{data}}}'))

    async def _ws_writer(self, conn: _WsConnection) -> None:
        """Drain one connection's queue; before each data message, the transport faults:
        the connection may be aborted (ws_drop) or the message held a while (ws_delay)."""
        faults = self.market.faults
        ws = conn.ws
        try:
            while True:
                kind, text = await conn.queue.get()
                if kind != "control":
                    if faults.check("ws_drop"):
                        log.info("fault ws_drop: aborting a websocket connection")
                        conn.abort()
                        return
                    delay = faults.delay_s()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if kind == "order" and '"e":"orderFill"' in text:
                    written_ns = time.perf_counter_ns()
                    await ws.send_str(text)
                    self._note_fill_written(text, written_ns)  # after the send: off its path
                    continue
                await ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            # The peer went away mid-send; the reader side notices and cleans up.
            log.debug("ws writer stopped: %s", exc)


def _asset_row(symbol: str) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "displayName": symbol,
        "coingeckoId": None,
        "tokens": [
            {
                "blockchain": "Solana",
                "contractAddress": None,
                "depositEnabled": True,
                "displayName": symbol,
                "maximumWithdrawal": None,
                "minimumDeposit": "0",
                "minimumWithdrawal": "0",
                "withdrawEnabled": True,
                "withdrawalFee": "0",
            }
        ],
    }


def _reject_code(reason: str) -> str:
    lowered = reason.lower()
    if "qty" in lowered or "quantity" in lowered or "size" in lowered:
        return "INVALID_QUANTITY"
    if "price" in lowered or "tick" in lowered:
        return "INVALID_PRICE"
    if "market" in lowered:
        return "INVALID_MARKET"
    return "INVALID_ORDER"

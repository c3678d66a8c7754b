"""The venue contract: value types, the order state machine, typed errors and the Venue protocol.

Everything the strategy side (`hedge/`) knows about an exchange goes through this module.
Money is `Decimal` everywhere; venue-specific integers are converted inside the venue modules.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Protocol, runtime_checkable

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class HedgeBotError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(HedgeBotError):
    """A setting, flag or symbol is invalid. The message names it and never holds a secret."""


class VenueError(HedgeBotError):
    """A venue answered with an error or could not be reached.

    `retryable` is True for transport faults, 429 and 5xx: the same request may succeed later.
    """

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class PostOnlyRejected(VenueError):
    """A post-only order would have crossed the book and taken liquidity."""


class InsufficientLiquidity(VenueError):
    """An IOC order found nothing (or too little) to trade against within its worst price."""


class AmbiguousOrderState(VenueError):
    """An order request timed out or failed after it may have reached the venue.

    Ambiguous is not failed: the caller must look the order up by `client_id` until known.
    """

    def __init__(self, message: str, *, client_id: int):
        super().__init__(message, retryable=False)
        self.client_id = client_id


# --------------------------------------------------------------------------------------------
# Enums and the order state machine
# --------------------------------------------------------------------------------------------


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderKind(enum.Enum):
    POST_ONLY = "post_only"
    IOC = "ioc"


class OrderStatus(enum.Enum):
    PENDING_NEW = "pending_new"  # registered locally, request not yet answered
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)

_S = OrderStatus
# Legal transitions. Real-world races are legal: a fill may arrive after our cancel was
# acknowledged (CANCELED -> PARTIALLY_FILLED/FILLED), a cancel may fail because the order is
# still live or already filled (PENDING_CANCEL -> OPEN/PARTIALLY_FILLED/FILLED), and a fill may
# beat the acceptance (PENDING_NEW -> PARTIALLY_FILLED/FILLED).
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.PENDING_NEW: frozenset(
        {
            _S.OPEN,
            _S.PARTIALLY_FILLED,
            _S.FILLED,
            _S.PENDING_CANCEL,
            _S.CANCELED,
            _S.REJECTED,
            _S.EXPIRED,
        }
    ),
    _S.OPEN: frozenset(
        {_S.PARTIALLY_FILLED, _S.FILLED, _S.PENDING_CANCEL, _S.CANCELED, _S.EXPIRED}
    ),
    _S.PARTIALLY_FILLED: frozenset(
        {_S.PARTIALLY_FILLED, _S.FILLED, _S.PENDING_CANCEL, _S.CANCELED, _S.EXPIRED}
    ),
    _S.PENDING_CANCEL: frozenset(
        {_S.OPEN, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.EXPIRED}
    ),
    _S.CANCELED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED}),
    _S.EXPIRED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED}),
    _S.FILLED: frozenset(),
    _S.REJECTED: frozenset(),
}


class IllegalTransition(HedgeBotError):
    """An order status change that the state machine does not allow."""


def transition(current: OrderStatus, new: OrderStatus) -> OrderStatus:
    """Return `new` when `current -> new` is legal; a repeat of the same status is a no-op."""
    if new is current:
        return current
    if new not in ORDER_TRANSITIONS[current]:
        raise IllegalTransition(f"order status {current.value} -> {new.value} is not allowed")
    return new


# --------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Market:
    """Trading rules of one symbol on one venue."""

    venue: str
    ticker: str  # e.g. "BTC"
    symbol: str  # the venue's name: "BTC_USDC_PERP" on Backpack, "BTC" on Lighter
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal = Decimal(0)
    market_id: int | None = None  # Lighter's integer market index
    max_qty: Decimal | None = None  # the largest order the venue accepts, when it says


@dataclass(frozen=True, slots=True)
class FeeRates:
    """An account's trading fees on one venue, as fractions of notional (2 bps = 0.0002)."""

    maker: Decimal = Decimal(0)
    taker: Decimal = Decimal(0)

    def fee(self, price: Decimal, qty: Decimal, *, is_maker: bool) -> Decimal:
        return price * qty * (self.maker if is_maker else self.taker)


@dataclass(frozen=True, slots=True)
class BookTop:
    """Best bid and ask of a venue's book, with the monotonic time of the last update."""

    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    updated_at: float  # time.monotonic() of the update that produced this top

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> Decimal:
        return self.ask - self.bid


@dataclass(frozen=True, slots=True)
class Order:
    """One order of ours, as the bot knows it. Changes are new instances (see `with_status`)."""

    venue: str
    symbol: str
    client_id: int
    side: Side
    qty: Decimal
    price: Decimal  # limit price; for an IOC hedge, the worst acceptable price
    kind: OrderKind
    status: OrderStatus = OrderStatus.PENDING_NEW
    order_id: str | None = None
    filled_qty: Decimal = Decimal(0)

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    def with_status(self, status: OrderStatus) -> Order:
        return _replace(self, status=transition(self.status, status))


def _replace(order: Order, **changes: object) -> Order:
    from dataclasses import replace

    return replace(order, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade of one of our orders. `trade_id` is unique per venue: the idempotency key."""

    venue: str
    symbol: str
    trade_id: str
    order_id: str
    client_id: int | None
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal = Decimal(0)
    is_maker: bool = False
    venue_ts_ms: int = 0
    recv_ns: int = 0  # time.perf_counter_ns() when the frame carrying it was read


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """A status change of one of our orders, as reported by the venue."""

    venue: str
    symbol: str
    order_id: str
    client_id: int | None
    status: OrderStatus
    filled_qty: Decimal  # cumulative
    reason: str = ""
    recv_ns: int = 0


@dataclass(frozen=True, slots=True)
class Position:
    venue: str
    symbol: str
    qty: Decimal  # signed: long > 0, short < 0
    entry_price: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Balance:
    venue: str
    equity: Decimal
    available: Decimal
    extra: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Rounding to venue rules (the safe direction)
# --------------------------------------------------------------------------------------------


def round_price(price: Decimal, tick: Decimal, side: Side) -> Decimal:
    """Round to a multiple of `tick`: a buy down, a sell up, so we never pay more than asked."""
    if tick <= 0:
        raise ValueError("tick must be positive")
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    return (price / tick).to_integral_value(rounding=rounding) * tick


def round_worst_price(price: Decimal, tick: Decimal, side: Side) -> Decimal:
    """Round a taker's worst acceptable price: a buy up, a sell down, never tighter than asked."""
    return round_price(price, tick, side.opposite)


def round_qty(qty: Decimal, step: Decimal) -> Decimal:
    """Round a size down to a multiple of `step`: never trade more than asked."""
    if step <= 0:
        raise ValueError("step must be positive")
    return (qty / step).to_integral_value(rounding=ROUND_FLOOR) * step


# --------------------------------------------------------------------------------------------
# The Venue protocol
# --------------------------------------------------------------------------------------------

VenueEvent = OrderEvent | Fill
EventCallback = Callable[[VenueEvent], None]


@runtime_checkable
class Venue(Protocol):
    """What the strategy needs from an exchange. Backpack, Lighter and PaperVenue implement it.

    Events (our order updates and fills) are delivered to the one callback given to
    `set_event_callback`, synchronously from the venue's reader task, so that a hedge can be
    sent straight from a fill without waiting on a queue.
    """

    name: str

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def market(self) -> Market: ...

    def top(self) -> BookTop | None: ...

    def set_event_callback(self, callback: EventCallback) -> None: ...

    async def place_post_only(
        self, side: Side, qty: Decimal, price: Decimal, client_id: int
    ) -> Order: ...

    async def place_hedge(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> Order: ...

    async def cancel(self, order: Order) -> None: ...

    async def cancel_all(self) -> None: ...

    async def open_orders(self) -> list[Order]: ...

    async def position(self) -> Decimal: ...

    def streamed_position(self) -> Decimal | None:
        """The signed position as the account stream last said it: no request. None when the
        stream is not live or has not said it yet (then ask `position()`, over REST)."""
        ...

    async def balance(self) -> Balance: ...

    async def fills_since(self, since_ms: int) -> list[Fill]: ...


AsyncHook = Callable[[], Awaitable[None]]


class EventEmitter:
    """Delivers a venue's events to its one callback, synchronously. Events that arrive before
    the callback is set (e.g. during connect) are kept and flushed when it is set."""

    def __init__(self) -> None:
        self._callback: EventCallback | None = None
        self._pending_events: list[VenueEvent] = []

    def set_event_callback(self, callback: EventCallback) -> None:
        self._callback = callback
        pending, self._pending_events = self._pending_events, []
        for event in pending:
            callback(event)

    def _emit(self, event: VenueEvent) -> None:
        callback = self._callback
        if callback is None:
            self._pending_events.append(event)
            return
        callback(event)


def describe_top(top: BookTop | None) -> str:
    """A book top for people: `bid x qty / ask x qty`."""
    if top is None:
        return "not synced"
    return f"{top.bid} x {top.bid_qty} / {top.ask} x {top.ask_qty}"


def describe_orders(orders: list[Order]) -> list[dict[str, object]]:
    return [
        {
            "order_id": o.order_id,
            "client_id": o.client_id,
            "side": o.side.value,
            "qty": str(o.qty),
            "price": str(o.price),
            "filled": str(o.filled_qty),
        }
        for o in orders
    ]

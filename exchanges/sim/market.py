"""The simulated market behind both simulated venues: price path, books, matching, accounts.

One `SimMarket` holds, per ticker, one seeded price path and, per (venue, ticker), one
`VenueBook`: background liquidity around the path (with a small cross-venue basis), our resting
orders, a matching engine, public trades and the accounts' positions. The venue servers
(`backpack_server.py`, `lighter_server.py`) only translate the wire protocol to and from this
API; all venue-side truth lives here, so tests can assert against it.

Everything is Decimal at the API. Inside a book, prices are integer ticks and sizes integer
steps (exact, and several times cheaper than Decimal arithmetic on the hot path); they become
Decimal again at the boundary. Listeners are called synchronously from the mutating call.

Market model. Every parameter is a field of `MarketParams` (defaults in brackets); the path, the
basis and the takers are set per second, so they do not depend on `tick_interval` (default
0.1 s). Per clock step of dt seconds:
- the path: per ticker, a log-normal random walk: the log price moves by N(0, sigma^2 dt) with
  sigma = `vol_bps_per_sqrt_s` [0.9 bps per sqrt(s), ~50 %/year], the same for every ticker,
  plus `jumps_per_s` [0: none] jumps of +-`jump_bps_min`..`jump_bps_max` [5..20] bps;
- the basis: Backpack's fair is the path's mid, Lighter's is mid x (1 + b x 1e-4), where b (bps)
  is an Ornstein-Uhlenbeck process, one per ticker, with stationary sd `basis_sd_bps` [3 bps]
  and half-life `basis_half_life_s` [30 s], stepped exactly (theta = ln 2 / half-life:
  b <- b e^(-theta dt) + sd sqrt(1 - e^(-2 theta dt)) Z) from a start drawn from N(0, sd^2);
- the books: each follows its fair with a 1-2 tick spread and 40 background levels per side
  (the top `top_level_usd` [$20,000] x U(0.4, 1.6), growing 25 % per level away, at least
  0.05 bps apart; two levels per side resized by x0.8..1.25 each step). A book is reshaped
  incrementally and only levels whose visible size changed are emitted;
- the takers: market orders arrive at each book as a Poisson process at `taker_orders_per_s`
  x fill_rate [5 a second at fill_rate 1], buying with probability 0.5 + `taker_trend_bias`
  [0.15] x the sign of the path's last move, each of an exponential size with mean
  `taker_size_usd` [$2,000] (at least one step). Each sweeps the other side from its best
  price, level by level, in price-time priority: at a price, the background that was there
  when an order of ours arrived trades before it, then our orders in time order, then the
  background that came later. Each resting order of ours keeps that "ahead" size, cut to the
  level's background size whenever that shrinks (size leaves from the front of the queue;
  new size joins the back). So an order behind resting size, or away from the touch, fills
  later or not at all. These are the public trades; they fill our orders as maker, in
  partial fills when a taker is smaller than the order;
- adverse selection: a move of the fair through one of our resting orders fills it at its
  price (the book never crosses us).
With `fill_rate == 0` our orders never fill by themselves: the takers still trade the
background (at the params' rate) but pass our orders by, and the book moves out of their way
instead of trading through them; only the control calls (`trade_through`, `fill_resting`,
`sweep`) or crossing orders fill them. A crossing order of an account (`place_limit`,
`place_market`) matches the other accounts' resting orders at a price before the background.

What the defaults give (seeded, measured in tests/exchanges/sim/test_market_model.py): a BTC
order joining the best bid or offer at fill_rate 1 fills in a median 0.1 s (90 % within
~3.5 s), nearly always because the fair moved through it: BTC's fair moves ~18 ticks (0.28
bps) per 0.1 s step. On a still path (vol 0), the takers alone fill it in a median ~2.7 s
(~93 % within 10 s); an order 5 ticks behind the touch, almost never. SOL, whose tick is
0.67 bps, fills at the touch in a median ~0.7 s. The realized volatility is 0.9 bps per
sqrt(s) and Lighter's basis has an sd of 3 bps with an autocorrelation of 0.5 at 30 s.

Faults: the market applies `thin_book` to taker orders (IOC limits, market orders) itself; every
other fault in `faults.py` is the venue servers' business.

The names, signatures and semantics of the public API are the contract the servers use.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal, TypeVar

from exchanges.base import Side
from exchanges.sim.faults import FaultPlan

logger = logging.getLogger(__name__)

VenueName = Literal["backpack", "lighter"]
OrderState = Literal["new", "partially_filled", "filled", "cancelled", "expired"]
UpdateKind = Literal["accepted", "fill", "cancelled", "expired"]

VENUES: tuple[VenueName, ...] = ("backpack", "lighter")
NOT_ENOUGH_LIQUIDITY = "canceled-not-enough-liquidity"
SELF_TRADE = "SelfTradePrevention"
REDUCE_ONLY = "ReduceOnly"

_D0 = Decimal(0)


@dataclass(frozen=True, slots=True)
class VenueRules:
    """One market's rules on one venue. Lighter also has integer scales and a market id."""

    symbol: str  # "BTC_USDC_PERP" on backpack, "BTC" on lighter
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    maker_fee: Decimal  # fraction of notional, e.g. Decimal("0.0002")
    taker_fee: Decimal
    market_id: int = 0  # lighter market index
    price_decimals: int = 0  # lighter: tick == 10**-price_decimals
    size_decimals: int = 0  # lighter: step == 10**-size_decimals
    min_quote: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class TickerSpec:
    ticker: str
    start_price: Decimal
    backpack: VenueRules
    lighter: VenueRules


_BACKPACK_MAKER_FEE = Decimal("0.0002")
_BACKPACK_TAKER_FEE = Decimal("0.0005")
_LIGHTER_FEE = Decimal(0)  # Lighter standard accounts pay no trading fees


def _backpack(symbol: str, tick: str, step: str, min_qty: str, max_qty: str) -> VenueRules:
    return VenueRules(
        symbol=symbol,
        tick=Decimal(tick),
        step=Decimal(step),
        min_qty=Decimal(min_qty),
        max_qty=Decimal(max_qty),
        maker_fee=_BACKPACK_MAKER_FEE,
        taker_fee=_BACKPACK_TAKER_FEE,
    )


def _lighter(
    symbol: str, market_id: int, size_decimals: int, price_decimals: int, min_base: str
) -> VenueRules:
    return VenueRules(
        symbol=symbol,
        tick=Decimal(1).scaleb(-price_decimals),
        step=Decimal(1).scaleb(-size_decimals),
        min_qty=Decimal(min_base),
        max_qty=Decimal(1_000_000),
        maker_fee=_LIGHTER_FEE,
        taker_fee=_LIGHTER_FEE,
        market_id=market_id,
        price_decimals=price_decimals,
        size_decimals=size_decimals,
        min_quote=Decimal(10),
    )


# Ten markets listed on both venues, with rules close to the real venues' (approximate; the
# venues change them now and then). Start prices are round numbers near recent levels.
# Sources, per column:
# - Lighter market ids: the ids public Lighter clients hard-code (ETH 0, BTC 1, SOL 2, DOGE 3,
#   XRP 7, LINK 8, AVAX 9, SUI 16, HYPE 24, BNB 25); size_decimals, price_decimals and
#   min_base_amount of the added markets as one such client copied them from Lighter's
#   `/api/v1/orderBooks` (supported_*_decimals). Lighter's min_quote_amount is 10 USDC for all;
#   where min_base x price is below it (HYPE, SOL), min_quote is the binding minimum, as on
#   the venue.
# - Backpack tickSize and stepSize of the added markets: inferred from the decimals of prices
#   and 24h volumes in a public `/api/v1/tickers` snapshot (not read from `/api/v1/markets`);
#   minQuantity is taken equal to stepSize, as it is on Backpack's listed perps (BTC, ETH, SOL,
#   ADA). maxQuantity is a round cap of ours (the venue often lists none).
# The demo's default size, max(both minimums) x 10, is a multiple of both steps for each.
DEFAULT_TICKERS: dict[str, TickerSpec] = {
    spec.ticker: spec
    for spec in (
        TickerSpec(
            "BTC",
            Decimal(65000),
            _backpack("BTC_USDC_PERP", "0.1", "0.00001", "0.00001", "1000"),
            _lighter("BTC", 1, 5, 1, "0.0002"),
        ),
        TickerSpec(
            "ETH",
            Decimal(3000),
            _backpack("ETH_USDC_PERP", "0.01", "0.0001", "0.0001", "10000"),
            _lighter("ETH", 0, 4, 2, "0.005"),
        ),
        TickerSpec(
            "SOL",
            Decimal(150),
            _backpack("SOL_USDC_PERP", "0.01", "0.01", "0.01", "100000"),
            _lighter("SOL", 2, 3, 3, "0.05"),
        ),
        TickerSpec(
            "DOGE",
            Decimal("0.18"),
            _backpack("DOGE_USDC_PERP", "0.00001", "0.1", "0.1", "10000000"),
            _lighter("DOGE", 3, 0, 6, "100"),
        ),
        TickerSpec(
            "XRP",
            Decimal("2.2"),
            _backpack("XRP_USDC_PERP", "0.0001", "0.0001", "0.0001", "1000000"),
            _lighter("XRP", 7, 0, 6, "7"),
        ),
        TickerSpec(
            "BNB",
            Decimal(850),
            _backpack("BNB_USDC_PERP", "0.01", "0.001", "0.001", "10000"),
            _lighter("BNB", 25, 2, 4, "0.02"),
        ),
        TickerSpec(
            "SUI",
            Decimal("3.2"),
            _backpack("SUI_USDC_PERP", "0.0001", "0.01", "0.01", "1000000"),
            _lighter("SUI", 16, 1, 5, "10"),
        ),
        TickerSpec(
            "AVAX",
            Decimal(22),
            _backpack("AVAX_USDC_PERP", "0.001", "0.01", "0.01", "100000"),
            _lighter("AVAX", 9, 2, 4, "1"),
        ),
        TickerSpec(
            "LINK",
            Decimal(18),
            _backpack("LINK_USDC_PERP", "0.001", "0.1", "0.1", "100000"),
            _lighter("LINK", 8, 1, 5, "1"),
        ),
        TickerSpec(
            "HYPE",
            Decimal(40),
            _backpack("HYPE_USDC_PERP", "0.001", "0.1", "0.1", "100000"),
            _lighter("HYPE", 24, 2, 4, "0.15"),
        ),
    )
}


class WouldCross(Exception):
    """A post-only order would take liquidity (the venue servers answer it their own way)."""


class OrderNotFound(Exception):
    pass


class SimRejected(Exception):
    """Size below minimum, bad tick, unknown market... `reason` is short and machine-readable."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class SimOrder:
    order_id: int  # unique across the whole SimMarket
    account: int
    venue: VenueName
    ticker: str
    side: Side
    qty: Decimal
    price: Decimal  # limit price; for a taker order, the worst acceptable price
    client_id: int | None
    post_only: bool
    tif: Literal["GTC", "IOC"]
    order_type: Literal["limit", "market"]
    reduce_only: bool = False
    status: OrderState = "new"
    filled_qty: Decimal = Decimal(0)
    filled_quote: Decimal = Decimal(0)
    created_ms: int = 0
    updated_ms: int = 0
    expiry_reason: str = ""  # e.g. "PostOnlyTaker" or lighter's "canceled-not-enough-liquidity"

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "partially_filled")


@dataclass(frozen=True, slots=True)
class SimFill:
    trade_id: int  # unique across the whole SimMarket
    order_id: int
    client_id: int | None
    account: int
    venue: VenueName
    ticker: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal  # in quote, positive = paid
    is_maker: bool
    ts_ms: int


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """What the account streams report: a snapshot of the order after the change."""

    kind: UpdateKind
    order: SimOrder  # a copy, safe to keep
    fill: SimFill | None = None


@dataclass(frozen=True, slots=True)
class BookDelta:
    """Absolute levels that changed; qty 0 deletes. Sequence ids first..last are consecutive."""

    first_id: int
    last_id: int
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    ts_ms: int


@dataclass(frozen=True, slots=True)
class PublicTrade:
    trade_id: int
    price: Decimal
    qty: Decimal
    taker_side: Side
    ts_ms: int


@dataclass(slots=True)
class SimPosition:
    qty: Decimal = Decimal(0)  # signed
    entry_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)
    volume: Decimal = Decimal(0)

    def apply(self, side: Side, qty: Decimal, price: Decimal) -> Decimal:
        """Book one fill (fees aside); returns the PnL it realized."""
        old = self.qty
        signed = qty if side is Side.BUY else -qty
        new = old + signed
        self.volume += qty * price
        if old == 0 or (old > 0) == (signed > 0):
            # Opening or adding: the entry is the size-weighted average.
            self.entry_price = (abs(old) * self.entry_price + qty * price) / abs(new)
            self.qty = new
            return _D0
        closed = min(abs(old), qty)
        pnl = closed * (price - self.entry_price) * (1 if old > 0 else -1)
        self.realized_pnl += pnl
        self.qty = new
        if new == 0:
            self.entry_price = _D0
        elif (new > 0) != (old > 0):
            self.entry_price = price  # flipped: the rest opened at this fill's price
        return pnl


@dataclass(slots=True)
class SimAccount:
    venue: VenueName
    account: int
    collateral: Decimal = Decimal(100_000)  # realized PnL and fees are settled into it
    positions: dict[str, SimPosition] = field(default_factory=dict)  # ticker -> position

    def position(self, ticker: str) -> SimPosition:
        pos = self.positions.get(ticker)
        if pos is None:
            pos = self.positions[ticker] = SimPosition()
        return pos


_T = TypeVar("_T")


def _emit(listeners: list[Callable[[_T], None]], item: _T) -> None:
    # A broken listener (a server's socket handler, a test probe) must not break the market.
    for callback in tuple(listeners):
        try:
            callback(item)
        except Exception:
            logger.exception("sim market listener %r failed", callback)


def _register(
    listeners: list[Callable[[_T], None]], callback: Callable[[_T], None]
) -> Callable[[], None]:
    listeners.append(callback)

    def unregister() -> None:
        with contextlib.suppress(ValueError):
            listeners.remove(callback)

    return unregister


def _snapshot(order: SimOrder) -> SimOrder:
    return dataclasses.replace(order)


class _BookSide:
    """One side of a book. Keys are ticks for asks and -ticks for bids, so on both sides the
    ascending key order is best-first and 'crosses limit L' is 'key <= key(L)'."""

    __slots__ = (
        "ahead",
        "bg",
        "bg_keys",
        "changed",
        "is_bid",
        "own",
        "own_keys",
        "own_qty",
        "reshape",
        "shaped_top",
        "shown",
    )

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.bg: dict[int, int] = {}  # key -> background size in steps
        self.bg_keys: list[int] = []  # sorted, best first
        self.own: dict[int, list[SimOrder]] = {}  # key -> resting orders, time priority
        self.own_keys: list[int] = []  # sorted, best first
        self.own_qty: dict[int, int] = {}  # key -> resting size in steps
        # resting order id -> background steps ahead of it at its price (its queue position)
        self.ahead: dict[int, int] = {}
        self.shown: dict[int, int] = {}  # key -> visible size last emitted
        self.changed: set[int] = set()
        self.shaped_top: int | None = None  # top key the background was last shaped for
        self.reshape = True  # background levels were taken away since: shape again

    def key(self, tick: int) -> int:
        return -tick if self.is_bid else tick

    def tick(self, key: int) -> int:
        return -key if self.is_bid else key

    def best_key(self) -> int | None:
        bg = self.bg_keys[0] if self.bg_keys else None
        own = self.own_keys[0] if self.own_keys else None
        if bg is None:
            return own
        if own is None:
            return bg
        return min(bg, own)

    def consume_bg(self, key: int, steps: int) -> None:
        """A taker took `steps` of background size at `key`."""
        left = self.bg[key] - steps
        self.changed.add(key)
        self.reshape = True  # shape again: an emptied level is replaced, a thin book topped up
        if left > 0:
            self.bg[key] = left
        else:
            del self.bg[key]
            if self.bg_keys and self.bg_keys[0] == key:
                self.bg_keys.pop(0)
            else:
                self.bg_keys.remove(key)
        if key in self.own:
            self.cap_ahead(key)

    def cap_ahead(self, key: int) -> None:
        """The background at `key` may have shrunk: no order of ours waits behind more than
        there is (size that left the level leaves from the front of the queue)."""
        size = self.bg.get(key, 0)
        ahead = self.ahead
        for order in self.own[key]:
            if ahead[order.order_id] > size:
                ahead[order.order_id] = size


# Book shape, per book (the market model's other parameters are in MarketParams).
_DEPTH = 40  # background levels per side
_LEVEL_GAP_BPS = 0.05  # spacing of levels below the top (at least one tick)
_SIZE_GROWTH = 0.25  # the top level's size grows by this per level away from the top
_PERTURB_PER_STEP = 2  # background levels per side whose size changes each step


def _param(default: float, *, positive: bool = False, at_most: float | None = None) -> float:
    """A MarketParams field: a finite number >= 0 (> 0 if `positive`, <= `at_most` if set)."""
    return field(default=default, metadata={"positive": positive, "at_most": at_most})


@dataclass(frozen=True, slots=True)
class MarketParams:
    """Every parameter of the market model (the module docstring says what each does). Rates
    are per second of market time, so another tick_interval keeps the same behaviour."""

    vol_bps_per_sqrt_s: float = _param(0.9)  # the path's volatility: 0.9 is ~50 %/year
    jumps_per_s: float = _param(0.0)  # jumps on top of the volatility above; 0: none
    jump_bps_min: float = _param(5.0)
    jump_bps_max: float = _param(20.0)
    basis_sd_bps: float = _param(3.0)  # Lighter's basis: stationary sd of its OU process
    basis_half_life_s: float = _param(30.0, positive=True)
    taker_orders_per_s: float = _param(5.0)  # per book, both sides, at fill_rate 1
    taker_size_usd: float = _param(2_000.0, positive=True)  # mean of an exponential size
    taker_trend_bias: float = _param(0.15, at_most=0.5)  # P(buy) = 0.5 + this x last move
    top_level_usd: float = _param(20_000.0, positive=True)  # background size at the top

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if not _param_ok(item, value):
                allowed = _param_range(item)
                raise ValueError(f"{_dashed(item.name)} must be a number {allowed}, not {value}")
        if self.jump_bps_max < self.jump_bps_min:
            raise ValueError("jump-bps-max must be >= jump-bps-min")

    @classmethod
    def parse(cls, items: list[str]) -> MarketParams:
        """Defaults overridden by `name=value` items (names as the fields', `-` or `_`); a
        bad item raises ValueError with one line naming it and what is allowed."""
        by_name = {item.name: item for item in dataclasses.fields(cls)}
        values: dict[str, float] = {}
        for text in items:
            name, equals, raw = text.partition("=")
            key = name.strip().lower().replace("-", "_")
            if not equals or key not in by_name:
                raise ValueError(
                    f"--market {text!r}: expected NAME=VALUE with NAME one of: {cls.ranges()}"
                )
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not _param_ok(by_name[key], value):
                allowed = _param_range(by_name[key])
                raise ValueError(f"--market {text!r}: {_dashed(key)} must be a number {allowed}")
            values[key] = value
        try:
            return cls(**values)
        except ValueError as error:  # a rule between two fields
            raise ValueError(f"--market {' '.join(items)!r}: {error}") from None

    @classmethod
    def ranges(cls) -> str:
        """The names and their allowed values, on one line (for help and errors)."""
        return ", ".join(
            f"{_dashed(item.name)} ({_param_range(item)})" for item in dataclasses.fields(cls)
        )

    def describe(self) -> str:
        """One line, `name=value` as `parse` reads it: 'vol-bps-per-sqrt-s=0.9 ...'."""
        parts = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            text = f"{value:g}"
            parts.append(f"{_dashed(item.name)}={text if float(text) == value else repr(value)}")
        return " ".join(parts)


def _dashed(name: str) -> str:
    return name.replace("_", "-")


def _param_ok(item: dataclasses.Field[float], value: float) -> bool:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return False
    at_most = item.metadata["at_most"]
    if at_most is not None and value > at_most:
        return False
    return value > 0 if item.metadata["positive"] else value >= 0


def _param_range(item: dataclasses.Field[float]) -> str:
    if item.name == "jump_bps_max":
        return ">= jump-bps-min"
    at_most = item.metadata["at_most"]
    low = "> 0" if item.metadata["positive"] else ">= 0"
    return low if at_most is None else f"{low} and <= {at_most:g}"


class VenueBook:
    """One (venue, ticker) book: background levels + our resting orders, and the matching."""

    venue: VenueName
    ticker: str
    rules: VenueRules
    sequence: int  # id of the last book change (Backpack U/u, Lighter nonce)

    def __init__(self, market: SimMarket, venue: VenueName, spec: TickerSpec, seed: int) -> None:
        self.venue = venue
        self.ticker = spec.ticker
        self.rules = spec.backpack if venue == "backpack" else spec.lighter
        self.sequence = 0
        self._market = market
        self._rng = random.Random(f"{seed}:book:{venue}:{spec.ticker}")
        self._tick_f = float(self.rules.tick)
        self._step_f = float(self.rules.step)
        self._min_steps = max(1, self._to_steps_floor(self.rules.min_qty))
        start = float(spec.start_price)
        params = market.params
        self._gap = max(1, round(start * _LEVEL_GAP_BPS * 1e-4 / self._tick_f))
        self._base_steps = max(self._min_steps, int(params.top_level_usd / start / self._step_f))
        # Lighter's basis starts where its OU process spends its time: N(0, sd^2).
        self._basis_bps = 0.0 if venue == "backpack" else self._rng.gauss(0.0, params.basis_sd_bps)
        self._spread = 1
        self._fair = start
        self._thin_steps: int | None = None
        self._bids = _BookSide(is_bid=True)
        self._asks = _BookSide(is_bid=False)
        self._rem: dict[int, int] = {}  # resting/working order id -> remaining steps
        self._orders: dict[int, SimOrder] = {}
        self._by_account: dict[int, list[SimOrder]] = {}
        self._by_client: dict[tuple[int, int], SimOrder] = {}
        self._fills: dict[int, list[SimFill]] = {}
        self._book_listeners: list[Callable[[BookDelta], None]] = []
        self._order_listeners: list[Callable[[OrderUpdate], None]] = []
        self._trade_listeners: list[Callable[[PublicTrade], None]] = []
        self.last_trade_price: Decimal = spec.start_price
        self._reshape(self._fair_of(start))
        self._flush()

    # -- conversions -------------------------------------------------------------------------
    def _price(self, tick: int) -> Decimal:
        return Decimal(tick) * self.rules.tick

    def _qty(self, steps: int) -> Decimal:
        return Decimal(steps) * self.rules.step

    def _to_steps_floor(self, qty: Decimal) -> int:
        return int((qty / self.rules.step).to_integral_value(ROUND_FLOOR))

    def _side(self, side: Side) -> _BookSide:
        return self._bids if side is Side.BUY else self._asks

    def _opposite(self, side: Side) -> _BookSide:
        return self._asks if side is Side.BUY else self._bids

    # -- reading ---------------------------------------------------------------------------
    def levels(
        self, depth: int = 50
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """(bids best first, asks best first); our resting orders are included in the sizes."""
        return self._side_levels(self._bids, depth), self._side_levels(self._asks, depth)

    def _side_levels(self, side: _BookSide, depth: int) -> list[tuple[Decimal, Decimal]]:
        keys = sorted(side.shown)[:depth]
        return [(self._price(side.tick(k)), self._qty(side.shown[k])) for k in keys]

    def top(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """(best bid, bid qty, best ask, ask qty); an empty side reads (0, 0)."""
        bid, bid_qty = self._top_of(self._bids)
        ask, ask_qty = self._top_of(self._asks)
        return bid, bid_qty, ask, ask_qty

    @property
    def basis_bps(self) -> float:
        """This book's fair over the path's mid, in bps (always 0 on Backpack)."""
        return self._basis_bps

    def queue_ahead(self, order_id: int) -> Decimal:
        """Background size ahead of one resting order of ours at its price: what takers
        must take there before it fills. OrderNotFound if it is not resting."""
        order = self._orders.get(order_id)
        ahead = None if order is None else self._side(order.side).ahead.get(order_id)
        if ahead is None:
            raise OrderNotFound(f"order {order_id} is not resting")
        return self._qty(ahead)

    def _top_of(self, side: _BookSide) -> tuple[Decimal, Decimal]:
        key = side.best_key()
        if key is None:
            return _D0, _D0
        size = side.bg.get(key, 0) + side.own_qty.get(key, 0)
        return self._price(side.tick(key)), self._qty(size)

    # -- our orders --------------------------------------------------------------------------
    def place_limit(
        self,
        account: int,
        side: Side,
        qty: Decimal,
        price: Decimal,
        *,
        client_id: int | None,
        post_only: bool,
        tif: Literal["GTC", "IOC"] = "GTC",
        reduce_only: bool = False,
    ) -> SimOrder:
        """Post-only that would cross raises WouldCross (nothing is booked). A crossing GTC
        limit takes what it can and rests the rest; IOC takes what it can and expires the rest.
        Emits 'accepted', then 'fill' per trade, then 'expired' for an IOC remainder."""
        if price <= 0:
            raise SimRejected("price")
        ticks = price / self.rules.tick
        if ticks != ticks.to_integral_value():
            raise SimRejected("tick")
        tick = int(ticks)
        steps = self._validate_qty(qty, price)
        steps = self._clip_reduce_only(account, side, steps, reduce_only)
        opposite = self._opposite(side)
        best = opposite.best_key()
        crosses = best is not None and best <= opposite.key(tick)
        if crosses and post_only:
            raise WouldCross(f"post-only {side.value} at {price} would cross")
        order = self._new_order(
            account, side, steps, price, client_id, post_only, tif, "limit", reduce_only
        )
        if crosses:
            max_steps = self._thinned(steps) if tif == "IOC" else steps
            self._take(order, opposite, opposite.key(tick), max_steps)
        if order.is_open:
            if tif == "IOC":
                self._expire(order, NOT_ENOUGH_LIQUIDITY)
            else:
                self._rest(order, tick)
        self._flush()
        return order

    def place_market(
        self,
        account: int,
        side: Side,
        qty: Decimal,
        worst_price: Decimal,
        *,
        client_id: int | None,
        reduce_only: bool = False,
    ) -> SimOrder:
        """IOC against the book up to `worst_price`; the unfilled rest is 'expired' with
        expiry_reason 'canceled-not-enough-liquidity' (lighter's wording). Never rests.
        A sell's worst price of 0 means no limit."""
        if worst_price < 0 or (side is Side.BUY and worst_price == 0):
            raise SimRejected("price")
        steps = self._validate_qty(qty, worst_price)
        steps = self._clip_reduce_only(account, side, steps, reduce_only)
        # A worst price between ticks is honoured: buys take up to the tick below it.
        rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
        limit_tick = int((worst_price / self.rules.tick).to_integral_value(rounding))
        order = self._new_order(
            account, side, steps, worst_price, client_id, False, "IOC", "market", reduce_only
        )
        opposite = self._opposite(side)
        self._take(order, opposite, opposite.key(limit_tick), self._thinned(steps))
        if order.is_open:
            self._expire(order, NOT_ENOUGH_LIQUIDITY)
        self._flush()
        return order

    def cancel(
        self, account: int, *, order_id: int | None = None, client_id: int | None = None
    ) -> SimOrder:
        """Cancel a resting order; OrderNotFound if unknown or no longer open."""
        order = self.find_order(account, order_id=order_id, client_id=client_id)
        if order is None or not order.is_open:
            raise OrderNotFound(f"no open order {order_id or client_id} for account {account}")
        self._unrest(order)
        order.status = "cancelled"
        order.updated_ms = self._market.now_ms()
        self._order_event("cancelled", order)
        self._flush()
        return order

    def cancel_all(self, account: int) -> list[SimOrder]:
        cancelled = []
        for order in self.open_orders(account):
            self._unrest(order)
            order.status = "cancelled"
            order.updated_ms = self._market.now_ms()
            self._order_event("cancelled", order)
            cancelled.append(order)
        self._flush()
        return cancelled

    def open_orders(self, account: int) -> list[SimOrder]:
        return [o for o in self._by_account.get(account, ()) if o.is_open]

    def find_order(
        self, account: int, *, order_id: int | None = None, client_id: int | None = None
    ) -> SimOrder | None:
        """Any order of the account, open or finished (latest with that client id)."""
        if order_id is not None:
            order = self._orders.get(order_id)
            return order if order is not None and order.account == account else None
        if client_id is not None:
            return self._by_client.get((account, client_id))
        return None

    def orders(self, account: int) -> list[SimOrder]:
        """Every order of the account on this book, oldest first (venue-side truth)."""
        return list(self._by_account.get(account, ()))

    def fills(self, account: int, since_ms: int = 0) -> list[SimFill]:
        """The account's fills on this book with ts_ms >= since_ms, oldest first."""
        return [f for f in self._fills.get(account, ()) if f.ts_ms >= since_ms]

    def accounts(self) -> list[int]:
        """Accounts that have placed orders on this book."""
        return sorted(self._by_account)

    # -- control (tests, demo, sim CLI) -----------------------------------------------------
    def trade_through(self, price: Decimal, qty: Decimal | None = None) -> list[SimFill]:
        """Background flow trades through `price`: our resting orders priced at or better than
        it (bids >= price, asks <= price) fill as maker, up to `qty` in total (None = fully)."""
        budget = None if qty is None else self._to_steps_floor(qty)
        if budget is not None and budget <= 0:
            raise SimRejected("qty")
        ratio = price / self.rules.tick
        bid_limit = -int(ratio.to_integral_value(ROUND_CEILING))  # bids with tick >= price
        ask_limit = int(ratio.to_integral_value(ROUND_FLOOR))  # asks with tick <= price
        fills: list[SimFill] = []
        for side, limit in ((self._bids, bid_limit), (self._asks, ask_limit)):
            for key in [k for k in side.own_keys if k <= limit]:
                for order in list(side.own.get(key, ())):
                    if budget == 0:
                        break
                    remaining = self._rem[order.order_id]
                    steps = remaining if budget is None else min(remaining, budget)
                    fill = self._maker_fill(order, side.tick(key), steps)
                    if fill is not None:
                        fills.append(fill)
                        if budget is not None:
                            budget -= steps
        self._flush()
        return fills

    def sweep(self, taker_side: Side, qty: Decimal) -> list[SimFill]:
        """One background taker's market order of `qty`, as the simulated flow sends them:
        it takes the other side best price first and, at each price, the background that was
        there before our orders, then ours in time order, then the rest. Returns our fills
        (it reaches our orders at fill_rate 0 too: this is a control call)."""
        steps = self._to_steps_floor(qty)
        if steps <= 0:
            raise SimRejected("qty")
        fills = self._sweep(self._opposite(taker_side), taker_side, steps, touch_own=True)
        self._flush()
        return fills

    def fill_resting(self, order_id: int, qty: Decimal) -> SimFill:
        """Fill `qty` of one resting order of ours as maker at its price (a partial fill).
        More than the remainder fills the remainder."""
        order = self._orders.get(order_id)
        if order is None or not order.is_open or order_id not in self._rem:
            raise OrderNotFound(f"order {order_id} is not resting")
        ratio = qty / self.rules.step
        if qty <= 0 or ratio != ratio.to_integral_value():
            raise SimRejected("step")
        steps = min(int(ratio), self._rem[order_id])
        tick = int(order.price / self.rules.tick)
        fill = self._maker_fill(order, tick, steps)
        self._flush()
        if fill is None:
            raise SimRejected("reduce_only")
        return fill

    def set_thin(self, qty: Decimal | None) -> None:
        """Limit total background size per side to `qty` (None restores normal depth)."""
        if qty is not None and qty < 0:
            raise SimRejected("qty")
        self._thin_steps = None if qty is None else self._to_steps_floor(qty)
        self._bids.reshape = self._asks.reshape = True
        self._reshape(self._fair)
        self._flush()

    # -- listeners --------------------------------------------------------------------------
    def on_book(self, callback: Callable[[BookDelta], None]) -> Callable[[], None]:
        """Register; returns a function that unregisters."""
        return _register(self._book_listeners, callback)

    def on_order(self, callback: Callable[[OrderUpdate], None]) -> Callable[[], None]:
        return _register(self._order_listeners, callback)

    def on_trade(self, callback: Callable[[PublicTrade], None]) -> Callable[[], None]:
        return _register(self._trade_listeners, callback)

    # -- order internals ----------------------------------------------------------------------
    def _validate_qty(self, qty: Decimal, price: Decimal) -> int:
        if qty <= 0:
            raise SimRejected("qty")
        ratio = qty / self.rules.step
        if ratio != ratio.to_integral_value():
            raise SimRejected("step")
        if qty < self.rules.min_qty:
            raise SimRejected("min_qty")
        if qty > self.rules.max_qty:
            raise SimRejected("max_qty")
        if self.rules.min_quote and price > 0 and qty * price < self.rules.min_quote:
            raise SimRejected("min_quote")
        return int(ratio)

    def _clip_reduce_only(self, account: int, side: Side, steps: int, reduce_only: bool) -> int:
        if not reduce_only:
            return steps
        capacity = self._reduce_capacity(account, side)
        if capacity <= 0:
            raise SimRejected("reduce_only")
        return min(steps, capacity)

    def _reduce_capacity(self, account: int, side: Side) -> int:
        """Steps a reduce-only order on `side` may still trade (the opposing position)."""
        pos = self._market.account(self.venue, account).position(self.ticker).qty
        if (side is Side.BUY and pos >= 0) or (side is Side.SELL and pos <= 0):
            return 0
        return self._to_steps_floor(abs(pos))

    def _thinned(self, steps: int) -> int:
        faults = self._market.faults
        if faults.check("thin_book"):
            return int(steps * faults.thin_fraction())
        return steps

    def _new_order(
        self,
        account: int,
        side: Side,
        steps: int,
        price: Decimal,
        client_id: int | None,
        post_only: bool,
        tif: Literal["GTC", "IOC"],
        order_type: Literal["limit", "market"],
        reduce_only: bool,
    ) -> SimOrder:
        now = self._market.now_ms()
        order = SimOrder(
            order_id=self._market.next_order_id(),
            account=account,
            venue=self.venue,
            ticker=self.ticker,
            side=side,
            qty=self._qty(steps),
            price=price,
            client_id=client_id,
            post_only=post_only,
            tif=tif,
            order_type=order_type,
            reduce_only=reduce_only,
            created_ms=now,
            updated_ms=now,
        )
        self._orders[order.order_id] = order
        self._by_account.setdefault(account, []).append(order)
        if client_id is not None:
            self._by_client[(account, client_id)] = order
        self._rem[order.order_id] = steps
        self._order_event("accepted", order)
        return order

    def _order_event(self, kind: UpdateKind, order: SimOrder, fill: SimFill | None = None) -> None:
        if self._order_listeners:  # the copy costs more than the rest of a placement
            _emit(self._order_listeners, OrderUpdate(kind, _snapshot(order), fill))

    def _rest(self, order: SimOrder, tick: int) -> None:
        side = self._side(order.side)
        key = side.key(tick)
        side.ahead[order.order_id] = side.bg.get(key, 0)  # it joins behind what is there
        queue = side.own.get(key)
        if queue is None:
            side.own[key] = [order]
            bisect.insort(side.own_keys, key)
            side.own_qty[key] = self._rem[order.order_id]
        else:
            queue.append(order)
            side.own_qty[key] += self._rem[order.order_id]
        side.changed.add(key)

    def _unrest(self, order: SimOrder) -> None:
        """Take an order off the book (it may not be resting: a working taker order)."""
        remaining = self._rem.pop(order.order_id, 0)
        if order.order_type != "limit":
            return
        side = self._side(order.side)
        key = side.key(int(order.price / self.rules.tick))
        queue = side.own.get(key)
        if queue is None or order not in queue:
            return
        queue.remove(order)
        del side.ahead[order.order_id]
        side.own_qty[key] -= remaining
        if not queue:
            del side.own[key]
            del side.own_qty[key]
            side.own_keys.remove(key)
        side.changed.add(key)

    def _expire(self, order: SimOrder, reason: str) -> None:
        self._unrest(order)
        order.status = "expired"
        order.expiry_reason = reason
        order.updated_ms = self._market.now_ms()
        self._order_event("expired", order)

    def _take(self, order: SimOrder, opposite: _BookSide, limit_key: int, max_steps: int) -> None:
        """Match a taker order against the opposite side up to `limit_key`: resting orders of
        other accounts first at each price (they were there first), then background size."""
        remaining = max_steps
        while remaining > 0:
            key = opposite.best_key()
            if key is None or key > limit_key:
                break
            tick = opposite.tick(key)
            queue = opposite.own.get(key)
            if queue:
                maker = queue[0]
                if maker.account == order.account:
                    self._expire(maker, SELF_TRADE)  # venues prevent self trades
                    continue
                allowed = self._reduce_only_allowed(maker, self._rem[maker.order_id])
                if allowed == 0:
                    self._expire(maker, REDUCE_ONLY)
                    continue
                steps = min(allowed, remaining)
                self._trade(order, tick, steps, is_maker=False)
                self._trade(maker, tick, steps, is_maker=True)
                self._public_trade(tick, steps, order.side)
                remaining -= steps
                continue
            steps = min(opposite.bg[key], remaining)
            opposite.consume_bg(key, steps)
            self._trade(order, tick, steps, is_maker=False)
            self._public_trade(tick, steps, order.side)
            remaining -= steps

    def _reduce_only_allowed(self, order: SimOrder, steps: int) -> int:
        if not order.reduce_only:
            return steps
        return min(steps, self._reduce_capacity(order.account, order.side))

    def _maker_fill(self, order: SimOrder, tick: int, steps: int) -> SimFill | None:
        """Fill a resting order of ours against background flow (None: reduce-only left
        nothing to reduce, and the order was expired instead)."""
        steps = self._reduce_only_allowed(order, steps)
        if steps <= 0:
            self._expire(order, REDUCE_ONLY)
            return None
        fill = self._trade(order, tick, steps, is_maker=True)
        self._public_trade(tick, steps, order.side.opposite)
        return fill

    def _trade(self, order: SimOrder, tick: int, steps: int, *, is_maker: bool) -> SimFill:
        """Book one fill of `order`: order state, position, fees, events."""
        market = self._market
        price = self._price(tick)
        qty = self._qty(steps)
        notional = price * qty
        now = market.now_ms()
        remaining = self._rem[order.order_id] - steps
        order.filled_qty += qty
        order.filled_quote += notional
        order.updated_ms = now
        if remaining == 0:
            order.status = "filled"
            if is_maker:
                self._unrest(order)  # off the book (uses the remaining size still recorded)
            self._rem.pop(order.order_id, None)
        else:
            order.status = "partially_filled"
            self._rem[order.order_id] = remaining
            if is_maker:
                side = self._side(order.side)
                key = side.key(tick)
                side.own_qty[key] -= steps
                side.changed.add(key)
        maker_fee, taker_fee = market.fees_of(self.venue, order.account, self.rules)
        fee = notional * (maker_fee if is_maker else taker_fee)
        fill = SimFill(
            trade_id=market.next_trade_id(),
            order_id=order.order_id,
            client_id=order.client_id,
            account=order.account,
            venue=self.venue,
            ticker=self.ticker,
            side=order.side,
            price=price,
            qty=qty,
            fee=fee,
            is_maker=is_maker,
            ts_ms=now,
        )
        account = market.account(self.venue, order.account)
        pos = account.position(self.ticker)
        pnl = pos.apply(order.side, qty, price)
        pos.fees_paid += fee
        account.collateral += pnl - fee
        self._fills.setdefault(order.account, []).append(fill)
        self._order_event("fill", order, fill)
        return fill

    def _public_trade(self, tick: int, steps: int, taker_side: Side) -> None:
        price = self._price(tick)
        self.last_trade_price = price
        trade = PublicTrade(
            trade_id=self._market.next_trade_id(),
            price=price,
            qty=self._qty(steps),
            taker_side=taker_side,
            ts_ms=self._market.now_ms(),
        )
        _emit(self._trade_listeners, trade)

    # -- background ---------------------------------------------------------------------------
    def _fair_of(self, mid: float) -> float:
        return mid * (1.0 + self._basis_bps * 1e-4)

    def _step(self, mid: float, drift_sign: int) -> None:
        rng = self._rng
        dt = self._market.tick_interval
        if self.venue == "lighter":
            self._move_basis(dt)
        if rng.random() < 0.1:
            self._spread = 1 if rng.random() < 0.7 else 2
        self._reshape(self._fair_of(mid))
        self._perturb()
        self._taker_flow(dt, drift_sign)
        self._flush()

    def _move_basis(self, dt: float) -> None:
        """One exact step of the basis's Ornstein-Uhlenbeck process (stationary N(0, sd^2))."""
        params = self._market.params
        decay = math.exp(-math.log(2.0) / params.basis_half_life_s * dt)
        shock = params.basis_sd_bps * math.sqrt(1.0 - decay * decay)
        self._basis_bps = self._basis_bps * decay + shock * self._rng.gauss(0.0, 1.0)

    def _reshape(self, fair: float) -> None:
        """Move the background book to `fair`: fill our orders the price moves through (or,
        at fill_rate 0, keep the background clear of them), then shape both sides."""
        self._fair = fair
        bid_top = math.floor(fair / self._tick_f - self._spread / 2)
        ask_top = bid_top + self._spread
        bids, asks = self._bids, self._asks
        if bids.own_keys and ask_top <= -bids.own_keys[0]:
            if self._market.fill_rate > 0:
                self._fill_through(bids, bids.key(ask_top))
            else:
                ask_top = -bids.own_keys[0] + 1
        if asks.own_keys and bid_top >= asks.own_keys[0]:
            if self._market.fill_rate > 0:
                self._fill_through(asks, asks.key(bid_top))
            else:
                bid_top = asks.own_keys[0] - 1
        bid_top = min(bid_top, ask_top - 1)
        self._shape_side(bids, bid_top)
        self._shape_side(asks, ask_top)

    def _fill_through(self, side: _BookSide, limit_key: int) -> None:
        for key in [k for k in side.own_keys if k <= limit_key]:
            for order in list(side.own.get(key, ())):
                self._maker_fill(order, side.tick(key), self._rem[order.order_id])

    def _shape_side(self, side: _BookSide, top_tick: int) -> None:
        top_key = side.key(top_tick)
        if top_key == side.shaped_top and not side.reshape:
            return  # same top, nothing taken: the levels stand as they are
        side.shaped_top = top_key
        side.reshape = False
        gap = self._gap
        first = (top_key // gap + 1) * gap  # levels below the top sit on a grid of `gap`
        old = side.bg
        new: dict[int, int] = {}
        thin = self._thin_steps
        total = 0
        for index in range(_DEPTH):
            key = top_key if index == 0 else first + (index - 1) * gap
            size = old.get(key)
            if size is None:
                size = self._level_size(index)
            if thin is not None:
                if total >= thin:
                    break
                size = min(size, thin - total)
            new[key] = size
            total += size
        changed = side.changed
        for key in old:
            if key not in new:
                changed.add(key)
        for key, size in new.items():
            if old.get(key) != size:
                changed.add(key)
        side.bg = new
        side.bg_keys = list(new)  # built in ascending key order
        for key in side.own_keys:
            side.cap_ahead(key)

    def _level_size(self, index: int) -> int:
        scale = (1.0 + _SIZE_GROWTH * index) * self._rng.uniform(0.4, 1.6)
        return max(self._min_steps, int(self._base_steps * scale))

    def _perturb(self) -> None:
        """Some resting background size comes and goes every step."""
        rng = self._rng
        for side in (self._bids, self._asks):
            keys = side.bg_keys
            if not keys or self._thin_steps is not None:
                continue
            for _ in range(_PERTURB_PER_STEP):
                key = keys[rng.randrange(len(keys))]
                side.bg[key] = max(self._min_steps, int(side.bg[key] * rng.uniform(0.8, 1.25)))
                side.changed.add(key)
                if key in side.own:
                    side.cap_ahead(key)  # size that left, left from the front; new size queues

    def _taker_flow(self, dt: float, drift_sign: int) -> None:
        """Background takers: market orders arriving as a Poisson process, each on the side
        the path last moved to with a small bias, of exponential size, sweeping the book."""
        market = self._market
        params = market.params
        touch_own = market.fill_rate > 0  # at fill_rate 0 the flow trades past our orders
        rate = params.taker_orders_per_s * (market.fill_rate if touch_own else 1.0)
        rng = self._rng
        count = _poisson(rng, rate * dt)
        if not count:
            return
        p_buy = 0.5 + params.taker_trend_bias * drift_sign
        mean_steps = params.taker_size_usd / (self._fair * self._step_f)
        for _ in range(count):
            taker = Side.BUY if rng.random() < p_buy else Side.SELL
            steps = max(1, int(rng.expovariate(1.0) * mean_steps))
            self._sweep(self._opposite(taker), taker, steps, touch_own=touch_own)

    def _sweep(self, side: _BookSide, taker: Side, steps: int, *, touch_own: bool) -> list[SimFill]:
        """A background taker takes `steps` from `side`, best price first, until it is done or
        the side is empty; our orders are in its way only if `touch_own`."""
        fills: list[SimFill] = []
        while steps > 0:
            bg_key = side.bg_keys[0] if side.bg_keys else None
            own_key = side.own_keys[0] if touch_own and side.own_keys else None
            if own_key is not None and (bg_key is None or own_key <= bg_key):
                steps = self._sweep_level(side, own_key, taker, steps, fills)
            elif bg_key is not None:
                taken = min(side.bg[bg_key], steps)
                side.consume_bg(bg_key, taken)
                self._public_trade(side.tick(bg_key), taken, taker)
                steps -= taken
            else:
                break
        return fills

    def _sweep_level(
        self, side: _BookSide, key: int, taker: Side, steps: int, fills: list[SimFill]
    ) -> int:
        """Take up to `steps` at one price where our orders rest, in price-time priority:
        the background ahead of each order of ours goes first, then the order, and after the
        last of ours the background that arrived later. Returns the steps still to take."""
        tick = side.tick(key)
        ahead = side.ahead
        taken_bg = 0
        for order in list(side.own[key]):
            in_front = ahead[order.order_id] - taken_bg
            if in_front > 0:
                taken = min(in_front, steps)
                self._public_trade(tick, taken, taker)
                taken_bg += taken
                steps -= taken
                if steps == 0:
                    break
            wanted = min(self._rem[order.order_id], steps)
            allowed = self._reduce_only_allowed(order, wanted)
            fill = self._maker_fill(order, tick, allowed)
            if fill is None:
                continue  # reduce-only with nothing to reduce: expired, out of the queue
            fills.append(fill)
            steps -= allowed
            if allowed < wanted:
                self._expire(order, REDUCE_ONLY)  # the position is closed: nothing more
            if steps == 0:
                break
        if steps > 0:
            taken = min(side.bg.get(key, 0) - taken_bg, steps)
            if taken > 0:
                self._public_trade(tick, taken, taker)
                taken_bg += taken
                steps -= taken
        if taken_bg:
            for order in side.own.get(key, ()):
                ahead[order.order_id] = max(0, ahead[order.order_id] - taken_bg)
            side.consume_bg(key, taken_bg)
        return steps

    def _flush(self) -> None:
        """Emit one BookDelta with every level whose visible size changed since the last."""
        out: list[list[tuple[Decimal, Decimal]]] = [[], []]
        count = 0
        for index, side in enumerate((self._bids, self._asks)):
            if not side.changed:
                continue
            shown = side.shown
            levels = []
            for key in sorted(side.changed):
                visible = side.bg.get(key, 0) + side.own_qty.get(key, 0)
                if shown.get(key, 0) == visible:
                    continue
                if visible:
                    shown[key] = visible
                else:
                    del shown[key]
                levels.append((self._price(side.tick(key)), self._qty(visible)))
            side.changed.clear()
            out[index] = levels
            count += len(levels)
        if not count:
            return
        first = self.sequence + 1
        self.sequence += count  # one id per level change, like Backpack's U..u
        delta = BookDelta(first, self.sequence, out[0], out[1], self._market.now_ms())
        _emit(self._book_listeners, delta)


class SimMarket:
    """Price paths for every ticker and a VenueBook per (venue, ticker), driven by one clock."""

    def __init__(
        self,
        *,
        seed: int = 0,
        tickers: dict[str, TickerSpec] | None = None,
        faults: FaultPlan | None = None,
        tick_interval: float = 0.1,
        fill_rate: float = 1.0,
        clock_ms: Callable[[], int] | None = None,
        params: MarketParams | None = None,
    ) -> None:
        """`fill_rate` multiplies the rate of background taker orders (1.0: the params' rate;
        0: the flow trades at that rate but never reaches our orders, and the book moves out
        of their way instead of trading through them). `params` is the market model (default
        `MarketParams()`). `clock_ms` (default: wall clock) stamps events; tests pass a fake
        one to compare runs exactly."""
        if tick_interval <= 0:
            raise ValueError("tick_interval must be > 0")
        if fill_rate < 0:
            raise ValueError("fill_rate must be >= 0")
        self.params = params if params is not None else MarketParams()
        self.seed = seed
        self.tickers = dict(DEFAULT_TICKERS if tickers is None else tickers)
        self.faults = faults if faults is not None else FaultPlan("none", seed)
        self.tick_interval = tick_interval
        self.fill_rate = fill_rate
        self._clock = clock_ms if clock_ms is not None else _wall_clock_ms
        self._next_order_id = 10_000_000
        self._next_trade_id = 50_000_000
        self._accounts: dict[tuple[VenueName, int], SimAccount] = {}
        # (venue, account) -> (maker, taker) fee fractions overriding the venue's rules
        self._account_fees: dict[tuple[VenueName, int], tuple[Decimal, Decimal]] = {}
        self._mid: dict[str, float] = {}
        self._path_rng: dict[str, random.Random] = {}
        self._drift: dict[str, int] = {}
        self._books: dict[tuple[VenueName, str], VenueBook] = {}
        self._by_symbol: dict[tuple[VenueName, str], VenueBook] = {}
        self._by_market_id: dict[int, VenueBook] = {}
        self.steps = 0
        self._task: asyncio.Task[None] | None = None
        for ticker, spec in self.tickers.items():
            self._mid[ticker] = float(spec.start_price)
            self._path_rng[ticker] = random.Random(f"{seed}:path:{ticker}")
            self._drift[ticker] = 0
            for venue in VENUES:
                book = VenueBook(self, venue, spec, seed)
                self._books[(venue, ticker)] = book
                self._by_symbol[(venue, book.rules.symbol)] = book
                if venue == "lighter":
                    self._by_market_id[book.rules.market_id] = book

    faults: FaultPlan
    tickers: dict[str, TickerSpec]
    params: MarketParams

    # -- per-account fees (a venue server sets them from the account's tier) -------------------
    def set_account_fees(
        self, venue: VenueName, account: int, maker: Decimal, taker: Decimal
    ) -> None:
        """Fee fractions this account pays on `venue` instead of the rules' fees."""
        self._account_fees[(venue, account)] = (maker, taker)

    def fees_of(self, venue: VenueName, account: int, rules: VenueRules) -> tuple[Decimal, Decimal]:
        """(maker, taker) fee fractions of one account: its own if set, else the rules'."""
        return self._account_fees.get((venue, account), (rules.maker_fee, rules.taker_fee))

    # -- ids and time (used by the books) -------------------------------------------------------
    def now_ms(self) -> int:
        return self._clock()

    def next_order_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id

    def next_trade_id(self) -> int:
        self._next_trade_id += 1
        return self._next_trade_id

    # -- lookup ---------------------------------------------------------------------------------
    def book(self, venue: VenueName, ticker: str) -> VenueBook:
        """KeyError for an unknown ticker."""
        return self._books[(venue, ticker)]

    def books(self) -> list[VenueBook]:
        return list(self._books.values())

    def book_by_symbol(self, venue: VenueName, symbol: str) -> VenueBook | None:
        return self._by_symbol.get((venue, symbol))

    def book_by_market_id(self, market_id: int) -> VenueBook | None:
        """Lighter books by market index."""
        return self._by_market_id.get(market_id)

    def account(self, venue: VenueName, account: int) -> SimAccount:
        """Created on first use with the default collateral."""
        acct = self._accounts.get((venue, account))
        if acct is None:
            acct = self._accounts[(venue, account)] = SimAccount(venue, account)
        return acct

    # -- the path -------------------------------------------------------------------------------
    def mid(self, ticker: str) -> Decimal:
        """The path's price, on the finer of the two venues' ticks."""
        spec = self.tickers[ticker]
        tick = min(spec.backpack.tick, spec.lighter.tick)
        return Decimal(repr(self._mid[ticker])).quantize(tick)

    def set_mid(self, ticker: str, price: Decimal) -> None:
        """Move the price path (both venues' books follow, keeping their basis). Our resting
        orders the move goes through are filled (unless fill_rate is 0)."""
        if price <= 0:
            raise SimRejected("price")
        if ticker not in self.tickers:
            raise KeyError(ticker)
        self._mid[ticker] = float(price)
        for venue in VENUES:
            book = self._books[(venue, ticker)]
            book._reshape(book._fair_of(self._mid[ticker]))
            book._flush()

    def step(self) -> None:
        """One clock tick, synchronously: advance paths, refresh background books (emitting
        BookDeltas) and run the background takers, who trade with our orders in their way."""
        self.steps += 1
        params = self.params
        sigma = params.vol_bps_per_sqrt_s * 1e-4 * math.sqrt(self.tick_interval)
        p_jump = params.jumps_per_s * self.tick_interval
        for ticker in self.tickers:
            rng = self._path_rng[ticker]
            move = rng.gauss(0.0, sigma)
            if p_jump > 0 and rng.random() < p_jump:
                size = rng.uniform(params.jump_bps_min, params.jump_bps_max)
                move += rng.choice((-1.0, 1.0)) * size * 1e-4
            self._mid[ticker] *= math.exp(move)
            self._drift[ticker] = 1 if move > 0 else -1 if move < 0 else 0
        for (_, ticker), book in self._books.items():
            book._step(self._mid[ticker], self._drift[ticker])

    async def start(self) -> None:
        """Start the clock task (calls `step` every tick_interval)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="sim-market-clock")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            try:
                self.step()
            except Exception:
                logger.exception("sim market step failed")
            deadline += self.tick_interval
            delay = deadline - loop.time()
            if delay < 0:  # fell behind (a busy loop): skip the missed ticks, don't burst
                deadline = loop.time()
                delay = 0.0
            await asyncio.sleep(delay)

    # -- truth ----------------------------------------------------------------------------------
    def truth(self) -> dict[str, object]:
        """JSON-able venue-side truth: per venue, per account, positions, open orders, fills."""
        venues: dict[str, object] = {}
        for venue in VENUES:
            books = {t: _book_truth(self._books[(venue, t)]) for t in self.tickers}
            accounts: dict[str, object] = {}
            for (acct_venue, number), acct in sorted(self._accounts.items()):
                if acct_venue == venue:
                    accounts[str(number)] = self._account_truth(acct)
            venues[venue] = {"books": books, "accounts": accounts}
        return {
            "seed": self.seed,
            "steps": self.steps,
            "ts_ms": self.now_ms(),
            "fill_rate": self.fill_rate,
            "mids": {t: str(self.mid(t)) for t in self.tickers},
            "venues": venues,
            "faults": self.faults.snapshot(),
        }

    def _account_truth(self, acct: SimAccount) -> dict[str, object]:
        open_orders: list[dict[str, object]] = []
        fills: list[dict[str, object]] = []
        for ticker in self.tickers:
            book = self._books[(acct.venue, ticker)]
            open_orders.extend(order_json(o) for o in book.open_orders(acct.account))
            fills.extend(fill_json(f) for f in book.fills(acct.account))
        fills.sort(key=lambda f: int(str(f["trade_id"])))
        return {
            "collateral": str(acct.collateral),
            "positions": {t: position_json(p) for t, p in sorted(acct.positions.items())},
            "open_orders": open_orders,
            "fill_count": len(fills),
            "fills": fills[-500:],  # a long demo run stays readable
        }


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's method, in chunks so exp(-mean) never underflows)."""
    count = 0
    while mean > 0:
        chunk = min(mean, 30.0)
        mean -= chunk
        limit = math.exp(-chunk)
        product = rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
    return count


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _book_truth(book: VenueBook) -> dict[str, object]:
    bid, bid_qty, ask, ask_qty = book.top()
    return {
        "symbol": book.rules.symbol,
        "sequence": book.sequence,
        "best_bid": str(bid),
        "bid_qty": str(bid_qty),
        "best_ask": str(ask),
        "ask_qty": str(ask_qty),
        "last_trade_price": str(book.last_trade_price),
    }


def order_json(order: SimOrder) -> dict[str, object]:
    return {
        "order_id": order.order_id,
        "client_id": order.client_id,
        "account": order.account,
        "venue": order.venue,
        "ticker": order.ticker,
        "side": order.side.value,
        "qty": str(order.qty),
        "price": str(order.price),
        "status": order.status,
        "filled_qty": str(order.filled_qty),
        "filled_quote": str(order.filled_quote),
        "post_only": order.post_only,
        "tif": order.tif,
        "order_type": order.order_type,
        "reduce_only": order.reduce_only,
        "expiry_reason": order.expiry_reason,
        "created_ms": order.created_ms,
        "updated_ms": order.updated_ms,
    }


def fill_json(fill: SimFill) -> dict[str, object]:
    return {
        "trade_id": fill.trade_id,
        "order_id": fill.order_id,
        "client_id": fill.client_id,
        "account": fill.account,
        "venue": fill.venue,
        "ticker": fill.ticker,
        "side": fill.side.value,
        "price": str(fill.price),
        "qty": str(fill.qty),
        "fee": str(fill.fee),
        "is_maker": fill.is_maker,
        "ts_ms": fill.ts_ms,
    }


def position_json(pos: SimPosition) -> dict[str, str]:
    return {
        "qty": str(pos.qty),
        "entry_price": str(pos.entry_price),
        "realized_pnl": str(pos.realized_pnl),
        "fees_paid": str(pos.fees_paid),
        "volume": str(pos.volume),
    }

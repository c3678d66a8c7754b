"""Private control routes of a simulated venue: read the truth, move the market, force fills.

Mounted by each venue server under `/_sim/` (a prefix no real venue uses), so tests, the demo
and the `sim` CLI can steer a running venue over HTTP. JSON in and out; every Decimal is a
string; bad input is answered 400 with `{"error": "..."}` and never touches the market.

Routes (the venue is the one the routes were mounted for; a body may name another with
`"venue"`):
  GET  /_sim/truth                                  market.truth()
  POST /_sim/price          {ticker, price}         move the price path (both venues follow)
  POST /_sim/trade_through  {ticker, price, qty?}   fill our resting orders through a price
  POST /_sim/fill           {ticker, order_id, qty} fill one resting order (partially)
  POST /_sim/order          {account, ticker, side, qty, price?}  trade for an account directly
  POST /_sim/faults/arm     {fault, count?}         force the next `count` checks of a fault
  POST /_sim/faults/disarm  {fault?}                forget armed checks (of one fault, or all)
  POST /_sim/thin           {ticker, qty|null}      thin (or restore) the background book
  POST /_sim/step           {count?}                advance the clock synchronously
  GET  /_sim/timings                                benchmark timestamps of this server (see
                                                    add_timings_route), perf_counter_ns
  GET  /_sim/requests                               what this venue received, per account and
  POST /_sim/requests/reset                         endpoint (exchanges/sim/accounting.py)
Backpack only (exchanges/sim/backpack_server.py):
  POST /_sim/market_state   {ticker|symbol, state}  Open|Closed|CancelOnly|LimitOnly|PostOnly
  POST /_sim/system_fill    {account, ticker, side, qty, price, trade_id}  a history-only fill
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from aiohttp import web

from exchanges.base import Side
from exchanges.sim.faults import ALL_FAULTS, FaultName
from exchanges.sim.market import (
    VENUES,
    OrderNotFound,
    SimMarket,
    SimRejected,
    VenueBook,
    VenueName,
    WouldCross,
    fill_json,
    order_json,
)

logger = logging.getLogger(__name__)

PREFIX = "/_sim"
_MAX_STEPS = 10_000  # one request must not stall the event loop for long


class _BadInput(Exception):
    """The request is malformed; the message goes back to the caller as is."""


Body = dict[str, Any]
Handler = Callable[[Body], dict[str, object]]


def add_control_routes(
    app: web.Application, market: SimMarket, venue: VenueName | None = None
) -> None:
    """Add the `/_sim/` routes for `market` to `app`. `venue` is the book that `trade_through`
    and `thin` act on unless the body names one (`"venue": "backpack" | "lighter"`)."""
    if venue is not None and venue not in VENUES:
        raise ValueError(f"unknown venue {venue!r}")

    def book_for(body: Body) -> VenueBook:
        chosen = body.get("venue", venue)
        if chosen is None:
            raise _BadInput("venue required")
        if chosen not in VENUES:
            raise _BadInput(f"unknown venue {chosen!r}")
        ticker = _ticker(market, body)
        return market.book(cast(VenueName, chosen), ticker)

    def price(body: Body) -> dict[str, object]:
        ticker = _ticker(market, body)
        market.set_mid(ticker, _positive(body, "price"))
        return {"ticker": ticker, "mid": str(market.mid(ticker)), "tops": _tops(market, ticker)}

    def trade_through(body: Body) -> dict[str, object]:
        book = book_for(body)
        qty = None if body.get("qty") is None else _positive(body, "qty")
        fills = book.trade_through(_positive(body, "price"), qty)
        return {"fills": [fill_json(f) for f in fills]}

    def fill(body: Body) -> dict[str, object]:
        ticker = _ticker(market, body)
        order_id = _int(body, "order_id")
        qty = _positive(body, "qty")
        chosen = body.get("venue", venue)
        venues = VENUES if chosen is None else (chosen,)
        for name in venues:
            if name not in VENUES:
                raise _BadInput(f"unknown venue {name!r}")
            book = market.book(name, ticker)
            order = book.find_order(_owner(book, order_id), order_id=order_id)
            if order is not None:
                return {"fill": fill_json(book.fill_resting(order_id, qty))}
        raise _BadInput(f"no resting order {order_id} on {ticker}")

    def arm(body: Body) -> dict[str, object]:
        fault = body.get("fault")
        if fault not in ALL_FAULTS:
            raise _BadInput(f"unknown fault {fault!r}")
        count = _int(body, "count", default=1)
        if count < 0:
            raise _BadInput("count must be >= 0")
        market.faults.arm(cast(FaultName, fault), count)
        return {"faults": market.faults.snapshot()}

    def order(body: Body) -> dict[str, object]:
        """Trade for an account directly: a resting post-only limit with `price`, else a market
        order (how tests leave positions and orders behind without a signed client)."""
        book = book_for(body)
        account = _int(body, "account")
        side_text = body.get("side")
        if side_text not in ("buy", "sell"):
            raise _BadInput("side must be 'buy' or 'sell'")
        side = Side(side_text)
        qty = _decimal(body, "qty")
        try:
            if body.get("price") is not None:
                placed = book.place_limit(
                    account, side, qty, _decimal(body, "price"), client_id=None, post_only=True
                )
            else:
                worst = Decimal("1e9") if side is Side.BUY else Decimal(0)
                placed = book.place_market(account, side, qty, worst, client_id=None)
        except (WouldCross, SimRejected) as exc:
            raise _BadInput(f"order refused: {exc}") from None
        return {"order": order_json(placed)}

    def disarm(body: Body) -> dict[str, object]:
        fault = body.get("fault")
        if fault is not None and fault not in ALL_FAULTS:
            raise _BadInput(f"unknown fault {fault!r}")
        market.faults.disarm(cast(FaultName | None, fault))
        return {"faults": market.faults.snapshot()}

    def thin(body: Body) -> dict[str, object]:
        book = book_for(body)
        if "qty" not in body:
            raise _BadInput("qty required (null restores normal depth)")
        qty = None if body["qty"] is None else _non_negative(body, "qty")
        book.set_thin(qty)
        bids, asks = book.levels(1000)
        return {
            "bid_total": str(sum((q for _, q in bids), Decimal(0))),
            "ask_total": str(sum((q for _, q in asks), Decimal(0))),
        }

    def step(body: Body) -> dict[str, object]:
        count = _int(body, "count", default=1)
        if not 1 <= count <= _MAX_STEPS:
            raise _BadInput(f"count must be within 1..{_MAX_STEPS}")
        for _ in range(count):
            market.step()
        return {"steps": market.steps}

    async def truth(_: web.Request) -> web.Response:
        return web.json_response(market.truth())

    app.router.add_get(f"{PREFIX}/truth", truth)
    for path, handler in (
        ("price", price),
        ("trade_through", trade_through),
        ("fill", fill),
        ("order", order),
        ("faults/arm", arm),
        ("faults/disarm", disarm),
        ("thin", thin),
        ("step", step),
    ):
        app.router.add_post(f"{PREFIX}/{path}", _json_route(handler))


def add_timings_route(app: web.Application, timings: Callable[[], dict[str, object]]) -> None:
    """`GET /_sim/timings`: a server's benchmark timestamps (`time.perf_counter_ns()`, the
    monotonic clock every process on the host shares), e.g. when each fill event was written to
    a WebSocket or each sendTx arrived. Instrumentation only: recording them costs a dict insert
    per event, and nothing reads them but the benchmarks."""

    async def route(_: web.Request) -> web.Response:
        return web.json_response(timings())

    app.router.add_get(f"{PREFIX}/timings", route)


def _json_route(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def route(request: web.Request) -> web.Response:
        try:
            raw = await request.read()
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise _BadInput("body must be a JSON object")
            return web.json_response(handler(body))
        except (_BadInput, SimRejected, OrderNotFound) as error:
            reason = error.reason if isinstance(error, SimRejected) else str(error)
            return _error(reason or type(error).__name__)
        except json.JSONDecodeError:
            return _error("body is not JSON")
        except KeyError as error:
            return _error(f"unknown {error.args[0]!r}")

    return route


def _error(message: str) -> web.Response:
    logger.info("sim control request refused: %s", message)
    return web.json_response({"error": message}, status=400)


def _ticker(market: SimMarket, body: Body) -> str:
    ticker = body.get("ticker")
    if not isinstance(ticker, str) or ticker not in market.tickers:
        raise _BadInput(f"unknown ticker {ticker!r}")
    return ticker


def _decimal(body: Body, name: str) -> Decimal:
    value = body.get(name)
    if value is None:
        raise _BadInput(f"{name} required")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _BadInput(f"{name} must be a decimal string")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _BadInput(f"{name} is not a number: {value!r}") from None
    if not number.is_finite():
        raise _BadInput(f"{name} must be finite")
    return number


def _positive(body: Body, name: str) -> Decimal:
    number = _decimal(body, name)
    if number <= 0:
        raise _BadInput(f"{name} must be > 0")
    return number


def _non_negative(body: Body, name: str) -> Decimal:
    number = _decimal(body, name)
    if number < 0:
        raise _BadInput(f"{name} must be >= 0")
    return number


def _int(body: Body, name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if value is None:
        raise _BadInput(f"{name} required")
    if isinstance(value, bool):
        raise _BadInput(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _BadInput(f"{name} must be an integer") from None


def _owner(book: VenueBook, order_id: int) -> int:
    """The account that owns `order_id` on this book (-1 when none does)."""
    for account in book.accounts():
        if book.find_order(account, order_id=order_id) is not None:
            return account
    return -1


def _tops(market: SimMarket, ticker: str) -> dict[str, dict[str, str]]:
    tops: dict[str, dict[str, str]] = {}
    for venue in VENUES:
        bid, bid_qty, ask, ask_qty = market.book(venue, ticker).top()
        tops[venue] = {
            "bid": str(bid),
            "bid_qty": str(bid_qty),
            "ask": str(ask),
            "ask_qty": str(ask_qty),
        }
    return tops

"""Drive a simulator with stock ccxt: run by the ccxt venv's python, never imported by pytest.

    python ccxt_client.py    (then JSON lines on stdin)

One process is one ccxt exchange (markets loaded once, one rate limiter) for a test's calls.
It imports ccxt first, then reads its configuration, so that a test runner can start it ahead
of time. The first stdin line is the configuration: {"venue": "backpack"|"lighter", "api":
"http://127.0.0.1:P", "ws": "ws://...", "market_id": "<venue market id>", "ticker": "BTC"}
plus the venue's keys: Backpack "key", "secret"; Lighter "private_key", "account_index",
"api_key_index", "library_path" (the lighter signer shared library: ccxt's Python Lighter
needs `options['libraryPath']`).

Then one request a line, {"scenario": NAME, "args": {...}}, each answered by one line on
stdout: {"ok": true, "result": …, "requests": […]} or {"ok": false, "error": "<ccxt exception
class>", "message": …, "traceback": …, "requests": […]}; `requests` lists the HTTP calls ccxt
made for that scenario ("METHOD path?query -> status"), to name a simulator gap. The process
ends at the end of stdin. Anything else written to stdout (by ccxt or the signer library)
goes to stderr, so stdout carries only the answers.

Only what a real client of the venue configures is set (the URLs, the keys and, for Lighter,
the account, API key index and signer library path): everything else, the rate limiter
included, is ccxt 4.5.90 as shipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import ccxt.pro as ccxtpro

Scenario = Callable[[Any, dict[str, Any], dict[str, Any]], Awaitable[Any]]
SCENARIOS: dict[str, Scenario] = {}
REQUESTS: list[str] = []
WATCH_TIMEOUT_S = 8.0


def scenario(func: Scenario) -> Scenario:
    SCENARIOS[func.__name__] = func
    return func


def make_exchange(config: dict[str, Any]) -> Any:
    venue = config["venue"]
    if venue == "backpack":
        # The account's API key pair: all ccxt's Backpack needs to sign.
        exchange = ccxtpro.backpack({"apiKey": config["key"], "secret": config["secret"]})
        exchange.urls["api"] = {  # the simulator's, in place of api.backpack.exchange
            "public": config["api"],
            "private": config["api"],
            "ws": {"public": config["ws"], "private": config["ws"]},
        }
    elif venue == "lighter":
        account, key = str(config["account_index"]), str(config["api_key_index"])
        private_key = str(config["private_key"]).removeprefix("0x")
        exchange = ccxtpro.lighter(
            {
                "options": {
                    # ccxt signs with Lighter's signer library, which it does not ship.
                    "libraryPath": config["library_path"],
                    # Without it ccxt asks the venue for the account of an L1 address, from
                    # an L1 private key: a client holding only an API key names its account.
                    "accountIndex": int(account),
                    # The slot the API key is registered in (ccxt accepts 4-254).
                    "apiKeyIndex": int(key),
                    # The API key itself, for that account and slot.
                    "auths": {account: {key: {"lighterPrivateKey": private_key}}},
                },
            }
        )
        exchange.urls["api"] = {  # the simulator's, in place of mainnet.zklighter.elliot.ai
            "root": config["api"],
            "public": config["api"],
            "private": config["api"],
            "ws": config["ws"],
        }
    else:
        raise ValueError(f"unknown venue {venue}")
    _log_requests(exchange)
    return exchange


def _log_requests(exchange: Any) -> None:
    original = exchange.fetch

    async def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        parts = urllib.parse.urlsplit(url)
        line = f"{method} {parts.path}" + (f"?{parts.query}" if parts.query else "")
        try:
            response = await original(url, method, headers, body)
        except Exception as exc:
            REQUESTS.append(f"{line} -> {type(exc).__name__}: {str(exc)[:300]}")
            raise
        REQUESTS.append(f"{line} -> ok")
        return response

    exchange.fetch = fetch


async def symbol_of(exchange: Any, config: dict[str, Any]) -> str:
    await exchange.load_markets()
    market_id = str(config["market_id"])
    markets = exchange.markets_by_id.get(market_id)
    if not markets:
        raise LookupError(f"ccxt has no market with id {market_id!r}")
    return str(markets[0]["symbol"])


def order_view(order: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "clientOrderId", "symbol", "side", "type", "price", "amount", "filled")
    view = {k: order.get(k) for k in keys}
    view["status"] = order.get("status")
    view["info"] = order.get("info")
    return view


def trade_view(trade: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "order", "symbol", "side", "price", "amount", "takerOrMaker", "timestamp")
    return {k: trade.get(k) for k in keys}


def top_of(book: dict[str, Any]) -> dict[str, Any]:
    bids, asks = book.get("bids") or [], book.get("asks") or []
    return {
        "bid": bids[0][0] if bids else None,
        "bid_qty": bids[0][1] if bids else None,
        "ask": asks[0][0] if asks else None,
        "ask_qty": asks[0][1] if asks else None,
        "nonce": book.get("nonce"),
    }


# -- REST ---------------------------------------------------------------------------------------


@scenario
async def load_markets(exchange: Any, config: dict[str, Any], args: dict[str, Any]) -> Any:
    symbol = await symbol_of(exchange, config)
    market = exchange.market(symbol)
    return {
        "symbols": sorted(exchange.symbols),
        "symbol": symbol,
        "market": {
            k: market.get(k)
            for k in ("id", "base", "quote", "settle", "type", "swap", "active", "linear")
        },
        "precision": market["precision"],
        "limits": {k: market["limits"][k] for k in ("amount", "price")},
    }


@scenario
async def order_book(exchange: Any, config: dict[str, Any], args: dict[str, Any]) -> Any:
    symbol = await symbol_of(exchange, config)
    book = await exchange.fetch_order_book(symbol)
    return {"symbol": symbol, "top": top_of(book), "bids": book["bids"], "asks": book["asks"]}


@scenario
async def balance_positions(exchange: Any, config: dict[str, Any], args: dict[str, Any]) -> Any:
    symbol = await symbol_of(exchange, config)
    balance = await exchange.fetch_balance()
    positions = await exchange.fetch_positions()
    return {
        "symbol": symbol,
        "total": balance.get("total"),
        "free": balance.get("free"),
        "used": balance.get("used"),
        "positions": [
            {k: p.get(k) for k in ("symbol", "side", "contracts", "entryPrice", "info")}
            for p in positions
        ],
    }


@scenario
async def create_order(exchange: Any, config: dict[str, Any], args: dict[str, Any]) -> Any:
    symbol = await symbol_of(exchange, config)
    params = args.get("params", {})
    order = await exchange.create_order(
        symbol, args["type"], args["side"], args["amount"], args.get("price"), params
    )
    return order_view(order)


@scenario
async def cancel_order(exchange: Any, config: dict[str, Any], args: dict[str, Any]) -> Any:
    symbol = await symbol_of(exchange, config)
    order = await exchange.cancel_order(str(args["id"]), symbol)
    return order_view(order)


@scenario
async def open_orders(exchange: Any, config: dict[str, Any], args: dict[str, Any]) -> Any:
    symbol = await symbol_of(exchange, config)
    return [order_view(o) for o in await exchange.fetch_open_orders(symbol)]


@scenario
async def my_trades(exchange: Any, config: dict[str, Any], args: dict[str, Any]) -> Any:
    symbol = await symbol_of(exchange, config)
    return [trade_view(t) for t in await exchange.fetch_my_trades(symbol)]


# -- WebSocket ----------------------------------------------------------------------------------


async def _sim_top(exchange: Any, config: dict[str, Any]) -> dict[str, str]:
    """The simulator's own book top, from its control route `/_sim/truth`."""
    response = await exchange.fetch(config["api"] + "/_sim/truth", "GET", None, None)
    book = response["venues"][config["venue"]]["books"][config["ticker"]]
    return {"bid": book["best_bid"], "ask": book["best_ask"]}


@scenario
async def watch_order_book(exchange: Any, config: dict[str, Any], args: dict[str, Any]) -> Any:
    """Watch until ccxt's book top equals the simulator's top (both move every tick)."""
    symbol = await symbol_of(exchange, config)
    deadline = time.monotonic() + WATCH_TIMEOUT_S
    updates = 0
    while True:
        remaining = deadline - time.monotonic()
        book = await asyncio.wait_for(exchange.watch_order_book(symbol), max(remaining, 0.01))
        updates += 1
        top = top_of(book)
        sim = await _sim_top(exchange, config)
        if (
            top["bid"] is not None
            and top["ask"] is not None
            and float(sim["bid"]) == top["bid"]
            and float(sim["ask"]) == top["ask"]
        ):
            return {"symbol": symbol, "top": top, "sim": sim, "updates": updates, "matched": True}
        if time.monotonic() > deadline:
            return {"symbol": symbol, "top": top, "sim": sim, "updates": updates, "matched": False}


async def _barrier(exchange: Any, symbol: str) -> None:
    """Make sure the venue has processed our earlier subscriptions on the connection.

    A venue handles one connection's messages in order: once a public subscription sent after
    the private one has delivered data, the private subscription is in place too.
    """
    if exchange.id == "backpack":
        await asyncio.wait_for(exchange.watch_bids_asks([symbol]), WATCH_TIMEOUT_S)
    else:
        await asyncio.wait_for(exchange.watch_order_book(symbol), WATCH_TIMEOUT_S)


async def _subscribed(task: asyncio.Task[Any], exchange: Any, symbol: str) -> None:
    while not exchange.clients:  # the watch task opens the connection
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    client = next(iter(exchange.clients.values()))
    await asyncio.wait_for(asyncio.shield(client.connected), WATCH_TIMEOUT_S)
    while not client.subscriptions:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    await _barrier(exchange, symbol)
    if task.done():
        task.result()  # a refused subscription surfaces here


async def _watch_until(
    exchange: Any,
    watch: Callable[[], Awaitable[list[dict[str, Any]]]],
    found: Callable[[list[dict[str, Any]]], bool],
    act: Callable[[], Awaitable[Any]],
    symbol: str,
) -> tuple[Any, list[dict[str, Any]]]:
    """Subscribe with `watch`, then `act`, then watch until `found` says the update came."""
    first = asyncio.ensure_future(watch())
    await _subscribed(first, exchange, symbol)
    acted = await act()
    deadline = time.monotonic() + WATCH_TIMEOUT_S
    seen: list[dict[str, Any]] = []
    pending: asyncio.Future[Any] = first
    while True:
        items = await asyncio.wait_for(pending, max(deadline - time.monotonic(), 0.01))
        seen.extend(items)
        if found(seen):
            return acted, seen
        pending = asyncio.ensure_future(watch())


@scenario
async def watch_orders(exchange: Any, config: dict[str, Any], args: dict[str, Any]) -> Any:
    """Subscribe to order updates, place the order in args, report what the stream showed."""
    symbol = await symbol_of(exchange, config)
    marker = args.get("client_id")

    async def act() -> Any:
        params = dict(args.get("params", {}))
        return await exchange.create_order(
            symbol, args["type"], args["side"], args["amount"], args.get("price"), params
        )

    def found(orders: list[dict[str, Any]]) -> bool:
        return any(str(o.get("clientOrderId")) == str(marker) for o in orders)

    created, seen = await _watch_until(
        exchange, lambda: exchange.watch_orders(symbol), found, act, symbol
    )
    return {"created": order_view(created), "stream": [order_view(o) for o in seen]}


@scenario
async def watch_my_trades(exchange: Any, config: dict[str, Any], args: dict[str, Any]) -> Any:
    """Subscribe to our trades, place the (crossing) order in args, report the stream."""
    symbol = await symbol_of(exchange, config)

    async def act() -> Any:
        return await exchange.create_order(
            symbol, args["type"], args["side"], args["amount"], args.get("price"), args["params"]
        )

    created, seen = await _watch_until(
        exchange, lambda: exchange.watch_my_trades(symbol), bool, act, symbol
    )
    return {"created": order_view(created), "stream": [trade_view(t) for t in seen]}


async def answer(exchange: Any, config: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    REQUESTS.clear()
    try:
        scenario = SCENARIOS[request["scenario"]]
        result = await scenario(exchange, config, request.get("args") or {})
        return {"ok": True, "result": result, "requests": list(REQUESTS)}
    except Exception as exc:
        return {
            "ok": False,
            "error": type(exc).__name__,
            "message": str(exc)[:2000],
            "traceback": traceback.format_exc()[-3000:],
            "requests": list(REQUESTS),
        }


async def main(answers: Any) -> None:
    """Read the configuration, then answer each request line of stdin with one line on
    `answers`, until stdin ends."""
    loop = asyncio.get_running_loop()
    requests = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(requests), sys.stdin)
    first = await requests.readline()
    if not first:  # started ahead of time, never used
        return
    config = json.loads(first)
    exchange = make_exchange(config)
    try:
        while line := await requests.readline():
            outcome = await answer(exchange, config, json.loads(line))
            answers.write(json.dumps(outcome, default=str) + "\n")
            answers.flush()
    finally:
        await exchange.close()


if __name__ == "__main__":
    # Answers go to the real stdout; fd 1 becomes stderr for whatever else prints there.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    asyncio.run(main(answers))

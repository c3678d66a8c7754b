"""Connection reuse: TCP connections opened per 100 orders, ours vs bpx-py's default client.

    python -m bench.connections --orders 100

Each order is a post-only limit placed well inside the book's passive side and then cancelled
(place + cancel = two signed REST requests), against the simulated Backpack venue on loopback.
The venue itself counts the TCP connections it accepts (`BackpackServer.connections_opened`),
so both clients are measured the same way:

- ours: `exchanges.backpack.BackpackVenue` (bpx-py request building and signing over our
  keep-alive HTTP client), the counts taken after `connect()` (market rules, key check, the
  WebSocket) so the figure is "after warm-up";
- bpx-py default: `bpx.async_.account.Account` with its module-level `AsyncHttpClient`, which
  opens a new aiohttp session, hence a new connection, for every request.

Prints one JSON line. The design budget: no new connection per request after warm-up
(<= 2 per 100 orders).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

TICKER = "BTC"
SYMBOL = f"{TICKER}_USDC_PERP"
SIZE = Decimal("0.001")
TICKS_AWAY = 200  # far enough from the top that a passive order never crosses while the book walks


async def _ours(server: Any, public: str, secret: str, orders: int) -> dict[str, Any]:
    from exchanges.backpack import BackpackVenue
    from exchanges.base import Side

    venue = BackpackVenue(
        TICKER,
        api_url=server.api_url,
        ws_url=server.ws_url,
        public_key=public,
        secret_key=secret,
    )
    before_connect = server.connections_opened
    await venue.connect()
    try:
        market = venue.market()
        warm = server.connections_opened
        started = time.perf_counter()
        for i in range(orders):
            top = venue.top()
            assert top is not None
            price = top.bid - market.tick_size * TICKS_AWAY
            order = await venue.place_post_only(Side.BUY, SIZE, price, 1_000_000 + i)
            await venue.cancel(order)
        elapsed = time.perf_counter() - started
        after = server.connections_opened
    finally:
        await venue.close()
    return {
        "connect_connections": warm - before_connect,
        "order_connections": after - warm,
        "per_100_orders": round((after - warm) * 100 / orders, 2),
        "ms_per_place_cancel": round(elapsed * 1000 / orders, 2),
    }


async def _bpx_default(
    server: Any, market: Any, public: str, secret: str, orders: int
) -> dict[str, Any]:
    from bpx.async_.account import Account

    account = Account(public, secret)
    account.BPX_API_URL = server.api_url
    book = market.book("backpack", TICKER)
    warm = server.connections_opened
    started = time.perf_counter()
    for i in range(orders):
        best_bid = book.top()[0]  # read in-process: only the orders' own requests are counted
        price = best_bid - book.rules.tick * TICKS_AWAY
        placed = await account.execute_order(
            symbol=SYMBOL,
            side="Bid",
            order_type="Limit",
            time_in_force="GTC",
            quantity=str(SIZE),
            price=str(price),
            client_id=2_000_000 + i,
            post_only=True,
        )
        if not isinstance(placed, dict) or "id" not in placed:
            raise RuntimeError(f"bpx-py order refused: {placed}")
        await account.cancel_order(SYMBOL, order_id=str(placed["id"]))
    elapsed = time.perf_counter() - started
    opened = server.connections_opened - warm
    return {
        "order_connections": opened,
        "per_100_orders": round(opened * 100 / orders, 2),
        "ms_per_place_cancel": round(elapsed * 1000 / orders, 2),
    }


async def _measure(orders: int) -> dict[str, Any]:
    from exchanges.sim.backpack_server import BackpackServer, generate_keypair
    from exchanges.sim.market import SimMarket

    public, secret = generate_keypair()
    market = SimMarket(seed=0, fill_rate=0.0)
    server = BackpackServer(market, api_keys={public: 1})
    await server.start()
    await market.start()
    try:
        ours = await _ours(server, public, secret, orders)
        bpx = await _bpx_default(server, market, public, secret, orders)
    finally:
        await market.stop()
        await server.stop()
    return {"ours": ours, "bpx_default": bpx}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.connections", description=__doc__)
    parser.add_argument("--orders", type=int, default=100, help="orders (place + cancel) each")
    args = parser.parse_args(argv)
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    logging.basicConfig(level=logging.ERROR)  # a closing socket warns; not a figure
    started = time.monotonic()
    figures = asyncio.run(_measure(args.orders))
    ours, bpx = figures["ours"], figures["bpx_default"]
    result = {
        "bench": "connections",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "orders": args.orders,
        "requests_per_order": 2,
        "ours": ours,
        "bpx_default": bpx,
        "ratio_bpx_over_ours": (
            None
            if not ours["order_connections"]
            else round(bpx["order_connections"] / ours["order_connections"], 1)
        ),
        "budget_per_100_orders": 2,
        "met": ours["per_100_orders"] <= 2,
        "seconds": round(time.monotonic() - started, 1),
    }
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

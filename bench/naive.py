"""The naive baseline: a maker-on-Backpack / hedge-on-Lighter loop built the way typical
open-source bots are, from the SDKs' defaults. It exists only to be measured beside ours.

Its shape (each a default a user gets by following the SDKs' READMEs):
- Backpack REST through bpx-py's default async client (`bpx.async_.account.Account` with the
  module's `AsyncHttpClient`): a new aiohttp session, so a new TCP connection, per request;
- fills from a plain `websockets` subscription to `account.orderUpdate.<symbol>`, handled inline
  in the reader loop;
- on each fill: a REST position check (`get_open_positions`, bpx-py default client), then the
  hedge with lighter-sdk's `SignerClient.create_market_order`: signed on the fill, nonce from
  the SDK's optimistic nonce manager, sent with the SDK's own HTTP client.

Timestamps (all `time.perf_counter_ns()`):
- `recv_ns`: when `websockets` hands the frame to the reader loop (`async for` yields it);
- `call_ns`: just before `await signer.create_market_order(...)`, i.e. after the position check;
- `send_ns`: on entry to `SignerClient.send_tx` (wrapped on the instance), i.e. after signing and
  the nonce manager, just before the SDK builds and sends the HTTP request. The naive
  in-process latency is `send_ns - recv_ns`. It leaves out the SDK's own request building, so it
  flatters the baseline slightly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

log = logging.getLogger(__name__)

FILL_WAIT_S = 30.0


@dataclass(slots=True)
class NaiveHedge:
    """One maker fill and the hedge it triggered."""

    trade_id: str
    maker_order_id: str
    hedge_client_id: int
    recv_ns: int
    call_ns: int = 0
    send_ns: int = 0
    ok: bool = False
    error: str = ""


@dataclass(slots=True)
class Resting:
    order_id: str
    client_id: int
    qty: str


class NaiveBot:
    """Quote post-only on Backpack, hedge each fill on Lighter: SDK defaults throughout."""

    def __init__(
        self,
        env: Mapping[str, str],
        ticker: str,
        size: Decimal,
        *,
        slippage_bps: Decimal = Decimal(20),
    ) -> None:
        self.env = dict(env)
        self.ticker = ticker
        self.symbol = f"{ticker}_USDC_PERP"
        self.size = size
        self.slippage_bps = slippage_bps
        self.hedges: list[NaiveHedge] = []
        self.requotes = 0
        self.waited_429 = 0  # book reads the venue answered 429 (waited out, then read again)
        self.resting: Resting | None = None
        self._filled = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._ws: Any = None
        self._account: Any = None
        self._public: Any = None
        self._signer: Any = None
        self._order_api: Any = None
        self._market_index = 0
        self._size_decimals = 0
        self._price_decimals = 0
        self._tick = Decimal(0)
        self._lighter_top: tuple[Decimal, Decimal] | None = None
        self._next_client_id = int(time.time()) % 1_000_000_000 + 3_000_000_000
        self._send_ns = 0

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        import lighter
        import websockets
        from bpx.async_.account import Account
        from bpx.async_.public import Public

        env = self.env
        api_url = env["BACKPACK_API_URL"].rstrip("/") + "/"
        self._account = Account(env["BACKPACK_PUBLIC_KEY"], env["BACKPACK_SECRET_KEY"])
        self._account.BPX_API_URL = api_url
        self._public = Public()
        self._public.BASE_URL = api_url
        markets = await self._public.get_markets()
        market = next(m for m in markets if m["symbol"] == self.symbol)
        self._tick = Decimal(str(market["filters"]["price"]["tickSize"]))

        self._signer = lighter.SignerClient(
            url=env["LIGHTER_API_URL"].rstrip("/"),
            account_index=int(env["LIGHTER_ACCOUNT_INDEX"]),
            api_private_keys={int(env["LIGHTER_API_KEY_INDEX"]): env["LIGHTER_API_PRIVATE_KEY"]},
        )
        self._stamp_send_tx(self._signer)
        self._order_api = lighter.OrderApi(self._signer.api_client)
        books = await self._order_api.order_books()
        entry = next(b for b in books.order_books if b.symbol == self.ticker)
        self._market_index = int(entry.market_id)
        details = await self._order_api.order_book_details(market_id=self._market_index)
        detail = details.order_book_details[0]
        self._size_decimals = int(detail.size_decimals)
        self._price_decimals = int(detail.price_decimals)

        self._ws = await websockets.connect(env["BACKPACK_WS_URL"])
        timestamp = int(time.time() * 1000)
        signature = self._account._sign({}, "subscribe", timestamp, 5000)
        await self._ws.send(
            json.dumps(
                {
                    "method": "SUBSCRIBE",
                    "params": [f"account.orderUpdate.{self.symbol}"],
                    "signature": [self._account.public_key, signature, str(timestamp), "5000"],
                }
            )
        )
        self._reader = asyncio.create_task(self._read(), name="naive-ws-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._signer is not None:
            await self._signer.close()
            self._signer = None

    def _stamp_send_tx(self, signer: Any) -> None:
        """Measurement only: note when the signed transaction reaches the SDK's sender."""
        original: Callable[..., Awaitable[Any]] = signer.send_tx

        async def send_tx(tx_type: int, tx_info: str) -> Any:
            self._send_ns = time.perf_counter_ns()
            return await original(tx_type=tx_type, tx_info=tx_info)

        signer.send_tx = send_tx

    # -- the loop --------------------------------------------------------------------------------
    async def run(self, iterations: int) -> None:
        """Each iteration: buy `size` as maker (hedged), then sell it back (hedged)."""
        for _ in range(iterations):
            for side in ("Bid", "Ask"):
                await self.step(side)

    async def step(self, side: str) -> None:
        """Quote until the post-only order rests, then wait for its fill (hedged inline)."""
        while not await self._quote(side):
            pass
        try:
            await asyncio.wait_for(self._filled.wait(), FILL_WAIT_S)
        finally:
            self.resting = None

    async def _quote(self, side: str) -> bool:
        depth = await self._public.get_depth(self.symbol)
        best_bid = max(Decimal(str(p)) for p, _ in depth["bids"])
        best_ask = min(Decimal(str(p)) for p, _ in depth["asks"])
        price = best_ask - self._tick if side == "Bid" else best_bid + self._tick
        top = await self._lighter_book_top()
        self._lighter_top = (Decimal(top.bids[0].price), Decimal(top.asks[0].price))
        client_id = self._client_id()
        self._filled.clear()
        reply = await self._account.execute_order(
            symbol=self.symbol,
            side=side,
            order_type="Limit",
            time_in_force="GTC",
            quantity=str(self.size),
            price=str(price),
            client_id=client_id,
            post_only=True,
        )
        if not isinstance(reply, dict) or "id" not in reply:
            # The book moved while the slow requests were out: quote again.
            log.info("naive post-only refused: %s", reply)
            self.requotes += 1
            return False
        self.resting = Resting(str(reply["id"]), client_id, str(self.size))
        return True

    async def _lighter_book_top(self) -> Any:
        """Lighter's top of book over REST. A 429 is waited out (its Retry-After, else 1 s):
        the venue's request weights allow only so many book reads a minute, and this read is
        before the quote, outside the measured fill -> hedge span."""
        from lighter.exceptions import ApiException

        while True:
            try:
                return await self._order_api.order_book_orders(
                    market_id=self._market_index, limit=1
                )
            except ApiException as exc:
                if exc.status != 429:
                    raise
                headers = exc.headers or {}
                wait_s = float(headers.get("Retry-After") or 1)
                self.waited_429 += 1
                log.info("naive: Lighter answered 429 to a book read; waiting %.0f s", wait_s)
                await asyncio.sleep(wait_s)

    def _client_id(self) -> int:
        self._next_client_id += 1
        return self._next_client_id % 2**32

    async def _read(self) -> None:
        async for frame in self._ws:
            recv_ns = time.perf_counter_ns()
            message = json.loads(frame)
            data = message.get("data") or {}
            if data.get("e") == "orderFill":
                await self._on_fill(data, recv_ns)

    async def _on_fill(self, data: dict[str, Any], recv_ns: int) -> None:
        hedge = NaiveHedge(str(data["t"]), str(data["i"]), self._client_id(), recv_ns)
        self.hedges.append(hedge)
        try:
            # The position check every such bot makes before hedging.
            await self._account.get_open_positions()
            qty = Decimal(str(data["l"]))
            is_ask = data["S"] == "Bid"  # bought on Backpack: sell on Lighter
            assert self._lighter_top is not None
            bid, ask = self._lighter_top
            band = self.slippage_bps / Decimal(10_000)
            scale = Decimal(10) ** self._price_decimals
            if is_ask:
                worst = int((bid * (1 - band) * scale).to_integral_value(ROUND_FLOOR))
            else:
                worst = int((ask * (1 + band) * scale).to_integral_value(ROUND_CEILING))
            base_amount = int(qty * Decimal(10) ** self._size_decimals)
            hedge.call_ns = time.perf_counter_ns()
            _, response, error = await self._signer.create_market_order(
                self._market_index, hedge.hedge_client_id, base_amount, worst, is_ask
            )
            hedge.send_ns = self._send_ns
            hedge.ok = error is None and response is not None and response.code == 200
            hedge.error = str(error or "")
        except Exception as exc:  # the baseline reports its failures, it does not retry
            hedge.error = f"{type(exc).__name__}: {exc}"
            log.warning("naive hedge failed: %s", hedge.error)
        finally:
            self._filled.set()

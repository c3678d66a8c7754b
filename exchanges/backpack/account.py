"""The account over REST: market rules, position, collateral, open orders and fill history
(the backfill for fills the stream missed). History trails the engine by up to
`history_lag_s`: reads that must be complete wait for it."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from decimal import Decimal

from exchanges.backpack import parsing
from exchanges.backpack.constants import FILL_PAGE_SIZE
from exchanges.backpack.rest import BackpackRest
from exchanges.backpack.session import Session
from exchanges.base import Balance, ConfigError, Fill, Order, VenueError

log = logging.getLogger(__name__)


class Account:
    def __init__(self, session: Session, rest: BackpackRest) -> None:
        self.session = session
        self.rest = rest

    async def load_market(self) -> None:
        session = self.session
        markets = await self.rest.retrying(self.rest.public.get_markets)
        if not isinstance(markets, list):
            raise VenueError(f"backpack markets: unexpected answer {str(markets)[:200]}")
        for raw in markets:
            if isinstance(raw, dict) and raw.get("symbol") == session.symbol:
                session.market = parsing.market_from_wire(raw, session.ticker)
                return
        listed = sorted(
            str(raw["symbol"]).split("_")[0]
            for raw in markets
            if isinstance(raw, dict) and str(raw.get("symbol", "")).endswith("_PERP")
        )
        raise ConfigError(
            f"unknown Backpack market {session.symbol} for ticker {session.ticker!r}; "
            f"perpetuals listed include {', '.join(listed[:8]) or 'none'}"
        )

    async def position(self) -> Decimal:
        """Signed net position of our symbol (0 when none)."""
        account = self.rest.trading_account()
        rows = await self.rest.retrying(account.get_open_positions)
        return parsing.position_from_rows(rows, self.session.symbol)

    async def balance(self) -> Balance:
        account = self.rest.trading_account()
        raw = await self.rest.retrying(account.get_collateral)
        return parsing.balance_from_collateral(raw)

    async def open_orders(self) -> list[Order]:
        account = self.rest.trading_account()
        symbol = self.session.symbol
        raw = await self.rest.retrying(lambda: account.get_open_orders(symbol=symbol))
        return [parsing.order_from_wire(o) for o in raw if isinstance(o, dict)]

    async def fills_since(self, since_ms: int) -> list[Fill]:
        """Our fills on this symbol from `since_ms` (venue time) until the call, oldest first.

        Fill history trails the engine: a fill seen on the stream (or made while the stream was
        down, or before we connected) less than `history_lag_s` ago may not be there yet, so
        the read waits until that much time has passed since the last such moment."""
        self.rest.trading_account()
        wait = self.session.history_settles_at - time.monotonic()
        if wait > 0:
            log.debug("backpack fills_since: waiting %.2fs for fill history to catch up", wait)
            await asyncio.sleep(wait)
        return await self.fetch_fills(since_ms)

    async def fetch_fills(self, since_ms: int) -> list[Fill]:
        """Fill history from `since_ms` as it stands now, every page, oldest first."""
        account = self.rest.trading_account()
        fills: dict[str, Fill] = {}
        offset = 0
        while True:
            rows = await self.rest.retrying(
                functools.partial(
                    account.get_fill_history,
                    symbol=self.session.symbol,
                    limit=FILL_PAGE_SIZE,
                    offset=offset,
                    from_=max(since_ms, 1),
                )
            )
            recv_ns = time.perf_counter_ns()
            if not isinstance(rows, list):
                raise VenueError(f"backpack fills: unexpected answer {str(rows)[:200]}")
            for row in rows:
                fill = self._fill_from_history(row, recv_ns)
                if fill is not None:
                    fills[fill.trade_id] = fill
            if len(rows) < FILL_PAGE_SIZE:
                break
            offset += FILL_PAGE_SIZE
        return sorted(
            fills.values(), key=lambda f: (f.venue_ts_ms, parsing.trade_order(f.trade_id))
        )

    def _fill_from_history(self, row: object, recv_ns: int) -> Fill | None:
        if isinstance(row, dict) and parsing.is_system_trade(row.get("tradeId")):
            # A venue-made fill (liquidation, ADL, ...): never one of our maker fills, and no
            # id to deduplicate by. Position checks see its effect; the hedger must not.
            log.warning(
                "backpack: system fill in history skipped (tradeId %r, %s): %.200s",
                row.get("tradeId"),
                row.get("systemOrderType"),
                row,
            )
            return None
        try:
            return parsing.fill_from_history(row, recv_ns)
        except parsing.PARSE_ERRORS as exc:
            self.session.stats.malformed += 1
            log.warning("backpack: malformed fill history row skipped (%s): %.200s", exc, row)
            return None

"""What the venue says about our account and its market over REST: market rules, position,
balance, orders (active and recent), and fill history (`fills_since`, paged by cursor through
`trades`, newest first, never relying on `from`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import lighter

from exchanges.base import Balance, ConfigError, Fill, Order, VenueError
from exchanges.common.budget import Priority
from exchanges.lighter.constants import (
    MAX_TRADE_PAGES,
    PARSE_ERRORS,
    RECENT_INACTIVE_ORDERS,
    TRADES_PAGE,
)
from exchanges.lighter.parsing import (
    balance_from_account,
    fill_from_trade,
    market_from_detail,
    order_from_wire,
    position_from_account,
    ts_ms,
)
from exchanges.lighter.rest import LighterRest
from exchanges.lighter.scaling import Scales
from exchanges.lighter.session import Session

log = logging.getLogger(__name__)


class Account:
    def __init__(self, session: Session, rest: LighterRest) -> None:
        self.session = session
        self.rest = rest

    async def load_market(self) -> None:
        """The market's rules (`orderBooks`, `orderBookDetails`) into the session."""
        session = self.session
        api = lighter.OrderApi(self.rest.client())
        timeout = session.request_timeout
        books = await self.rest.read(
            lambda: api.order_books(_request_timeout=timeout), "orderBooks"
        )
        entry = next((b for b in books.order_books or [] if b.symbol == session.ticker), None)
        if entry is None:
            listed = sorted(str(b.symbol) for b in books.order_books or [])
            raise ConfigError(
                f"unknown Lighter market {session.ticker!r}; markets listed include "
                f"{', '.join(listed[:8]) or 'none'}"
            )
        if entry.status != "active":
            raise ConfigError(f"Lighter market {session.ticker} is not trading ({entry.status})")
        market_id = int(entry.market_id)
        details = await self.rest.read(
            lambda: api.order_book_details(market_id=market_id, _request_timeout=timeout),
            "orderBookDetails",
        )
        detail = next(
            (d for d in details.order_book_details or [] if d.market_id == market_id), None
        )
        if detail is None:
            raise VenueError(f"lighter: no details for market {session.ticker} ({market_id})")
        market = market_from_detail(session.ticker, market_id, detail)
        session.market = market
        session.scales = Scales(
            int(detail.size_decimals), int(detail.price_decimals), market.min_qty
        )

    async def _detailed_account(self) -> Any:
        api = lighter.AccountApi(self.rest.client())
        account = self.session.account()
        reply = await self.rest.read(
            lambda: api.account(
                by="index", value=str(account), _request_timeout=self.session.request_timeout
            ),
            "account",
        )
        for entry in reply.accounts or []:
            if int(entry.index) == account:
                return entry
        raise VenueError(f"lighter account {account} not found")

    async def position(self) -> Decimal:
        return position_from_account(await self._detailed_account(), self.session.market_id)

    async def balance(self) -> Balance:
        return balance_from_account(await self._detailed_account())

    async def _active_orders_reply(self, priority: Priority = Priority.READ) -> Any:
        api = lighter.OrderApi(self.rest.client())
        account, market_id = self.session.account(), self.session.market_id
        return await self.rest.private_read(
            lambda token: api.account_active_orders(
                authorization=token,
                account_index=account,
                market_id=market_id,
                _request_timeout=self.session.request_timeout,
            ),
            "accountActiveOrders",
            priority,
        )

    async def open_orders(self) -> list[Order]:
        reply = await self._active_orders_reply()
        return [order_from_wire(o.to_dict(), self.session.symbol) for o in reply.orders or []]

    async def recent_orders(
        self, priority: Priority = Priority.READ, *, active: bool = True
    ) -> list[dict[str, Any]]:
        """Our active orders and the most recent inactive ones on this market (a hedge's
        outcome is looked up at HEDGE priority: it must not queue behind routine reads)."""
        api = lighter.OrderApi(self.rest.client())
        account, market_id = self.session.account(), self.session.market_id
        resting = (await self._active_orders_reply(priority)).orders or [] if active else []
        inactive = await self.rest.private_read(
            lambda token: api.account_inactive_orders(
                authorization=token,
                account_index=account,
                limit=RECENT_INACTIVE_ORDERS,
                market_id=market_id,
                _request_timeout=self.session.request_timeout,
            ),
            "accountInactiveOrders",
            priority,
        )
        return [o.to_dict() for o in resting + (inactive.orders or [])]

    async def fills_since(self, since_ms: int) -> list[Fill]:
        """Our fills on this market from `since_ms`, oldest first, with the same trade ids as
        the stream gives (order index : cumulative filled). Cumulative amounts are counted from
        trades up to 10 minutes earlier, so an order straddling `since_ms` keeps its ids."""
        trades = await self._trades_since(max(since_ms - 600_000, 0))
        recv_ns = time.perf_counter_ns()
        account, scales = self.session.account(), self.session.require_scales()
        cumulative: dict[int, Decimal] = {}
        fills: list[Fill] = []
        for trade in sorted(trades, key=lambda t: (t.timestamp, t.trade_id)):
            try:
                fill = fill_from_trade(
                    trade,
                    account,
                    cumulative,
                    symbol=self.session.symbol,
                    size_decimals=scales.size_decimals,
                    recv_ns=recv_ns,
                    fees=self.session.fees,
                )
            except PARSE_ERRORS as exc:
                self.session.stats.malformed += 1
                log.warning("lighter: malformed trade skipped (%s): %.200s", exc, trade)
                continue
            if fill is None:
                continue
            order_index = int(fill.order_id or 0)
            cumulative[order_index] = cumulative.get(order_index, Decimal(0)) + fill.qty
            if fill.venue_ts_ms >= since_ms:
                fills.append(fill)
        return fills

    async def _trades_since(self, lower_ms: int) -> list[Any]:
        """Every trade of ours on this market from `lower_ms` on, deduped by trade id. Pages of
        at most TRADES_PAGE, newest first (`sort_dir=desc`, the documented order), by cursor,
        until a page reaches back past `lower_ms`: the time we already know. `from` is never
        sent: whether the venue reads it as a lower bound or (as ccxt passes it) an upper
        bound is unconfirmed, and relying on either reading would miss fills under the other."""
        api = lighter.OrderApi(self.rest.client())
        account, market_id = self.session.account(), self.session.market_id

        def page_call(cursor: str | None) -> Callable[[str], Awaitable[Any]]:
            return lambda token: api.trades(
                sort_by="timestamp",
                limit=TRADES_PAGE,
                authorization=token,
                market_id=market_id,
                account_index=account,
                sort_dir="desc",
                cursor=cursor,
                _request_timeout=self.session.request_timeout,
            )

        by_id: dict[object, Any] = {}
        cursor: str | None = None
        for _ in range(MAX_TRADE_PAGES):
            reply = await self.rest.private_read(page_call(cursor), "trades")
            page = reply.trades or []
            stamps = [_trade_ms(t) for t in page]
            for trade, stamp in zip(page, stamps, strict=True):
                if stamp is None or stamp >= lower_ms:  # (a malformed one is skipped later)
                    by_id.setdefault(trade.trade_id, trade)
            next_cursor = reply.next_cursor or None
            reached = any(stamp is not None and stamp < lower_ms for stamp in stamps)
            if not page or reached or next_cursor is None or next_cursor == cursor:
                break
            cursor = next_cursor
        else:
            log.warning("lighter fills_since: stopped after %s pages", MAX_TRADE_PAGES)
        return list(by_id.values())


def _trade_ms(trade: Any) -> int | None:
    try:
        return ts_ms(int(trade.timestamp))
    except PARSE_ERRORS:
        return None

"""Orders: place (post-only and IOC), cancel, cancel all, and the lookups that resolve an
ambiguous placement.

Every order is tracked (exchanges/common/orders.py) before its request leaves: a fill on the
stream may beat the REST reply. A placement that times out, drops after sending, or gets a 5xx
is *ambiguous*: known at once if the account stream has shown it already, else looked up by
client id (order query, order history, fill history) until known. A lookup that starts after
the request's signing window has closed and finds nothing proves the order was never placed
(the venue refuses a request older than its window), and only then is the order sent again —
never a duplicate.

Every request of a placement goes through the account's budget at `Priority.ORDER` (a maker
quote) or `Priority.HEDGE` (an IOC: the bot must get out); a 429 is sent again once the budget
allows, and never counts as one of the `retry_attempts`.

Cancels are sent by our client with an integer `clientId` (bpx-py would send a string, which
the venue refuses). `RESOURCE_NOT_FOUND` (HTTP 400 or 404) means the order is gone; a 202 with
no body means the cancel is requested: its outcome comes from the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

from exchanges.backpack import parsing
from exchanges.backpack.account import Account
from exchanges.backpack.auth import signed_headers
from exchanges.backpack.constants import (
    LOOKUP_LOOKBACK_MS,
    MAX_CLIENT_ID,
    ORDER_HISTORY_LOOKUP,
    POST_ONLY_EXPIRY,
    VENUE,
)
from exchanges.backpack.rest import BackpackRest, OrderNotFound, certainly_not_placed
from exchanges.backpack.session import Session, now_ms
from exchanges.base import (
    AmbiguousOrderState,
    InsufficientLiquidity,
    Order,
    OrderKind,
    OrderStatus,
    PostOnlyRejected,
    Side,
    VenueError,
)
from exchanges.common.budget import Priority
from exchanges.common.http import RateLimited, request_priority
from exchanges.common.orders import OrderTracker, TrackedOrder

log = logging.getLogger(__name__)


class Execution:
    def __init__(
        self,
        session: Session,
        rest: BackpackRest,
        tracker: OrderTracker,
        account: Account,
        *,
        resolve_timeout_s: float,
        window_margin_ms: int,
    ) -> None:
        self.session = session
        self.rest = rest
        self.tracker = tracker
        self.account = account
        # How long before an unresolved ambiguous placement is handed to the caller.
        self.resolve_timeout_s = resolve_timeout_s
        # Slack on the venue's signing window before "not found" counts as "never placed".
        self.window_margin_ms = window_margin_ms

    # -- placing ------------------------------------------------------------------------------

    async def place_post_only(
        self, side: Side, qty: Decimal, price: Decimal, client_id: int
    ) -> Order:
        order = await self.place(side, qty, price, client_id, OrderKind.POST_ONLY)
        if order.status is OrderStatus.EXPIRED and order.filled_qty == 0:
            # Some venue versions expire a crossing post-only instead of refusing it.
            raise PostOnlyRejected(f"backpack post-only {client_id} expired ({POST_ONLY_EXPIRY})")
        return order

    async def place_hedge(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> Order:
        order = await self.place(side, qty, worst_price, client_id, OrderKind.IOC)
        if order.status.is_terminal and order.filled_qty == 0:
            raise InsufficientLiquidity(
                f"backpack hedge {client_id}: nothing filled within {worst_price}"
            )
        return order

    async def place_ioc(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int, *, reduce_only: bool
    ) -> Order:
        """An IOC that may fill nothing (no InsufficientLiquidity): the closeout's unwind."""
        return await self.place(
            side, qty, worst_price, client_id, OrderKind.IOC, reduce_only=reduce_only
        )

    async def place(
        self,
        side: Side,
        qty: Decimal,
        price: Decimal,
        client_id: int,
        kind: OrderKind,
        *,
        reduce_only: bool = False,
    ) -> Order:
        """Track, send (resolving an ambiguous answer), and bind the venue's order id."""
        self.rest.trading_account()
        if not 0 < client_id <= MAX_CLIENT_ID:
            # bpx-py silently drops a client id of 0, and the venue wants a uint32.
            raise ValueError(f"client_id must be a uint32 above 0, got {client_id}")
        quantity, limit_price = self._order_numbers(qty, price)
        tracked = self.tracker.track(client_id, side, qty, price, kind, sent_ms=now_ms())
        priority = Priority.HEDGE if kind is OrderKind.IOC else Priority.ORDER
        try:
            with request_priority(priority):
                order = await self._send(tracked, quantity, limit_price, reduce_only)
        except PostOnlyRejected:
            self.tracker.move(tracked, OrderStatus.REJECTED, venue_status="PostOnlyRejected")
            raise
        except AmbiguousOrderState:
            raise  # still tracked: the stream or a recovery may still report the order
        except VenueError:
            self.tracker.forget(tracked)  # refused or never sent: the client id is free
            raise
        if order.order_id is not None:
            self.tracker.bind(tracked, order.order_id)
        return order

    def _order_numbers(self, qty: Decimal, price: Decimal) -> tuple[str, str]:
        market = self.session.require_market()
        if qty <= 0 or qty % market.step_size != 0 or qty < market.min_qty:
            raise ValueError(
                f"quantity {qty} is not a multiple of {market.step_size} >= {market.min_qty}"
            )
        if price <= 0 or price % market.tick_size != 0:
            raise ValueError(f"price {price} is not a positive multiple of {market.tick_size}")
        return parsing.fmt(qty), parsing.fmt(price)

    async def _send(
        self, tracked: TrackedOrder, quantity: str, limit_price: str, reduce_only: bool
    ) -> Order:
        """Send until placed: again after a failure that proves it was not placed; after an
        ambiguous one, only once a lookup proved it was never placed."""
        client_id, kind = tracked.client_id, tracked.kind
        last_error: VenueError | None = None
        attempt = 0
        while attempt <= self.session.retry_attempts:
            sent_ms = now_ms()
            try:
                reply = await self._execute(tracked, quantity, limit_price, reduce_only)
            except PostOnlyRejected:
                log.info("backpack post-only %d rejected: would take", client_id)
                raise
            except RateLimited:
                log.info("backpack order %d rate-limited: sending again when allowed", client_id)
                continue  # not placed; the budget holds the next send for the venue's pause
            except VenueError as exc:
                attempt += 1
                if not exc.retryable:
                    raise
                last_error = exc
                if certainly_not_placed(exc):
                    log.warning("backpack order %d not placed (%s); retrying", client_id, exc)
                    await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
                    continue
                log.warning("backpack order %d ambiguous (%s); resolving", client_id, exc)
                found = await self._resolve(client_id, sent_ms, kind)
                if found is not None:
                    return found
                log.warning("backpack order %d was never placed; sending again", client_id)
                continue
            order = parsing.order_from_wire(reply, kind)
            log.info(
                "backpack %s %s %s @ %s cid=%d -> %s %s",
                kind.value,
                tracked.side.value,
                quantity,
                limit_price,
                client_id,
                order.order_id,
                order.status.value,
            )
            return order
        raise VenueError(
            f"backpack order {client_id} not placed after {self.session.retry_attempts + 1} "
            f"attempts: {last_error}",
            retryable=True,
        )

    async def _execute(
        self, tracked: TrackedOrder, quantity: str, limit_price: str, reduce_only: bool
    ) -> Any:
        post_only = tracked.kind is OrderKind.POST_ONLY
        return await self.rest.trading_account().execute_order(
            symbol=self.session.symbol,
            side=parsing.wire_side(tracked.side),
            order_type="Limit",
            time_in_force="GTC" if post_only else "IOC",
            quantity=quantity,
            price=limit_price,
            client_id=tracked.client_id,
            post_only=post_only,
            reduce_only=reduce_only or None,  # bpx-py sends the field only when given
            window=self.session.order_window_ms,
        )

    # -- resolving an ambiguous placement -------------------------------------------------------

    async def _resolve(self, client_id: int, sent_ms: int, kind: OrderKind) -> Order | None:
        """Find out what happened to an ambiguous placement. The order when it exists; None when
        a lookup that began after the signing window closed found nothing (never placed)."""
        session = self.session
        # ... and the history (read by the lookup) must have caught up with that moment.
        history_lag_ms = int(session.history_lag_s * 1000)
        window_closed_ms = sent_ms + session.order_window_ms + self.window_margin_ms
        window_closed_ms += history_lag_ms
        give_up = time.monotonic() + self.resolve_timeout_s
        delay = 0.05
        while True:
            started_ms = now_ms()
            try:
                order = self.seen_on_stream(client_id)
                if order is None:
                    order = await self.lookup(client_id, sent_ms, kind)
            except VenueError as exc:
                log.warning("backpack lookup of order %d failed: %s", client_id, exc)
            else:
                if order is not None:
                    log.info(
                        "backpack order %d resolved: %s %s",
                        client_id,
                        order.order_id,
                        order.status.value,
                    )
                    return order
                if started_ms > window_closed_ms:
                    return None
            if time.monotonic() > give_up:
                raise AmbiguousOrderState(
                    f"backpack order {client_id}: state unknown after "
                    f"{self.resolve_timeout_s:.0f}s",
                    client_id=client_id,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def seen_on_stream(self, client_id: int) -> Order | None:
        """The order as the account stream already showed it (an event of its own bound it to
        its order id): no request needed. An IOC counts only once final, as what filled is
        its answer. None when the stream has not shown it (yet)."""
        tracked = self.tracker.get(client_id)
        if tracked is None or tracked.order_id is None:
            return None
        if tracked.kind is OrderKind.IOC and not tracked.status.is_terminal:
            return None
        return tracked.as_order(VENUE, self.session.symbol)

    async def lookup(self, client_id: int, sent_ms: int, kind: OrderKind) -> Order | None:
        """The order with this client id sent at `sent_ms`: resting, in order history, or
        known from its fills; None when none of them knows it (yet)."""
        account = self.rest.trading_account()
        symbol = self.session.symbol
        try:
            raw = await account.get_open_order(symbol, client_id=client_id)
            return parsing.order_from_wire(raw, kind)
        except OrderNotFound:
            pass
        # Finished already (filled, cancelled, expired): the order history knows it.
        not_before = sent_ms - LOOKUP_LOOKBACK_MS
        history = await account.get_order_history(symbol=symbol, limit=ORDER_HISTORY_LOOKUP)
        for raw in history if isinstance(history, list) else []:
            if (
                parsing.client_id(raw.get("clientId")) == client_id
                and parsing.created_ms(raw) >= not_before
            ):
                return parsing.order_from_wire(raw, kind)
        # Last resort: its fills (an order that traded at once may show there first).
        fills = await self.account.fetch_fills(not_before)
        ours = [f for f in fills if f.client_id == client_id]
        return parsing.order_from_fills(ours, kind) if ours else None

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self, order: Order) -> None:
        """Cancel by order id (or client id). An order that is already gone is not an error:
        its final state arrives as events (a fill after a cancel is still delivered). A cancel
        answered 202 with no body is only requested: its outcome, too, comes from the stream."""
        order_id = order.order_id
        client_id = order.client_id if order_id is None else None
        try:
            answer = await self.rest.retrying(lambda: self._send_cancel(order_id, client_id))
        except OrderNotFound:
            log.info("backpack cancel %s: already finished", order_id or client_id)
            return
        if answer is None:
            log.info("backpack cancel %s (cid=%d) requested (202)", order_id, order.client_id)
            return
        log.info("backpack cancel %s (cid=%d) accepted", order_id, order.client_id)

    async def _send_cancel(self, order_id: str | None, client_id: int | None) -> Any:
        """`DELETE api/v1/order`, signed by bpx-py, sent by our client. Not bpx-py's
        `cancel_order`: it sends a client id as a string, which the venue's parser refuses
        (it wants a JSON u32). The signature is the same either way (`str` of the value)."""
        account = self.rest.trading_account()
        params: dict[str, Any] = {"symbol": self.session.symbol}
        if order_id is not None:
            params["orderId"] = order_id
        elif client_id:
            params["clientId"] = int(client_id)
        else:
            raise ValueError("cancel needs an order id or a client id")
        headers = signed_headers(account, params, "orderCancel")
        return await self.rest.http.delete(account.BPX_API_URL + "api/v1/order", headers, params)

    async def cancel_all(self) -> None:
        account = self.rest.trading_account()
        symbol = self.session.symbol
        cancelled = await self.rest.retrying(lambda: account.cancel_all_orders(symbol))
        log.info("backpack cancel_all: %d orders", len(cancelled) if cancelled else 0)

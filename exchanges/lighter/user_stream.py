"""The one WebSocket: `order_book/{m}` (the book behind `top()`, resubscribed on a nonce gap),
`account_orders/{m}/{account}` (auth token, renewed before expiry and on refusal) and
`account_all/{account}` (no token: our position, `streamed_position()`, with no request).

Our order updates become Fills and OrderEvents: a fill is the growth of an order's
`filled_base_amount`, with trade id `"{order_index}:{filled_base_amount}"`, so a duplicated or
reordered update never counts twice. After a reconnect (or a re-subscription) our orders are
reconciled over REST through the same path, and missed fills are emitted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exchanges.base import Fill, OrderEvent, VenueError, VenueEvent
from exchanges.common.budget import Priority
from exchanges.common.orderbook import OrderBook
from exchanges.common.orders import OrderTracker
from exchanges.common.retry import until_done
from exchanges.common.shared_ws import SharedSocket
from exchanges.common.tasks import Spawn
from exchanges.common.ws import ReconnectingWebSocket
from exchanges.lighter.account import Account
from exchanges.lighter.constants import (
    ACCOUNT_ALL_SNAPSHOT,
    ACCOUNT_ALL_UPDATE,
    ACCOUNT_ORDERS_SNAPSHOT,
    ACCOUNT_ORDERS_UPDATE,
    ORDER_BOOK_SNAPSHOT,
    ORDER_BOOK_UPDATE,
    PARSE_ERRORS,
    PROGRESS,
    VENUE,
    WS_ALREADY_SUBSCRIBED,
    WS_NOT_SUBSCRIBED,
    WS_SLOW_DOWN_S,
    WS_TOO_MANY_MESSAGES,
)
from exchanges.lighter.parsing import (
    OrderUpdate,
    account_orders,
    apply_lighter_order_book,
    frame_kind,
    is_error_frame,
    parse_order_update,
    position_from_account_all,
    stream_error,
    trade_id,
)
from exchanges.lighter.presign import Presigner
from exchanges.lighter.session import Session
from exchanges.lighter.signing import Signer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Delivered:
    filled: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    progress: int = -1


class DeliveredProgress:
    """What has been delivered about each order of the account, by venue order index: the
    basis for dropping a duplicated or older update. Every order counts, ours or not (the
    tracker knows only ours; a foreign fill is still reported, as an external change)."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._by_index: OrderedDict[int, _Delivered] = OrderedDict()

    def __contains__(self, order_index: int) -> bool:
        return order_index in self._by_index

    def accept(self, update: OrderUpdate) -> tuple[Decimal, Decimal] | None:
        """(base, quote) newly filled by `update` (zeros: progress only); None when stale."""
        seen = self._by_index.get(update.order_index)
        if seen is None:
            seen = self._by_index[update.order_index] = _Delivered()
            while len(self._by_index) > self._keep:
                self._by_index.popitem(last=False)
        progress = PROGRESS[update.status]
        filled = update.filled
        if filled < seen.filled or (filled == seen.filled and progress <= seen.progress):
            return None
        delta, quote_delta = filled - seen.filled, update.filled_quote - seen.quote
        seen.filled, seen.quote = filled, update.filled_quote
        seen.progress = max(seen.progress, progress)
        return delta, quote_delta


class UserStream:
    """The socket, its subscriptions, and every order update (stream or REST) turned into
    events: the one path by which an order's state changes."""

    def __init__(
        self,
        session: Session,
        book: OrderBook,
        tracker: OrderTracker,
        signer: Signer,
        presigner: Presigner,
        account: Account,
        emit: Callable[[VenueEvent], None],
        spawn: Spawn,
    ) -> None:
        self.session = session
        self.book = book
        self.tracker = tracker
        self.signer = signer
        self.presigner = presigner
        self.account = account
        self._emit = emit
        self._spawn = spawn
        self.delivered = DeliveredProgress(session.max_remembered)
        self.account_subscribed = False
        self._account_gap = False  # the account stream was down since the last subscription
        self._account_resubscribing = False
        self._restart_pending = False  # a reconnect after the venue's "too many" is due
        self._book_resubscribing = False
        self._position: Decimal | None = None  # from account_all, on this connection
        self._socket: SharedSocket | None = None

    # -- the socket --------------------------------------------------------------------------

    async def attach(self, socket: SharedSocket) -> ReconnectingWebSocket:
        """Join the account's one connection under our market; the first pair attached also
        subscribes the account-wide `account_all` channel (once per connection)."""
        self._socket = socket
        ws = await socket.attach(
            str(self.session.market_id),
            on_message=self.on_frame,
            on_connect=self._on_connect,
            on_reconnect=self._on_reconnect,
            on_disconnect=self._on_disconnect,
        )
        self.session.ws = ws
        return ws

    async def detach(self) -> None:
        socket, self._socket = self._socket, None
        self.session.ws = None
        if socket is not None:
            await socket.detach(str(self.session.market_id))

    def ready(self) -> bool:
        return self.book.synced and (not self.session.keyed or self.account_subscribed)

    def position(self) -> Decimal | None:
        """Our market's signed position as account_all last said it on the live connection."""
        ws = self.session.ws
        if ws is None or not ws.connected:
            return None
        return self._position

    def account_live(self) -> bool:
        ws = self.session.ws
        return ws is not None and ws.connected and self.account_subscribed

    async def _on_connect(self, ws: ReconnectingWebSocket) -> None:
        self.book.reset()
        self._book_resubscribing = False
        self.account_subscribed = False
        self._position = None  # until this connection's snapshot
        channel = f"order_book/{self.session.market_id}"
        await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        if self.session.keyed:
            await ws.send(json.dumps(self._account_subscribe(await self.signer.auth_token())))
            if self._socket is None or self._socket.keys[:1] == [str(self.session.market_id)]:
                # Once per connection, by the first pair: this is never a repeated subscribe.
                channel = f"account_all/{self.session.account()}"
                await ws.send(json.dumps({"type": "subscribe", "channel": channel}))

    def _account_subscribe(self, token: str) -> dict[str, object]:
        channel = f"account_orders/{self.session.market_id}/{self.session.account()}"
        return {"type": "subscribe", "channel": channel, "auth": token}

    def _on_disconnect(self) -> None:
        self._position = None
        self.book.mark_gap("websocket disconnected")
        if self.account_subscribed:
            self._account_gap = True
        self.account_subscribed = False

    async def _on_reconnect(self) -> None:
        if self.session.keyed:
            await self.reconcile_until_done()

    # -- frames ------------------------------------------------------------------------------

    def on_frame(self, frame: str | bytes, recv_ns: int) -> None:
        kind, message = frame_kind(frame)
        if kind is None:
            if is_error_frame(message):  # error frames carry no `type` (and no `channel`)
                self._on_stream_error(message)
                return
            self.session.stats.malformed += 1
            log.warning("lighter: unparsable frame skipped: %.200r", frame)
        elif kind in (ORDER_BOOK_UPDATE, ORDER_BOOK_SNAPSHOT):
            self._on_book(message, kind == ORDER_BOOK_SNAPSHOT)
        elif kind in (ACCOUNT_ORDERS_UPDATE, ACCOUNT_ORDERS_SNAPSHOT):
            self._on_account_orders(message, recv_ns, kind == ACCOUNT_ORDERS_SNAPSHOT)
        elif kind in (ACCOUNT_ALL_UPDATE, ACCOUNT_ALL_SNAPSHOT):
            self._on_account_all(message, kind == ACCOUNT_ALL_SNAPSHOT)
        elif kind == "ping":
            if self.session.ws is not None:
                self.session.ws.send_soon(json.dumps({"type": "pong"}))
        elif kind == "error":
            self._on_stream_error(message)
        else:
            log.debug("lighter: message %s skipped", kind)

    def _on_book(self, message: Mapping[str, Any], snapshot: bool) -> None:
        if snapshot:
            self._book_resubscribing = False
        if not apply_lighter_order_book(self.book, message):
            self._resubscribe_book()
        elif self.presigner.slot is not None:
            self.presigner.check_drift()

    def _resubscribe_book(self) -> None:
        ws = self.session.ws
        if ws is None or self._book_resubscribing:
            return
        self._book_resubscribing = True
        self.session.stats.resubscribes += 1
        channel = f"order_book/{self.session.market_id}"
        log.warning("lighter book gap (%s); resubscribing", self.book.gap_reason)
        ws.send_soon(
            json.dumps({"type": "unsubscribe", "channel": channel}),
            json.dumps({"type": "subscribe", "channel": channel}),
        )

    def _on_account_orders(self, message: Mapping[str, Any], recv_ns: int, snapshot: bool) -> None:
        if snapshot:
            self.account_subscribed = True
            self._account_resubscribing = False
            if self._account_gap:
                self._account_gap = False
                self._spawn(self.reconcile_until_done(), "reconcile")
        try:
            orders = account_orders(message, self.session.market_id)
        except (KeyError, AttributeError, TypeError):
            self.session.stats.malformed += 1
            log.warning("lighter: malformed account_orders skipped: %.300s", message)
            return
        for raw in orders:
            self.on_order_state(raw, recv_ns)

    def _on_account_all(self, message: Mapping[str, Any], snapshot: bool) -> None:
        try:
            position = position_from_account_all(message, self.session.market_id)
        except PARSE_ERRORS as exc:
            self.session.stats.malformed += 1
            log.warning("lighter: malformed account_all skipped (%s): %.300s", exc, message)
            return
        if position is None and snapshot:
            position = Decimal(0)  # a snapshot without our market: flat
        if position is not None:
            self._position = position

    # -- errors and subscriptions --------------------------------------------------------------

    def _on_stream_error(self, message: Mapping[str, Any]) -> None:
        error = stream_error(message)
        where = f" on {error.channel}" if error.channel else ""
        if error.code in (WS_ALREADY_SUBSCRIBED, WS_NOT_SUBSCRIBED):
            # Harmless: a renewal's unsubscribe found the channel already ended, or a subscribe
            # found it live (we never subscribe twice on purpose).
            log.info("lighter stream: %s (code %s)", error.text, error.code)
            return
        if error.code in WS_TOO_MANY_MESSAGES:
            log.warning("lighter stream%s: the venue asks us to slow down: %s", where, error.text)
            ws = self.session.ws
            if ws is not None:
                ws.slow_down(WS_SLOW_DOWN_S)
                if not self._restart_pending:
                    self._restart_pending = True
                    self._spawn(self._restart_after_hold(ws), "restart-after-too-many")
            return
        log.error("lighter stream error%s: %s", where, error.text)
        if self.session.keyed and (error.account_related or error.token_related):
            # The account subscription was refused or ended (e.g. its token expired): a fresh
            # token on a fresh subscription, then a reconcile for what happened in between.
            self.account_subscribed = False
            self._account_gap = True
            if not self._account_resubscribing:
                self._account_resubscribing = True
                self._spawn(self._resubscribe_account(), "account-resubscribe")

    async def _restart_after_hold(self, ws: ReconnectingWebSocket) -> None:
        """The venue ignored a message of ours (which one, it does not say: a subscribe, it
        may be). Once its hold is over, a fresh connection subscribes everything anew and
        reconciles what happened meanwhile."""
        try:
            await asyncio.sleep(WS_SLOW_DOWN_S)
            ws.reconnect("the venue ignored messages of ours (too many)")
        finally:
            self._restart_pending = False

    async def _resubscribe_account(self) -> None:
        delay = 0.05
        while self.session.ws is not None and not self.account_subscribed:
            try:
                token = await self.signer.auth_token(force=True)
                await self._send_account_subscription(self.session.ws, token)
                return
            except VenueError as exc:
                log.warning("lighter account re-subscription failed: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _send_account_subscription(self, ws: ReconnectingWebSocket, token: str) -> None:
        """Unsubscribe, then subscribe with `token`. The venue refuses a second subscribe to a
        live channel (30003) and sends no snapshot, so a subscription is only ever renewed
        this way; an unsubscribe of a channel that is not live is harmless."""
        subscribe = self._account_subscribe(token)
        await ws.send(json.dumps({"type": "unsubscribe", "channel": subscribe["channel"]}))
        await ws.send(json.dumps(subscribe))

    async def token_loop(self) -> None:
        """Owned task: renew the auth token before it expires; the account stream is
        re-subscribed with the new one (the venue may end a subscription at expiry)."""
        signer = self.signer
        while True:
            token = signer.token
            wait = (token[1] - time.time() - signer.token_margin_s) if token else 0.0
            await asyncio.sleep(max(wait, 1.0))
            try:
                fresh = await signer.auth_token(force=True)
            except VenueError as exc:
                log.warning("lighter auth token refresh failed: %s", exc)
                continue
            ws = self.session.ws
            if ws is not None and ws.connected:
                # Events between the unsubscribe and the new snapshot are reconciled over REST.
                self._account_gap = True
                try:
                    await self._send_account_subscription(ws, fresh)
                except VenueError as exc:
                    log.warning("lighter account re-subscription failed: %s", exc)

    # -- order updates -------------------------------------------------------------------------

    def on_order_state(self, raw: Mapping[str, Any], recv_ns: int) -> None:
        """One order snapshot (stream or REST): a Fill for the growth of its filled amount,
        then an OrderEvent, unless it is stale (a duplicate or an older reordered update)."""
        session = self.session
        try:
            update = parse_order_update(raw)
        except PARSE_ERRORS as exc:
            session.stats.malformed += 1
            log.warning("lighter: malformed order update skipped (%s): %.300s", exc, raw)
            return
        if update.market_index != session.market_id:
            return
        news = self.delivered.accept(update)
        if news is None:
            session.stats.duplicates_dropped += 1
            # Nothing to deliver, but an order of ours tracked afresh under this client id
            # (a re-send refused 21728: the first copy exists) learns its state here.
            tracked = self.tracker.get(update.client_id) if update.client_id else None
            if tracked is not None and tracked.is_live:
                self._track(update, str(update.order_index))
            return
        delta, quote_delta = news
        order_id = str(update.order_index)
        if delta > 0:
            price = update.fill_price(delta, quote_delta)
            self._emit_fill(
                Fill(
                    venue=VENUE,
                    symbol=session.symbol,
                    trade_id=trade_id(
                        update.order_index, update.filled, session.require_scales().size_decimals
                    ),
                    order_id=order_id,
                    client_id=update.client_id or None,
                    side=update.side,
                    qty=delta,
                    price=price,
                    fee=session.fees.fee(price, delta, is_maker=update.maker),
                    is_maker=update.maker,
                    venue_ts_ms=update.venue_ts_ms,
                    recv_ns=recv_ns,
                )
            )
        self._track(update, order_id)
        self._emit(
            OrderEvent(
                VENUE,
                session.symbol,
                order_id,
                update.client_id or None,
                update.status,
                update.filled,
                update.raw_status,
                recv_ns,
            )
        )

    def _track(self, update: OrderUpdate, order_id: str) -> None:
        """Move our tracked order (if it is one of ours) to what the venue reports."""
        order = self.tracker.get(update.client_id) if update.client_id else None
        if order is None or order.order_id not in (None, order_id):
            return
        if order.order_id is None:
            self.tracker.bind(order, order_id)
        self.tracker.move(
            order, update.status, filled=update.filled, venue_status=update.raw_status
        )

    def _emit_fill(self, fill: Fill) -> None:
        if not self.tracker.first_fill(fill.trade_id):
            self.session.stats.duplicates_dropped += 1
            return
        self.session.stats.fills_delivered += 1
        log.info(
            "lighter fill trade=%s order=%s cid=%s %s %s @ %s",
            fill.trade_id,
            fill.order_id,
            fill.client_id,
            fill.side.value,
            fill.qty,
            fill.price,
        )
        self._emit(fill)

    # -- recovery ----------------------------------------------------------------------------

    async def reconcile(self, priority: Priority = Priority.READ, *, active: bool = True) -> None:
        """Feed the venue's view of our tracked orders through the event path: fills missed
        by the stream are emitted (exactly once: fills are the growth of filled amounts).
        `active=False` reads the finished orders only (enough for IOCs, one request less)."""
        rows = await self.account.recent_orders(priority, active=active)
        self.session.stats.reconciles += 1
        recv_ns = time.perf_counter_ns()
        for raw in reversed(rows):  # oldest first
            try:
                ours = (
                    self.tracker.is_ours(client_id=int(raw.get("client_order_index") or 0))
                    or int(raw["order_index"]) in self.delivered
                )
            except PARSE_ERRORS:
                ours = False
            if ours:
                self.on_order_state(raw, recv_ns)

    async def reconcile_until_done(self) -> None:
        await until_done(self.reconcile, what="lighter reconciliation", logger=log)

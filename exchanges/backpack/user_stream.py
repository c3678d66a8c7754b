"""The one WebSocket: `depth.<symbol>` (the in-memory book behind `top()`) and, with keys, the
signed `account.orderUpdate.<symbol>` (our fills and order events, delivered synchronously to
the event callback) and `account.positionUpdate.<symbol>` (the streamed position, position.py),
plus what keeps them whole: book resyncs from REST snapshots, one REST position read per
connection (the seed), and after every reconnect a REST backfill of what the socket missed.

Fills are delivered once per trade id, and order events only when they move an order forward
(a reordered or duplicated message never sends an order backwards), both through the one
`OrderTracker`. Events of orders the tracker does not know (placed by someone else, or before
this run) are passed on as they come.

History trails the engine (by up to `history_lag_s`), so the backfill reads once at once and
once more after that lag.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from exchanges.backpack import parsing
from exchanges.backpack.account import Account
from exchanges.backpack.auth import subscribe_message
from exchanges.backpack.constants import (
    ORDER_HISTORY_RECOVERY,
    depth_stream,
    order_update_stream,
    position_update_stream,
)
from exchanges.backpack.position import StreamedPosition
from exchanges.backpack.rest import BackpackRest
from exchanges.backpack.session import Session, now_ms
from exchanges.base import Fill, OrderEvent, VenueError, VenueEvent
from exchanges.common.orderbook import OrderBook
from exchanges.common.orders import OrderTracker, TrackedOrder
from exchanges.common.retry import until_done
from exchanges.common.tasks import Spawn
from exchanges.common.ws import ReconnectingWebSocket

log = logging.getLogger(__name__)


class UserStream:
    def __init__(
        self,
        session: Session,
        rest: BackpackRest,
        book: OrderBook,
        tracker: OrderTracker,
        account: Account,
        emit: Callable[[VenueEvent], None],
        spawn: Spawn,
        *,
        backfill_overlap_ms: int,
    ) -> None:
        self.session = session
        self.rest = rest
        self.book = book
        self.tracker = tracker
        self.account = account
        self._emit = emit
        self._spawn = spawn
        # Overlap when backfilling fills after a reconnect (clock skew; duplicates are dropped).
        self.backfill_overlap_ms = backfill_overlap_ms
        self._resync_task: asyncio.Task[None] | None = None
        self.position = StreamedPosition()
        self._seed_task: asyncio.Task[None] | None = None

    # -- the socket's hooks ------------------------------------------------------------------------

    async def on_connect(self, ws: ReconnectingWebSocket) -> None:
        self.book.reset()
        symbol = self.session.symbol
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [depth_stream(symbol)]}))
        if self.rest.account is not None:
            streams = [order_update_stream(symbol), position_update_stream(symbol)]
            await ws.send(json.dumps(subscribe_message(self.rest.account, streams)))
            self._seed_task = self._spawn(self._seed_position(), "position-seed")
        self.request_resync()

    async def _seed_position(self) -> None:
        await until_done(
            lambda: self.position.seed(self.account.position),
            what="backpack position seed",
            logger=log,
        )

    def on_disconnect(self) -> None:
        self.position.down()
        if self._seed_task is not None:
            self._seed_task.cancel()  # its answer would belong to the old connection
            self._seed_task = None
        self.session.disconnected_ms = now_ms()
        self.session.history_moved()
        self.book.mark_gap("websocket disconnected")

    async def on_reconnect(self) -> None:
        """Backfill what the socket missed; retried until done (or the venue is closed)."""
        if self.rest.account is not None:
            await until_done(self.recover, what="backpack recovery after reconnect", logger=log)

    # -- frames ----------------------------------------------------------------------------------

    def on_frame(self, frame: str | bytes, recv_ns: int) -> None:
        stats = self.session.stats
        try:
            message, stream, data = parsing.frame_parts(frame)
        except ValueError:
            stats.malformed += 1
            log.warning("backpack: unparsable frame skipped: %.200r", frame)
            return
        if stream is None:
            self._on_control(message, frame)
            return
        if not isinstance(data, dict):
            stats.malformed += 1
            log.warning("backpack: message without data skipped: %.200r", frame)
            return
        if stream.startswith("depth."):
            if not parsing.apply_backpack_depth(self.book, data):
                self.request_resync()
        elif stream.startswith("account.orderUpdate"):
            self.on_order_update(data, recv_ns)
        elif stream.startswith("account.positionUpdate"):
            self.on_position_update(data)
        else:
            log.debug("backpack: message on unexpected stream %s skipped", stream)

    def _on_control(self, message: Mapping[str, Any], frame: str | bytes) -> None:
        if "error" in message:
            # Most likely a refused subscription: the fill stream would stay silent. A new
            # connection resubscribes (with backoff) and its reconnect hook backfills fills
            # over REST, so nothing is lost meanwhile.
            log.error("backpack stream error: %s; reconnecting", message["error"])
            if self.session.ws is not None:
                self.session.ws.reconnect("stream error")
        else:
            log.debug("backpack: frame without stream skipped: %.200r", frame)

    def on_order_update(self, data: Mapping[str, Any], recv_ns: int) -> None:
        """One `account.orderUpdate` event: a Fill (then its order event) for `orderFill`, an
        OrderEvent for accepted/cancelled/expired; anything else or malformed is skipped."""
        kind = data.get("e")
        if data.get("s") != self.session.symbol:
            log.debug("backpack: order update for %s skipped", data.get("s"))
            return
        if not parsing.is_order_update_kind(kind):
            log.debug("backpack: order event %s skipped", kind)
            return
        try:
            update = parsing.parse_order_update(data, recv_ns)
        except parsing.PARSE_ERRORS as exc:
            self.session.stats.malformed += 1
            log.warning("backpack: malformed %s skipped (%s): %.300s", kind, exc, data)
            return
        session = self.session
        session.last_event_ms = max(session.last_event_ms, update.engine_ms)
        session.history_moved()
        if update.fill is not None:
            self.emit_fill(update.fill)  # the fill first: it is what the hedge waits for
        self.emit_order_event(update.event)

    def on_position_update(self, data: Mapping[str, Any]) -> None:
        """One `account.positionUpdate` event (or the snapshot on subscribe): the new position."""
        try:
            update = parsing.parse_position_update(data)
        except parsing.PARSE_ERRORS as exc:
            self.session.stats.malformed += 1
            log.warning("backpack: malformed position update skipped (%s): %.300s", exc, data)
            return
        if update.symbol != self.session.symbol:
            log.debug("backpack: position update for %s skipped", update.symbol)
            return
        self.position.on_update(update.net_qty)

    # -- delivery --------------------------------------------------------------------------------

    def emit_fill(self, fill: Fill) -> bool:
        """Deliver a fill once per trade id. False when it was a duplicate."""
        stats = self.session.stats
        if not self.tracker.first_fill(fill.trade_id):
            stats.duplicates_dropped += 1
            return False
        stats.fills_delivered += 1
        self._emit(fill)  # first: the hedge goes out from this call; logging can wait
        log.info(
            "backpack fill trade=%s order=%s cid=%s %s %s @ %s",
            fill.trade_id,
            fill.order_id,
            fill.client_id,
            fill.side.value,
            fill.qty,
            fill.price,
        )
        return True

    def emit_order_event(self, event: OrderEvent) -> None:
        """Deliver an order event of ours only if it moves the order forward (more filled, or
        a later stage); events of orders we do not track are passed on."""
        order = self._tracked(event)
        if order is not None and not self.tracker.advance(
            order, event.status, filled=event.filled_qty, venue_status=event.reason
        ):
            self.session.stats.duplicates_dropped += 1
            return
        self._emit(event)

    def _tracked(self, event: OrderEvent) -> TrackedOrder | None:
        """Our tracked order this event is about (bound to its order id on first sight)."""
        order = self.tracker.get(event.client_id)
        if order is None or order.order_id not in (None, event.order_id):
            return self.tracker.by_order_id(event.order_id)
        if order.order_id is None:
            self.tracker.bind(order, event.order_id)
        return order

    # -- the book ---------------------------------------------------------------------------------

    def request_resync(self) -> None:
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = self._spawn(self._resync(), "book-resync")

    async def _resync(self) -> None:
        """Seed the book from a REST snapshot; the stream's deltas are buffered meanwhile."""
        public, symbol = self.rest.public, self.session.symbol
        delay = 0.05
        while True:
            try:
                depth = await self.rest.retrying(lambda: public.get_depth(symbol))
            except VenueError as exc:
                log.warning("backpack depth snapshot failed: %s", exc)
            else:
                if parsing.apply_backpack_snapshot(self.book, depth):
                    self.session.stats.resyncs += 1
                    log.info("backpack book synced at %s", self.book.seq)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- recovery ---------------------------------------------------------------------------------

    async def recover(self) -> None:
        """After a reconnect: fills since the last event seen, then our live orders' states.

        Read twice: at once (most of the gap, hedged without delay), and again once the
        history has caught up with the reconnect. History trails the engine, so a fill made
        just before the stream came back may be missing from the first read; everything after
        the resubscription comes on the stream. Fills are deduplicated by trade id."""
        session = self.session
        settled_at = time.monotonic() + session.history_lag_s
        since = (
            min(
                session.last_event_ms or session.connected_ms,
                session.disconnected_ms or now_ms(),
            )
            - self.backfill_overlap_ms
        )
        recovered, seen = await self._backfill(since)
        wait = settled_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        late, seen = await self._backfill(since)
        session.stats.recoveries += 1
        log.info(
            "backpack recovery: %d missed fills delivered (%d after the history lag; %d seen)",
            recovered + late,
            late,
            seen,
        )

    async def _backfill(self, since_ms: int) -> tuple[int, int]:
        """Deliver the fills in history since `since_ms` not delivered yet, then our orders'
        states: (fills delivered now, fills seen)."""
        fills = await self.account.fetch_fills(since_ms)
        delivered = sum(1 for fill in fills if self.emit_fill(fill))
        await self._recover_orders()
        return delivered, len(fills)

    async def _recover_orders(self) -> None:
        """The venue's state of our live orders, through the event path."""
        live = {o.order_id: o for o in self.tracker.live() if o.order_id is not None}
        if not live:
            return
        account, symbol = self.rest.trading_account(), self.session.symbol
        open_rows = await self.rest.retrying(lambda: account.get_open_orders(symbol=symbol))
        states = {str(r["id"]): r for r in open_rows if isinstance(r, dict) and "id" in r}
        if any(order_id not in states for order_id in live):
            history = await self.rest.retrying(
                lambda: account.get_order_history(symbol=symbol, limit=ORDER_HISTORY_RECOVERY)
            )
            for row in history if isinstance(history, list) else []:
                if isinstance(row, dict) and "id" in row:
                    states.setdefault(str(row["id"]), row)
        recv_ns = time.perf_counter_ns()
        for order_id in live:
            row = states.get(order_id)
            if row is None:
                continue
            try:
                event = parsing.order_event_from_row(row, recv_ns)
            except VenueError as exc:
                log.warning("backpack recovery: %s", exc)
                continue
            self.emit_order_event(event)

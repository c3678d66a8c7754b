"""Orders: place (hedge IOC, post-only), cancel, cancel all, wait for the outcome, look up.

Two objects. `Transactor` sends one transaction under the nonce sequencer and resolves what a
lost answer means; `Execution` turns orders into transactions, tracks them (before sending, in
the one `OrderTracker`) and waits until their state is known.

Ambiguous is not failed: an "invalid nonce" answer means the transaction was refused (the
nonce is fetched again and the transaction re-signed once). A send that may have reached the
venue (timeout, 5xx, dropped connection) is never re-signed: the venue's next nonce tells
whether it was taken; if it was, the order is looked up by client order index; if not, the
*same* signed transaction is sent again, which the venue can execute at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

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
from exchanges.common.orders import OrderTracker, TrackedOrder
from exchanges.lighter.account import Account
from exchanges.lighter.constants import (
    DEFAULT_28_DAY_EXPIRY,
    IOC_EXPIRY,
    MARGIN,
    NO_LIQUIDITY,
    ORDER_TYPE_LIMIT,
    ORDER_TYPE_MARKET,
    POST_ONLY_CROSSED,
    TIF_IOC,
    TIF_POST_ONLY,
    VENUE,
)
from exchanges.lighter.nonce import NonceHold, NonceSequencer
from exchanges.lighter.parsing import order_from_wire
from exchanges.lighter.presign import Presigner
from exchanges.lighter.rest import LighterRest
from exchanges.lighter.scaling import check_client_id
from exchanges.lighter.session import Session
from exchanges.lighter.signing import CreateOrder, SignedTx, Signer
from exchanges.lighter.transport import (
    ClientOrderIndexExists,
    InvalidNonce,
    MaybeSent,
    NotSent,
    RateLimited,
    TxRefused,
    TxSender,
    check_tx_reply,
)
from exchanges.lighter.user_stream import UserStream

log = logging.getLogger(__name__)

Build = Callable[[int], Awaitable[SignedTx]]  # nonce -> the transaction signed for it
MAX_RATE_LIMITED = 20  # 429s on one transaction before it counts as not sent
RESEND_FIRST_DELAY_S = 0.1  # an ambiguous hedge: first wait for the stream, then re-send
RESEND_MAX_DELAY_S = 2.0
LOOK_FIRST_S = 0.5  # without a live stream, the first REST look at an order waits this long
LOOK_MAX_S = 2.0


@dataclass(slots=True)
class Written:
    """A sendTx request already on the wire (written by `Execution.try_send_now`) whose reply
    is still to be read; `running` turns True once the task that reads it has begun."""

    tx: SignedTx
    sender: TxSender
    reader: asyncio.StreamReader
    running: bool = False


@dataclass(slots=True)
class _Send:
    """One transaction being sent, across its attempts."""

    tx: SignedTx
    build: Build
    what: str
    client_id: int | None
    priority: Priority = Priority.ORDER  # in the request budget (hedges: HEDGE)
    written: Written | None = None  # the first attempt was written already
    attempts: int = 0
    rate_limited: int = 0  # 429s answered (not attempts: the budget pauses instead)
    resigned: bool = False
    maybe_sent: bool = False  # a copy of `tx` may have reached the venue already


class Transactor:
    """Sends transactions in nonce order and says what happened to each."""

    def __init__(self, session: Session, nonces: NonceSequencer, rest: LighterRest) -> None:
        self.session = session
        self.nonces = nonces
        self.rest = rest

    async def transact(
        self,
        build: Build,
        *,
        what: str,
        client_id: int | None = None,
        take_presigned: Callable[[int], SignedTx | None] | None = None,
        priority: Priority = Priority.ORDER,
    ) -> tuple[SignedTx, bool]:
        """Take the nonce, sign (or take the pre-signed tx), send. See `complete`."""
        async with self.nonces.holding() as hold:
            nonce = await hold.ensure()
            tx = take_presigned(nonce) if take_presigned is not None else None
            self.session.stats.last_hedge_path = "signed" if tx is None else "presigned"
            if tx is None:
                tx = await build(nonce)
            return await self.complete(hold, _Send(tx, build, what, client_id, priority))

    async def complete(self, hold: NonceHold, send: _Send) -> tuple[SignedTx, bool]:
        """Send `send.tx` (or read the answer to the copy already written) under `hold`, which
        the caller releases. Returns (tx, confirmed): confirmed False means the reply was lost
        but the venue took the nonce (the transaction executed; look the order up). Raises
        VenueError for a refusal or when nothing was sent, AmbiguousOrderState when it cannot
        be known."""
        while True:
            send.attempts += 1
            written, send.written = send.written, None
            try:
                await self._post(hold, send, written)
            except InvalidNonce:
                if await self._after_invalid_nonce(hold, send):
                    return send.tx, False
                continue
            except NotSent as exc:
                await self._after_not_sent(send, exc)
                continue
            except MaybeSent as exc:
                if await self._after_maybe_sent(hold, send, exc):
                    return send.tx, False
                continue
            except asyncio.CancelledError:
                hold.invalidate()  # it may have gone out: the next transaction asks first
                raise
            hold.consumed(send.tx.nonce)
            return send.tx, True

    async def _post(self, hold: NonceHold, send: _Send, written: Written | None) -> None:
        """POST /api/v1/sendTx with the SDK's form, or only read the reply when `written`;
        raise by outcome (see transport.py)."""
        if written is not None:
            sender = written.sender
            status, text = await sender.read_reply(written.reader)
        else:
            sender = self.session.require_sender()
            client_id = send.client_id
            on_write = (
                None
                if client_id is None
                else functools.partial(self.session.record_write, client_id)
            )
            if not send.tx.request:
                send.tx.request = sender.tx_request(send.tx.body)
            await self.session.budget.take("sendTx", send.priority, tx=True)
            self.session.stats.last_send_ns = time.perf_counter_ns()
            status, text = await sender.exchange(send.tx.request, on_write)
        try:
            check_tx_reply(status, text, send.what, sender.retry_after)
        except TxRefused:
            hold.invalidate()  # whether it used the nonce is not said: ask next time
            raise

    async def _after_invalid_nonce(self, hold: NonceHold, send: _Send) -> bool:
        """Refused for its nonce. True: an earlier copy executed; False: re-signed, send."""
        self.session.stats.invalid_nonces += 1
        fresh = await hold.refresh()
        tx, what = send.tx, send.what
        if send.maybe_sent and fresh > tx.nonce:
            # Only an earlier copy of this very transaction can have taken the nonce (we hold
            # the sequencer): it executed, its reply was lost.
            log.warning("lighter %s: an earlier copy executed", what)
            return True
        if send.resigned and not send.maybe_sent and fresh > tx.nonce:
            # Twice in a row a nonce read fresh from the venue was used by someone else before
            # our transaction arrived: another process sends with this API key.
            self.nonces.contest(
                f"another process is sending with Lighter account {self.session.account_index} "
                f"API key {self.session.api_key_index}: nonce {tx.nonce}, read fresh from the "
                "venue, was taken by someone else twice in a row. Stopping instead of fighting "
                "over nonces: stop the other process, or give each bot its own API key"
            )
        if send.resigned or (send.maybe_sent and fresh != tx.nonce):
            hold.invalidate()
            message = f"lighter {what}: invalid nonce {tx.nonce}, venue at {fresh}"
            if send.maybe_sent and send.client_id is not None:
                raise AmbiguousOrderState(message, client_id=send.client_id) from None
            raise VenueError(message + "; not sent", retryable=True) from None
        # Refused, so not executed. A fresh signature is safe: with a copy possibly in
        # flight, it carries that copy's nonce, so at most one of them executes.
        log.warning("lighter %s: invalid nonce %d; re-signing", what, tx.nonce)
        send.tx = await send.build(fresh)
        self.session.stats.last_hedge_path = "signed"
        send.resigned = True
        return False

    async def _after_not_sent(self, send: _Send, exc: NotSent) -> None:
        if isinstance(exc, RateLimited) and send.rate_limited < MAX_RATE_LIMITED:
            # Not acted on: the budget pauses for Retry-After, then the same tx goes again.
            send.rate_limited += 1
            send.attempts -= 1
            self.session.budget.penalize(exc.retry_after)
            return
        if send.attempts >= self.session.retry_attempts:
            if send.maybe_sent and send.client_id is not None:
                raise AmbiguousOrderState(
                    f"lighter {send.what}: {exc}", client_id=send.client_id
                ) from None
            raise VenueError(f"lighter {send.what}: {exc}", retryable=True) from None
        log.warning("lighter %s not sent (%s); retrying", send.what, exc)
        await asyncio.sleep(min(1.0, 0.05 * 2**send.attempts))

    async def _after_maybe_sent(self, hold: NonceHold, send: _Send, exc: MaybeSent) -> bool:
        """The answer was lost. True: it executed; False: it did not, send the same tx again."""
        send.maybe_sent = True
        taken = await self._nonce_taken(send.tx.nonce)
        if taken:
            log.warning("lighter %s: reply lost (%s) but executed", send.what, exc)
            hold.consumed(send.tx.nonce)
            return True
        if taken is False and send.attempts < self.session.retry_attempts:
            # Same signed tx, same nonce: the venue executes it at most once.
            log.warning("lighter %s: %s, not executed; resending it", send.what, exc)
            await asyncio.sleep(min(1.0, 0.05 * 2**send.attempts))
            return False
        hold.invalidate()
        message = f"lighter {send.what}: {exc}; outcome unknown"
        if send.client_id is not None:
            raise AmbiguousOrderState(message, client_id=send.client_id) from None
        raise VenueError(message, retryable=True) from None

    async def _nonce_taken(self, nonce: int) -> bool | None:
        """After a lost reply: did the venue take `nonce`? None when it cannot be asked."""
        for attempt in range(self.session.retry_attempts):
            try:
                return await self.rest.next_nonce() > nonce
            except VenueError as exc:
                log.warning("lighter nextNonce after a lost reply failed: %s", exc)
                await asyncio.sleep(min(1.0, 0.1 * 2**attempt))
        return None


def _live(order: TrackedOrder) -> bool:
    """Known to be working at the venue (its client id cannot be reused yet)."""
    return not order.status.is_terminal and order.status is not OrderStatus.PENDING_NEW


class Execution:
    """Our orders, from tracking them to knowing their outcome."""

    def __init__(
        self,
        session: Session,
        tracker: OrderTracker,
        nonces: NonceSequencer,
        signer: Signer,
        presigner: Presigner,
        transactor: Transactor,
        stream: UserStream,
        account: Account,
        resolve_timeout_s: float,
    ) -> None:
        self.session = session
        self.tracker = tracker
        self.nonces = nonces
        self.signer = signer
        self.presigner = presigner
        self.transactor = transactor
        self.stream = stream
        self.account = account
        self.resolve_timeout_s = resolve_timeout_s  # accepted, outcome still unknown after this

    # -- hedges ---------------------------------------------------------------------------------

    async def place_hedge(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> Order:
        self.signer.require()
        check_client_id(client_id)
        scales = self.session.require_scales()
        base_amount, price = scales.qty(qty), scales.worst_price(worst_price, side)
        order = self._track(client_id, side, base_amount, price, OrderKind.IOC)
        return await self._hedge(order, base_amount, price, worst_price, None, None)

    def try_send_now(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> asyncio.Task[Order] | None:
        """Write the pre-signed hedge now when it fits and the sequencer and connection are
        free; the returned task owns the nonce hold and reads the reply. None: nothing done."""
        sender = self.session.sender
        if sender is None or not self.signer.ready or self.nonces.lock.locked():
            return None
        if not sender.idle:
            return None
        ready = self.presigner.ready(side, qty, worst_price, client_id)
        if ready is None:
            return None
        signed, base_amount = ready
        old = self.tracker.get(client_id)
        if old is not None and _live(old):
            return None  # place_hedge raises it
        if not self.session.budget.try_take("sendTx", Priority.HEDGE, tx=True):
            return None  # place_hedge waits for the budget
        loop = asyncio.get_running_loop()  # (raises outside the loop, before anything is sent)
        hold = self.nonces.try_hold()  # free (checked above): nothing else runs until we return
        if hold is None:
            return None
        self.session.stats.last_send_ns = time.perf_counter_ns()
        reader = sender.write_now(signed.request)
        if reader is None:
            hold.release()
            return None
        # Written. The bookkeeping comes after the bytes left, still before anything can read
        # a reply or a fill (nothing yields until the caller does).
        written = Written(signed, sender, reader)
        try:
            task = self._start_written(
                loop, hold, written, side, base_amount, worst_price, client_id
            )
        except BaseException:
            self._abandon(hold, written)  # not expected; but never keep the hold
            raise
        task.add_done_callback(functools.partial(self._written_done, hold, written))
        return task

    def _start_written(
        self,
        loop: asyncio.AbstractEventLoop,
        hold: NonceHold,
        written: Written,
        side: Side,
        base_amount: int,
        worst_price: Decimal,
        client_id: int,
    ) -> asyncio.Task[Order]:
        """The bookkeeping of a hedge `try_send_now` wrote, and the task that finishes it."""
        signed, stats = written.tx, self.session.stats
        self.session.record_write(client_id, written.sender.last_write_ns)
        self.presigner.cancel()  # a client id is used once
        stats.presigned_used += 1
        stats.fast_sends += 1
        stats.last_hedge_path = "presigned"
        order = self._track(client_id, side, base_amount, signed.price, OrderKind.IOC)
        return loop.create_task(
            self._hedge(order, base_amount, signed.price, worst_price, hold, written),
            name=f"lighter-hedge-{client_id}",
        )

    def _written_done(self, hold: NonceHold, written: Written, task: asyncio.Task[Order]) -> None:
        if not written.running:
            # Cancelled before it ever ran: the request went out but its reply will not be read.
            log.warning("lighter hedge %s abandoned before its reply was read", task.get_name())
            self._abandon(hold, written)
        hold.release()  # (already given back by the task itself when it ran)

    def _abandon(self, hold: NonceHold, written: Written) -> None:
        """Give back what a written request holds without reading its reply: it may have
        executed, so the next transaction asks the venue for the nonce first."""
        hold.invalidate()
        hold.release()
        written.sender.abandon()

    async def _hedge(
        self,
        order: TrackedOrder,
        base_amount: int,
        price: int,
        worst_price: Decimal,
        hold: NonceHold | None,
        written: Written | None,
    ) -> Order:
        """The one implementation of a hedge from sending to its outcome (both paths)."""
        side, client_id = order.side, order.client_id

        def take_presigned(nonce: int) -> SignedTx | None:
            return self.presigner.take(side, base_amount, worst_price, client_id, nonce)

        async def build(nonce: int) -> SignedTx:
            self.session.stats.signed_on_spot += 1
            create = CreateOrder(
                client_id, base_amount, price, side, ORDER_TYPE_MARKET, TIF_IOC, IOC_EXPIRY
            )
            return await self.signer.create_order(nonce, create)

        if written is not None:
            written.running = True  # from here `_place` gives the hold back
        try:
            result = await self._place(order, build, take_presigned, hold, written)
        except AmbiguousOrderState:
            # Accepted (or maybe sent) with its outcome unknown: it may be at the venue, so a
            # later copy of this client id that is not placed proves nothing about it.
            self.tracker.maybe_placed(order)
            raise
        finally:
            self.presigner.spent(client_id)  # a pre-sign for this client id is spent either way
        self.tracker.maybe_placed(order, False)  # its outcome is known
        if result.status.is_terminal and result.filled_qty == 0:
            reason = order.venue_status
            if reason in NO_LIQUIDITY:
                raise InsufficientLiquidity(f"lighter hedge {client_id}: nothing filled ({reason})")
            if reason in MARGIN:
                raise VenueError(f"lighter hedge {client_id} refused: margin ({reason})")
            raise VenueError(f"lighter hedge {client_id} not filled ({reason})")
        return result

    # -- post-only, cancels ----------------------------------------------------------------------

    async def place_post_only(
        self, side: Side, qty: Decimal, price: Decimal, client_id: int
    ) -> Order:
        self.signer.require()
        check_client_id(client_id)
        scales = self.session.require_scales()
        base_amount, price_int = scales.qty(qty), scales.limit_price(price, side)
        create = CreateOrder(
            client_id,
            base_amount,
            price_int,
            side,
            ORDER_TYPE_LIMIT,
            TIF_POST_ONLY,
            DEFAULT_28_DAY_EXPIRY,
        )

        async def build(nonce: int) -> SignedTx:
            return await self.signer.create_order(nonce, create)

        order = self._track(client_id, side, base_amount, price_int, OrderKind.POST_ONLY)
        result = await self._place(order, build, None)
        if order.venue_status == POST_ONLY_CROSSED:
            raise PostOnlyRejected(f"lighter post-only {client_id} would have crossed")
        return result

    async def cancel(self, order: Order) -> None:
        """Cancel by order index (or client order index). An order already gone is a no-op
        at the venue; its final state arrives as events."""
        self.signer.require()
        index = int(order.order_id) if order.order_id is not None else None
        if index is None:
            tracked = self.tracker.get(order.client_id)
            known = tracked.order_id if tracked is not None else None
            index = int(known) if known else order.client_id
        cancel_index = index

        async def build(nonce: int) -> SignedTx:
            return await self.signer.cancel_order(nonce, cancel_index)

        await self.transactor.transact(build, what=f"cancel {index}")
        log.info("lighter cancel %s (cid=%d) accepted", index, order.client_id)

    async def cancel_all(self) -> None:
        self.signer.require()
        await self.transactor.transact(self.signer.cancel_all_orders, what="cancel all")
        log.info("lighter cancel_all accepted")

    # -- sending and waiting ------------------------------------------------------------------

    def _track(
        self, client_id: int, side: Side, base_amount: int, price: int, kind: OrderKind
    ) -> TrackedOrder:
        """Known before its transaction is sent: a fill may beat the reply."""
        old = self.tracker.get(client_id)
        if old is not None and _live(old):
            raise ValueError(f"client id {client_id} is still in use by a live order")
        if old is not None:
            self.tracker.forget(old)  # pending (never confirmed) or finished: replaced
        scales = self.session.require_scales()
        qty, limit = scales.unscale_qty(base_amount), scales.unscale_price(price)
        sent_ms = int(time.time() * 1e3)
        order = self.tracker.track(client_id, side, qty, limit, kind, sent_ms=sent_ms)
        if old is not None and old.maybe_placed:
            self.tracker.maybe_placed(order)  # the earlier copy may still be at the venue
        return order

    async def _place(
        self,
        order: TrackedOrder,
        build: Build,
        take_presigned: Callable[[int], SignedTx | None] | None,
        hold: NonceHold | None = None,
        written: Written | None = None,
    ) -> Order:
        """Send (or, with `hold` and `written`, finish sending) the order's transaction, then
        wait for its outcome. The hold is given back as soon as the venue has answered."""
        what, client_id = f"order {order.client_id}", order.client_id
        priority = Priority.HEDGE if order.kind is OrderKind.IOC else Priority.ORDER
        try:
            if hold is not None and written is not None:
                send = _Send(written.tx, build, what, client_id, priority, written)
                try:
                    tx, confirmed = await self.transactor.complete(hold, send)
                finally:
                    hold.release()
            else:
                tx, confirmed = await self.transactor.transact(
                    build,
                    what=what,
                    client_id=client_id,
                    take_presigned=take_presigned,
                    priority=priority,
                )
        except ClientOrderIndexExists:
            # An earlier send of this client id (its outcome unknown) was placed.
            self.session.stats.client_id_refusals += 1
            log.warning("lighter %s: the venue has it already (21728); reading its outcome", what)
            return await self.await_outcome(order)
        except AmbiguousOrderState:
            if order.kind is not OrderKind.IOC:
                raise  # still tracked: the stream or a reconcile may still report the order
            self.tracker.maybe_placed(order)
            return await self._resend_until_known(order, build)
        except VenueError as exc:
            if order.maybe_placed:
                # This copy was not placed, but an earlier one may have been: still unknown.
                raise AmbiguousOrderState(f"lighter {what}: {exc}", client_id=client_id) from exc
            self.tracker.forget(order)
            raise
        if tx.price:  # a pre-signed price differs from the asked one
            self.tracker.amend(order, price=self.session.require_scales().unscale_price(tx.price))
        log.info(
            "lighter %s %s %s @ %s cid=%d nonce=%d via %s%s",
            order.kind.value,
            order.side.value,
            order.qty,
            order.price,
            client_id,
            tx.nonce,
            self.session.stats.last_hedge_path,
            "" if confirmed else " (reply lost, executed)",
        )
        return await self.await_outcome(order)

    async def _resend_until_known(self, order: TrackedOrder, build: Build) -> Order:
        """The hedge may or may not be at the venue (its reply was lost and the venue could not
        be asked). Unless the stream reports it meanwhile, send it again under the same client
        order index, signed afresh with a fresh nonce: the venue places a client order index
        once, so either this copy is placed (the first never was) or it is refused with 21728
        (the first was) and that one's outcome is read. A failed re-send changes nothing:
        "could not ask" never means "not executed"."""
        client_id = order.client_id
        deadline = time.monotonic() + self.resolve_timeout_s
        delay = RESEND_FIRST_DELAY_S
        while not order.status.is_terminal:
            if time.monotonic() > deadline:
                raise AmbiguousOrderState(
                    f"lighter hedge {client_id}: outcome unknown after "
                    f"{self.resolve_timeout_s:.0f}s of re-sends",
                    client_id=client_id,
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    order.changed.clear()
                    await order.changed.wait()
            delay = min(delay * 2, RESEND_MAX_DELAY_S)
            if order.status is not OrderStatus.PENDING_NEW:
                break  # the stream (or a reconcile) says it is at the venue
            log.warning(
                "lighter hedge %d: outcome unknown; re-sending it, same client id", client_id
            )
            try:
                await self.transactor.transact(
                    build,
                    what=f"order {client_id} (re-sent)",
                    client_id=client_id,
                    priority=Priority.HEDGE,
                )
            except ClientOrderIndexExists:
                self.session.stats.client_id_refusals += 1
                log.warning("lighter hedge %d: refused 21728, the first copy exists", client_id)
                break
            except VenueError as exc:  # (AmbiguousOrderState included) still unknown
                log.warning("lighter hedge %d: re-send failed (%s)", client_id, exc)
                continue
            log.info("lighter hedge %d: the re-sent copy was placed", client_id)
            break
        return await self.await_outcome(order)

    async def await_outcome(self, order: TrackedOrder) -> Order:
        """Wait until the order's state is known: from the account stream, else over REST.
        Without a live stream the first look waits a moment (a taker executes 200-300 ms after
        it is accepted; asking sooner only spends the account's 60 requests a minute) and the
        looks grow apart; a hedge's look reads the inactive orders only (an IOC never rests)
        at HEDGE priority."""
        deadline = time.monotonic() + self.resolve_timeout_s
        ioc = order.kind is OrderKind.IOC

        def known() -> bool:
            if ioc:
                return order.status.is_terminal
            return order.status is not OrderStatus.PENDING_NEW

        first_wait = self.session.confirm_timeout if self.stream.account_live() else LOOK_FIRST_S
        await _wait_changed(order, known, first_wait)
        delay = LOOK_FIRST_S
        while not known():
            log.info("lighter order %d: no stream confirmation; asking REST", order.client_id)
            try:
                await self.stream.reconcile(
                    Priority.HEDGE if ioc else Priority.READ, active=not ioc
                )
            except VenueError as exc:
                log.warning("lighter lookup of order %d failed: %s", order.client_id, exc)
            if known():
                break
            if time.monotonic() > deadline:
                raise AmbiguousOrderState(
                    f"lighter order {order.client_id}: accepted, outcome unknown after "
                    f"{self.resolve_timeout_s:.0f}s",
                    client_id=order.client_id,
                )
            await _wait_changed(order, known, delay)
            delay = min(delay * 2, LOOK_MAX_S)
        return order.as_order(VENUE, self.session.symbol)

    async def find_order(self, client_id: int) -> Order | None:
        """Look an order of ours up by client order index (active, then recent inactive)."""
        for raw in await self.account.recent_orders():
            if int(raw.get("client_order_index") or 0) == client_id:
                self.stream.on_order_state(raw, time.perf_counter_ns())
                return order_from_wire(raw, self.session.symbol)
        return None


async def _wait_changed(order: TrackedOrder, known: Callable[[], bool], timeout: float) -> None:
    """Wait until `known()` holds (woken by the order's changes) or `timeout` passes."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not known():
                order.changed.clear()
                await order.changed.wait()

"""Hedges signed ahead: the next nonce, the expected size and the worst price at the current
top ± slippage, re-signed in the background when the top moves by a quarter of the slippage
band, when another transaction takes the nonce, or before the signed transaction expires. Its
whole HTTP request is built then too, so a hedge that fits is sent as is: nothing is signed,
converted or encoded on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from exchanges.base import Side, VenueError
from exchanges.common.orderbook import OrderBook
from exchanges.lighter.constants import IOC_EXPIRY, ORDER_TYPE_MARKET, TIF_IOC
from exchanges.lighter.nonce import NonceSequencer
from exchanges.lighter.scaling import check_client_id, worst_bounds
from exchanges.lighter.session import Session
from exchanges.lighter.signing import CreateOrder, SignedTx, Signer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PresignSlot:
    """The one hedge to keep signed: what the hedger expects to send next."""

    side: Side
    qty: Decimal
    base_amount: int
    slippage_bps: Decimal
    client_id: int
    signed: SignedTx | None = None

    def threshold(self, reference: Decimal) -> Decimal:
        # A quarter of the slippage band: re-signed before the signed price drifts far.
        return reference * self.slippage_bps / Decimal(40_000)


class Presigner:
    """Owns the pre-sign slot and the task that keeps it signed."""

    def __init__(
        self,
        session: Session,
        signer: Signer,
        nonces: NonceSequencer,
        book: OrderBook,
        max_age_s: float,
    ) -> None:
        self.session = session
        self.signer = signer
        self.nonces = nonces
        self.book = book
        self.max_age_s = max_age_s  # re-signed well before the signer's ~10 minute ExpiredAt
        self.slot: PresignSlot | None = None
        self._wakeup = asyncio.Event()
        nonces.listeners.append(self._on_nonce_change)

    # -- what the hedger asks ---------------------------------------------------------------

    def presign_hedge(
        self, side: Side, qty: Decimal, slippage_bps: Decimal | float, client_id: int
    ) -> None:
        self.signer.require()
        check_client_id(client_id)
        slippage = Decimal(str(slippage_bps))
        if not 0 < slippage < 10_000:
            raise ValueError(f"slippage_bps must be within (0, 10000), got {slippage_bps}")
        base_amount = self.session.require_scales().qty(qty)
        self.slot = PresignSlot(side, qty, base_amount, slippage, client_id)
        self._wakeup.set()

    def cancel(self) -> None:
        self.slot = None

    def spent(self, client_id: int) -> None:
        """A client id is used once: a pre-sign for it is spent once its hedge went."""
        if self.slot is not None and self.slot.client_id == client_id:
            self.slot = None

    def presigned(self) -> tuple[Side, Decimal, int, Decimal] | None:
        """(side, qty, client id, worst price) of the hedge signed and ready, if any."""
        p = self.slot
        if p is None or p.signed is None:
            return None
        scales = self.session.require_scales()
        return (
            p.side,
            scales.unscale_qty(p.base_amount),
            p.client_id,
            scales.unscale_price(p.signed.price),
        )

    async def wait_presigned(self, timeout: float = 5.0) -> bool:
        """Wait until the current pre-sign is signed for the current nonce (benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.slot
            if p is not None and p.signed is not None and p.signed.nonce == self.nonces.next:
                return True
            await asyncio.sleep(0.002)
        return False

    # -- what the sender asks ---------------------------------------------------------------

    def ready(
        self, side: Side, qty: Decimal, worst_price: Decimal, client_id: int
    ) -> tuple[SignedTx, int] | None:
        """(the signed tx, its base amount) when the pre-sign may be sent now as this hedge
        with the current nonce and its request is built; None otherwise. Changes nothing."""
        p = self.slot
        if p is None or p.client_id != client_id or p.side is not side:
            return None
        signed = p.signed
        if signed is None or not signed.request or signed.nonce != self.nonces.next:
            return None
        try:
            # The size it was signed for (the usual case) needs no conversion.
            base_amount = p.base_amount if qty == p.qty else self.session.require_scales().qty(qty)
        except (ValueError, ArithmeticError):
            return None  # place_hedge raises it
        if not self.fits(p, signed, side, base_amount, worst_price, client_id, signed.nonce):
            return None
        return signed, base_amount

    def take(
        self, side: Side, base_amount: int, worst_price: Decimal, client_id: int, nonce: int
    ) -> SignedTx | None:
        """The pre-signed tx if it fits this hedge (called by the nonce's holder); the slot
        is spent either way."""
        p = self.slot
        if p is None or p.client_id != client_id:
            return None
        self.slot = None
        signed = p.signed
        if signed is None or not self.fits(
            p, signed, side, base_amount, worst_price, client_id, nonce
        ):
            return None
        self.session.stats.presigned_used += 1
        return signed

    def fits(
        self,
        p: PresignSlot,
        signed: SignedTx,
        side: Side,
        base_amount: int,
        worst_price: Decimal,
        client_id: int,
        nonce: int | None,
    ) -> bool:
        """May `signed` be sent as this hedge? The same side, size, client id and nonce, not
        too old, and the asked worst price, once rounded to the tick, within the re-sign
        threshold of the signed one: both come from nearly the same top, and the pre-signer
        keeps them that close. The last test is two comparisons with bounds set at signing."""
        if (
            p.side is not side
            or p.base_amount != base_amount
            or p.client_id != client_id
            or signed.nonce != nonce
            or time.monotonic() - signed.signed_at > self.max_age_s
        ):
            return False
        if side is Side.BUY:  # rounded up: (lo, hi]
            return signed.worst_lo < worst_price <= signed.worst_hi
        return signed.worst_lo <= worst_price < signed.worst_hi  # rounded down: [lo, hi)

    # -- keeping it signed --------------------------------------------------------------------

    def _target(self, p: PresignSlot) -> tuple[Decimal, int] | None:
        """(reference book price, worst price) for the pre-sign now; None without a top."""
        top = self.book.top()
        if top is None:
            return None
        band = p.slippage_bps / Decimal(10_000)
        if p.side is Side.BUY:
            reference = top.ask
            worst = reference * (1 + band)
        else:
            reference = top.bid
            worst = reference * (1 - band)
        return reference, self.session.require_scales().worst_price(worst, p.side)

    def _stale(self, p: PresignSlot) -> bool:
        signed = p.signed
        if signed is None or signed.nonce != self.nonces.next:
            return True
        if time.monotonic() - signed.signed_at > self.max_age_s:
            return True
        target = self._target(p)
        if target is None:
            return False
        reference, _ = target
        return abs(reference - signed.reference) >= p.threshold(signed.reference)

    def _on_nonce_change(self) -> None:
        if self.slot is not None:
            self._wakeup.set()

    def check_drift(self) -> None:
        """Called after each book update: wake the pre-signer when the top moved enough."""
        p = self.slot
        if p is None or p.signed is None or self._wakeup.is_set():
            return
        top = self.book.top()
        if top is None:
            return
        reference = top.ask if p.side is Side.BUY else top.bid
        if abs(reference - p.signed.reference) >= p.threshold(p.signed.reference):
            self._wakeup.set()

    async def run(self) -> None:
        """Owned task: keep the pre-sign signed for the current nonce and price."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_age_s / 4):
                    await self._wakeup.wait()
            self._wakeup.clear()
            p = self.slot
            nonce = self.nonces.next
            if p is None or nonce is None or not self._stale(p):
                continue
            target = self._target(p)
            if target is not None:
                await self._sign(p, nonce, *target)

    async def _sign(self, p: PresignSlot, nonce: int, reference: Decimal, price: int) -> None:
        order = CreateOrder(
            p.client_id, p.base_amount, price, p.side, ORDER_TYPE_MARKET, TIF_IOC, IOC_EXPIRY
        )
        try:
            signed = await self.signer.create_order(nonce, order)
        except VenueError as exc:
            log.warning("lighter pre-sign failed: %s", exc)
            await asyncio.sleep(0.5)
            return
        signed.reference = reference
        self.session.stats.presign_signs += 1
        # Everything the hot path would otherwise convert or encode, done now.
        signed.worst_lo, signed.worst_hi = worst_bounds(
            price, p.threshold(reference), self.session.require_scales().price_decimals, p.side
        )
        if self.session.sender is not None:
            signed.request = self.session.sender.tx_request(signed.body)
        if self.slot is p and self.nonces.next == nonce:
            p.signed = signed
            log.debug(
                "lighter hedge pre-signed: %s %s @ %d nonce %d", p.side.value, p.qty, price, nonce
            )
        else:
            self._wakeup.set()  # overtaken while signing: again

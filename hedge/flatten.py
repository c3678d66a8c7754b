"""Close everything on both venues: cancel open orders, then IOC each position to zero.

Used by the `flatten` command. Positions and orders are read from the venues themselves, so it
works after a crash, a halt, or a manual trade alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

from exchanges.base import Side, Venue, VenueError, round_qty
from hedge.quoting import worst_price

log = logging.getLogger(__name__)

ATTEMPTS = 5


async def flatten_account(
    venues: tuple[Venue, ...], *, slippage_bps: Decimal
) -> tuple[list[str], dict[str, Decimal]]:
    """Returns what was done (one line each) and what is left open per venue (0 = flat)."""
    actions: list[str] = []
    for venue in venues:
        orders = await venue.open_orders()
        if orders:
            await venue.cancel_all()
            actions.append(f"{venue.name}: cancelled {len(orders)} open order(s)")
    remaining: dict[str, Decimal] = {}
    client_id = int(time.time() * 1000) % 4_000_000_000
    for venue in venues:
        market = venue.market()
        position = await venue.position()
        for _ in range(ATTEMPTS):
            qty = round_qty(abs(position), market.step_size)
            if qty < market.min_qty or qty == 0:
                break
            side = Side.SELL if position > 0 else Side.BUY
            top = venue.top()
            if top is None:
                await asyncio.sleep(0.2)
                continue
            worst = worst_price(side, top, slippage_bps, market.tick_size)
            client_id += 1
            try:
                order = await venue.place_hedge(side, qty, worst, client_id)
                actions.append(
                    f"{venue.name}: {side.value} {order.filled_qty} of {qty} to close "
                    f"(worst {worst})"
                )
            except VenueError as exc:
                actions.append(f"{venue.name}: close order failed: {exc}")
            await asyncio.sleep(0.2)
            position = await venue.position()
        remaining[venue.name] = position
        if not position:
            actions.append(f"{venue.name}: flat")
    return actions, remaining

"""Restart safety (G4): before the first quote, reconcile both venues with the journal.

Stray orders of ours are cancelled (anyone else's are left alone), fills missed while the bot
was down are replayed into the paused hedger (anyone else's are external changes, G9), and the
venues' net is compared with what the journal explains: an imbalance nobody can explain stops
the run before any quote unless `--rebalance` was given. The hedger then trades whatever net
is left flat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from exchanges.base import Fill, Order, Venue, VenueError, VenueEvent
from exchanges.common.retry import within_window
from hedge.config import Settings
from hedge.external import ExternalChanges
from hedge.hedger import Hedger
from hedge.journal import Journal
from hedge.risk import Halt

log = logging.getLogger(__name__)

# How far before the previous run's start (or, with none, before an hour ago) fills are read.
HISTORY_MARGIN_MS = 60_000


@dataclass(frozen=True)
class StartPositions:
    """Where the run starts: the venues' positions and what the journal explains of them, with
    offsets such that `maker_start + hedger.maker_net` is the maker venue's position (same for
    the hedge), and the maker position each iteration returns to."""

    maker_position: Decimal
    hedge_position: Decimal
    explained: Decimal  # the net of every journaled fill on both venues
    maker_start: Decimal
    hedge_start: Decimal
    maker_baseline: Decimal

    @property
    def net(self) -> Decimal:
        return self.maker_position + self.hedge_position


class StartupRecovery:
    def __init__(
        self,
        settings: Settings,
        maker: Venue,
        hedge: Venue,
        journal: Journal,
        hedger: Hedger,
        external: ExternalChanges,
        *,
        warn: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.maker = maker
        self.hedge = hedge
        self.journal = journal
        self.hedger = hedger
        self.external = external
        self.warn = warn  # one line for the operator's dashboard

    async def reconcile(self, previous: tuple[int, Decimal, float] | None) -> StartPositions:
        """Cancel strays, replay missed fills, read where the venues stand. `previous` is the
        journal's unfinished run (id, maker baseline, started at), if any."""
        await self.cancel_strays()
        # Maker fills journaled earlier but never fully hedged are open again.
        uncovered = self.hedger.load_uncovered()
        since_ms = int((previous[2] if previous else time.time() - 3600) * 1000)
        recovered = await self.replay_missed_fills(since_ms - HISTORY_MARGIN_MS)
        if recovered:
            log.warning("recovered %s fill(s) missed while the bot was down", recovered)
            self.warn(f"recovered {recovered} missed fill(s)")
        if uncovered:
            log.warning(
                "%s %s of earlier maker fills still to hedge", uncovered, self.settings.ticker
            )
        return await self.start_positions(previous)

    async def cancel_strays(self) -> None:
        """Cancel every open order of ours on both venues; leave anyone else's alone."""
        for venue in (self.maker, self.hedge):
            for order in await venue.open_orders():
                if self.journal.is_our_order(venue.name, order.client_id):
                    log.warning(
                        "cancelling stray order of ours on %s: client=%s",
                        venue.name,
                        order.client_id,
                    )
                    self.warn(f"cancelled stray order {order.client_id} on {venue.name}")
                    await self._cancel_stray(venue, order)
                else:
                    log.warning(
                        "an order not placed by this bot rests on %s (client=%s): left alone",
                        venue.name,
                        order.client_id,
                    )

    async def _cancel_stray(self, venue: Venue, order: Order) -> None:
        """A stray of ours must be gone before quoting: a burst is ridden out, anything longer
        stops the start (nothing has been traded yet)."""
        try:
            await within_window(
                lambda: venue.cancel(order),
                what=f"cancelling {order.client_id}",
                window_s=self.settings.outage_window,
            )
        except VenueError as exc:
            raise Halt(
                f"stray order {order.client_id} on {venue.name} could not be cancelled ({exc}); "
                "not starting with an order of ours left open"
            ) from None

    async def replay_missed_fills(self, since_ms: int) -> int:
        """Feed the hedger the fills of ours the journal does not hold; returns how many.

        The hedger is paused: nothing is sent while fills are replayed. Maker fills first, so
        that a hedge fill that did execute is matched to the maker fill it covered."""
        recovered = 0
        handlers: tuple[tuple[Venue, Callable[[VenueEvent], None]], ...] = (
            (self.maker, self.hedger.on_maker_event),
            (self.hedge, self.hedger.on_hedge_event),
        )
        for venue, handler in handlers:
            ours = []
            for fill in await venue.fills_since(since_ms):
                # Someone else's trade while we were down is recorded (G9); the engine applies
                # the policy once the bot's own legs are balanced.
                if self.journal.is_our_order(venue.name, fill.client_id):
                    ours.append(fill)
                else:
                    self.external.ours(fill, act=False)
            for fill in missing_fills(ours, self.journal.filled_by_order(venue.name)):
                recovered += 1
                handler(fill)
        return recovered

    async def start_positions(self, previous: tuple[int, Decimal, float] | None) -> StartPositions:
        maker_position = self.external.own(self.maker.name, await self.maker.position())
        hedge_position = self.external.own(self.hedge.name, await self.hedge.position())
        self.journal.flush()  # the replayed fills are in the journal before it is read
        explained = self.journal.net_position(self.maker.name) + self.journal.net_position(
            self.hedge.name
        )
        start = StartPositions(
            maker_position=maker_position,
            hedge_position=hedge_position,
            explained=explained,
            maker_start=maker_position - self.hedger.maker_net,
            hedge_start=hedge_position - self.hedger.hedge_net,
            maker_baseline=previous[1] if previous else maker_position,
        )
        self.journal.set_baseline(start.maker_baseline)
        return start

    def check_net(self, start: StartPositions, tolerance: Decimal) -> None:
        """Refuse a net the journal does not explain (unless rebalancing); then have the
        hedger trade the net flat."""
        net = start.net
        if abs(net - start.explained) > tolerance:
            if not self.settings.rebalance:
                raise Halt(
                    f"unbalanced on start: {self.maker.name} {start.maker_position} + "
                    f"{self.hedge.name} {start.hedge_position} = {net}, which the journal does "
                    "not explain; refusing to quote. Check the accounts, then run with "
                    "--rebalance to close the net on the hedge venue."
                )
            log.warning("rebalancing: net %s will be closed on %s", net, self.hedge.name)
        if net != self.hedger.exposure:
            self.hedger.seed_exposure(net - self.hedger.exposure, reason="net position at start")


def missing_fills(venue_fills: list[Fill], journaled: dict[str, Decimal]) -> list[Fill]:
    """The part of each order's fills that the journal does not hold yet.

    Compared per order by quantity, not by trade id: a venue may split one order's fills
    differently in its stream and its REST history (Lighter's ids are synthesized from
    cumulative amounts), and a fill must be neither replayed twice nor lost. Fills come
    oldest first; the one straddling the journaled amount is replayed for its excess only."""
    missing: list[Fill] = []
    cumulative: dict[str, Decimal] = {}
    for fill in venue_fills:
        before = cumulative.get(fill.order_id, Decimal(0))
        after = before + fill.qty
        cumulative[fill.order_id] = after
        known = journaled.get(fill.order_id, Decimal(0))
        if after <= known:
            continue
        excess = after - max(before, known)
        missing.append(fill if excess == fill.qty else replace(fill, qty=excess))
    return missing

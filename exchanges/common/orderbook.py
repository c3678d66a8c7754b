"""L2 order book kept from a snapshot plus deltas, with sequence checks for both venues.

Both venues publish *absolute* levels: a delta says "the quantity at this price is now q", and
q == 0 removes the level. What differs is how consecutive messages are numbered:

* Backpack (`depth.<symbol>`): a REST snapshot carries `lastUpdateId`; each WS event covers the
  update ids `U..u`. Events with `u <= lastUpdateId` are already in the snapshot and are skipped;
  the first one to apply has `U <= lastUpdateId + 1 <= u`; after it, `U == previous u + 1`.
  The WS stream starts before the REST snapshot is fetched, so events are buffered until the
  snapshot arrives and then replayed through the same rule.
* Lighter (`order_book/{market}`): the snapshot (`subscribed/order_book`) carries `nonce`; each
  `update/order_book` carries `begin_nonce` and `nonce`, and `begin_nonce == previous nonce`.
  The snapshot comes in-stream, so nothing before it is buffered.

Any break in the chain, a malformed message, or a crossed book (best bid >= best ask) puts the
book in `GAP`: `top()` answers None until a fresh snapshot is applied, and the venue adapter
resyncs (new REST snapshot on Backpack, resubscribe on Lighter).

Hot path: prices are kept in a dict per side plus a sorted price list (bisect), so the best
level is always `prices[-1]` / `prices[0]` and `top()` is O(1). Each venue's wire format is
applied by its parsing module (`exchanges/backpack/parsing.py` `apply_backpack_depth`,
`exchanges/lighter/parsing.py` `apply_lighter_order_book`), with the helpers at the bottom:
the one code path used by the venue adapters and by `bench/book_throughput.py`.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exchanges.base import BookTop

log = logging.getLogger(__name__)

Level = tuple[Decimal, Decimal]  # (price, quantity)

# How many not-yet-applicable deltas to hold while waiting for a snapshot. Backpack's REST
# depth call takes well under a second; at hundreds of events per second this is minutes.
DEFAULT_MAX_BUFFERED = 10_000


class BookState(enum.Enum):
    EMPTY = "empty"  # no snapshot yet (or reset on a new connection)
    SYNCED = "synced"  # snapshot + an unbroken chain of deltas: top() is trustworthy
    GAP = "gap"  # chain broken, book crossed or message malformed: resync needed


@dataclass(frozen=True, slots=True)
class Sequencing:
    """How a venue numbers its book messages.

    `step` is what the next delta's first sequence number must be, relative to the previous
    delta's last one: 1 for Backpack (`U == u + 1`), 0 for Lighter (`begin_nonce == nonce`).
    `buffer_before_snapshot` holds deltas that arrive before the snapshot (Backpack: the
    snapshot is a separate REST call) instead of dropping them (Lighter: in-stream snapshot).
    """

    name: str
    step: int
    buffer_before_snapshot: bool


BACKPACK = Sequencing("backpack", step=1, buffer_before_snapshot=True)
LIGHTER = Sequencing("lighter", step=0, buffer_before_snapshot=False)


class OrderBook:
    """One symbol's L2 book. Not thread-safe; owned by one venue's reader task.

    Backpack (exchanges/backpack/parsing.py): `reset()` in the WS `on_connect`; feed every
    depth event to `apply_backpack_depth` (held until the snapshot); fetch REST depth and
    `apply_backpack_snapshot`; whenever either returns False, fetch a new snapshot (keep at
    most one fetch in flight: events keep being held meanwhile).
    Lighter: `reset()` in `on_connect`; feed every `order_book` message to
    `apply_lighter_order_book`; when it returns False, unsubscribe and subscribe again (or
    reconnect) for a fresh in-stream snapshot.
    """

    __slots__ = (
        "_ask_px",
        "_asks",
        "_bid_px",
        "_bids",
        "_buffer",
        "_joined",
        "_max_buffered",
        "_top",
        "crossed",
        "deltas_applied",
        "deltas_buffered",
        "deltas_skipped",
        "gap_reason",
        "gaps",
        "malformed",
        "seq",
        "sequencing",
        "snapshots",
        "state",
        "symbol",
        "updated_at",
    )

    def __init__(
        self,
        symbol: str,
        sequencing: Sequencing = BACKPACK,
        *,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self.symbol = symbol
        self.sequencing = sequencing
        self._max_buffered = max_buffered
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        # Sorted ascending on both sides: best bid is _bid_px[-1], best ask is _ask_px[0].
        self._bid_px: list[Decimal] = []
        self._ask_px: list[Decimal] = []
        self._buffer: deque[tuple[list[Level], list[Level], int, int]] = deque(maxlen=max_buffered)
        self._top: BookTop | None = None  # cached; dropped on every applied change
        # False between a snapshot and the first delta applied on top of it: that first delta
        # may overlap the snapshot; every later one must chain exactly.
        self._joined = False
        self.state = BookState.EMPTY
        self.seq = 0  # last sequence number applied (lastUpdateId / u, or nonce)
        self.updated_at = 0.0  # time.monotonic() of the last applied change
        self.gap_reason = ""
        # Counters for the dashboard and the benchmark.
        self.snapshots = 0
        self.deltas_applied = 0
        self.deltas_skipped = 0  # already contained in the snapshot
        self.deltas_buffered = 0
        self.gaps = 0  # includes crossed and malformed
        self.crossed = 0
        self.malformed = 0

    # ---------------------------------------------------------------------------------------
    # Reading
    # ---------------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.state is BookState.SYNCED

    @property
    def needs_resync(self) -> bool:
        return self.state is BookState.GAP

    def top(self) -> BookTop | None:
        """Best bid and ask, or None when not synced or a side is empty. O(1)."""
        top = self._top
        if top is not None:
            return top
        if self.state is not BookState.SYNCED or not self._bid_px or not self._ask_px:
            return None
        bid = self._bid_px[-1]
        ask = self._ask_px[0]
        top = BookTop(bid, self._bids[bid], ask, self._asks[ask], self.updated_at)
        self._top = top
        return top

    def levels(self, n: int) -> tuple[list[Level], list[Level]]:
        """Up to `n` levels per side, best first: (bids descending, asks ascending)."""
        if self.state is not BookState.SYNCED or n <= 0:
            return [], []
        bids = self._bids
        asks = self._asks
        bid_px = self._bid_px[: -n - 1 : -1]
        ask_px = self._ask_px[:n]
        return [(p, bids[p]) for p in bid_px], [(p, asks[p]) for p in ask_px]

    def depth(self) -> tuple[int, int]:
        """Number of (bid, ask) levels held."""
        return len(self._bid_px), len(self._ask_px)

    # ---------------------------------------------------------------------------------------
    # Writing
    # ---------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: call when a new connection starts (deltas of the old one are
        meaningless against a snapshot taken on the new one)."""
        self._clear()
        self._buffer.clear()
        self.state = BookState.EMPTY
        self.seq = 0
        self.gap_reason = ""

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], seq: int) -> bool:
        """Replace the book with a full snapshot at sequence `seq`, then replay buffered deltas.

        Returns True when the book is SYNCED afterwards; False means the snapshot could not be
        joined to the buffered deltas (or is crossed) and another snapshot is needed.
        """
        self._clear()
        for price, qty in bids:
            if qty:
                self._bids[price] = qty
        for price, qty in asks:
            if qty:
                self._asks[price] = qty
        self._bid_px = sorted(self._bids)
        self._ask_px = sorted(self._asks)
        self.seq = seq
        self.state = BookState.SYNCED
        self._joined = False
        self.gap_reason = ""
        self.snapshots += 1
        self.updated_at = time.monotonic()
        if self._is_crossed():
            self.crossed += 1
            self._gap(f"snapshot {seq} is crossed")
            return False
        # Replay what arrived while waiting; the first delta that is not stale joins loosely.
        buffered = self._buffer
        self._buffer = deque(maxlen=self._max_buffered)
        while buffered:
            b, a, first, last = buffered.popleft()
            if not self.apply_delta(b, a, first, last):
                # Typically the snapshot is older than the buffer: keep the failing delta and
                # the rest (the book is in GAP, so apply_delta holds them) for the next one.
                self._buffer.append((b, a, first, last))
                self._buffer.extend(buffered)
                return False
        return True

    def apply_delta(
        self, bids: Sequence[Level], asks: Sequence[Level], first_seq: int, last_seq: int
    ) -> bool:
        """Apply one delta covering sequence numbers `first_seq..last_seq`.

        Returns False only when this delta broke the chain (or crossed the book) and so put the
        book into GAP: the caller should start a resync. Deltas that are applied, skipped as
        already contained in the snapshot, or held until a snapshot return True.
        (Backpack: first_seq=U, last_seq=u. Lighter: first_seq=begin_nonce, last_seq=nonce.)
        """
        if self.state is BookState.SYNCED:
            if self._joined and first_seq == self.seq + self.sequencing.step:
                return self._apply(bids, asks, last_seq)
            if self._joined:
                self._gap(
                    f"sequence gap: expected first {self.seq + self.sequencing.step}, "
                    f"got {first_seq}..{last_seq}"
                )
                return False
            return self._join(bids, asks, first_seq, last_seq)
        if self.sequencing.buffer_before_snapshot:
            self._buffer.append((list(bids), list(asks), first_seq, last_seq))
            self.deltas_buffered += 1
        return True

    def mark_gap(self, reason: str) -> None:
        """Force a resync, e.g. after a malformed message or a lost subscription."""
        if self.state is not BookState.GAP:
            self._gap(reason)

    # ---------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------

    def _join(self, bids: Sequence[Level], asks: Sequence[Level], first: int, last: int) -> bool:
        """Apply the first non-stale delta after a snapshot: it must cover `seq + step`."""
        if last <= self.seq:
            self.deltas_skipped += 1
            return True
        if first > self.seq + self.sequencing.step:
            self._gap(f"first delta {first}..{last} does not join snapshot {self.seq}")
            return False
        self._joined = True
        return self._apply(bids, asks, last)

    def _apply(self, bids: Sequence[Level], asks: Sequence[Level], last_seq: int) -> bool:
        if bids:
            _apply_side(self._bids, self._bid_px, bids)
        if asks:
            _apply_side(self._asks, self._ask_px, asks)
        self.seq = last_seq
        self.deltas_applied += 1
        self.updated_at = time.monotonic()
        self._top = None
        bid_px = self._bid_px
        ask_px = self._ask_px
        if bid_px and ask_px and bid_px[-1] >= ask_px[0]:
            self.crossed += 1
            self._gap(f"crossed book after {last_seq}: bid {bid_px[-1]} >= ask {ask_px[0]}")
            return False
        return True

    def _is_crossed(self) -> bool:
        return bool(self._bid_px and self._ask_px and self._bid_px[-1] >= self._ask_px[0])

    def _gap(self, reason: str) -> None:
        self.gaps += 1
        self.gap_reason = reason
        self.state = BookState.GAP
        self._clear()
        log.warning("%s book %s: %s; resync needed", self.sequencing.name, self.symbol, reason)

    def _clear(self) -> None:
        self._bids = {}
        self._asks = {}
        self._bid_px = []
        self._ask_px = []
        self._top = None


def _apply_side(
    side: dict[Decimal, Decimal], prices: list[Decimal], levels: Iterable[Level]
) -> None:
    """Set absolute levels on one side; a zero quantity deletes the level (if present)."""
    for price, qty in levels:
        if qty:
            if price not in side:
                insort(prices, price)
            side[price] = qty
        elif price in side:
            del side[price]
            del prices[bisect_left(prices, price)]


# ------------------------------------------------------------------------------------------
# Helpers of the venues' book parsing (raw JSON, or the parsed dict -> one apply call), which
# the adapters and the benchmark share, so the benchmark measures the real path.
# ------------------------------------------------------------------------------------------

_ZERO = Decimal(0)


def checked_levels(levels: list[Level]) -> list[Level]:
    # Comparisons with NaN raise InvalidOperation, so this also rejects "NaN".
    for price, qty in levels:
        if not (price > _ZERO and qty >= _ZERO):
            raise ValueError(f"bad level {price} x {qty}")
    return levels


def loads_message(message: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(message, (str, bytes, bytearray)):
        loaded = json.loads(message)
        if not isinstance(loaded, dict):
            raise TypeError("depth message is not a JSON object")
        return loaded
    return message


def malformed_message(book: OrderBook, error: Exception) -> bool:
    book.malformed += 1
    log.warning(
        "malformed %s depth message for %s (%s: %s); skipped",
        book.sequencing.name,
        book.symbol,
        type(error).__name__,
        error,
    )
    # A skipped delta leaves a hole the sequence numbers may not reveal: resync.
    if book.state is BookState.GAP:
        return True  # a resync is already due; not a new gap
    book.mark_gap("malformed message")
    return False

"""Order-book throughput: WS depth messages parsed and applied per second, both venue formats.

Each message is the raw JSON text a venue would send (Backpack `depth.<symbol>` envelope,
Lighter `update/order_book`), with 5-20 changed levels clustered near the top of a ~200-level
book, about a fifth of them deletes, and a mid price that walks. The timed loop is exactly what
the venue adapters run per frame: `json.loads` + Decimal conversion + sequence check + apply,
through `exchanges.backpack.parsing.apply_backpack_depth` /
`exchanges.lighter.parsing.apply_lighter_order_book`.

    python -m bench.book_throughput --messages 50000

prints one JSON line. The design budget is >= 20,000 messages/s per core.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from decimal import Decimal

from exchanges.backpack.parsing import apply_backpack_depth, apply_backpack_snapshot
from exchanges.common.orderbook import (
    BACKPACK,
    LIGHTER,
    OrderBook,
)
from exchanges.lighter.parsing import apply_lighter_order_book

TICK_DECIMALS = 1  # BTC-like: prices on a 0.1 grid
BOOK_DEPTH = 200  # levels per side in the seeded book
MID_INDEX = 972_500  # price index in ticks (97250.0)

Change = tuple[bool, int, str]  # (is_bid, price index, quantity text; "0" deletes)


def _price(index: int) -> str:
    return f"{index // 10}.{index % 10}"


def _qty(rng: random.Random) -> str:
    return f"{rng.randint(1, 500_000) / 100_000:.5f}"


class _MarketModel:
    """A walking L2 book that emits realistic, never-crossing level changes."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.best_bid = MID_INDEX  # bids at <= best_bid, asks at >= best_bid + 1 + spread
        self.bids: dict[int, str] = {}
        self.asks: dict[int, str] = {}
        for j in range(BOOK_DEPTH):
            self.bids[self.best_bid - j] = _qty(rng)
            self.asks[self.best_bid + 1 + j] = _qty(rng)

    def snapshot(self) -> tuple[list[list[str]], list[list[str]]]:
        bids = [[_price(i), q] for i, q in sorted(self.bids.items(), reverse=True)]
        asks = [[_price(i), q] for i, q in sorted(self.asks.items())]
        return bids, asks

    def step(self, n_changes: int) -> list[Change]:
        rng = self.rng
        changes: list[Change] = []
        # One message in ten moves the market a tick: the level it crosses into is cleared.
        if rng.random() < 0.1:
            if rng.random() < 0.5:
                top_ask = min(self.asks) if self.asks else self.best_bid + 1
                self.best_bid = top_ask
                self.asks.pop(top_ask, None)
                changes.append((False, top_ask, "0"))
                q = _qty(rng)
                self.bids[top_ask] = q
                changes.append((True, top_ask, q))
            else:
                top_bid = max(self.bids) if self.bids else self.best_bid
                self.best_bid = top_bid - 1
                self.bids.pop(top_bid, None)
                changes.append((True, top_bid, "0"))
                q = _qty(rng)
                self.asks[top_bid] = q
                changes.append((False, top_bid, q))
        while len(changes) < n_changes:
            is_bid = rng.random() < 0.5
            distance = min(int(rng.expovariate(0.15)), BOOK_DEPTH - 1)
            if is_bid:
                index = self.best_bid - distance
                side = self.bids
            else:
                index = self.best_bid + 1 + distance
                side = self.asks
            if index in side and rng.random() < 0.2:
                del side[index]
                changes.append((is_bid, index, "0"))
            else:
                q = _qty(rng)
                side[index] = q
                changes.append((is_bid, index, q))
        return changes

    def top(self) -> tuple[Decimal, Decimal]:
        return Decimal(_price(max(self.bids))), Decimal(_price(min(self.asks)))


def _backpack_frames(model: _MarketModel, count: int, first_id: int) -> tuple[list[str], int]:
    frames = []
    levels = 0
    update_id = first_id
    for _ in range(count):
        changes = model.step(model.rng.randint(5, 20))
        levels += len(changes)
        start = update_id + 1
        update_id += len(changes)  # Backpack ids count engine updates; several per event
        frames.append(
            json.dumps(
                {
                    "stream": "depth.BTC_USDC_PERP",
                    "data": {
                        "e": "depth",
                        "E": 1_694_687_965_941_000 + update_id,
                        "s": "BTC_USDC_PERP",
                        "a": [[_price(i), q] for b, i, q in changes if not b],
                        "b": [[_price(i), q] for b, i, q in changes if b],
                        "U": start,
                        "u": update_id,
                        "T": 1_694_687_965_940_000 + update_id,
                    },
                },
                separators=(",", ":"),
            )
        )
    return frames, levels


def _lighter_frames(model: _MarketModel, count: int, first_nonce: int) -> list[str]:
    frames = []
    nonce = first_nonce
    offset = 1000
    for _ in range(count):
        changes = model.step(model.rng.randint(5, 20))
        begin = nonce
        nonce += model.rng.randint(1, 5)
        offset += model.rng.randint(1, 3)  # offsets grow but may skip
        frames.append(
            json.dumps(
                {
                    "channel": "order_book:1",
                    "offset": offset,
                    "order_book": {
                        "code": 0,
                        "asks": [{"price": _price(i), "size": q} for b, i, q in changes if not b],
                        "bids": [{"price": _price(i), "size": q} for b, i, q in changes if b],
                        "offset": offset,
                        "nonce": nonce,
                        "begin_nonce": begin,
                    },
                    "timestamp": 1_700_000_000_000 + offset,
                    "type": "update/order_book",
                },
                separators=(",", ":"),
            )
        )
    return frames


def _timed(apply: Callable[[OrderBook, str], bool], book: OrderBook, frames: list[str]) -> float:
    start = time.perf_counter()
    for frame in frames:
        apply(book, frame)
    return time.perf_counter() - start


def run(messages: int = 50_000, seed: int = 7) -> dict[str, object]:
    """Measure both formats on `messages` messages each; returns the figures as a dict."""
    # Backpack: REST snapshot, then depth events.
    model = _MarketModel(random.Random(seed))
    bids, asks = model.snapshot()
    bp_book = OrderBook("BTC_USDC_PERP", BACKPACK)
    apply_backpack_snapshot(bp_book, {"bids": bids, "asks": asks, "lastUpdateId": "1000"})
    bp_frames, bp_levels = _backpack_frames(model, messages, first_id=1000)
    bp_seconds = _timed(apply_backpack_depth, bp_book, bp_frames)
    bp_top = bp_book.top()
    bp_ok = bp_top is not None and (bp_top.bid, bp_top.ask) == model.top()

    # Lighter: in-stream snapshot, then updates.
    model = _MarketModel(random.Random(seed + 1))
    bids, asks = model.snapshot()
    lt_book = OrderBook("BTC", LIGHTER)
    snapshot = {
        "type": "subscribed/order_book",
        "channel": "order_book:1",
        "order_book": {
            "code": 0,
            "nonce": 5000,
            "begin_nonce": 4990,
            "bids": [{"price": p, "size": q} for p, q in bids],
            "asks": [{"price": p, "size": q} for p, q in asks],
        },
    }
    apply_lighter_order_book(lt_book, json.dumps(snapshot))
    lt_frames = _lighter_frames(model, messages, first_nonce=5000)
    lt_seconds = _timed(apply_lighter_order_book, lt_book, lt_frames)
    lt_top = lt_book.top()
    lt_ok = lt_top is not None and (lt_top.bid, lt_top.ask) == model.top()

    return {
        "bench": "book_throughput",
        "messages": messages,
        "backpack_msgs_per_s": round(messages / bp_seconds),
        "lighter_msgs_per_s": round(messages / lt_seconds),
        "backpack_us_per_msg": round(bp_seconds / messages * 1e6, 2),
        "lighter_us_per_msg": round(lt_seconds / messages * 1e6, 2),
        "avg_levels_per_msg": round(bp_levels / messages, 1),
        "avg_backpack_frame_bytes": round(sum(map(len, bp_frames)) / messages),
        "avg_lighter_frame_bytes": round(sum(map(len, lt_frames)) / messages),
        "gaps": bp_book.gaps + lt_book.gaps,
        "deltas_applied": bp_book.deltas_applied + lt_book.deltas_applied,
        "top_matches_model": bp_ok and lt_ok,
        "target_msgs_per_s": 20_000,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50_000, help="messages per venue")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.messages <= 0:
        parser.error("--messages must be positive")
    result = run(args.messages, args.seed)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Restart recovery replays exactly what the journal lacks, per order, by quantity."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from exchanges.base import Fill, Side
from hedge.engine import missing_fills

D = Decimal


def fill(order: str, trade: str, qty: str) -> Fill:
    return Fill("lighter", "BTC", trade, order, 1, Side.SELL, D(qty), D("65000"))


def test_nothing_journaled_replays_every_fill() -> None:
    fills = [fill("o1", "o1:0.001", "0.001"), fill("o2", "o2:0.002", "0.002")]
    assert missing_fills(fills, {}) == fills


def test_fully_journaled_orders_replay_nothing() -> None:
    fills = [fill("o1", "o1:0.001", "0.001"), fill("o1", "o1:0.003", "0.002")]
    assert missing_fills(fills, {"o1": D("0.003")}) == []


def test_a_stream_that_merged_two_trades_is_not_replayed_per_trade() -> None:
    # The stream journaled one fill of 0.003 ("o1:0.003"); REST splits it in two trades.
    rest = [fill("o1", "o1:0.001", "0.001"), fill("o1", "o1:0.003", "0.002")]
    assert missing_fills(rest, {"o1": D("0.003")}) == []


def test_only_the_excess_of_a_straddling_fill_is_replayed() -> None:
    rest = [fill("o1", "o1:0.001", "0.001"), fill("o1", "o1:0.003", "0.002")]
    (missing,) = missing_fills(rest, {"o1": D("0.002")})
    assert missing.trade_id == "o1:0.003" and missing.qty == D("0.001")


@given(
    parts=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=6),
    known_steps=st.integers(min_value=0, max_value=400),
)
def test_journal_plus_replay_equals_the_venue_total(parts: list[int], known_steps: int) -> None:
    step = D("0.00001")
    fills, total = [], D(0)
    for steps in parts:
        total += step * steps
        fills.append(fill("o1", f"o1:{total}", str(step * steps)))
    known = min(step * known_steps, total)
    replayed = sum((f.qty for f in missing_fills(fills, {"o1": known})), D(0))
    assert known + replayed == total  # never twice, never lost

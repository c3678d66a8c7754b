"""Maker prices never cross, re-quote thresholds, and the re-quote rate limiter."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchanges.base import BookTop, Side
from hedge.quoting import RateLimiter, maker_price, should_requote, ticks_away

TICK = Decimal("0.1")


def top(bid: str, ask: str) -> BookTop:
    return BookTop(Decimal(bid), Decimal("1"), Decimal(ask), Decimal("1"), 0.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ticks = st.sampled_from([Decimal("0.01"), Decimal("0.1"), Decimal("0.5"), Decimal("1")])


@st.composite
def books(draw: st.DrawFn) -> tuple[BookTop, Decimal]:
    """A tick and a book top on or off the tick grid, with a spread of at least one tick."""
    tick = draw(ticks)
    bid = Decimal(draw(st.integers(min_value=1, max_value=10_000_000))) / 100
    spread = draw(st.integers(min_value=1, max_value=50)) * tick
    # Off-grid tops happen (a venue's tick can change, or the book is another venue's).
    jitter = Decimal(draw(st.integers(min_value=0, max_value=99))) / 1000 * tick
    return BookTop(bid, Decimal(1), bid + spread + jitter, Decimal(1), 0.0), tick


def is_multiple(price: Decimal, tick: Decimal) -> bool:
    return price % tick == 0


@given(books(), st.integers(min_value=1, max_value=20))
def test_buy_price_is_below_the_ask_on_the_tick_grid(book: tuple[BookTop, Decimal], n: int) -> None:
    book_top, tick = book
    try:
        price = maker_price(Side.BUY, book_top, tick, n)
    except ValueError:
        # Nothing positive on the grid below the ask: refused, never crossed.
        assert book_top.ask - n * tick < tick
        return
    assert 0 < price < book_top.ask
    assert is_multiple(price, tick)


@given(books(), st.integers(min_value=1, max_value=20))
def test_sell_price_is_above_the_bid_on_the_tick_grid(
    book: tuple[BookTop, Decimal], n: int
) -> None:
    book_top, tick = book
    price = maker_price(Side.SELL, book_top, tick, n)
    assert price > book_top.bid
    assert is_multiple(price, tick)


@given(books(), st.integers(min_value=1, max_value=20))
def test_maker_price_is_exactly_maker_ticks_inside_on_grid(
    book: tuple[BookTop, Decimal], n: int
) -> None:
    book_top, tick = book
    if book_top.ask % tick or book_top.bid % tick or book_top.ask - n * tick <= 0:
        return
    assert maker_price(Side.BUY, book_top, tick, n) == book_top.ask - n * tick
    assert maker_price(Side.SELL, book_top, tick, n) == book_top.bid + n * tick


def test_one_tick_spread_joins_the_best_bid_and_ask() -> None:
    book = top("100.0", "100.1")
    assert maker_price(Side.BUY, book, TICK, 1) == Decimal("100.0")
    assert maker_price(Side.SELL, book, TICK, 1) == Decimal("100.1")


def test_wide_spread_improves_inside_without_taking() -> None:
    book = top("100.0", "101.0")
    assert maker_price(Side.BUY, book, TICK, 1) == Decimal("100.9")
    assert maker_price(Side.SELL, book, TICK, 1) == Decimal("100.1")
    assert maker_price(Side.BUY, book, TICK, 3) == Decimal("100.7")


def test_off_grid_ask_rounds_away_from_the_other_side() -> None:
    book = top("100.0", "100.15")
    assert maker_price(Side.BUY, book, TICK, 1) == Decimal("100.0")  # 100.05 rounded down
    book = top("99.95", "100.3")
    assert maker_price(Side.SELL, book, TICK, 1) == Decimal("100.1")  # 100.05 rounded up


def test_no_positive_buy_price_is_refused() -> None:
    with pytest.raises(ValueError, match="no positive maker price"):
        maker_price(Side.BUY, top("0.05", "0.1"), TICK, 1)


def test_ticks_away_counts_whole_ticks_from_the_ideal_price() -> None:
    book = top("100.0", "100.1")  # ideal buy 100.0
    assert ticks_away(Side.BUY, Decimal("100.0"), book, TICK, 1) == 0
    assert ticks_away(Side.BUY, Decimal("99.5"), book, TICK, 1) == 5


@pytest.mark.parametrize(
    ("resting", "expected"),
    [("100.0", False), ("99.6", False), ("99.5", False), ("99.4", True), ("98.0", True)],
)
def test_should_requote_only_beyond_requote_ticks(resting: str, expected: bool) -> None:
    book = top("100.0", "100.1")
    assert should_requote(Side.BUY, Decimal(resting), book, TICK, 1, 5) is expected


def test_should_requote_when_a_sell_is_left_behind_by_a_falling_book() -> None:
    resting = Decimal("100.1")
    assert not should_requote(Side.SELL, resting, top("99.6", "99.7"), TICK, 1, 5)  # 4 ticks
    assert should_requote(Side.SELL, resting, top("99.4", "99.5"), TICK, 1, 5)  # 6 ticks


def test_rate_limiter_allows_limit_events_at_once_then_delays() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 1.0, clock=clock)
    assert [limiter.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.delay() == pytest.approx(1.0)


def test_rate_limiter_never_allows_more_than_limit_in_a_window_for_a_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 1.0, clock=clock)
    allowed_at = [clock.now + limiter.delay() for _ in range(7)]
    for start in allowed_at:
        in_window = [t for t in allowed_at if start <= t < start + 1.0]
        assert len(in_window) <= 2
    assert allowed_at == pytest.approx([1000.0, 1000.0, 1001.0, 1001.0, 1002.0, 1002.0, 1003.0])


def test_rate_limiter_forgets_events_older_than_the_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 1.0, clock=clock)
    limiter.delay()
    limiter.delay()
    clock.now += 0.4
    assert limiter.delay() == pytest.approx(0.6)
    clock.now += 5.0
    assert limiter.delay() == 0.0
    assert limiter.delay() == 0.0


@given(
    st.integers(min_value=1, max_value=5),
    st.lists(st.floats(min_value=0.0, max_value=0.7), min_size=1, max_size=40),
)
def test_rate_limiter_bound_holds_for_any_call_times(limit: int, steps: list[float]) -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit, 1.0, clock=clock)
    allowed_at: list[float] = []
    for step in steps:
        clock.now += step
        wait = limiter.delay()
        assert wait >= 0.0
        allowed_at.append(clock.now + wait)
    assert allowed_at == sorted(allowed_at)
    for i in range(limit, len(allowed_at)):
        # Any `limit + 1` consecutive allowed events span at least one window.
        assert allowed_at[i] - allowed_at[i - limit] >= 1.0 - 1e-9


def test_rate_limiter_rejects_a_useless_configuration() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 1.0)

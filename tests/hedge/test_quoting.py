"""Maker prices never cross, re-quote thresholds, and the re-quote rate limiter."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchanges.base import BookTop, Side
from hedge.quoting import EdgeTerms, Quoter, RateLimiter, maker_price

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


BBO = Quoter(TICK, maker_ticks=1, requote_ticks=5)


@pytest.mark.parametrize(
    ("resting", "expected"),
    [("100.0", False), ("99.6", False), ("99.5", False), ("99.4", True), ("98.0", True)],
)
def test_bbo_requotes_only_beyond_requote_ticks(resting: str, expected: bool) -> None:
    book = top("100.0", "100.1")  # where a buy goes now: 100.0
    assert bool(BBO.drift(Side.BUY, Decimal(resting), book, None)) is expected


def test_bbo_requotes_a_sell_left_behind_by_a_falling_book() -> None:
    resting = Decimal("100.1")
    assert not BBO.drift(Side.SELL, resting, top("99.6", "99.7"), None)  # 4 ticks
    assert BBO.drift(Side.SELL, resting, top("99.4", "99.5"), None)  # 6 ticks


def test_no_drift_without_a_maker_book() -> None:
    assert BBO.drift(Side.BUY, Decimal("1"), None, None) == ""


# -- edge mode ------------------------------------------------------------------------------
FEES = EdgeTerms(maker_fee=Decimal("0.0002"), hedge_fee=Decimal(0), min_edge_bps=Decimal(0))


def test_edge_buy_is_held_below_what_the_hedge_bid_pays_back() -> None:
    """Backpack 100.0/100.1, Lighter bid 100.01: the bound is 100.01 / 1.0002 = 99.990...,
    rounded down to 99.9: the buy rests one tick under the Backpack bid."""
    quoter = Quoter(TICK, 1, 5, FEES)
    price = quoter.price(Side.BUY, top("100.0", "100.1"), top("100.01", "100.02"))
    assert price == Decimal("99.9")


def test_edge_sell_is_held_above_what_the_hedge_ask_costs() -> None:
    quoter = Quoter(TICK, 1, 5, FEES)
    # 100.05 / 0.9998 = 100.070..., rounded up: 100.1 (the bbo price 100.1 is already there)
    assert quoter.price(Side.SELL, top("100.0", "100.1"), top("100.04", "100.05")) == Decimal(
        "100.1"
    )
    # A richer Lighter ask pushes the sell up: 100.3 / 0.9998 = 100.320... -> 100.4
    assert quoter.price(Side.SELL, top("100.0", "100.1"), top("100.2", "100.3")) == Decimal("100.4")


def test_a_rich_hedge_book_leaves_the_bbo_price_alone() -> None:
    """Lighter bid far above: the bound is above the Backpack touch; never cross it."""
    quoter = Quoter(TICK, 1, 5, FEES)
    assert quoter.price(Side.BUY, top("100.0", "100.1"), top("105", "105.1")) == Decimal("100.0")


def test_a_negative_min_edge_lets_the_quote_pay_up_to_it() -> None:
    paying = EdgeTerms(Decimal("0.0002"), Decimal(0), min_edge_bps=Decimal(-2))
    quoter = Quoter(TICK, 1, 5, paying)
    # 100.0 / (1 + 0.0002 - 0.0002) = 100.0: the buy may join the bid at the hedge bid.
    assert quoter.price(Side.BUY, top("100.0", "100.1"), top("100.0", "100.1")) == Decimal("100.0")


def test_edge_mode_needs_the_hedge_book() -> None:
    with pytest.raises(ValueError, match="no hedge venue book"):
        Quoter(TICK, 1, 5, FEES).price(Side.BUY, top("100.0", "100.1"), None)


def test_edge_requotes_when_the_bound_moves_past_requote_ticks() -> None:
    quoter = Quoter(TICK, 1, 5, FEES)
    maker = top("100.0", "100.1")
    resting = quoter.price(Side.BUY, maker, top("100.01", "100.02"))  # 99.9
    assert resting == Decimal("99.9")
    assert not quoter.drift(Side.BUY, resting, maker, top("99.96", "99.97"))  # bound 99.9
    # A richer hedge bid moves the ideal back to the touch, 1 tick: the order may stay.
    assert not quoter.drift(Side.BUY, resting, maker, top("102", "102.1"))
    # The bound 99.5 (5 ticks behind the touch) still quotes; 6 ticks from our 99.9? No: 4.
    assert not quoter.drift(Side.BUY, resting, maker, top("99.52", "99.6"))
    # The bound falls 6 ticks behind the touch: no quote belongs there, cancel.
    moved = quoter.drift(Side.BUY, resting, maker, top("99.42", "99.5"))  # bound 99.4
    assert "no longer pays back" in moved


def test_edge_mode_waits_rather_than_rest_deep_behind_the_touch() -> None:
    """A quote further behind the touch than requote_ticks is filled when the price runs
    through it, and then the hedge venue has moved too: edge mode does not quote there."""
    quoter = Quoter(TICK, 1, 5, FEES)
    maker = top("100.0", "100.1")
    assert quoter.price(Side.BUY, maker, top("99.52", "99.6")) == Decimal("99.5")  # 5 behind
    assert quoter.price(Side.BUY, maker, top("99.42", "99.5")) is None  # 6 behind: wait
    assert quoter.price(Side.SELL, maker, top("100.5", "100.56")) == Decimal("100.6")
    assert quoter.price(Side.SELL, maker, top("100.5", "100.62")) is None


def test_the_bound_in_words_names_price_fees_and_edge() -> None:
    words = FEES.describe(Side.BUY, top("100.01", "100.02"), TICK)
    assert words.startswith("a maker buy is never above 99.9 (at most the hedge venue's bid")
    assert "maker fee 2 bps" in words and "min edge 0 bps" in words


fees = st.decimals(min_value=Decimal("-0.0002"), max_value=Decimal("0.001"), places=6)
edges = st.decimals(min_value=Decimal(-50), max_value=Decimal(50), places=2)


@given(
    maker=books(),
    hedge=books(),
    maker_fee=fees,
    hedge_fee=fees,
    min_edge=edges,
    maker_ticks=st.integers(1, 5),
)
def test_edge_price_never_gives_up_more_than_fees_and_edge_allow(
    maker: tuple[BookTop, Decimal],
    hedge: tuple[BookTop, Decimal],
    maker_fee: Decimal,
    hedge_fee: Decimal,
    min_edge: Decimal,
    maker_ticks: int,
) -> None:
    """The acceptance property: a maker buy at P hedged at the hedge bid B earns at least
    min_edge after both fees, B(1 - hf) - P(1 + mf) >= P min_edge (a sell mirrored at the
    hedge ask), and the quote never crosses the maker book."""
    maker_top, tick = maker
    hedge_top = hedge[0]
    terms = EdgeTerms(maker_fee, hedge_fee, min_edge)
    quoter = Quoter(tick, maker_ticks, 5, terms)
    edge = min_edge / 10_000
    for side in (Side.BUY, Side.SELL):
        try:
            price = quoter.price(side, maker_top, hedge_top)
        except ValueError:
            continue  # no positive price under the bound: nothing is quoted
        if price is None:  # the bound is far behind the touch: edge mode waits
            bbo = maker_price(side, maker_top, tick, maker_ticks)
            bound = terms.bound(side, hedge_top, tick)
            assert abs(bbo - bound) > 5 * tick
            continue
        assert price > 0 and price % tick == 0
        if side is Side.BUY:
            assert price < maker_top.ask
            assert hedge_top.bid * (1 - hedge_fee) - price * (1 + maker_fee) >= price * edge
            assert price <= maker_price(side, maker_top, tick, maker_ticks)
        else:
            assert price > maker_top.bid
            assert price * (1 - maker_fee) - hedge_top.ask * (1 + hedge_fee) >= price * edge
            assert price >= maker_price(side, maker_top, tick, maker_ticks)


@given(maker=books(), hedge=books(), maker_fee=fees, hedge_fee=fees, min_edge=edges)
def test_edge_bound_is_the_tightest_tick_that_keeps_the_promise(
    maker: tuple[BookTop, Decimal],
    hedge: tuple[BookTop, Decimal],
    maker_fee: Decimal,
    hedge_fee: Decimal,
    min_edge: Decimal,
) -> None:
    """One tick closer to the hedge price would break the promise: the bound gives up no
    volume it could have had."""
    tick = maker[1]
    hedge_top = hedge[0]
    terms = EdgeTerms(maker_fee, hedge_fee, min_edge)
    edge = min_edge / 10_000
    buy = terms.bound(Side.BUY, hedge_top, tick)
    sell = terms.bound(Side.SELL, hedge_top, tick)
    assert hedge_top.bid * (1 - hedge_fee) - (buy + tick) * (1 + maker_fee) < (buy + tick) * edge
    assert (sell - tick) * (1 - maker_fee) - hedge_top.ask * (1 + hedge_fee) < (sell - tick) * edge


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

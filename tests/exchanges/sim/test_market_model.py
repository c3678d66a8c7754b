"""The simulated market's model: path volatility, Lighter's basis, the taker flow that fills our
maker orders in price-time priority, and the MarketParams that set them.

Every figure here is measured on a seeded run driven by `SimMarket.step()` with a fake clock;
the module docstring of `exchanges/sim/market.py` quotes them.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable
from decimal import Decimal

import pytest

from exchanges.base import Side
from exchanges.sim.market import (
    DEFAULT_TICKERS,
    REDUCE_ONLY,
    MarketParams,
    PublicTrade,
    SimMarket,
    VenueBook,
)
from exchanges.sim.runner import SimCluster, SimKeys

D = Decimal
ACCOUNT = 7
STILL = MarketParams(vol_bps_per_sqrt_s=0.0, basis_sd_bps=0.0)  # only the takers move anything


def fake_clock() -> Callable[[], int]:
    counter = itertools.count(1_700_000_000_000)
    return lambda: next(counter)


def new_market(seed: int = 3, tickers: tuple[str, ...] = ("BTC",), **kwargs: object) -> SimMarket:
    specs = {ticker: DEFAULT_TICKERS[ticker] for ticker in tickers}
    return SimMarket(seed=seed, clock_ms=fake_clock(), tickers=specs, **kwargs)  # type: ignore[arg-type]


def seconds_to_fill(
    market: SimMarket, book: VenueBook, trials: int, ticks_behind: int = 0, limit_s: float = 60.0
) -> list[float]:
    """Place a $100 order `ticks_behind` the touch (bids and asks in turn), step until it
    fills, `trials` times; seconds to fill each (inf: not within `limit_s`)."""
    rules = book.rules
    spec = DEFAULT_TICKERS[book.ticker]
    qty = max(rules.min_qty, (D(100) / spec.start_price).quantize(rules.step))
    times = []
    for trial in range(trials):
        for _ in range(7):  # a fresh book between trials
            market.step()
        bid, _, ask, _ = book.top()
        side = Side.BUY if trial % 2 == 0 else Side.SELL
        offset = ticks_behind * rules.tick
        price = bid - offset if side is Side.BUY else ask + offset
        order = book.place_limit(ACCOUNT, side, qty, price, client_id=trial, post_only=True)
        steps = 0
        while order.is_open and steps * market.tick_interval < limit_s:
            market.step()
            steps += 1
        if order.is_open:
            book.cancel(ACCOUNT, order_id=order.order_id)
        times.append(steps * market.tick_interval if order.status == "filled" else math.inf)
    return times


# -- the path -------------------------------------------------------------------------------------


def test_path_volatility_is_the_stated_bps_per_sqrt_second_for_every_ticker() -> None:
    market = new_market(
        seed=1,
        tickers=("BTC", "ETH", "SOL"),
        tick_interval=1.0,
        params=MarketParams(taker_orders_per_s=0.0),
    )
    mids = {ticker: [float(market.mid(ticker))] for ticker in market.tickers}
    for _ in range(1500):
        market.step()
        for ticker, path in mids.items():
            path.append(float(market.mid(ticker)))
    for ticker, path in mids.items():
        returns_bps = [math.log(b / a) * 1e4 for a, b in itertools.pairwise(path)]
        assert statistics.pstdev(returns_bps) == pytest.approx(0.9, rel=0.15), ticker


def test_jumps_are_off_by_default_and_move_the_path_when_set() -> None:
    assert MarketParams().jumps_per_s == 0
    market = new_market(
        seed=2,
        tick_interval=1.0,
        params=MarketParams(vol_bps_per_sqrt_s=0.0, jumps_per_s=0.2, taker_orders_per_s=0.0),
    )
    path = [float(market.mid("BTC"))]
    for _ in range(200):
        market.step()
        path.append(float(market.mid("BTC")))
    moves_bps = [abs(math.log(b / a)) * 1e4 for a, b in itertools.pairwise(path)]
    jumps = [move for move in moves_bps if move > 0.1]
    assert 20 <= len(jumps) <= 60  # 0.2 a second for 200 s
    assert all(4.9 < jump < 20.1 for jump in jumps)


# -- Lighter's basis ------------------------------------------------------------------------------


def test_lighter_basis_is_mean_reverting_with_the_stated_sd_and_half_life() -> None:
    params = MarketParams(taker_orders_per_s=0.0)
    tick_interval = 10.0  # a long run, cheaply: the OU step is exact for any dt
    market = new_market(
        seed=2, tickers=("BTC", "ETH", "SOL"), tick_interval=tick_interval, params=params
    )
    series: dict[str, list[float]] = {ticker: [] for ticker in market.tickers}
    for _ in range(2000):
        market.step()
        for ticker, basis in series.items():
            basis.append(market.book("lighter", ticker).basis_bps)
            assert market.book("backpack", ticker).basis_bps == 0
    lag = round(params.basis_half_life_s / tick_interval)
    for ticker, basis in series.items():
        sd = statistics.pstdev(basis)
        mean = statistics.fmean(basis)
        autocovariance = statistics.fmean(
            (a - mean) * (b - mean) for a, b in zip(basis, basis[lag:], strict=False)
        )
        assert sd == pytest.approx(3.0, rel=0.25), ticker
        assert autocovariance / sd**2 == pytest.approx(0.5, abs=0.15), ticker
    # Independent per ticker.
    assert abs(statistics.correlation(series["BTC"], series["ETH"])) < 0.3


def test_lighter_basis_starts_from_its_stationary_distribution() -> None:
    starts = [new_market(seed=seed).book("lighter", "BTC").basis_bps for seed in range(200)]
    assert statistics.pstdev(starts) == pytest.approx(3.0, rel=0.2)
    assert len(set(starts)) == 200
    again = [new_market(seed=seed).book("lighter", "BTC").basis_bps for seed in range(5)]
    assert again == starts[:5]  # seeded


# -- the taker flow: price-time priority ----------------------------------------------------------


def test_a_sweep_fills_our_order_only_after_the_size_ahead_of_it() -> None:
    market = new_market(fill_rate=0)  # no steps are run: only the sweeps below trade
    book = market.book("backpack", "BTC")
    trades: list[PublicTrade] = []
    book.on_trade(trades.append)
    bid, bid_qty, _, _ = book.top()
    order = book.place_limit(ACCOUNT, Side.BUY, D("0.1"), bid, client_id=1, post_only=True)
    ahead = book.queue_ahead(order.order_id)
    assert ahead == bid_qty > D("0.1")  # it joined behind the whole level

    small = ahead / 2 - (ahead / 2) % book.rules.step
    assert book.sweep(Side.SELL, small) == []
    assert order.filled_qty == 0
    assert book.queue_ahead(order.order_id) == ahead - small
    assert [(t.price, t.qty, t.taker_side) for t in trades] == [(bid, small, Side.SELL)]

    rest_ahead = ahead - small
    fills = book.sweep(Side.SELL, rest_ahead + D("0.04"))
    assert [(f.qty, f.price, f.is_maker) for f in fills] == [(D("0.04"), bid, True)]
    assert order.status == "partially_filled" and book.queue_ahead(order.order_id) == 0
    assert [(t.price, t.qty) for t in trades[1:]] == [(bid, rest_ahead), (bid, D("0.04"))]

    fills = book.sweep(Side.SELL, D("0.1"))  # first in the queue now: ours, then below it
    assert [f.qty for f in fills] == [D("0.06")] and order.status == "filled"
    assert [t.qty for t in trades[3:]] == [D("0.06"), D("0.04")]
    assert trades[-1].price < bid


def test_our_orders_at_one_price_fill_in_time_order_with_later_size_behind_them() -> None:
    market = new_market(fill_rate=0)
    book = market.book("backpack", "BTC")
    bid, ahead, _, _ = book.top()
    first = book.place_limit(ACCOUNT, Side.BUY, D("0.1"), bid, client_id=1, post_only=True)
    second = book.place_limit(ACCOUNT, Side.BUY, D("0.1"), bid, client_id=2, post_only=True)
    assert book.queue_ahead(first.order_id) == book.queue_ahead(second.order_id) == ahead

    fills = book.sweep(Side.SELL, ahead + D("0.15"))
    assert [(f.order_id, f.qty) for f in fills] == [
        (first.order_id, D("0.1")),
        (second.order_id, D("0.05")),
    ]
    # The level took nothing past our orders: the best bid is still ours, alone.
    assert book.top()[:2] == (bid, D("0.05"))


def test_background_size_that_arrived_after_our_order_trades_after_it() -> None:
    quiet = MarketParams(vol_bps_per_sqrt_s=0.0, basis_sd_bps=0.0, taker_orders_per_s=0.0)
    market = new_market(seed=4, fill_rate=0, params=quiet)
    book = market.book("backpack", "BTC")
    bid = book.top()[0]
    order = book.place_limit(ACCOUNT, Side.BUY, D("0.1"), bid, client_id=1, post_only=True)
    for _ in range(1000):  # the level's size comes and goes until more joined behind us
        market.step()
        ahead = book.queue_ahead(order.order_id)
        behind = book.top()[1] - D("0.1") - ahead
        if book.top()[0] == bid and behind > 0:
            break
    else:
        pytest.fail("no size ever joined the level behind our order")

    fills = book.sweep(Side.SELL, ahead + D("0.1"))
    assert [f.qty for f in fills] == [D("0.1")] and order.status == "filled"
    assert book.top()[:2] == (bid, behind)  # the later size is still there


def test_a_sweep_takes_better_prices_before_ours_and_walks_the_levels() -> None:
    market = new_market(tickers=("ETH",), fill_rate=0)
    book = market.book("backpack", "ETH")
    bids, _ = book.levels(5)
    below = bids[1][0]
    order = book.place_limit(ACCOUNT, Side.BUY, D("1"), below, client_id=1, post_only=True)
    before_ours = bids[0][1] + book.queue_ahead(order.order_id)
    assert book.sweep(Side.SELL, before_ours) == []
    fills = book.sweep(Side.SELL, D("0.3"))
    assert [(f.price, f.qty) for f in fills] == [(below, D("0.3"))]


def test_a_sweep_expires_a_reduce_only_order_with_nothing_left_to_reduce() -> None:
    market = new_market(tickers=("SOL",), fill_rate=0)
    book = market.book("backpack", "SOL")
    bid, _, ask, _ = book.top()
    book.place_market(ACCOUNT, Side.BUY, D("2"), ask, client_id=1)
    order = book.place_limit(
        ACCOUNT, Side.SELL, D("2"), ask, client_id=2, post_only=True, reduce_only=True
    )
    book.place_market(ACCOUNT, Side.SELL, D("2"), bid, client_id=3)  # flat again
    ahead = book.queue_ahead(order.order_id)
    assert book.sweep(Side.BUY, ahead + D("1")) == []
    assert order.status == "expired" and order.expiry_reason == REDUCE_ONLY
    assert book.top()[2] > ask  # the taker went on to the background behind it


# -- the taker flow over time ---------------------------------------------------------------------


def btc_fill_times(
    params: MarketParams | None, trials: int, ticks_behind: int = 0, limit_s: float = 60.0
) -> list[float]:
    market = new_market(seed=21, params=params)
    book = market.book("backpack", "BTC")
    return seconds_to_fill(market, book, trials, ticks_behind, limit_s)


def test_an_order_at_the_touch_fills_more_often_and_sooner_than_one_five_ticks_behind() -> None:
    # A still path: the seeded takers are all that can fill either order.
    at_touch = btc_fill_times(STILL, 30, limit_s=20.0)
    behind = btc_fill_times(STILL, 30, ticks_behind=5, limit_s=20.0)
    assert sum(map(math.isfinite, at_touch)) >= 20
    assert sum(map(math.isfinite, behind)) <= 5
    assert statistics.median(at_touch) < statistics.median(behind)


def test_median_time_to_fill_at_the_touch_is_as_documented() -> None:
    """The figures the module docstring quotes (BTC, fill_rate 1, joining the best bid or
    offer): a median of ~0.15 s, nearly always by the fair moving through the order; on a
    still path, by the takers alone, ~2.6 s."""
    moving = btc_fill_times(None, 60)
    still = btc_fill_times(STILL, 60)
    assert statistics.median(moving) <= 0.5
    assert 1.0 <= statistics.median(still) <= 5.0
    assert sum(t <= 10.0 for t in still) >= 45


def test_fill_rate_multiplies_the_rate_of_taker_orders() -> None:
    counts = []
    for fill_rate in (1.0, 4.0):
        market = new_market(seed=5, fill_rate=fill_rate, params=STILL)
        trades: list[PublicTrade] = []
        market.book("backpack", "BTC").on_trade(trades.append)
        for _ in range(500):
            market.step()
        counts.append(len(trades))  # a $2000 taker rarely takes more than the top level
    # 5 taker orders a second for 50 s, then four times as many.
    assert counts[0] == pytest.approx(250, rel=0.2)
    assert counts[1] == pytest.approx(1000, rel=0.2)


def test_at_fill_rate_zero_the_takers_trade_the_background_but_never_ours() -> None:
    market = new_market(seed=6, tickers=("SOL",), fill_rate=0)
    book = market.book("backpack", "SOL")
    trades: list[PublicTrade] = []
    book.on_trade(trades.append)
    bid, _, ask, _ = book.top()
    buy = book.place_limit(ACCOUNT, Side.BUY, D("1"), bid, client_id=1, post_only=True)
    sell = book.place_limit(ACCOUNT, Side.SELL, D("1"), ask, client_id=2, post_only=True)
    for _ in range(600):
        market.step()
    assert len(trades) > 200
    assert buy.status == sell.status == "new" and book.fills(ACCOUNT) == []


# -- MarketParams ---------------------------------------------------------------------------------


def test_market_params_defaults_are_the_documented_model() -> None:
    params = MarketParams()
    assert (params.vol_bps_per_sqrt_s, params.jumps_per_s) == (0.9, 0.0)
    assert (params.basis_sd_bps, params.basis_half_life_s) == (3.0, 30.0)
    assert (params.taker_orders_per_s, params.taker_size_usd) == (5.0, 2000.0)
    assert new_market().params == params


def test_parse_reads_names_with_dashes_or_underscores() -> None:
    params = MarketParams.parse(["vol-bps-per-sqrt-s=0.5", "basis_sd_bps=2", "Taker-Size-USD=1e3"])
    assert params == MarketParams(vol_bps_per_sqrt_s=0.5, basis_sd_bps=2.0, taker_size_usd=1000.0)
    assert MarketParams.parse([]) == MarketParams()


def test_describe_is_one_line_that_parse_reads_back() -> None:
    params = MarketParams(vol_bps_per_sqrt_s=0.45, taker_orders_per_s=12.5)
    line = params.describe()
    assert "\n" not in line and "vol-bps-per-sqrt-s=0.45" in line
    assert MarketParams.parse(line.split()) == params


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("vol=1", "--market 'vol=1': expected NAME=VALUE with NAME one of: vol-bps-per-sqrt-s"),
        ("basis-sd-bps", "--market 'basis-sd-bps': expected NAME=VALUE"),
        ("vol-bps-per-sqrt-s=abc", "vol-bps-per-sqrt-s must be a number >= 0"),
        ("vol-bps-per-sqrt-s=-1", "vol-bps-per-sqrt-s must be a number >= 0"),
        ("basis-half-life-s=0", "basis-half-life-s must be a number > 0"),
        ("taker-size-usd=nan", "taker-size-usd must be a number > 0"),
        ("taker-orders-per-s=inf", "taker-orders-per-s must be a number >= 0"),
        ("taker-trend-bias=0.6", "taker-trend-bias must be a number >= 0 and <= 0.5"),
        ("jump-bps-max=1", "jump-bps-max must be >= jump-bps-min"),
    ],
)
def test_parse_rejects_a_bad_item_in_one_line_naming_it(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^--market ") as info:
        MarketParams.parse(["jumps-per-s=1", item])
    text = str(info.value)
    assert "\n" not in text and item in text and message in text


def test_out_of_range_params_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="basis-half-life-s must be a number > 0"):
        MarketParams(basis_half_life_s=0.0)
    with pytest.raises(ValueError, match="jump-bps-max must be >= jump-bps-min"):
        MarketParams(jump_bps_min=10.0, jump_bps_max=5.0)


def test_sim_cluster_passes_the_market_params_to_its_market() -> None:
    params = MarketParams(vol_bps_per_sqrt_s=0.3)
    keys = SimKeys("cHVibGlj", "c2VjcmV0", "00", "00")
    assert SimCluster(keys=keys, market_params=params).market.params is params
    assert SimCluster(keys=keys).market.params == MarketParams()

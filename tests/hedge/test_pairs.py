"""Many pairs in one process: the flags split per pair, the account-wide guards and totals."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hedge.pairs
from exchanges.base import BookTop, ConfigError
from hedge.config import Mode, Settings, TradingFlags, load_settings
from hedge.engine import HedgeEngine
from hedge.pairs import (
    MAX_PAIRS,
    AccountGuard,
    KeyLock,
    account_totals,
    budget_fit,
    key_lock,
    max_net_usd,
    split_pairs,
)
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
TICKERS = ["BTC", "ETH", "SOL", "DOGE", "XRP", "AVAX", "LINK", "SUI", "APT", "ARB"]


def problems(**flags: str | None) -> list[str]:
    """The lines of the ConfigError that split_pairs raises for these flags."""
    with pytest.raises(ConfigError) as info:
        split_pairs(TradingFlags(**flags))  # type: ignore[arg-type]
    return str(info.value).splitlines()


# -- split_pairs -------------------------------------------------------------------------------


@pytest.mark.parametrize("ticker", ["BTC", "btc", " eth "])
def test_a_single_ticker_comes_back_unchanged(ticker: str) -> None:
    flags = TradingFlags(ticker=ticker, size="0.01", max_position="0.05", iterations="3")
    pairs = split_pairs(flags)
    assert len(pairs) == 1
    assert pairs[0] is flags  # untouched: load_settings validates and upper-cases it


def test_several_tickers_give_one_flags_each_in_order_upper_cased() -> None:
    flags = TradingFlags(
        ticker="btc, ETH ,Sol", size="0.01", iterations="7", direction="sell", log_dir="x"
    )
    pairs = split_pairs(flags)
    assert [p.ticker for p in pairs] == ["BTC", "ETH", "SOL"]
    for pair in pairs:
        # Everything but the ticker (and the per-pair quantities) is the same for every pair.
        assert replace(pair, ticker=flags.ticker) == flags


def test_one_size_applies_to_every_pair() -> None:
    pairs = split_pairs(TradingFlags(ticker="BTC,ETH,SOL", size="0.01"))
    assert [(p.ticker, p.size, p.max_position) for p in pairs] == [
        ("BTC", "0.01", None),
        ("ETH", "0.01", None),
        ("SOL", "0.01", None),
    ]


def test_sizes_and_max_positions_per_pair() -> None:
    pairs = split_pairs(
        TradingFlags(
            ticker="BTC,ETH",
            size="eth = 0.02, BTC=0.001",  # any order, any case, spaces around
            max_position="BTC=0.005,ETH=0.1",
        )
    )
    assert [(p.ticker, p.size, p.max_position) for p in pairs] == [
        ("BTC", "0.001", "0.005"),
        ("ETH", "0.02", "0.1"),
    ]


def test_per_pair_size_beside_one_max_position_for_all() -> None:
    pairs = split_pairs(TradingFlags(ticker="BTC,ETH", size="BTC=1,ETH=2", max_position="5"))
    assert [(p.size, p.max_position) for p in pairs] == [("1", "5"), ("2", "5")]


def test_split_pairs_load_as_settings_of_their_own() -> None:
    pairs = split_pairs(TradingFlags(ticker="BTC,ETH", size="BTC=0.001,ETH=0.02"))
    loaded = [load_settings(p, mode=Mode.DEMO, env={}) for p in pairs]
    assert [(s.ticker, s.size) for s in loaded] == [
        ("BTC", Decimal("0.001")),
        ("ETH", Decimal("0.02")),
    ]
    assert loaded[0].journal != loaded[1].journal  # one journal per pair


@pytest.mark.parametrize("ticker", ["BTC,ETH,btc", "BTC,BTC", "ETH, BTC ,eth,SOL"])
def test_a_ticker_named_twice_is_refused(ticker: str) -> None:
    lines = problems(ticker=ticker, size="0.01")
    assert len(lines) == 1
    assert lines[0].startswith(f"--ticker {ticker!r}")
    assert "named twice" in lines[0]


@pytest.mark.parametrize("ticker", ["BTC,,ETH", "BTC,ETH,", ",BTC", "BTC, ,ETH"])
def test_an_empty_ticker_name_is_refused(ticker: str) -> None:
    lines = problems(ticker=ticker, size="0.01")
    assert lines == [f"--ticker {ticker!r}: an empty name between commas"]


def test_an_empty_ticker_name_is_reported_once_with_per_pair_sizes() -> None:
    lines = problems(ticker="BTC,,ETH", size="BTC=1,ETH=2")
    assert lines == ["--ticker 'BTC,,ETH': an empty name between commas"]


def test_a_size_for_a_ticker_not_traded_is_refused() -> None:
    lines = problems(ticker="BTC,ETH", size="BTC=0.001,SOL=2")
    assert lines == ["--size 'SOL=2': SOL is not among --ticker"]


@pytest.mark.parametrize("entry", ["ETH", "ETH=", " ETH = "])
def test_a_per_pair_entry_without_a_value_is_refused(entry: str) -> None:
    lines = problems(ticker="BTC,ETH", size=f"BTC=0.001,{entry}")
    assert lines == [f"--size {entry.strip()!r}: expected TICKER=QTY, e.g. BTC=0.001"]


def test_a_per_pair_entry_without_a_ticker_is_refused() -> None:
    lines = problems(ticker="BTC,ETH", size="BTC=0.001,=0.02")
    assert len(lines) == 1
    assert lines[0].startswith("--size '=0.02': ")


def test_a_ticker_left_without_a_size_is_refused() -> None:
    lines = problems(ticker="BTC,ETH,SOL,XRP", size="BTC=0.001,ETH=0.02")
    assert lines == ["--size: no value for SOL, XRP (give TICKER=QTY for each)"]


def test_max_position_per_pair_is_checked_like_size() -> None:
    lines = problems(ticker="BTC,ETH", size="0.01", max_position="BTC=1")
    assert lines == ["--max-position: no value for ETH (give TICKER=QTY for each)"]


def test_a_per_pair_entry_given_twice_is_refused() -> None:
    lines = problems(ticker="BTC,ETH", size="BTC=1,BTC=2,ETH=3")
    assert len(lines) == 1 and lines[0].startswith("--size")


def test_journal_with_several_tickers_is_refused() -> None:
    lines = problems(ticker="BTC,ETH", size="0.01", journal="run.sqlite")
    assert len(lines) == 1
    assert lines[0].startswith("--journal")
    assert "--log-dir" in lines[0]
    # With one ticker --journal is fine.
    assert split_pairs(TradingFlags(ticker="BTC", size="0.01", journal="run.sqlite"))


def test_at_most_max_pairs_in_one_process() -> None:
    names = [f"T{i}" for i in range(MAX_PAIRS + 1)]
    assert len(split_pairs(TradingFlags(ticker=",".join(names[:-1]), size="1"))) == MAX_PAIRS
    lines = problems(ticker=",".join(names), size="1")
    assert lines == [f"--ticker: at most {MAX_PAIRS} pairs in one process"]


def test_every_problem_is_reported_on_a_line_of_its_own() -> None:
    lines = problems(
        ticker="BTC,ETH,BTC",
        size="BTC=1,ETH",
        max_position="BTC=1,ETH=2,SOL=3",
        journal="j.sqlite",
    )
    assert len(lines) == 4
    assert lines[0].startswith("--ticker 'BTC,ETH,BTC'") and "BTC named twice" in lines[0]
    assert lines[1].startswith("--journal")
    assert lines[2].startswith("--size 'ETH': expected TICKER=QTY")
    assert lines[3] == "--max-position 'SOL=3': SOL is not among --ticker"


@given(
    tickers=st.lists(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=6),
        min_size=2,
        max_size=MAX_PAIRS,
        unique=True,
    ),
    data=st.data(),
)
def test_per_pair_sizes_reach_their_pair_whatever_the_order(
    tickers: list[str], data: st.DataObject
) -> None:
    sizes = {
        t: str(data.draw(st.decimals(min_value="0.0001", max_value="1000", places=4)))
        for t in tickers
    }
    order = data.draw(st.permutations(tickers))
    raw = ",".join(f"{t.lower()}={sizes[t]}" for t in order)
    pairs = split_pairs(TradingFlags(ticker=",".join(tickers), size=raw))
    assert [p.ticker for p in pairs] == tickers
    assert {p.ticker: p.size for p in pairs} == sizes


# -- max_net_usd -------------------------------------------------------------------------------


def test_no_max_net_usd_means_no_cap() -> None:
    assert max_net_usd(None) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("500", Decimal(500)), (" 250.5 ", Decimal("250.5")), ("1e3", Decimal(1000))],
)
def test_max_net_usd_is_a_positive_amount(raw: str, expected: Decimal) -> None:
    value = max_net_usd(raw)
    assert isinstance(value, Decimal)
    assert value == expected


@pytest.mark.parametrize(
    "raw", ["0", "-1", "-0.01", "abc", "", "nan", "NaN", "sNaN", "inf", "-inf"]
)
def test_max_net_usd_refuses_what_is_not_a_positive_amount(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        max_net_usd(raw)
    assert str(info.value).startswith(f"--max-net-usd {raw!r}")


# -- budget_fit --------------------------------------------------------------------------------


def pair_settings(count: int, tier: str) -> list[Settings]:
    return [
        load_settings(
            TradingFlags(ticker=t, size="1"), mode=Mode.DEMO, env={"LIGHTER_ACCOUNT_TIER": tier}
        )
        for t in TICKERS[:count]
    ]


def test_five_pairs_fit_the_standard_tier() -> None:
    fits, text = budget_fit(pair_settings(5, "standard"))
    assert fits
    assert "standard tier" in text
    assert "60 requests/min" in text
    assert "5 pair(s)" in text
    assert "need about 30" in text  # 5 pairs x 6 fills/min


def test_ten_pairs_do_not_fit_the_standard_tier() -> None:
    fits, text = budget_fit(pair_settings(10, "standard"))
    assert not fits
    assert "60 requests/min" in text
    assert "10 pair(s)" in text
    assert "need about 60" in text
    # 60 - 4 reserved - 10 reads = 46 requests, at 1.1 a fill: 41 fills/min, short of 60.
    assert "about 41 fills/min" in text


def test_ten_pairs_fit_the_premium_tier() -> None:
    fits, text = budget_fit(pair_settings(10, "premium"))
    assert fits
    assert "premium tier" in text
    assert "10 pair(s)" in text
    assert "60 requests/min" not in text


def test_the_standard_tier_holds_seven_pairs_not_eight() -> None:
    assert budget_fit(pair_settings(7, "standard"))[0]
    assert not budget_fit(pair_settings(8, "standard"))[0]


# -- account_totals ----------------------------------------------------------------------------


def test_account_totals_add_up_counts_and_quote_amounts() -> None:
    totals = account_totals(
        {
            "BTC": {
                "cycles": 3,
                "maker_fills": 3,
                "hedge_fills": 4,
                "maker_volume": "3000.25",
                "hedge_volume": "3001",
                "double_hedges": 0,
                "halts": 1,
                "wear_quote": "1.10",
                "fees_maker_quote": "0.30",
                "pnl_quote": "-1.10",
                "net_position_maker": "0.01",  # a base amount: not summed
                "net_delta": "0",
            },
            "ETH": {
                "cycles": 2,
                "maker_fills": 2,
                "hedge_fills": 2,
                "maker_volume": "3999.75",
                "hedge_volume": "4000.5",
                "double_hedges": 1,
                "halts": 0,
                "wear_quote": "0.30",
                "fees_maker_quote": "0.10",
                "other_quote": "0.05",  # only one pair has it
                "pnl_quote": "-0.30",
                "net_position_maker": "-0.2",
                "net_delta": "0.01",
            },
        }
    )
    assert totals["pairs"] == 2
    assert totals["cycles"] == 5 and isinstance(totals["cycles"], int)
    assert totals["maker_fills"] == 5 and totals["hedge_fills"] == 6
    assert totals["double_hedges"] == 1 and totals["halts"] == 1
    assert totals["maker_volume"] == Decimal(7000)
    assert totals["hedge_volume"] == Decimal("7001.5")
    assert totals["wear_quote"] == Decimal("1.40")
    assert totals["fees_maker_quote"] == Decimal("0.40")
    assert totals["other_quote"] == Decimal("0.05")
    assert totals["pnl_quote"] == Decimal("-1.40")
    assert "net_position_maker" not in totals
    assert "slippage_quote" not in totals  # no pair has it
    # 1.40 / 7000 * 10_000
    assert totals["wear_per_10k_quote"] == Decimal("2.00")
    assert totals["net_delta_by_pair"] == {"BTC": "0", "ETH": "0.01"}


def test_wear_per_10k_is_rounded_to_the_cent() -> None:
    totals = account_totals(
        {
            "BTC": {"maker_volume": "1000", "wear_quote": "0.5", "net_delta": "0"},
            "ETH": {"maker_volume": "2000", "wear_quote": "0.5", "net_delta": "0"},
        }
    )
    wear = totals["wear_per_10k_quote"]
    assert isinstance(wear, Decimal)
    assert wear == Decimal("3.33")  # 1 / 3000 * 10_000 = 3.333...
    assert wear.as_tuple().exponent == -2


def test_no_maker_volume_gives_no_wear_per_10k() -> None:
    totals = account_totals(
        {
            "BTC": {"maker_volume": "0", "wear_quote": "0.5", "net_delta": "0"},
            "ETH": {"maker_volume": "0.00", "wear_quote": "0", "net_delta": None},
        }
    )
    assert totals["wear_per_10k_quote"] == 0
    assert totals["net_delta_by_pair"] == {"BTC": "0", "ETH": None}
    empty = account_totals({})
    assert empty == {"pairs": 0, "wear_per_10k_quote": 0, "net_delta_by_pair": {}}


@given(
    st.dictionaries(
        st.sampled_from(TICKERS),
        st.tuples(
            st.integers(min_value=0, max_value=10_000),
            st.decimals(min_value="-100", max_value="100", places=2),
            st.decimals(min_value="0", max_value="1000000", places=2),
        ),
        min_size=1,
    )
)
def test_account_totals_are_the_sums(summaries: dict[str, tuple[int, Decimal, Decimal]]) -> None:
    totals = account_totals(
        {
            t: {"maker_fills": fills, "wear_quote": str(wear), "maker_volume": str(volume)}
            for t, (fills, wear, volume) in summaries.items()
        }
    )
    fills = sum(f for f, _, _ in summaries.values())
    wear = sum((w for _, w, _ in summaries.values()), Decimal(0))
    volume = sum((v for _, _, v in summaries.values()), Decimal(0))
    assert totals["pairs"] == len(summaries)
    assert totals["maker_fills"] == fills
    assert totals["wear_quote"] == wear
    assert totals["maker_volume"] == volume
    expected = (wear / volume * 10_000).quantize(Decimal("0.01")) if volume else 0
    assert totals["wear_per_10k_quote"] == expected
    assert totals["net_delta_by_pair"] == dict.fromkeys(summaries)


# -- AccountGuard ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeHedger:
    def __init__(self, exposure: Decimal) -> None:
        self.exposure = exposure


class FakeHedgeVenue:
    def __init__(self, mid: Decimal | None) -> None:
        self.mid = mid
        self.looks = 0  # how many times the guard read the book

    def top(self) -> BookTop | None:
        self.looks += 1
        if self.mid is None:
            return None
        return BookTop(self.mid - 1, Decimal(1), self.mid + 1, Decimal(1), time.monotonic())


class FakeEngine:
    """What the guard reads of a HedgeEngine: its hedger's exposure, the hedge book's mid."""

    def __init__(
        self, exposure: Decimal | None, mid: Decimal | None, maker_mid: Decimal | None = None
    ) -> None:
        self.hedger = None if exposure is None else FakeHedger(exposure)
        self.hedge = FakeHedgeVenue(mid)
        self.maker = FakeHedgeVenue(maker_mid)
        self.halts: list[str] = []

    def request_halt(self, reason: str) -> None:
        self.halts.append(reason)


def guard_over(
    engines: list[FakeEngine], cap: str = "500", grace_s: float = 5.0
) -> tuple[AccountGuard, FakeClock]:
    clock = FakeClock()
    guard = AccountGuard(Decimal(cap), grace_s, clock)
    guard.engines.extend(cast(list[HedgeEngine], engines))
    return guard, clock


def test_the_net_is_the_sum_of_absolute_exposures_at_the_hedge_mid() -> None:
    guard, _ = guard_over(
        [
            FakeEngine(Decimal("0.01"), Decimal(50_000)),  # 500
            FakeEngine(Decimal("-2"), Decimal(100)),  # 200, short counts as much as long
            FakeEngine(None, Decimal(3000)),  # not started: no hedger
            FakeEngine(Decimal(5), None),  # no book yet
        ]
    )
    assert guard.net_usd() == Decimal(700)


def test_an_emptied_hedge_book_still_counts_its_exposure() -> None:
    # Unhedged because the hedge book emptied: exactly when the cap matters most.
    engine = FakeEngine(Decimal("0.01"), Decimal(50_000))
    guard, _ = guard_over([engine])
    assert guard.net_usd() == Decimal(500)
    engine.hedge.mid = None  # emptied: the last mid seen values it
    assert guard.net_usd() == Decimal(500)
    engine.maker.mid = Decimal(49_000)  # the maker book's mid, when there is one
    assert guard.net_usd() == Decimal(490)
    fresh = FakeEngine(Decimal(2), None, maker_mid=Decimal(100))  # never had a hedge book
    assert guard_over([fresh])[0].net_usd() == Decimal(200)


def test_below_or_at_the_cap_there_is_no_reason_to_halt() -> None:
    engine = FakeEngine(Decimal("0.01"), Decimal(50_000))  # exactly 500
    guard, clock = guard_over([engine])
    for _ in range(3):
        assert guard.check() is None
        clock.now += 100
    assert guard.over_since is None


def test_above_the_cap_the_guard_waits_the_grace_then_names_the_flag() -> None:
    btc = FakeEngine(Decimal("0.004"), Decimal(50_000))  # 200
    eth = FakeEngine(Decimal("-0.2"), Decimal(2000))  # 400
    guard, clock = guard_over([btc, eth], cap="500", grace_s=5.0)
    assert guard.check() is None  # over since now
    assert guard.over_since == clock.now
    clock.now += 4.9
    assert guard.check() is None
    clock.now += 0.1
    reason = guard.check()
    assert reason is not None
    assert "--max-net-usd 500" in reason
    assert "600.00 USD" in reason
    assert "2 pairs" in reason
    assert "for 5.0 s" in reason
    assert btc.halts == [] and eth.halts == []  # check() only says; run() halts


def test_falling_back_under_the_cap_resets_the_grace() -> None:
    engine = FakeEngine(Decimal("0.02"), Decimal(50_000))  # 1000
    guard, clock = guard_over([engine], cap="500", grace_s=5.0)
    assert guard.check() is None
    clock.now += 4.0
    assert guard.check() is None
    assert engine.hedger is not None
    engine.hedger.exposure = Decimal("0.001")  # hedged: 50 USD
    assert guard.check() is None
    assert guard.over_since is None
    engine.hedger.exposure = Decimal("0.02")
    clock.now += 2.0  # 6 s after the first breach, but only just over again
    assert guard.check() is None
    clock.now += 4.9
    assert guard.check() is None
    clock.now += 0.1
    assert guard.check() is not None


@pytest.fixture
def fast_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hedge.pairs, "ACCOUNT_GUARD_INTERVAL_S", 0.001)


async def wait_looks(engine: FakeEngine, count: int) -> None:
    await wait_for(lambda: engine.hedge.looks >= count, timeout=10, what=f"{count} guard checks")


@pytest.mark.usefixtures("fast_guard")
async def test_run_halts_every_pair_once_when_the_cap_is_held_past_the_grace() -> None:
    engines = [
        FakeEngine(Decimal("0.02"), Decimal(50_000)),
        FakeEngine(Decimal(0), Decimal(2000)),  # balanced itself: halted all the same
        FakeEngine(None, None),
    ]
    guard, clock = guard_over(engines, cap="500", grace_s=5.0)
    task = asyncio.create_task(guard.run())
    try:
        await wait_looks(engines[0], 5)
        assert not guard.tripped  # over the cap, but within the grace
        assert all(not e.halts for e in engines)
        clock.now += 5.0
        await wait_for(lambda: bool(guard.tripped), timeout=10, what="the guard to trip")
        async with asyncio.timeout(10):
            await task  # a tripped guard stops watching
    finally:
        task.cancel()
    assert "--max-net-usd 500" in guard.tripped
    assert "3 pairs" in guard.tripped
    for engine in engines:
        assert engine.halts == [guard.tripped]


@pytest.mark.usefixtures("fast_guard")
async def test_run_leaves_the_pairs_alone_under_the_cap() -> None:
    engine = FakeEngine(Decimal("0.001"), Decimal(50_000))
    guard, clock = guard_over([engine], cap="500", grace_s=0.0)
    task = asyncio.create_task(guard.run())
    try:
        await wait_looks(engine, 5)
        clock.now += 1000
        await wait_looks(engine, 10)
        assert not guard.tripped
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert engine.halts == []


# -- KeyLock -----------------------------------------------------------------------------------

URL = "https://mainnet.zklighter.elliot.ai"


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Locks go under tmp_path, never the machine's real temporary folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / "hedgebot-locks"


@pytest.fixture
def held() -> Iterator[Callable[[KeyLock], KeyLock]]:
    """Acquire a lock that is released after the test, even a failed one."""
    locks: list[KeyLock] = []

    def take(lock: KeyLock) -> KeyLock:
        lock.acquire()
        locks.append(lock)
        return lock

    yield take
    for lock in locks:
        lock.release()


def test_the_first_lock_is_taken_and_names_this_process(
    lock_dir: Path, held: Callable[[KeyLock], KeyLock]
) -> None:
    lock = held(KeyLock(URL, 7, 2))
    assert lock.path.parent == lock_dir
    assert lock.path.name.endswith("-7-2.lock")
    assert lock.path.read_text() == str(os.getpid())


def test_a_second_lock_on_the_same_key_is_refused_naming_the_holder(
    lock_dir: Path, held: Callable[[KeyLock], KeyLock]
) -> None:
    held(KeyLock(URL, 7, 2))
    # flock locks belong to the open file description: a second open in this process conflicts.
    second = KeyLock(URL + "/", 7, 2)  # the same venue, however the URL ends
    with pytest.raises(ConfigError) as info:
        second.acquire()
    message = str(info.value)
    assert "another hedgebot process" in message
    assert f"pid {os.getpid()}" in message
    assert "Lighter account 7 API key 2" in message
    assert "--ticker" in message  # the way out: every pair in one process
    second.release()  # never acquired: harmless


def test_after_release_the_key_can_be_locked_again(
    lock_dir: Path, held: Callable[[KeyLock], KeyLock]
) -> None:
    first = KeyLock(URL, 7, 2)
    first.acquire()
    first.release()
    first.release()  # twice: harmless
    again = held(KeyLock(URL, 7, 2))
    assert again.path == first.path
    with pytest.raises(ConfigError):
        KeyLock(URL, 7, 2).acquire()


@pytest.mark.parametrize(
    ("url", "account", "key"),
    [(URL, 7, 3), (URL, 8, 2), ("https://testnet.zklighter.elliot.ai", 7, 2)],
)
def test_another_key_account_or_venue_does_not_conflict(
    lock_dir: Path, held: Callable[[KeyLock], KeyLock], url: str, account: int, key: int
) -> None:
    first = held(KeyLock(URL, 7, 2))
    other = held(KeyLock(url, account, key))
    assert other.path != first.path


def run_python(code: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_another_process_on_the_same_key_is_refused(
    tmp_path: Path, lock_dir: Path, held: Callable[[KeyLock], KeyLock]
) -> None:
    held(KeyLock(URL, 7, 2))
    result = run_python(
        f"""
        from exchanges.base import ConfigError
        from hedge.pairs import KeyLock
        try:
            KeyLock({URL!r}, 7, 2).acquire()
        except ConfigError as exc:
            print(exc)
        else:
            print("acquired")
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "another hedgebot process" in result.stdout
    assert f"pid {os.getpid()}" in result.stdout


def test_a_lock_dies_with_its_process(
    tmp_path: Path, lock_dir: Path, held: Callable[[KeyLock], KeyLock]
) -> None:
    result = run_python(
        f"""
        import os
        from hedge.pairs import KeyLock
        KeyLock({URL!r}, 7, 2).acquire()
        print(os.getpid())
        os._exit(0)  # no release: as if killed
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lock = held(KeyLock(URL, 7, 2))
    assert lock.path.read_text() == str(os.getpid())  # the dead process's pid overwritten
    assert result.stdout.strip() != str(os.getpid())


def test_key_lock_holds_the_key_for_the_run(lock_dir: Path) -> None:
    env = {"LIGHTER_ACCOUNT_INDEX": "7", "LIGHTER_API_KEY_INDEX": "2"}
    settings = load_settings(TradingFlags(size="1"), mode=Mode.LIVE, env=env, require_keys=False)
    with key_lock(settings), pytest.raises(ConfigError, match="another hedgebot process"):
        KeyLock(settings.lighter_api_url, 7, 2).acquire()
    lock = KeyLock(settings.lighter_api_url, 7, 2)
    lock.acquire()  # released on the way out
    lock.release()


def test_key_lock_takes_nothing_without_a_key_to_trade_with(lock_dir: Path) -> None:
    env = {"LIGHTER_ACCOUNT_INDEX": "7", "LIGHTER_API_KEY_INDEX": "2"}
    dry = load_settings(TradingFlags(size="1"), mode=Mode.DRY_RUN, env=env)
    demo = load_settings(TradingFlags(size="1"), mode=Mode.DEMO, env=env)  # its own sim account
    no_account = load_settings(TradingFlags(size="1"), mode=Mode.LIVE, env={}, require_keys=False)
    for settings in (dry, demo, no_account):
        with key_lock(settings):
            assert not lock_dir.exists()

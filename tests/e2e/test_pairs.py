"""Several pairs on one account (`--ticker A,B,...`): what the pairs share must behave as one
client. One nonce sequence for every pair's hedges, one WebSocket per venue, one journal per
pair, flags refused with one line, and one process per Lighter key on a machine."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable, Iterator
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import pytest

from exchanges.base import Order, OrderStatus, Side
from exchanges.common.budget import LIGHTER_TIERS, RequestBudget
from exchanges.lighter import LighterVenue
from exchanges.lighter.shared import SharedAccount
from exchanges.sim.lighter_server import TX_TYPE_CREATE_ORDER
from exchanges.sim.runner import LIGHTER_ACCOUNT, LIGHTER_API_KEY_INDEX, SimCluster
from tests.e2e.conftest import (
    ROOT,
    SimProcess,
    isolated_env,
    run_btc_argv,
    runbot_argv,
    sim_keys,
)
from tests.waiting import wait_until

TICKERS = ("BTC", "ETH", "SOL")
HEDGES_PER_PAIR = 24  # even: alternating sides leave every pair flat


# -- 1. one nonce sequence for every pair's hedges -------------------------------------------


def _smallest(venue: LighterVenue) -> Decimal:
    """The venue's smallest order: its minimum size, or more where that is below its minimum
    notional at today's price (with a margin for the book moving)."""
    market, top = venue.market(), venue.top()
    assert top is not None, venue.ticker
    steps = (market.min_notional * Decimal("1.5") / top.bid / market.step_size).to_integral_value(
        ROUND_CEILING
    )
    return max(market.min_qty, steps * market.step_size)


def _submitted(cluster: SimCluster) -> int:
    """Transactions the simulated Lighter received from the bot's account, refused or not."""
    return int(str(cluster.requests()["lighter"]["send_tx"]))


async def test_concurrent_hedges_of_three_pairs_on_one_key_never_reuse_a_nonce() -> None:
    """Three LighterVenues on ONE SharedAccount fire 72 IOC hedges at once. Every hedge
    fills; the venue accepted every transaction it was sent (none refused, so no nonce race)
    with nonces that are consecutive and unique; no venue met an invalid nonce; and the three
    pairs shared one WebSocket."""
    cluster = SimCluster(seed=7, fill_rate=0.0, keys=sim_keys(), lighter_tier="premium")
    await cluster.start()
    env = cluster.env()
    shared = SharedAccount(
        env["LIGHTER_API_URL"], env["LIGHTER_WS_URL"], RequestBudget(LIGHTER_TIERS["premium"])
    )
    venues = [
        LighterVenue(
            ticker,
            api_url=env["LIGHTER_API_URL"],
            ws_url=env["LIGHTER_WS_URL"],
            private_key=env["LIGHTER_API_PRIVATE_KEY"],
            account_index=int(env["LIGHTER_ACCOUNT_INDEX"]),
            api_key_index=int(env["LIGHTER_API_KEY_INDEX"]),
            shared=shared,
        )
        for ticker in TICKERS
    ]
    server = cluster.lighter
    try:
        await asyncio.gather(*(v.connect() for v in venues))
        first_nonce = server.next_nonce(LIGHTER_ACCOUNT, LIGHTER_API_KEY_INDEX)
        txs_before = len(server.sent_txs)
        submitted_before = _submitted(cluster)
        # One size per pair, fixed before the burst: alternating sides then end each flat.
        sizes = {venue.ticker: _smallest(venue) for venue in venues}

        def hedge(venue: LighterVenue, index: int, client_id: int) -> Any:
            top = venue.top()
            assert top is not None, venue.ticker
            qty = sizes[venue.ticker]
            if index % 2 == 0:  # a worst price far beyond the touch: IOCs that always fill
                return venue.place_hedge(Side.BUY, qty, top.ask * Decimal("1.02"), client_id)
            return venue.place_hedge(Side.SELL, qty, top.bid * Decimal("0.98"), client_id)

        jobs = []
        client_id = 5000
        for index in range(HEDGES_PER_PAIR):
            for venue in venues:  # interleaved: the pairs contend for the nonce all along
                client_id += 1
                jobs.append((venue, index, client_id))
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(hedge(*job) for job in jobs), return_exceptions=True), 90
        )

        failures = [(job[0].ticker, job[2], o) for job, o in zip(jobs, outcomes, strict=True)]
        failures = [f for f in failures if not isinstance(f[2], Order)]
        assert failures == []
        orders = [o for o in outcomes if isinstance(o, Order)]
        for (venue, _, cid), order in zip(jobs, orders, strict=True):
            assert order.client_id == cid
            assert order.status is OrderStatus.FILLED, (venue.ticker, cid, order)
            assert order.filled_qty == sizes[venue.ticker]

        count = len(jobs)
        accepted = [
            tx["info"]
            for tx in list(server.sent_txs)[txs_before:]
            if int(tx["info"]["AccountIndex"]) == LIGHTER_ACCOUNT
            and int(tx["info"]["ApiKeyIndex"]) == LIGHTER_API_KEY_INDEX
        ]
        nonces = [int(info["Nonce"]) for info in accepted]
        # Every transaction sent was accepted: no invalid-nonce (21104) or any other refusal.
        assert _submitted(cluster) - submitted_before == len(accepted) == count
        assert {int(tx["type"]) for tx in list(server.sent_txs)[txs_before:]} == {
            TX_TYPE_CREATE_ORDER
        }
        assert len(set(nonces)) == count  # no nonce twice
        assert sorted(nonces) == list(range(first_nonce, first_nonce + count))
        assert server.next_nonce(LIGHTER_ACCOUNT, LIGHTER_API_KEY_INDEX) == first_nonce + count
        assert sorted(int(info["ClientOrderIndex"]) for info in accepted) == [
            job[2] for job in jobs
        ]
        assert [v.invalid_nonces for v in venues] == [0, 0, 0]
        # One WebSocket for all three pairs, never a second one.
        assert server.ledger.websockets()["most_open"] == 1
        assert server.ledger.websockets()["opened"] == 1
        for ticker in TICKERS:  # alternating sides: every pair ends flat on the venue
            assert cluster.market.account("lighter", LIGHTER_ACCOUNT).position(ticker).qty == 0
    finally:
        for venue in venues:
            await venue.close()
        await cluster.stop()


# -- 2. the multi-pair demo ------------------------------------------------------------------


def test_demo_of_three_pairs_trades_each_flat_on_one_connection_per_venue(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    done = subprocess.run(
        runbot_argv(
            "demo",
            "--ticker",
            "BTC,ETH,SOL",
            "--iterations",
            "1",
            "--plain",
            "--quote-mode",
            "bbo",
            "--log-dir",
            str(logs),
        ),
        cwd=ROOT,
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    assert "account totals over 3 pairs" in done.stdout
    totals = next(line for line in done.stdout.splitlines() if "account totals over" in line)
    assert "double hedges 0" in totals, totals
    [records] = [
        line for line in done.stdout.splitlines() if "simulated venues' own records" in line
    ]
    for ticker in TICKERS:
        pair = re.search(rf"{ticker}: backpack position [^;]*, net ([-0-9.]+),", records)
        assert pair is not None, records
        assert Decimal(pair.group(1)) == 0, records
    for venue in ("backpack", "lighter"):
        counts = re.search(rf"{venue} \d+ requests \([^)]*\), [^;]*", records)
        assert counts is not None, records
        assert "0 answered 429" in counts.group(0), records
        assert "at most 1 at once" in counts.group(0), records
    for ticker in TICKERS:
        journals = list(logs.glob(f"{ticker}-demo-*.sqlite"))
        assert len(journals) == 1, sorted(p.name for p in logs.iterdir())


# -- 3. multi-pair flags refused with one line ------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--ticker", "BTC,BTC"], "--ticker"),
        (["--ticker", "BTC,ETH", "--size", "BTC=0.001"], "--size"),
    ],
    ids=["ticker-twice", "size-missing-a-pair"],
)
def test_bad_multi_pair_flags_exit_2_with_one_error_line(
    tmp_path: Path, flags: list[str], named: str
) -> None:
    done = subprocess.run(
        runbot_argv("demo", *flags, "--plain", "--log-dir", str(tmp_path / "logs")),
        cwd=ROOT,
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert named in errors[0]
    if named == "--size":
        assert "ETH" in errors[0]
    else:
        assert "BTC" in errors[0]


# -- 4. one process per Lighter key ---------------------------------------------------------


class _Bot:
    """One `runbot.py run` process, its output in a file."""

    def __init__(self, folder: Path, sim: SimProcess, env: dict[str, str], *args: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.out_path = folder / "bot.out"
        self.err_path = folder / "bot.err"
        self._out = self.out_path.open("w")
        self._err = self.err_path.open("w")
        self.process = subprocess.Popen(
            run_btc_argv(sim.env_file, folder / "logs", *args),
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=self._err,
            text=True,
        )

    def output(self) -> str:
        return self.out_path.read_text() + self.err_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._out.close()
        self._err.close()


@pytest.fixture
def bots() -> Iterator[list[_Bot]]:
    started: list[_Bot] = []
    yield started
    for bot in started:
        bot.stop()


def test_a_second_process_on_the_same_key_is_refused_and_the_first_keeps_trading(
    tmp_path: Path, make_sim: Callable[..., SimProcess], bots: list[_Bot]
) -> None:
    """Nothing fills by itself (fill rate 0): process A's maker order rests until the test
    trades through it, so A is surely still trading while B is refused, however slow B is to
    start."""
    env = isolated_env(tmp_path)
    sim = make_sim("--fill-rate", "0", "--lighter-tier", "premium")
    try:
        a = _Bot(tmp_path / "a", sim, env, "--iterations", "2", "--fill-timeout", "120")
        bots.append(a)
        # A is trading: its maker order rests on the venue and its log says so.
        wait_until(
            lambda: bool(sim.account("backpack")["open_orders"]) or a.process.poll() is not None,
            90,
            "process A's first maker order",
        )
        assert a.process.poll() is None, a.output()[-3000:]
        wait_until(lambda: "maker order backpack" in a.output(), 30, "A's maker order line")

        b = _Bot(tmp_path / "b", sim, env, "--iterations", "1")
        bots.append(b)
        code = b.process.wait(90)
        b_err = b.err_path.read_text()
        assert code == 2, b.output()[-3000:]
        assert "Traceback" not in b.output()
        errors = [line for line in b_err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, b_err
        assert "another hedgebot process" in errors[0]
        assert f"(pid {a.process.pid})" in errors[0], (errors[0], a.process.pid)
        assert not sim.account("backpack")["fills"]  # B traded nothing

        # A never noticed: still running, its order still resting. Now let it fill.
        assert a.process.poll() is None, a.output()[-3000:]

        def fill_a() -> bool:
            if a.process.poll() is not None:
                return True
            for order in sim.account("backpack")["open_orders"]:
                sim.call(
                    sim.backpack,
                    "trade_through",
                    {"venue": "backpack", "ticker": "BTC", "price": order["price"]},
                )
            return False

        wait_until(fill_a, 120, "process A to finish its iterations")
        output = a.output()
        assert a.process.returncode == 0, output[-4000:]
        assert "Traceback" not in output
        assert "double hedges 0" in output, output[-3000:]
        assert sim.position("backpack") + sim.position("lighter") == 0
        assert len(sim.account("backpack")["fills"]) >= 4  # 2 iterations: open and close each
    finally:
        for bot in bots:
            bot.stop()


async def test_the_account_guard_halts_every_pair_when_their_summed_exposure_stays_over_the_cap(
    tmp_path: Path,
) -> None:
    """--max-net-usd: BTC's hedges meet an emptied Lighter book, so its fill stays unhedged
    (0.002 BTC, about 130 USD, above the 50 USD cap); after the hedge timeout the account
    guard halts BTC and ETH, which had nothing unhedged, before BTC's own ladder would have
    (three hedge timeouts). Judged by the simulators' own positions."""
    from exchanges.sim.market import OrderUpdate
    from exchanges.sim.runner import BACKPACK_ACCOUNT
    from hedge.app import run_pairs
    from tests.e2e.conftest import bot_settings, positions

    sim = SimCluster(seed=5, fill_rate=4.0, keys=sim_keys())
    await sim.start()
    try:
        emptied: list[int] = []

        def on_btc_order(update: OrderUpdate) -> None:
            if not emptied and update.fill is not None and update.order.account == BACKPACK_ACCOUNT:
                emptied.append(1)
                sim.market.book("lighter", "BTC").set_thin(Decimal(0))

        sim.market.book("backpack", "BTC").on_order(on_btc_order)
        common = {"iterations": "20", "hedge_timeout": "2", "fill_timeout": "30"}
        btc = bot_settings(
            sim, tmp_path, ticker="BTC", journal=str(tmp_path / "b.sqlite"), **common
        )
        eth = bot_settings(
            sim, tmp_path, ticker="ETH", size="0.05", journal=str(tmp_path / "e.sqlite"), **common
        )
        runs = await run_pairs([btc, eth], max_net_usd=Decimal(50))
        venues = {t: positions(sim, t) for t in ("BTC", "ETH")}
    finally:
        await sim.stop()

    assert emptied, "BTC's maker order never filled"
    for ticker, bot in zip(("BTC", "ETH"), runs, strict=True):
        assert "account guard" in bot.result.reason and "--max-net-usd 50" in bot.result.reason
        maker, hedge = venues[ticker]
        if bot.result.exit_code == 4:  # the emptied book: said exactly, never silently
            assert ticker == "BTC" and "left uncovered" in bot.result.reason
        else:
            assert bot.result.exit_code == 3 and maker + hedge == 0, (ticker, maker, hedge)

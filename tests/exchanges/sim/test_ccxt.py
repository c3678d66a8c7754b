"""Stock ccxt 4.5.90 against both simulators, configured with nothing but URLs and keys.

ccxt runs in its own cached virtualenv (`ccxt_venv.py`: its pins conflict with bpx-py's and
lighter-sdk's) as a subprocess (`ccxt_client.py`: one exchange per test, one JSON line per
scenario); the simulators run here, in the test's event loop, so every outcome is checked
against the simulator's own state (`cluster.market`). The market clock is stopped for the REST
tests (a still book compares exactly) and left running for the WebSocket ones (streams need
ticks).

ccxt keeps its defaults, its rate limiter included (Lighter: a request a second, the Standard
tier's budget), and the venues theirs: Lighter Standard, Backpack's history 500 ms behind its
engine. Each test has its own cluster (starting one costs ~10 ms), so the tests' orders and
positions never meet; the time goes to ccxt's pacing of Lighter and to starting ccxt, which
`CcxtLauncher` does one test ahead.

Two things ccxt's Lighter needs besides URLs and keys, both documented by ccxt: the path of
the Lighter signer library (`options['libraryPath']`; we pass lighter-sdk's bundled one, the
same binary the bot uses), and an API key index of 4-254 (`handle_api_key_index`, lighter.py
~465, replaces anything else with 254), which is where SimCluster registers its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import pytest

from exchanges.base import Side
from exchanges.sim.runner import (
    BACKPACK_ACCOUNT,
    LIGHTER_ACCOUNT,
    LIGHTER_API_KEY_INDEX,
    SimCluster,
)
from tests.exchanges.sim.ccxt_venv import CcxtVenvError, prepare
from tests.waiting import wait_for

CLIENT = Path(__file__).with_name("ccxt_client.py")
TICKER = "BTC"
SCENARIO_TIMEOUT_S = 30.0  # one call; ccxt paces Lighter at a request a second
CLOSE_TIMEOUT_S = 10.0
HISTORY_TIMEOUT_S = 5.0  # Backpack's history trails its engine by 500 ms
HISTORY_POLL_S = 0.1


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ccxt() -> Iterator[CcxtLauncher]:
    try:
        venv = prepare()
    except CcxtVenvError as exc:
        pytest.fail(str(exc))
    if venv.python is None:
        pytest.skip(venv.skip_reason or "ccxt venv unavailable")
    launcher = CcxtLauncher(venv.python)
    yield launcher
    launcher.close()


def _lighter_library() -> str:
    spec = importlib.util.find_spec("lighter")
    assert spec is not None and spec.submodule_search_locations, "lighter-sdk is not installed"
    folder = Path(next(iter(spec.submodule_search_locations))) / "signers"
    arch = "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "amd64"
    if platform.system() == "Darwin":
        return os.fspath(folder / f"lighter-signer-darwin-{arch}.dylib")
    return os.fspath(folder / f"lighter-signer-linux-{arch}.so")


async def _start_cluster(*, clock: bool, fill_rate: float = 0.0) -> SimCluster:
    # The default box, as strict as the real venues: Lighter Standard (60 requests a minute,
    # taker orders executed 300 ms after acceptance), Backpack's history 500 ms behind.
    cluster = SimCluster(seed=11, fill_rate=fill_rate)
    await cluster.start()
    if not clock:
        await cluster.market.stop()  # a still book: REST answers compare exactly
    return cluster


@pytest.fixture
async def still() -> AsyncIterator[SimCluster]:
    cluster = await _start_cluster(clock=False)
    yield cluster
    await cluster.stop()


@pytest.fixture
async def ticking() -> AsyncIterator[SimCluster]:
    cluster = await _start_cluster(clock=True)
    yield cluster
    await cluster.stop()


# -- running a scenario -------------------------------------------------------------------------


def _config(cluster: SimCluster, venue: str) -> dict[str, Any]:
    book = cluster.market.book(venue, TICKER)  # type: ignore[arg-type]
    config: dict[str, Any] = {"venue": venue, "ticker": TICKER}
    if venue == "backpack":
        config |= {
            "api": cluster.backpack.api_url.rstrip("/"),
            "ws": cluster.backpack.ws_url,
            "key": cluster.keys.backpack_public,
            "secret": cluster.keys.backpack_secret,
            "market_id": book.rules.symbol,
        }
    else:
        config |= {
            "api": cluster.lighter.api_url.rstrip("/"),
            "ws": cluster.lighter.ws_url,
            "private_key": cluster.keys.lighter_private,
            "account_index": LIGHTER_ACCOUNT,
            "api_key_index": LIGHTER_API_KEY_INDEX,
            "library_path": _lighter_library(),
            "market_id": str(book.rules.market_id),
        }
    return config


class CcxtLauncher:
    """Starts `ccxt_client.py` processes one ahead: the next test's interpreter imports ccxt
    (~0.6 s) while the current test runs. Each session still gets a fresh process."""

    def __init__(self, python: Path) -> None:
        self.python = python
        self._spare = self._start()

    def _start(self) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        # A file, not a pipe: a chatty stderr cannot block the child. The session that takes
        # the process closes it.
        stderr = tempfile.TemporaryFile()  # noqa: SIM115
        process = subprocess.Popen(
            [os.fspath(self.python), os.fspath(CLIENT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        return process, stderr

    def take(self) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        spare, self._spare = self._spare, self._start()
        return spare

    def close(self) -> None:
        process, stderr = self._spare
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        stderr.close()


class CcxtSession:
    """One ccxt process, one exchange of `venue`: markets loaded once, one rate limiter, as a
    real client would run; `call` runs a scenario of `ccxt_client.py` in it.

    The process outlives the tests' event loops (one per test), so its pipes are plain files,
    read in a worker thread."""

    def __init__(self, process: subprocess.Popen[bytes], stderr: IO[bytes], venue: str):
        self.process = process
        self.stderr = stderr
        self.venue = venue

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise AssertionError(f"the ccxt client exited:\n{self._stderr_text()}") from None

    async def call(self, name: str, args: dict[str, Any] | None = None) -> Any:
        """The scenario's result, or an AssertionError naming ccxt's error and requests."""
        assert self.process.stdout is not None
        self.send({"scenario": name, "args": args or {}})
        try:
            line = await asyncio.wait_for(
                asyncio.to_thread(self.process.stdout.readline), SCENARIO_TIMEOUT_S
            )
        except TimeoutError:
            raise AssertionError(f"ccxt scenario {self.venue}/{name} timed out") from None
        assert line, f"no answer from {self.venue}/{name}:\n{self._stderr_text()}"
        outcome = json.loads(line)
        if not outcome["ok"]:
            requests = "\n  ".join(outcome["requests"])
            raise AssertionError(
                f"ccxt {self.venue}/{name} raised {outcome['error']}: {outcome['message']}\n"
                f"requests:\n  {requests}\n{outcome['traceback']}"
            )
        return outcome["result"]

    async def close(self) -> None:
        """End of requests: the client closes ccxt and exits (killed if it does not)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        try:
            await asyncio.to_thread(self.process.wait, CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
        # Only now: a reader left waiting by a timed-out call has seen the end of the pipe.
        self.process.stdout.close()
        self.stderr.close()

    def _stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-3000:]


@contextlib.asynccontextmanager
async def ccxt_session(
    launcher: CcxtLauncher, cluster: SimCluster, venue: str
) -> AsyncIterator[CcxtSession]:
    process, stderr = launcher.take()
    session = CcxtSession(process, stderr, venue)
    try:
        session.send(_config(cluster, venue))
        yield session
    finally:
        await session.close()


async def run(
    launcher: CcxtLauncher,
    cluster: SimCluster,
    venue: str,
    name: str,
    args: dict[str, Any] | None = None,
) -> Any:
    """One scenario in a session of its own."""
    async with ccxt_session(launcher, cluster, venue) as session:
        return await session.call(name, args)


async def _trades_once_listed(
    session: CcxtSession, fills: list[Any], timeout: float = HISTORY_TIMEOUT_S
) -> list[dict[str, Any]]:
    """fetch_my_trades, again until it lists every fill: trade history may trail the engine
    (Backpack's by 500 ms)."""
    wanted = {str(f.trade_id) for f in fills}
    deadline = time.monotonic() + timeout
    while True:
        trades: list[dict[str, Any]] = await session.call("my_trades")
        if wanted <= {t["id"] for t in trades}:
            return trades
        if time.monotonic() > deadline:
            raise AssertionError(f"fetch_my_trades never listed {sorted(wanted)}: {trades}")
        await asyncio.sleep(HISTORY_POLL_S)


def _open(cluster: SimCluster, venue: str, account: int) -> list[Any]:
    return cluster.market.book(venue, TICKER).open_orders(account)  # type: ignore[arg-type]


def _away_price(cluster: SimCluster, venue: str) -> Decimal:
    """A bid 2 % under the best bid, on the venue's tick: rests without filling."""
    book = cluster.market.book(venue, TICKER)  # type: ignore[arg-type]
    bid = book.top()[0]
    tick = book.rules.tick
    return (bid * Decimal("0.98") / tick).to_integral_value() * tick


def _crossing_price(cluster: SimCluster, venue: str) -> Decimal:
    """A buy limit 1 % over the best ask: takes liquidity at once."""
    book = cluster.market.book(venue, TICKER)  # type: ignore[arg-type]
    ask = book.top()[2]
    tick = book.rules.tick
    return (ask * Decimal("1.01") / tick).to_integral_value() * tick


def _min_qty(cluster: SimCluster, venue: str) -> Decimal:
    rules = cluster.market.book(venue, TICKER).rules  # type: ignore[arg-type]
    return max(rules.min_qty, rules.step) * 10


def _limit_buy(
    amount: Decimal, price: Decimal, client_id: int | None = None, **params: object
) -> dict[str, Any]:
    """ccxt `create_order` arguments of a limit buy; `client_id` becomes its clientOrderId."""
    if client_id is not None:
        params["clientOrderId"] = client_id
    return {
        "type": "limit",
        "side": "buy",
        "amount": str(amount),
        "price": str(price),
        "params": params,
    }


def _assert_trades_are_the_fills(trades: list[dict[str, Any]], fills: list[Any]) -> None:
    """ccxt's trades are exactly the simulator's fills of a buy: ids, orders, prices, sizes."""
    assert sorted(t["id"] for t in trades) == sorted(str(f.trade_id) for f in fills)
    by_id = {t["id"]: t for t in trades}
    for fill in fills:
        trade = by_id[str(fill.trade_id)]
        assert trade["side"] == "buy" and trade["order"] == str(fill.order_id)
        assert Decimal(str(trade["price"])) == fill.price
        assert Decimal(str(trade["amount"])) == fill.qty


# -- Backpack -----------------------------------------------------------------------------------

BP_SYMBOL = "BTC/USDC:USDC"


async def test_backpack_load_markets(ccxt: CcxtLauncher, still: SimCluster) -> None:
    result = await run(ccxt, still, "backpack", "load_markets")
    rules = still.market.book("backpack", TICKER).rules
    assert result["symbol"] == BP_SYMBOL
    assert result["market"]["id"] == rules.symbol
    assert result["market"]["type"] == "swap" and result["market"]["active"] is True
    assert Decimal(str(result["precision"]["price"])) == rules.tick
    assert Decimal(str(result["precision"]["amount"])) == rules.step


async def test_backpack_order_book(ccxt: CcxtLauncher, still: SimCluster) -> None:
    result = await run(ccxt, still, "backpack", "order_book")
    bids, asks = still.market.book("backpack", TICKER).levels(len(result["bids"]))
    assert [Decimal(str(p)) for p, _ in result["bids"][:5]] == [p for p, _ in bids[:5]]
    assert [Decimal(str(p)) for p, _ in result["asks"][:5]] == [p for p, _ in asks[:5]]
    assert [Decimal(str(q)) for _, q in result["bids"][:5]] == [q for _, q in bids[:5]]


async def test_backpack_balance_and_positions(ccxt: CcxtLauncher, still: SimCluster) -> None:
    book = still.market.book("backpack", TICKER)
    qty = _min_qty(still, "backpack")
    book.place_market(BACKPACK_ACCOUNT, Side.BUY, qty, book.top()[2] * 2, client_id=None)
    position = still.market.account("backpack", BACKPACK_ACCOUNT).position(TICKER)
    assert position.qty == qty
    result = await run(ccxt, still, "backpack", "balance_positions")
    collateral = still.market.account("backpack", BACKPACK_ACCOUNT).collateral
    usdc = Decimal(str(result["total"]["USDC"]))
    assert abs(usdc - collateral) < collateral * Decimal("0.01")  # equity: collateral + uPnL
    [seen] = [p for p in result["positions"] if p["symbol"] == BP_SYMBOL]
    assert Decimal(str(seen["contracts"])) == qty
    assert Decimal(str(seen["entryPrice"])) == position.entry_price


async def test_backpack_position_side(ccxt: CcxtLauncher, still: SimCluster) -> None:
    book = still.market.book("backpack", TICKER)
    qty = _min_qty(still, "backpack")
    book.place_market(BACKPACK_ACCOUNT, Side.SELL, qty, book.top()[0] / 2, client_id=None)
    result = await run(ccxt, still, "backpack", "balance_positions")
    [seen] = [p for p in result["positions"] if p["symbol"] == BP_SYMBOL]
    assert seen["side"] == "short"


async def test_backpack_create_list_cancel(ccxt: CcxtLauncher, still: SimCluster) -> None:
    price, qty = _away_price(still, "backpack"), _min_qty(still, "backpack")
    args = _limit_buy(qty, price, 4242, postOnly=True)
    async with ccxt_session(ccxt, still, "backpack") as session:
        created = await session.call("create_order", args)
        [order] = _open(still, "backpack", BACKPACK_ACCOUNT)
        assert str(order.order_id) == created["id"] and order.client_id == 4242
        assert order.side is Side.BUY and order.qty == qty and order.price == price
        assert order.post_only and created["status"] == "open"

        listed = await session.call("open_orders")
        assert [o["id"] for o in listed] == [str(order.order_id)]
        assert Decimal(str(listed[0]["price"])) == price

        cancelled = await session.call("cancel_order", {"id": created["id"]})
        assert cancelled["status"] == "canceled"
        assert _open(still, "backpack", BACKPACK_ACCOUNT) == []


async def test_backpack_my_trades(ccxt: CcxtLauncher, still: SimCluster) -> None:
    args = _limit_buy(
        _min_qty(still, "backpack"), _crossing_price(still, "backpack"), timeInForce="IOC"
    )
    async with ccxt_session(ccxt, still, "backpack") as session:
        await session.call("create_order", args)
        fills = still.market.book("backpack", TICKER).fills(BACKPACK_ACCOUNT)
        assert fills, "the crossing order did not fill in the sim"
        trades = await _trades_once_listed(session, fills)
    _assert_trades_are_the_fills(trades, fills)
    assert all(t["takerOrMaker"] == "taker" for t in trades)


@pytest.mark.parametrize("venue", ["backpack", "lighter"])
async def test_watch_order_book(ccxt: CcxtLauncher, ticking: SimCluster, venue: str) -> None:
    result = await run(ccxt, ticking, venue, "watch_order_book")
    assert result["matched"], f"ccxt's streamed top never equalled the sim's: {result}"


async def test_backpack_watch_orders(ccxt: CcxtLauncher, ticking: SimCluster) -> None:
    args = {
        **_limit_buy(
            _min_qty(ticking, "backpack"), _away_price(ticking, "backpack"), 777, postOnly=True
        ),
        "client_id": 777,  # what the scenario waits for on the stream
    }
    result = await run(ccxt, ticking, "backpack", "watch_orders", args)
    [order] = _open(ticking, "backpack", BACKPACK_ACCOUNT)
    streamed = [o for o in result["stream"] if o["clientOrderId"] == "777"]
    assert streamed and streamed[0]["id"] == str(order.order_id)
    assert streamed[0]["side"] == "buy" and streamed[0]["status"] == "open"
    assert Decimal(str(streamed[0]["price"])) == order.price


# -- Lighter ------------------------------------------------------------------------------------


async def test_lighter_load_markets(ccxt: CcxtLauncher, still: SimCluster) -> None:
    result = await run(ccxt, still, "lighter", "load_markets")
    rules = still.market.book("lighter", TICKER).rules
    assert result["market"]["id"] == str(rules.market_id)
    assert result["symbol"] == "BTC/USDC:USDC"
    assert result["market"]["type"] == "swap" and result["market"]["active"] is True
    assert Decimal(str(result["precision"]["price"])) == rules.tick
    assert Decimal(str(result["precision"]["amount"])) == rules.step


async def test_lighter_order_book(ccxt: CcxtLauncher, still: SimCluster) -> None:
    result = await run(ccxt, still, "lighter", "order_book")
    bids, asks = still.market.book("lighter", TICKER).levels(len(result["bids"]))
    assert result["bids"] and result["asks"]
    assert Decimal(str(result["bids"][0][0])) == bids[0][0]
    assert Decimal(str(result["asks"][0][0])) == asks[0][0]
    assert Decimal(str(result["bids"][0][1])) == bids[0][1]


async def test_lighter_balance_and_positions(ccxt: CcxtLauncher, still: SimCluster) -> None:
    book = still.market.book("lighter", TICKER)
    qty = _min_qty(still, "lighter")
    book.place_market(LIGHTER_ACCOUNT, Side.SELL, qty, book.top()[0] / 2, client_id=None)
    position = still.market.account("lighter", LIGHTER_ACCOUNT).position(TICKER)
    assert position.qty == -qty
    result = await run(ccxt, still, "lighter", "balance_positions")
    collateral = still.market.account("lighter", LIGHTER_ACCOUNT).collateral
    usdc = Decimal(str(result["total"]["USDC"]))
    assert abs(usdc - collateral) < collateral * Decimal("0.01")
    [seen] = [p for p in result["positions"] if p["symbol"] == "BTC/USDC:USDC"]
    assert Decimal(str(seen["contracts"])) == qty
    assert seen["side"] == "short"
    assert Decimal(str(seen["entryPrice"])) == position.entry_price


async def test_lighter_create_list_cancel(ccxt: CcxtLauncher, still: SimCluster) -> None:
    price, qty = _away_price(still, "lighter"), _min_qty(still, "lighter")
    args = _limit_buy(qty, price, 4242)
    async with ccxt_session(ccxt, still, "lighter") as session:
        await session.call("create_order", args)
        await wait_for(lambda: bool(_open(still, "lighter", LIGHTER_ACCOUNT)), 5, "the order")
        [order] = _open(still, "lighter", LIGHTER_ACCOUNT)
        assert order.client_id == 4242
        assert order.side is Side.BUY and order.qty == qty and order.price == price

        listed = await session.call("open_orders")
        assert [o["id"] for o in listed] == [str(order.order_id)]
        assert listed[0]["clientOrderId"] == "4242"

        await session.call("cancel_order", {"id": str(order.order_id)})
        await wait_for(lambda: not _open(still, "lighter", LIGHTER_ACCOUNT), 5, "the cancel")


async def test_lighter_my_trades(ccxt: CcxtLauncher, still: SimCluster) -> None:
    args = _limit_buy(
        _min_qty(still, "lighter"), _crossing_price(still, "lighter"), 99, timeInForce="IOC"
    )
    book = still.market.book("lighter", TICKER)
    async with ccxt_session(ccxt, still, "lighter") as session:
        await session.call("create_order", args)
        # Standard tier: the sequencer executes a taker order 300 ms after accepting it.
        await wait_for(lambda: bool(book.fills(LIGHTER_ACCOUNT)), 5, "the IOC's fill")
        fills = book.fills(LIGHTER_ACCOUNT)
        trades = await _trades_once_listed(session, fills)
    _assert_trades_are_the_fills(trades, fills)


async def test_lighter_watch_orders(ccxt: CcxtLauncher, ticking: SimCluster) -> None:
    args = {
        **_limit_buy(_min_qty(ticking, "lighter"), _away_price(ticking, "lighter"), 777),
        "client_id": 777,  # what the scenario waits for on the stream
    }
    result = await run(ccxt, ticking, "lighter", "watch_orders", args)
    [order] = _open(ticking, "lighter", LIGHTER_ACCOUNT)
    streamed = [o for o in result["stream"] if o["clientOrderId"] == "777"]
    assert streamed and streamed[-1]["id"] == str(order.order_id)
    assert streamed[-1]["side"] == "buy" and streamed[-1]["status"] == "open"
    assert Decimal(str(streamed[-1]["price"])) == order.price


async def test_lighter_watch_my_trades(ccxt: CcxtLauncher, ticking: SimCluster) -> None:
    args = _limit_buy(
        _min_qty(ticking, "lighter"), _crossing_price(ticking, "lighter"), 55, timeInForce="IOC"
    )
    result = await run(ccxt, ticking, "lighter", "watch_my_trades", args)
    book = ticking.market.book("lighter", TICKER)
    await wait_for(lambda: bool(book.fills(LIGHTER_ACCOUNT)), 5, "the IOC's fill")
    fills = book.fills(LIGHTER_ACCOUNT)
    streamed = {t["id"]: t for t in result["stream"]}
    for fill in fills:
        trade = streamed[str(fill.trade_id)]
        assert trade["side"] == "buy" and trade["order"] == str(fill.order_id)
        assert Decimal(str(trade["price"])) == fill.price
        assert Decimal(str(trade["amount"])) == fill.qty

"""Many pairs in one process on one account.

`--ticker BTC,ETH,SOL` trades each pair with its own engine, hedger and journal, over venues
that share what the account has once (exchanges/*/shared.py): one WebSocket per venue, one
request budget per account, one Lighter nonce sequence and signer per API key. On top of the
per-pair guards:

* `AccountGuard`: the sum over pairs of the absolute unhedged quantity, in USD at the hedge
  venue's mid, may exceed `--max-net-usd` no longer than the pairs' hedge timeout; past that,
  every pair is halted (each stops with its legs balanced).
* `budget_fit`: whether the pairs' expected fills fit the Lighter account's request budget,
  said at start with the numbers (the user may run throttled with `--yes`).
* `KeyLock`: one process per Lighter API key on this machine; a second is refused at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from exchanges.base import ConfigError
from exchanges.common.budget import LIGHTER_TIERS
from hedge.config import Mode, TradingFlags
from hedge.economics import SPLIT_KEYS

if TYPE_CHECKING:
    from hedge.config import Settings
    from hedge.engine import HedgeEngine

log = logging.getLogger(__name__)

MAX_PAIRS = 20
# Planning figures for the budget check, measured by bench/requests.py on the simulators:
# a maker fill costs 1.10 Lighter requests (its hedge, rarely a re-send), and each pair reads
# the account about once a minute (the balance guard's REST look).
LIGHTER_REQUESTS_PER_FILL = Decimal("1.1")
LIGHTER_READS_PER_PAIR_MIN = 1
EXPECTED_FILLS_PER_PAIR_MIN = 6  # a busy maker pair on a liquid market: a fill every 10 s
ACCOUNT_GUARD_INTERVAL_S = 0.25


# -- flags -----------------------------------------------------------------------------------


def split_pairs(flags: TradingFlags) -> list[TradingFlags]:
    """One TradingFlags per pair of `--ticker A,B,...`; `--size`/`--max-position` are one value
    for all or `A=QTY,B=QTY`. A single ticker comes back unchanged. ConfigError naming each
    problem."""
    tickers = [t.strip().upper() for t in flags.ticker.split(",")]
    if len(tickers) == 1:
        return [flags]
    problems: list[str] = []
    if any(not t for t in tickers):
        problems.append(f"--ticker {flags.ticker!r}: an empty name between commas")
    doubles = sorted({t for t in tickers if t and tickers.count(t) > 1})
    if doubles:
        problems.append(f"--ticker {flags.ticker!r}: {', '.join(doubles)} named twice")
    if len(tickers) > MAX_PAIRS:
        problems.append(f"--ticker: at most {MAX_PAIRS} pairs in one process")
    if flags.journal:
        problems.append(
            "--journal names one journal; with several tickers each pair has its own "
            "journal under --log-dir (named by pair and mode)"
        )
    sizes = per_pair("--size", flags.size, tickers, problems)
    positions = per_pair("--max-position", flags.max_position, tickers, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    return [replace(flags, ticker=t, size=sizes[t], max_position=positions[t]) for t in tickers]


def tickers_of(raw: str) -> list[str]:
    """The tickers of `--ticker A,B` (checked as split_pairs checks them)."""
    return [f.ticker.strip().upper() for f in split_pairs(TradingFlags(ticker=raw, size="1"))]


def per_pair(
    name: str, raw: str | None, tickers: list[str], problems: list[str]
) -> dict[str, str | None]:
    """`raw` for each ticker: one value for all, or `A=QTY,B=QTY` (every ticker named)."""
    if raw is None or "=" not in raw:
        return {t: raw for t in tickers}
    values: dict[str, str | None] = {}
    bad = 0
    for item in raw.split(","):
        ticker, sep, value = (part.strip() for part in item.partition("="))
        ticker = ticker.upper()
        if not sep or not value:
            problems.append(f"{name} {item.strip()!r}: expected TICKER=QTY, e.g. BTC=0.001")
            bad += 1
        elif ticker not in tickers:
            problems.append(f"{name} {item.strip()!r}: {ticker} is not among --ticker")
            bad += 1
        elif ticker in values:
            problems.append(f"{name}: {ticker} given twice")
            bad += 1
        else:
            values[ticker] = value
    missing = [t for t in tickers if t and t not in values]
    if missing and not bad:
        problems.append(f"{name}: no value for {', '.join(missing)} (give TICKER=QTY for each)")
    return values


def max_net_usd(raw: str | None) -> Decimal | None:
    """`--max-net-usd`: a positive amount, or None (no account-level cap)."""
    if raw is None:
        return None
    try:
        value = Decimal(raw.strip())
    except ArithmeticError:
        value = Decimal(-1)
    if not value.is_finite() or value <= 0:
        raise ConfigError(f"--max-net-usd {raw!r}: expected a positive amount of USD, e.g. 500")
    return value


# -- the budget ------------------------------------------------------------------------------


def budget_fit(pairs: list[Settings]) -> tuple[bool, str]:
    """(fits, the sentence saying so) for these pairs on the Lighter account's tier."""
    tier = pairs[0].lighter_account_tier
    limits = LIGHTER_TIERS[tier]
    capacity = limits.tx_capacity or limits.capacity
    if limits.tx_capacity is not None:
        capacity = min(capacity, limits.capacity)
    spare = capacity - limits.reserve - LIGHTER_READS_PER_PAIR_MIN * len(pairs)
    fits_fills = max(0, int(Decimal(spare) / LIGHTER_REQUESTS_PER_FILL))
    need = EXPECTED_FILLS_PER_PAIR_MIN * len(pairs)
    text = (
        f"Lighter {tier} tier: {capacity} requests/min fits about {fits_fills} fills/min "
        f"beside {len(pairs)} pair(s)' reads; {len(pairs)} pair(s) at about "
        f"{EXPECTED_FILLS_PER_PAIR_MIN} fills/min each need about {need}"
    )
    return need <= fits_fills, text


# -- one process per Lighter key -----------------------------------------------------------


class KeyLock:
    """An exclusive lock on this machine for one Lighter account and API key: two processes on
    one key draw the same nonces and refuse each other's transactions."""

    def __init__(self, api_url: str, account_index: int, api_key_index: int) -> None:
        where = hashlib.sha256(api_url.rstrip("/").encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / "hedgebot-locks"
        self.path = folder / f"lighter-{where}-{account_index}-{api_key_index}.lock"
        self.what = f"Lighter account {account_index} API key {api_key_index}"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ConfigError naming the process that holds it. Where file
        locks do not exist (Windows), the nonce watch alone recognises another process."""
        try:
            import fcntl
        except ImportError:
            log.warning("no file locks here: a second process on this key is found by its nonces")
            return

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"another hedgebot process (pid {holder}) is trading with {self.what}; two "
                "processes on one API key fight over its nonces. Stop it, or trade every pair "
                "in one process (--ticker BTC,ETH,...)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the lock


@contextlib.contextmanager
def key_lock(settings: Settings) -> Iterator[None]:
    """Hold the Lighter key's lock for a run that trades with it (nothing to lock without; a
    demo's simulated account is its own)."""
    if settings.mode is not Mode.LIVE or settings.lighter_account_index is None:
        yield
        return
    assert settings.lighter_api_key_index is not None
    lock = KeyLock(
        settings.lighter_api_url, settings.lighter_account_index, settings.lighter_api_key_index
    )
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


# -- the account guard ---------------------------------------------------------------------


class AccountGuard:
    """`--max-net-usd` over all pairs: halt every pair when the sum of absolute unhedged
    quantities, in USD, stays above the cap longer than `grace_s`."""

    def __init__(self, cap: Decimal, grace_s: float, clock: Callable[[], float]) -> None:
        self.cap = cap
        self.grace_s = grace_s
        self.clock = clock
        self.engines: list[HedgeEngine] = []
        self.over_since: float | None = None
        self.tripped = ""
        self._mids: dict[int, Decimal] = {}  # the last mid seen, per engine

    def net_usd(self) -> Decimal:
        """The pairs' unhedged quantities in USD: at the hedge venue's mid, else the maker
        venue's, else the last mid seen (an emptied hedge book is when it matters most)."""
        total = Decimal(0)
        for engine in self.engines:
            hedger = engine.hedger
            top = engine.hedge.top() or engine.maker.top()
            if top is not None:
                self._mids[id(engine)] = top.mid
            mid = self._mids.get(id(engine))
            if hedger is not None and mid is not None:
                total += abs(hedger.exposure) * mid
        return total

    def check(self) -> str | None:
        """The halt reason when the cap has been exceeded too long, else None."""
        net = self.net_usd()
        if net <= self.cap:
            self.over_since = None
            return None
        now = self.clock()
        if self.over_since is None:
            self.over_since = now
        if now - self.over_since < self.grace_s:
            return None
        return (
            f"account guard: unhedged {net:.2f} USD across {len(self.engines)} pairs above "
            f"--max-net-usd {self.cap} for {now - self.over_since:.1f} s"
        )

    async def run(self) -> None:
        while not self.tripped:
            await asyncio.sleep(ACCOUNT_GUARD_INTERVAL_S)
            reason = self.check()
            if reason is not None:
                self.tripped = reason
                log.critical("%s: halting every pair", reason)
                for engine in self.engines:
                    engine.request_halt(reason)


# -- totals ----------------------------------------------------------------------------------

# Summary keys that add up across pairs (quote amounts and counts; base amounts do not).
SUMMED_KEYS = (
    "cycles",
    "maker_fills",
    "hedge_fills",
    "maker_volume",
    "hedge_volume",
    "double_hedges",
    "hedge_resends",
    "halts",
    "wear_quote",
    *SPLIT_KEYS,
    "pnl_realized_quote",
    "pnl_mark_quote",
    "pnl_quote",
)


def account_totals(summaries: dict[str, dict[str, object]]) -> dict[str, object]:
    """The account's figures over several pairs' summaries (by ticker): sums of what adds up,
    the wear per 10k of the total maker volume, and each pair's net delta."""
    totals: dict[str, object] = {"pairs": len(summaries)}
    for key in SUMMED_KEYS:
        values = [Decimal(str(s[key])) for s in summaries.values() if key in s]
        if values:
            total = sum(values, Decimal(0))
            totals[key] = int(total) if all(v == v.to_integral() for v in values) else total
    volume = Decimal(str(totals.get("maker_volume", 0)))
    wear = Decimal(str(totals.get("wear_quote", 0)))
    totals["wear_per_10k_quote"] = (
        (wear / volume * 10_000).quantize(Decimal("0.01")) if volume else 0
    )
    totals["net_delta_by_pair"] = {t: s.get("net_delta") for t, s in summaries.items()}
    return totals

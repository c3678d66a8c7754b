"""The simulators' rolling-minute limiter and request ledger, on a fake clock."""

from __future__ import annotations

import pytest

from exchanges.sim.accounting import RequestLedger, RollingLimit, take_all


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_request_past_the_capacity_is_refused_until_the_oldest_leaves() -> None:
    clock = Clock()
    limit = RollingLimit(60, clock=clock)
    for _ in range(60):
        assert limit.take() is None
        clock.now += 0.5
    # 60 requests in the last 30 s: the 61st waits until the first is a minute old.
    wait = limit.take()
    assert wait == pytest.approx(30.0)
    assert limit.used() == 60
    clock.now += wait
    assert limit.take() is None


def test_weights_count_against_the_capacity() -> None:
    clock = Clock()
    limit = RollingLimit(24_000, clock=clock)
    for _ in range(40):
        assert limit.take(600) is None  # /api/v1/trades weighs 600 on Premium
    assert limit.take(6) is not None  # even the lightest request no longer fits
    clock.now += 60.0
    assert limit.used() == 0
    assert limit.take(300) is None


def test_a_refused_request_books_nothing() -> None:
    clock = Clock()
    limit = RollingLimit(2, clock=clock)
    assert limit.take() is None and limit.take() is None
    for _ in range(5):
        assert limit.take() is not None
    assert limit.used() == 2


def test_a_request_refused_by_one_budget_spends_none_of_the_others() -> None:
    clock = Clock()
    account, ip = RollingLimit(60, clock=clock), RollingLimit(1, clock=clock)
    assert take_all([(account, 1), (ip, 1)]) is None
    clock.now += 10.0
    for _ in range(5):
        # Refused by the IP's budget, which frees in 50 s: the account's books nothing.
        assert take_all([(account, 1), (ip, 1)]) == pytest.approx(50.0)
    assert (account.used(), ip.used()) == (1, 1)
    assert take_all([(account, 1)]) is None


def test_unlimited_counts_but_never_refuses() -> None:
    limit = RollingLimit(None, clock=Clock())
    for _ in range(10_000):
        assert limit.take() is None
    assert limit.used() == 10_000


def test_the_ledger_counts_per_account_and_per_ip() -> None:
    ledger = RequestLedger("lighter")
    ledger.request("7", "127.0.0.1", "/api/v1/sendTx")
    ledger.send_tx("7", "127.0.0.1")
    ledger.request(None, "127.0.0.1", "/api/v1/orderBooks")
    ledger.rejected_429("7", "127.0.0.1")
    ledger.ws_message("7", "127.0.0.1")
    snapshot = ledger.snapshot()
    account = ledger.account("7")
    assert account["requests"] == {"/api/v1/sendTx": 1}
    assert (account["requests_total"], account["send_tx"], account["http_429"]) == (1, 1, 1)
    assert account["ws_messages"] == 1
    ips = snapshot["ips"]
    assert isinstance(ips, dict) and ips["127.0.0.1"]["requests_total"] == 2
    ledger.reset()
    assert ledger.snapshot()["accounts"] == {}

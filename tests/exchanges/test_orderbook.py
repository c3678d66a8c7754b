"""Specification of the L2 order book: snapshot + absolute deltas, sequence rules, resync."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.book_throughput import run as run_throughput
from exchanges.backpack.parsing import apply_backpack_depth, apply_backpack_snapshot
from exchanges.common.orderbook import (
    BACKPACK,
    LIGHTER,
    BookState,
    Level,
    OrderBook,
    Sequencing,
)
from exchanges.lighter.parsing import apply_lighter_order_book

D = Decimal


def lv(*pairs: tuple[str, str]) -> list[Level]:
    return [(D(p), D(q)) for p, q in pairs]


def synced_backpack(last_update_id: int = 100) -> OrderBook:
    book = OrderBook("BTC_USDC_PERP", BACKPACK)
    assert book.apply_snapshot(
        lv(("99", "1"), ("98", "2"), ("97", "3")),
        lv(("101", "1"), ("102", "2"), ("103", "3")),
        last_update_id,
    )
    return book


def bp_event(first: int, last: int, bids: list[list[str]], asks: list[list[str]]) -> str:
    data = {"e": "depth", "E": 1, "s": "BTC_USDC_PERP", "a": asks, "b": bids, "U": first}
    data |= {"u": last, "T": 1}
    return json.dumps({"stream": "depth.BTC_USDC_PERP", "data": data})


def lighter_msg(
    kind: str, nonce: int, begin: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]]
) -> str:
    ob = {
        "code": 0,
        "offset": nonce,
        "nonce": nonce,
        "begin_nonce": begin,
        "bids": [{"price": p, "size": s} for p, s in bids],
        "asks": [{"price": p, "size": s} for p, s in asks],
    }
    return json.dumps({"type": kind, "channel": "order_book:1", "offset": nonce, "order_book": ob})


# --------------------------------------------------------------------------------------------
# Levels and top
# --------------------------------------------------------------------------------------------


def test_snapshot_gives_best_bid_and_ask_with_quantities() -> None:
    book = synced_backpack()

    top = book.top()

    assert top is not None
    assert (top.bid, top.bid_qty, top.ask, top.ask_qty) == (D(99), D(1), D(101), D(1))
    assert book.state is BookState.SYNCED


def test_levels_are_best_first_on_both_sides() -> None:
    book = synced_backpack()

    bids, asks = book.levels(2)

    assert bids == lv(("99", "1"), ("98", "2"))
    assert asks == lv(("101", "1"), ("102", "2"))
    assert book.levels(10)[0] == lv(("99", "1"), ("98", "2"), ("97", "3"))


def test_delta_sets_absolute_quantities_and_adds_levels() -> None:
    book = synced_backpack()

    assert book.apply_delta(lv(("99", "5"), ("99.5", "0.1")), lv(("100.5", "7")), 101, 101)

    top = book.top()
    assert top is not None
    assert (top.bid, top.bid_qty, top.ask, top.ask_qty) == (D("99.5"), D("0.1"), D("100.5"), D(7))
    assert book.levels(2)[0] == lv(("99.5", "0.1"), ("99", "5"))


def test_zero_quantity_deletes_the_level_and_top_moves_to_the_next() -> None:
    book = synced_backpack()

    assert book.apply_delta(lv(("99", "0")), lv(("101", "0.000")), 101, 101)

    top = book.top()
    assert top is not None
    assert (top.bid, top.ask) == (D(98), D(102))
    assert book.depth() == (2, 2)


def test_deleting_an_absent_level_changes_nothing() -> None:
    book = synced_backpack()

    assert book.apply_delta(lv(("50", "0")), lv(("150", "0")), 101, 101)

    assert book.depth() == (3, 3)
    assert book.synced


def test_top_is_none_until_a_snapshot_and_when_a_side_is_empty() -> None:
    book = OrderBook("X", BACKPACK)
    assert book.top() is None

    book.apply_snapshot(lv(("99", "1")), [], 1)

    assert book.synced
    assert book.top() is None


def test_top_is_cached_until_the_next_change_and_carries_its_update_time() -> None:
    book = synced_backpack()
    first = book.top()

    assert book.top() is first
    book.apply_delta(lv(("97", "9")), [], 101, 101)  # below the best: top values unchanged

    second = book.top()
    assert second is not first and second is not None and first is not None
    assert (second.bid, second.ask) == (first.bid, first.ask)
    assert second.updated_at == book.updated_at >= first.updated_at
    assert book.updated_at <= time.monotonic()


# --------------------------------------------------------------------------------------------
# Backpack sequencing: U/u against lastUpdateId
# --------------------------------------------------------------------------------------------


def test_backpack_events_wholly_in_the_snapshot_are_skipped() -> None:
    book = synced_backpack(100)

    assert book.apply_delta(lv(("99", "0")), [], 95, 100)

    assert book.deltas_skipped == 1
    assert book.deltas_applied == 0
    assert book.top() is not None and book.top().bid == D(99)  # type: ignore[union-attr]


def test_backpack_first_event_overlapping_the_snapshot_applies() -> None:
    book = synced_backpack(100)

    assert book.apply_delta(lv(("99", "4")), [], 98, 103)  # U <= 101 <= u

    assert book.seq == 103
    assert book.top().bid_qty == D(4)  # type: ignore[union-attr]


def test_backpack_first_event_after_a_hole_is_a_gap() -> None:
    book = synced_backpack(100)

    assert not book.apply_delta(lv(("99", "4")), [], 102, 105)

    assert book.state is BookState.GAP
    assert book.top() is None
    assert book.gaps == 1


def test_backpack_later_events_must_chain_exactly() -> None:
    book = synced_backpack(100)
    assert book.apply_delta([], lv(("101", "2")), 101, 104)
    assert book.apply_delta([], lv(("101", "3")), 105, 107)

    assert not book.apply_delta([], lv(("101", "4")), 109, 110)

    assert book.needs_resync
    assert "expected first 108" in book.gap_reason


def test_backpack_overlap_after_the_first_event_is_a_gap() -> None:
    book = synced_backpack(100)
    assert book.apply_delta([], [], 101, 104)

    assert not book.apply_delta([], [], 103, 106)

    assert book.needs_resync


def test_backpack_events_before_the_snapshot_are_buffered_and_replayed() -> None:
    book = OrderBook("BTC_USDC_PERP", BACKPACK)
    assert apply_backpack_depth(book, bp_event(90, 95, [["99", "7"]], []))  # stale
    assert apply_backpack_depth(book, bp_event(96, 102, [["99", "8"]], []))  # joins 100
    assert apply_backpack_depth(book, bp_event(103, 103, [], [["101", "0"]]))
    assert book.top() is None and book.deltas_buffered == 3

    ok = apply_backpack_snapshot(
        book, {"bids": [["99", "1"]], "asks": [["101", "1"], ["102", "2"]], "lastUpdateId": "100"}
    )

    assert ok and book.synced
    top = book.top()
    assert top is not None
    assert (top.bid, top.bid_qty, top.ask) == (D(99), D(8), D(102))
    assert (book.deltas_skipped, book.deltas_applied, book.seq) == (1, 2, 103)


def test_backpack_snapshot_older_than_the_buffer_keeps_it_for_the_next_snapshot() -> None:
    book = OrderBook("BTC_USDC_PERP", BACKPACK)
    apply_backpack_depth(book, bp_event(110, 112, [["99", "3"]], []))
    apply_backpack_depth(book, bp_event(113, 113, [["98", "0"]], []))

    old = {"bids": [["99", "1"], ["98", "1"]], "asks": [["101", "1"]], "lastUpdateId": "100"}
    assert not apply_backpack_snapshot(book, old)
    assert book.needs_resync

    new = {"bids": [["99", "2"], ["98", "1"]], "asks": [["101", "1"]], "lastUpdateId": "111"}
    assert apply_backpack_snapshot(book, new)
    assert book.synced
    assert book.levels(5)[0] == lv(("99", "3"))
    assert book.seq == 113


def test_backpack_events_during_a_gap_are_buffered_for_the_resync() -> None:
    book = synced_backpack(100)
    assert not book.apply_delta([], [], 200, 201)  # gap
    assert book.apply_delta(lv(("99", "6")), [], 202, 205)  # held

    assert book.apply_snapshot(lv(("99", "1")), lv(("101", "1")), 203)

    assert book.top().bid_qty == D(6)  # type: ignore[union-attr]
    assert book.gaps == 1 and book.snapshots == 2


def test_reset_drops_levels_and_buffered_events() -> None:
    book = synced_backpack(100)
    book.mark_gap("test")
    book.apply_delta([], [], 150, 151)

    book.reset()

    assert book.state is BookState.EMPTY
    assert book.apply_snapshot(lv(("99", "1")), lv(("101", "1")), 10)
    assert book.deltas_applied == 0 and book.seq == 10


# --------------------------------------------------------------------------------------------
# Lighter sequencing: begin_nonce == previous nonce
# --------------------------------------------------------------------------------------------


def test_lighter_snapshot_then_chained_updates() -> None:
    book = OrderBook("BTC", LIGHTER)
    snap = lighter_msg("subscribed/order_book", 50, 40, [("99.0", "1")], [("101.0", "2")])
    assert apply_lighter_order_book(book, snap)

    assert apply_lighter_order_book(
        book, lighter_msg("update/order_book", 53, 50, [("99.5", "1.5")], [("101.0", "0")])
    )
    assert apply_lighter_order_book(
        book, lighter_msg("update/order_book", 54, 53, [], [("100.5", "3")])
    )

    top = book.top()
    assert top is not None
    assert (top.bid, top.bid_qty, top.ask, top.ask_qty) == (D("99.5"), D("1.5"), D("100.5"), D(3))
    assert book.seq == 54


def test_lighter_update_not_starting_at_previous_nonce_is_a_gap() -> None:
    book = OrderBook("BTC", LIGHTER)
    apply_lighter_order_book(book, lighter_msg("subscribed/order_book", 50, 40, [("99", "1")], []))
    assert apply_lighter_order_book(book, lighter_msg("update/order_book", 52, 50, [], []))

    assert not apply_lighter_order_book(book, lighter_msg("update/order_book", 56, 53, [], []))

    assert book.needs_resync and book.top() is None


def test_lighter_updates_before_the_snapshot_are_dropped_not_buffered() -> None:
    book = OrderBook("BTC", LIGHTER)
    assert apply_lighter_order_book(
        book, lighter_msg("update/order_book", 45, 40, [("99", "9")], [])
    )

    snap = lighter_msg("subscribed/order_book", 50, 40, [("99", "1")], [("101", "1")])
    assert apply_lighter_order_book(book, snap)

    assert book.top().bid_qty == D(1)  # type: ignore[union-attr]
    assert book.deltas_buffered == 0


def test_lighter_messages_that_are_not_book_messages_are_ignored() -> None:
    book = OrderBook("BTC", LIGHTER)

    assert apply_lighter_order_book(book, '{"type":"ping"}')
    assert apply_lighter_order_book(book, {"type": "connected", "session_id": "x"})

    assert book.state is BookState.EMPTY and book.malformed == 0


# --------------------------------------------------------------------------------------------
# Crossed and malformed books
# --------------------------------------------------------------------------------------------


def test_a_delta_that_crosses_the_book_is_a_gap() -> None:
    book = synced_backpack(100)

    assert not book.apply_delta(lv(("101", "1")), [], 101, 101)  # bid == best ask

    assert book.needs_resync and book.crossed == 1
    assert book.top() is None


def test_a_crossed_snapshot_is_a_gap() -> None:
    book = OrderBook("BTC", LIGHTER)

    snap = lighter_msg("subscribed/order_book", 50, 40, [("102", "1")], [("101", "1")])

    assert not apply_lighter_order_book(book, snap)
    assert book.needs_resync and book.crossed == 1


def test_malformed_messages_are_counted_and_force_a_resync_without_raising() -> None:
    book = synced_backpack(100)

    assert not apply_backpack_depth(book, "{not json")
    assert book.needs_resync and book.malformed == 1
    # Further garbage while already resyncing is not a new gap.
    assert apply_backpack_depth(book, {"e": "depth", "a": [], "b": [], "U": 1})
    assert book.malformed == 2 and book.gaps == 1


def test_bad_level_values_are_malformed() -> None:
    for bad in (["99", "-1"], ["-99", "1"], ["NaN", "1"], ["abc", "1"], ["99"], None):
        book = synced_backpack(100)
        assert not apply_backpack_depth(book, bp_event(101, 101, [bad], [])), bad  # type: ignore[list-item]
        assert book.malformed == 1 and book.deltas_applied == 0


def test_lighter_malformed_update_is_a_gap() -> None:
    book = OrderBook("BTC", LIGHTER)
    apply_lighter_order_book(book, lighter_msg("subscribed/order_book", 50, 40, [("99", "1")], []))

    bad = {"type": "update/order_book", "order_book": {"nonce": 51, "bids": [], "asks": []}}

    assert not apply_lighter_order_book(book, bad)
    assert book.needs_resync and book.malformed == 1


# --------------------------------------------------------------------------------------------
# Property: the top always equals a brute-force model of the book
# --------------------------------------------------------------------------------------------

quantities = st.sampled_from(["0", "0", "1", "2.5", "0.001", "10"])
bid_changes = st.lists(st.tuples(st.integers(1, 20), quantities), max_size=6)
ask_changes = st.lists(st.tuples(st.integers(21, 40), quantities), max_size=6)


@settings(max_examples=60, deadline=None)
@given(
    snapshot_bids=st.dictionaries(st.integers(1, 20), quantities, max_size=8),
    snapshot_asks=st.dictionaries(st.integers(21, 40), quantities, max_size=8),
    deltas=st.lists(st.tuples(bid_changes, ask_changes), min_size=10, max_size=50),
    cross_at=st.none() | st.integers(0, 20),  # where to inject a bid above every ask
    sequencing=st.sampled_from([BACKPACK, LIGHTER]),
)
def test_top_and_levels_always_match_a_dict_model(
    snapshot_bids: dict[int, str],
    snapshot_asks: dict[int, str],
    deltas: list[tuple[list[tuple[int, str]], list[tuple[int, str]]]],
    cross_at: int | None,
    sequencing: Sequencing,
) -> None:
    book = OrderBook("P", sequencing)
    model_bids = {D(p): D(q) for p, q in snapshot_bids.items() if D(q)}
    model_asks = {D(p): D(q) for p, q in snapshot_asks.items() if D(q)}
    book.apply_snapshot(
        [(D(p), D(q)) for p, q in snapshot_bids.items()],
        [(D(p), D(q)) for p, q in snapshot_asks.items()],
        1,
    )
    seq = 1
    for index, (bid_changes, ask_changes) in enumerate(deltas):
        if index == cross_at:
            bid_changes = [*bid_changes, (41, "1")]
        for side, changes in ((model_bids, bid_changes), (model_asks, ask_changes)):
            for p, q in changes:
                if D(q):
                    side[D(p)] = D(q)
                else:
                    side.pop(D(p), None)
        first, seq = seq + sequencing.step, seq + 3
        ok = book.apply_delta(
            [(D(p), D(q)) for p, q in bid_changes],
            [(D(p), D(q)) for p, q in ask_changes],
            first,
            seq,
        )
        crossed = bool(model_bids and model_asks and max(model_bids) >= min(model_asks))
        if crossed:
            assert not ok and book.needs_resync and book.top() is None
            return
        assert ok and book.synced
        top = book.top()
        if model_bids and model_asks:
            best_bid, best_ask = max(model_bids), min(model_asks)
            assert top is not None
            assert (top.bid, top.bid_qty) == (best_bid, model_bids[best_bid])
            assert (top.ask, top.ask_qty) == (best_ask, model_asks[best_ask])
        else:
            assert top is None
        bids, asks = book.levels(5)
        assert bids == sorted(model_bids.items(), reverse=True)[:5]
        assert asks == sorted(model_asks.items())[:5]
        assert book.depth() == (len(model_bids), len(model_asks))


# --------------------------------------------------------------------------------------------
# Throughput smoke (the real figure comes from `python -m bench.book_throughput`)
# --------------------------------------------------------------------------------------------


def test_realistic_message_stream_applies_without_gaps_at_a_sane_rate() -> None:
    result = run_throughput(messages=300, seed=3)

    assert result["gaps"] == 0
    assert result["deltas_applied"] == 600
    assert result["top_matches_model"] is True
    # Far below the 20,000/s budget on purpose: catches an accidental O(n^2), not noise.
    assert result["backpack_msgs_per_s"] > 1_000  # type: ignore[operator]
    assert result["lighter_msgs_per_s"] > 1_000  # type: ignore[operator]

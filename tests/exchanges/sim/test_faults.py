"""Fault plans: presets, arming, seeded reproducibility, HTTP bursts, delays and thin books."""

from __future__ import annotations

import json

import pytest

from exchanges.sim.faults import ALL_FAULTS, PRESETS, FaultName, FaultPlan


def pattern(plan: FaultPlan, fault: FaultName, checks: int) -> list[bool]:
    return [plan.check(fault) for _ in range(checks)]


def test_all_faults_are_listed_once() -> None:
    assert len(ALL_FAULTS) == len(set(ALL_FAULTS)) == 13
    assert {"ws_drop", "http_503", "thin_book", "depth_gap"} <= set(ALL_FAULTS)


@pytest.mark.parametrize("preset", ["none", "light", "chaos"])
def test_each_preset_names_every_fault_with_a_probability(preset: str) -> None:
    probabilities = PRESETS[preset]
    assert set(probabilities) == set(ALL_FAULTS)
    assert all(0.0 <= p < 0.5 for p in probabilities.values())
    plan = FaultPlan(preset, seed=1)
    assert plan.preset == preset and plan.ambiguous_delay_s == 2.0
    assert plan.fired == dict.fromkeys(ALL_FAULTS, 0)


def test_none_is_quiet_light_is_mild_and_chaos_is_worse() -> None:
    assert all(p == 0 for p in PRESETS["none"].values())
    for fault in ALL_FAULTS:
        assert 0 < PRESETS["light"][fault] < PRESETS["chaos"][fault] <= 0.25
    plan = FaultPlan("none", seed=3)
    assert not any(plan.check(f) for f in ALL_FAULTS for _ in range(200))
    assert plan.http_fault() is None and plan.delay_s() == 0.0
    assert sum(plan.fired.values()) == 0


def test_unknown_preset_and_fault_are_value_errors() -> None:
    with pytest.raises(ValueError, match="wild"):
        FaultPlan("wild")
    plan = FaultPlan()
    with pytest.raises(ValueError, match="nope"):
        plan.check("nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plan.arm("nope")  # type: ignore[arg-type]


def test_armed_fault_fires_exactly_count_times_then_stops() -> None:
    plan = FaultPlan("none", seed=0)
    plan.arm("ws_drop", 3)
    assert pattern(plan, "ws_drop", 5) == [True, True, True, False, False]
    assert plan.fired["ws_drop"] == 3
    assert not plan.check("depth_gap")  # arming one fault does not touch the others


def test_disarm_forgets_armed_checks() -> None:
    plan = FaultPlan("none")
    plan.arm("depth_gap", 5)
    plan.arm("ws_drop", 5)
    plan.disarm("depth_gap")
    assert not plan.check("depth_gap") and plan.check("ws_drop")
    plan.disarm()
    assert not plan.check("ws_drop")


def test_probability_matches_the_preset_roughly() -> None:
    plan = FaultPlan("chaos", seed=7)
    fired = sum(pattern(plan, "thin_book", 5000))
    assert fired == plan.fired["thin_book"]
    assert abs(fired / 5000 - PRESETS["chaos"]["thin_book"]) < 0.03


def test_same_seed_gives_the_same_firing_pattern() -> None:
    first, second, other = FaultPlan("chaos", 5), FaultPlan("chaos", 5), FaultPlan("chaos", 6)
    runs = [[pattern(plan, fault, 300) for fault in ALL_FAULTS] for plan in (first, second, other)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_a_faults_pattern_does_not_depend_on_checks_of_other_faults() -> None:
    quiet, busy = FaultPlan("light", 9), FaultPlan("light", 9)
    expected = pattern(quiet, "ws_drop", 2000)
    got = []
    for _ in range(2000):
        busy.check("duplicate_event")
        busy.delay_s()
        got.append(busy.check("ws_drop"))
    assert got == expected and sum(expected) > 0


def test_set_probability_overrides_the_preset() -> None:
    plan = FaultPlan("none", seed=1)
    plan.set_probability("post_only_reject", 1.0)
    assert all(pattern(plan, "post_only_reject", 10))
    with pytest.raises(ValueError):
        plan.set_probability("post_only_reject", 1.5)


def test_armed_http_fault_answers_the_status_exactly_as_armed() -> None:
    plan = FaultPlan("none", seed=2)
    plan.arm("http_503", 2)
    assert [plan.http_fault() for _ in range(4)] == [503, 503, None, None]
    plan.arm("http_429")
    assert plan.http_fault() == 429 and plan.http_fault() is None
    assert plan.fired["http_503"] == 2 and plan.fired["http_429"] == 1


def test_http_fault_by_probability_comes_in_bursts() -> None:
    plan = FaultPlan("none", seed=4)
    plan.set_probability("http_500", 0.02)
    answers = [plan.http_fault() for _ in range(3000)]
    runs: list[int] = []
    length = 0
    for answer in [*answers, None]:
        if answer is not None:
            assert answer == 500
            length += 1
        elif length:
            runs.append(length)
            length = 0
    assert runs and min(runs) >= 2  # the first failure plus 1-3 more
    assert sum(runs) == plan.fired["http_500"]
    reproduced = FaultPlan("none", seed=4)
    reproduced.set_probability("http_500", 0.02)
    assert [reproduced.http_fault() for _ in range(3000)] == answers


def test_delay_is_a_seeded_jitter_only_when_ws_delay_fires() -> None:
    plan = FaultPlan("none", seed=8)
    assert plan.delay_s() == 0.0
    plan.arm("ws_delay", 20)
    delays = [plan.delay_s() for _ in range(20)]
    assert all(0.0 < d < 1.0 for d in delays) and len(set(delays)) > 10
    again = FaultPlan("none", seed=8)
    again.arm("ws_delay", 20)
    assert [again.delay_s() for _ in range(20)] == delays


def test_thin_fraction_is_below_one_and_sometimes_zero() -> None:
    plan = FaultPlan("none", seed=1)
    fractions = [plan.thin_fraction() for _ in range(400)]
    assert all(0.0 <= f < 1.0 for f in fractions)
    assert 0.0 in fractions and max(fractions) > 0.5


def test_snapshot_is_json() -> None:
    plan = FaultPlan("light", seed=3)
    plan.arm("ws_drop", 2)
    plan.check("ws_drop")
    snapshot = json.loads(json.dumps(plan.snapshot()))
    assert snapshot["preset"] == "light" and snapshot["seed"] == 3
    assert snapshot["fired"]["ws_drop"] == 1 and snapshot["armed"] == {"ws_drop": 1}

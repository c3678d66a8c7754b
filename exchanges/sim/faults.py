"""Fault plans for the simulated venues: seeded, reproducible, usable one at a time or as presets.

The servers ask the plan at each decision point ("should this message be dropped?"). A fault
fires either because a test armed it (`arm`, deterministic: the next N checks fire) or by the
preset's probability drawn from the plan's own seeded RNG, so a run is reproducible from its
seed. Every fault that fires is counted in `fired` for tests and the dashboard.

Each fault draws from its own generator (derived from the plan's seed and the fault's name), so
the firing pattern of one fault depends only on how often *that* fault was checked — the order
in which concurrent connections happen to ask about other faults cannot change it.

Who applies what: `SimMarket` applies `thin_book` itself to taker orders (IOC limits and
market orders); every other fault is applied by the venue servers.

THIS FILE IS THE CONTRACT. Names, signatures and semantics are fixed.
"""

from __future__ import annotations

import random
from typing import Literal, get_args

FaultName = Literal[
    "ws_drop",  # close a WS connection abruptly (checked before each data message sent)
    "ws_delay",  # delay a WS message (jitter), see `delay_s`
    "duplicate_event",  # send an account order-update event twice
    "reorder_event",  # hold an account order-update event and send it after the next one
    "http_429",  # answer a REST request with 429 instead of serving it (bursts)
    "http_500",
    "http_503",
    "ambiguous_order",  # execute an order request but answer only after `ambiguous_delay_s`
    "post_only_reject",  # reject a post-only order as crossing even though it does not
    "thin_book",  # a taker/IOC order finds only part (or none) of its size
    "invalid_nonce",  # answer a Lighter sendTx with the real "invalid nonce" error
    "token_expiry",  # treat a Lighter auth token as expired (WS subscribe / REST read refused)
    "depth_gap",  # skip a sequence id in the depth stream
]

ALL_FAULTS: tuple[FaultName, ...] = get_args(FaultName)

# Probability per check. "light" is what a healthy real venue feels like on a bad day; "chaos"
# is several times worse but still lets a bot make progress (most requests succeed, most
# messages arrive in order).
_LIGHT: dict[FaultName, float] = {
    "ws_drop": 0.002,
    "ws_delay": 0.02,
    "duplicate_event": 0.02,
    "reorder_event": 0.02,
    "http_429": 0.004,
    "http_500": 0.003,
    "http_503": 0.003,
    "ambiguous_order": 0.01,
    "post_only_reject": 0.02,
    "thin_book": 0.05,
    "invalid_nonce": 0.02,
    "token_expiry": 0.005,
    "depth_gap": 0.005,
}
_CHAOS: dict[FaultName, float] = {
    "ws_drop": 0.006,
    "ws_delay": 0.08,
    "duplicate_event": 0.08,
    "reorder_event": 0.08,
    "http_429": 0.015,
    "http_500": 0.01,
    "http_503": 0.01,
    "ambiguous_order": 0.04,
    "post_only_reject": 0.08,
    "thin_book": 0.2,
    "invalid_nonce": 0.08,
    "token_expiry": 0.02,
    "depth_gap": 0.02,
}
PRESETS: dict[str, dict[FaultName, float]] = {
    "none": dict.fromkeys(ALL_FAULTS, 0.0),
    "light": _LIGHT,
    "chaos": _CHAOS,
}

_HTTP_FAULTS: tuple[tuple[FaultName, int], ...] = (
    ("http_429", 429),
    ("http_500", 500),
    ("http_503", 503),
)
_DELAY_RANGE_S = (0.02, 0.25)  # ws_delay jitter


class FaultPlan:
    def __init__(self, preset: str = "none", seed: int = 0) -> None:
        """ValueError naming the preset when unknown."""
        if preset not in PRESETS:
            known = ", ".join(sorted(PRESETS))
            raise ValueError(f"unknown fault preset {preset!r} (known: {known})")
        self.preset = preset
        self.seed = seed
        self.fired: dict[str, int] = dict.fromkeys(ALL_FAULTS, 0)
        self.ambiguous_delay_s = 2.0
        self._probability: dict[FaultName, float] = dict(PRESETS[preset])
        self._armed: dict[FaultName, int] = dict.fromkeys(ALL_FAULTS, 0)
        # String seeds are hashed with SHA-512 by `random`, so they are stable across runs.
        self._rng: dict[FaultName, random.Random] = {
            name: random.Random(f"{seed}:{name}") for name in ALL_FAULTS
        }
        self._burst_status: int | None = None
        self._burst_fault: FaultName = "http_500"
        self._burst_left = 0

    # -- configuration ----------------------------------------------------------------------
    def arm(self, fault: FaultName, count: int = 1) -> None:
        """Force the next `count` checks of `fault` to fire (tests use this)."""
        self._known(fault)
        if count < 0:
            raise ValueError("count must be >= 0")
        self._armed[fault] += count

    def disarm(self, fault: FaultName | None = None) -> None:
        """Forget armed checks of one fault (or all) and any HTTP burst in progress."""
        if fault is None:
            self._armed = dict.fromkeys(ALL_FAULTS, 0)
            self._burst_left = 0
            return
        self._known(fault)
        self._armed[fault] = 0
        if fault == self._burst_fault:
            self._burst_left = 0

    def set_probability(self, fault: FaultName, probability: float) -> None:
        """Override one fault's probability per check (0 disables it)."""
        self._known(fault)
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        self._probability[fault] = probability

    def probability(self, fault: FaultName) -> float:
        self._known(fault)
        return self._probability[fault]

    # -- decisions --------------------------------------------------------------------------
    def check(self, fault: FaultName) -> bool:
        """True when the fault fires now (armed, or drawn at the preset's probability)."""
        self._known(fault)
        if self._armed[fault] > 0:
            self._armed[fault] -= 1
            self.fired[fault] += 1
            return True
        probability = self._probability[fault]
        # No draw at probability 0: a quiet plan costs nothing and consumes no randomness.
        if probability > 0.0 and self._rng[fault].random() < probability:
            self.fired[fault] += 1
            return True
        return False

    def delay_s(self) -> float:
        """A message delay in seconds: 0 unless 'ws_delay' fires, then a seeded jitter."""
        if not self.check("ws_delay"):
            return 0.0
        low, high = _DELAY_RANGE_S
        return low + (high - low) * self._rng["ws_delay"].random()

    def thin_fraction(self) -> float:
        """When 'thin_book' fires: the fraction of an IOC's size available, 0 <= f < 1.

        Does not check the fault itself: call it after `check("thin_book")` fired."""
        rng = self._rng["thin_book"]
        if rng.random() < 0.25:
            return 0.0  # sometimes nothing at all
        return 0.1 + 0.8 * rng.random()

    def http_fault(self) -> int | None:
        """An HTTP status to answer instead of serving (429/500/503), or None. Bursts: once
        one fires by probability, the next 1-3 checks fire too. An armed fault fires exactly
        as many times as armed (no burst), so tests stay exact."""
        if self._burst_left > 0 and self._burst_status is not None:
            self._burst_left -= 1
            self.fired[self._burst_fault] += 1
            return self._burst_status
        for fault, status in _HTTP_FAULTS:
            armed = self._armed[fault] > 0
            if self.check(fault):
                if not armed:
                    self._burst_status = status
                    self._burst_fault = fault
                    self._burst_left = self._rng[fault].randint(1, 3)
                return status
        return None

    # -- reporting --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, object]:
        """JSON-able state for the dashboard and `/_sim/truth`."""
        return {
            "preset": self.preset,
            "seed": self.seed,
            "fired": dict(self.fired),
            "armed": {name: n for name, n in self._armed.items() if n},
            "probability": dict(self._probability),
        }

    @staticmethod
    def _known(fault: str) -> None:
        if fault not in ALL_FAULTS:
            raise ValueError(f"unknown fault {fault!r}")

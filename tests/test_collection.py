"""The suite runs on several workers (pytest-xdist), and each collects the tests itself: they
must all collect the same tests, or the run is refused. A test id built from a set's order (hash
order differs between processes) or from the clock would break that."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _collected(hash_seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_every_worker_collects_the_same_tests_in_the_same_order() -> None:
    first, second = _collected("1"), _collected("2")
    assert len(first) > 1000
    assert first == second

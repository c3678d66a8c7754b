"""A virtualenv holding stock ccxt 4.5.90, prepared once and cached outside the repository.

ccxt pins packages (aiohttp, cryptography, ...) that conflict with bpx-py's and lighter-sdk's
pins, so it cannot live in the project venv: the ccxt tests run it in its own interpreter, as
a subprocess talking to the simulators over loopback.

Cache: `~/.cache/hedgebot/ccxt-4.5.90/` (override with `HEDGEBOT_CCXT_VENV`). It is built in a
temporary sibling directory and renamed into place when complete (a venv run as
`<dir>/bin/python -m ...` survives the rename: only console-script shebangs would not, and
none are used), then marked with a file naming the version. A file lock keeps two pytest
processes from building it at once. A cold build takes about 10-15 s here (venv + pip
resolving ccxt's ~20 dependencies from the package registry); a warm start costs nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CCXT_VERSION = "4.5.90"
MARKER = ".hedgebot-ccxt-complete"
ENV_OVERRIDE = "HEDGEBOT_CCXT_VENV"
PIP_TIMEOUT_S = 600

# pip output meaning "the registry could not be reached", as opposed to a real failure.
_NETWORK_PATTERNS = re.compile(
    r"NewConnectionError|ConnectionError|Max retries exceeded|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable|Connection refused|"
    r"ReadTimeoutError|ConnectTimeoutError|timed out|ProxyError|"
    r"No matching distribution found for|Could not find a version that satisfies",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CcxtVenv:
    python: Path | None  # the venv's interpreter, when ready
    skip_reason: str | None  # why it could not be prepared (registry unreachable)
    built_in_s: float | None = None  # how long a cold build took, None when cached


class CcxtVenvError(RuntimeError):
    """Preparation failed for a reason other than an unreachable registry: a test failure."""


def venv_dir() -> Path:
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "hedgebot" / f"ccxt-{CCXT_VERSION}"


def _python_in(folder: Path) -> Path:
    return folder / "bin" / "python"


def _is_complete(folder: Path) -> bool:
    marker = folder / MARKER
    try:
        return marker.read_text(encoding="utf-8").strip() == CCXT_VERSION and os.access(
            _python_in(folder), os.X_OK
        )
    except OSError:
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"},
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _build(target: Path) -> float:
    """Build the venv in a temporary sibling of `target`, then rename it into place."""
    started = time.monotonic()
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        made = _run([sys.executable, "-m", "venv", os.fspath(tmp)], timeout=120)
        if made.returncode != 0:
            raise CcxtVenvError(f"python -m venv failed: {_last_line(made.stderr + made.stdout)}")
        pip = [os.fspath(_python_in(tmp)), "-m", "pip", "install", "--progress-bar", "off"]
        pip += ["--timeout", "30", "--retries", "2", f"ccxt=={CCXT_VERSION}"]
        installed = _run(pip, timeout=PIP_TIMEOUT_S)
        if installed.returncode != 0:
            output = installed.stdout + installed.stderr
            message = _last_line(installed.stderr or installed.stdout)
            if _NETWORK_PATTERNS.search(output):
                raise _Unreachable(message)
            raise CcxtVenvError(f"pip install ccxt=={CCXT_VERSION} failed: {message}")
        check = _run(
            [os.fspath(_python_in(tmp)), "-c", "import ccxt.pro; print(ccxt.__version__)"], 120
        )
        if check.returncode != 0 or check.stdout.strip() != CCXT_VERSION:
            raise CcxtVenvError(
                f"ccxt {CCXT_VERSION} installed but does not import: "
                f"{_last_line(check.stderr + check.stdout)}"
            )
        (tmp / MARKER).write_text(CCXT_VERSION + "\n", encoding="utf-8")
        if target.exists():  # an incomplete leftover (no marker): replace it
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return time.monotonic() - started


class _Unreachable(Exception):
    pass


def prepare() -> CcxtVenv:
    """The cached ccxt venv, building it first if needed (under a lock)."""
    target = venv_dir()
    if _is_complete(target):
        return CcxtVenv(_python_in(target), None)
    with _locked(target.parent / f"{target.name}.lock"):
        if _is_complete(target):  # another process built it while we waited
            return CcxtVenv(_python_in(target), None)
        try:
            took = _build(target)
        except _Unreachable as exc:
            return CcxtVenv(
                None,
                f"ccxt {CCXT_VERSION} could not be installed (package registry unreachable?): "
                f"{exc}",
            )
        except subprocess.TimeoutExpired as exc:
            return CcxtVenv(
                None,
                f"ccxt {CCXT_VERSION} could not be installed (package registry unreachable?): "
                f"timed out after {exc.timeout} s",
            )
    return CcxtVenv(_python_in(target), None, built_in_s=took)


if __name__ == "__main__":  # `python -m tests.exchanges.sim.ccxt_venv`: build and report
    result = prepare()
    if result.python is None:
        print(result.skip_reason)
        sys.exit(1)
    took = f"built in {result.built_in_s:.1f} s" if result.built_in_s is not None else "cached"
    print(f"{result.python} ({took})")

"""Shared pieces of the benchmarks: the simulated venues in their own process, a fill trigger
that stays off the measured path, and percentile summaries.

The venues run as `runbot.py sim` in a separate process, as a real venue is remote: an
in-process simulator would compete with the bot for its event loop and its core.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIM_START_TIMEOUT_S = 60.0
SEQUENCER_WAIT_S = 10.0  # accepted Lighter transactions execute within this


class SimProcess:
    """`runbot.py sim --fill-rate 0 --write-env ...` in a child process, steered over `/_sim/`.

    Use as a context manager; `env` holds what `run --env-file` would read (URLs and keys)."""

    def __init__(
        self,
        folder: Path,
        *,
        seed: int = 0,
        fill_rate: float = 0.0,
        lighter_tier: str = "standard",
        market: Iterable[str] = (),
    ) -> None:
        self.folder = folder
        self.market = list(market)  # `--market NAME=VALUE` parameters of the simulated market
        self.lighter_tier = lighter_tier
        self.env_file = folder / "sim.env"
        self.log_path = folder / "sim.out"
        self.seed = seed
        self.fill_rate = fill_rate
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    def __enter__(self) -> SimProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        child_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BACKPACK_", "LIGHTER_"))
        }
        child_env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "runbot.py"),
                    "sim",
                    "--write-env",
                    str(self.env_file),
                    "--fill-rate",
                    repr(self.fill_rate),
                    "--seed",
                    str(self.seed),
                    "--lighter-tier",
                    self.lighter_tier,
                    *(arg for item in self.market for arg in ("--market", item)),
                ],
                cwd=self.folder,
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + SIM_START_TIMEOUT_S
        while not (self.env_file.exists() and "LIGHTER_WS_URL" in self.env_file.read_text()):
            if self.process.poll() is not None:
                raise RuntimeError(f"sim exited early: {self.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulated venues did not start in time")
            time.sleep(0.05)
        self.env = dict(
            line.split("=", 1)
            for line in self.env_file.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def base(self, venue: str) -> str:
        key = "BACKPACK_API_URL" if venue == "backpack" else "LIGHTER_API_URL"
        return self.env[key].rstrip("/")

    def call(self, venue: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A control route, blocking (setup and teardown only, never on a measured path)."""
        request = urllib.request.Request(
            f"{self.base(venue)}/_sim/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def timings(self) -> tuple[dict[str, int], dict[str, int]]:
        """(fill event written by trade id on Backpack, sendTx arrived by client id on Lighter),
        both perf_counter_ns in the sim process."""
        written = self.call("backpack", "timings")["fill_written_ns"]
        arrived = self.call("lighter", "timings")["send_tx_ns"]
        return {str(k): int(v) for k, v in written.items()}, {
            str(k): int(v) for k, v in arrived.items()
        }

    def account_state(self, ticker: str) -> dict[str, Any]:
        """The bot accounts as the sim holds them, once Lighter's sequencer has executed what
        it accepted (a taker waits 200-300 ms there): positions and open order counts."""
        from exchanges.sim.runner import BACKPACK_ACCOUNT, LIGHTER_ACCOUNT

        give_up = time.monotonic() + SEQUENCER_WAIT_S
        while self.call("lighter", "timings")["pending_executions"] and time.monotonic() < give_up:
            time.sleep(0.05)

        venues = self.call("backpack", "truth")["venues"]
        state: dict[str, Any] = {}
        for venue, account in (("backpack", BACKPACK_ACCOUNT), ("lighter", LIGHTER_ACCOUNT)):
            truth = venues[venue]["accounts"].get(str(account), {})
            position = truth.get("positions", {}).get(ticker, {})
            state[f"{venue}_position"] = str(position.get("qty", "0"))
            state[f"{venue}_open_orders"] = len(truth.get("open_orders", []))
        return state


class FillTrigger:
    """Fires `POST /_sim/fill` at the Backpack sim from the bot's own event loop without
    touching the measured path: the request bytes are written straight to a keep-alive
    socket, and the answer is only read later (`collect`), once the hedge is out. Nothing is
    registered with the loop in between, so the answer cannot queue ahead of the fill frame."""

    def __init__(self, api_url: str) -> None:
        url = urllib.parse.urlsplit(api_url)
        assert url.hostname is not None and url.port is not None
        self.host, self.port = url.hostname, url.port
        self._sock: socket.socket | None = None
        self._pending = 0

    async def open(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def fire(self, ticker: str, order_id: str | int, qty: str) -> None:
        """Ask the sim to fill `qty` of resting `order_id` (answer read by `collect`)."""
        assert self._sock is not None and self._pending == 0
        body = json.dumps(
            {"ticker": ticker, "order_id": int(order_id), "qty": qty, "venue": "backpack"}
        ).encode()
        request = (
            f"POST /_sim/fill HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        sent = self._sock.send(request)  # a few hundred bytes: one non-blocking send
        if sent != len(request):
            raise RuntimeError("fill request not written in one go")
        self._pending = 1

    async def collect(self) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of the fill request fired last."""
        assert self._sock is not None and self._pending == 1
        loop = asyncio.get_running_loop()
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = await loop.sock_recv(self._sock, 65536)
            if not chunk:
                raise ConnectionError("sim closed the control connection")
            buffer += chunk
        head, _, body = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = await loop.sock_recv(self._sock, 65536)
            if not chunk:
                raise ConnectionError("sim closed the control connection")
            body += chunk
        self._pending = 0
        return status, json.loads(body[:length] or b"{}")


def percentiles_ms(values_ns: Iterable[int]) -> dict[str, float | int]:
    """{n, p50, p90, p99, max} in milliseconds (nearest rank), 4 decimals."""
    data = sorted(values_ns)
    if not data:
        return {"n": 0, "p50": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan}

    def rank(q: float) -> float:
        index = max(0, math.ceil(q * len(data)) - 1)
        return round(data[index] / 1e6, 4)

    return {
        "n": len(data),
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": round(data[-1] / 1e6, 4),
    }


def ratio(naive: float | int, ours: float | int) -> float | None:
    if not ours or math.isnan(float(ours)) or math.isnan(float(naive)):
        return None
    return round(float(naive) / float(ours), 1)

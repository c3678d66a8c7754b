"""Simulated venues for tests that run the CLI in other processes: the clusters live on an
event loop in a thread of the test process, started and stopped with the context."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Sequence

from exchanges.sim.runner import SimCluster


@contextlib.contextmanager
def clusters_in_thread(clusters: Sequence[SimCluster]) -> Iterator[list[dict[str, str]]]:
    """Start `clusters` on a background loop; yields each one's env (URLs and keys)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="simulated-venues", daemon=True)
    thread.start()
    started: list[SimCluster] = []
    try:
        for cluster in clusters:
            asyncio.run_coroutine_threadsafe(cluster.start(), loop).result(30)
            started.append(cluster)
        yield [cluster.env() for cluster in clusters]
    finally:
        for cluster in started:
            asyncio.run_coroutine_threadsafe(cluster.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

"""What the harness watches beside wrk: /health latency, connections per worker, and
PostgreSQL sessions waiting for a lock."""

from __future__ import annotations

import asyncio
import http.client
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from benchmarks.common.service import ServiceProcess


class _Background:
    """A sampling thread that runs while ``running()`` is entered: ``_sample`` loops until
    ``_stop`` is set, and the thread is joined (up to ``JOIN_SECONDS``) on the way out."""

    JOIN_SECONDS = 10.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        raise NotImplementedError

    @contextmanager
    def running(self) -> Iterator[Self]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=self.JOIN_SECONDS)


class HealthProber(_Background):
    """GET /health every 20 ms on one keep-alive connection; latencies in ms."""

    JOIN_SECONDS = 35.0  # a /health call may take up to its 30 s timeout

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.samples: list[float] = []

    def _sample(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                conn.request("GET", "/health")
                conn.getresponse().read()
                self.samples.append((time.perf_counter() - start) * 1000)
                self._stop.wait(0.02)
        finally:
            conn.close()

    def percentile(self, q: float) -> float:
        if len(self.samples) < 2:
            return self.samples[0] if self.samples else 0.0
        return statistics.quantiles(self.samples, n=100, method="inclusive")[int(q) - 1]


def loop_wait_seconds(server: ServiceProcess) -> float | None:
    """Seconds the workers' event-loop threads have waited for a core so far, averaged
    over workers (Linux schedstat: run-queue wait of each worker's main thread); None
    where the kernel does not expose it."""
    waits = []
    for proc in server.workers():
        try:
            fields = Path(f"/proc/{proc.pid}/task/{proc.pid}/schedstat").read_text().split()
        except OSError:
            continue
        waits.append(int(fields[1]) / 1e9)
    return sum(waits) / len(waits) if waits else None


class LoopWait:
    """Run-queue wait of the event loop over a stretch of time, in ms per second."""

    def __init__(self, server: ServiceProcess) -> None:
        self.server = server
        self.ms_per_s: float | None = None

    @contextmanager
    def running(self) -> Iterator[LoopWait]:
        before, started = loop_wait_seconds(self.server), time.perf_counter()
        yield self
        after = loop_wait_seconds(self.server)
        if before is not None and after is not None:
            self.ms_per_s = 1000 * (after - before) / (time.perf_counter() - started)


class ConnectionSampler(_Background):
    """Peak TCP connections per worker to PostgreSQL and to Redis while a run lasts."""

    def __init__(self, server: ServiceProcess, redis_port: int) -> None:
        super().__init__()
        self.server, self.redis_port = server, redis_port
        self.db_peak = self.redis_peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.db_peak = max([self.db_peak, *self.server.connections_to(5432)])
            self.redis_peak = max([self.redis_peak, *self.server.connections_to(self.redis_port)])


# The service's sessions that are running a statement, and those of them waiting for a
# lock another transaction holds (a row lock, or the end of the transaction holding it).
LOCK_WAIT_QUERY = """
SELECT count(*) FILTER (WHERE state = 'active') AS active,
       count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock') AS waiting
FROM pg_stat_activity
WHERE datname = $1 AND pid <> pg_backend_pid()
"""


class LockWaitSampler(_Background):
    """How many of the service's PostgreSQL sessions wait for a lock, every 0.1 s while a
    run lasts: writers taking turns on the same rows show here, not in the CPU."""

    def __init__(self, dsn: str, database: str) -> None:
        super().__init__()
        self.dsn, self.database = dsn, database
        self.samples: list[tuple[int, int]] = []  # (active, waiting for a lock)

    def _sample(self) -> None:
        asyncio.run(self._poll())

    async def _poll(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn, timeout=5)
        try:
            while not self._stop.is_set():
                row = await conn.fetchrow(LOCK_WAIT_QUERY, self.database)
                if row is not None:
                    self.samples.append((int(row["active"]), int(row["waiting"])))
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    @property
    def mean(self) -> tuple[float, float] | None:
        """Mean (active, waiting for a lock) sessions over the samples."""
        if not self.samples:
            return None
        n = len(self.samples)
        return sum(a for a, _ in self.samples) / n, sum(w for _, w in self.samples) / n

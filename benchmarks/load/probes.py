"""What the harness watches beside wrk: /health latency and connections per worker."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common.service import ServiceProcess


class HealthProber:
    """GET /health every 20 ms on one keep-alive connection; latencies in ms."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
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

    @contextmanager
    def running(self) -> Iterator[HealthProber]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=35)

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


class ConnectionSampler:
    """Peak TCP connections per worker to PostgreSQL and to Redis while a run lasts."""

    def __init__(self, server: ServiceProcess, redis_port: int) -> None:
        self.server, self.redis_port = server, redis_port
        self.db_peak = self.redis_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.db_peak = max([self.db_peak, *self.server.connections_to(5432)])
            self.redis_peak = max([self.redis_peak, *self.server.connections_to(self.redis_port)])

    @contextmanager
    def running(self) -> Iterator[ConnectionSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)

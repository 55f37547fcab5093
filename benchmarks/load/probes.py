"""What the harness watches beside wrk: /health latency and connections per worker."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

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

"""Redis pool usage (``storage.redis_pool.RedisPoolMonitor``), set on every get and release.

Only a Redis-backed store has a pool; the in-process store exports no such series.
"""

from __future__ import annotations

from faultmaven_auth.observability.metrics import Metrics
from faultmaven_auth.storage.redis_pool import RedisPoolUsage


class RedisPoolMetrics:
    def __init__(self, metrics: Metrics) -> None:
        if metrics.redis_pool_connections is None or metrics.redis_pool_max_connections is None:
            raise ValueError("these metrics were built without the Redis pool series")
        self._in_use = metrics.redis_pool_connections.labels("in_use")
        self._available = metrics.redis_pool_connections.labels("available")
        self._max = metrics.redis_pool_max_connections
        self._max_seen: int | None = None

    def changed(self, usage: RedisPoolUsage) -> None:
        self._in_use.set(usage.in_use)
        self._available.set(usage.available)
        if usage.max_connections != self._max_seen:  # fixed for the pool's life
            self._max_seen = usage.max_connections
            self._max.set(usage.max_connections)

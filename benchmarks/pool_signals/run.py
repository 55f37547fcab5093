"""Cost of the pool signals: a checkout + return with and without the monitored pools.

Database: ``engine.connect()`` / close on a SQLite file (no statement, so the pool's own
work is what is timed) with ``pool_monitor`` off and on. Redis (when reachable):
``get_connection`` / ``release`` on redis-py's pool and on ours. Rounds alternate the
two variants so drift on a shared machine hits both. Prints microseconds per cycle.

    PYTHONPATH=src .venv/bin/python benchmarks/pool_signals/run.py [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry
from redis.asyncio import ConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine

from faultmaven_auth.observability.db_metrics import PoolMetrics
from faultmaven_auth.observability.metrics import Metrics
from faultmaven_auth.observability.store_metrics import RedisPoolMetrics
from faultmaven_auth.storage.db import create_engine
from faultmaven_auth.storage.redis_pool import MonitoredConnectionPool

CYCLES = 5_000
ROUNDS = 5


async def per_cycle(cycle: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    for _ in range(CYCLES):
        await cycle()
    return (time.perf_counter() - start) / CYCLES * 1e6


async def compare(
    name: str, plain: Callable[[], Awaitable[None]], hooked: Callable[[], Awaitable[None]]
) -> None:
    results: dict[str, list[float]] = {"plain": [], "monitored": []}
    await per_cycle(plain)  # warm up: connections opened, code paths hot
    await per_cycle(hooked)
    for _ in range(ROUNDS):
        results["plain"].append(await per_cycle(plain))
        results["monitored"].append(await per_cycle(hooked))
    a, b = statistics.median(results["plain"]), statistics.median(results["monitored"])
    print(f"{name}: plain {a:.1f} µs, monitored {b:.1f} µs, hooks {b - a:+.1f} µs per cycle")


async def database() -> None:
    path = Path(tempfile.mkdtemp()) / "bench.db"
    url = f"sqlite+aiosqlite:///{path}"
    metrics = Metrics(CollectorRegistry())
    plain, hooked = create_engine(url), create_engine(url, pool_monitor=PoolMetrics(metrics))

    def cycle(engine: AsyncEngine) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with engine.connect():
                pass

        return run

    await compare("database checkout+return", cycle(plain), cycle(hooked))
    await plain.dispose()
    await hooked.dispose()


async def redis(url: str) -> None:
    metrics = Metrics(CollectorRegistry(), redis_pool=True)
    plain = ConnectionPool.from_url(url)
    hooked = MonitoredConnectionPool.from_url(url, monitor=RedisPoolMetrics(metrics))

    def cycle(pool: ConnectionPool) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await pool.release(await pool.get_connection())  # type: ignore[no-untyped-call]

        return run

    await compare("redis get+release", cycle(plain), cycle(hooked))
    await plain.aclose()
    await hooked.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    await database()
    try:
        await redis(args.redis)
    except OSError as exc:
        print(f"redis: skipped ({type(exc).__name__})")


if __name__ == "__main__":
    asyncio.run(main())

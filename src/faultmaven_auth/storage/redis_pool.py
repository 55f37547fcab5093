"""A redis-py connection pool that reports its usage after every get and release.

redis-py has no pool events, so the pool's two public steps are wrapped. The report is
the pool's own bookkeeping (two lengths), taken on the event loop's thread: no I/O, no
lock. ``max_connections`` comes from the URL (``?max_connections=N``), else redis-py's
default (100); past it a command fails with ``MaxConnectionsError`` (a 503 here).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection


class RedisPoolUsage(NamedTuple):
    in_use: int
    available: int  # idle in the pool, ready to hand out
    max_connections: int


class RedisPoolMonitor(Protocol):
    def changed(self, usage: RedisPoolUsage) -> None: ...


class MonitoredConnectionPool(ConnectionPool):
    def __init__(self, *, monitor: RedisPoolMonitor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._monitor = monitor
        self.report()

    def usage(self) -> RedisPoolUsage:
        return RedisPoolUsage(
            len(self._in_use_connections), len(self._available_connections), self.max_connections
        )

    def report(self) -> None:
        self._monitor.changed(self.usage())

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            # Untyped only because of redis-py's deprecation decorator on it.
            connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs
            )
            return connection
        finally:
            self.report()

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            self.report()

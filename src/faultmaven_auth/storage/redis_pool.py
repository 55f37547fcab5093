"""The Redis connection pool: waits briefly for a free connection, reports its usage.

redis-py's default pool fails a command at once when every connection is in use
(``MaxConnectionsError``): under a burst that was a 503 nobody could explain. This is
its ``BlockingConnectionPool``: a command waits up to ``timeout`` seconds for a
connection, then fails with ``PoolExhausted`` (the store turns it into a counted,
logged 503). ``max_connections`` is sized from the admission limit (``Settings.
redis_pool_size``); ``?max_connections=N`` on the URL still wins.

redis-py has no pool events, so the pool's two public steps are wrapped. The report is
the pool's own bookkeeping (two lengths), taken on the event loop's thread: no I/O, no
lock.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple, Protocol

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError


class PoolExhausted(RedisConnectionError):
    """No connection came free within the pool's timeout."""


class RedisPoolUsage(NamedTuple):
    in_use: int
    available: int  # idle in the pool, ready to hand out
    max_connections: int


class RedisPoolMonitor(Protocol):
    def changed(self, usage: RedisPoolUsage) -> None: ...


class MonitoredConnectionPool(BlockingConnectionPool):
    def __init__(self, *, monitor: RedisPoolMonitor | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._monitor = monitor
        self.report()

    def usage(self) -> RedisPoolUsage:
        return RedisPoolUsage(
            len(self._in_use_connections), len(self._available_connections), self.max_connections
        )

    def report(self) -> None:
        if self._monitor is not None:
            self._monitor.changed(self.usage())

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            # Untyped only because of redis-py's deprecation decorator on it.
            connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs
            )
            return connection
        except RedisConnectionError as error:
            # redis-py signals the wait's timeout as a ConnectionError caused by it.
            if isinstance(error.__cause__, asyncio.TimeoutError):
                raise PoolExhausted("No Redis connection came free in time") from error
            raise
        finally:
            self.report()

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            self.report()

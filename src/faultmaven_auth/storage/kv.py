"""The key-value store for fast, expiring state: revocations, counters, one-time values.

Two implementations behind one protocol, both held to one contract test suite:
``RedisStore`` for production (shared by every worker and replica) and ``MemoryStore``,
the zero-set-up default, private to one process. Values are strings; every write takes
a TTL in seconds so nothing here lives forever.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from faultmaven_auth.errors import DependencyAtCapacity, ServiceUnavailable
from faultmaven_auth.storage.redis_pool import (
    MonitoredConnectionPool,
    PoolExhausted,
    RedisPoolMonitor,
)

DEFAULT_MAX_CONNECTIONS = 40  # Settings.redis_pool_size with the default admission limit
DEFAULT_POOL_TIMEOUT_SECONDS = 2.0


class StoreUnavailable(ServiceUnavailable):
    code = "STORE_UNAVAILABLE"
    message = "The key-value store is unavailable"


class StoreAtCapacity(StoreUnavailable, DependencyAtCapacity):
    """Every pooled Redis connection stayed busy for the pool's timeout (counted, logged).

    Still a ``StoreUnavailable``: callers that ride out an outage (login protection in
    fail-open mode, best-effort counters) ride out a full pool the same way.
    """

    message = "The key-value store is at capacity; try again shortly"
    refusal_reason = "store_pool_exhausted"


@asynccontextmanager
async def _redis_errors() -> AsyncIterator[None]:
    """Redis failures leave this module as one domain error (503), not redis-py's tree."""
    try:
        yield
    except PoolExhausted as exc:
        raise StoreAtCapacity from exc
    except RedisError as exc:
        raise StoreUnavailable from exc


class Reservation(NamedTuple):
    """What ``reserve_attempt`` did: the attempt's number in its window, or the lock."""

    attempts: int  # 0 when refused
    locked_until: float | None  # the lock's deadline when refused


class KeyValueStore(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def get_many(self, keys: list[str]) -> list[str | None]: ...

    async def set(self, key: str, value: str, ttl_seconds: int) -> None: ...

    async def set_if_absent(self, key: str, value: str, ttl_seconds: int) -> bool:
        """Store the value only if the key is absent; True when this call stored it."""
        ...

    async def increment(self, key: str, ttl_seconds: int) -> int:
        """Add one atomically; the TTL starts when the key is created, not on each call."""
        ...

    async def increment_many(self, counters: list[tuple[str, int]]) -> list[int]:
        """``increment`` for each ``(key, ttl_seconds)``, in one round trip; the new values."""
        ...

    async def add_many(self, counters: list[tuple[str, int, int]]) -> list[int]:
        """Add ``amount`` to each ``(key, amount, ttl_seconds)`` in one round trip, with
        ``increment``'s TTL rule (set when the key is created); the new values."""
        ...

    async def reserve_attempt(
        self, key: str, *, lock_key: str, now: float, window_seconds: int
    ) -> Reservation:
        """Count one attempt atomically, unless ``lock_key`` holds a deadline after ``now``.

        Locked: nothing changes and the deadline is returned. Otherwise the counter at
        ``key`` goes up by one, or starts again at one when its window (``window_seconds``
        from its first attempt, measured on the caller's clock ``now``) has passed. Check
        and count are one step, so parallel callers can never all see room under a limit.
        """
        ...

    async def release_attempt(self, key: str, *, reserved_at: float) -> bool:
        """Give back one attempt that ``reserve_attempt`` counted at ``reserved_at``.

        For an attempt refused before its password was checked (the hashing pool was
        full). Only the window that holds ``reserved_at`` is touched: once the counter
        has started a new window, there is nothing of this attempt left to give back.
        True when the count went down.
        """
        ...

    async def delete(self, key: str) -> bool: ...

    async def delete_many(self, keys: list[str]) -> int:
        """Delete every key in one round trip; how many of them were live."""
        ...

    async def touch_member(self, key: str, member: str, ttl_seconds: int) -> None:
        """Record ``member`` as seen now in the set ``key`` (the set expires after TTL)."""
        ...

    async def members_since(self, key: str, seconds: float) -> list[str]:
        """Members seen in the last ``seconds``; older members are dropped."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    """In-process store: a dict of (value, deadline). Correct for one process only."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float]] = {}
        # Sorted-set stand-in: key -> ({member: wall-clock time seen}, deadline).
        self._sets: dict[str, tuple[dict[str, float], float]] = {}
        self._lock = asyncio.Lock()
        self._writes = 0

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, deadline = item
        if deadline <= self._now():
            del self._data[key]
            return None
        return value

    def _sweep(self) -> None:
        # Expired keys are dropped on read; an occasional sweep bounds memory for
        # keys that are written and never read again.
        self._writes += 1
        if self._writes % 1000 == 0:
            now = self._now()
            for key in [k for k, (_, d) in self._data.items() if d <= now]:
                del self._data[key]

    async def get(self, key: str) -> str | None:
        return self._live(key)

    async def get_many(self, keys: list[str]) -> list[str | None]:
        return [self._live(k) for k in keys]

    async def set(self, key: str, value: str, ttl_seconds: int) -> None:
        _check_ttl(ttl_seconds)
        self._sweep()
        self._data[key] = (value, self._now() + ttl_seconds)

    async def set_if_absent(self, key: str, value: str, ttl_seconds: int) -> bool:
        _check_ttl(ttl_seconds)
        async with self._lock:
            if self._live(key) is not None:
                return False
            self._sweep()
            self._data[key] = (value, self._now() + ttl_seconds)
            return True

    async def increment(self, key: str, ttl_seconds: int) -> int:
        _check_ttl(ttl_seconds)
        async with self._lock:
            current = self._live(key)
            if current is None:
                self._sweep()
                self._data[key] = ("1", self._now() + ttl_seconds)
                return 1
            value = int(current) + 1
            self._data[key] = (str(value), self._data[key][1])
            return value

    async def increment_many(self, counters: list[tuple[str, int]]) -> list[int]:
        return [await self.increment(key, ttl) for key, ttl in counters]

    async def add_many(self, counters: list[tuple[str, int, int]]) -> list[int]:
        values: list[int] = []
        async with self._lock:
            for key, amount, ttl_seconds in counters:
                _check_ttl(ttl_seconds)
                current = self._live(key)
                if current is None:
                    self._sweep()
                    self._data[key] = (str(amount), self._now() + ttl_seconds)
                    values.append(amount)
                    continue
                value = int(current) + amount
                self._data[key] = (str(value), self._data[key][1])
                values.append(value)
        return values

    async def reserve_attempt(
        self, key: str, *, lock_key: str, now: float, window_seconds: int
    ) -> Reservation:
        _check_ttl(window_seconds)
        async with self._lock:
            locked_until = _deadline(self._live(lock_key))
            if locked_until is not None and locked_until > now:
                return Reservation(0, locked_until)
            count, since = _parse_attempts(self._live(key))
            if count == 0 or now - since >= window_seconds:
                self._sweep()
                count, since, expires = 0, now, self._now() + window_seconds
            else:
                expires = self._data[key][1]
            count += 1
            self._data[key] = (f"{count} {since!r}", expires)
            return Reservation(count, None)

    async def release_attempt(self, key: str, *, reserved_at: float) -> bool:
        async with self._lock:
            count, since = _parse_attempts(self._live(key))
            if count == 0 or since > reserved_at:
                return False
            self._data[key] = (f"{count - 1} {since!r}", self._data[key][1])
            return True

    async def delete(self, key: str) -> bool:
        live = self._live(key) is not None
        self._data.pop(key, None)
        return live

    async def delete_many(self, keys: list[str]) -> int:
        return sum([await self.delete(key) for key in set(keys)])

    async def touch_member(self, key: str, member: str, ttl_seconds: int) -> None:
        _check_ttl(ttl_seconds)
        deadline = self._now() + ttl_seconds
        members = self._sets.get(key)
        if members is None or members[1] <= self._now():
            members = ({}, deadline)
        members[0][member] = time.time()
        self._sets[key] = (members[0], deadline)

    async def members_since(self, key: str, seconds: float) -> list[str]:
        item = self._sets.get(key)
        if item is None or item[1] <= self._now():
            self._sets.pop(key, None)
            return []
        cutoff = time.time() - seconds
        members = item[0]
        for stale in [m for m, seen in members.items() if seen < cutoff]:
            del members[stale]
        return list(members)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()
        self._sets.clear()


# KEYS: counters. ARGV: amount and TTL of each, in order. One command (and one reply) for
# every counter: a MULTI/EXEC of INCRBY and EXPIRE per counter costs the client four. NX:
# only a new key gets its TTL, so a steady stream cannot keep a window alive.
_ADD_MANY = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCRBY', key, ARGV[2 * i - 1])
  redis.call('EXPIRE', key, ARGV[2 * i], 'NX')
end
return counts
"""

# KEYS: counter, lock. ARGV: now, window. The counter is "<count> <window start>".
_RESERVE_ATTEMPT = """
local locked = tonumber(redis.call('GET', KEYS[2]) or '')
if locked and locked > tonumber(ARGV[1]) then
  return {0, redis.call('GET', KEYS[2])}
end
local current = redis.call('GET', KEYS[1])
local count, since = 0, ARGV[1]
if current then
  local n, s = string.match(current, '^(%d+) (%S+)$')
  if n and tonumber(ARGV[1]) - tonumber(s) < tonumber(ARGV[2]) then
    count, since = tonumber(n), s
  end
end
count = count + 1
if count == 1 then
  redis.call('SET', KEYS[1], count .. ' ' .. since, 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], count .. ' ' .. since, 'KEEPTTL')
end
return {count, ''}
"""

# KEYS: counter. ARGV: reserved_at. One attempt back, in the window that holds reserved_at.
_RELEASE_ATTEMPT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local n, s = string.match(current, '^(%d+) (%S+)$')
if not n or tonumber(n) < 1 or tonumber(s) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], (tonumber(n) - 1) .. ' ' .. s, 'KEEPTTL')
return 1
"""


class RedisStore:
    """Redis-backed store; every key is prefixed so several services can share a server."""

    def __init__(self, client: Redis, prefix: str = "") -> None:
        self._redis = client
        self._prefix = prefix
        self._add = client.register_script(_ADD_MANY)
        self._reserve = client.register_script(_RESERVE_ATTEMPT)
        self._release = client.register_script(_RELEASE_ATTEMPT)

    @property
    def client(self) -> Redis:
        """The redis-py client, for instrumentation; the store's methods are the API."""
        return self._redis

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        password: str | None = None,
        prefix: str = "",
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT_SECONDS,
        pool_monitor: RedisPoolMonitor | None = None,
    ) -> RedisStore:
        options: dict[str, Any] = {
            "password": password,
            "decode_responses": True,
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
            "health_check_interval": 30,
            "max_connections": max_connections,  # ?max_connections= in the URL wins
            "timeout": pool_timeout,  # the wait for a free connection
        }
        pool = MonitoredConnectionPool.from_url(url, monitor=pool_monitor, **options)
        return cls(Redis.from_pool(pool), prefix)

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> str | None:
        async with _redis_errors():
            value = await self._redis.get(self._k(key))
        return None if value is None else str(value)

    async def get_many(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        async with _redis_errors():
            values = await self._redis.mget([self._k(k) for k in keys])
        return [None if v is None else str(v) for v in values]

    async def set(self, key: str, value: str, ttl_seconds: int) -> None:
        _check_ttl(ttl_seconds)
        async with _redis_errors():
            await self._redis.set(self._k(key), value, ex=ttl_seconds)

    async def set_if_absent(self, key: str, value: str, ttl_seconds: int) -> bool:
        _check_ttl(ttl_seconds)
        async with _redis_errors():
            return bool(await self._redis.set(self._k(key), value, ex=ttl_seconds, nx=True))

    async def increment(self, key: str, ttl_seconds: int) -> int:
        (count,) = await self.add_many([(key, 1, ttl_seconds)])
        return count

    async def increment_many(self, counters: list[tuple[str, int]]) -> list[int]:
        return await self.add_many([(key, 1, ttl_seconds) for key, ttl_seconds in counters])

    async def add_many(self, counters: list[tuple[str, int, int]]) -> list[int]:
        arguments: list[int] = []
        for _, amount, ttl_seconds in counters:
            _check_ttl(ttl_seconds)
            arguments += (amount, ttl_seconds)
        async with _redis_errors():
            counts = await self._add(keys=[self._k(key) for key, _, _ in counters], args=arguments)
        return [int(count) for count in counts]

    async def reserve_attempt(
        self, key: str, *, lock_key: str, now: float, window_seconds: int
    ) -> Reservation:
        _check_ttl(window_seconds)
        async with _redis_errors():
            count, locked = await self._reserve(
                keys=[self._k(key), self._k(lock_key)], args=[repr(now), window_seconds]
            )
        if int(count) == 0:
            return Reservation(0, float(locked))
        return Reservation(int(count), None)

    async def release_attempt(self, key: str, *, reserved_at: float) -> bool:
        async with _redis_errors():
            released = await self._release(keys=[self._k(key)], args=[repr(reserved_at)])
        return bool(released)

    async def delete(self, key: str) -> bool:
        async with _redis_errors():
            return bool(await self._redis.delete(self._k(key)))

    async def delete_many(self, keys: list[str]) -> int:
        if not keys:
            return 0
        async with _redis_errors():
            return int(await self._redis.delete(*[self._k(key) for key in keys]))

    async def touch_member(self, key: str, member: str, ttl_seconds: int) -> None:
        _check_ttl(ttl_seconds)
        full = self._k(key)
        async with _redis_errors(), self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(full, {member: time.time()})
            pipe.expire(full, ttl_seconds)
            await pipe.execute()

    async def members_since(self, key: str, seconds: float) -> list[str]:
        full = self._k(key)
        cutoff = time.time() - seconds
        async with _redis_errors(), self._redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(full, "-inf", f"({cutoff}")
            pipe.zrangebyscore(full, cutoff, "+inf")
            _, members = await pipe.execute()
        return [str(m) for m in members]

    async def ping(self) -> None:
        async with _redis_errors():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def _deadline(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _parse_attempts(value: str | None) -> tuple[int, float]:
    count, _, since = (value or "").partition(" ")
    try:
        return int(count), float(since)
    except ValueError:
        return 0, math.nan


def _check_ttl(ttl_seconds: int) -> None:
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")


def build_kv_store(
    redis_url: str | None,
    *,
    password: str | None = None,
    prefix: str = "",
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT_SECONDS,
    pool_monitor: RedisPoolMonitor | None = None,
) -> KeyValueStore:
    if redis_url:
        return RedisStore.from_url(
            redis_url,
            password=password,
            prefix=prefix,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
            pool_monitor=pool_monitor,
        )
    return MemoryStore()

"""Shared counters behind the computed gauges, kept in the key-value store.

``auth_success_rate`` and ``active_users_total`` must agree across replicas, so their
inputs live in the shared store, not in process memory:

- each authentication attempt counts toward a per-minute counter for its outcome
  (``stats:auth:<outcome>:<minute>``, kept 6 minutes); the rate sums the last five.
  Attempts are added up in the process and written once a second (``FLUSH_SECONDS``) in
  one round trip, not one per login or refresh: the gauge spans five minutes, so a
  second's delay does not change what it says, and a refresh saves a store round trip.
  A failed write keeps the counts for the next one (while their minute still counts),
  and shutdown and ``snapshot`` write what is pending first;
- each authenticated request marks ``<org>:<user>`` present in one sorted set, at most
  once a minute per user and process, so the store sees a write per active user per
  minute, not one per request.

``snapshot`` reads both with two or three store calls and is cached by the caller.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from faultmaven_auth.storage.kv import KeyValueStore, StoreUnavailable

RATE_WINDOW_MINUTES = 5
PRESENCE_KEY = "presence:users"
TOUCH_INTERVAL_SECONDS = 60.0
_MAX_LOCAL_TOUCHES = 100_000
FLUSH_SECONDS = 1.0
_COUNTER_TTL_SECONDS = (RATE_WINDOW_MINUTES + 1) * 60


@dataclass(frozen=True)
class ActivitySnapshot:
    auth_success_rate: float
    active_users_by_org: dict[str, int]


class ActivityTracker:
    def __init__(
        self,
        kv: KeyValueStore,
        *,
        window_seconds: int,
        on_store_error: Callable[[StoreUnavailable], None] | None = None,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._kv = kv
        self._window = window_seconds
        self._last_touch: dict[str, float] = {}
        self._on_store_error = on_store_error
        self._flush_seconds = flush_seconds
        # (outcome, minute) -> attempts not written to the store yet
        self._pending: Counter[tuple[str, int]] = Counter()
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    def record_auth(self, success: bool) -> None:
        """Count one attempt; the store sees it within ``flush_seconds``."""
        minute = int(time.time() // 60)
        self._pending["success" if success else "failure", minute] += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._flush_seconds)
        await self.flush()

    async def flush(self) -> None:
        """Write the pending counts in one round trip. A store outage keeps them for
        the next write (and reports it) instead of raising to whoever asked."""
        async with self._flush_lock:
            if not self._pending:
                return
            pending, self._pending = self._pending, Counter()
            counters = [
                (f"stats:auth:{outcome}:{minute}", amount, _COUNTER_TTL_SECONDS)
                for (outcome, minute), amount in sorted(pending.items())
            ]
            try:
                await self._kv.add_many(counters)
            except StoreUnavailable as exc:
                self._keep(pending)
                if self._on_store_error is not None:
                    self._on_store_error(exc)
            except asyncio.CancelledError:
                self._keep(pending)
                raise

    def _keep(self, pending: Counter[tuple[str, int]]) -> None:
        """Put unwritten counts back, except minutes the rate no longer looks at."""
        oldest = int(time.time() // 60) - RATE_WINDOW_MINUTES
        for (outcome, minute), amount in pending.items():
            if minute > oldest:
                self._pending[outcome, minute] += amount

    async def aclose(self) -> None:
        """Stop the timer and write what is pending (shutdown)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()

    async def record_seen(self, organization_id: str, user_id: str) -> None:
        member = f"{organization_id}:{user_id}"
        now = time.monotonic()
        last = self._last_touch.get(member)
        if last is not None and now - last < TOUCH_INTERVAL_SECONDS:
            return
        if len(self._last_touch) >= _MAX_LOCAL_TOUCHES:
            self._last_touch.clear()
        self._last_touch[member] = now
        await self._kv.touch_member(PRESENCE_KEY, member, self._window + 60)

    async def snapshot(self) -> ActivitySnapshot:
        await self.flush()  # this process's own attempts count at once
        minute = int(time.time() // 60)
        minutes = range(minute - RATE_WINDOW_MINUTES + 1, minute + 1)
        keys = [f"stats:auth:success:{m}" for m in minutes]
        keys += [f"stats:auth:failure:{m}" for m in minutes]
        values = [int(v or 0) for v in await self._kv.get_many(keys)]
        success = sum(values[:RATE_WINDOW_MINUTES])
        total = sum(values)
        rate = success / total if total else 1.0
        members = await self._kv.members_since(PRESENCE_KEY, self._window)
        by_org = Counter(member.split(":", 1)[0] for member in members)
        return ActivitySnapshot(auth_success_rate=rate, active_users_by_org=dict(by_org))

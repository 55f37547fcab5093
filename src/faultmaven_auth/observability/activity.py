"""Shared counters behind the computed gauges, kept in the key-value store.

``auth_success_rate`` and ``active_users_total`` must agree across replicas, so their
inputs live in the shared store, not in process memory:

- each authentication attempt increments a per-minute counter for its outcome
  (``stats:auth:<outcome>:<minute>``, kept 6 minutes); the rate sums the last five;
- each authenticated request marks ``<org>:<user>`` present in one sorted set, at most
  once a minute per user and process, so the store sees a write per active user per
  minute, not one per request.

``snapshot`` reads both with two or three store calls and is cached by the caller.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from faultmaven_auth.storage.kv import KeyValueStore

RATE_WINDOW_MINUTES = 5
PRESENCE_KEY = "presence:users"
TOUCH_INTERVAL_SECONDS = 60.0
_MAX_LOCAL_TOUCHES = 100_000


@dataclass(frozen=True)
class ActivitySnapshot:
    auth_success_rate: float
    active_users_by_org: dict[str, int]


class ActivityTracker:
    def __init__(self, kv: KeyValueStore, *, window_seconds: int) -> None:
        self._kv = kv
        self._window = window_seconds
        self._last_touch: dict[str, float] = {}

    async def record_auth(self, success: bool) -> None:
        minute = int(time.time() // 60)
        outcome = "success" if success else "failure"
        await self._kv.increment(f"stats:auth:{outcome}:{minute}", (RATE_WINDOW_MINUTES + 1) * 60)

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

"""A per-worker cache of loaded identities, invalidated across workers and replicas.

Every organization has a *generation* in the key-value store (``principal:gen:<org>``),
and there is one for everything (``principal:gen``). A cached identity is used only
while both generations still read what they read when it was loaded; a write that can
change a principal replaces the generation with a fresh random value after its commit
(``storage.principal_writes``), so the very next request anywhere misses and reloads.
The request reads the generations in the same store round trip as its revocation check.

Generations are random values, not counters, so a generation that is lost (expired,
evicted, a flushed store) and recreated can never match an entry loaded before: a
missing generation is created by the first request that needs it, and nothing is cached
under a generation the request did not itself read or create. Should an invalidation be
lost anyway (the store failed between a commit and the write of the new generation, in
which case the writer got a 503), entries still expire after ``max_age_seconds``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, NamedTuple, TypeVar

from faultmaven_auth.storage.kv import KeyValueStore
from faultmaven_auth.tokens.principal import Identity

K = TypeVar("K")
V = TypeVar("V")

EVERYTHING_KEY = "principal:gen"
# Long enough to outlive any cache entry many times over; losing one only costs a reload.
GENERATION_TTL_SECONDS = 7 * 24 * 3600


def organization_generation_key(organization_id: uuid.UUID) -> str:
    return f"principal:gen:{organization_id}"


def generation_keys(organization_id: uuid.UUID) -> list[str]:
    """The keys a request reads (in its one store round trip) for ``organization_id``."""
    return [organization_generation_key(organization_id), EVERYTHING_KEY]


class Generations(NamedTuple):
    organization: str | None
    everything: str | None

    @property
    def complete(self) -> bool:
        return self.organization is not None and self.everything is not None


def _new_generation() -> str:
    return secrets.token_hex(8)


async def invalidate_principals(
    kv: KeyValueStore, organization_ids: Iterable[uuid.UUID], *, everything: bool = False
) -> None:
    """Make every cached identity of these organizations (or all of them) stale."""
    keys = [organization_generation_key(org_id) for org_id in organization_ids]
    if everything:
        keys.append(EVERYTHING_KEY)
    for key in keys:
        await kv.set(key, _new_generation(), GENERATION_TTL_SECONDS)


async def complete_generations(
    kv: KeyValueStore, keys: list[str], seen: Generations
) -> Generations:
    """``seen`` (the values of ``keys``), with any missing generation created; a part is
    None if another request created it first (then this request's load is not cached:
    it cannot know under which generation it was made)."""
    parts: list[str | None] = []
    created: dict[str, str | None] = {}  # a platform client lists one key twice
    for key, value in zip(keys, seen, strict=True):
        if value is None and key in created:
            value = created[key]
        elif value is None:
            value = _new_generation()
            if not await kv.set_if_absent(key, value, GENERATION_TTL_SECONDS):
                value = None
            created[key] = value
        parts.append(value)
    return Generations(*parts)


class _Entry(NamedTuple, Generic[V]):
    value: V
    generations: Generations
    loaded_at: float


class GenerationCache(Generic[K, V]):
    """Values valid only under the generations read before they were loaded; bounded
    (least recently used first out) and aged out after ``max_age_seconds``."""

    def __init__(self, *, max_entries: int, max_age_seconds: float) -> None:
        self._max_entries = max_entries
        self._max_age = max_age_seconds
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, generations: Generations) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if (
            entry.generations != generations
            or not generations.complete
            or time.monotonic() - entry.loaded_at >= self._max_age
        ):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.value

    def put(self, key: K, value: V, generations: Generations) -> None:
        """Keep ``value``, loaded after ``generations`` were read (or created)."""
        if self._max_entries == 0 or not generations.complete:
            return
        self._entries[key] = _Entry(value, generations, time.monotonic())
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


# Identities by (user id, organization id).
PrincipalCache = GenerationCache[tuple[uuid.UUID, uuid.UUID], Identity]

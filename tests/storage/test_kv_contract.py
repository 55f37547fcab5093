"""One contract for the key-value store, held by the in-process store and by Redis.

Revocations, lockout counters and one-time SSO values rely on exactly these semantics,
so both implementations run the same tests. Redis is the real server on 127.0.0.1,
with a key prefix private to each test that is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from faultmaven_auth.storage.kv import KeyValueStore, MemoryStore, RedisStore, Reservation
from tests.conftest import REDIS_URL, check_redis, delete_redis_prefix

# Expiry tests really wait for the clock: TTLs are whole seconds on both stores.
EXPIRY_WAIT = 1.3


def _new_prefix() -> str:
    return f"fmtest-kv:{secrets.token_hex(6)}:"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[KeyValueStore]:
    if request.param == "memory":
        memory = MemoryStore()
        yield memory
        await memory.close()
        return
    await check_redis()
    prefix = _new_prefix()
    redis_store = RedisStore.from_url(REDIS_URL, prefix=prefix)
    try:
        yield redis_store
    finally:
        await redis_store.close()
        await delete_redis_prefix(prefix)


async def test_get_of_a_missing_key_is_none(store: KeyValueStore) -> None:
    """Reading a key never written answers None."""
    assert await store.get("never-written") is None


async def test_set_then_get_returns_the_value(store: KeyValueStore) -> None:
    """A stored value is read back unchanged; a second set overwrites it."""
    await store.set("greeting", "héllo wörld", ttl_seconds=60)
    assert await store.get("greeting") == "héllo wörld"
    await store.set("greeting", "bye", ttl_seconds=60)
    assert await store.get("greeting") == "bye"


async def test_values_expire_after_their_ttl(store: KeyValueStore) -> None:
    """Values (and member sets) written with ttl=1 are gone after a second; keys free again."""
    await store.set("short", "v", ttl_seconds=1)
    assert await store.set_if_absent("claimed", "first", ttl_seconds=1)
    await store.set("long", "v", ttl_seconds=60)
    await store.touch_member("short-set", "m", ttl_seconds=1)
    await asyncio.sleep(EXPIRY_WAIT)
    assert await store.get("short") is None
    assert await store.members_since("short-set", 3600) == []
    assert await store.get("long") == "v"
    assert await store.set_if_absent("claimed", "second", ttl_seconds=60)
    assert await store.get("claimed") == "second"


async def test_set_if_absent_stores_only_the_first_value(store: KeyValueStore) -> None:
    """The first set_if_absent wins (True); a later one is refused (False) and changes nothing."""
    assert await store.set_if_absent("nonce", "first", ttl_seconds=60) is True
    assert await store.set_if_absent("nonce", "second", ttl_seconds=60) is False
    assert await store.get("nonce") == "first"


async def test_set_if_absent_has_exactly_one_winner_under_concurrency(
    store: KeyValueStore,
) -> None:
    """Of 20 concurrent claims of one key, exactly one succeeds."""
    results = await asyncio.gather(
        *(store.set_if_absent("race", str(i), ttl_seconds=60) for i in range(20))
    )
    assert results.count(True) == 1
    winner = results.index(True)
    assert await store.get("race") == str(winner)


async def test_increment_starts_at_one_and_counts(store: KeyValueStore) -> None:
    """A new counter is 1 and each increment adds one; the value reads back as text."""
    assert await store.increment("counter", ttl_seconds=60) == 1
    assert await store.increment("counter", ttl_seconds=60) == 2
    assert await store.increment("counter", ttl_seconds=60) == 3
    assert await store.get("counter") == "3"


async def test_increment_is_atomic_under_concurrency(store: KeyValueStore) -> None:
    """50 concurrent increments give 50 distinct results and a final count of 50."""
    results = await asyncio.gather(
        *(store.increment("concurrent", ttl_seconds=60) for _ in range(50))
    )
    assert sorted(results) == list(range(1, 51))
    assert await store.get("concurrent") == "50"


async def test_increment_many_counts_each_key_with_its_own_ttl(store: KeyValueStore) -> None:
    """One call counts several keys like ``increment`` would; each keeps its own TTL."""
    assert await store.increment("short", ttl_seconds=60) == 1
    assert await store.increment_many([("short", 1), ("long", 60)]) == [2, 1]
    assert await store.increment_many([("brief", 1), ("long", 60)]) == [1, 2]
    await asyncio.sleep(EXPIRY_WAIT)
    assert await store.get("brief") is None
    assert await store.get("short") == "2"  # created with 60 s: a later TTL does not shorten it
    assert await store.get("long") == "2"


async def test_add_many_adds_amounts_with_increments_ttl_rule(store: KeyValueStore) -> None:
    """Each key grows by its own amount in one call; a new key gets the TTL, an existing
    one keeps its own; 20 concurrent calls lose nothing."""
    assert await store.increment("kept", ttl_seconds=60) == 1
    assert await store.add_many([("kept", 4, 1), ("brief", 3, 1), ("long", 2, 60)]) == [5, 3, 2]
    await asyncio.gather(*(store.add_many([("long", 5, 60)]) for _ in range(20)))
    await asyncio.sleep(EXPIRY_WAIT)
    assert await store.get("brief") is None
    assert await store.get("kept") == "5"
    assert await store.get("long") == "102"


async def test_increment_ttl_starts_at_creation_and_is_not_extended(
    store: KeyValueStore,
) -> None:
    """A counter made with ttl=1 expires on time even if later calls pass a long TTL."""
    assert await store.increment("window", ttl_seconds=1) == 1
    await asyncio.sleep(EXPIRY_WAIT / 2)
    assert await store.increment("window", ttl_seconds=3600) == 2
    await asyncio.sleep(EXPIRY_WAIT / 2)
    assert await store.get("window") is None
    # An expired counter starts again from one, with a fresh TTL.
    assert await store.increment("window", ttl_seconds=60) == 1


async def test_delete_reports_whether_the_key_existed(store: KeyValueStore) -> None:
    """delete answers True for a live key (which is then gone) and False otherwise."""
    await store.set("doomed", "v", ttl_seconds=60)
    assert await store.delete("doomed") is True
    assert await store.get("doomed") is None
    assert await store.delete("doomed") is False
    assert await store.delete("never-written") is False


async def test_delete_many_removes_every_key_and_counts_the_live_ones(
    store: KeyValueStore,
) -> None:
    """delete_many removes all the keys given and answers how many of them existed."""
    await store.set("first", "v", ttl_seconds=60)
    await store.set("second", "v", ttl_seconds=60)
    await store.set("kept", "v", ttl_seconds=60)
    assert await store.delete_many(["first", "second", "never-written"]) == 2
    assert await store.get_many(["first", "second", "kept"]) == [None, None, "v"]
    assert await store.delete_many([]) == 0


async def test_get_many_answers_in_order_with_none_for_missing(store: KeyValueStore) -> None:
    """get_many returns one entry per key, in the order asked, None where absent."""
    await store.set("a", "1", ttl_seconds=60)
    await store.set("c", "3", ttl_seconds=60)
    assert await store.get_many(["c", "b", "a", "c"]) == ["3", None, "1", "3"]
    assert await store.get_many([]) == []


async def test_touch_member_collects_distinct_members(store: KeyValueStore) -> None:
    """Members touched into a set are listed once each; an unknown set is empty."""
    for member in ("alice", "bob", "alice"):
        await store.touch_member("seen", member, ttl_seconds=60)
    assert sorted(await store.members_since("seen", 60)) == ["alice", "bob"]
    assert await store.members_since("never-touched", 60) == []


async def test_members_since_keeps_only_recently_seen_members(store: KeyValueStore) -> None:
    """members_since(window) leaves out members last touched before the window."""
    await store.touch_member("active", "old", ttl_seconds=60)
    await store.touch_member("active", "renewed", ttl_seconds=60)
    await asyncio.sleep(0.6)
    await store.touch_member("active", "renewed", ttl_seconds=60)
    await store.touch_member("active", "new", ttl_seconds=60)
    assert sorted(await store.members_since("active", 0.4)) == ["new", "renewed"]


@pytest.mark.parametrize("ttl", [0, -1])
async def test_non_positive_ttl_is_rejected(store: KeyValueStore, ttl: int) -> None:
    """Every write refuses a TTL <= 0 with ValueError and stores nothing."""
    with pytest.raises(ValueError, match="ttl"):
        await store.set("k-set", "v", ttl_seconds=ttl)
    with pytest.raises(ValueError, match="ttl"):
        await store.set_if_absent("k-nx", "v", ttl_seconds=ttl)
    with pytest.raises(ValueError, match="ttl"):
        await store.increment("k-incr", ttl_seconds=ttl)
    with pytest.raises(ValueError, match="ttl"):
        await store.touch_member("k-members", "m", ttl_seconds=ttl)
    assert await store.get_many(["k-set", "k-nx", "k-incr"]) == [None, None, None]
    assert await store.members_since("k-members", 3600) == []


async def test_ping_succeeds_on_a_live_store(store: KeyValueStore) -> None:
    """ping returns without error when the store is reachable."""
    await store.ping()


async def test_redis_prefixes_isolate_stores_sharing_a_server() -> None:
    """Two Redis stores with different prefixes never see each other's keys."""
    await check_redis()
    first_prefix, second_prefix = _new_prefix(), _new_prefix()
    first = RedisStore.from_url(REDIS_URL, prefix=first_prefix)
    second = RedisStore.from_url(REDIS_URL, prefix=second_prefix)
    raw = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await first.set("shared-name", "first", ttl_seconds=60)
        assert await second.get("shared-name") is None
        assert await second.set_if_absent("shared-name", "second", ttl_seconds=60) is True
        assert await second.increment("count", ttl_seconds=60) == 1
        assert await first.increment("count", ttl_seconds=60) == 1

        assert await first.get("shared-name") == "first"
        assert await second.get("shared-name") == "second"
        # The prefix is really on the server-side key name.
        assert await raw.get(f"{first_prefix}shared-name") == "first"
        assert await raw.get("shared-name") is None

        assert await second.delete("shared-name") is True
        assert await first.get("shared-name") == "first"
    finally:
        await first.close()
        await second.close()
        await raw.aclose()
        await delete_redis_prefix(first_prefix)
        await delete_redis_prefix(second_prefix)


# -- reserve_attempt: the lockout counter (check the lock and count in one step) ------
# Its window and the lock deadline are on the caller's clock (``now``), so these tests
# move time by passing a later ``now``; nothing waits.


async def test_reserve_attempt_counts_within_the_window(store: KeyValueStore) -> None:
    """Attempts are numbered 1, 2, 3 while no lock is set; the counter starts on its own."""
    counts = [
        await store.reserve_attempt("acct", lock_key="acct-lock", now=1000.0 + i, window_seconds=60)
        for i in range(3)
    ]
    assert counts == [Reservation(1, None), Reservation(2, None), Reservation(3, None)]


async def test_reserve_attempt_restarts_after_the_window(store: KeyValueStore) -> None:
    """An attempt a full window after the first one starts the count again at one."""
    await store.reserve_attempt("w", lock_key="w-lock", now=1000.0, window_seconds=60)
    await store.reserve_attempt("w", lock_key="w-lock", now=1059.0, window_seconds=60)
    again = await store.reserve_attempt("w", lock_key="w-lock", now=1060.0, window_seconds=60)
    assert again == Reservation(1, None)


async def test_reserve_attempt_is_refused_while_locked(store: KeyValueStore) -> None:
    """A lock deadline after ``now`` refuses without counting; at the deadline it is over."""
    await store.reserve_attempt("l", lock_key="l-lock", now=1000.0, window_seconds=600)
    await store.set("l-lock", repr(1100.5), ttl_seconds=600)
    refused = await store.reserve_attempt("l", lock_key="l-lock", now=1100.0, window_seconds=600)
    assert refused == Reservation(0, 1100.5)
    after = await store.reserve_attempt("l", lock_key="l-lock", now=1100.5, window_seconds=600)
    assert after == Reservation(2, None)  # the refused attempt was not counted


async def test_reserve_attempt_is_atomic_under_concurrency(store: KeyValueStore) -> None:
    """50 concurrent reservations get the distinct numbers 1..50."""
    results = await asyncio.gather(
        *(
            store.reserve_attempt("burst", lock_key="burst-lock", now=1000.0, window_seconds=60)
            for _ in range(50)
        )
    )
    assert sorted(r.attempts for r in results) == list(range(1, 51))


async def test_reserve_attempt_counter_expires_from_the_store(store: KeyValueStore) -> None:
    """The counter key itself expires after the window (nothing lives forever)."""
    await store.reserve_attempt("gc", lock_key="gc-lock", now=time.time(), window_seconds=1)
    await asyncio.sleep(EXPIRY_WAIT)
    assert await store.get("gc") is None


async def test_release_attempt_gives_back_one_attempt_of_its_window(store: KeyValueStore) -> None:
    """A released attempt is not counted: the next one gets its number again."""
    await store.reserve_attempt("r", lock_key="r-lock", now=1000.0, window_seconds=60)
    await store.reserve_attempt("r", lock_key="r-lock", now=1010.0, window_seconds=60)
    assert await store.release_attempt("r", reserved_at=1010.0) is True
    again = await store.reserve_attempt("r", lock_key="r-lock", now=1020.0, window_seconds=60)
    assert again == Reservation(2, None)


async def test_release_attempt_leaves_a_later_window_alone(store: KeyValueStore) -> None:
    """An attempt of a window that has since restarted has nothing left to give back."""
    await store.reserve_attempt("n", lock_key="n-lock", now=1000.0, window_seconds=60)
    await store.reserve_attempt("n", lock_key="n-lock", now=1070.0, window_seconds=60)
    assert await store.release_attempt("n", reserved_at=1000.0) is False
    assert await store.release_attempt("never-counted", reserved_at=1000.0) is False
    after = await store.reserve_attempt("n", lock_key="n-lock", now=1080.0, window_seconds=60)
    assert after == Reservation(2, None)


async def test_reserve_attempt_rejects_a_non_positive_window(store: KeyValueStore) -> None:
    """Like every write, a window <= 0 is refused with ValueError."""
    with pytest.raises(ValueError, match="ttl"):
        await store.reserve_attempt("bad", lock_key="bad-lock", now=1.0, window_seconds=0)

"""The shared success-rate counters are written in batches, and nothing is lost.

``ActivityTracker`` adds attempts up in the process and writes them once per
``flush_seconds`` in one store round trip. These tests use the real stores (the
in-process one and Redis) and check what lands in them: the batch, the timer, a failed
write kept for the next one, and shutdown writing what is pending.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from faultmaven_auth.observability.activity import ActivityTracker
from faultmaven_auth.storage.kv import KeyValueStore, MemoryStore, StoreUnavailable
from tests.storage.test_kv_contract import store  # noqa: F401  (both backends)


def _keys() -> tuple[str, str]:
    minute = int(time.time() // 60)
    return f"stats:auth:success:{minute}", f"stats:auth:failure:{minute}"


async def _wait_for(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(5):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_attempts_are_written_in_one_batch_by_the_timer(store: KeyValueStore) -> None:  # noqa: F811
    tracker = ActivityTracker(store, window_seconds=300, flush_seconds=0.3)
    for success in (True, True, True, False, False):
        tracker.record_auth(success)
    success_key, failure_key = _keys()
    # Not yet written: the attempts wait for the batch...
    assert await store.get(success_key) is None

    async def written() -> bool:
        return await store.get(success_key) == "3" and await store.get(failure_key) == "2"

    # ...which the timer writes without anyone asking.
    await _wait_for(written)
    snapshot = await tracker.snapshot()
    assert snapshot.auth_success_rate == pytest.approx(0.6)
    await tracker.aclose()


async def test_snapshot_counts_this_process_attempts_at_once(store: KeyValueStore) -> None:  # noqa: F811
    tracker = ActivityTracker(store, window_seconds=300, flush_seconds=60)
    tracker.record_auth(False)
    tracker.record_auth(True)
    assert (await tracker.snapshot()).auth_success_rate == pytest.approx(0.5)
    await tracker.aclose()


class _FailingWrites(MemoryStore):
    """A real in-process store whose ``add_many`` fails while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def add_many(self, counters: list[tuple[str, int, int]]) -> list[int]:
        if self.down:
            raise StoreUnavailable() from ConnectionRefusedError()
        return await super().add_many(counters)


@pytest.fixture
async def flaky() -> AsyncIterator[_FailingWrites]:
    memory = _FailingWrites()
    yield memory
    await memory.close()


async def test_a_failed_write_is_reported_and_kept_for_the_next(flaky: _FailingWrites) -> None:
    errors: list[StoreUnavailable] = []
    tracker = ActivityTracker(
        flaky, window_seconds=300, flush_seconds=60, on_store_error=errors.append
    )
    for _ in range(4):
        tracker.record_auth(True)
    await tracker.flush()
    assert len(errors) == 1
    tracker.record_auth(False)
    flaky.down = False
    await tracker.flush()
    success_key, failure_key = _keys()
    assert await flaky.get(success_key) == "4"
    assert await flaky.get(failure_key) == "1"
    assert len(errors) == 1
    await tracker.aclose()


async def test_shutdown_writes_what_is_pending(store: KeyValueStore) -> None:  # noqa: F811
    tracker = ActivityTracker(store, window_seconds=300, flush_seconds=60)
    for _ in range(7):
        tracker.record_auth(True)
    await tracker.aclose()
    assert await store.get(_keys()[0]) == "7"


async def test_concurrent_attempts_are_all_counted(store: KeyValueStore) -> None:  # noqa: F811
    tracker = ActivityTracker(store, window_seconds=300, flush_seconds=0.01)

    async def attempt(i: int) -> None:
        await asyncio.sleep(0.001 * (i % 5))
        tracker.record_auth(i % 4 != 0)

    await asyncio.gather(*(attempt(i) for i in range(200)))
    await asyncio.gather(*(tracker.flush() for _ in range(20)))
    await tracker.aclose()
    success_key, failure_key = _keys()
    assert int(await store.get(success_key) or 0) == 150
    assert int(await store.get(failure_key) or 0) == 50

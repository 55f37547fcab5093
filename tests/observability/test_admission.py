"""Admission control as a client and a scraper see it: past the per-worker limit a request
gets 503 OVERLOADED (JSON body, Retry-After, request id) without running; probes always
answer; each refusal is counted, and logged at most once per interval.

The slow endpoint is held open by an event the test controls: no timing is asserted.
The slot queue itself (first come first served while young, newest first once it
stands) is tested with a clock the test moves.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from faultmaven_auth.app import create_app
from faultmaven_auth.config import Settings
from faultmaven_auth.observability.admission import (
    STANDING_QUEUE_SECONDS,
    RequestSlots,
    admission_refusal_log,
)
from tests.conftest import CAPTURED_LOG_LINES, client_for

SLOW = "/api/v1/test-only/slow"


class Gate:
    """Holds every request to the slow endpoint until ``open`` is called."""

    def __init__(self) -> None:
        self.entered = 0
        self.order: list[str] = []  # X-Request-ID of each request, as it entered
        self._released = asyncio.Event()

    async def endpoint(self, request: Request) -> dict[str, str]:
        self.entered += 1
        self.order.append(request.headers.get("x-request-id", ""))
        await self._released.wait()
        return {"status": "done"}

    def open(self) -> None:
        self._released.set()


@asynccontextmanager
async def gated_app(backend: Settings, **update: Any) -> AsyncIterator[tuple[FastAPI, Gate]]:
    app = create_app(backend.model_copy(update=update), configure_logs=False)
    gate = Gate()
    app.add_api_route(SLOW, gate.endpoint, methods=["GET"])
    async with app.router.lifespan_context(app):
        try:
            yield app, gate
        finally:
            gate.open()


async def running(
    http: httpx.AsyncClient, app: FastAPI, count: int, names: list[str] | None = None
) -> list[asyncio.Task[Any]]:
    """Start ``count`` slow requests (named by X-Request-ID) and return once all of them
    are in flight: running, or waiting for a slot."""
    already = sample(app, "http_requests_inprogress", handler=SLOW, method="GET")
    names = names or [f"req-{already + i:.0f}" for i in range(count)]
    tasks = [asyncio.create_task(http.get(SLOW, headers={"X-Request-ID": name})) for name in names]
    for _ in range(2000):
        if sample(app, "http_requests_inprogress", handler=SLOW, method="GET") >= already + count:
            break
        await asyncio.sleep(0.005)
    return tasks


def sample(app: FastAPI, name: str, **labels: str) -> float:
    value = app.state.runtime.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "Requests refused at capacity"]


async def test_requests_beyond_the_limit_get_503_overloaded(
    backend_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """With every slot taken and no queue wait, the next request is refused at once:
    503, the error body with OVERLOADED and the request id, Retry-After, counted as a
    503 in the HTTP metrics and in http_requests_rejected_total; the app never runs it."""
    caplog.set_level(logging.WARNING, logger="faultmaven_auth.admission")
    async with (
        gated_app(backend_settings, max_concurrent_requests=2, request_queue_timeout_seconds=0) as (
            app,
            gate,
        ),
        client_for(app) as http,
    ):
        held = await running(http, app, 2)
        assert gate.entered == 2
        refused = [await http.get(SLOW, headers={"X-Request-ID": f"r-{i}"}) for i in range(3)]
        assert gate.entered == 2
        gate.open()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        after = await http.get(SLOW)
    for i, response in enumerate(refused):
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-request-id"] == f"r-{i}"
        error = response.json()["error"]
        assert error["code"] == "OVERLOADED"
        assert error["request_id"] == f"r-{i}"
        assert error["message"]
    assert after.status_code == 200
    assert sample(app, "http_requests_total", handler=SLOW, method="GET", status="503") == 3
    assert sample(app, "http_requests_total", handler=SLOW, method="GET", status="200") == 3
    assert sample(app, "http_requests_rejected_total", reason="overloaded") == 3
    lines = refusal_lines(caplog)
    assert lines, "a refusal must be logged"
    assert lines[0].levelno == logging.WARNING
    assert lines[0].reasons == {"overloaded": 1}  # type: ignore[attr-defined]
    # A summary, not one request's line: no request id of whichever refusal came first.
    written = [line for line in CAPTURED_LOG_LINES if "Requests refused at capacity" in line]
    assert written
    assert not [line for line in written if '"request_id"' in line]
    # One line per interval, not per refusal (the rest wait for the next line).
    assert len(lines) < 3


async def test_probes_answer_while_every_slot_is_taken(backend_settings: Settings) -> None:
    """/health, /ready and /metrics never wait for a slot: orchestrators and scrapers
    keep seeing a busy worker as alive; an API request at the same moment is refused."""
    async with (
        gated_app(backend_settings, max_concurrent_requests=1, request_queue_timeout_seconds=0) as (
            app,
            gate,
        ),
        client_for(app) as http,
    ):
        held = await running(http, app, 1)
        probes = {path: (await http.get(path)).status_code for path in ("/health", "/ready")}
        metrics = await http.get("/metrics")
        refused = await http.get("/api/v1/auth/me")
        gate.open()
        await asyncio.gather(*held)
    assert probes == {"/health": 200, "/ready": 200}
    assert metrics.status_code == 200
    # Exported from the start (an alert's increase() needs the 0 before the first 1).
    assert 'http_requests_rejected_total{reason="overloaded"} 0.0' in metrics.text
    assert sample(app, "http_requests_rejected_total", reason="overloaded") == 1
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "OVERLOADED"


async def test_a_queued_request_runs_when_a_slot_frees(backend_settings: Settings) -> None:
    """Within the queue wait a request is not refused: it runs once a slot is free."""
    async with (
        gated_app(
            backend_settings, max_concurrent_requests=1, request_queue_timeout_seconds=30
        ) as (app, gate),
        client_for(app) as http,
    ):
        held = await running(http, app, 2)  # the second is in flight, waiting for the slot
        assert gate.entered == 1
        gate.open()
        statuses = [r.status_code for r in await asyncio.gather(*held)]
    assert statuses == [200, 200]
    assert gate.entered == 2
    assert sample(app, "http_requests_rejected_total", reason="overloaded") == 0


def test_refusals_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """The first refusal is logged at once; the next ones in the interval are summed by
    reason into the line written when the interval has passed."""
    caplog.set_level(logging.WARNING, logger="faultmaven_auth.admission")
    now = [100.0]
    log = admission_refusal_log(interval_seconds=10, clock=lambda: now[0])
    log.refused("overloaded")
    for seconds, reason in ((1, "overloaded"), (2, "store_pool_exhausted"), (3, "overloaded")):
        now[0] = 100.0 + seconds
        log.refused(reason)
    assert [r.reasons for r in refusal_lines(caplog)] == [{"overloaded": 1}]  # type: ignore[attr-defined]
    now[0] = 110.0
    log.flush()
    lines = refusal_lines(caplog)
    assert [r.reasons for r in lines] == [  # type: ignore[attr-defined]
        {"overloaded": 1},
        {"overloaded": 2, "store_pool_exhausted": 1},
    ]
    assert lines[1].count == 3  # type: ignore[attr-defined]
    log.flush()  # nothing new: no line
    assert len(refusal_lines(caplog)) == 2


async def test_a_standing_queue_admits_the_newest_request_first(
    backend_settings: Settings,
) -> None:
    """Once requests have queued for longer than STANDING_QUEUE_SECONDS, a freed slot goes
    to the request that arrived last (it has barely waited); the oldest go last. All of
    them run: within the queue wait nobody is refused."""
    async with (
        gated_app(
            backend_settings, max_concurrent_requests=1, request_queue_timeout_seconds=30
        ) as (app, gate),
        client_for(app) as http,
    ):
        held = await running(http, app, 1, ["first"])
        held += await running(http, app, 2, ["old-1", "old-2"])
        await asyncio.sleep(2 * STANDING_QUEUE_SECONDS)  # the queue now stands
        held += await running(http, app, 1, ["newest"])
        assert gate.order == ["first"]
        gate.open()
        statuses = [r.status_code for r in await asyncio.gather(*held)]
    assert statuses == [200] * 4
    assert gate.order == ["first", "newest", "old-2", "old-1"]
    assert sample(app, "http_requests_rejected_total", reason="overloaded") == 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def waiting(slots: RequestSlots, count: int) -> list[asyncio.Task[bool]]:
    """``count`` waiters, queued in order (each is waiting before the next starts)."""
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.create_task(slots.acquire(30)))
        await asyncio.sleep(0)
    assert slots.waiting >= count
    return tasks


async def granted(tasks: list[asyncio.Task[bool]]) -> list[int]:
    """Indexes of the waiters that got a slot so far."""
    await asyncio.sleep(0)
    return [i for i, t in enumerate(tasks) if t.done() and not t.cancelled() and t.result()]


async def test_slots_serve_a_young_queue_in_arrival_order() -> None:
    clock = Clock()
    slots = RequestSlots(1, clock=clock)
    assert slots.try_acquire()
    queued = await waiting(slots, 3)
    clock.now += STANDING_QUEUE_SECONDS / 2
    for expected in ([0], [0, 1], [0, 1, 2]):
        slots.release()
        assert await granted(queued) == expected
    slots.release()
    assert slots.try_acquire()  # the queue is empty: the slot is free again


async def test_slots_serve_a_standing_queue_newest_first() -> None:
    clock = Clock()
    slots = RequestSlots(1, clock=clock)
    assert slots.try_acquire()
    queued = await waiting(slots, 3)
    clock.now += STANDING_QUEUE_SECONDS
    for expected in ([2], [1, 2], [0, 1, 2]):
        slots.release()
        assert await granted(queued) == expected
    # Once it has emptied, a new queue is young again: first come, first served.
    later = await waiting(slots, 2)
    slots.release()
    assert await granted(later) == [0]
    slots.release()
    slots.release()
    assert slots.try_acquire()


async def test_a_newcomer_never_takes_a_slot_ahead_of_the_queue() -> None:
    slots = RequestSlots(1)
    assert slots.try_acquire()
    queued = await waiting(slots, 1)
    slots.release()  # handed to the waiter, not freed
    assert not slots.try_acquire()
    assert await granted(queued) == [0]


async def test_a_waiter_past_its_timeout_is_refused_and_takes_no_slot() -> None:
    slots = RequestSlots(1)
    assert slots.try_acquire()
    assert await slots.acquire(0.01) is False
    assert await slots.acquire(0) is False
    assert slots.waiting == 0
    slots.release()
    assert slots.try_acquire()


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    """Cancelled while waiting, it is out of the queue; cancelled after the slot was
    handed to it but before it ran, the slot goes on to the next waiter."""
    slots = RequestSlots(1)
    assert slots.try_acquire()
    queued = await waiting(slots, 3)
    queued[0].cancel()
    await asyncio.sleep(0)
    assert slots.waiting == 2
    slots.release()  # to queued[1] (the cancelled one is skipped) ...
    queued[1].cancel()  # ... which is cancelled before it runs
    await asyncio.gather(*queued[:2], return_exceptions=True)
    assert await granted(queued) == [2]
    slots.release()
    assert slots.try_acquire()


async def test_a_long_standing_queue_does_not_keep_its_expired_waiters() -> None:
    """Newest first, the oldest waiters expire where nobody pops them: the queue's own
    record of waiters stays proportional to those still waiting, not to all that came."""
    clock = Clock()
    slots = RequestSlots(1, clock=clock)
    assert slots.try_acquire()
    live = await waiting(slots, 3)
    clock.now += STANDING_QUEUE_SECONDS
    for _ in range(500):
        assert await slots.acquire(0.0001) is False
    assert slots.waiting == 3
    assert len(slots._waiters) <= 2 * 3 + 64 + 1  # white-box: the bound _left keeps
    slots.release()
    assert await granted(live) == [2]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_slots_never_admit_more_than_the_limit_under_20_way_contention(seed: int) -> None:
    """20 tasks take, hold and give back slots, some timing out and some cancelled:
    never more than the limit at once, and every slot is free at the end."""
    rng = random.Random(seed)
    limit = 3
    slots = RequestSlots(limit, standing_seconds=0.002)
    holding = 0
    most = 0

    async def worker() -> None:
        nonlocal holding, most
        for _ in range(30):
            if not await slots.acquire(rng.choice([0.0005, 0.002, 0.05])):
                continue
            holding += 1
            most = max(most, holding)
            try:
                await asyncio.sleep(rng.choice([0, 0.0005, 0.001]))
            finally:
                holding -= 1
                slots.release()

    workers = [asyncio.create_task(worker()) for _ in range(20)]
    await asyncio.sleep(0.02)
    workers[0].cancel()
    workers[1].cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    assert most == limit
    assert holding == 0
    assert slots.waiting == 0
    assert all(slots.try_acquire() for _ in range(limit))
    assert not slots.try_acquire()

"""Admission control as a client and a scraper see it: past the per-worker limit a request
gets 503 OVERLOADED (JSON body, Retry-After, request id) without running; probes always
answer; each refusal is counted, and logged at most once per interval.

The slow endpoint is held open by an event the test controls: no timing is asserted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from faultmaven_auth.app import create_app
from faultmaven_auth.config import Settings
from faultmaven_auth.observability.admission import admission_refusal_log
from tests.conftest import CAPTURED_LOG_LINES, client_for

SLOW = "/api/v1/test-only/slow"


class Gate:
    """Holds every request to the slow endpoint until ``open`` is called."""

    def __init__(self) -> None:
        self.entered = 0
        self._released = asyncio.Event()

    async def endpoint(self) -> dict[str, str]:
        self.entered += 1
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


async def running(http: httpx.AsyncClient, app: FastAPI, count: int) -> list[asyncio.Task[Any]]:
    """Start ``count`` slow requests and return once all of them are in flight."""
    tasks = [asyncio.create_task(http.get(SLOW)) for _ in range(count)]
    for _ in range(2000):
        if sample(app, "http_requests_inprogress", handler=SLOW, method="GET") >= count:
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

"""What one ``/metrics`` scrape costs with the organization-label cap reached.

Every organization-labelled family (``new_users_total``, ``active_users_total``) is
filled up to ``METRICS_MAX_ORGANIZATION_LABELS`` organizations and past it (the rest
fold into ``other``), and every route template of the app gets a series per method for
nine status codes, with latency observations carrying exemplars: more series than a
real deployment exposes. Then rendering is timed on its own (prometheus_client's
``generate_latest`` and the service's ``ExpositionRenderer``, text and OpenMetrics) and
through the app's ``/metrics`` endpoint, which also pings the database and the store and
re-reads the computed gauges (``METRICS_CACHE_SECONDS=0``: every scrape refreshes them,
the worst case). Wall time and the process's CPU time are both reported, with a
cProfile of the text rendering: which functions the time is spent in.
"""

from __future__ import annotations

import cProfile
import pstats
import re
import statistics
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from loaders import org_uuid
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from starlette.types import Message

from faultmaven_auth.app import create_app
from faultmaven_auth.config import Settings
from faultmaven_auth.observability.http_metrics import EXCLUDED_PATHS
from faultmaven_auth.observability.rendering import ExpositionRenderer
from faultmaven_auth.runtime import Runtime

STATUSES = ("200", "201", "400", "401", "403", "404", "409", "422", "503")
USERS_PER_ORG = 3
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@dataclass(frozen=True)
class Cost:
    wall_ms: float  # what a scraper waits (inflated when the machine is busy)
    cpu_ms: float  # the process's CPU time (steadier on a shared machine)


@dataclass(frozen=True)
class MetricsCost:
    label_cap: int
    organizations: int
    series: int
    text_bytes: int
    costs: dict[str, Cost]
    # cProfile of text renderings: (function, share of own time, share inclusive).
    profile: list[tuple[str, float, float]]


def _cost(samples: list[tuple[float, float]]) -> Cost:
    return Cost(
        statistics.median(w for w, _ in samples) * 1000,
        statistics.median(c for _, c in samples) * 1000,
    )


def _render_costs(registry: Any, renderer: ExpositionRenderer, reps: int) -> dict[str, Cost]:
    """The library's renderers and ours, interleaved so load drift hits them alike."""
    ways: dict[str, Callable[[], Any]] = {
        # What the library's renderers build on (ours reads its own metrics without it).
        "`registry.collect()` alone": lambda: [metric.samples for metric in registry.collect()],
        "`generate_latest`, text (prometheus_client)": lambda: generate_latest(registry),
        "`generate_latest`, OpenMetrics (prometheus_client)": lambda: openmetrics_latest(registry),
        "`ExpositionRenderer.text` (ours)": lambda: renderer.text(registry),
        "`ExpositionRenderer.openmetrics` (ours)": lambda: renderer.openmetrics(registry),
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for rep in range(reps + 1):
        for name, work in ways.items():
            wall, cpu = time.perf_counter(), time.process_time()
            work()
            if rep:  # the first round warms up
                samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: _cost(values) for name, values in samples.items()}


async def _fill(app: FastAPI, runtime: Runtime, organizations: int) -> None:
    metrics = runtime.metrics
    for k in range(organizations):
        org = str(org_uuid(k))
        for j in range(USERS_PER_ORG):
            metrics.user_created(org)
            await runtime.activity.record_seen(org, f"{org}-{j}")
    exemplar = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    # The route templates as the HTTP metrics middleware labels them.
    for path, operations in app.openapi()["paths"].items():
        if path in EXCLUDED_PATHS:
            continue
        for method in (m.upper() for m in operations):
            for status in STATUSES:
                metrics.http_requests_total.labels(path, method, status).inc()
            metrics.http_request_duration_seconds.labels(path, method).observe(0.02, exemplar)
            metrics.http_requests_inprogress.labels(path, method).set(0)
            metrics.api_calls_by_endpoint.labels(path, method).inc()
    for method in ("password", "refresh"):
        metrics.auth_attempt(method, True, 0.05, exemplar)
        metrics.auth_attempt(method, False, 0.05, exemplar)
    for operation in ("SELECT", "INSERT", "UPDATE", "DELETE", "OTHER"):
        metrics.db_queries_total.labels(operation).inc()
    metrics.db_query_duration_seconds.observe(0.001)
    metrics.session_duration_seconds.observe(600)


@asynccontextmanager
async def _running(settings: Settings) -> Any:
    app = create_app(settings, configure_logs=False)
    async with app.router.lifespan_context(app):
        yield app


async def _scrape(app: FastAPI, accept: str) -> bytes:
    """One ``GET /metrics`` straight through the ASGI app, as a server would call it.

    No HTTP client in the process: its CPU time would be counted as the scrape's.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/metrics",
        "raw_path": b"/metrics",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"accept", accept.encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return b"".join(m.get("body", b"") for m in sent[1:])


async def _endpoint_cost(app: FastAPI, accept: str, reps: int) -> Cost:
    samples = []
    for rep in range(reps + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        await _scrape(app, accept)
        if rep:  # the first scrape warms up
            samples.append((time.perf_counter() - wall, time.process_time() - cpu))
    return _cost(samples)


PROFILE_ROWS = 12


def _frame(key: tuple[str, int, str]) -> str:
    path, line, name = key
    if path == "~":  # a builtin: cProfile names it by itself (without its address)
        return re.sub(r" at 0x[0-9a-f]+", "", name)
    short = path.split("site-packages/")[-1].split("/src/")[-1]
    return f"{name} ({short}:{line})"


def _render_profile(
    registry: Any, renderer: ExpositionRenderer, reps: int
) -> list[tuple[str, float, float]]:
    """cProfile of ``reps`` text renderings (the scrape runs this in a worker thread, out
    of a profiler's sight on the event loop): the functions with the most own time."""
    profiler = cProfile.Profile()
    for _ in range(reps):
        profiler.runcall(renderer.text, registry)
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(own for _, _, own, _, _ in stats.values())
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:PROFILE_ROWS]
    return [
        (_frame(key), own / total, inclusive / total) for key, (_, _, own, inclusive, _) in rows
    ]


async def measure_metrics(database_url: str, reps: int) -> MetricsCost:
    settings = Settings(
        database_url=database_url,
        redis_url=None,
        environment="development",
        jwt_issuer="http://bench",
        metrics_cache_seconds=0,
    )
    cap = settings.metrics_max_organization_labels
    organizations = cap + 20
    async with _running(settings) as app:
        runtime: Runtime = app.state.runtime
        await _fill(app, runtime, organizations)
        registry = app.state.metrics_exporter.registry
        text = generate_latest(registry)
        costs = _render_costs(registry, ExpositionRenderer(), reps)
        costs["`GET /metrics`, text"] = await _endpoint_cost(app, "text/plain", reps)
        costs["`GET /metrics`, OpenMetrics"] = await _endpoint_cost(app, OPENMETRICS, reps)
        profile = _render_profile(registry, ExpositionRenderer(), min(reps, 20))
        scraped = (await _scrape(app, "text/plain")).decode()
        assert scraped.count('organization_id="other"') == 2, "the cap was not reached"
        return MetricsCost(
            label_cap=cap,
            organizations=organizations,
            series=sum(1 for line in text.decode().splitlines() if not line.startswith("#")),
            text_bytes=len(text),
            costs=costs,
            profile=profile,
        )

"""``/metrics``: Prometheus text or OpenMetrics (with exemplars), never blocking the loop.

Rendering walks every metric and, in multiprocess mode, reads every worker's files, so
it runs in a thread; ``rendering.ExpositionRenderer`` writes the library's exact format
while formatting each series' name and labels once, not on every scrape. Before that,
every scrape checks the database and the store (``dependency_up``, bounded by
``HEALTH_CHECK_TIMEOUT_SECONDS``), then refreshes the computed gauges (at most every
``METRICS_CACHE_SECONDS``) from the dependencies that answered: a scrape while the
database is down does not wait on it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from pathlib import Path

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, PlatformCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from sqlalchemy import func, select

from faultmaven_auth.api import security
from faultmaven_auth.api.openapi import error_responses
from faultmaven_auth.errors import NotFound, Unauthorized
from faultmaven_auth.observability.health import check_dependencies
from faultmaven_auth.observability.metrics import Metrics, multiprocess_enabled
from faultmaven_auth.observability.process_metrics import WorkersProcessCollector
from faultmaven_auth.observability.rendering import ExpositionRenderer
from faultmaven_auth.observability.worker_metrics import WorkerFilesCollector
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.storage.models import Organization

logger = logging.getLogger("faultmaven_auth.metrics")


class MetricsExporter:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._metrics: Metrics = runtime.metrics
        self._refreshed_at = float("-inf")
        self._lock = asyncio.Lock()
        self._renderer = ExpositionRenderer()
        if multiprocess_enabled():
            registry = CollectorRegistry()
            directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
            # The families this worker declares, so that those no worker has written
            # yet are still exported (the computed gauges are collected below).
            computed = {family.name for family in self._metrics.computed.collect()}
            declared = [
                family for family in self._metrics.registry.collect() if family.name not in computed
            ]
            registry.register(WorkerFilesCollector(directory, declared))
            registry.register(self._metrics.computed)
            # python_info is the same in every worker; process_* is summed over the
            # live workers; python_gc_* comes from the files (worker_metrics.GcCounters).
            PlatformCollector(registry=registry)
            registry.register(WorkersProcessCollector(directory))
            self.registry = registry
        else:
            self.registry = self._metrics.registry

    async def refresh_computed(self, *, store_up: bool = True, database_up: bool = True) -> None:
        """Recompute the cached gauges from the dependencies that answered their check.

        The gauges of a dependency that did not keep their last values and the cache is
        not renewed, so the next scrape tries again. Each read is bounded by the health
        check timeout: a dependency that hangs after answering its ping cannot hang us.
        """
        settings = self._runtime.settings
        limit = settings.health_check_timeout_seconds
        async with self._lock:
            if time.monotonic() - self._refreshed_at < settings.metrics_cache_seconds:
                return
            computed = self._metrics.computed
            if store_up:
                try:
                    async with asyncio.timeout(limit):
                        snapshot = await self._runtime.activity.snapshot()
                    computed.auth_success_rate = snapshot.auth_success_rate
                    computed.active_users = self._cap_orgs(snapshot.active_users_by_org)
                except Exception:
                    logger.warning("Could not read activity from the store", exc_info=True)
            if database_up:
                try:
                    async with asyncio.timeout(limit), self._runtime.db.session() as session:
                        count = await session.scalar(
                            select(func.count())
                            .select_from(Organization)
                            .where(Organization.deleted_at.is_(None))
                        )
                    computed.organizations_total = int(count or 0)
                except Exception:
                    logger.warning("Could not count organizations", exc_info=True)
            if store_up and database_up:
                self._refreshed_at = time.monotonic()

    def _cap_orgs(self, by_org: dict[str, int]) -> dict[str, int]:
        capped: dict[str, int] = {}
        for org, count in sorted(by_org.items(), key=lambda item: -item[1]):
            label = self._metrics.org_label(org)
            capped[label] = capped.get(label, 0) + count
        return capped

    async def render(self, accept: str) -> tuple[bytes, str]:
        database_up, store_up = await check_dependencies(self._runtime)
        await self.refresh_computed(store_up=store_up, database_up=database_up)
        if self._metrics.gc_counters is not None:
            self._metrics.gc_counters.publish()  # this worker's share is current
        if "application/openmetrics-text" in accept:
            body = await asyncio.to_thread(self._renderer.openmetrics, self.registry)
            return body, OPENMETRICS_TYPE
        return await asyncio.to_thread(self._renderer.text, self.registry), CONTENT_TYPE_LATEST


def get_exporter(request: Request) -> MetricsExporter:
    exporter: MetricsExporter = request.app.state.metrics_exporter
    return exporter


def check_metrics_token(runtime: Runtime, authorization: str | None) -> None:
    token = runtime.settings.metrics_bearer_token
    if token is None:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected):
        raise Unauthorized("A valid metrics bearer token is required", code="METRICS_UNAUTHORIZED")


router = APIRouter(tags=["operations"])


_EXPOSITION = {"schema": {"type": "string"}}


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Security(security.metrics_token)],
    responses={
        200: {
            "description": "Prometheus text, or OpenMetrics when the scraper accepts it",
            "content": {"text/plain": _EXPOSITION, "application/openmetrics-text": _EXPOSITION},
        },
        # Not served here when it has its own port (METRICS_PORT) or is turned off.
        **error_responses(404),
    },
)
async def metrics(
    request: Request,
    runtime: Runtime = Depends(get_runtime),
    exporter: MetricsExporter = Depends(get_exporter),
) -> Response:
    if request.scope.get("server_role") != "metrics" and (
        runtime.settings.metrics_port is not None or not runtime.settings.metrics_enabled
    ):
        # Served on its own port (or not at all): the main listener does not expose it.
        raise NotFound()
    check_metrics_token(runtime, request.headers.get("authorization"))
    body, content_type = await exporter.render(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)

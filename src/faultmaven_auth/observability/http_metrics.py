"""HTTP metrics as pure ASGI middleware, labelled by route template and exact status.

The names are prometheus-fastapi-instrumentator's, so dashboards written for it work.
``handler`` is the route template the router matched (``/api/v1/organizations/{org_id}``);
paths no route matches all become ``none``. The in-progress gauge needs the template
before the app runs, so templates are also matched up front against compiled patterns.
``/health``, ``/ready`` and ``/metrics`` are not counted: probes and scrapes would
drown the traffic they are meant to observe.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faultmaven_auth.observability.metrics import Metrics

UNMATCHED = "none"
EXCLUDED_PATHS = frozenset({"/health", "/ready", "/metrics"})

ExemplarSource = Callable[[], dict[str, str] | None]


class RouteTemplates:
    """Maps a raw path to its route template without running the router."""

    def __init__(self, templates: Iterable[str]) -> None:
        compiled: list[tuple[re.Pattern[str], str]] = []
        for template in templates:
            regex, _, _ = compile_path(template)
            compiled.append((regex, template))
        # Static paths first, so "/audit-events/export" never resolves to a template
        # with a parameter in that place.
        compiled.sort(key=lambda item: item[1].count("{"))
        self._compiled = compiled

    def resolve(self, path: str) -> str:
        for regex, template in self._compiled:
            if regex.match(path):
                return template
        return UNMATCHED


class HttpMetricsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        templates: Callable[[], RouteTemplates],
        exemplar: ExemplarSource | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self._templates_factory = templates
        self._templates: RouteTemplates | None = None
        self._exemplar = exemplar

    def _resolve(self, path: str) -> str:
        if self._templates is None:
            self._templates = self._templates_factory()
        return self._templates.resolve(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXCLUDED_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        early_handler = self._resolve(scope["path"])
        inprogress = self.metrics.http_requests_inprogress.labels(early_handler, method)
        inprogress.inc()
        status = 500
        start = time.perf_counter()

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            elapsed = time.perf_counter() - start
            inprogress.dec()
            route = scope.get("route")
            handler = getattr(route, "path", None) or early_handler
            metrics = self.metrics
            metrics.http_requests_total.labels(handler, method, str(status)).inc()
            exemplar = self._exemplar() if self._exemplar is not None else None
            metrics.http_request_duration_seconds.labels(handler, method).observe(elapsed, exemplar)
            if handler.startswith("/api/"):
                metrics.api_calls_by_endpoint.labels(handler, method).inc()

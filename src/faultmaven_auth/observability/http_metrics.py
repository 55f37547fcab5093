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
from typing import Any, NamedTuple

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faultmaven_auth.observability.metrics import Metrics

UNMATCHED = "none"
EXCLUDED_PATHS = frozenset({"/health", "/ready", "/metrics"})

ExemplarSource = Callable[[], dict[str, str] | None]
_MAX_CACHED_PATHS = 4096


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
        # Paths seen recently: a probe instead of a walk through every pattern. Raw
        # paths are unbounded (ids, junk), so the memory is emptied when full.
        self._resolved: dict[str, str] = {}

    def resolve(self, path: str) -> str:
        template = self._resolved.get(path)
        if template is None:
            template = self._match(path)
            if len(self._resolved) >= _MAX_CACHED_PATHS:
                self._resolved.clear()
            self._resolved[path] = template
        return template

    def _match(self, path: str) -> str:
        for regex, template in self._compiled:
            if regex.match(path):
                return template
        return UNMATCHED


# Children cached per label values: ``labels()`` validates and locks on every call, a
# dict probe does not. Handlers are route templates and statuses codes, so the keys are
# few; the bound only guards against a flood of odd methods.
_MAX_CACHED_CHILDREN = 4096


class _Children(NamedTuple):
    total: Any  # http_requests_total{handler,method,status}
    duration: Any  # http_request_duration_seconds{handler,method}
    api_calls: Any | None  # api_calls_by_endpoint{endpoint,method} for /api/ routes


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
        self._inprogress: dict[tuple[str, str], Any] = {}
        self._children: dict[tuple[str, str, int], _Children] = {}

    def _resolve(self, path: str) -> str:
        if self._templates is None:
            self._templates = self._templates_factory()
        return self._templates.resolve(path)

    def _inprogress_child(self, handler: str, method: str) -> Any:
        key = (handler, method)
        child = self._inprogress.get(key)
        if child is None:
            if len(self._inprogress) >= _MAX_CACHED_CHILDREN:
                self._inprogress.clear()
            child = self._inprogress[key] = self.metrics.http_requests_inprogress.labels(
                handler, method
            )
        return child

    def _children_for(self, handler: str, method: str, status: int) -> _Children:
        key = (handler, method, status)
        children = self._children.get(key)
        if children is None:
            if len(self._children) >= _MAX_CACHED_CHILDREN:
                self._children.clear()
            metrics = self.metrics
            children = self._children[key] = _Children(
                metrics.http_requests_total.labels(handler, method, str(status)),
                metrics.http_request_duration_seconds.labels(handler, method),
                metrics.api_calls_by_endpoint.labels(handler, method)
                if handler.startswith("/api/")
                else None,
            )
        return children

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXCLUDED_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        early_handler = self._resolve(scope["path"])
        inprogress = self._inprogress_child(early_handler, method)
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
            children = self._children_for(handler, method, status)
            children.total.inc()
            exemplar = self._exemplar() if self._exemplar is not None else None
            children.duration.observe(elapsed, exemplar)
            if children.api_calls is not None:
                children.api_calls.inc()

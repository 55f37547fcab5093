"""The spans this service makes itself: one SERVER span per request, one per SQL statement.

Why not the stock FastAPI and SQLAlchemy instrumentors: see ``tracing.py``. Attribute
names follow the stable HTTP and database semantic conventions. What is left out on
purpose: the query string, request and response headers, the client address, SQL
parameter values and error messages (only the error's type is kept).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faultmaven_auth.observability.db_metrics import statement_operation
from faultmaven_auth.observability.http_metrics import EXCLUDED_PATHS

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


class _ScopeHeaders(Getter[Scope]):
    """Reads propagation headers (``traceparent``, ...) straight from the ASGI scope."""

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier.get("headers", ()) if k == name]
        return values or None

    def keys(self, carrier: Scope) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier.get("headers", ())]


_SCOPE_HEADERS = _ScopeHeaders()


class ServerSpanMiddleware:
    """One SERVER span per HTTP request, named ``METHOD /route/{template}``.

    The incoming trace context (W3C ``traceparent`` by default, ``OTEL_PROPAGATORS``) is
    the parent, so the sampler follows a caller's decision. The span is current while
    the app runs, so SQL, Redis and the login spans become its children, and the metrics
    middleware inside reads its trace id for exemplars. Probes and ``/metrics`` get none.
    """

    def __init__(self, app: ASGIApp, *, tracer: Tracer) -> None:
        self.app = app
        self._tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXCLUDED_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        parent = propagate.extract(scope, getter=_SCOPE_HEADERS)
        span = self._tracer.start_span(method, parent, kind=SpanKind.SERVER)
        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            if span.is_recording():
                await self._call_recorded(span, method, scope, receive, send)
            else:
                # Unsampled: the span only carries the decision to the children.
                await self.app(scope, receive, send)
        finally:
            span.end()
            context.detach(token)

    async def _call_recorded(
        self, span: Span, method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        span.set_attributes(
            {
                "http.request.method": method,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            }
        )
        status = 0

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
            raise
        finally:
            template = getattr(scope.get("route"), "path", None)
            if template:
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
            if status:
                span.set_attribute("http.response.status_code", status)
                # For a server, only 5xx are its own errors; 4xx are the caller's.
                if status >= 500:
                    span.set_attribute("error.type", str(status))
                    span.set_status(Status(StatusCode.ERROR))


_SPAN_KEY = "_fm_otel_span"
_DB_SYSTEMS = {"postgresql": "postgresql", "sqlite": "sqlite"}


def _operation(statement: str) -> str:
    operation = statement_operation(statement)
    return operation if operation.isalpha() else "SQL"


def instrument_sql(engine: Engine, tracer: Tracer) -> Callable[[], None]:
    """A CLIENT span for each statement ``engine`` runs; returns the function that undoes it.

    Pass the sync engine of an async one: SQLAlchemy runs these listeners in a greenlet
    that shares the caller's context, so the spans get the right parent.
    """
    url = engine.url
    common: dict[str, str | int] = {
        "db.system.name": _DB_SYSTEMS.get(engine.dialect.name, engine.dialect.name)
    }
    if url.database and engine.dialect.name != "sqlite":
        common["db.namespace"] = url.database
    if url.host:
        common["server.address"] = url.host
    if url.port:
        common["server.port"] = url.port

    def before(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: Any) -> None:
        if ctx is None:  # the dialect's own first-connect queries
            return
        operation = _operation(statement)
        span = tracer.start_span(operation, kind=SpanKind.CLIENT)
        if span.is_recording():
            span.set_attributes(common)
            # The statement as sent: values are bound parameters, never in the text.
            span.set_attributes({"db.operation.name": operation, "db.query.text": statement})
        setattr(ctx, _SPAN_KEY, span)

    def after(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: Any) -> None:
        span = getattr(ctx, _SPAN_KEY, None)
        if span is not None:
            span.end()
            setattr(ctx, _SPAN_KEY, None)

    def on_error(exception_context: Any) -> None:
        span = getattr(exception_context.execution_context, _SPAN_KEY, None)
        if span is None:
            return
        # The driver's message can quote row values; the type says enough.
        error = type(exception_context.original_exception).__qualname__
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR, error))
        span.end()
        setattr(exception_context.execution_context, _SPAN_KEY, None)

    listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", before),
        ("after_cursor_execute", after),
        ("handle_error", on_error),
    ]
    for name, listener in listeners:
        event.listen(engine, name, listener)

    def undo() -> None:
        for name, listener in listeners:
            if event.contains(engine, name, listener):
                event.remove(engine, name, listener)

    return undo

"""OpenTelemetry tracing: a provider per app, OTLP export, parent-based ratio sampling.

When tracing is off (the default when no endpoint is configured, see
``Settings.tracing_active``) nothing here is built: no provider, no middleware, and
``runtime.tracer`` is the API's no-op tracer.

Every span source gets this app's provider explicitly, and the lifespan undoes what it
instrumented. The test suite runs many apps in one process; instrumentation patched in
globally would send one app's spans to another's exporter. That is also why the server
span and the SQL spans are made here (``spans.py``) rather than by the stock instrumentors:

- ``FastAPIInstrumentor`` records the full URL with its query string, the client address
  and the user agent, and an *unsampled* request through it costs several times what
  ``ServerSpanMiddleware`` costs (numbers in docs/observability-tracing.md, measured by
  ``benchmarks/server_span_overhead/run.py``).
- ``SQLAlchemyInstrumentor`` patches ``create_engine`` and ``Engine.connect`` process-wide
  (a ``connect`` span for every session), its un-instrumenting removes every engine's
  listeners, and it puts the driver's error message in the span status, which can quote
  row values (the email of a unique violation).

Redis (per client; arguments become ``?``) and httpx (process-wide, held by the first
app that starts) use the stock instrumentors.

No span carries an email, a password or a token: routes are templates, SQL is the
statement with its placeholders, Redis commands lose their arguments, errors are recorded
by type only, and the login spans name the user by id, after a success.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, Status, StatusCode, Tracer
from sqlalchemy.engine import Engine

from faultmaven_auth import __version__
from faultmaven_auth.config import OtlpProtocol, Settings
from faultmaven_auth.observability.spans import instrument_sql
from faultmaven_auth.storage.kv import KeyValueStore, RedisStore

logger = logging.getLogger("faultmaven_auth.tracing")

DEFAULT_SAMPLE_RATIO = 0.1
TRACER_NAME = "faultmaven_auth"
_DEFAULT_ENDPOINTS = {
    OtlpProtocol.HTTP_PROTOBUF: "http://localhost:4318",
    OtlpProtocol.GRPC: "http://localhost:4317",
}

Undo = Callable[[], None]


@dataclass(frozen=True)
class TracingConfig:
    """Everything the provider and the exporter are built from."""

    service_name: str
    service_version: str
    environment: str
    sample_ratio: float
    protocol: OtlpProtocol
    endpoint: str  # the full traces URL for OTLP/HTTP; host:port URL for gRPC


def tracing_config(settings: Settings) -> TracingConfig | None:
    """The tracing ``settings`` ask for, or None when tracing is off."""
    if not settings.tracing_active:
        return None
    ratio = settings.tracing_sample_ratio
    if ratio is None:
        ratio = settings.otel_traces_sampler_arg
    protocol = settings.otlp_traces_protocol
    return TracingConfig(
        service_name=settings.otel_service_name or settings.service_name,
        service_version=__version__,
        environment=settings.environment.value,
        sample_ratio=DEFAULT_SAMPLE_RATIO if ratio is None else ratio,
        protocol=protocol,
        endpoint=_traces_endpoint(settings, protocol),
    )


def build_tracing(settings: Settings) -> Tracing | None:
    """The app's tracing, or None when it is off; ``create_app`` calls this once."""
    config = tracing_config(settings)
    return Tracing(config) if config is not None else None


def _traces_endpoint(settings: Settings, protocol: OtlpProtocol) -> str:
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    base = settings.otel_exporter_otlp_endpoint
    if not base and settings.jaeger_host:
        base = f"http://{settings.jaeger_host}:{settings.jaeger_port}"
    base = base or _DEFAULT_ENDPOINTS[protocol]
    if protocol is OtlpProtocol.GRPC:
        return base
    # The OTLP rule for the signal-generic variable: the signal's path is appended.
    return f"{base.rstrip('/')}/v1/traces"


def build_tracer_provider(config: TracingConfig) -> TracerProvider:
    """A provider with the service's resource and sampler, and no exporter yet."""
    resource = Resource.create(
        {
            "service.name": config.service_name,
            "service.version": config.service_version,
            "deployment.environment": config.environment,
            # The name newer semantic conventions (and Grafana) read.
            "deployment.environment.name": config.environment,
        }
    )
    return TracerProvider(
        resource=resource,
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        # The app's lifespan shuts it down; an atexit hook would keep every test app alive.
        shutdown_on_exit=False,
    )


def build_span_exporter(protocol: OtlpProtocol, endpoint: str) -> SpanExporter:
    if protocol is OtlpProtocol.GRPC:
        # Optional package, not a dependency: ``Settings.startup_problems`` names it.
        module = importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
        exporter: SpanExporter = module.OTLPSpanExporter(endpoint=endpoint)
        return exporter
    return OTLPSpanExporter(endpoint=endpoint)


class Tracing:
    """One app's tracing: its provider and tracer, and what it instrumented until shutdown.

    Built by ``create_app`` (nothing runs yet: spans started before ``start`` go nowhere);
    ``start`` and ``shutdown`` are the lifespan's.
    """

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        self.provider = build_tracer_provider(config)
        self.tracer = self.provider.get_tracer(TRACER_NAME, config.service_version)
        self._undo: list[Undo] = []

    def start(self, *, engine: Engine, kv: KeyValueStore) -> None:
        """Begin exporting; trace this app's database engine, Redis client and httpx."""
        exporter = build_span_exporter(self.config.protocol, self.config.endpoint)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._undo.append(instrument_sql(engine, self.tracer))
        if isinstance(kv, RedisStore):
            redis = kv.client
            RedisInstrumentor.instrument_client(redis, tracer_provider=self.provider)
            self._undo.append(lambda: RedisInstrumentor.uninstrument_client(redis))
        undo_httpx = _instrument_httpx(self.provider)
        if undo_httpx is not None:
            self._undo.append(undo_httpx)
        logger.info(
            "Tracing on",
            extra={
                "otlp_endpoint": _without_credentials(self.config.endpoint),
                "otlp_protocol": self.config.protocol.value,
                "sample_ratio": self.config.sample_ratio,
            },
        )

    async def shutdown(self) -> None:
        """Undo the instrumentation, then export what is buffered (off the event loop)."""
        while self._undo:
            self._undo.pop()()
        await asyncio.to_thread(self.provider.shutdown)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))


def _instrument_httpx(provider: TracerProvider) -> Undo | None:
    """Trace outgoing httpx requests, process-wide: the app holds no client to hook into.

    The first app to start holds the instrumentation and removes it when it stops; httpx
    is optional at run time, and without it there is nothing to trace.
    """
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    except ImportError:
        return None
    instrumentor = HTTPXClientInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        return None
    instrumentor.instrument(tracer_provider=provider)

    def undo() -> None:
        instrumentor.uninstrument()

    return undo


@contextmanager
def traced(tracer: Tracer, name: str) -> Iterator[Span]:
    """A span around a block; an exception marks it failed, by the exception's type only.

    The stock recording keeps the message, and SQLAlchemy's messages quote the
    statement's parameters (an email, for the login lookup).
    """
    with tracer.start_as_current_span(
        name, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
            raise


def current_trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, if it is sampled; else None.

    Only sampled spans: an id in a log line or an exemplar should lead to a stored trace.
    """
    context = trace.get_current_span().get_span_context()
    if not context.trace_flags.sampled:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def current_trace_exemplar() -> dict[str, str] | None:
    """The exemplar labels linking a metric sample to the current sampled trace."""
    ids = current_trace_ids()
    return {"trace_id": ids[0]} if ids is not None else None

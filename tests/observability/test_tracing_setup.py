"""How tracing is switched on and pointed at a collector, and what else it instruments.

The settings tests read real environment variables (the names operators set); the
export tests send spans to a real OTLP/HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NoOpTracer
from pydantic import ValidationError

from faultmaven_auth.app import ConfigurationError, create_app
from faultmaven_auth.config import OtlpProtocol, Settings
from faultmaven_auth.observability.spans import ServerSpanMiddleware
from faultmaven_auth.observability.tracing import (
    current_trace_exemplar,
    current_trace_ids,
    tracing_config,
)
from tests.conftest import client_for, running_app, sign_up
from tests.observability.otlp_receiver import CLIENT, OtlpReceiver, children, named, one

_TRACING_VARIABLES = (
    "TRACING_ENABLED",
    "TRACING_SAMPLE_RATIO",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_SAMPLER_ARG",
    "JAEGER_HOST",
    "JAEGER_PORT",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment with no tracing variable set."""
    for name in _TRACING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def from_env(env: pytest.MonkeyPatch, **variables: str) -> Settings:
    for name, value in variables.items():
        env.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_tracing_is_off_without_an_endpoint(env: pytest.MonkeyPatch) -> None:
    """No endpoint, no JAEGER_HOST, no TRACING_ENABLED: tracing is off."""
    assert tracing_config(from_env(env)) is None


def test_otlp_endpoint_turns_tracing_on_with_the_defaults(env: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT alone: OTLP/HTTP to its /v1/traces, 10 % sampled."""
    settings = from_env(
        env, OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318/", SERVICE_NAME="auth-a"
    )
    config = tracing_config(settings)
    assert config is not None
    assert config.endpoint == "http://collector:4318/v1/traces"
    assert config.protocol is OtlpProtocol.HTTP_PROTOBUF
    assert config.sample_ratio == 0.1
    assert config.service_name == "auth-a"


def test_traces_endpoint_is_used_as_given(env: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT wins over the generic one and gets no suffix."""
    settings = from_env(
        env,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="https://tempo.example.com/otlp/v1/traces",
    )
    config = tracing_config(settings)
    assert config is not None
    assert config.endpoint == "https://tempo.example.com/otlp/v1/traces"


def test_jaeger_host_points_otlp_http_at_jaeger(env: pytest.MonkeyPatch) -> None:
    """JAEGER_HOST turns tracing on, towards http://JAEGER_HOST:4318 (JAEGER_PORT changes it)."""
    config = tracing_config(from_env(env, JAEGER_HOST="jaeger"))
    assert config is not None
    assert config.endpoint == "http://jaeger:4318/v1/traces"
    config = tracing_config(from_env(env, JAEGER_HOST="jaeger", JAEGER_PORT="14318"))
    assert config is not None
    assert config.endpoint == "http://jaeger:14318/v1/traces"


def test_explicit_switches_win(env: pytest.MonkeyPatch) -> None:
    """TRACING_ENABLED=false or OTEL_SDK_DISABLED=true turn tracing off despite an endpoint."""
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert tracing_config(from_env(env, TRACING_ENABLED="false", **endpoint)) is None
    env.delenv("TRACING_ENABLED")
    assert tracing_config(from_env(env, OTEL_SDK_DISABLED="true", TRACING_ENABLED="true")) is None
    env.delenv("OTEL_SDK_DISABLED")
    env.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    config = tracing_config(from_env(env, TRACING_ENABLED="true"))
    assert config is not None
    assert config.endpoint == "http://localhost:4318/v1/traces"


def test_sample_ratio_precedence(env: pytest.MonkeyPatch) -> None:
    """TRACING_SAMPLE_RATIO wins over OTEL_TRACES_SAMPLER_ARG, which wins over 0.1."""
    on = {"TRACING_ENABLED": "true"}
    config = tracing_config(from_env(env, OTEL_TRACES_SAMPLER_ARG="0.25", **on))
    assert config is not None
    assert config.sample_ratio == 0.25
    config = tracing_config(from_env(env, TRACING_SAMPLE_RATIO="0.5", **on))
    assert config is not None
    assert config.sample_ratio == 0.5
    with pytest.raises(ValidationError, match="tracing_sample_ratio"):
        from_env(env, TRACING_SAMPLE_RATIO="1.5")


def test_otel_service_name_overrides_service_name(env: pytest.MonkeyPatch) -> None:
    """OTEL_SERVICE_NAME, when set, is the traces' service.name."""
    settings = from_env(
        env, TRACING_ENABLED="true", SERVICE_NAME="auth-a", OTEL_SERVICE_NAME="auth-traces"
    )
    config = tracing_config(settings)
    assert config is not None
    assert config.service_name == "auth-traces"


def test_grpc_without_its_package_refuses_to_start(env: pytest.MonkeyPatch) -> None:
    """OTLP/gRPC needs an optional package; without it the app names the problem."""
    settings = from_env(
        env, OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317", OTEL_EXPORTER_OTLP_PROTOCOL="grpc"
    )
    config = tracing_config(settings)
    assert config is not None
    assert (config.protocol, config.endpoint) == (OtlpProtocol.GRPC, "http://collector:4317")
    with pytest.raises(ConfigurationError, match="opentelemetry-exporter-otlp-proto-grpc"):
        create_app(settings, configure_logs=False)
    with pytest.raises(ValidationError, match="otel_exporter_otlp_protocol"):
        from_env(env, OTEL_EXPORTER_OTLP_PROTOCOL="http/json")


def test_trace_ids_only_for_sampled_spans() -> None:
    """current_trace_ids/current_trace_exemplar give hex ids of a sampled span, else None."""
    assert current_trace_ids() is None
    assert current_trace_exemplar() is None
    for ratio in (1.0, 0.0):
        provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(ratio)), shutdown_on_exit=False
        )
        with provider.get_tracer("test").start_as_current_span("work") as span:
            context = span.get_span_context()
            ids = (format(context.trace_id, "032x"), format(context.span_id, "016x"))
            if ratio == 1.0:
                assert current_trace_ids() == ids
                assert current_trace_exemplar() == {"trace_id": ids[0]}
            else:
                assert current_trace_ids() is None
                assert current_trace_exemplar() is None


async def test_tracing_off_adds_nothing_to_the_app(backend_settings: Settings) -> None:
    """Off: no server-span middleware, and the login path gets the API's no-op tracer."""
    assert not backend_settings.tracing_active
    async with running_app(backend_settings) as app:
        assert ServerSpanMiddleware not in {m.cls for m in app.user_middleware}
        assert isinstance(app.state.runtime.tracer, NoOpTracer)


async def test_jaeger_shorthand_exports_over_otlp_http(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """JAEGER_HOST/JAEGER_PORT alone: spans are POSTed to /v1/traces on that host and port."""
    settings = backend_settings.model_copy(
        update={
            "jaeger_host": "127.0.0.1",
            "jaeger_port": otlp_receiver.port,
            "tracing_sample_ratio": 1.0,
        }
    )
    async with running_app(settings) as app, client_for(app) as client:
        await sign_up(client)
    assert {r.path for r in otlp_receiver.requests} == {"/v1/traces"}
    assert named(otlp_receiver.spans(), "authenticate_user")


async def test_otlp_headers_reach_the_collector(
    backend_settings: Settings, otlp_receiver: OtlpReceiver, env: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_HEADERS (a collector's API key, say) is sent with every export."""
    env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-scope-orgid=acme,x-api-key=collector%20key")
    settings = backend_settings.model_copy(
        update={"otel_exporter_otlp_endpoint": otlp_receiver.endpoint, "tracing_sample_ratio": 1}
    )
    async with running_app(settings) as app, client_for(app) as client:
        await sign_up(client)
    assert otlp_receiver.requests
    for request in otlp_receiver.requests:
        assert request.headers["x-scope-orgid"] == "acme"
        assert request.headers["x-api-key"] == "collector key"


async def test_redis_commands_are_spans_without_their_arguments(
    backend_settings: Settings, otlp_receiver: OtlpReceiver, backend: str
) -> None:
    """On Redis, the login's store calls are CLIENT spans; keys and values become ``?``."""
    if backend == "embedded":
        pytest.skip("the in-process store makes no Redis calls")
    settings = backend_settings.model_copy(
        update={"otel_exporter_otlp_endpoint": otlp_receiver.endpoint, "tracing_sample_ratio": 1}
    )
    async with running_app(settings) as app, client_for(app) as client:
        account = await sign_up(client)
    spans = otlp_receiver.spans()

    login = one(spans, "POST /api/v1/auth/login")
    redis_spans = [s for s in spans if s.attributes.get("db.system") == "redis"]
    assert any(s.trace_id == login.trace_id for s in redis_spans)
    for span in redis_spans:
        assert span.kind == CLIENT
        for command in span.attributes["db.statement"].splitlines():
            verb, *arguments = command.split()
            assert verb.isupper()
            assert set(arguments) <= {"?"}
        assert settings.kv_key_prefix not in span.text()
        assert account.user_id not in span.text()


async def test_outgoing_httpx_calls_are_client_spans_while_the_app_runs(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """An httpx request made under a span is its CLIENT child; shutdown removes the hook."""
    settings = backend_settings.model_copy(
        update={"otel_exporter_otlp_endpoint": otlp_receiver.endpoint, "tracing_sample_ratio": 1}
    )
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    async with running_app(settings) as app:
        with app.state.runtime.tracer.start_as_current_span("outbound"):
            async with httpx.AsyncClient() as http:
                response = await http.get(f"{otlp_receiver.endpoint}/ping")
                assert response.status_code == 200
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    spans = otlp_receiver.spans()

    (call,) = children(spans, one(spans, "outbound"))
    assert (call.name, call.kind) == ("GET", CLIENT)

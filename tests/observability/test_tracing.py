"""What a trace collector receives: real flows through the API, exported over OTLP/HTTP.

Each test runs its own app with tracing pointed at a real receiver on 127.0.0.1
(``otlp_receiver``). Spans are asserted after the app's lifespan has ended, which shuts
the provider down and so flushes every buffered span to the receiver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from faultmaven_auth import __version__
from faultmaven_auth.config import Environment, Settings
from tests.conftest import PASSWORD, client_for, running_app, sign_up, unique_email
from tests.observability.otlp_receiver import (
    CLIENT,
    INTERNAL,
    SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    OtlpReceiver,
    ReceivedSpan,
    children,
    named,
    one,
)

LOGIN_SPAN = "POST /api/v1/auth/login"


def traced(settings: Settings, receiver: OtlpReceiver, **overrides: Any) -> Settings:
    """``settings`` with tracing exported to ``receiver``, every trace sampled."""
    update = {
        "otel_exporter_otlp_endpoint": receiver.endpoint,
        "tracing_sample_ratio": 1.0,
        **overrides,
    }
    return settings.model_copy(update=update)


async def test_login_spans_nest_under_the_request_span(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """authenticate_user is a child of the login's server span; lookup and verify are its."""
    async with (
        running_app(traced(backend_settings, otlp_receiver)) as app,
        client_for(app) as client,
    ):
        account = await sign_up(client)
    spans = otlp_receiver.spans()

    server = one(spans, LOGIN_SPAN)
    assert server.kind == SERVER
    assert server.parent_span_id == ""
    assert server.attributes == {
        "http.request.method": "POST",
        "http.route": "/api/v1/auth/login",
        "http.response.status_code": 200,
        "url.path": "/api/v1/auth/login",
        "url.scheme": "http",
    }
    authenticate = one(spans, "authenticate_user")
    assert authenticate.kind == INTERNAL
    assert (authenticate.trace_id, authenticate.parent_span_id) == (
        server.trace_id,
        server.span_id,
    )
    assert authenticate.attributes == {"auth_success": True, "enduser.id": account.user_id}
    lookup, verify = one(spans, "db_query_user"), one(spans, "verify_password")
    assert lookup.parent_span_id == authenticate.span_id
    assert verify.parent_span_id == authenticate.span_id
    assert [s.name for s in children(spans, authenticate)] == ["db_query_user", "verify_password"]

    (query,) = children(spans, lookup)
    assert (query.name, query.kind) == ("SELECT", CLIENT)
    system = "sqlite" if backend_settings.uses_sqlite else "postgresql"
    assert query.attributes["db.system.name"] == system
    assert "FROM users JOIN organizations" in query.attributes["db.query.text"]
    # The session is written after the credentials are checked, under the request span.
    writes = [s for s in children(spans, server) if s.kind == CLIENT]
    if backend_settings.uses_sqlite:
        assert {"INSERT", "UPDATE"} <= {s.name for s in writes}
    else:
        # One statement: the user's UPDATE, the token's INSERT and the audit append (the
        # other CLIENT spans are the store's: lockout and rate-limit keys).
        (write,) = [s for s in writes if "db.query.text" in s.attributes]
        assert (write.name, write.attributes["db.operation.name"]) == ("UPDATE", "UPDATE")
        text = write.attributes["db.query.text"]
        assert "UPDATE users" in text
        assert "INSERT INTO refresh_tokens" in text
        assert "audit_chain_append(" in text


async def test_refused_login_is_an_outcome_not_an_error(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """A refused login: auth_success=false, the reason, no user id, and no span in error."""
    async with (
        running_app(traced(backend_settings, otlp_receiver)) as app,
        client_for(app) as client,
    ):
        account = await sign_up(client)  # one good login first
        response = await client.post(
            "/api/v1/auth/login", json={"email": account.email, "password": "Wrong-Pass-77"}
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"
        unknown = await client.post(
            "/api/v1/auth/login", json={"email": unique_email(), "password": PASSWORD}
        )
        assert unknown.status_code == 401
    spans = otlp_receiver.spans()

    outcomes = sorted(
        (s.attributes.get("auth.failure_reason", "-"), s.attributes)
        for s in named(spans, "authenticate_user")
    )
    assert outcomes == [
        ("-", {"auth_success": True, "enduser.id": account.user_id}),
        ("invalid_password", {"auth_success": False, "auth.failure_reason": "invalid_password"}),
        ("unknown_user", {"auth_success": False, "auth.failure_reason": "unknown_user"}),
    ]
    statuses = sorted(s.attributes["http.response.status_code"] for s in named(spans, LOGIN_SPAN))
    assert statuses == [200, 401, 401]
    # 4xx is the caller's error, not the server's: nothing is marked as failed.
    assert {s.status_code for s in spans} == {STATUS_UNSET}
    # Unknown email or not, the password is verified (same time, same spans).
    assert len(named(spans, "verify_password")) == 3


async def test_spans_carry_the_service_resource(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """service.name, service.version and deployment.environment come from the settings."""
    settings = traced(
        backend_settings,
        otlp_receiver,
        service_name="auth-under-test",
        environment=Environment.STAGING,
    )
    async with running_app(settings) as app, client_for(app) as client:
        await sign_up(client)
    spans = otlp_receiver.spans()

    assert spans
    for span in spans:
        assert span.resource["service.name"] == "auth-under-test"
        assert span.resource["service.version"] == __version__
        assert span.resource["deployment.environment"] == "staging"


async def test_ratio_zero_exports_nothing(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """TRACING_SAMPLE_RATIO=0: requests are served and the collector receives nothing."""
    settings = traced(backend_settings, otlp_receiver, tracing_sample_ratio=0.0)
    async with running_app(settings) as app, client_for(app) as client:
        account = await sign_up(client)
        me = await client.get("/api/v1/auth/me", headers=account.headers)
        assert me.status_code == 200
    assert otlp_receiver.requests == []


async def test_a_sampled_caller_is_traced_even_at_ratio_zero(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """Parent-based sampling: a traceparent flagged sampled is continued at ratio 0."""
    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    settings = traced(backend_settings, otlp_receiver, tracing_sample_ratio=0.0)
    async with running_app(settings) as app, client_for(app) as client:
        account = await sign_up(client)
        response = await client.get(
            "/api/v1/auth/me",
            headers={**account.headers, "traceparent": f"00-{caller_trace}-{caller_span}-01"},
        )
        assert response.status_code == 200
    spans = otlp_receiver.spans()

    server = one(spans, "GET /api/v1/auth/me")
    assert (server.trace_id, server.parent_span_id) == (caller_trace, caller_span)
    # Only the caller's trace: the sign-up and login before it were not sampled.
    assert {s.trace_id for s in spans} == {caller_trace}
    assert len(spans) > 1  # its SQL spans followed the decision too


async def test_an_unsampled_caller_is_not_traced(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """At ratio 1, a request whose traceparent says "not sampled" exports no span."""
    settings = traced(backend_settings, otlp_receiver)
    async with running_app(settings) as app, client_for(app) as client:
        account = await sign_up(client)
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        response = await client.get(
            "/api/v1/auth/me", headers={**account.headers, "traceparent": traceparent}
        )
        assert response.status_code == 200
    spans = otlp_receiver.spans()
    assert named(spans, LOGIN_SPAN)  # the requests without a traceparent were traced
    assert "4bf92f3577b34da6a3ce929d0e0e4736" not in {s.trace_id for s in spans}
    assert named(spans, "GET /api/v1/auth/me") == []


async def test_no_email_password_or_token_in_any_span(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """Sign-up, good and bad logins, refresh, /me, query strings: no secret is exported."""
    wrong_password, stranger = "Not-The-Password-31", unique_email("stranger")
    async with (
        running_app(traced(backend_settings, otlp_receiver)) as app,
        client_for(app) as client,
    ):
        account = await sign_up(client)
        bad = await client.post(
            "/api/v1/auth/login", json={"email": account.email, "password": wrong_password}
        )
        assert bad.status_code == 401
        unknown = await client.post(
            "/api/v1/auth/login", json={"email": stranger, "password": wrong_password}
        )
        assert unknown.status_code == 401
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        assert refreshed.status_code == 200
        new_tokens = refreshed.json()
        me = await client.get(
            "/api/v1/auth/me?token=query-secret-token&email=query-secret-email",
            headers={"Authorization": f"Bearer {new_tokens['access_token']}"},
        )
        assert me.status_code == 200
        listed = await client.get(
            f"{account.org_url}/users?cursor=query-secret-value",
            headers=account.headers,
        )
        assert listed.status_code == 400
        assert listed.json()["error"]["code"] == "INVALID_CURSOR"
    spans = otlp_receiver.spans()
    exported = "\n".join(span.text() for span in spans)

    assert len(spans) > 20  # the flows above were traced: the search below is not vacuous
    assert account.user_id in exported  # enduser.id after a success; the search does work
    for secret in (
        account.email,
        account.email.split("@")[0],
        stranger,
        PASSWORD,
        wrong_password,
        account.access_token,
        account.refresh_token,
        new_tokens["access_token"],
        new_tokens["refresh_token"],
        "query-secret",
    ):
        assert secret not in exported


def exemplar_trace_ids(openmetrics: str, sample_name: str, **labels: str) -> set[str]:
    found = set()
    for family in text_string_to_metric_families(openmetrics):
        for sample in family.samples:
            if sample.name != sample_name or sample.exemplar is None:
                continue
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                found.add(sample.exemplar.labels["trace_id"])
    return found


async def scrape_openmetrics(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    return response.text


async def test_exemplars_link_latency_to_the_login_trace(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """With tracing on, the OpenMetrics scrape carries the login's trace id as exemplars."""
    async with (
        running_app(traced(backend_settings, otlp_receiver)) as app,
        client_for(app) as client,
    ):
        await sign_up(client)
        scraped = await scrape_openmetrics(client)
    login_trace = one(otlp_receiver.spans(), LOGIN_SPAN).trace_id

    http_exemplars = exemplar_trace_ids(
        scraped, "http_request_duration_seconds_bucket", handler="/api/v1/auth/login"
    )
    assert http_exemplars == {login_trace}
    auth_exemplars = exemplar_trace_ids(scraped, "auth_duration_seconds_bucket", method="password")
    assert auth_exemplars == {login_trace}


async def test_no_exemplars_and_no_spans_when_tracing_is_off(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """Tracing off (no endpoint): no exemplar in the scrape and nothing exported."""
    assert not backend_settings.tracing_active
    async with running_app(backend_settings) as app, client_for(app) as client:
        await sign_up(client)
        scraped = await scrape_openmetrics(client)
    assert 'handler="/api/v1/auth/login"' in scraped
    assert exemplar_trace_ids(scraped, "http_request_duration_seconds_bucket") == set()
    assert exemplar_trace_ids(scraped, "auth_duration_seconds_bucket") == set()
    assert otlp_receiver.requests == []


async def test_probes_and_scrapes_make_no_spans(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """/health, /ready and /metrics are not traced; an unknown path is named by method only."""
    async with (
        running_app(traced(backend_settings, otlp_receiver)) as app,
        client_for(app) as client,
    ):
        for path in ("/health", "/ready", "/metrics"):
            assert (await client.get(path)).status_code == 200
        missing = await client.get("/no/such/path?secret=query-secret-value")
        assert missing.status_code == 404
    servers = [s for s in otlp_receiver.spans() if s.kind == SERVER]

    assert [(s.name, s.attributes) for s in servers] == [
        (
            "GET",
            {
                "http.request.method": "GET",
                "url.path": "/no/such/path",
                "url.scheme": "http",
                "http.response.status_code": 404,
            },
        )
    ]


def _backend_sql(backend_settings: Settings) -> str:
    # Both fail inside the driver; PostgreSQL's error message quotes the bound value.
    if backend_settings.uses_sqlite:
        return "SELECT :value FROM no_such_table"
    return "SELECT CAST(:value AS INTEGER)"


async def test_a_failed_statement_is_recorded_by_error_type_only(
    backend_settings: Settings, otlp_receiver: OtlpReceiver
) -> None:
    """A failing SQL statement ends its span in error, named by type; the message is left out."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    secret = "query-secret-value"
    async with running_app(traced(backend_settings, otlp_receiver)) as app:
        runtime = app.state.runtime
        with runtime.tracer.start_as_current_span("probe"), pytest.raises(DBAPIError) as raised:
            async with runtime.db.session() as session:
                await session.execute(text(_backend_sql(backend_settings)), {"value": secret})
    spans = otlp_receiver.spans()

    (failed,) = children(spans, one(spans, "probe"))
    assert failed.kind == CLIENT
    assert failed.status_code == STATUS_ERROR
    error_type = type(raised.value.orig).__qualname__
    assert failed.attributes["error.type"] == error_type
    assert failed.status_message == error_type
    assert secret not in failed.text()
    if not backend_settings.uses_sqlite:
        assert secret in str(raised.value)  # the message would have leaked it


async def test_each_app_exports_to_its_own_collector(
    backend_settings: Settings, start_otlp_receiver: Callable[[], OtlpReceiver]
) -> None:
    """Two tracing apps in one process: each one's spans reach only its own collector."""
    first_receiver, second_receiver = start_otlp_receiver(), start_otlp_receiver()
    async with (
        running_app(traced(backend_settings, first_receiver)) as first,
        running_app(traced(backend_settings, second_receiver)) as second,
        client_for(first) as first_client,
        client_for(second) as second_client,
    ):
        first_account = await sign_up(first_client)
        second_account = await sign_up(second_client)
    first_spans, second_spans = first_receiver.spans(), second_receiver.spans()

    def users(spans: list[ReceivedSpan]) -> set[str]:
        return {s.attributes["enduser.id"] for s in named(spans, "authenticate_user")}

    assert users(first_spans) == {first_account.user_id}
    assert users(second_spans) == {second_account.user_id}
    assert not {s.trace_id for s in first_spans} & {s.trace_id for s in second_spans}

"""What Prometheus sees: real flows through the API, then a scrape of /metrics.

Each test builds its own app (fresh registry) on the backend's database, so the counters
it asserts start at zero.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from faultmaven_auth.config import Settings
from faultmaven_auth.observability.db_metrics import operation_of, statement_operation
from tests.conftest import (
    PASSWORD,
    SYSTEM_ROLE_IDS,
    Account,
    add_member,
    client_for,
    delete_redis_prefix,
    running_app,
    sign_up,
    unavailable,
)
from tests.support.server import free_port


@pytest.fixture
async def fresh(backend_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a new app (new metrics registry) on the session's database."""
    # Its own key prefix too: the shared store's counters (success rate) start empty.
    prefix = f"{backend_settings.kv_key_prefix}m{secrets.token_hex(4)}:"
    settings = backend_settings.model_copy(
        update={"metrics_cache_seconds": 0, "kv_key_prefix": prefix}
    )
    try:
        async with running_app(settings) as app, client_for(app) as http:
            yield http
    finally:
        if not settings.uses_in_process_store:
            await delete_redis_prefix(prefix)


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_login_outcomes_are_counted_exactly(fresh: httpx.AsyncClient) -> None:
    """3 failed and 2 good logins give exactly those counts, and 2 access tokens."""
    account = await sign_up(fresh)  # one good login inside
    for _ in range(3):
        bad = await fresh.post(
            "/api/v1/auth/login", json={"email": account.email, "password": "Wrong-Password-9"}
        )
        assert bad.status_code == 401
    good = await fresh.post(
        "/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert good.status_code == 200

    samples = await scrape(fresh)
    assert value(samples, "auth_attempts_total", method="password", status="failure") == 3
    assert value(samples, "auth_attempts_total", method="password", status="success") == 2
    assert value(samples, "tokens_generated_total", token_type="access") == 2
    assert value(samples, "tokens_generated_total", token_type="refresh") == 2
    assert value(samples, "auth_duration_seconds_count", method="password") == 5
    assert value(samples, "auth_success_rate") == pytest.approx(2 / 5)


async def test_http_metrics_use_route_templates_and_exact_status(
    fresh: httpx.AsyncClient,
) -> None:
    """handler is the route template, status the exact code; unknown paths fold into one."""
    account = await sign_up(fresh)
    assert (await fresh.get(f"{account.org_url}/users", headers=account.headers)).status_code == 200
    other = "00000000-0000-7000-8000-000000000000"
    missing = await fresh.get(f"/api/v1/organizations/{other}/users", headers=account.headers)
    assert missing.status_code == 404
    for path in ("/no/such/path", "/another/unknown"):
        assert (await fresh.get(path)).status_code == 404
    await fresh.get("/health")

    samples = await scrape(fresh)
    users = "/api/v1/organizations/{org_id}/users"
    assert value(samples, "http_requests_total", handler=users, method="GET", status="200") == 1
    assert value(samples, "http_requests_total", handler=users, method="GET", status="404") == 1
    assert value(samples, "http_requests_total", handler="none", method="GET", status="404") == 2
    assert value(samples, "http_request_duration_seconds_count", handler=users, method="GET") == 2
    assert value(samples, "http_requests_inprogress", handler=users, method="GET") == 0
    assert value(samples, "api_calls_by_endpoint_total", endpoint=users, method="GET") == 2
    assert value(samples, "security_events_total", event_type="cross_tenant_access") == 1
    labels = {dict(k[1]).get("handler") for k in samples if k[0] == "http_requests_total"}
    assert "/health" not in labels
    assert not any(account.org_id in str(k) for k in samples if k[0].startswith("http_"))


async def test_token_validation_refresh_and_logout_are_counted(fresh: httpx.AsyncClient) -> None:
    """Validations by outcome, refresh attempts, reuse as a security event, session length."""
    account = await sign_up(fresh)
    assert (await fresh.get("/api/v1/auth/me", headers=account.headers)).status_code == 200
    bogus = {"Authorization": "Bearer not.a.token"}
    assert (await fresh.get("/api/v1/auth/me", headers=bogus)).status_code == 401
    rotated = await fresh.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert rotated.status_code == 200
    reuse = await fresh.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert reuse.status_code == 401
    second = await sign_up(fresh)
    assert (await fresh.post("/api/v1/auth/logout", headers=second.headers)).status_code == 204

    samples = await scrape(fresh)
    # me (ok) + logout (ok) succeed; the bogus token fails.
    assert value(samples, "tokens_validated_total", status="success") == 2
    assert value(samples, "tokens_validated_total", status="failure") == 1
    assert value(samples, "auth_attempts_total", method="refresh", status="success") == 1
    assert value(samples, "auth_attempts_total", method="refresh", status="failure") == 1
    assert value(samples, "security_events_total", event_type="refresh_token_reuse") == 1
    # One session ended by reuse revocation, one by logout.
    assert value(samples, "session_duration_seconds_count") == 2


async def test_registration_deletion_and_computed_gauges(
    fresh: httpx.AsyncClient, backend_settings: Settings
) -> None:
    """new_users_total by organization, organizations_deleted_total, active users, org count."""
    before = value(await scrape(fresh), "organizations_total")
    owner = await sign_up(fresh)
    member = await add_member(fresh, owner, "member")
    assert (await fresh.get("/api/v1/auth/me", headers=member.headers)).status_code == 200
    doomed = await sign_up(fresh)

    samples = await scrape(fresh)
    assert value(samples, "new_users_total", organization_id=owner.org_id) == 2
    assert value(samples, "organizations_total") == before + 2
    assert value(samples, "active_users_total", organization_id=owner.org_id) == 2

    assert (await fresh.delete(doomed.org_url, headers=doomed.headers)).status_code == 204
    samples = await scrape(fresh)
    assert value(samples, "organizations_deleted_total") == 1
    assert value(samples, "organizations_total") == before + 1


async def test_privilege_escalation_attempt_is_a_security_event(
    fresh: httpx.AsyncClient,
) -> None:
    """An admin trying to grant the owner role is refused and counted."""
    owner = await sign_up(fresh)
    admin = await add_member(fresh, owner, "admin")
    victim = await add_member(fresh, owner, "member", login_too=False)
    response = await fresh.put(
        f"{owner.org_url}/users/{victim.user_id}/roles",
        headers=admin.headers,
        json={"role_ids": [SYSTEM_ROLE_IDS["owner"]]},
    )
    assert response.status_code == 403
    samples = await scrape(fresh)
    assert value(samples, "security_events_total", event_type="privilege_escalation_attempt") == 1


async def test_database_statements_are_counted_by_operation(fresh: httpx.AsyncClient) -> None:
    """Sign-up inserts rows and login selects them; both show up by operation."""
    await sign_up(fresh)
    samples = await scrape(fresh)
    assert value(samples, "db_queries_total", operation="INSERT") >= 3
    assert value(samples, "db_queries_total", operation="SELECT") >= 1
    total = sum(v for (name, _), v in samples.items() if name == "db_queries_total")
    assert value(samples, "db_query_duration_seconds_count") == total


async def test_organization_label_is_capped(backend_settings: Settings) -> None:
    """Past the configured number of organizations, new ids are labelled 'other'."""
    settings = backend_settings.model_copy(update={"metrics_max_organization_labels": 2})
    async with running_app(settings) as app, client_for(app) as http:
        accounts: list[Account] = [await sign_up(http) for _ in range(3)]
        samples = await scrape(http)
    labelled = {
        dict(labels)["organization_id"] for name, labels in samples if name == "new_users_total"
    }
    assert labelled == {accounts[0].org_id, accounts[1].org_id, "other"}


async def test_openmetrics_exposition_on_request(fresh: httpx.AsyncClient) -> None:
    """Scrapers asking for OpenMetrics get it (the format that carries exemplars)."""
    response = await fresh.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert "_created" not in response.text


async def test_metrics_bearer_token_protects_the_endpoint(backend_settings: Settings) -> None:
    """With METRICS_BEARER_TOKEN set, /metrics needs it."""
    settings = backend_settings.model_copy(
        update={"metrics_bearer_token": SecretStr("scrape-secret-value-123")}
    )
    async with running_app(settings) as app, client_for(app) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await http.get("/metrics", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer scrape-secret-value-123"}
        assert (await http.get("/metrics", headers=right)).status_code == 200


# DESIGN §5 names two gauges with a `_total` suffix (dashboards and alerts use these
# names); promtool's linter flags exactly that and nothing else may be reported.
CONTRACT_LINT = {
    'active_users_total non-counter metrics should not have "_total" suffix',
    'organizations_total non-counter metrics should not have "_total" suffix',
}


async def test_promtool_accepts_a_real_scrape(fresh: httpx.AsyncClient) -> None:
    """`promtool check metrics` parses a real scrape and finds nothing beyond the contract."""
    if shutil.which("promtool") is None:
        unavailable("promtool (Debian package prometheus)", FileNotFoundError("promtool"))
    account = await sign_up(fresh)
    await fresh.get("/api/v1/auth/me", headers=account.headers)
    text = (await fresh.get("/metrics")).text
    result = await asyncio.to_thread(
        subprocess.run,
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    problems = {line.strip() for line in (result.stdout + result.stderr).splitlines() if line}
    # Exit 3 means lint findings only; a parse error would exit 1.
    assert result.returncode in (0, 3), result.stderr
    assert problems <= CONTRACT_LINT, problems
    assert "active_users_total{" in text


async def test_expired_tokens_are_counted_apart(backend_settings: Settings) -> None:
    """An expired (but genuine) access token counts as expired, not as a plain failure."""
    prefix = f"{backend_settings.kv_key_prefix}e{secrets.token_hex(4)}:"
    settings = backend_settings.model_copy(update={"kv_key_prefix": prefix})
    try:
        async with running_app(settings) as app, client_for(app) as http:
            account = await sign_up(http)
            runtime = app.state.runtime
            key = runtime.keys.current()
            now = int(time.time())
            expired = jwt.encode(
                {
                    "iss": settings.jwt_issuer, "aud": settings.jwt_audience,
                    "sub": account.user_id, "org_id": account.org_id,
                    "sid": str(uuid.uuid4()), "jti": str(uuid.uuid4()), "type": "access",
                    "iat": now - 3600, "exp": now - 1800,
                },
                key.private_key, algorithm=key.algorithm, headers={"kid": key.kid},
            )  # fmt: skip
            response = await http.get(
                "/api/v1/auth/me", headers={"Authorization": f"Bearer {expired}"}
            )
            assert response.status_code == 401
            samples = await scrape(http)
    finally:
        if not settings.uses_in_process_store:
            await delete_redis_prefix(prefix)
    assert value(samples, "tokens_validated_total", status="expired") == 1
    assert value(samples, "tokens_validated_total", status="failure") == 0


async def test_metrics_port_serves_metrics_apart_from_the_api(
    backend_settings: Settings,
) -> None:
    """With METRICS_PORT, /metrics answers on that port only; the API port says 404."""
    port = free_port()
    settings = backend_settings.model_copy(update={"metrics_port": port})
    async with running_app(settings) as app, client_for(app) as http:
        assert (await http.get("/metrics")).status_code == 404
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as side:
            scraped = await side.get("/metrics")
            assert scraped.status_code == 200
            assert "http_requests_total" in scraped.text
            other = await side.get("/api/v1/auth/me")
            assert other.status_code == 404
    # Stopped with the app: the port is free again.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_alerted_on_counters_are_exported_at_zero_before_any_event(
    fresh: httpx.AsyncClient,
) -> None:
    """A fresh service already exports the series alerts and SSO panels read, at 0, so
    ``increase()`` sees the first event after a start."""
    samples = await scrape(fresh)
    expected = [
        ("auth_attempts_total", {"method": method, "status": status})
        for method in ("password", "refresh", "sso_oidc", "sso_saml")
        for status in ("success", "failure")
    ] + [
        ("sso_attempts_total", {"provider_type": provider_type, "status": status})
        for provider_type in ("oidc", "saml")
        for status in ("success", "failure")
    ]
    for name, labels in expected:
        key = (name, tuple(sorted(labels.items())))
        assert samples.get(key) == 0.0, (name, labels)


@pytest.mark.parametrize(
    ("statement", "operation", "label"),
    [
        ("SELECT users.id FROM users", "SELECT", "SELECT"),
        ("  insert into t (a) values ($1)", "INSERT", "INSERT"),
        ("DELETE FROM t WHERE id = $1", "DELETE", "DELETE"),
        # A read-only WITH is a read, whatever its columns are called.
        (
            "WITH recent AS (SELECT updated_at, deleted FROM t) SELECT * FROM recent",
            "SELECT",
            "SELECT",
        ),
        # PostgreSQL's one-statement refresh and login: a write, labelled by its first one.
        (
            "WITH claimed AS (UPDATE refresh_tokens SET rotated_at=$1 RETURNING id), "
            "successor AS (INSERT INTO refresh_tokens SELECT * FROM claimed) "
            "SELECT * FROM audit_chain_append($2)",
            "UPDATE",
            "UPDATE",
        ),
        ("with issued as (insert into t values ($1)) select 1", "INSERT", "INSERT"),
        ("PRAGMA journal_mode", "PRAGMA", "OTHER"),
        ("", "", "OTHER"),
    ],
)
def test_a_statements_operation(statement: str, operation: str, label: str) -> None:
    """The span's operation and the metric's label: a data-modifying WITH is its write."""
    assert statement_operation(statement) == operation
    assert operation_of(statement) == label

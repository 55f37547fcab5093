"""Per-address rate limits and the credential-stuffing throttle, on the test's clock."""

from __future__ import annotations

import httpx
import pytest

from faultmaven_auth.config import Settings, StoreFailurePolicy
from faultmaven_auth.storage.kv import StoreUnavailable
from tests.conftest import PASSWORD, sign_up, unique_email
from tests.security.conftest import LogLines, StartProtected, metric, new_ip, scrape
from tests.support.server import free_port

WRONG = "Wrong-Password-123"


async def login(client: httpx.AsyncClient, email: str, password: str = WRONG) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_login_limits_per_minute_and_per_hour(
    protected: StartProtected, logs: LogLines
) -> None:
    """3/minute;5/hour: the 4th in a minute and the 6th in the hour get 429 + Retry-After."""
    async with protected(rate_limit_login="3/minute;5/hour") as p, p.client() as client:
        email = unique_email("rl")
        assert [(await login(client, email)).status_code for _ in range(3)] == [401] * 3
        refused = await login(client, email)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "RATE_LIMITED"
        assert refused.headers["retry-after"] == "60"
        p.clock.advance(60)
        assert (await login(client, unique_email("rl"))).status_code == 401
        hourly = await login(client, unique_email("rl"))
        assert hourly.status_code == 429
        document = (await client.get("/openapi.json")).json()
        assert "429" in document["paths"]["/api/v1/auth/login"]["post"]["responses"]
        assert hourly.headers["retry-after"] == str(3600 - 60)
        # Another address is not affected.
        async with p.client() as other:
            assert (await login(other, email)).status_code == 401
        samples = await scrape(client)
    assert metric(samples, "security_events_total", event_type="rate_limited") == 2
    assert metric(samples, "auth_attempts_total", method="password", status="failure") == 7
    reasons = [r["reason"] for r in logs.records("Failed login attempt")]
    assert reasons.count("rate_limited") == 2
    assert logs.records("Rate limit exceeded", event_type="rate_limited", scope="login")


@pytest.mark.parametrize("scope", ["register", "invitation", "refresh", "introspect"])
async def test_other_endpoints_are_rate_limited(protected: StartProtected, scope: str) -> None:
    """Each endpoint answers its first request normally and the second over 1/minute 429."""
    limit = {f"rate_limit_{scope}": "1/minute"}
    requests = {
        "register": (
            "/api/v1/auth/register",
            {"organization_name": "Rl", "full_name": "R L", "password": PASSWORD},
        ),
        "invitation": (
            "/api/v1/auth/register",
            {"invitation_token": "not-a-real-invitation", "full_name": "R", "password": PASSWORD},
        ),
        "refresh": ("/api/v1/auth/refresh", {"refresh_token": "fmr_not-a-real-token-xx"}),
        "introspect": ("/api/v1/auth/introspect", {"token": "x.y.z"}),
    }
    path, fixed = requests[scope]

    def body() -> dict[str, str]:
        signing_up = path.endswith("/register")
        return {**fixed, "email": unique_email("rl")} if signing_up else fixed

    async with protected(**limit) as p, p.client() as client:
        statuses = []
        for _ in range(2):
            response = await client.post(path, json=body())
            statuses.append(response.status_code)
        assert statuses[0] != 429
        assert statuses[1] == 429
        assert response.headers["retry-after"] == "60"
        document = (await client.get("/openapi.json")).json()
        assert "429" in document["paths"][path]["post"]["responses"]
        if scope == "register":
            # Invitation acceptance has its own budget.
            token_body = {**requests["invitation"][1], "email": unique_email("rl")}
            assert (await client.post(path, json=token_body)).status_code == 400
        p.clock.advance(60)
        again = await client.post(path, json=body())
        assert again.status_code == statuses[0]


async def test_failures_across_many_accounts_block_the_address(
    protected: StartProtected, logs: LogLines
) -> None:
    """10 distinct accounts failing from one address: it gets 429 until the window ends."""
    ip = new_ip()
    async with protected() as p, p.client(ip) as client:
        account = await sign_up(client)
        for _ in range(10):
            assert (await login(client, unique_email("stuffed"))).status_code == 401
        blocked = await login(client, account.email, PASSWORD)
        assert blocked.status_code == 429
        assert blocked.json()["error"]["code"] == "RATE_LIMITED"
        assert blocked.headers["retry-after"] == "600"
        async with p.client() as elsewhere:
            assert (await login(elsewhere, account.email, PASSWORD)).status_code == 200
        samples = await scrape(client)
        p.clock.advance(600)
        assert (await login(client, account.email, PASSWORD)).status_code == 200
    assert metric(samples, "security_events_total", event_type="credential_stuffing_detected") == 1
    (alert,) = logs.records("Potential credential stuffing attack")
    assert alert["level"] == "CRITICAL"
    assert alert["ip_address"] == ip
    assert alert["distinct_accounts"] == 10


async def test_many_failures_on_few_accounts_block_the_address(protected: StartProtected) -> None:
    """20 failures from one address (4 accounts x 5) block it even under 10 accounts."""
    async with protected() as p, p.client() as client:
        emails = [unique_email("few") for _ in range(4)]
        for email in emails:
            for _ in range(5):
                assert (await login(client, email)).status_code == 401
        blocked = await login(client, unique_email("next"))
        assert blocked.status_code == 429
        assert blocked.json()["error"]["code"] == "RATE_LIMITED"


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
async def test_store_outage_policy(
    protected: StartProtected, logs: LogLines, backend_settings: Settings, policy: str
) -> None:
    """Store down: fail_closed answers 503; fail_open goes on unprotected; both say so."""
    if backend_settings.uses_in_process_store:
        pytest.skip("the in-process store cannot be down")
    broken = {
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        "login_protection_store_failure": StoreFailurePolicy(policy),
        "health_check_timeout_seconds": 0.5,
    }
    async with protected(**broken) as p, p.client() as client:
        response = await login(client, unique_email("outage"))
        ready = await client.get("/ready")
    if policy == "fail_closed":
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "LOGIN_PROTECTION_UNAVAILABLE"
        assert ready.json()["login_protection"] == "failing_closed"
    else:
        assert response.status_code == 401
        assert ready.json()["login_protection"] == "failing_open"
    assert ready.status_code == 503
    assert ready.json()["checks"]["login_protection"] is False
    (line, *_) = logs.records(logger="security", level="ERROR")
    assert line["message"].startswith("Login protection store unavailable")
    assert line["policy"] == policy


async def test_a_store_outage_after_the_password_check_does_not_undo_a_login(
    protected: StartProtected, logs: LogLines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fail_closed, store lost between the reservation and the end of a successful login:
    the committed session is answered 200 (it works), never a 503 for a login that
    happened; the uncleared count is logged and counted."""
    closed = {"login_protection_store_failure": StoreFailurePolicy.FAIL_CLOSED}
    async with protected(**closed) as p, p.client() as client:
        account = await sign_up(client)

        async def store_lost(*_: object) -> None:
            raise StoreUnavailable("connection refused")

        # Lost for every way of deleting (clearing the count is one delete_many).
        monkeypatch.setattr(p.runtime.kv, "delete", store_lost)
        monkeypatch.setattr(p.runtime.kv, "delete_many", store_lost)
        response = await login(client, account.email, PASSWORD)
        monkeypatch.undo()
        assert response.status_code == 200, response.text
        me = await client.get(
            "/api/v1/auth/me",
            headers={"Authorization": f"Bearer {response.json()['access_token']}"},
        )
        assert me.status_code == 200
        samples = await scrape(client)
    assert metric(samples, "telemetry_store_errors_total", operation="lockout_reset") == 1
    [line] = logs.records(logger="security", level="ERROR")
    assert line["check"] == "lockout_reset"


def test_production_fails_closed_by_default() -> None:
    """Without the setting, production refuses logins on an outage; development lets them by."""
    assert Settings(environment="production").store_failure_policy.value == "fail_closed"
    assert Settings(environment="development").store_failure_policy.value == "fail_open"


def test_malformed_rate_limit_is_refused_at_start() -> None:
    """RATE_LIMIT_LOGIN must read '<count>/<period>'; anything else stops the settings load."""
    with pytest.raises(ValueError, match="rate limit"):
        Settings(rate_limit_login="ten per minute")

"""Security events from real requests: the ``security`` log line and the scraped counter.

Each test runs on a fresh app (fresh metrics registry), drives the API the way an
attacker or a careless admin would, then checks what an operator sees: the JSON line on
the ``security`` logger as production formats it, and ``security_events_total``.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from faultmaven_auth.security.events import (
    SCHEMA_VERSION,
    SecurityEventType,
    emit_security_event,
)
from tests.conftest import PASSWORD, SYSTEM_ROLE_IDS, Account, add_member, sign_up
from tests.security.conftest import FreshApp, SecurityLines, sample, scrape

AGENT = {"User-Agent": "attack-tool/1.0"}


async def audit_items(http: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await http.get(f"{account.org_url}/audit-events?limit=200", headers=account.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_missing_permission_is_an_unauthorized_access_attempt(
    fresh_app: FreshApp, security_lines: SecurityLines
) -> None:
    """A viewer deleting the organization: 403, a WARNING line with who/what/which, counted."""
    async with fresh_app() as http:
        owner = await sign_up(http)
        viewer = await add_member(http, owner, "viewer")
        refused = await http.delete(
            owner.org_url,
            headers={**viewer.headers, **AGENT, "X-Request-ID": "probe-0001"},
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "PERMISSION_DENIED"
        samples = await scrape(http)
        audit = await http.get(
            f"{owner.org_url}/audit-events",
            headers=owner.headers,
            params={"event_type": "authz.permission_denied"},
        )

    kind = "privilege_escalation_attempt"
    assert sample(samples, "security_events_total", event_type=kind) == 1
    [event] = security_lines.events(kind)
    assert event["level"] == "WARNING"
    assert event["logger"] == "security"
    assert event["message"] == "Unauthorized access attempt"
    assert event["schema_version"] == SCHEMA_VERSION
    assert event["user_id"] == viewer.user_id
    assert event["organization_id"] == owner.org_id
    assert event["attempted_resource"] == "DELETE /api/v1/organizations/{org_id}"
    assert event["required_permission"] == "organization:delete"
    assert event["user_permissions"] == sorted(
        ["organization:read", "users:read", "teams:read", "roles:read"]
    )
    assert event["reason"] == "missing_permission"
    assert event["request_id"] == "probe-0001"
    assert event["client_ip"] == "203.0.113.7"
    assert event["user_agent"] == "attack-tool/1.0"
    # The audit log still records the refusal.
    assert audit.status_code == 200
    assert [e["actor_id"] for e in audit.json()["items"]] == [viewer.user_id]


async def test_another_tenants_resource_is_a_cross_tenant_access_event(
    fresh_app: FreshApp, security_lines: SecurityLines
) -> None:
    """Reading another organization's users: 404, a cross_tenant_access line, counted."""
    async with fresh_app() as http:
        mallory = await sign_up(http, "Mallory Corp")
        victim = await sign_up(http, "Victim Inc")
        response = await http.get(f"{victim.org_url}/users", headers=mallory.headers)
        assert response.status_code == 404
        samples = await scrape(http)
        mallory_log = await audit_items(http, mallory)
        victim_log = await audit_items(http, victim)

    # Audited in the caller's organization; the other tenant's log is not written to.
    [audited] = [e for e in mallory_log if e["event_type"] == "authz.cross_tenant_access"]
    assert audited["actor_id"] == mallory.user_id
    assert audited["outcome"] == "denied"
    assert audited["details"] == {
        "permission": "users:read",
        "method": "GET",
        "route": "/api/v1/organizations/{org_id}/users",
        "target_organization_id": victim.org_id,
    }
    assert not [e for e in victim_log if e["event_type"].startswith("authz.")]
    assert sample(samples, "security_events_total", event_type="cross_tenant_access") == 1
    [event] = security_lines.events("cross_tenant_access")
    assert event["level"] == "WARNING"
    assert event["message"] == "Unauthorized access attempt"
    assert event["user_id"] == mallory.user_id
    assert event["organization_id"] == mallory.org_id
    assert event["target_organization_id"] == victim.org_id
    assert event["attempted_resource"] == "GET /api/v1/organizations/{org_id}/users"
    assert event["required_permission"] == "users:read"
    assert "organization:delete" in event["user_permissions"]
    assert event["reason"] == "other_organization"


async def test_granting_beyond_ones_permissions_is_a_privilege_escalation_attempt(
    fresh_app: FreshApp, security_lines: SecurityLines
) -> None:
    """An admin granting the owner role: 403, the line names the caller and the route."""
    async with fresh_app() as http:
        owner = await sign_up(http)
        admin = await add_member(http, owner, "admin")
        victim = await add_member(http, owner, "member", login_too=False)
        response = await http.put(
            f"{owner.org_url}/users/{victim.user_id}/roles",
            headers=admin.headers,
            json={"role_ids": [SYSTEM_ROLE_IDS["owner"]]},
        )
        assert response.status_code == 403
        samples = await scrape(http)

    kind = "privilege_escalation_attempt"
    assert sample(samples, "security_events_total", event_type=kind) == 1
    [event] = security_lines.events(kind)
    assert event["message"] == "Unauthorized access attempt"
    assert event["reason"] == "beyond_own_permissions"
    assert event["user_id"] == admin.user_id
    assert event["attempted_resource"] == "PUT /api/v1/organizations/{org_id}/users/{user_id}/roles"
    assert "organization:delete" not in event["user_permissions"]
    assert event["detail"]


async def test_removing_the_last_owner_is_reported(
    fresh_app: FreshApp, security_lines: SecurityLines
) -> None:
    """Demoting and deactivating the last owner: 409 LAST_OWNER, two events, counted."""
    async with fresh_app() as http:
        owner = await sign_up(http)
        demote = await http.put(
            f"{owner.org_url}/users/{owner.user_id}/roles",
            headers=owner.headers,
            json={"role_ids": [SYSTEM_ROLE_IDS["admin"]]},
        )
        deactivate = await http.delete(
            f"{owner.org_url}/users/{owner.user_id}", headers=owner.headers
        )
        samples = await scrape(http)

    for response in (demote, deactivate):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "LAST_OWNER"
    kind = "privilege_escalation_attempt"
    assert sample(samples, "security_events_total", event_type=kind) == 2
    events = security_lines.events(kind)
    assert [e["attempted_resource"] for e in events] == [
        "PUT /api/v1/organizations/{org_id}/users/{user_id}/roles",
        "DELETE /api/v1/organizations/{org_id}/users/{user_id}",
    ]
    assert {e["reason"] for e in events} == {"last_owner"}
    assert {e["user_id"] for e in events} == {owner.user_id}


async def test_refresh_token_reuse_goes_through_the_security_api(
    fresh_app: FreshApp, security_lines: SecurityLines
) -> None:
    """Presenting a rotated refresh token: 401, the session's user and org in the line."""
    async with fresh_app() as http:
        account = await sign_up(http)
        body = {"refresh_token": account.refresh_token}
        assert (await http.post("/api/v1/auth/refresh", json=body)).status_code == 200
        reuse = await http.post("/api/v1/auth/refresh", json=body, headers=AGENT)
        assert reuse.status_code == 401
        samples = await scrape(http)

    assert sample(samples, "security_events_total", event_type="refresh_token_reuse") == 1
    [event] = security_lines.events("refresh_token_reuse")
    assert event["level"] == "WARNING"
    assert event["user_id"] == account.user_id
    assert event["organization_id"] == account.org_id
    assert event["session_id"]
    assert event["user_agent"] == "attack-tool/1.0"
    assert account.refresh_token not in "\n".join(security_lines.lines)


async def test_event_fields_are_redacted_like_every_log_line(
    security_lines: SecurityLines,
) -> None:
    """Secret-named fields are replaced and emails masked before the line is written."""
    counted: list[str] = []

    class Counter:
        def security_event(self, event_type: str) -> None:
            counted.append(event_type)

    emit_security_event(
        SecurityEventType.BRUTE_FORCE_DETECTED,
        "Brute force against jane.doe@example.com",
        metrics=Counter(),
        level=logging.ERROR,
        target_email="jane.doe@example.com",
        password=PASSWORD,
        attempts={"count": 20, "token": "abc.def.ghi"},
    )
    [event] = security_lines.events("brute_force_detected")
    assert counted == ["brute_force_detected"]
    assert event["level"] == "ERROR"
    assert event["message"] == "Brute force against j***@example.com"
    assert event["target_email"] == "j***@example.com"
    assert event["password"] == "[REDACTED]"
    assert event["attempts"] == {"count": 20, "token": "[REDACTED]"}
    assert PASSWORD not in security_lines.lines[0]


def test_event_types_are_exactly_the_metrics_contract() -> None:
    """The seven event types of DESIGN §5, spelled as the dashboards expect."""
    assert {t.value for t in SecurityEventType} == {
        "brute_force_detected",
        "account_locked",
        "credential_stuffing_detected",
        "rate_limited",
        "privilege_escalation_attempt",
        "cross_tenant_access",
        "refresh_token_reuse",
    }


def test_fields_may_not_shadow_the_line_fields() -> None:
    """A field named like a line or record field (timestamp, name) is a programming error."""
    with pytest.raises(ValueError, match="timestamp"):
        emit_security_event(
            SecurityEventType.RATE_LIMITED, "x", metrics=None, timestamp="2000-01-01"
        )
    with pytest.raises(ValueError, match="name"):
        emit_security_event(SecurityEventType.RATE_LIMITED, "x", metrics=None, name="other")

"""A realistic burst of traffic over HTTP, so every family of metrics has series to query.

Two tenants sign up; their owners log in (and fail to), refresh, reuse a rotated refresh
token, read /me, invite a user who joins, probe the other tenant, hit a missing route,
try to demote the last owner, and one account is locked by repeated wrong passwords.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

PASSWORD = "Correct-Horse-Battery-42"
WRONG = "Wrong-Password-123"
VIEWER_ROLE_ID = "3ca73aea-152f-5df0-92f7-56538e7d9560"
MEMBER_ROLE_ID = "cfdd76b1-af5a-59ce-a0c8-1246d37161ca"
LOGIN_MAX_FAILURES = 5  # the service default


def _email(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}@example.com"


def _expect(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url, response.text)
    body: dict[str, Any] = response.json() if response.content else {}
    return body


def _sign_up(http: httpx.Client, name: str) -> tuple[str, str, str]:
    """(organization id, owner id, owner email)."""
    email = _email("owner")
    body = _expect(
        http.post(
            "/api/v1/auth/register",
            json={"organization_name": name, "email": email, "password": PASSWORD,
                  "full_name": "Owner"},
        ),
        201,
    )  # fmt: skip
    return body["organization"]["id"], body["user"]["id"], email


def _login(http: httpx.Client, email: str, password: str, status: int = 200) -> dict[str, Any]:
    response = http.post("/api/v1/auth/login", json={"email": email, "password": password})
    return _expect(response, status)


def run_workload(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        org_a, owner_a, email_a = _sign_up(http, "Workload A")
        org_b, _, _ = _sign_up(http, "Workload B")
        _login(http, email_a, WRONG, 401)
        tokens = _login(http, email_a, PASSWORD)
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        _expect(http.get("/api/v1/auth/me", headers=auth), 200)
        _expect(http.get("/api/v1/auth/me", headers={"Authorization": "Bearer forged"}), 401)

        rotated = _expect(
            http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
            200,
        )
        # The old refresh token again: reuse, which revokes the whole family.
        _expect(
            http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
        )
        _expect(
            http.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}), 401
        )

        tokens = _login(http, email_a, PASSWORD)
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        invitee = _email("invitee")
        invitation = _expect(
            http.post(
                f"/api/v1/organizations/{org_a}/invitations",
                headers=auth,
                json={"email": invitee, "role_id": VIEWER_ROLE_ID},
            ),
            201,
        )
        _expect(
            http.post(
                "/api/v1/auth/register",
                json={"invitation_token": invitation["token"], "email": invitee,
                      "password": PASSWORD, "full_name": "Invitee"},
            ),
            201,
        )  # fmt: skip
        invitee_tokens = _login(http, invitee, PASSWORD)
        invitee_auth = {"Authorization": f"Bearer {invitee_tokens['access_token']}"}
        _expect(http.get("/api/v1/auth/me", headers=invitee_auth), 200)
        _expect(http.get(f"/api/v1/organizations/{org_a}/users", headers=auth), 200)

        # Another tenant's resources answer 404 (and count as cross-tenant access).
        _expect(http.get(f"/api/v1/organizations/{org_b}/users", headers=auth), 404)
        _expect(http.get("/api/v1/no-such-route"), 404)
        # The last owner demoting themself: refused, a privilege-escalation event.
        _expect(
            http.put(
                f"/api/v1/organizations/{org_a}/users/{owner_a}/roles",
                headers=auth,
                json={"role_ids": [MEMBER_ROLE_ID]},
            ),
            409,
        )

        # Wrong passwords until the account locks; then even the right one is refused.
        for _ in range(LOGIN_MAX_FAILURES):
            _login(http, invitee, WRONG, 401)
        _expect(http.post("/api/v1/auth/login", json={"email": invitee, "password": PASSWORD}), 429)

        _expect(http.post("/api/v1/auth/logout", headers=auth), 204)

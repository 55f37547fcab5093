"""Tenant isolation, table-driven over every route under /api/v1/organizations/{org_id}.

Organization B's owner holds every permission in B. Pointed at organization A (A's
org id, or B's org id with A's resource ids) every route must answer 404 with an error
body: never 403 (which would confirm the id exists), never A's data, and A is left
exactly as it was. ``ROUTES`` must list every tenant route of the OpenAPI schema, so a
new route cannot ship without an isolation case.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import PASSWORD, SYSTEM_ROLE_IDS, unique_email
from tests.organizations.conftest import Tenant, build_tenant, snapshot
from tests.sso.fake_idp import FakeIdp

ORG = "/api/v1/organizations/{org_id}"

Body = Callable[[dict[str, str]], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    body: Body | None = None
    # The error code when the org is the caller's own but the path's resource is A's.
    foreign_resource_code: str | None = None

    def url(self, ids: dict[str, str]) -> str:
        return self.path.format(**ids)

    def payload(self, ids: dict[str, str]) -> dict[str, Any] | None:
        return None if self.body is None else self.body(ids)


def _new_user(_: dict[str, str]) -> dict[str, Any]:
    return {
        "email": unique_email("intruder"),
        "password": PASSWORD,
        "full_name": "Intruder",
        "role_ids": [SYSTEM_ROLE_IDS["member"]],
    }


def _new_invitation(_: dict[str, str]) -> dict[str, Any]:
    return {"email": unique_email("intruder"), "role_id": SYSTEM_ROLE_IDS["admin"]}


def _new_provider() -> dict[str, Any]:
    return {
        "name": "Intruder IdP",
        "issuer": "https://idp.intruder.example.com",
        "client_id": "intruder",
        "client_secret": "intruder-secret",
        "allowed_domains": ["intruder.example.com"],
    }


ROUTES = [
    Route("GET", ORG),
    Route("PATCH", ORG, lambda ids: {"name": "Taken Over"}),
    Route("DELETE", ORG),
    Route("GET", ORG + "/users"),
    Route("POST", ORG + "/users", _new_user),
    Route("GET", ORG + "/users/{user_id}", None, "USER_NOT_FOUND"),
    Route(
        "PATCH",
        ORG + "/users/{user_id}",
        lambda ids: {"full_name": "Taken Over", "password": "Another-Strong-Pass-77"},
        "USER_NOT_FOUND",
    ),
    Route("DELETE", ORG + "/users/{user_id}", None, "USER_NOT_FOUND"),
    Route("GET", ORG + "/users/{user_id}/roles", None, "USER_NOT_FOUND"),
    Route(
        "PUT",
        ORG + "/users/{user_id}/roles",
        lambda ids: {"role_ids": [SYSTEM_ROLE_IDS["viewer"]]},
        "USER_NOT_FOUND",
    ),
    Route("POST", ORG + "/users/{user_id}/unlock", None, "USER_NOT_FOUND"),
    Route("GET", ORG + "/teams"),
    Route("POST", ORG + "/teams", lambda ids: {"name": "Intruders"}),
    Route("GET", ORG + "/teams/{team_id}", None, "TEAM_NOT_FOUND"),
    Route("PATCH", ORG + "/teams/{team_id}", lambda ids: {"name": "Renamed"}, "TEAM_NOT_FOUND"),
    Route("DELETE", ORG + "/teams/{team_id}", None, "TEAM_NOT_FOUND"),
    Route("GET", ORG + "/teams/{team_id}/members", None, "TEAM_NOT_FOUND"),
    Route(
        "POST",
        ORG + "/teams/{team_id}/members",
        lambda ids: {"user_id": ids["user_id"]},
        "TEAM_NOT_FOUND",
    ),
    Route("DELETE", ORG + "/teams/{team_id}/members/{user_id}", None, "TEAM_NOT_FOUND"),
    Route("GET", ORG + "/roles"),
    Route("POST", ORG + "/roles", lambda ids: {"name": "Intruder", "permissions": ["users:read"]}),
    Route("GET", ORG + "/roles/{role_id}", None, "ROLE_NOT_FOUND"),
    Route(
        "PATCH",
        ORG + "/roles/{role_id}",
        lambda ids: {"permissions": ["organization:delete", "users:delete"]},
        "ROLE_NOT_FOUND",
    ),
    Route("DELETE", ORG + "/roles/{role_id}", None, "ROLE_NOT_FOUND"),
    Route("GET", ORG + "/invitations"),
    Route("POST", ORG + "/invitations", _new_invitation),
    Route("DELETE", ORG + "/invitations/{invitation_id}", None, "INVITATION_NOT_FOUND"),
    Route("GET", ORG + "/audit-events"),
    Route("GET", ORG + "/audit-events/export"),
    Route("POST", ORG + "/service-clients", lambda ids: {"name": "intruder"}),
    Route("GET", ORG + "/service-clients"),
    Route(
        "DELETE",
        ORG + "/service-clients/{service_client_id}",
        None,
        "SERVICE_CLIENT_NOT_FOUND",
    ),
    Route("GET", ORG + "/sso-providers"),
    # Refused before the issuer would be discovered: no request leaves for it.
    Route("POST", ORG + "/sso-providers", lambda ids: _new_provider()),
    Route("GET", ORG + "/sso-providers/{provider_id}", None, "SSO_PROVIDER_NOT_FOUND"),
    Route(
        "PATCH",
        ORG + "/sso-providers/{provider_id}",
        lambda ids: {"name": "Taken Over", "sso_required": True},
        "SSO_PROVIDER_NOT_FOUND",
    ),
    Route("DELETE", ORG + "/sso-providers/{provider_id}", None, "SSO_PROVIDER_NOT_FOUND"),
    Route("GET", ORG + "/sso-redirect-uris"),
    Route("POST", ORG + "/sso-redirect-uris", lambda ids: {"uri": "https://evil.example.com/cb"}),
    Route("DELETE", ORG + "/sso-redirect-uris/{uri_id}", None, "REDIRECT_URI_NOT_FOUND"),
    Route("GET", ORG + "/sso-domains"),
    Route("POST", ORG + "/sso-domains", lambda ids: {"domain": "intruder.example.com"}),
    Route("POST", ORG + "/sso-domains/{domain_id}/verify", None, "DOMAIN_NOT_FOUND"),
    Route("DELETE", ORG + "/sso-domains/{domain_id}", None, "DOMAIN_NOT_FOUND"),
]

ROUTES_WITH_RESOURCE_IDS = [r for r in ROUTES if r.foreign_resource_code is not None]


def _case_id(route: Route) -> str:
    return f"{route.method} {route.path.removeprefix(ORG) or '/'}"


def assert_not_found(response: httpx.Response, code: str, victim: Tenant) -> None:
    """A 404 carrying only an error with the expected code, and none of the victim's ids."""
    assert response.status_code == 404, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) >= {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    for value in victim.ids().values():
        assert value not in response.text


async def assert_untouched(
    client: httpx.AsyncClient, tenant: Tenant, before: dict[str, Any], intruder_id: str
) -> None:
    """A's data reads back identically, its member still works, nothing was done in A by B."""
    assert await snapshot(client, tenant) == before
    me = await client.get("/api/v1/auth/me", headers=tenant.member.headers)
    assert me.status_code == 200
    assert me.json()["team_ids"] == [tenant.team_id]
    events = await client.get(
        f"{tenant.url}/audit-events",
        headers=tenant.owner.headers,
        params={"actor_id": intruder_id},
    )
    assert events.status_code == 200
    assert events.json()["items"] == []


@pytest.fixture
async def tenants(client: httpx.AsyncClient, local_issuer: FakeIdp) -> tuple[Tenant, Tenant]:
    issuer = local_issuer.issuer
    return (
        await build_tenant(client, "Victim Org", issuer),
        await build_tenant(client, "Intruder Org", issuer),
    )


async def test_every_tenant_route_has_an_isolation_case(app: FastAPI) -> None:
    """The table covers exactly the tenant routes the OpenAPI schema publishes."""
    published = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path == ORG or path.startswith(ORG + "/")
        for method in operations
    }
    tabled = [(r.method, r.path) for r in ROUTES]
    assert len(tabled) == len(set(tabled)), "duplicate rows in ROUTES"
    assert set(tabled) == published


@pytest.mark.parametrize("route", ROUTES, ids=_case_id)
async def test_another_organizations_ids_are_not_found(
    client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant], route: Route
) -> None:
    """B's owner calling a route with A's org id (and A's resource ids) gets 404, A unchanged."""
    victim, intruder = tenants
    before = await snapshot(client, victim)
    ids = victim.ids()
    response = await client.request(
        route.method, route.url(ids), headers=intruder.owner.headers, json=route.payload(ids)
    )
    assert_not_found(response, "ORGANIZATION_NOT_FOUND", victim)
    await assert_untouched(client, victim, before, intruder.owner.user_id)


@pytest.mark.parametrize("route", ROUTES_WITH_RESOURCE_IDS, ids=_case_id)
async def test_another_organizations_resource_ids_in_own_org_are_not_found(
    client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant], route: Route
) -> None:
    """B's owner using B's org id with A's user/team/role/invitation ids gets 404."""
    victim, intruder = tenants
    before = await snapshot(client, victim)
    ids = {**victim.ids(), "org_id": intruder.org_id}
    response = await client.request(
        route.method, route.url(ids), headers=intruder.owner.headers, json=route.payload(ids)
    )
    assert_not_found(response, route.foreign_resource_code or "", victim)
    await assert_untouched(client, victim, before, intruder.owner.user_id)


# A's ids where B's own path resources are real: in the body, or as a second path id.
FOREIGN_IDS_IN_BODY: list[Any] = [
    pytest.param(
        "POST",
        lambda a, b: f"{b.url}/users",
        lambda a, b: {**_new_user({}), "role_ids": [a.role_id]},
        "ROLE_NOT_FOUND",
        id="create user with A's role",
    ),
    pytest.param(
        "PUT",
        lambda a, b: f"{b.url}/users/{b.member.user_id}/roles",
        lambda a, b: {"role_ids": [a.role_id]},
        "ROLE_NOT_FOUND",
        id="assign A's role",
    ),
    pytest.param(
        "POST",
        lambda a, b: f"{b.url}/invitations",
        lambda a, b: {"email": unique_email("intruder"), "role_id": a.role_id},
        "ROLE_NOT_FOUND",
        id="invite with A's role",
    ),
    pytest.param(
        "POST",
        lambda a, b: f"{b.url}/teams/{b.team_id}/members",
        lambda a, b: {"user_id": a.member.user_id},
        "USER_NOT_FOUND",
        id="add A's user to B's team",
    ),
    pytest.param(
        "DELETE",
        lambda a, b: f"{b.url}/teams/{b.team_id}/members/{a.member.user_id}",
        lambda a, b: None,
        "TEAM_MEMBER_NOT_FOUND",
        id="remove A's user from B's team",
    ),
]


@pytest.mark.parametrize(("method", "url", "body", "code"), FOREIGN_IDS_IN_BODY)
async def test_another_organizations_ids_in_bodies_are_not_found(
    client: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    method: str,
    url: Callable[[Tenant, Tenant], str],
    body: Callable[[Tenant, Tenant], dict[str, Any] | None],
    code: str,
) -> None:
    """A's role or user id inside B's own request is unknown to B (404), and A is unchanged."""
    victim, intruder = tenants
    before = await snapshot(client, victim)
    response = await client.request(
        method,
        url(victim, intruder),
        headers=intruder.owner.headers,
        json=body(victim, intruder),
    )
    assert_not_found(response, code, victim)
    await assert_untouched(client, victim, before, intruder.owner.user_id)


async def test_real_and_made_up_org_ids_are_indistinguishable(
    client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    """Another tenant's real org id answers exactly like an id that does not exist."""
    victim, intruder = tenants
    for suffix in ("", "/users", "/teams", "/roles"):
        real = await client.get(
            f"/api/v1/organizations/{victim.org_id}{suffix}", headers=intruder.owner.headers
        )
        made_up = await client.get(
            f"/api/v1/organizations/{uuid.uuid4()}{suffix}", headers=intruder.owner.headers
        )
        assert real.status_code == made_up.status_code == 404
        real_error, made_up_error = real.json()["error"], made_up.json()["error"]
        assert real_error["code"] == made_up_error["code"] == "ORGANIZATION_NOT_FOUND"
        assert real_error["message"] == made_up_error["message"]


async def test_audit_filter_by_a_foreign_actor_shows_nothing(
    client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    """Filtering B's audit log by A's owner id returns no events of A."""
    victim, intruder = tenants
    response = await client.get(
        f"{intruder.url}/audit-events",
        headers=intruder.owner.headers,
        params={"actor_id": victim.owner.user_id},
    )
    assert response.status_code == 200
    assert response.json()["items"] == []
    own = await client.get(
        f"{intruder.url}/audit-events",
        headers=intruder.owner.headers,
        params={"actor_id": intruder.owner.user_id},
    )
    assert own.status_code == 200
    assert own.json()["items"], "B's owner should see their own events"

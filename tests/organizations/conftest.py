"""A fully populated tenant, built over the HTTP API, for the organization tests.

``build_tenant`` gives an organization with an owner, a member in a team, a custom role,
a pending invitation, a service client and its SSO set-up (a provider discovered from a
local issuer, a redirect URI, a claimed domain), so every id a tenant route takes can be
filled with a real one.
``snapshot`` reads all of it back as the owner sees it, to prove nothing changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import SYSTEM_ROLE_IDS, Account, add_member, sign_up, unique_email
from tests.sso.fake_idp import CLIENT_ID, FakeIdp, running_fake_idp


@pytest.fixture(scope="session")
def local_issuer() -> Iterator[FakeIdp]:
    """An OpenID issuer on 127.0.0.1 whose discovery document the tenants' SSO
    providers are created from (the development settings accept http issuers)."""
    with running_fake_idp() as idp:
        yield idp


@dataclass
class Tenant:
    owner: Account
    member: Account
    team_id: str
    role_id: str
    invitation_id: str
    service_client_id: str
    provider_id: str
    uri_id: str
    domain_id: str

    @property
    def org_id(self) -> str:
        return self.owner.org_id

    @property
    def url(self) -> str:
        return self.owner.org_url

    def ids(self) -> dict[str, str]:
        """Values for every path parameter of the tenant routes."""
        return {
            "org_id": self.org_id,
            "user_id": self.member.user_id,
            "team_id": self.team_id,
            "role_id": self.role_id,
            "invitation_id": self.invitation_id,
            "service_client_id": self.service_client_id,
            "provider_id": self.provider_id,
            "uri_id": self.uri_id,
            "domain_id": self.domain_id,
        }


async def create_team(client: httpx.AsyncClient, owner: Account, name: str) -> dict[str, Any]:
    response = await client.post(
        f"{owner.org_url}/teams", headers=owner.headers, json={"name": name}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def invite(
    client: httpx.AsyncClient, owner: Account, email: str, role: str = "member"
) -> dict[str, Any]:
    response = await client.post(
        f"{owner.org_url}/invitations",
        headers=owner.headers,
        json={"email": email, "role_id": SYSTEM_ROLE_IDS[role]},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _sso_setup(client: httpx.AsyncClient, owner: Account, issuer: str) -> dict[str, str]:
    created = {}
    for key, path, body in (
        (
            "uri_id",
            "sso-redirect-uris",
            {"uri": f"https://app-{uuid.uuid4().hex[:6]}.example.com/cb"},
        ),
        ("domain_id", "sso-domains", {"domain": f"{uuid.uuid4().hex[:8]}.example.com"}),
        (
            "provider_id",
            "sso-providers",
            {
                "name": "IdP",
                "issuer": issuer,
                "client_id": CLIENT_ID,
                "client_secret": "tenant-idp-secret",
                "allowed_domains": ["example.com"],
            },
        ),
    ):
        response = await client.post(f"{owner.org_url}/{path}", headers=owner.headers, json=body)
        assert response.status_code == 201, response.text
        created[key] = response.json()["id"]
    return created


async def build_tenant(client: httpx.AsyncClient, name: str, issuer: str) -> Tenant:
    owner = await sign_up(client, org_name=name)
    member = await add_member(client, owner, "member")
    team = await create_team(client, owner, "Platform")
    joined = await client.post(
        f"{owner.org_url}/teams/{team['id']}/members",
        headers=owner.headers,
        json={"user_id": member.user_id},
    )
    assert joined.status_code == 201, joined.text
    role = await client.post(
        f"{owner.org_url}/roles",
        headers=owner.headers,
        json={"name": "Auditor", "permissions": ["audit:read", "users:read"]},
    )
    assert role.status_code == 201, role.text
    invitation = await invite(client, owner, unique_email("invitee"), role="viewer")
    service_client = await client.post(
        f"{owner.org_url}/service-clients", headers=owner.headers, json={"name": "billing-api"}
    )
    assert service_client.status_code == 201, service_client.text
    return Tenant(
        owner=owner,
        member=member,
        team_id=team["id"],
        role_id=role.json()["id"],
        invitation_id=invitation["id"],
        service_client_id=service_client.json()["id"],
        **await _sso_setup(client, owner, issuer),
    )


async def snapshot(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    """Everything the tenant's owner can read about the tenant's own data."""
    reads = {
        "organization": tenant.url,
        "users": f"{tenant.url}/users?limit=200",
        "member": f"{tenant.url}/users/{tenant.member.user_id}",
        "member_roles": f"{tenant.url}/users/{tenant.member.user_id}/roles",
        "teams": f"{tenant.url}/teams",
        "team_members": f"{tenant.url}/teams/{tenant.team_id}/members",
        "roles": f"{tenant.url}/roles",
        "invitations": f"{tenant.url}/invitations",
        "service_clients": f"{tenant.url}/service-clients",
        "sso_providers": f"{tenant.url}/sso-providers",
        "sso_redirect_uris": f"{tenant.url}/sso-redirect-uris",
        "sso_domains": f"{tenant.url}/sso-domains",
    }
    state: dict[str, Any] = {}
    for key, url in reads.items():
        response = await client.get(url, headers=tenant.owner.headers)
        assert response.status_code == 200, (key, response.text)
        state[key] = response.json()
    return state

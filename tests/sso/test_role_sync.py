"""``sync_roles``: the IdP's groups decide a user's role at every SSO login, not only at
JIT creation; owners are never changed; roles a provider gives cannot be deleted.

The ID tokens come from the forging provider (``fake_idp``) so each login can carry
the groups the test wants, through the real callback and code exchange.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from faultmaven_auth.rbac.permissions import SYSTEM_ROLE_IDS
from faultmaven_auth.storage.models import AuditEvent
from tests.sso.conftest import SsoTenant, sso_tenant
from tests.sso.dns_server import TxtZone
from tests.sso.fake_idp import CLIENT_ID, FakeIdp

pytestmark = pytest.mark.backends

ADMIN = str(SYSTEM_ROLE_IDS["admin"])


async def _sso_login(
    client: httpx.AsyncClient, idp: FakeIdp, tenant: SsoTenant, email: str, groups: list[str]
) -> dict[str, Any]:
    started = await client.get(tenant.login_url())
    assert started.status_code == 302, started.text
    params = httpx.URL(started.headers["location"]).params
    idp.id_token = idp.sign(idp.claims(params["nonce"], email, groups=groups, sub=f"s-{email}"))
    back = await client.get(
        "/api/v1/sso/oidc/callback", params={"state": params["state"], "code": "c0de"}
    )
    assert back.status_code == 302, back.text
    code = httpx.URL(back.headers["location"]).params["code"]
    tokens = await client.post("/api/v1/sso/token", json={"code": code})
    assert tokens.status_code == 200, tokens.text
    body: dict[str, Any] = tokens.json()
    return body


async def _roles(client: httpx.AsyncClient, access_token: str) -> list[str]:
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"})
    assert me.status_code == 200, me.text
    roles: list[str] = me.json()["roles"]
    return roles


async def _synced_events(app: FastAPI, org_id: str) -> list[AuditEvent]:
    async with app.state.runtime.db.session() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.organization_id == uuid.UUID(org_id),
                AuditEvent.event_type == "auth.sso.roles_synced",
            )
            .order_by(AuditEvent.chain_seq)
        )
        return list(rows)


@pytest.mark.parametrize("sync", [False, True])
async def test_groups_set_the_role_at_every_login_only_with_sync_roles(
    sync: bool,
    client: httpx.AsyncClient,
    sso_app: FastAPI,
    fake_idp: FakeIdp,
    dns: tuple[TxtZone, str],
) -> None:
    tenant = await sso_tenant(
        client,
        dns[0],
        fake_idp.issuer,
        client_id=CLIENT_ID,
        group_role_map={"admins": ADMIN},
        sync_roles=sync,
    )
    assert tenant.provider["sync_roles"] is sync
    email = tenant.email()
    first = await _sso_login(client, fake_idp, tenant, email, ["admins"])
    assert await _roles(client, first["access_token"]) == ["admin"]

    # Removed from the IdP group: with sync the next login demotes, and the session
    # from the first login sees it at once (no stale cached permissions).
    second = await _sso_login(client, fake_idp, tenant, email, ["staff"])
    expected = ["member"] if sync else ["admin"]
    assert await _roles(client, second["access_token"]) == expected
    assert await _roles(client, first["access_token"]) == expected
    events = await _synced_events(sso_app, tenant.owner.org_id)
    if not sync:
        assert events == []
        return
    assert [(e.details["role_id"], e.details["previous_role_ids"]) for e in events] == [
        (str(SYSTEM_ROLE_IDS["member"]), [ADMIN])
    ]
    # Unchanged groups change nothing and write nothing.
    third = await _sso_login(client, fake_idp, tenant, email, ["staff"])
    assert await _roles(client, third["access_token"]) == ["member"]
    assert len(await _synced_events(sso_app, tenant.owner.org_id)) == 1
    # Back in the group: promoted again.
    fourth = await _sso_login(client, fake_idp, tenant, email, ["admins"])
    assert await _roles(client, fourth["access_token"]) == ["admin"]


async def test_an_owner_keeps_ownership_whatever_the_groups(
    client: httpx.AsyncClient, fake_idp: FakeIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await sso_tenant(
        client,
        dns[0],
        fake_idp.issuer,
        client_id=CLIENT_ID,
        group_role_map={"admins": ADMIN},
        sync_roles=True,
    )
    email = tenant.email()
    tokens = await _sso_login(client, fake_idp, tenant, email, [])
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    user_id = me.json()["id"]
    promoted = await client.put(
        f"{tenant.owner.org_url}/users/{user_id}/roles",
        headers=tenant.owner.headers,
        json={"role_ids": [str(SYSTEM_ROLE_IDS["owner"])]},
    )
    assert promoted.status_code == 200, promoted.text
    for groups in ([], ["admins"]):
        again = await _sso_login(client, fake_idp, tenant, email, groups)
        assert await _roles(client, again["access_token"]) == ["owner"]


async def test_a_role_an_sso_provider_gives_cannot_be_deleted(
    client: httpx.AsyncClient, fake_idp: FakeIdp, dns: tuple[TxtZone, str]
) -> None:
    """A custom role named by a provider (group mapping or default role) is a 409
    ROLE_IN_USE, not a dangling reference; once the provider stops naming it, it goes."""
    tenant = await sso_tenant(client, dns[0], fake_idp.issuer, client_id=CLIENT_ID)
    owner = tenant.owner
    roles = []
    for name in ("contractor", "auditor"):
        made = await client.post(
            f"{owner.org_url}/roles",
            headers=owner.headers,
            json={"name": name, "permissions": ["audit:read"]},
        )
        assert made.status_code == 201, made.text
        roles.append(made.json()["id"])
    mapped, default = roles
    url = f"{owner.org_url}/sso-providers/{tenant.provider_id}"
    changed = await client.patch(
        url,
        headers=owner.headers,
        json={"group_role_map": {"contractors": mapped}, "default_role_id": default},
    )
    assert changed.status_code == 200, changed.text
    for role_id in roles:
        refused = await client.delete(f"{owner.org_url}/roles/{role_id}", headers=owner.headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "ROLE_IN_USE"
    cleared = await client.patch(
        url,
        headers=owner.headers,
        json={"group_role_map": {}, "default_role_id": str(SYSTEM_ROLE_IDS["member"])},
    )
    assert cleared.status_code == 200, cleared.text
    for role_id in roles:
        deleted = await client.delete(f"{owner.org_url}/roles/{role_id}", headers=owner.headers)
        assert deleted.status_code == 204, deleted.text

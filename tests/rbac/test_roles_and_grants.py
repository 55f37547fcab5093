"""Roles and the grant rule: nobody hands out a permission they do not hold.

System roles are fixed; custom roles belong to one organization. Every refusal is a
403 ``PERMISSION_DENIED`` and leaves an ``authz.permission_denied`` audit event the
owner can read.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, SYSTEM_ROLE_IDS, Account, add_member, unique_email

ALL_PERMISSIONS = {
    "organization:read",
    "organization:update",
    "organization:delete",
    "users:read",
    "users:create",
    "users:update",
    "users:delete",
    "roles:read",
    "roles:assign",
    "roles:manage",
    "teams:read",
    "teams:create",
    "teams:update",
    "teams:delete",
    "invitations:manage",
    "sso:read",
    "sso:manage",
    "audit:read",
    "service_clients:manage",
}
READ = {"organization:read", "users:read", "teams:read", "roles:read"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def create_role(
    client: httpx.AsyncClient, actor: Account, name: str, permissions: list[str]
) -> httpx.Response:
    return await client.post(
        f"{actor.org_url}/roles",
        headers=actor.headers,
        json={"name": name, "description": "custom", "permissions": permissions},
    )


async def denial_events(client: httpx.AsyncClient, owner: Account) -> list[dict[str, Any]]:
    response = await client.get(
        f"{owner.org_url}/audit-events",
        headers=owner.headers,
        params={"event_type": "authz.permission_denied"},
    )
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_system_roles_are_listed_with_their_permissions(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """owner, admin, member and viewer are listed as system roles with fixed permissions."""
    response = await client.get(f"{owner.org_url}/roles", headers=owner.headers)
    assert response.status_code == 200
    system = {r["name"]: r for r in response.json() if r["is_system"]}
    assert set(system) == {"owner", "admin", "member", "viewer"}
    for name, role in system.items():
        assert role["id"] == SYSTEM_ROLE_IDS[name]
    assert set(system["owner"]["permissions"]) == ALL_PERMISSIONS
    assert set(system["admin"]["permissions"]) == ALL_PERMISSIONS - {"organization:delete"}
    assert set(system["member"]["permissions"]) == READ | {"sso:read"}
    assert set(system["viewer"]["permissions"]) == READ


async def test_custom_role_create_read_update_delete(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A custom role can be created, read, listed, changed and deleted by the owner."""
    created = await create_role(client, owner, "Auditor", ["audit:read", "users:read"])
    assert created.status_code == 201, created.text
    role = created.json()
    assert role["is_system"] is False
    assert role["name"] == "Auditor"
    assert role["permissions"] == ["audit:read", "users:read"]
    url = f"{owner.org_url}/roles/{role['id']}"

    fetched = await client.get(url, headers=owner.headers)
    assert fetched.status_code == 200
    assert fetched.json() == role
    listed = await client.get(f"{owner.org_url}/roles", headers=owner.headers)
    assert role in listed.json()

    updated = await client.patch(
        url,
        headers=owner.headers,
        json={"name": "Security Auditor", "description": "reads", "permissions": ["audit:read"]},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Security Auditor"
    assert updated.json()["description"] == "reads"
    assert updated.json()["permissions"] == ["audit:read"]
    assert (await client.get(url, headers=owner.headers)).json() == updated.json()

    deleted = await client.delete(url, headers=owner.headers)
    assert deleted.status_code == 204
    assert_error(await client.get(url, headers=owner.headers), 404, "ROLE_NOT_FOUND")


async def test_custom_role_grants_its_permissions_and_deletion_takes_them_away(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A member given a custom role gains its permissions; deleting the role removes them."""
    role = (await create_role(client, owner, "Auditor", ["audit:read"])).json()
    viewer = await add_member(client, owner, "viewer")
    audit_url = f"{owner.org_url}/audit-events"
    assert_error(await client.get(audit_url, headers=viewer.headers), 403, "PERMISSION_DENIED")

    assigned = await client.put(
        f"{owner.org_url}/users/{viewer.user_id}/roles",
        headers=owner.headers,
        json={"role_ids": [SYSTEM_ROLE_IDS["viewer"], role["id"]]},
    )
    assert assigned.status_code == 200, assigned.text
    assert sorted(r["name"] for r in assigned.json()) == ["Auditor", "viewer"]
    assert (await client.get(audit_url, headers=viewer.headers)).status_code == 200

    deleted = await client.delete(f"{owner.org_url}/roles/{role['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    assert_error(await client.get(audit_url, headers=viewer.headers), 403, "PERMISSION_DENIED")
    me = await client.get("/api/v1/auth/me", headers=viewer.headers)
    assert me.json()["roles"] == ["viewer"]


async def test_admin_cannot_create_a_role_with_a_permission_it_lacks(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """An admin (no organization:delete) cannot put organization:delete into a custom role."""
    admin = await add_member(client, owner, "admin")
    denied = await create_role(client, admin, "Destroyer", ["organization:delete"])
    assert_error(denied, 403, "PERMISSION_DENIED")
    roles = await client.get(f"{owner.org_url}/roles", headers=owner.headers)
    assert "Destroyer" not in {r["name"] for r in roles.json()}
    # Within its own permissions the admin can create roles.
    allowed = await create_role(client, admin, "Helper", ["users:read", "teams:update"])
    assert allowed.status_code == 201


async def test_admin_cannot_widen_or_touch_a_role_beyond_its_permissions(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """An admin can neither add organization:delete to a role nor edit a role that holds it."""
    admin = await add_member(client, owner, "admin")
    mild = (await create_role(client, owner, "Mild", ["users:read"])).json()
    strong = (await create_role(client, owner, "Strong", ["organization:delete"])).json()
    widen = await client.patch(
        f"{owner.org_url}/roles/{mild['id']}",
        headers=admin.headers,
        json={"permissions": ["users:read", "organization:delete"]},
    )
    assert_error(widen, 403, "PERMISSION_DENIED")
    for method in ("PATCH", "DELETE"):
        response = await client.request(
            method,
            f"{owner.org_url}/roles/{strong['id']}",
            headers=admin.headers,
            json={"description": "edited"} if method == "PATCH" else None,
        )
        assert_error(response, 403, "PERMISSION_DENIED")
    after = await client.get(f"{owner.org_url}/roles/{mild['id']}", headers=owner.headers)
    assert after.json()["permissions"] == ["users:read"]
    after = await client.get(f"{owner.org_url}/roles/{strong['id']}", headers=owner.headers)
    assert after.json() == strong


async def test_admin_cannot_make_anyone_an_owner(client: httpx.AsyncClient, owner: Account) -> None:
    """An admin cannot assign the owner role, create an owner, or invite one."""
    admin = await add_member(client, owner, "admin")
    member = await add_member(client, owner, "member")
    promote = await client.put(
        f"{owner.org_url}/users/{member.user_id}/roles",
        headers=admin.headers,
        json={"role_ids": [SYSTEM_ROLE_IDS["owner"]]},
    )
    assert_error(promote, 403, "PERMISSION_DENIED")
    self_promote = await client.put(
        f"{owner.org_url}/users/{admin.user_id}/roles",
        headers=admin.headers,
        json={"role_ids": [SYSTEM_ROLE_IDS["admin"], SYSTEM_ROLE_IDS["owner"]]},
    )
    assert_error(self_promote, 403, "PERMISSION_DENIED")
    create = await client.post(
        f"{owner.org_url}/users",
        headers=admin.headers,
        json={
            "email": unique_email("owner2"),
            "password": PASSWORD,
            "full_name": "Would Be Owner",
            "role_ids": [SYSTEM_ROLE_IDS["owner"]],
        },
    )
    assert_error(create, 403, "PERMISSION_DENIED")
    invite = await client.post(
        f"{owner.org_url}/invitations",
        headers=admin.headers,
        json={"email": unique_email("owner3"), "role_id": SYSTEM_ROLE_IDS["owner"]},
    )
    assert_error(invite, 403, "PERMISSION_DENIED")
    for account, role in ((member, "member"), (admin, "admin")):
        roles = await client.get(
            f"{owner.org_url}/users/{account.user_id}/roles", headers=owner.headers
        )
        assert [r["name"] for r in roles.json()] == [role]
    invitations = await client.get(f"{owner.org_url}/invitations", headers=owner.headers)
    assert invitations.json() == []


async def test_admin_cannot_modify_or_deactivate_an_owner(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """An admin gets 403 renaming, re-roling or deactivating the owner; the owner is untouched."""
    admin = await add_member(client, owner, "admin")
    user_url = f"{owner.org_url}/users/{owner.user_id}"
    attempts = [
        ("PATCH", user_url, {"full_name": "Renamed Owner"}),
        ("PATCH", user_url, {"password": "Attacker-Chosen-Pass-9"}),
        ("PUT", f"{user_url}/roles", {"role_ids": [SYSTEM_ROLE_IDS["viewer"]]}),
        ("DELETE", user_url, None),
    ]
    for method, url, body in attempts:
        response = await client.request(method, url, headers=admin.headers, json=body)
        assert_error(response, 403, "PERMISSION_DENIED")
    current = await client.get(user_url, headers=owner.headers)
    assert current.json()["is_active"] is True
    assert current.json()["full_name"] == "Owner Person"
    me = await client.get("/api/v1/auth/me", headers=owner.headers)
    assert me.json()["roles"] == ["owner"]
    relogin = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    )
    assert relogin.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/users", {"email": "x@example.com", "password": PASSWORD, "full_name": "X"}),
        ("DELETE", "", None),
        ("PATCH", "", {"name": "Renamed"}),
        ("POST", "/teams", {"name": "New Team"}),
        ("POST", "/roles", {"name": "Custom", "permissions": ["users:read"]}),
        ("POST", "/invitations", {"email": "y@example.com", "role_id": SYSTEM_ROLE_IDS["viewer"]}),
        ("GET", "/invitations", None),
        ("GET", "/audit-events", None),
        ("POST", "/service-clients", {"name": "svc"}),
    ],
)
async def test_member_is_denied_management_actions(
    client: httpx.AsyncClient, owner: Account, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """A member gets 403 PERMISSION_DENIED for actions beyond reading."""
    member = await add_member(client, owner, "member")
    response = await client.request(
        method, f"{owner.org_url}{path}", headers=member.headers, json=body
    )
    assert_error(response, 403, "PERMISSION_DENIED")
    org = await client.get(owner.org_url, headers=owner.headers)
    assert org.status_code == 200
    assert org.json()["name"] == "Acme"


async def test_member_can_read_what_it_is_allowed_to(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A member reads the organization, users, teams and roles."""
    member = await add_member(client, owner, "member")
    for path in ("", "/users", "/teams", "/roles", f"/users/{owner.user_id}"):
        response = await client.get(f"{owner.org_url}{path}", headers=member.headers)
        assert response.status_code == 200, (path, response.text)


async def test_permission_denial_is_audited_for_the_owner(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A refused request leaves an authz.permission_denied event naming actor and permission."""
    member = await add_member(client, owner, "member")
    denied = await client.post(
        f"{owner.org_url}/users",
        headers=member.headers,
        json={"email": unique_email("x"), "password": PASSWORD, "full_name": "X"},
    )
    assert_error(denied, 403, "PERMISSION_DENIED")
    events = [e for e in await denial_events(client, owner) if e["actor_id"] == member.user_id]
    assert len(events) == 1
    event = events[0]
    assert event["event_type"] == "authz.permission_denied"
    assert event["outcome"] == "denied"
    assert event["organization_id"] == owner.org_id
    assert event["details"]["permission"] == "users:create"
    assert event["details"]["method"] == "POST"
    assert event["details"]["route"] == "/api/v1/organizations/{org_id}/users"


async def test_refused_grant_is_audited(client: httpx.AsyncClient, owner: Account) -> None:
    """An admin's refused attempt to grant organization:delete is an audited denial."""
    admin = await add_member(client, owner, "admin")
    assert_error(
        await create_role(client, admin, "Nuke", ["organization:delete"]), 403, "PERMISSION_DENIED"
    )
    events = [e for e in await denial_events(client, owner) if e["actor_id"] == admin.user_id]
    assert len(events) == 1
    assert events[0]["outcome"] == "denied"


@pytest.mark.parametrize("name", ["owner", "admin", "member", "viewer"])
async def test_system_roles_cannot_be_changed_or_deleted(
    client: httpx.AsyncClient, owner: Account, name: str
) -> None:
    """PATCH or DELETE of a system role is 409 SYSTEM_ROLE_IMMUTABLE, even for the owner."""
    url = f"{owner.org_url}/roles/{SYSTEM_ROLE_IDS[name]}"
    before = (await client.get(url, headers=owner.headers)).json()
    patch = await client.patch(url, headers=owner.headers, json={"permissions": ["users:read"]})
    assert_error(patch, 409, "SYSTEM_ROLE_IMMUTABLE")
    delete = await client.delete(url, headers=owner.headers)
    assert_error(delete, 409, "SYSTEM_ROLE_IMMUTABLE")
    assert (await client.get(url, headers=owner.headers)).json() == before


async def test_role_names_must_be_unique_in_the_organization(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Creating or renaming to an existing custom role name is 409 ROLE_NAME_TAKEN."""
    first = await create_role(client, owner, "Support", ["users:read"])
    assert first.status_code == 201
    assert_error(
        await create_role(client, owner, "Support", ["teams:read"]), 409, "ROLE_NAME_TAKEN"
    )
    other = (await create_role(client, owner, "Billing", ["users:read"])).json()
    rename = await client.patch(
        f"{owner.org_url}/roles/{other['id']}", headers=owner.headers, json={"name": "Support"}
    )
    assert_error(rename, 409, "ROLE_NAME_TAKEN")
    names = [
        r["name"]
        for r in (await client.get(f"{owner.org_url}/roles", headers=owner.headers)).json()
    ]
    assert names.count("Support") == 1
    assert "Billing" in names


@pytest.mark.parametrize("name", ["owner", "Admin", "MEMBER", "viewer"])
async def test_system_role_names_are_reserved(
    client: httpx.AsyncClient, owner: Account, name: str
) -> None:
    """A custom role cannot be created with, or renamed to, a system role name (422)."""
    assert_error(await create_role(client, owner, name, ["users:read"]), 422, "VALIDATION_ERROR")
    role = (await create_role(client, owner, "Temp", ["users:read"])).json()
    rename = await client.patch(
        f"{owner.org_url}/roles/{role['id']}", headers=owner.headers, json={"name": name}
    )
    assert_error(rename, 422, "VALIDATION_ERROR")

"""The last-owner rule, and role changes taking effect on the very next request.

An organization always keeps at least one active owner: the last one cannot be demoted
or deactivated, not even by themselves. Permissions are loaded per request, so a token
issued before a role change already carries the new rights.
"""

from __future__ import annotations

import httpx

from tests.conftest import PASSWORD, SYSTEM_ROLE_IDS, Account, add_member, unique_email


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def set_roles(
    client: httpx.AsyncClient, actor: Account, target: Account, *roles: str
) -> httpx.Response:
    return await client.put(
        f"{actor.org_url}/users/{target.user_id}/roles",
        headers=actor.headers,
        json={"role_ids": [SYSTEM_ROLE_IDS[r] for r in roles]},
    )


async def role_names(client: httpx.AsyncClient, owner: Account, target: Account) -> list[str]:
    response = await client.get(
        f"{owner.org_url}/users/{target.user_id}/roles", headers=owner.headers
    )
    assert response.status_code == 200
    return sorted(r["name"] for r in response.json())


async def test_last_owner_cannot_demote_themselves(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Replacing the sole owner's roles without owner (or with none) is 409 LAST_OWNER."""
    for roles in (("admin",), ("member",), ()):
        assert_error(await set_roles(client, owner, owner, *roles), 409, "LAST_OWNER")
    assert await role_names(client, owner, owner) == ["owner"]
    me = await client.get("/api/v1/auth/me", headers=owner.headers)
    assert "organization:delete" in me.json()["permissions"]


async def test_last_owner_may_add_roles_while_staying_owner(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Roles can change around the owner role as long as it stays."""
    response = await set_roles(client, owner, owner, "owner", "viewer")
    assert response.status_code == 200, response.text
    assert await role_names(client, owner, owner) == ["owner", "viewer"]


async def test_last_owner_cannot_be_deactivated(client: httpx.AsyncClient, owner: Account) -> None:
    """DELETE of the sole owner's user (by themselves) is 409 LAST_OWNER; they stay active."""
    response = await client.delete(f"{owner.org_url}/users/{owner.user_id}", headers=owner.headers)
    assert_error(response, 409, "LAST_OWNER")
    user = await client.get(f"{owner.org_url}/users/{owner.user_id}", headers=owner.headers)
    assert user.json()["is_active"] is True
    assert (await client.get("/api/v1/auth/me", headers=owner.headers)).status_code == 200


async def test_with_two_owners_one_can_be_demoted(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A second owner makes demotion possible; the remaining owner is then the last one."""
    second = await add_member(client, owner, "member")
    promoted = await set_roles(client, owner, second, "owner")
    assert promoted.status_code == 200, promoted.text
    assert [r["name"] for r in promoted.json()] == ["owner"]

    demoted = await set_roles(client, second, owner, "admin")
    assert demoted.status_code == 200, demoted.text
    assert await role_names(client, second, owner) == ["admin"]
    me = await client.get("/api/v1/auth/me", headers=owner.headers)
    assert "organization:delete" not in me.json()["permissions"]

    # The second owner is now alone, so the same rule protects them.
    assert_error(await set_roles(client, second, second, "admin"), 409, "LAST_OWNER")
    assert_error(
        await client.delete(f"{second.org_url}/users/{second.user_id}", headers=second.headers),
        409,
        "LAST_OWNER",
    )


async def test_one_of_two_owners_can_demote_themselves(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Self-demotion is allowed while another active owner remains."""
    second = await add_member(client, owner, "member")
    assert (await set_roles(client, owner, second, "owner")).status_code == 200
    response = await set_roles(client, owner, owner, "admin")
    assert response.status_code == 200, response.text
    assert await role_names(client, second, owner) == ["admin"]


async def test_one_of_two_owners_can_be_deactivated_and_then_the_other_is_last(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Deactivating one of two owners works; an inactive owner does not count afterwards."""
    second = await add_member(client, owner, "member")
    assert (await set_roles(client, owner, second, "owner")).status_code == 200
    deactivated = await client.delete(
        f"{owner.org_url}/users/{second.user_id}", headers=owner.headers
    )
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["is_active"] is False

    assert_error(await set_roles(client, owner, owner, "admin"), 409, "LAST_OWNER")
    assert_error(
        await client.delete(f"{owner.org_url}/users/{owner.user_id}", headers=owner.headers),
        409,
        "LAST_OWNER",
    )


async def test_promotion_takes_effect_on_the_next_request(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A member promoted to admin can create users with the token issued before."""
    member = await add_member(client, owner, "member")

    def new_user() -> dict[str, object]:
        return {"email": unique_email("hire"), "password": PASSWORD, "full_name": "New Hire"}

    before = await client.post(f"{owner.org_url}/users", headers=member.headers, json=new_user())
    assert_error(before, 403, "PERMISSION_DENIED")

    assert (await set_roles(client, owner, member, "admin")).status_code == 200
    after = await client.post(f"{owner.org_url}/users", headers=member.headers, json=new_user())
    assert after.status_code == 201, after.text
    me = await client.get("/api/v1/auth/me", headers=member.headers)
    assert me.json()["roles"] == ["admin"]


async def test_demotion_takes_effect_on_the_next_request(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """An admin demoted to viewer loses write access with the same token."""
    admin = await add_member(client, owner, "admin")
    team = await client.post(
        f"{owner.org_url}/teams", headers=admin.headers, json={"name": "Before"}
    )
    assert team.status_code == 201
    assert (await set_roles(client, owner, admin, "viewer")).status_code == 200
    denied = await client.post(
        f"{owner.org_url}/teams", headers=admin.headers, json={"name": "After"}
    )
    assert_error(denied, 403, "PERMISSION_DENIED")
    teams = await client.get(f"{owner.org_url}/teams", headers=admin.headers)
    assert [t["name"] for t in teams.json()] == ["Before"]

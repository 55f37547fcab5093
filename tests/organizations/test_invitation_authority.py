"""An invitation registers an account only while its inviter can still grant its role.

The inviter's authority is re-checked when they are demoted or deactivated (their
pending invitations beyond it are revoked at once) and when the invitation is accepted
(against the role as it is then, which also covers custom-role edits). A stale
invitation answers exactly like an expired one.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.audit.conftest import audit_events
from tests.conftest import (
    PASSWORD,
    SYSTEM_ROLE_IDS,
    Account,
    add_member,
    login,
    unique_email,
)

REGISTER = "/api/v1/auth/register"


def join_body(token: str, email: str) -> dict[str, Any]:
    return {
        "invitation_token": token,
        "email": email,
        "password": PASSWORD,
        "full_name": "New Joiner",
    }


async def create_role(
    client: httpx.AsyncClient, actor: Account, name: str, permissions: list[str]
) -> str:
    response = await client.post(
        f"{actor.org_url}/roles",
        headers=actor.headers,
        json={"name": name, "permissions": permissions},
    )
    assert response.status_code == 201, response.text
    role_id: str = response.json()["id"]
    return role_id


async def add_member_with_role(client: httpx.AsyncClient, owner: Account, role_id: str) -> Account:
    """A logged-in member of ``owner``'s organization holding only ``role_id``."""
    email = unique_email("custom")
    response = await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={"email": email, "password": PASSWORD, "full_name": "Custom", "role_ids": [role_id]},
    )
    assert response.status_code == 201, response.text
    tokens = await login(client, email, PASSWORD)
    return Account(email, PASSWORD, response.json()["id"], owner.org_id, tokens["access_token"], "")


async def invite(
    client: httpx.AsyncClient, inviter: Account, email: str, role_id: str
) -> dict[str, Any]:
    response = await client.post(
        f"{inviter.org_url}/invitations",
        headers=inviter.headers,
        json={"email": email, "role_id": role_id},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def set_roles(
    client: httpx.AsyncClient, owner: Account, member: Account, role_ids: list[str]
) -> None:
    response = await client.put(
        f"{owner.org_url}/users/{member.user_id}/roles",
        headers=owner.headers,
        json={"role_ids": role_ids},
    )
    assert response.status_code == 200, response.text


async def invitation_state(
    client: httpx.AsyncClient, owner: Account, invitation_id: str
) -> dict[str, Any]:
    listed = await client.get(f"{owner.org_url}/invitations", headers=owner.headers)
    assert listed.status_code == 200, listed.text
    (found,) = [i for i in listed.json() if i["id"] == invitation_id]
    return dict(found)


async def assert_cannot_register(
    client: httpx.AsyncClient, invitation: dict[str, Any], email: str
) -> None:
    """The token is refused exactly like a made-up one, and no account appears."""
    refused = await client.post(REGISTER, json=join_body(invitation["token"], email))
    made_up = await client.post(REGISTER, json=join_body("fmi_made-up", email))
    assert refused.status_code == made_up.status_code == 400, refused.text
    drop = {"request_id"}
    assert {k: v for k, v in refused.json()["error"].items() if k not in drop} == {
        k: v for k, v in made_up.json()["error"].items() if k not in drop
    }
    assert refused.json()["error"]["code"] == "INVALID_INVITATION"
    attempt = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert attempt.status_code == 401


async def revocations(
    client: httpx.AsyncClient, owner: Account, invitation_id: str
) -> list[dict[str, Any]]:
    return [
        e
        for e in await audit_events(client, owner, event_type="invitation.revoked")
        if e["target_id"] == invitation_id
    ]


async def test_invitations_show_who_invited(client: httpx.AsyncClient, owner: Account) -> None:
    """Create and list responses carry invited_by_id, the issuing member's id."""
    admin = await add_member(client, owner, "admin")
    created = await invite(client, admin, unique_email("invitee"), SYSTEM_ROLE_IDS["viewer"])
    assert created["invited_by_id"] == admin.user_id
    listed = await invitation_state(client, owner, created["id"])
    assert listed["invited_by_id"] == admin.user_id


async def test_demoted_inviters_invitation_no_longer_registers(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Demoting an admin revokes their admin invitation (audited); lesser ones stay usable."""
    admin = await add_member(client, owner, "admin")
    admin_email, viewer_email = unique_email("would-be-admin"), unique_email("viewer")
    admin_invite = await invite(client, admin, admin_email, SYSTEM_ROLE_IDS["admin"])
    viewer_invite = await invite(client, admin, viewer_email, SYSTEM_ROLE_IDS["viewer"])

    await set_roles(client, owner, admin, [SYSTEM_ROLE_IDS["member"]])

    assert (await invitation_state(client, owner, admin_invite["id"]))["revoked_at"] is not None
    assert (await invitation_state(client, owner, viewer_invite["id"]))["revoked_at"] is None
    (event,) = await revocations(client, owner, admin_invite["id"])
    assert event["actor_id"] == owner.user_id
    assert event["details"]["reason"] == "inviter_lost_permissions"
    assert event["details"]["invited_by_id"] == admin.user_id
    await assert_cannot_register(client, admin_invite, admin_email)

    # A member can still grant viewer: that invitation still works, with its role.
    joined = await client.post(REGISTER, json=join_body(viewer_invite["token"], viewer_email))
    assert joined.status_code == 201, joined.text
    tokens = await login(client, viewer_email, PASSWORD)
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["roles"] == ["viewer"]


async def test_demoted_then_deactivated_inviter_cannot_make_an_admin(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """The reported case: invite as admin, demote, deactivate: the token registers nobody."""
    admin = await add_member(client, owner, "admin")
    email = unique_email("outsider")
    invitation = await invite(client, admin, email, SYSTEM_ROLE_IDS["admin"])
    await set_roles(client, owner, admin, [SYSTEM_ROLE_IDS["viewer"]])
    deleted = await client.delete(f"{owner.org_url}/users/{admin.user_id}", headers=owner.headers)
    assert deleted.status_code == 200, deleted.text
    await assert_cannot_register(client, invitation, email)


async def test_deactivated_inviters_invitations_are_all_revoked(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Deactivating a member revokes every pending invitation they issued, audited."""
    admin = await add_member(client, owner, "admin")
    email = unique_email("invitee")
    invitation = await invite(client, admin, email, SYSTEM_ROLE_IDS["viewer"])
    kept = await invite(client, owner, unique_email("other"), SYSTEM_ROLE_IDS["viewer"])

    deleted = await client.delete(f"{owner.org_url}/users/{admin.user_id}", headers=owner.headers)
    assert deleted.status_code == 200, deleted.text

    assert (await invitation_state(client, owner, invitation["id"]))["revoked_at"] is not None
    assert (await invitation_state(client, owner, kept["id"]))["revoked_at"] is None
    (event,) = await revocations(client, owner, invitation["id"])
    assert event["actor_id"] == owner.user_id
    assert event["details"]["reason"] == "inviter_deactivated"
    await assert_cannot_register(client, invitation, email)


async def test_inviter_whose_custom_role_lost_a_permission(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Editing the inviter's custom role is caught at acceptance: refused, revoked, audited."""
    auditor = await create_role(client, owner, "Auditor", ["audit:read"])
    inviter_role = await create_role(
        client, owner, "Inviter", ["invitations:manage", "audit:read", "roles:read"]
    )
    inviter = await add_member_with_role(client, owner, inviter_role)
    email = unique_email("invitee")
    invitation = await invite(client, inviter, email, auditor)

    edited = await client.patch(
        f"{owner.org_url}/roles/{inviter_role}",
        headers=owner.headers,
        json={"permissions": ["invitations:manage", "roles:read"]},
    )
    assert edited.status_code == 200, edited.text

    await assert_cannot_register(client, invitation, email)
    assert (await invitation_state(client, owner, invitation["id"]))["revoked_at"] is not None
    (event,) = await revocations(client, owner, invitation["id"])
    assert event["actor_id"] is None
    assert event["details"]["reason"] == "inviter_lost_permissions"


async def test_invited_role_gained_a_permission_the_inviter_lacks(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A custom role widened after the invitation was issued is checked as it is now."""
    auditor = await create_role(client, owner, "Auditor", ["audit:read"])
    inviter_role = await create_role(client, owner, "Inviter", ["invitations:manage", "audit:read"])
    inviter = await add_member_with_role(client, owner, inviter_role)
    email = unique_email("invitee")
    invitation = await invite(client, inviter, email, auditor)

    widened = await client.patch(
        f"{owner.org_url}/roles/{auditor}",
        headers=owner.headers,
        json={"permissions": ["audit:read", "users:delete"]},
    )
    assert widened.status_code == 200, widened.text

    await assert_cannot_register(client, invitation, email)
    assert (await invitation_state(client, owner, invitation["id"]))["revoked_at"] is not None


async def test_demoted_admin_can_no_longer_change_the_role_they_created(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Role edits and deletion are checked against the actor's permissions at each write."""
    admin = await add_member(client, owner, "admin")
    ops = await create_role(client, admin, "Ops", ["audit:read", "users:read"])
    renamed = await client.patch(
        f"{admin.org_url}/roles/{ops}", headers=admin.headers, json={"description": "v1"}
    )
    assert renamed.status_code == 200, renamed.text

    keeper = await create_role(client, owner, "RoleKeeper", ["roles:manage", "roles:read"])
    await set_roles(client, owner, admin, [keeper])

    edit = await client.patch(
        f"{admin.org_url}/roles/{ops}", headers=admin.headers, json={"description": "v2"}
    )
    assert edit.status_code == 403, edit.text
    assert edit.json()["error"]["code"] == "PERMISSION_DENIED"
    remove = await client.delete(f"{admin.org_url}/roles/{ops}", headers=admin.headers)
    assert remove.status_code == 403, remove.text
    role = await client.get(f"{owner.org_url}/roles/{ops}", headers=owner.headers)
    assert role.status_code == 200
    assert role.json()["description"] == "v1"
    assert role.json()["permissions"] == ["audit:read", "users:read"]


async def test_role_used_by_an_invitation_cannot_be_deleted(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Deleting a custom role an invitation was issued with is 409 ROLE_IN_USE, not a 500."""
    used = await create_role(client, owner, "Used", ["audit:read"])
    unused = await create_role(client, owner, "Unused", ["audit:read"])
    invitation = await invite(client, owner, unique_email("invitee"), used)
    revoked = await client.delete(
        f"{owner.org_url}/invitations/{invitation['id']}", headers=owner.headers
    )
    assert revoked.status_code == 200, revoked.text

    refused = await client.delete(f"{owner.org_url}/roles/{used}", headers=owner.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "ROLE_IN_USE"
    assert (
        await client.get(f"{owner.org_url}/roles/{used}", headers=owner.headers)
    ).status_code == 200
    deleted = await client.delete(f"{owner.org_url}/roles/{unused}", headers=owner.headers)
    assert deleted.status_code == 204, deleted.text

"""Deleting a custom role: what happens to what refers to it."""

from __future__ import annotations

import httpx

from tests.conftest import Account, unique_email


async def test_a_role_invitations_were_issued_with_cannot_be_deleted(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """An invitation keeps its role: deleting the role is a 409 ROLE_IN_USE, not a 500."""
    role = await client.post(
        f"{owner.org_url}/roles",
        headers=owner.headers,
        json={"name": "contractor", "permissions": ["audit:read"]},
    )
    role_id = role.json()["id"]
    invitation = await client.post(
        f"{owner.org_url}/invitations",
        headers=owner.headers,
        json={"email": unique_email("contractor"), "role_id": role_id},
    )
    assert invitation.status_code == 201, invitation.text
    deleted = await client.delete(f"{owner.org_url}/roles/{role_id}", headers=owner.headers)
    assert deleted.status_code == 409, deleted.text
    assert deleted.json()["error"]["code"] == "ROLE_IN_USE"
    still = await client.get(f"{owner.org_url}/roles/{role_id}", headers=owner.headers)
    assert still.status_code == 200

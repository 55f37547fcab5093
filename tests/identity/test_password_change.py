"""Changing passwords: one's own with the current one, a member's by a more privileged admin.

POST /api/v1/auth/password is how anyone (viewers included) changes their own password;
it ends their other sessions and keeps the one that made the change. An admin's reset
through PATCH .../users/{id} works only on members holding no permission the admin
lacks, and ends every session of that member.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, SYSTEM_ROLE_IDS, Account, add_member, login, unique_email

NEW_PASSWORD = "Another-Strong-Pass-77"
CHANGE = "/api/v1/auth/password"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def me(client: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"})


async def change(
    client: httpx.AsyncClient, account: Account, current: str, new: str
) -> httpx.Response:
    return await client.post(
        CHANGE,
        headers=account.headers,
        json={"current_password": current, "new_password": new},
    )


async def login_status(client: httpx.AsyncClient, email: str, password: str) -> int:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return response.status_code


async def events(
    client: httpx.AsyncClient, reader: Account, response: httpx.Response, event_type: str
) -> list[dict[str, Any]]:
    """The events of ``event_type`` written while serving ``response``."""
    listed = await client.get(
        f"{reader.org_url}/audit-events", headers=reader.headers, params={"limit": 500}
    )
    assert listed.status_code == 200, listed.text
    request_id = response.headers["x-request-id"]
    return [
        e
        for e in listed.json()["items"]
        if e["request_id"] == request_id and e["event_type"] == event_type
    ]


# -- one's own password ------------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "viewer"])
async def test_own_password_change_ends_only_the_other_sessions(
    client: httpx.AsyncClient, owner: Account, role: str
) -> None:
    """204; the calling session keeps working; the other session's tokens are refused."""
    user = await add_member(client, owner, role)
    other = await login(client, user.email, PASSWORD)

    response = await change(client, user, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 204, response.text

    # The other session: its refresh token and its access token are both refused.
    assert_error(await refresh(client, other["refresh_token"]), 401, "INVALID_TOKEN")
    assert_error(await me(client, other["access_token"]), 401, "INVALID_TOKEN")
    # This session goes on: access token, then its refresh token rotates.
    assert (await me(client, user.access_token)).status_code == 200
    assert (await refresh(client, user.refresh_token)).status_code == 200
    # Only the new password logs in.
    assert await login_status(client, user.email, PASSWORD) == 401
    assert await login_status(client, user.email, NEW_PASSWORD) == 200

    (event,) = await events(client, owner, response, "auth.password.changed")
    assert event["actor_id"] == user.user_id
    assert event["target_id"] == user.user_id
    assert event["outcome"] == "success"
    assert event["details"]["sessions_ended"] == 1
    assert NEW_PASSWORD not in str(event)


async def test_wrong_current_password_is_refused_and_audited(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """403 INVALID_CURRENT_PASSWORD, recorded as a failure; nothing changes."""
    member = await add_member(client, owner, "member")
    other = await login(client, member.email, PASSWORD)
    response = await change(client, member, "Not-The-Password-1", NEW_PASSWORD)
    assert_error(response, 403, "INVALID_CURRENT_PASSWORD")
    assert await login_status(client, member.email, PASSWORD) == 200
    assert await login_status(client, member.email, NEW_PASSWORD) == 401
    assert (await refresh(client, other["refresh_token"])).status_code == 200
    assert (await me(client, member.access_token)).status_code == 200

    (event,) = await events(client, owner, response, "auth.password.change_failed")
    assert event["actor_id"] == member.user_id
    assert event["outcome"] == "failure"
    assert event["details"]["reason"] == "invalid_current_password"
    assert "Not-The-Password-1" not in str(event)


@pytest.mark.parametrize("weak", ["short1!", "password123"])
async def test_weak_new_password_is_refused(
    client: httpx.AsyncClient, owner: Account, weak: str
) -> None:
    """422 WEAK_PASSWORD naming new_password; the current password still works."""
    member = await add_member(client, owner, "member")
    response = await change(client, member, PASSWORD, weak)
    assert_error(response, 422, "WEAK_PASSWORD")
    assert response.json()["error"]["details"][0]["field"] == "new_password"
    assert await login_status(client, member.email, PASSWORD) == 200


async def test_password_change_needs_a_bearer_token(client: httpx.AsyncClient) -> None:
    """Without an access token the endpoint is 401 NOT_AUTHENTICATED."""
    response = await client.post(
        CHANGE, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert_error(response, 401, "NOT_AUTHENTICATED")


async def test_own_password_through_patch_is_refused(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """PATCH of one's own password is 403 CURRENT_PASSWORD_REQUIRED (audited), even for
    an owner: a stolen access token alone must not take the account over."""
    other = await login(client, owner.email, PASSWORD)
    response = await client.patch(
        f"{owner.org_url}/users/{owner.user_id}",
        headers=owner.headers,
        json={"password": NEW_PASSWORD},
    )
    assert_error(response, 403, "CURRENT_PASSWORD_REQUIRED")
    assert "/api/v1/auth/password" in response.json()["error"]["message"]
    assert await login_status(client, owner.email, PASSWORD) == 200
    assert (await refresh(client, other["refresh_token"])).status_code == 200
    (event,) = await events(client, owner, response, "authz.permission_denied")
    assert event["actor_id"] == owner.user_id
    # One's own name can still be changed through PATCH.
    renamed = await client.patch(
        f"{owner.org_url}/users/{owner.user_id}",
        headers=owner.headers,
        json={"full_name": "Renamed Owner"},
    )
    assert renamed.status_code == 200


# -- an admin resetting a member's password ----------------------------------------------


async def test_admin_reset_ends_every_session_of_the_member(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """An admin's PATCH with a password revokes all the member's refresh and access tokens."""
    admin = await add_member(client, owner, "admin")
    member = await add_member(client, owner, "member")
    second = await login(client, member.email, PASSWORD)
    response = await client.patch(
        f"{owner.org_url}/users/{member.user_id}",
        headers=admin.headers,
        json={"password": NEW_PASSWORD},
    )
    assert response.status_code == 200, response.text
    for session in (
        {"access_token": member.access_token, "refresh_token": member.refresh_token},
        second,
    ):
        assert_error(await refresh(client, session["refresh_token"]), 401, "INVALID_TOKEN")
        assert_error(await me(client, session["access_token"]), 401, "INVALID_TOKEN")
    assert await login_status(client, member.email, NEW_PASSWORD) == 200
    # The admin's own session is untouched.
    assert (await refresh(client, admin.refresh_token)).status_code == 200


async def test_admin_cannot_reset_an_owners_password(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """An admin (lacking organization:delete) resetting an owner gets 403; nothing changes."""
    admin = await add_member(client, owner, "admin")
    response = await client.patch(
        f"{owner.org_url}/users/{owner.user_id}",
        headers=admin.headers,
        json={"password": NEW_PASSWORD},
    )
    assert_error(response, 403, "PERMISSION_DENIED")
    assert await login_status(client, owner.email, PASSWORD) == 200
    assert (await refresh(client, owner.refresh_token)).status_code == 200


async def test_admin_cannot_reset_a_custom_role_holding_more(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A member whose custom role holds organization:delete is beyond an admin's reach."""
    role = await client.post(
        f"{owner.org_url}/roles",
        headers=owner.headers,
        json={"name": "Deleter", "permissions": ["organization:delete"]},
    )
    assert role.status_code == 201, role.text
    email = unique_email("deleter")
    created = await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={
            "email": email,
            "password": PASSWORD,
            "full_name": "Del Eter",
            "role_ids": [role.json()["id"], SYSTEM_ROLE_IDS["viewer"]],
        },
    )
    assert created.status_code == 201, created.text
    admin = await add_member(client, owner, "admin")
    response = await client.patch(
        f"{owner.org_url}/users/{created.json()['id']}",
        headers=admin.headers,
        json={"password": NEW_PASSWORD},
    )
    assert_error(response, 403, "PERMISSION_DENIED")
    assert await login_status(client, email, PASSWORD) == 200
    # The owner, who holds everything, may.
    by_owner = await client.patch(
        f"{owner.org_url}/users/{created.json()['id']}",
        headers=owner.headers,
        json={"password": NEW_PASSWORD},
    )
    assert by_owner.status_code == 200, by_owner.text
    assert await login_status(client, email, NEW_PASSWORD) == 200

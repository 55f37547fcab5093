"""Members of an organization: listing with cursors, creation, updates, deactivation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, Account, add_member, login, unique_email

NEW_PASSWORD = "Another-Strong-Pass-77"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def user_body(email: str | None = None, password: str = PASSWORD) -> dict[str, Any]:
    return {"email": email or unique_email("user"), "password": password, "full_name": "Pat Doe"}


async def refresh(client: httpx.AsyncClient, account: Account) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})


async def test_users_are_paged_with_a_cursor(client: httpx.AsyncClient, owner: Account) -> None:
    """limit=2 over 5 users gives disjoint pages covering everyone, ending with no cursor."""
    for _ in range(4):
        await add_member(client, owner, "member", login_too=False)
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(f"{owner.org_url}/users", headers=owner.headers, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([u["id"] for u in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 5, "pagination does not terminate"
    assert [len(p) for p in pages] == [2, 2, 1]
    seen = [user_id for page in pages for user_id in page]
    assert len(seen) == len(set(seen)) == 5
    everyone = await client.get(f"{owner.org_url}/users", headers=owner.headers)
    assert everyone.json()["next_cursor"] is None
    assert seen == [u["id"] for u in everyone.json()["items"]]
    assert owner.user_id in seen


async def test_exact_page_has_no_next_cursor(client: httpx.AsyncClient, owner: Account) -> None:
    """When the last page is exactly full, next_cursor is null (no empty page follows)."""
    await add_member(client, owner, "member", login_too=False)
    response = await client.get(
        f"{owner.org_url}/users", headers=owner.headers, params={"limit": 2}
    )
    assert len(response.json()["items"]) == 2
    assert response.json()["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["not-a-cursor", "zz", "0" * 31])
async def test_invalid_cursor_is_a_bad_request(
    client: httpx.AsyncClient, owner: Account, cursor: str
) -> None:
    """A malformed cursor is 400 INVALID_CURSOR, not a server error."""
    response = await client.get(
        f"{owner.org_url}/users", headers=owner.headers, params={"cursor": cursor}
    )
    assert_error(response, 400, "INVALID_CURSOR")


async def test_create_and_get_a_user(client: httpx.AsyncClient, owner: Account) -> None:
    """A created user is active, in the org, readable by id, and can log in."""
    email = unique_email("Pat").upper()
    created = await client.post(
        f"{owner.org_url}/users", headers=owner.headers, json=user_body(email)
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["email"] == email.lower()
    assert user["organization_id"] == owner.org_id
    assert user["is_active"] is True
    assert user["full_name"] == "Pat Doe"
    assert set(user) == {
        "id",
        "organization_id",
        "email",
        "full_name",
        "is_active",
        "created_at",
        "last_login_at",
    }
    fetched = await client.get(f"{owner.org_url}/users/{user['id']}", headers=owner.headers)
    assert fetched.status_code == 200
    assert fetched.json() == user
    tokens = await login(client, email.lower(), PASSWORD)
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["roles"] == ["member"]


async def test_each_login_records_its_time_on_the_user(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """last_login_at is empty until the first login, then moves forward with each login."""
    email = unique_email("Lou")
    created = await client.post(
        f"{owner.org_url}/users", headers=owner.headers, json=user_body(email)
    )
    assert created.status_code == 201, created.text
    url = f"{owner.org_url}/users/{created.json()['id']}"
    assert created.json()["last_login_at"] is None
    seen = []
    for _ in range(2):
        await login(client, email, PASSWORD)
        seen.append((await client.get(url, headers=owner.headers)).json()["last_login_at"])
    assert None not in seen
    first, second = (datetime.fromisoformat(value) for value in seen)
    assert second > first


async def test_unknown_user_is_not_found(client: httpx.AsyncClient, owner: Account) -> None:
    """GET of an id that is no user is 404 USER_NOT_FOUND."""
    response = await client.get(
        f"{owner.org_url}/users/00000000-0000-7000-8000-000000000000", headers=owner.headers
    )
    assert_error(response, 404, "USER_NOT_FOUND")


async def test_duplicate_email_is_a_conflict(client: httpx.AsyncClient, owner: Account) -> None:
    """An email already in use in this organization (any letter case) is 409 EMAIL_TAKEN.

    Addresses are unique per organization: the same address signing up another
    organization is not a conflict (tests/identity/test_email_per_organization.py).
    """
    member = await add_member(client, owner, "member", login_too=False)
    for email in (member.email, member.email.upper(), owner.email):
        response = await client.post(
            f"{owner.org_url}/users", headers=owner.headers, json=user_body(email)
        )
        assert_error(response, 409, "EMAIL_TAKEN")


@pytest.mark.parametrize("password", ["short1!", "password123", "x" * 129])
async def test_weak_password_is_refused(
    client: httpx.AsyncClient, owner: Account, password: str
) -> None:
    """Too short, too common or too long passwords are 422 WEAK_PASSWORD; nobody is created."""
    email = unique_email("weak")
    response = await client.post(
        f"{owner.org_url}/users", headers=owner.headers, json=user_body(email, password)
    )
    assert_error(response, 422, "WEAK_PASSWORD")
    assert password not in response.text
    users = await client.get(f"{owner.org_url}/users", headers=owner.headers)
    assert email not in {u["email"] for u in users.json()["items"]}


async def test_update_full_name(client: httpx.AsyncClient, owner: Account) -> None:
    """PATCH full_name changes the name and leaves the user's session alone."""
    member = await add_member(client, owner, "member")
    url = f"{owner.org_url}/users/{member.user_id}"
    response = await client.patch(url, headers=owner.headers, json={"full_name": "Renamed"})
    assert response.status_code == 200
    assert response.json()["full_name"] == "Renamed"
    assert (await client.get(url, headers=owner.headers)).json()["full_name"] == "Renamed"
    assert (await refresh(client, member)).status_code == 200


async def test_password_change_ends_the_users_sessions(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """After a password change the user's tokens fail; only the new password logs in."""
    member = await add_member(client, owner, "member")
    response = await client.patch(
        f"{owner.org_url}/users/{member.user_id}",
        headers=owner.headers,
        json={"password": NEW_PASSWORD},
    )
    assert response.status_code == 200, response.text
    assert_error(await refresh(client, member), 401, "INVALID_TOKEN")
    # The access tokens of the ended sessions stop working at once, not at expiry.
    assert_error(await client.get("/api/v1/auth/me", headers=member.headers), 401, "INVALID_TOKEN")
    old = await client.post(
        "/api/v1/auth/login", json={"email": member.email, "password": PASSWORD}
    )
    assert_error(old, 401, "INVALID_CREDENTIALS")
    await login(client, member.email, NEW_PASSWORD)
    # The owner who made the change keeps their own session.
    assert (await refresh(client, owner)).status_code == 200


async def test_own_password_change_ends_own_sessions(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A user changing their own password (with the current one) loses their other
    sessions' refresh tokens too."""
    other = await login(client, owner.email, PASSWORD)
    response = await client.post(
        "/api/v1/auth/password",
        headers=owner.headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204
    stale = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}
    )
    assert_error(stale, 401, "INVALID_TOKEN")
    await login(client, owner.email, NEW_PASSWORD)


async def test_weak_new_password_is_refused(client: httpx.AsyncClient, owner: Account) -> None:
    """PATCH with a weak password is 422 WEAK_PASSWORD and the old one still works."""
    member = await add_member(client, owner, "member")
    response = await client.patch(
        f"{owner.org_url}/users/{member.user_id}",
        headers=owner.headers,
        json={"password": "password"},
    )
    assert_error(response, 422, "WEAK_PASSWORD")
    assert (await refresh(client, member)).status_code == 200
    await login(client, member.email, PASSWORD)


async def test_deactivation_ends_access(client: httpx.AsyncClient, owner: Account) -> None:
    """DELETE deactivates: is_active false, access and refresh tokens 401, login refused."""
    member = await add_member(client, owner, "member")
    url = f"{owner.org_url}/users/{member.user_id}"
    response = await client.delete(url, headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False
    assert (await client.get(url, headers=owner.headers)).json()["is_active"] is False
    users = await client.get(f"{owner.org_url}/users", headers=owner.headers)
    assert member.user_id in {u["id"] for u in users.json()["items"]}

    assert_error(await client.get("/api/v1/auth/me", headers=member.headers), 401, "INVALID_TOKEN")
    assert_error(await client.get(owner.org_url, headers=member.headers), 401, "INVALID_TOKEN")
    assert_error(await refresh(client, member), 401, "INVALID_TOKEN")
    relogin = await client.post(
        "/api/v1/auth/login", json={"email": member.email, "password": PASSWORD}
    )
    assert_error(relogin, 401, "INVALID_CREDENTIALS")
    # Deactivating again is idempotent.
    again = await client.delete(url, headers=owner.headers)
    assert again.status_code == 200
    assert again.json()["is_active"] is False


@pytest.mark.parametrize(
    "extra",
    [
        {"organization_name": "Both Co", "invitation_token": "fmi_anything"},
        {},
    ],
    ids=["both", "neither"],
)
async def test_register_needs_exactly_one_way_in(
    client: httpx.AsyncClient, extra: dict[str, str]
) -> None:
    """Sign-up with both organization_name and invitation_token, or neither, is 422."""
    email = unique_email("reg")
    response = await client.post("/api/v1/auth/register", json={**user_body(email), **extra})
    assert_error(response, 422, "VALIDATION_ERROR")
    login_attempt = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert login_attempt.status_code == 401

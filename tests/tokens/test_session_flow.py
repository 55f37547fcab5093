"""The session life cycle through the HTTP API: login, me, refresh, logout."""

from __future__ import annotations

import httpx

from tests.conftest import PASSWORD, Account, login, sign_up


async def test_register_creates_an_organization_owned_by_the_registrant(
    client: httpx.AsyncClient,
) -> None:
    """Sign-up returns the new user and organization; the user is its owner."""
    account = await sign_up(client, org_name="Umbrella Corp")
    me = await client.get("/api/v1/auth/me", headers=account.headers)
    assert me.status_code == 200
    body = me.json()
    assert body["id"] == account.user_id
    assert body["organization_id"] == account.org_id
    assert body["email"] == account.email
    assert body["roles"] == ["owner"]
    assert "organization:delete" in body["permissions"]
    assert body["team_ids"] == []


async def test_login_returns_bearer_tokens(client: httpx.AsyncClient, owner: Account) -> None:
    """Login answers access + refresh tokens and the access lifetime."""
    tokens = await login(client, owner.email, PASSWORD)
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_token"].startswith("fmr_")
    assert tokens["access_token"].count(".") == 2


async def test_refresh_rotates_and_the_new_tokens_work(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A refresh gives a new pair; the new access token is accepted."""
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
    )
    assert response.status_code == 200
    new = response.json()
    assert new["refresh_token"] != owner.refresh_token
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {new['access_token']}"}
    )
    assert me.status_code == 200


async def test_refresh_token_reuse_revokes_the_whole_family(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Presenting a rotated refresh token kills every token of that session."""
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert first.status_code == 200
    successor = first.json()

    reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert reuse.status_code == 401
    assert reuse.json()["error"]["code"] == "REFRESH_TOKEN_REUSED"

    # The legitimate successor is dead too, and so are the family's access tokens.
    again = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": successor["refresh_token"]}
    )
    assert again.status_code == 401
    for token in (owner.access_token, successor["access_token"]):
        me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401
    # Another session of the same user is untouched.
    other = await login(client, owner.email, PASSWORD)
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert me.status_code == 200


async def test_logout_revokes_access_and_refresh(client: httpx.AsyncClient, owner: Account) -> None:
    """After logout the access token gets 401 everywhere and the refresh token is dead."""
    response = await client.post("/api/v1/auth/logout", headers=owner.headers)
    assert response.status_code == 204
    for method, url in (
        ("GET", "/api/v1/auth/me"),
        ("GET", owner.org_url),
        ("GET", f"{owner.org_url}/users"),
        ("POST", "/api/v1/auth/logout"),
    ):
        after = await client.request(method, url, headers=owner.headers)
        assert after.status_code == 401, (method, url)
        assert after.json()["error"]["code"] == "INVALID_TOKEN"
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
    )
    assert refreshed.status_code == 401


async def test_wrong_password_and_unknown_email_fail_alike(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Both failures give the same status, code and message (no account enumeration)."""
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": "Not-The-Password-1"}
    )
    unknown = await client.post(
        "/api/v1/auth/login",
        json={"email": "nobody-" + owner.email, "password": "Not-The-Password-1"},
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["code"] == unknown.json()["error"]["code"] == "INVALID_CREDENTIALS"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]

"""Who may log in, and what a login does to the stored password hash.

Apps with other settings (stronger hashing, sign-up off) run on the same database as the
session's app, the way a redeployed service meets the data of its previous version.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from faultmaven_auth.config import Settings
from faultmaven_auth.errors import LoginCapacityExceeded
from faultmaven_auth.identity.passwords import VerifyResult
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import User
from tests.conftest import (
    PASSWORD,
    SYSTEM_ROLE_IDS,
    Account,
    add_member,
    client_for,
    login,
    running_app,
    sign_up,
    unique_email,
)
from tests.tokens.conftest import bearer

# The service's default argon2id parameters (OWASP's recommended minimum).
PRODUCTION_ARGON2 = {"argon2_time_cost": 2, "argon2_memory_cost_kib": 19456}


async def stored_password_hash(runtime: Runtime, user_id: str) -> str:
    async with runtime.db.session() as session:
        value = await session.scalar(
            select(User.password_hash).where(User.id == uuid.UUID(user_id))
        )
    assert value is not None
    return value


async def login_status(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


def register_body(password: str, **extra: Any) -> dict[str, Any]:
    return {
        "organization_name": "Policy Co",
        "email": unique_email("policy"),
        "password": password,
        "full_name": "Policy Person",
        **extra,
    }


async def test_login_upgrades_a_hash_made_with_weaker_parameters(
    client: httpx.AsyncClient, backend_settings: Settings, runtime: Runtime
) -> None:
    """A password hashed with old argon2 parameters is rehashed with the current ones."""
    account = await sign_up(client)
    old_hash = await stored_password_hash(runtime, account.user_id)
    assert "m=1024,t=1" in old_hash

    upgraded = backend_settings.model_copy(update=PRODUCTION_ARGON2)
    async with running_app(upgraded) as app, client_for(app) as stronger:
        await login(stronger, account.email, PASSWORD)
        new_hash = await stored_password_hash(app.state.runtime, account.user_id)
        assert new_hash.startswith("$argon2id$")
        assert "m=19456,t=2,p=1" in new_hash
        # The rehashed password still logs in, on the new and the old deployment alike.
        await login(stronger, account.email, PASSWORD)
    await login(client, account.email, PASSWORD)


async def test_login_at_hashing_capacity_succeeds_and_leaves_the_upgrade_for_later(
    client: httpx.AsyncClient,
    backend_settings: Settings,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The password was right: a full hashing queue at the upgrade step must not fail the
    login (503); the old hash stays, and a later login upgrades it."""
    account = await sign_up(client)
    old_hash = await stored_password_hash(runtime, account.user_id)

    upgraded = backend_settings.model_copy(update=PRODUCTION_ARGON2)
    async with running_app(upgraded) as app, client_for(app) as stronger:
        hasher = app.state.runtime.hasher

        async def at_capacity(password: str) -> str:
            raise LoginCapacityExceeded(1)

        with monkeypatch.context() as patch:
            patch.setattr(hasher, "hash", at_capacity)
            await login(stronger, account.email, PASSWORD)
        assert await stored_password_hash(app.state.runtime, account.user_id) == old_hash
        await login(stronger, account.email, PASSWORD)
        assert "m=19456,t=2,p=1" in await stored_password_hash(app.state.runtime, account.user_id)


async def test_login_keeps_a_hash_with_current_parameters(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A hash already made with the current parameters is left as it is."""
    account = await sign_up(client)
    before = await stored_password_hash(runtime, account.user_id)
    await login(client, account.email, PASSWORD)
    assert await stored_password_hash(runtime, account.user_id) == before


async def test_deactivated_user_cannot_log_in(client: httpx.AsyncClient, owner: Account) -> None:
    """A member deactivated by the owner gets 401 INVALID_CREDENTIALS with the right password."""
    member = await add_member(client, owner, "member")
    removed = await client.delete(f"{owner.org_url}/users/{member.user_id}", headers=owner.headers)
    assert removed.status_code == 200
    assert removed.json()["is_active"] is False

    response = await login_status(client, member.email, PASSWORD)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"
    me = await client.get("/api/v1/auth/me", headers=member.headers)
    assert me.status_code == 401
    assert me.json()["error"]["code"] == "INVALID_TOKEN"


async def test_deleted_organizations_users_cannot_log_in_or_use_tokens(
    client: httpx.AsyncClient,
) -> None:
    """After the org is soft-deleted its owner and members get 401 on login and with tokens."""
    owner = await sign_up(client, org_name="Doomed")
    member = await add_member(client, owner, "admin")
    deleted = await client.delete(owner.org_url, headers=owner.headers)
    assert deleted.status_code == 204

    for account in (owner, member):
        response = await login_status(client, account.email, PASSWORD)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"
        me = await client.get("/api/v1/auth/me", headers=account.headers)
        assert me.status_code == 401
        assert me.json()["error"]["code"] == "INVALID_TOKEN"
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        assert refreshed.status_code == 401


async def test_unknown_email_still_verifies_a_password(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown email goes through PasswordHasher.verify once, with no stored hash."""
    calls: list[tuple[str | None, str]] = []
    original = runtime.hasher.verify

    async def spy(password_hash: str | None, password: str) -> VerifyResult:
        calls.append((password_hash, password))
        return await original(password_hash, password)

    monkeypatch.setattr(runtime.hasher, "verify", spy)
    response = await login_status(client, unique_email("nobody"), "Some-Password-123")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"
    assert calls == [(None, "Some-Password-123")]


async def test_known_email_verifies_against_the_stored_hash(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong password for a known email is verified against that user's hash, once."""
    account = await sign_up(client)
    stored = await stored_password_hash(runtime, account.user_id)
    calls: list[tuple[str | None, str]] = []
    original = runtime.hasher.verify

    async def spy(password_hash: str | None, password: str) -> VerifyResult:
        calls.append((password_hash, password))
        return await original(password_hash, password)

    monkeypatch.setattr(runtime.hasher, "verify", spy)
    response = await login_status(client, account.email, "Wrong-Password-123")
    assert response.status_code == 401
    assert calls == [(stored, "Wrong-Password-123")]


@pytest.mark.parametrize(
    "password",
    ["Ab1-xyz", "Aa1-" + "x" * 125, "password123", "PASSWORD123"],
    ids=["7 characters", "129 characters", "common", "common, other case"],
)
async def test_weak_password_is_refused_on_register(
    client: httpx.AsyncClient, password: str
) -> None:
    """Too short, too long or common passwords get 422 WEAK_PASSWORD on sign-up."""
    response = await client.post("/api/v1/auth/register", json=register_body(password))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "WEAK_PASSWORD"
    assert error["details"][0]["field"] == "password"
    assert password not in response.text


@pytest.mark.parametrize(
    "password", ["Ab1-wxyz", "Aa1-" + "x" * 124], ids=["8 characters", "128 characters"]
)
async def test_passwords_at_the_length_limits_are_accepted(
    client: httpx.AsyncClient, password: str
) -> None:
    """The policy's bounds are inclusive: 8 and 128 characters both sign up and log in."""
    body = register_body(password)
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    await login(client, body["email"], password)


async def test_weak_password_is_refused_when_creating_a_member(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """The same policy applies to members created by an admin."""
    response = await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={
            "email": unique_email("weak"),
            "password": "password123",
            "full_name": "Weak Person",
            "role_ids": [SYSTEM_ROLE_IDS["member"]],
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "WEAK_PASSWORD"


@pytest.fixture
async def signup_disabled_app(backend_settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(backend_settings.model_copy(update={"allow_self_signup": False})) as app:
        yield app


async def test_self_signup_can_be_turned_off(signup_disabled_app: FastAPI) -> None:
    """With ALLOW_SELF_SIGNUP=false a new organization sign-up gets 403 SIGNUP_DISABLED."""
    async with client_for(signup_disabled_app) as client:
        body = register_body(PASSWORD)
        response = await client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "SIGNUP_DISABLED"
        refused = await login_status(client, body["email"], PASSWORD)
        assert refused.status_code == 401


async def test_invitations_still_work_with_signup_off(
    client: httpx.AsyncClient, owner: Account, signup_disabled_app: FastAPI
) -> None:
    """Sign-up off only stops new organizations: an invited user can still join."""
    email = unique_email("invitee")
    invited = await client.post(
        f"{owner.org_url}/invitations",
        headers=owner.headers,
        json={"email": email, "role_id": SYSTEM_ROLE_IDS["member"]},
    )
    assert invited.status_code == 201, invited.text
    async with client_for(signup_disabled_app) as closed:
        joined = await closed.post(
            "/api/v1/auth/register",
            json={
                "email": email,
                "password": PASSWORD,
                "full_name": "Invited Person",
                "invitation_token": invited.json()["token"],
            },
        )
        assert joined.status_code == 201, joined.text
        assert joined.json()["organization"]["id"] == owner.org_id
        tokens = await login(closed, email, PASSWORD)
        me = await closed.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        assert me.json()["roles"] == ["member"]

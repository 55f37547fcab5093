"""A session (refresh family) ends at login + SESSION_ABSOLUTE_LIFETIME_SECONDS.

Rotation issues each refresh token for REFRESH_TOKEN_TTL_SECONDS, but never past the
session's absolute end: a client that keeps refreshing cannot stay logged in forever.
The tests move a session's start back in the database, as if it had begun long ago.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import jwt
from sqlalchemy import update

from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import RefreshToken
from faultmaven_auth.storage.models.base import utcnow
from tests.conftest import Account
from tests.tokens.test_introspection import create_service_client, introspect

LIFETIME = timedelta(days=30)  # SESSION_ABSOLUTE_LIFETIME_SECONDS' default, used by the fixtures


async def start_session_at(runtime: Runtime, account: Account, started_at: datetime) -> None:
    """Pretend the account's sessions began at ``started_at``."""
    async with runtime.db.transaction() as session:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == uuid.UUID(account.user_id))
            .values(session_started_at=started_at)
        )


async def test_default_absolute_lifetime_is_thirty_days(runtime: Runtime) -> None:
    """Out of the box a session ends 30 days after its login."""
    assert runtime.settings.session_absolute_lifetime_seconds == LIFETIME.total_seconds()


async def test_refresh_after_the_absolute_lifetime_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, owner: Account
) -> None:
    """A refresh token that has not expired by its own TTL still gets 401 INVALID_TOKEN
    once its session is older than the absolute lifetime."""
    await start_session_at(runtime, owner, utcnow() - LIFETIME - timedelta(seconds=5))

    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
    )

    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "INVALID_TOKEN"


async def test_rotation_does_not_extend_a_session_past_its_end(
    client: httpx.AsyncClient, runtime: Runtime, owner: Account
) -> None:
    """Five minutes before the session's end, a refresh works but both new tokens expire
    at the session's end: the access token sooner than its TTL, the refresh token too."""
    started = utcnow().replace(microsecond=0) - LIFETIME + timedelta(minutes=5)
    session_end = int((started + LIFETIME).timestamp())
    await start_session_at(runtime, owner, started)

    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] == session_end
    assert 250 <= body["expires_in"] <= 300
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    service = await create_service_client(client, owner)
    refresh = await introspect(client, service, body["refresh_token"])
    assert refresh["active"] is True
    assert refresh["exp"] == session_end
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200


async def test_a_young_session_rotates_with_full_lifetimes(
    client: httpx.AsyncClient, runtime: Runtime, owner: Account
) -> None:
    """Far from the end, refresh gives the full access TTL and keeps the session's start."""
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
    )
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == runtime.settings.access_token_ttl_seconds

"""RFC 7662 introspection: what a service client may learn about a token.

An access token is active when its signature and claims verify, it is not revoked, and
its user and organization are still active; a refresh token when it is the live end of
its family. An organization-bound client sees only its own organization's tokens; for
anything else the answer is just ``{"active": false}``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from faultmaven_auth.errors import InvalidToken
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import RefreshToken
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.tokens.access import ExpiredToken
from faultmaven_auth.tokens.authentication import resolve_principal
from faultmaven_auth.tokens.client_credentials import AuthenticatedClient
from faultmaven_auth.tokens.service import REFRESH_TOKEN_PREFIX, hash_token


async def introspect(runtime: Runtime, client: AuthenticatedClient, token: str) -> dict[str, Any]:
    """RFC 7662: ``{"active": false}`` for anything not currently valid or not visible.

    An access token goes through the same caches as a bearer token (``authentication``):
    its signature once per worker, then one store round trip, and the database only
    when the user's cached state is stale.
    """
    inactive: dict[str, Any] = {"active": False}
    try:
        claims = runtime.verified_tokens.verify(token)
    except ExpiredToken:
        runtime.metrics.token_validated("expired")
        return inactive
    except InvalidToken:
        return await _introspect_refresh(runtime, client, token)
    if client.organization_id is not None and client.organization_id != claims.organization_id:
        return inactive
    try:
        await resolve_principal(runtime, claims)
    except InvalidToken:
        return inactive
    return {
        "active": True,
        "token_type": "access_token",
        "sub": str(claims.user_id),
        "org_id": str(claims.organization_id),
        "iss": claims.issuer,
        "aud": claims.audience,
        "iat": int(claims.issued_at.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "jti": claims.jti,
        "client_id": client.client_id,
    }


async def _introspect_refresh(
    runtime: Runtime, client: AuthenticatedClient, token: str
) -> dict[str, Any]:
    if not token.startswith(REFRESH_TOKEN_PREFIX):
        runtime.metrics.token_validated("failure")
        return {"active": False}
    async with runtime.db.session() as session:
        row = await session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == hash_token(token))
        )
    now = utcnow()
    if (
        row is None
        or row.rotated_at is not None
        or row.revoked_at is not None
        or row.expires_at <= now
        or (client.organization_id is not None and client.organization_id != row.organization_id)
    ):
        return {"active": False}
    return {
        "active": True,
        "token_type": "refresh_token",
        "sub": str(row.user_id),
        "org_id": str(row.organization_id),
        "iat": int(row.created_at.timestamp()),
        "exp": int(row.expires_at.timestamp()),
        "client_id": client.client_id,
    }

"""Revocation of access tokens in the key-value store.

Access tokens are stateless, so revoking one means remembering its ``jti`` until it
would have expired anyway. Revoking a whole session family (logout, refresh reuse)
remembers the family id for one access-token lifetime: no token of that family issued
before then can still be alive afterwards.
"""

from __future__ import annotations

import math
import uuid

from faultmaven_auth.storage.kv import KeyValueStore
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.tokens.access import AccessClaims


def _jti_key(jti: str) -> str:
    return f"revoked:jti:{jti}"


def _family_key(session_id: uuid.UUID) -> str:
    return f"revoked:sid:{session_id}"


async def revoke_access_token(kv: KeyValueStore, claims: AccessClaims) -> None:
    remaining = math.ceil((claims.expires_at - utcnow()).total_seconds()) + 5
    if remaining > 0:
        await kv.set(_jti_key(claims.jti), "1", remaining)


async def revoke_family_access(
    kv: KeyValueStore, session_id: uuid.UUID, access_ttl_seconds: int
) -> None:
    await kv.set(_family_key(session_id), "1", access_ttl_seconds + 5)


def revocation_keys(claims: AccessClaims) -> list[str]:
    """The keys whose presence means revoked; callers read them with whatever else the
    request needs from the store, in one round trip."""
    return [_jti_key(claims.jti), _family_key(claims.session_id)]

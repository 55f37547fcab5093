"""Service client authentication (HTTP Basic) for introspection, cached safely.

A full check reads the client's row, compares the secret's hash in constant time (an
unknown client id costs the same comparison as a known one), refuses a revoked client,
and re-checks an organization-bound client's authority (organization live, creator
active and still holding ``service_clients:manage``).

With a shared store (Redis) the result is kept per worker: the presented credentials
are remembered by an HMAC under a per-process random key (never the secret itself),
and the client's check is valid only under its organization's generation (platform
clients: the generation of everything), which every revocation, deactivation, role or
organization change replaces (``principal_writes``; the operator's CLI replaces it too).
With the in-process store the CLI, another process, cannot reach that generation. On
SQLite the CLI then rewrites a marker file beside the database after each revocation
(``ClientChangeMarker``) and a cached check holds only while the marker is unchanged;
on a database server without a shared store the row is read on every request. A
revocation holds at once either way.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.errors import Unauthorized
from faultmaven_auth.hostile_input import unsafe_text
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.rbac.repository import effective_permissions
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import Organization, ServiceClient, User
from faultmaven_auth.tokens.client_credentials import AuthenticatedClient
from faultmaven_auth.tokens.principal_cache import (
    EVERYTHING_KEY,
    Generations,
    complete_generations,
    generation_keys,
)
from faultmaven_auth.tokens.service import hash_token

logger = logging.getLogger("faultmaven_auth.service_clients")

_DUMMY_HASH = hash_token("no-such-client")


def parse_basic_auth(header: str | None) -> tuple[str, str]:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise _client_auth_failed()
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _client_auth_failed() from exc
    client_id, sep, secret = decoded.partition(":")
    # Control characters are in no issued id or secret; refused here, they never reach
    # a query (PostgreSQL would fail on a NUL where SQLite just finds nothing).
    if not sep or unsafe_text(decoded) is not None:
        raise _client_auth_failed()
    return client_id, secret


def _generation_keys(organization_id: uuid.UUID | None) -> list[str]:
    if organization_id is None:
        return [EVERYTHING_KEY, EVERYTHING_KEY]  # a platform client: only everything's
    return generation_keys(organization_id)


async def authenticate_service_client(runtime: Runtime, header: str | None) -> AuthenticatedClient:
    """The client the Basic credentials prove, or 401 ``INVALID_CLIENT``."""
    client_id, secret = parse_basic_auth(header)
    fingerprint = runtime.client_credentials.fingerprint(client_id, secret)
    marker = runtime.client_changes
    shared_store = not runtime.settings.uses_in_process_store
    cacheable = shared_store or marker is not None
    # Read before the row: a revocation committed after this read replaces the marker.
    tag = marker.current() if marker is not None and not shared_store else None
    known = runtime.client_credentials.get(fingerprint, tag) if cacheable else None
    if known is not None:
        keys = _generation_keys(known.organization_id)
        seen = Generations(*await runtime.kv.get_many(keys))
        if runtime.client_authorities.get(known.id, seen):
            return known
    client = await _check_credentials(runtime, client_id, secret)
    if client is None:
        runtime.client_credentials.forget(fingerprint)
        raise _client_auth_failed()
    if client.organization_id is None and not cacheable:
        return client  # a platform client: the operator's, not a tenant's
    keys = _generation_keys(client.organization_id)
    seen = Generations(*await runtime.kv.get_many(keys))
    if not shared_store and runtime.client_authorities.get(client.id, seen):
        if cacheable:
            runtime.client_credentials.put(fingerprint, client, tag)
        return client
    # Settled before the checks below, so a change committed after them replaces it.
    generations = seen if seen.complete else await complete_generations(runtime.kv, keys, seen)
    if client.organization_id is not None:
        async with runtime.db.session() as session:
            reason = await stale_authority(session, client)
        if reason is not None:
            # The caller holds the right secret: the reason is no help to a guesser, and
            # the operator needs it. The answer to the caller stays the same 401.
            logger.warning(
                "Service client refused",
                extra={"event_type": "service_client_refused", "reason": reason},
            )
            runtime.client_credentials.forget(fingerprint)
            raise _client_auth_failed()
    runtime.client_authorities.put(client.id, True, generations)
    if cacheable:
        runtime.client_credentials.put(fingerprint, client, tag)
    return client


async def _check_credentials(
    runtime: Runtime, client_id: str, secret: str
) -> AuthenticatedClient | None:
    """The live client these credentials prove, from its row; None for any failure."""
    async with runtime.db.session() as session:
        row = (
            await session.execute(
                select(
                    ServiceClient.id,
                    ServiceClient.secret_hash,
                    ServiceClient.organization_id,
                    ServiceClient.created_by_id,
                    ServiceClient.revoked_at,
                ).where(ServiceClient.client_id == client_id)
            )
        ).first()
    expected = row.secret_hash if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(expected, hash_token(secret))
    if row is None or not matches or row.revoked_at is not None:
        return None
    return AuthenticatedClient(row.id, client_id, row.organization_id, row.created_by_id)


async def stale_authority(session: AsyncSession, client: AuthenticatedClient) -> str | None:
    """Why the organization-bound ``client`` no longer carries authority, or None."""
    org_deleted_at = await session.scalar(
        select(Organization.deleted_at).where(Organization.id == client.organization_id)
    )
    if org_deleted_at is not None:
        return "organization_deleted"
    if client.created_by_id is None:
        return None  # bound to the organization by the operator's CLI
    creator = (
        await session.execute(
            select(User.is_active, User.organization_id).where(User.id == client.created_by_id)
        )
    ).first()
    if creator is None or not creator[0] or creator[1] != client.organization_id:
        return "creator_inactive"
    _, permissions = await effective_permissions(session, client.created_by_id)
    if Permission.SERVICE_CLIENTS_MANAGE not in permissions:
        return "creator_lacks_permission"
    return None


def _client_auth_failed() -> Unauthorized:
    error = Unauthorized("Client authentication failed", code="INVALID_CLIENT")
    error.headers = {"WWW-Authenticate": 'Basic realm="introspection"'}
    return error

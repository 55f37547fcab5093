"""Service clients: machines that call introspection with HTTP Basic (id + secret).

The secret is shown once at creation and stored as a SHA-256 hash; it is a 256-bit
random value, so a fast hash is enough. Comparison is constant-time, and an unknown
client id costs the same comparison as a known one.

A client made by a member through the API carries that member's authority, and no more
of it than the member still has: at every authentication the creator must be an active
member of a live organization holding ``service_clients:manage``. On top of that re-check,
deactivating the creator and deleting the organization revoke the client for good
(audited), so it stays dead whatever happens to roles later. Platform clients made by
the operator's CLI (no organization, no creator) answer to nobody but the operator.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.errors import NotFound, Unauthorized
from faultmaven_auth.hostile_input import unsafe_text
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.rbac.repository import effective_permissions
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import Organization, ServiceClient, User
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.storage.tenancy import OrgId, scoped
from faultmaven_auth.tokens.principal_cache import (
    Generations,
    complete_generations,
    generation_keys,
)
from faultmaven_auth.tokens.service import hash_token

logger = logging.getLogger("faultmaven_auth.service_clients")

_DUMMY_HASH = hash_token("no-such-client")


@dataclass(frozen=True)
class CreatedServiceClient:
    client: ServiceClient
    client_secret: str


def create_service_client(
    session: AsyncSession,
    *,
    name: str,
    organization_id: uuid.UUID | None,
    created_by_id: uuid.UUID | None = None,
) -> CreatedServiceClient:
    secret = "fms_" + secrets.token_urlsafe(32)
    client = ServiceClient(
        client_id="sc_" + secrets.token_hex(12),
        secret_hash=hash_token(secret),
        name=name,
        organization_id=organization_id,
        created_by_id=created_by_id,
    )
    session.add(client)
    return CreatedServiceClient(client=client, client_secret=secret)


# -- listing and revocation -------------------------------------------------------------


async def list_service_clients(
    session: AsyncSession, org_id: OrgId, *, after: uuid.UUID | None, limit: int
) -> list[ServiceClient]:
    stmt = scoped(select(ServiceClient), ServiceClient, org_id).order_by(ServiceClient.id)
    if after is not None:
        stmt = stmt.where(ServiceClient.id > after)
    return list((await session.scalars(stmt.limit(limit))).all())


async def list_all_service_clients(
    session: AsyncSession, organization_id: uuid.UUID | None = None
) -> list[ServiceClient]:
    """Every client (the operator's view), or one organization's."""
    stmt = select(ServiceClient).order_by(ServiceClient.created_at, ServiceClient.id)
    if organization_id is not None:
        stmt = stmt.where(ServiceClient.organization_id == organization_id)
    return list((await session.scalars(stmt)).all())


async def get_service_client(
    session: AsyncSession, org_id: OrgId, service_client_id: uuid.UUID
) -> ServiceClient:
    client: ServiceClient | None = await session.scalar(
        scoped(select(ServiceClient), ServiceClient, org_id)
        .where(ServiceClient.id == service_client_id)
        .with_for_update()
    )
    if client is None:
        raise NotFound("Service client not found", code="SERVICE_CLIENT_NOT_FOUND")
    return client


def revoke_service_client(
    session: AsyncSession,
    client: ServiceClient,
    *,
    meta: RequestMeta,
    actor_id: uuid.UUID | None,
    reason: str,
) -> bool:
    """Revoke ``client`` and audit it; False (and nothing recorded) if already revoked."""
    if client.revoked_at is not None:
        return False
    client.revoked_at = utcnow()
    record_audit_event(
        session,
        AuditEventType.SERVICE_CLIENT_REVOKED,
        meta=meta,
        organization_id=client.organization_id,
        actor_id=actor_id,
        target_type="service_client",
        target_id=client.id,
        details={"client_id": client.client_id, "reason": reason},
    )
    return True


async def _revoke_live_clients(
    session: AsyncSession,
    condition: ColumnElement[bool],
    *,
    meta: RequestMeta,
    actor_id: uuid.UUID | None,
    reason: str,
) -> Sequence[ServiceClient]:
    live = (
        await session.scalars(
            select(ServiceClient)
            .where(condition, ServiceClient.revoked_at.is_(None))
            .with_for_update()
        )
    ).all()
    for client in live:
        revoke_service_client(session, client, meta=meta, actor_id=actor_id, reason=reason)
    return live


async def revoke_service_clients_created_by(
    session: AsyncSession, creator_id: uuid.UUID, *, meta: RequestMeta, actor_id: uuid.UUID | None
) -> Sequence[ServiceClient]:
    """The creator's authority ended (deactivation): their clients are revoked, audited."""
    return await _revoke_live_clients(
        session,
        ServiceClient.created_by_id == creator_id,
        meta=meta,
        actor_id=actor_id,
        reason="creator_deactivated",
    )


async def revoke_organization_service_clients(
    session: AsyncSession, org_id: uuid.UUID, *, meta: RequestMeta, actor_id: uuid.UUID | None
) -> Sequence[ServiceClient]:
    """The organization is deleted: every client bound to it is revoked, audited."""
    return await _revoke_live_clients(
        session,
        ServiceClient.organization_id == org_id,
        meta=meta,
        actor_id=actor_id,
        reason="organization_deleted",
    )


# -- authentication ---------------------------------------------------------------------


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


@dataclass(frozen=True)
class AuthenticatedClient:
    """A service client whose secret and authority were checked for this request."""

    id: uuid.UUID
    client_id: str
    organization_id: uuid.UUID | None
    created_by_id: uuid.UUID | None


async def authenticate_service_client(runtime: Runtime, header: str | None) -> AuthenticatedClient:
    """The client the Basic credentials prove, or 401 ``INVALID_CLIENT``.

    Its row (secret hash, revocation) is read on every request, so a revocation made
    anywhere, the operator's CLI included, holds at once. The authority re-check behind
    it (organization live, creator active and still allowed) is what costs queries; it
    is cached per client under its organization's generation, which every write to
    those rows replaces (``principal_writes``).
    """
    client_id, secret = parse_basic_auth(header)
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
        raise _client_auth_failed()
    client = AuthenticatedClient(row.id, client_id, row.organization_id, row.created_by_id)
    if client.organization_id is None:
        return client  # a platform client: the operator's, not a tenant's
    seen = Generations(*await runtime.kv.get_many(generation_keys(client.organization_id)))
    if runtime.client_authorities.get(client.id, seen):
        return client
    generations = await complete_generations(runtime.kv, client.organization_id, seen)
    async with runtime.db.session() as session:
        reason = await stale_authority(session, client)
    if reason is not None:
        # The caller holds the right secret: the reason is no help to a guesser, and
        # the operator needs it. The answer to the caller stays the same 401.
        logger.warning(
            "Service client refused",
            extra={"event_type": "service_client_refused", "reason": reason},
        )
        raise _client_auth_failed()
    runtime.client_authorities.put(client.id, True, generations)
    return client


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

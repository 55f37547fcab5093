"""Service clients: machines that call introspection with HTTP Basic (id + secret).

The secret is shown once at creation and stored as a SHA-256 hash; it is a 256-bit
random value, so a fast hash is enough. Checking it, and the client's authority, is
``service_client_auth``.

A client made by a member through the API carries that member's authority, and no more
of it than the member still has: at every authentication the creator must be an active
member of a live organization holding ``service_clients:manage``. On top of that re-check,
deactivating the creator and deleting the organization revoke the client for good
(audited), so it stays dead whatever happens to roles later. Platform clients made by
the operator's CLI (no organization, no creator) answer to nobody but the operator.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.errors import NotFound
from faultmaven_auth.storage.models import ServiceClient
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.storage.tenancy import OrgId, scoped
from faultmaven_auth.tokens.service import hash_token


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

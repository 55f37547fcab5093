"""An organization's service clients: create (secret shown once), list, revoke."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query, status

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.rbac.dependencies import OrgAccess, require
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.schemas import Page, decode_cursor, encode_cursor
from faultmaven_auth.tokens.schemas import (
    ServiceClientCreate,
    ServiceClientCreated,
    ServiceClientOut,
)
from faultmaven_auth.tokens.service_clients import (
    create_service_client,
    get_service_client,
    list_service_clients,
    revoke_service_client,
)

router = APIRouter(
    prefix="/api/v1/organizations/{org_id}/service-clients", tags=["service clients"]
)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ServiceClientCreated)
async def create_org_service_client(
    body: ServiceClientCreate,
    access: OrgAccess = Depends(require(Permission.SERVICE_CLIENTS_MANAGE)),
    runtime: Runtime = Depends(get_runtime),
) -> ServiceClientCreated:
    """A client bound to this organization, working while its creator may manage clients."""
    async with access.transaction(runtime.db) as session:
        created = create_service_client(
            session,
            name=body.name,
            organization_id=access.org_id,
            created_by_id=access.principal.user.id,
        )
        await session.flush()
        access.audit(
            session,
            AuditEventType.SERVICE_CLIENT_CREATED,
            target_type="service_client",
            target_id=created.client.id,
            details={"client_id": created.client.client_id},
        )
    client = created.client
    return ServiceClientCreated(
        id=client.id,
        client_id=client.client_id,
        client_secret=created.client_secret,
        name=client.name,
        organization_id=client.organization_id,
        created_by_id=client.created_by_id,
        created_at=client.created_at,
    )


@router.get("", response_model=Page[ServiceClientOut])
async def list_org_service_clients(
    cursor: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=50, ge=1, le=200),
    access: OrgAccess = Depends(require(Permission.SERVICE_CLIENTS_MANAGE)),
    runtime: Runtime = Depends(get_runtime),
) -> Page[ServiceClientOut]:
    """This organization's clients, revoked ones included; never a secret or its hash."""
    async with runtime.db.session() as session:
        clients = await list_service_clients(
            session, access.org_id, after=decode_cursor(cursor), limit=limit + 1
        )
    more = len(clients) > limit
    clients = clients[:limit]
    return Page[ServiceClientOut](
        items=[ServiceClientOut.model_validate(c) for c in clients],
        next_cursor=encode_cursor(clients[-1].id) if more else None,
    )


@router.delete("/{service_client_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_org_service_client(
    service_client_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.SERVICE_CLIENTS_MANAGE)),
    runtime: Runtime = Depends(get_runtime),
) -> None:
    """Revoke at once (idempotent: revoking a revoked client is 204, audited once)."""
    async with access.transaction(runtime.db) as session:
        client = await get_service_client(session, access.org_id, service_client_id)
        revoke_service_client(
            session, client, meta=access.meta, actor_id=access.principal.user.id, reason="revoked"
        )

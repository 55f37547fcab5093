"""Audit log queries: newest first, keyset pagination on the time-ordered id."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.storage.db import Database
from faultmaven_auth.storage.models import AuditEvent
from faultmaven_auth.storage.tenancy import OrgId, scoped


@dataclass(frozen=True)
class AuditFilter:
    event_type: str | None = None
    actor_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_audit_events(
    session: AsyncSession,
    org_id: OrgId,
    flt: AuditFilter,
    *,
    before: uuid.UUID | None,
    limit: int,
) -> list[AuditEvent]:
    stmt = scoped(select(AuditEvent), AuditEvent, org_id)
    if flt.event_type is not None:
        stmt = stmt.where(AuditEvent.event_type == flt.event_type)
    if flt.actor_id is not None:
        stmt = stmt.where(AuditEvent.actor_id == flt.actor_id)
    if flt.since is not None:
        stmt = stmt.where(AuditEvent.occurred_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(AuditEvent.occurred_at < flt.until)
    if before is not None:
        stmt = stmt.where(AuditEvent.id < before)
    stmt = stmt.order_by(AuditEvent.id.desc()).limit(limit)
    return list((await session.scalars(stmt)).all())


async def iter_audit_events(
    db: Database, org_id: OrgId, flt: AuditFilter, *, batch: int = 500
) -> AsyncIterator[AuditEvent]:
    """Every matching event, fetched in batches so an export never loads the whole log."""
    before: uuid.UUID | None = None
    while True:
        async with db.session() as session:
            rows = await list_audit_events(session, org_id, flt, before=before, limit=batch)
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        before = rows[-1].id

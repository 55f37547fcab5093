"""Writes audit events into the caller's transaction, so they commit or roll back with it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType, Outcome
from faultmaven_auth.errors import PermissionDenied
from faultmaven_auth.hostile_input import printable
from faultmaven_auth.storage.db import Database
from faultmaven_auth.storage.models import AuditEvent

# isort: split
# After the models: importing them imports audit_chain (to install its listener) and
# audit_chain imports them, so audit_chain must never be the first of the two loaded.
from faultmaven_auth.storage.audit_chain import append_event


@dataclass(frozen=True)
class RequestMeta:
    """Where a request came from, as the audit log records it."""

    ip_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


def record_audit_event(
    session: AsyncSession,
    event_type: AuditEventType,
    *,
    meta: RequestMeta,
    organization_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add the event to the session: it is linked and written when the session flushes."""
    event = new_audit_event(
        event_type, meta, organization_id, actor_id, target_type, target_id, outcome, details
    )
    session.add(event)
    return event


async def write_audit_event(
    session: AsyncSession,
    event_type: AuditEventType,
    *,
    meta: RequestMeta,
    organization_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Link and insert the event now with Core statements (``audit_chain.append_event``).

    For hot paths whose transaction otherwise needs no ORM flush (refresh, login): the
    same event in the same transaction, without the unit of work's cost.
    """
    event = new_audit_event(
        event_type, meta, organization_id, actor_id, target_type, target_id, outcome, details
    )
    await session.run_sync(append_event, event)
    return event


def new_audit_event(
    event_type: AuditEventType,
    meta: RequestMeta,
    organization_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """The event as it will be stored, before it is linked into its chain."""
    return AuditEvent(
        organization_id=organization_id,
        actor_id=actor_id,
        event_type=event_type.value,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        outcome=outcome.value,
        ip_address=meta.ip_address,
        user_agent=printable(meta.user_agent or "")[:512] or None,
        request_id=meta.request_id,
        details=details or {},
    )


@asynccontextmanager
async def audited_transaction(
    db: Database, meta: RequestMeta, *, organization_id: uuid.UUID, actor_id: uuid.UUID
) -> AsyncIterator[AsyncSession]:
    """A write transaction whose refusals are audited.

    A ``PermissionDenied`` raised inside rolls the change back, then records the denial
    in a transaction of its own, so the refusal is kept even though the change is not.
    """
    try:
        async with db.transaction() as session:
            yield session
    except PermissionDenied as exc:
        async with db.transaction() as session:
            record_audit_event(
                session,
                AuditEventType.PERMISSION_DENIED,
                meta=meta,
                organization_id=organization_id,
                actor_id=actor_id,
                outcome=Outcome.DENIED,
                details={"reason": exc.message},
            )
        raise

"""Audit log query and NDJSON export (needs ``audit:read``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from faultmaven_auth.audit.repository import AuditFilter, iter_audit_events, list_audit_events
from faultmaven_auth.audit.schemas import AuditEventOut
from faultmaven_auth.errors import ValidationFailed
from faultmaven_auth.rbac.dependencies import OrgAccess, require
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.schemas import Page, decode_cursor, encode_cursor

# Without an offset a time is ambiguous (and comparing it would fail); ask for one.
_SINCE_UNTIL = "ISO-8601 time with an offset, e.g. 2026-01-01T00:00:00Z"

router = APIRouter(prefix="/api/v1/organizations/{org_id}/audit-events", tags=["audit"])


def audit_filter(
    event_type: str | None = Query(default=None, max_length=64),
    actor_id: uuid.UUID | None = None,
    since: AwareDatetime | None = Query(default=None, description=_SINCE_UNTIL),
    until: AwareDatetime | None = Query(default=None, description=_SINCE_UNTIL),
) -> AuditFilter:
    return AuditFilter(
        event_type=event_type,
        actor_id=actor_id,
        since=_in_utc("since", since),
        until=_in_utc("until", until),
    )


def _in_utc(name: str, value: datetime | None) -> datetime | None:
    """The same instant in UTC; 0001-01-01T00:00+14:00 has none, and is a 422, not a 500."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        message = "The time is outside the supported range"
        raise ValidationFailed(
            details=[
                {"field": f"query.{name}", "type": "datetime_out_of_range", "message": message}
            ]
        ) from exc


@router.get("", response_model=Page[AuditEventOut])
async def list_events(
    flt: AuditFilter = Depends(audit_filter),
    cursor: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=50, ge=1, le=500),
    access: OrgAccess = Depends(require(Permission.AUDIT_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> Page[AuditEventOut]:
    async with runtime.db.session() as session:
        rows = await list_audit_events(
            session, access.org_id, flt, before=decode_cursor(cursor), limit=limit + 1
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[AuditEventOut](
        items=[AuditEventOut.model_validate(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


class NdjsonStream(StreamingResponse):
    media_type = "application/x-ndjson"


@router.get(
    "/export",
    response_class=NdjsonStream,
    responses={
        200: {
            "description": "One AuditEvent JSON object per line",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def export_events(
    flt: AuditFilter = Depends(audit_filter),
    access: OrgAccess = Depends(require(Permission.AUDIT_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> StreamingResponse:
    """Every matching event as one JSON object per line, newest first."""

    async def lines() -> AsyncIterator[bytes]:
        async for row in iter_audit_events(runtime.db, access.org_id, flt):
            yield (
                json.dumps(AuditEventOut.model_validate(row).model_dump(mode="json")) + "\n"
            ).encode()

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="audit-events.ndjson"'},
    )

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from faultmaven_auth.schemas import ResponseModel


class AuditEventOut(ResponseModel):
    id: uuid.UUID
    occurred_at: datetime
    organization_id: uuid.UUID | None
    actor_id: uuid.UUID | None
    event_type: str
    target_type: str | None
    target_id: str | None
    outcome: str
    ip_address: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    # The hash chain (null for events written before it existed); a SIEM can recompute
    # `hash` from the other fields, see docs/audit-chain.md.
    chain_seq: int | None
    prev_hash: str | None
    hash: str | None

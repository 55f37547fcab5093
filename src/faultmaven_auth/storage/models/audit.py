from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from faultmaven_auth.storage.models.base import Base, IdMixin, utcnow


class AuditEvent(IdMixin, Base):
    """One audited action. No foreign keys: the record outlives whatever it mentions.

    ``chain_seq``, ``prev_hash`` and ``hash`` link the event into its organization's hash
    chain (see ``storage.audit_chain``); they are set when the event is flushed. Events
    written before schema 0003 have none of them.
    """

    __tablename__ = "audit_events"
    # Every list is one organization's events, newest id first: these indexes serve the
    # filter and the order together, so a page reads only the rows it returns however
    # large the log grows (no sort of the whole organization's events).
    __table_args__ = (
        Index(None, "organization_id", "id"),
        Index(None, "organization_id", "event_type", "id"),
        Index(None, "organization_id", "occurred_at"),
        # One event per position: a second writer that read a stale head cannot fork
        # an organization's chain (the platform chain, organization NULL, relies on
        # the head lock alone, as NULLs never collide in a unique index).
        Index(None, "organization_id", "chain_seq", unique=True),
    )

    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    organization_id: Mapped[uuid.UUID | None]
    actor_id: Mapped[uuid.UUID | None]
    event_type: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The newest link of one chain: the row every append locks, reads and advances.

    ``chain_key`` is the organization id, or ``platform`` for events of no organization.
    """

    __tablename__ = "audit_chain_heads"

    chain_key: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))

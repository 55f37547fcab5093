from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from faultmaven_auth.storage.models.base import Base, IdMixin, TimestampMixin


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"
    # An address is unique within an organization, not across the service: one person
    # may belong to several organizations, and no tenant can learn from an answer that
    # an address has an account in another one. Login picks the account (see tokens).
    # (organization_id, id) serves the member list's filter and keyset order together.
    __table_args__ = (
        UniqueConstraint("organization_id", "email"),
        Index(None, "email"),
        Index(None, "organization_id", "id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    # Stored lower-cased.
    email: Mapped[str] = mapped_column(String(320))
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)

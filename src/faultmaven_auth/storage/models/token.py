"""Refresh tokens, service clients and signing keys: what the token service persists."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from faultmaven_auth.storage.models.base import Base, IdMixin, utcnow


class RefreshToken(IdMixin, Base):
    __tablename__ = "refresh_tokens"

    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # Set when this token was exchanged for its successor; presenting it again is reuse.
    rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the session family began (first login), for session-length accounting.
    session_started_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServiceClient(IdMixin, Base):
    """A machine caller of the introspection endpoint (HTTP Basic, secret stored hashed)."""

    __tablename__ = "service_clients"
    # Serves the organization's client list in its keyset order (id) without a sort.
    __table_args__ = (Index(None, "organization_id", "id"),)

    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    # NULL: a platform client that may introspect tokens of any organization.
    organization_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id"))
    # The member who created it (NULL: the operator's CLI). When that member's authority
    # ends (deactivated, or no longer holding service_clients:manage) the client is revoked.
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class SigningKey(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    # PKCS#8 PEM, AES-GCM encrypted when SIGNING_KEY_ENCRYPTION_KEY is set.
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    encrypted: Mapped[bool] = mapped_column(default=False)
    public_jwk: Mapped[str] = mapped_column(String(4000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The newest key with activated_at set is the one that signs.
    activated_at: Mapped[datetime | None] = mapped_column(default=None)
    # After this moment the key neither signs nor verifies and leaves the JWKS.
    retire_after: Mapped[datetime | None] = mapped_column(default=None)

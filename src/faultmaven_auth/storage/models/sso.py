"""SSO: an organization's identity providers, redirect URIs, email domains and the
links between a provider's subjects and our users.

A provider row holds what every type shares (enabled, JIT, role mapping, allowed
domains, SSO-required) in columns and its type-specific settings in ``config`` (JSON):
for ``oidc`` the issuer, client id, scopes, claim mapping and the endpoints found by
discovery; for ``saml`` the checked IdP metadata essentials (entity id, SSO URL,
signing certificates as PEM), where the metadata came from (URL or the uploaded
document), the attribute mapping and ``allow_idp_initiated``.
The one secret (the OIDC client secret) lives in ``secret``, sealed with the
signing-key cipher, never in ``config``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from faultmaven_auth.storage.models.base import Base, IdMixin, TimestampMixin, utcnow


class SsoProvider(IdMixin, TimestampMixin, Base):
    __tablename__ = "sso_providers"

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    provider_type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Sealed with the signing-key cipher (plaintext only when no encryption key is set).
    secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    secret_encrypted: Mapped[bool] = mapped_column(default=False)
    allowed_domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    jit_enabled: Mapped[bool] = mapped_column(default=False)
    default_role_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("roles.id"))
    # {"group name": "role id"}; the first matching group (in the IdP's order) wins.
    group_role_map: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    sso_required: Mapped[bool] = mapped_column(default=False)
    # Re-apply the group→role mapping at every SSO login (not only at JIT creation).
    sync_roles: Mapped[bool] = mapped_column(default=False, server_default=false())


class SsoRedirectUri(IdMixin, Base):
    """Where the browser may be sent back after SSO: exact match, per organization."""

    __tablename__ = "sso_redirect_uris"
    __table_args__ = (UniqueConstraint("organization_id", "uri"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    uri: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SsoDomain(IdMixin, Base):
    """An email domain an organization claims; it counts once verified.

    Several organizations may claim a domain while it is unverified (so nobody can
    squat on one by claiming it first); only one can hold it verified, which the
    partial unique index enforces even against concurrent verifications.
    """

    __tablename__ = "sso_domains"
    __table_args__ = (
        UniqueConstraint("organization_id", "domain"),
        Index(
            "uq_sso_domains_verified_domain",
            "domain",
            unique=True,
            sqlite_where=text("verified_at IS NOT NULL"),
            postgresql_where=text("verified_at IS NOT NULL"),
        ),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    domain: Mapped[str] = mapped_column(String(253))
    verification_token: Mapped[str] = mapped_column(String(64))
    verified_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SsoIdentity(IdMixin, Base):
    """A provider's subject (``sub``) linked to one of our users, in the same organization."""

    __tablename__ = "sso_identities"
    __table_args__ = (UniqueConstraint("provider_id", "subject"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sso_providers.id"))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)

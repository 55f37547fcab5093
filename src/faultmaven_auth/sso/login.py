"""What every SSO protocol does once it knows who the provider vouches for, and what it
does when it refuses: shared by OpenID Connect (``oidc``) and SAML 2.0 (``saml``).

``complete_login`` checks the email's domain is verified by the organization, finds,
links or JIT-provisions the user (``provisioning``) and stores the one-time code the
application trades at ``POST /api/v1/sso/token``; it returns the URL to send the
browser to. ``refuse`` logs the ``reason``, counts the failure
(``sso_attempts_total{provider_type}``, ``auth_attempts_total{method}``) and writes the
``auth.sso.failed`` audit event.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy import select

from faultmaven_auth.audit.events import AuditEventType, Outcome
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.observability.tracing import traced
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.sso.domains import domain_verified_by
from faultmaven_auth.sso.errors import SsoLoginRefused
from faultmaven_auth.sso.provisioning import AssertedIdentity, sign_in_user
from faultmaven_auth.sso.state import LoginGrant, save_login_code
from faultmaven_auth.storage.models import Organization, SsoProvider
from faultmaven_auth.tokens.service import record_auth_attempt

logger = logging.getLogger("faultmaven_auth.sso")


@dataclass(frozen=True)
class Protocol:
    """Labels of one protocol in metrics, logs and audit details."""

    provider_type: str  # sso_attempts_total{provider_type}, details.provider_type
    auth_method: str  # auth_attempts_total{method}


async def enabled_provider(
    runtime: Runtime, provider_id: uuid.UUID, provider_type: str | None = None
) -> SsoProvider:
    """An enabled provider of a live organization (of this type when given), else
    ``provider_not_found``."""
    stmt = (
        select(SsoProvider)
        .join(Organization, Organization.id == SsoProvider.organization_id)
        .where(
            SsoProvider.id == provider_id,
            SsoProvider.enabled.is_(True),
            Organization.deleted_at.is_(None),
        )
    )
    if provider_type is not None:
        stmt = stmt.where(SsoProvider.provider_type == provider_type)
    async with runtime.db.session() as session:
        row = (await session.execute(stmt)).first()
    if row is None:
        raise SsoLoginRefused("provider_not_found")
    provider: SsoProvider = row[0]
    return provider


async def provider_type_of(runtime: Runtime, provider_id: uuid.UUID) -> str | None:
    """Which protocol a provider speaks (None: no such provider), to route its login."""
    async with runtime.db.session() as session:
        found: str | None = await session.scalar(
            select(SsoProvider.provider_type).where(SsoProvider.id == provider_id)
        )
    return found


async def complete_login(
    runtime: Runtime,
    protocol: Protocol,
    provider: SsoProvider,
    identity: AssertedIdentity,
    *,
    redirect_uri: str,
    app_state: str | None,
    meta: RequestMeta,
    started: float,
) -> str:
    """Sign the user in and hand out a one-time code; the redirect URL carrying it.

    Raises ``SsoLoginRefused`` (already counted by the caller's ``refuse``) with
    nothing written when the organization or the user does not allow the login.
    """
    with traced(runtime.tracer, "sso_provisioning") as span:
        async with runtime.db.transaction() as session:
            domain = identity.email.rsplit("@", 1)[1]
            if not await domain_verified_by(session, provider.organization_id, domain):
                raise SsoLoginRefused("domain_not_allowed")
            signed_in = await sign_in_user(session, provider, identity, meta)
            user = signed_in.user
            record_audit_event(
                session,
                AuditEventType.SSO_LOGIN_SUCCEEDED,
                meta=meta,
                organization_id=user.organization_id,
                actor_id=user.id,
                target_type="user",
                target_id=user.id,
                details={"provider_id": str(provider.id), "provider_type": protocol.provider_type},
            )
        span.set_attribute("sso.user_created", signed_in.created)
    code_value = secrets.token_urlsafe(32)
    await save_login_code(
        runtime.kv,
        code_value,
        LoginGrant(
            user_id=str(user.id),
            organization_id=str(user.organization_id),
            provider_id=str(provider.id),
            redirect_uri=redirect_uri,
            method=protocol.auth_method,
        ),
        runtime.settings.sso_code_ttl_seconds,
    )
    if signed_in.created:
        runtime.metrics.user_created(user.organization_id)
    runtime.metrics.sso_attempts_total.labels(protocol.provider_type, "success").inc()
    await record_auth_attempt(runtime, protocol.auth_method, True, started)
    query = {"code": code_value, **({"state": app_state} if app_state else {})}
    separator = "&" if "?" in redirect_uri else "?"
    return redirect_uri + separator + urlencode(query)


async def refuse(
    runtime: Runtime,
    protocol: Protocol,
    reason: str,
    org_id: uuid.UUID | None,
    provider_id: uuid.UUID | None,
    meta: RequestMeta,
    started: float,
) -> None:
    """Log, count and audit a refused SSO step (in its organization when known)."""
    logger.warning(
        "SSO login refused",
        extra={
            "event_type": "sso_login_failed",
            "reason": reason,
            "provider_type": protocol.provider_type,
            "provider_id": str(provider_id) if provider_id else None,
            "organization_id": str(org_id) if org_id else None,
        },
    )
    runtime.metrics.sso_attempts_total.labels(protocol.provider_type, "failure").inc()
    await record_auth_attempt(runtime, protocol.auth_method, False, started)
    async with runtime.db.transaction() as session:
        record_audit_event(
            session,
            AuditEventType.SSO_LOGIN_FAILED,
            meta=meta,
            organization_id=org_id,
            actor_id=None,
            target_type="sso_provider" if provider_id else None,
            target_id=provider_id,
            outcome=Outcome.FAILURE,
            details={"reason": reason, "provider_type": protocol.provider_type},
        )

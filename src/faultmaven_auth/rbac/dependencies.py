"""FastAPI dependencies: who is calling, and may they do this in this organization.

``current_principal`` verifies the bearer token (signature, claims, revocation) and loads
the user, organization and effective permissions in one place per request, so a role
change or a deactivation takes effect on the next request. ``require`` builds the
dependency for organization routes: another tenant's id is answered with 404 (never
403, which would confirm the id exists); a missing permission with 403, audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request, Security
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.api import security
from faultmaven_auth.api.openapi import declares_errors
from faultmaven_auth.audit.events import AuditEventType, Outcome
from faultmaven_auth.audit.recorder import RequestMeta, audited_transaction, record_audit_event
from faultmaven_auth.errors import InvalidToken, NotFound, PermissionDenied, Unauthorized
from faultmaven_auth.observability.context import bind_context
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.rbac.repository import permissions_of_roles
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.security.access import report_refused_access, route_template
from faultmaven_auth.security.events import SecurityEventType
from faultmaven_auth.storage.db import Database
from faultmaven_auth.storage.models import Organization, Role, User, UserRole
from faultmaven_auth.storage.tenancy import OrgId
from faultmaven_auth.tokens.access import AccessClaims, ExpiredToken
from faultmaven_auth.tokens.revocation import is_revoked


@dataclass(frozen=True)
class Principal:
    user: User
    organization: Organization
    roles: list[Role]
    permissions: frozenset[Permission]
    claims: AccessClaims

    @property
    def org_id(self) -> OrgId:
        # The caller's own organization is, by construction, checked.
        return OrgId(self.organization.id)


def request_meta(request: Request) -> RequestMeta:
    return RequestMeta(
        # Resolved once by the request middleware (honours trusted proxies only).
        ip_address=getattr(request.state, "client_ip", None)
        or (request.client.host if request.client else None),
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A bearer access token is required", code="NOT_AUTHENTICATED")
    return token.strip()


async def verify_access_token(runtime: Runtime, token: str) -> AccessClaims:
    """Signature, claims and revocation; no database access."""
    metrics = runtime.metrics
    try:
        claims = runtime.access_tokens.verify(token)
    except ExpiredToken:
        metrics.token_validated("expired")
        raise
    except InvalidToken:
        metrics.token_validated("failure")
        raise
    if await is_revoked(runtime.kv, claims):
        metrics.token_validated("failure")
        raise InvalidToken
    metrics.token_validated("success")
    return claims


async def load_principal(session: AsyncSession, claims: AccessClaims) -> Principal:
    """The caller's user, organization, roles and permissions, in one query.

    System roles' permissions live in code, so only custom roles need a second query.
    """
    rows = (
        await session.execute(
            select(User, Organization, Role)
            .join(Organization, Organization.id == User.organization_id)
            .outerjoin(UserRole, UserRole.user_id == User.id)
            .outerjoin(Role, Role.id == UserRole.role_id)
            .where(User.id == claims.user_id, User.organization_id == claims.organization_id)
        )
    ).all()
    if not rows:
        raise InvalidToken
    user, organization = rows[0][0], rows[0][1]
    if not user.is_active or organization.is_deleted:
        raise InvalidToken
    roles = [row[2] for row in rows if row[2] is not None]
    by_role = await permissions_of_roles(session, roles)
    permissions: frozenset[Permission] = frozenset().union(*by_role.values())
    return Principal(user, organization, roles, permissions, claims)


async def authenticate_request(
    request: Request, runtime: Runtime, session: AsyncSession
) -> Principal:
    """Verify the bearer token and load the principal with the caller's ``session``."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    claims = await verify_access_token(runtime, bearer_token(request))
    principal = await load_principal(session, claims)
    request.state.principal = principal
    user_id, org_id = str(principal.user.id), str(principal.organization.id)
    bind_context(user_id=user_id, organization_id=org_id)
    await runtime.activity.record_seen(org_id, user_id)
    return principal


async def current_principal(
    request: Request,
    runtime: Runtime = Depends(get_runtime),
    _scheme: None = Security(security.access_token),
) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    async with runtime.db.session() as session:
        return await authenticate_request(request, runtime, session)


async def _audit_denial(
    runtime: Runtime,
    request: Request,
    principal: Principal,
    permission: Permission,
    event_type: AuditEventType = AuditEventType.PERMISSION_DENIED,
    **details: str,
) -> None:
    """Audit a refusal in the caller's own organization (never in another tenant's log)."""
    async with runtime.db.transaction() as session:
        record_audit_event(
            session,
            event_type,
            meta=request_meta(request),
            organization_id=principal.organization.id,
            actor_id=principal.user.id,
            outcome=Outcome.DENIED,
            details={
                "permission": permission.value,
                "method": request.method,
                "route": route_template(request),
                **details,
            },
        )


async def deny(
    runtime: Runtime, request: Request, principal: Principal, permission: Permission
) -> PermissionDenied:
    """Report and audit a refused action, and return the error to raise."""
    report_refused_access(
        request,
        SecurityEventType.PRIVILEGE_ESCALATION_ATTEMPT,
        reason="missing_permission",
        required_permission=permission.value,
    )
    await _audit_denial(runtime, request, principal, permission)
    return PermissionDenied()


@dataclass(frozen=True)
class OrgAccess:
    """A caller allowed to act in ``org_id`` (a checked tenant id)."""

    principal: Principal
    org_id: OrgId
    meta: RequestMeta

    def transaction(self, db: Database) -> AbstractAsyncContextManager[AsyncSession]:
        """A write transaction in this organization whose refusals are audited."""
        return audited_transaction(
            db, self.meta, organization_id=self.org_id, actor_id=self.principal.user.id
        )

    def audit(
        self,
        session: AsyncSession,
        event_type: AuditEventType,
        *,
        target_type: str | None = None,
        target_id: uuid.UUID | str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record an event by this caller in this organization, in ``session``."""
        record_audit_event(
            session,
            event_type,
            meta=self.meta,
            organization_id=self.org_id,
            actor_id=self.principal.user.id,
            target_type=target_type,
            target_id=target_id,
            details=details,
        )


def require(permission: Permission) -> Callable[..., Awaitable[OrgAccess]]:
    @declares_errors(403, 404)
    async def dependency(
        org_id: uuid.UUID,
        request: Request,
        principal: Principal = Depends(current_principal),
        runtime: Runtime = Depends(get_runtime),
    ) -> OrgAccess:
        if org_id != principal.organization.id:
            report_refused_access(
                request,
                SecurityEventType.CROSS_TENANT_ACCESS,
                reason="other_organization",
                required_permission=permission.value,
                target_organization_id=str(org_id),
            )
            await _audit_denial(
                runtime,
                request,
                principal,
                permission,
                AuditEventType.CROSS_TENANT_ACCESS,
                target_organization_id=str(org_id),
            )
            raise NotFound("Organization not found", code="ORGANIZATION_NOT_FOUND")
        if permission not in principal.permissions:
            raise await deny(runtime, request, principal, permission)
        return OrgAccess(principal, principal.org_id, request_meta(request))

    return dependency

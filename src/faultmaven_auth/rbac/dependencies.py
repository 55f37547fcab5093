"""FastAPI dependencies: may the caller do this in this organization.

Who the caller is comes from ``tokens.authentication.current_principal`` (bearer token
to principal, with a role change or a deactivation effective on the next request).
``require`` builds the dependency for organization routes: another tenant's id is
answered with 404 (never 403, which would confirm the id exists); a missing permission
with 403, audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.api.openapi import declares_errors
from faultmaven_auth.audit.events import AuditEventType, Outcome
from faultmaven_auth.audit.recorder import RequestMeta, audited_transaction, record_audit_event
from faultmaven_auth.errors import NotFound, PermissionDenied
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.security.access import report_refused_access, route_template
from faultmaven_auth.security.events import SecurityEventType
from faultmaven_auth.storage.db import Database
from faultmaven_auth.storage.tenancy import OrgId
from faultmaven_auth.tokens.authentication import current_principal
from faultmaven_auth.tokens.principal import Principal


def request_meta(request: Request) -> RequestMeta:
    return RequestMeta(
        # Resolved once by the request middleware (honours trusted proxies only).
        ip_address=getattr(request.state, "client_ip", None)
        or (request.client.host if request.client else None),
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


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

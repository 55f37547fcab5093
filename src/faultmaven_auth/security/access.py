"""Refused access as security events, described from the request that was refused.

Used by the RBAC dependencies (missing permission, another tenant's resource) and by the
error handler (errors that carry ``security_event``: granting beyond one's permissions,
removing the last owner). The caller, their permissions and the route template come
from the request, so every refusal is described the same way.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from faultmaven_auth.security.events import SecurityEventType, emit_security_event

REFUSED_MESSAGE = "Unauthorized access attempt"


def route_template(request: Request) -> str:
    """The matched route's template (``/api/v1/organizations/{org_id}``), never a raw path."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def _caller_fields(request: Request) -> dict[str, Any]:
    fields: dict[str, Any] = {"attempted_resource": f"{request.method} {route_template(request)}"}
    # Set by the authentication dependency; absent when the refusal came before it.
    principal = getattr(request.state, "principal", None)
    if principal is not None:
        fields["user_id"] = str(principal.user.id)
        fields["user_permissions"] = sorted(str(p) for p in principal.permissions)
    return fields


def report_refused_access(
    request: Request, event_type: SecurityEventType, *, reason: str, **fields: Any
) -> None:
    """Emit ``event_type`` for a refused request: who, what route, which permissions."""
    runtime = getattr(request.app.state, "runtime", None)
    emit_security_event(
        event_type,
        REFUSED_MESSAGE,
        metrics=getattr(runtime, "metrics", None),
        reason=reason,
        **_caller_fields(request),
        **fields,
    )

"""Admin unlock of a member locked out by failed logins."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, status

from faultmaven_auth.rbac.dependencies import OrgAccess, require
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.security.service import unlock_member

router = APIRouter(prefix="/api/v1/organizations/{org_id}/users", tags=["users"])


@router.post("/{user_id}/unlock", status_code=status.HTTP_204_NO_CONTENT)
async def unlock_user(
    user_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.USERS_UPDATE)),
    runtime: Runtime = Depends(get_runtime),
) -> None:
    """Lift a login lockout and forget the member's failed attempts (audited)."""
    await unlock_member(runtime, access, user_id)

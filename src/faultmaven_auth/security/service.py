"""Operations on login protection that an organization's admin may perform."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.identity.service import get_user
from faultmaven_auth.rbac.dependencies import OrgAccess
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.security.lockout import unlock_account
from faultmaven_auth.storage.models import User


async def unlock_member(runtime: Runtime, access: OrgAccess, user_id: uuid.UUID) -> None:
    """Clear the member's lock and counters; another tenant's user is 404.

    Login without ``organization_id`` is counted under the email alone, shared by every
    organization where the address has an account; an admin clears that count only when
    their organization is the sole holder, so no tenant can lift protection elsewhere.
    """
    async with access.transaction(runtime.db) as session:
        user = await get_user(session, access.org_id, user_id)
        elsewhere = await session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.email == user.email, User.organization_id != access.org_id)
        )
        was_locked = await unlock_account(
            runtime, user.email, access.org_id, unscoped_too=not elsewhere
        )
        access.audit(
            session,
            AuditEventType.ACCOUNT_UNLOCKED,
            target_type="user",
            target_id=user.id,
            details={"was_locked": was_locked},
        )

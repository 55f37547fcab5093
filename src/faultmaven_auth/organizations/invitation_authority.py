"""An invitation is only as good as its inviter's authority, now.

An invitation hands out a role on behalf of the member who issued it. The grant rule
(nobody grants a permission they do not hold) was checked when it was created, but a
token can wait for days: meanwhile the inviter may be demoted or deactivated, and a
custom role may gain or lose permissions. So the rule is checked twice more:

- when a member is demoted (their pending invitations whose role they can no longer
  grant are revoked) or deactivated (all of them are revoked), in the same transaction;
- when the invitation is accepted, against the role's permissions as they are at that
  moment. This also covers custom-role edits (``PATCH .../roles/{id}``), which change
  what an inviter holds or what a role grants without touching any invitation.

Both revocations are audited as ``invitation.revoked`` with a ``reason``. This module
sits below ``identity`` and ``rbac`` services (it imports neither), so both can use it.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.rbac.repository import effective_permissions, get_role, permissions_of_roles
from faultmaven_auth.storage.models import Invitation, User
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.storage.tenancy import OrgId, scoped


class RevocationReason(StrEnum):
    INVITER_DEACTIVATED = "inviter_deactivated"
    INVITER_LOST_PERMISSIONS = "inviter_lost_permissions"
    INVITER_NOT_ACTIVE = "inviter_not_active"
    ROLE_NOT_FOUND = "role_not_found"


async def inviter_authority_problem(
    session: AsyncSession, invitation: Invitation
) -> RevocationReason | None:
    """Why the inviter can no longer grant the invitation's role; None if they still can."""
    org_id = OrgId(invitation.organization_id)
    inviter: User | None = None
    if invitation.invited_by_id is not None:
        inviter = await session.scalar(
            scoped(select(User), User, org_id).where(User.id == invitation.invited_by_id)
        )
    if inviter is None or not inviter.is_active:
        return RevocationReason.INVITER_NOT_ACTIVE
    role = await get_role(session, org_id, invitation.role_id)
    if role is None:
        return RevocationReason.ROLE_NOT_FOUND
    granted = (await permissions_of_roles(session, [role]))[role.id]
    _, held = await effective_permissions(session, inviter.id)
    if not granted <= held:
        return RevocationReason.INVITER_LOST_PERMISSIONS
    return None


def revoke_invitation_for(
    session: AsyncSession,
    invitation: Invitation,
    reason: RevocationReason,
    *,
    meta: RequestMeta,
    actor_id: uuid.UUID | None,
) -> None:
    """Mark ``invitation`` revoked and audit why, in ``session``."""
    invitation.revoked_at = utcnow()
    record_audit_event(
        session,
        AuditEventType.INVITATION_REVOKED,
        meta=meta,
        organization_id=invitation.organization_id,
        actor_id=actor_id,
        target_type="invitation",
        target_id=invitation.id,
        details={
            "reason": reason.value,
            "invited_by_id": None
            if invitation.invited_by_id is None
            else str(invitation.invited_by_id),
        },
    )


async def revoke_invitations_beyond_authority(
    session: AsyncSession,
    org_id: OrgId,
    inviter_id: uuid.UUID,
    *,
    meta: RequestMeta,
    actor_id: uuid.UUID,
    deactivated: bool = False,
) -> list[uuid.UUID]:
    """Revoke ``inviter_id``'s pending invitations they can no longer grant.

    Call after the inviter's roles or status changed, in the same transaction (flushed
    changes are seen). With ``deactivated`` every pending invitation goes. Returns the
    ids revoked.
    """
    pending = list(
        (
            await session.scalars(
                scoped(select(Invitation), Invitation, org_id)
                .where(
                    Invitation.invited_by_id == inviter_id,
                    Invitation.accepted_at.is_(None),
                    Invitation.revoked_at.is_(None),
                )
                .order_by(Invitation.id)
                .with_for_update()
            )
        ).all()
    )
    revoked: list[uuid.UUID] = []
    for invitation in pending:
        if deactivated:
            reason: RevocationReason | None = RevocationReason.INVITER_DEACTIVATED
        else:
            reason = await inviter_authority_problem(session, invitation)
            if reason is RevocationReason.INVITER_NOT_ACTIVE:
                reason = RevocationReason.INVITER_DEACTIVATED
        if reason is not None:
            revoke_invitation_for(session, invitation, reason, meta=meta, actor_id=actor_id)
            revoked.append(invitation.id)
    return revoked

"""A user changing their own password, proving the current one.

This is the only way to change one's own password: ``PATCH .../users/{own id}`` with a
password is refused, so a stolen access token (minutes of validity) cannot be turned
into the account for good. The new password ends every *other* session of the user,
refresh tokens and their access tokens alike; the session that made the change keeps
working, since it has just proved the password.

The stored hash is replaced only if it is still the one the current password was
verified against, so two concurrent changes cannot both win with stale proof.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from faultmaven_auth.audit.events import AuditEventType, Outcome
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.errors import Conflict, Forbidden
from faultmaven_auth.identity.schemas import PasswordChange
from faultmaven_auth.identity.service import check_password_policy
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.security.lockout import begin_login_attempt
from faultmaven_auth.storage.models import Organization, User
from faultmaven_auth.storage.write_scope import in_organization
from faultmaven_auth.tokens.principal import Principal
from faultmaven_auth.tokens.service import revoke_families_access, revoke_user_sessions

logger = logging.getLogger("faultmaven_auth.identity")


async def change_own_password(
    runtime: Runtime, principal: Principal, data: PasswordChange, meta: RequestMeta
) -> None:
    check_password_policy(data.new_password, field="new_password")
    # The stored hash is not part of the (cached) principal: read it as it is now.
    async with runtime.db.session() as session:
        user, organization = (
            await session.execute(
                select(User, Organization)
                .join(Organization, Organization.id == User.organization_id)
                .where(User.id == principal.user.id)
            )
        ).one()
    # Guessing the current password here counts like guessing it at login: the same
    # per-account lock (with the organization named) and per-address limits, reserved
    # before the hash is checked.
    attempt = await begin_login_attempt(runtime, user.email, user.organization_id, meta)
    verified_hash = user.password_hash
    result = await attempt.verify_password(verified_hash, data.current_password)
    if not result.valid:
        await attempt.count_failure(user, organization)
        async with runtime.db.transaction() as session:
            record_audit_event(
                session,
                AuditEventType.PASSWORD_CHANGE_FAILED,
                meta=meta,
                organization_id=user.organization_id,
                actor_id=user.id,
                target_type="user",
                target_id=user.id,
                outcome=Outcome.FAILURE,
                details={"reason": "invalid_current_password"},
            )
        logger.info(
            "Password change refused",
            extra={"event_type": "password_change_failed", "reason": "invalid_current_password"},
        )
        raise Forbidden("The current password is not correct", code="INVALID_CURRENT_PASSWORD")
    await attempt.clear()
    new_hash = await runtime.hasher.hash(data.new_password)
    async with runtime.db.transaction() as session:
        replaced = await session.scalar(
            update(User)
            .where(User.id == user.id, User.password_hash == verified_hash)
            .values(password_hash=new_hash)
            .returning(User.id)
            .execution_options(synchronize_session=False, **in_organization(user.organization_id))
        )
        if replaced is None:
            raise Conflict(
                "The password was changed meanwhile; sign in again", code="PASSWORD_CHANGED"
            )
        ended = await revoke_user_sessions(
            session, user.id, keep_family=principal.claims.session_id
        )
        record_audit_event(
            session,
            AuditEventType.PASSWORD_CHANGED,
            meta=meta,
            organization_id=user.organization_id,
            actor_id=user.id,
            target_type="user",
            target_id=user.id,
            details={"via": "self_service", "sessions_ended": len(ended)},
        )
    await revoke_families_access(runtime, ended)

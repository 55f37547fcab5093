"""Sign-up and member management: the rules, with no HTTP types.

Self-service sign-up always creates a *new* organization owned by the registrant;
joining an existing one takes an invitation token issued by its admins, and only while
the admin who issued it can still grant its role (``invitation_authority``).

An email address is unique within an organization, not across the service: whether an
address has an account in *another* organization never changes an answer (status, body
or audit), so no tenant can probe another's members. Member changes
are checked against plan limits (set by the operator, not the tenant), against the
actor's own permissions (nobody acts on a member more privileged than themselves), and
against the last-owner rule.
"""

from __future__ import annotations

import re
import secrets
import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LastOwnerRemoval,
    NotFound,
    PermissionDenied,
    PrivilegeEscalationDenied,
    ValidationFailed,
)
from faultmaven_auth.identity.policy import password_problem
from faultmaven_auth.identity.schemas import RegisterRequest, UserCreate, UserUpdate
from faultmaven_auth.organizations.invitation_authority import (
    inviter_authority_problem,
    revoke_invitation_for,
    revoke_invitations_beyond_authority,
)
from faultmaven_auth.rbac.dependencies import OrgAccess
from faultmaven_auth.rbac.permissions import OWNER, SYSTEM_ROLE_IDS
from faultmaven_auth.rbac.policies import can_grant, can_manage_user
from faultmaven_auth.rbac.repository import (
    count_active_holders,
    effective_permissions,
    get_role,
    permissions_of_roles,
    replace_user_roles,
)
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import Invitation, Organization, User
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.storage.tenancy import OrgId, scoped
from faultmaven_auth.tokens.service import (
    hash_token,
    normalize_email,
    revoke_families_access,
    revoke_user_sessions,
)
from faultmaven_auth.tokens.service_clients import revoke_service_clients_created_by


def check_password_policy(password: str, field: str = "password") -> None:
    problem = password_problem(password)
    if problem is not None:
        raise ValidationFailed(
            problem,
            code="WEAK_PASSWORD",
            details=[{"field": field, "type": "weak_password", "message": problem}],
        )


def _slugify(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "org"
    return f"{base}-{secrets.token_hex(3)}"


async def lock_organization(session: AsyncSession, org_id: uuid.UUID) -> Organization | None:
    """Serialize writes that check a count against the org (plan limits, last owner)."""
    org: Organization | None = await session.scalar(
        select(Organization).where(Organization.id == org_id).with_for_update()
    )
    return org


async def email_taken_in(session: AsyncSession, org_id: OrgId, email: str) -> bool:
    """Whether ``email`` is already a member of this organization (and only this one)."""
    count = await session.scalar(
        scoped(select(func.count()).select_from(User), User, org_id).where(User.email == email)
    )
    return bool(count)


async def _ensure_user_capacity(session: AsyncSession, org: Organization) -> None:
    count = await session.scalar(
        scoped(select(func.count()).select_from(User), User, OrgId(org.id)).where(
            User.is_active.is_(True)
        )
    )
    if int(count or 0) >= org.max_users:
        raise Conflict(
            f"The organization's plan allows at most {org.max_users} active users",
            code="PLAN_LIMIT_REACHED",
        )


def email_conflict() -> Conflict:
    return Conflict(
        "An account with this email already exists in this organization", code="EMAIL_TAKEN"
    )


def invalid_invitation() -> BadRequest:
    # One answer for every unusable invitation (unknown, used, revoked, expired, another
    # email, or its inviter can no longer grant its role), so the reason stays private.
    return BadRequest(
        "The invitation is invalid, expired or for another email", code="INVALID_INVITATION"
    )


async def create_organization_with_owner(
    session: AsyncSession,
    runtime: Runtime,
    *,
    organization_name: str,
    email: str,
    full_name: str,
    password_hash: str,
    meta: RequestMeta,
    max_users: int | None = None,
    max_teams: int | None = None,
) -> tuple[User, Organization]:
    # A new organization has no members yet: no address can be taken in it.
    email = normalize_email(email)
    org = Organization(
        name=organization_name,
        slug=_slugify(organization_name),
        max_users=max_users or runtime.settings.default_max_users,
        max_teams=runtime.settings.default_max_teams if max_teams is None else max_teams,
    )
    session.add(org)
    await session.flush()
    user = User(
        organization_id=org.id, email=email, full_name=full_name, password_hash=password_hash
    )
    session.add(user)
    await session.flush()
    await replace_user_roles(session, user.id, [SYSTEM_ROLE_IDS[OWNER]])
    record_audit_event(
        session,
        AuditEventType.REGISTERED,
        meta=meta,
        organization_id=org.id,
        actor_id=user.id,
        target_type="user",
        target_id=user.id,
        details={"via": "sign_up"},
    )
    return user, org


async def register(
    runtime: Runtime, request: RegisterRequest, meta: RequestMeta
) -> tuple[User, Organization]:
    check_password_policy(request.password)
    if request.organization_name is not None and not runtime.settings.allow_self_signup:
        raise Forbidden("Self-service sign-up is turned off", code="SIGNUP_DISABLED")
    password_hash = await runtime.hasher.hash(request.password)
    joined: tuple[User, Organization] | None
    try:
        async with runtime.db.transaction() as session:
            if request.organization_name is not None:
                joined = await create_organization_with_owner(
                    session,
                    runtime,
                    organization_name=request.organization_name,
                    email=request.email,
                    full_name=request.full_name,
                    password_hash=password_hash,
                    meta=meta,
                )
            else:
                assert request.invitation_token is not None  # noqa: S101 - schema: one of two
                joined = await _accept_invitation(
                    session, request.invitation_token, request, password_hash, meta
                )
    except IntegrityError as exc:
        # Two sign-ups with the same email in one organization at once: the unique index
        # decides.
        raise email_conflict() from exc
    if joined is None:
        # The invitation was revoked (and audited) in the committed transaction above.
        raise invalid_invitation()
    user, org = joined
    runtime.metrics.user_created(org.id)
    return user, org


async def _accept_invitation(
    session: AsyncSession,
    token: str,
    request: RegisterRequest,
    password_hash: str,
    meta: RequestMeta,
) -> tuple[User, Organization] | None:
    """Create the invited account; None when the invitation was revoked instead.

    An invitation whose inviter is no longer an active member able to grant its role
    (as the role is now) is revoked and audited here; the caller commits that and then
    answers INVALID_INVITATION, exactly as for an expired invitation.
    """
    token_hash = hash_token(token)
    found = await session.scalar(select(Invitation).where(Invitation.token_hash == token_hash))
    if found is None:
        raise invalid_invitation()
    # Organization first, then the invitation: the order demotion and deactivation take.
    org = await lock_organization(session, found.organization_id)
    invitation = await session.scalar(
        select(Invitation)
        .where(Invitation.id == found.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    email = normalize_email(request.email)
    if (
        invitation is None
        or invitation.accepted_at is not None
        or invitation.revoked_at is not None
        or invitation.expires_at <= utcnow()
        or invitation.email != email
        or org is None
        or org.is_deleted
    ):
        raise invalid_invitation()
    problem = await inviter_authority_problem(session, invitation)
    if problem is not None:
        revoke_invitation_for(session, invitation, problem, meta=meta, actor_id=None)
        return None
    if await email_taken_in(session, OrgId(org.id), email):
        raise email_conflict()
    await _ensure_user_capacity(session, org)
    user = User(
        organization_id=org.id,
        email=email,
        full_name=request.full_name,
        password_hash=password_hash,
    )
    session.add(user)
    await session.flush()
    await replace_user_roles(session, user.id, [invitation.role_id])
    invitation.accepted_at = utcnow()
    for event_type in (AuditEventType.INVITATION_ACCEPTED, AuditEventType.REGISTERED):
        record_audit_event(
            session,
            event_type,
            meta=meta,
            organization_id=org.id,
            actor_id=user.id,
            target_type="invitation"
            if event_type is AuditEventType.INVITATION_ACCEPTED
            else "user",
            target_id=invitation.id
            if event_type is AuditEventType.INVITATION_ACCEPTED
            else user.id,
            details={"via": "invitation"},
        )
    return user, org


async def get_user(session: AsyncSession, org_id: OrgId, user_id: uuid.UUID) -> User:
    user: User | None = await session.scalar(
        scoped(select(User), User, org_id).where(User.id == user_id)
    )
    if user is None:
        raise NotFound("User not found", code="USER_NOT_FOUND")
    return user


async def list_users(
    session: AsyncSession, org_id: OrgId, *, after: uuid.UUID | None, limit: int
) -> list[User]:
    stmt = scoped(select(User), User, org_id).order_by(User.id).limit(limit)
    if after is not None:
        stmt = stmt.where(User.id > after)
    return list((await session.scalars(stmt)).all())


async def check_can_manage(session: AsyncSession, access: OrgAccess, target: User) -> None:
    if target.id == access.principal.user.id:
        return
    _, target_permissions = await effective_permissions(session, target.id)
    if not can_manage_user(access.principal.permissions, target_permissions):
        raise PrivilegeEscalationDenied("This member holds permissions you do not have")


async def create_user(runtime: Runtime, access: OrgAccess, data: UserCreate) -> User:
    check_password_policy(data.password)
    password_hash = await runtime.hasher.hash(data.password)
    email = normalize_email(data.email)
    try:
        async with access.transaction(runtime.db) as session:
            org = await lock_organization(session, access.org_id)
            assert org is not None  # noqa: S101 - the caller's own org exists
            role_ids = list(dict.fromkeys(data.role_ids)) or [SYSTEM_ROLE_IDS["member"]]
            roles = []
            for role_id in role_ids:
                role = await get_role(session, access.org_id, role_id, for_use=True)
                if role is None:
                    raise NotFound("Role not found", code="ROLE_NOT_FOUND")
                roles.append(role)
            granted = await permissions_of_roles(session, roles)
            if not can_grant(access.principal.permissions, set().union(*granted.values())):
                raise PrivilegeEscalationDenied("You cannot grant a role with permissions you lack")
            if await email_taken_in(session, access.org_id, email):
                raise email_conflict()
            await _ensure_user_capacity(session, org)
            user = User(
                organization_id=access.org_id,
                email=email,
                full_name=data.full_name,
                password_hash=password_hash,
            )
            session.add(user)
            await session.flush()
            await replace_user_roles(session, user.id, role_ids)
            access.audit(
                session,
                AuditEventType.USER_CREATED,
                target_type="user",
                target_id=user.id,
                details={"role_ids": [str(r) for r in role_ids]},
            )
    except IntegrityError as exc:
        raise email_conflict() from exc
    runtime.metrics.user_created(access.org_id)
    return user


async def update_user(
    runtime: Runtime, access: OrgAccess, user_id: uuid.UUID, data: UserUpdate
) -> User:
    if data.password is not None and user_id == access.principal.user.id:
        # Only with the current password (POST /auth/password): a stolen access token
        # must not be enough to take the account over for good. Audited as a refusal.
        async with access.transaction(runtime.db):
            raise PermissionDenied(
                "Change your own password with POST /api/v1/auth/password and your "
                "current password",
                code="CURRENT_PASSWORD_REQUIRED",
            )
    if data.password is not None:
        check_password_policy(data.password)
    new_hash = await runtime.hasher.hash(data.password) if data.password is not None else None
    async with access.transaction(runtime.db) as session:
        user = await get_user(session, access.org_id, user_id)
        await check_can_manage(session, access, user)
        changed = []
        ended: list[uuid.UUID] = []
        if data.full_name is not None and data.full_name != user.full_name:
            user.full_name = data.full_name
            changed.append("full_name")
        if new_hash is not None:
            user.password_hash = new_hash
            changed.append("password")
            # A new password ends every session that knew the old one, access tokens too.
            ended = await revoke_user_sessions(session, user.id)
        access.audit(
            session,
            AuditEventType.USER_UPDATED,
            target_type="user",
            target_id=user.id,
            details={"changed": changed},
        )
    await revoke_families_access(runtime, ended)
    return user


async def ensure_not_last_owner(session: AsyncSession, org_id: OrgId, user: User) -> None:
    owner_role = SYSTEM_ROLE_IDS[OWNER]
    roles, _ = await effective_permissions(session, user.id)
    is_active_owner = user.is_active and any(r.id == owner_role for r in roles)
    if is_active_owner and await count_active_holders(session, org_id, owner_role) <= 1:
        raise LastOwnerRemoval


async def deactivate_user(runtime: Runtime, access: OrgAccess, user_id: uuid.UUID) -> User:
    async with access.transaction(runtime.db) as session:
        await lock_organization(session, access.org_id)
        user = await get_user(session, access.org_id, user_id)
        await check_can_manage(session, access, user)
        await ensure_not_last_owner(session, access.org_id, user)
        if user.is_active:
            user.is_active = False
            await revoke_user_sessions(session, user.id)
            await revoke_service_clients_created_by(
                session, user.id, meta=access.meta, actor_id=access.principal.user.id
            )
            access.audit(
                session,
                AuditEventType.USER_DEACTIVATED,
                target_type="user",
                target_id=user.id,
            )
            # Invitations speak for their inviter: none outlives the inviter's account.
            await revoke_invitations_beyond_authority(
                session,
                access.org_id,
                user.id,
                meta=access.meta,
                actor_id=access.principal.user.id,
                deactivated=True,
            )
        return user

"""From a verified SSO identity to one of the organization's users.

Order: an existing link (provider + subject) wins; else an account of the *same*
organization with the same email is linked (the email was verified by the provider
and its domain is allowed and verified by this organization, checked by the caller);
else, with JIT on, a new passwordless user is created with the role its IdP groups map
to (first match) or the provider's default role. With ``sync_roles``, an existing
user's roles are set the same way at every SSO login (an owner's never: SSO neither
grants nor takes away ownership). A mapped role that no longer exists counts as no
match. Nothing ever looks outside the provider's organization. Everything happens in
the caller's transaction, so a refusal rolls it all back: no user, no link, no role.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.identity.service import lock_organization
from faultmaven_auth.rbac.permissions import OWNER, SYSTEM_ROLE_IDS
from faultmaven_auth.rbac.repository import get_role, replace_user_roles, roles_of_user
from faultmaven_auth.sso.errors import SsoLoginRefused
from faultmaven_auth.storage.models import SsoIdentity, SsoProvider, User
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.storage.tenancy import OrgId


@dataclass(frozen=True)
class AssertedIdentity:
    """What the provider vouched for, already mapped to our fields."""

    subject: str
    email: str  # lower-cased, verified by the provider
    full_name: str
    groups: list[str]


@dataclass(frozen=True)
class SignedInUser:
    user: User
    created: bool


async def _role_for(session: AsyncSession, provider: SsoProvider, groups: list[str]) -> uuid.UUID:
    """The first mapped group's role that still exists, else the default role (which
    cannot be deleted while a provider names it)."""
    org_id = OrgId(provider.organization_id)
    for group in groups:
        mapped = provider.group_role_map.get(group)
        if mapped is not None and await get_role(session, org_id, uuid.UUID(mapped), for_use=True):
            return uuid.UUID(mapped)
    return provider.default_role_id


async def _sync_roles(
    session: AsyncSession,
    provider: SsoProvider,
    user: User,
    identity: AssertedIdentity,
    meta: RequestMeta,
) -> None:
    current = {role.id for role in await roles_of_user(session, user.id)}
    if SYSTEM_ROLE_IDS[OWNER] in current:
        return
    role_id = await _role_for(session, provider, identity.groups)
    if current == {role_id}:
        return
    await replace_user_roles(session, user.id, [role_id])
    record_audit_event(
        session,
        AuditEventType.SSO_ROLES_SYNCED,
        meta=meta,
        organization_id=provider.organization_id,
        actor_id=user.id,
        target_type="user",
        target_id=user.id,
        details={
            "provider_id": str(provider.id),
            "role_id": str(role_id),
            "previous_role_ids": sorted(str(r) for r in current),
        },
    )


async def sign_in_user(
    session: AsyncSession, provider: SsoProvider, identity: AssertedIdentity, meta: RequestMeta
) -> SignedInUser:
    org = await lock_organization(session, provider.organization_id)
    if org is None or org.is_deleted:
        raise SsoLoginRefused("organization_deleted")
    link: SsoIdentity | None = await session.scalar(
        select(SsoIdentity).where(
            SsoIdentity.provider_id == provider.id, SsoIdentity.subject == identity.subject
        )
    )
    user: User | None
    if link is not None:
        user = await session.get(User, link.user_id)
    else:
        user = await session.scalar(
            select(User).where(
                User.organization_id == provider.organization_id, User.email == identity.email
            )
        )
    if user is not None and user.organization_id != provider.organization_id:
        # Links are made in the provider's organization only; this is the last line of
        # defence should a row ever say otherwise.
        raise SsoLoginRefused("user_not_provisioned")
    if user is not None and not user.is_active:
        raise SsoLoginRefused("user_inactive")
    created = False
    if user is None:
        if not provider.jit_enabled:
            raise SsoLoginRefused("user_not_provisioned")
        active = await session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.organization_id == org.id, User.is_active.is_(True))
        )
        if int(active or 0) >= org.max_users:
            raise SsoLoginRefused("user_limit_reached")
        user = User(
            organization_id=org.id,
            email=identity.email,
            full_name=identity.full_name or identity.email.split("@")[0],
            password_hash=None,
        )
        session.add(user)
        await session.flush()
        role_id = await _role_for(session, provider, identity.groups)
        await replace_user_roles(session, user.id, [role_id])
        created = True
        record_audit_event(
            session,
            AuditEventType.SSO_USER_PROVISIONED,
            meta=meta,
            organization_id=org.id,
            actor_id=user.id,
            target_type="user",
            target_id=user.id,
            details={"provider_id": str(provider.id), "role_id": str(role_id)},
        )
    elif provider.sync_roles:
        await _sync_roles(session, provider, user, identity, meta)
    if link is None:
        link = SsoIdentity(
            organization_id=org.id,
            provider_id=provider.id,
            subject=identity.subject,
            user_id=user.id,
        )
        session.add(link)
        record_audit_event(
            session,
            AuditEventType.SSO_IDENTITY_LINKED,
            meta=meta,
            organization_id=org.id,
            actor_id=user.id,
            target_type="user",
            target_id=user.id,
            details={"provider_id": str(provider.id), "new_user": created},
        )
    link.last_login_at = utcnow()
    user.last_login_at = utcnow()
    return SignedInUser(user, created)

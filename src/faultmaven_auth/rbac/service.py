"""Custom roles and role assignment, under the grant rule and the last-owner rule."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.errors import Conflict, NotFound, PrivilegeEscalationDenied
from faultmaven_auth.identity.service import (
    check_can_manage,
    ensure_not_last_owner,
    get_user,
    lock_organization,
)
from faultmaven_auth.organizations.invitation_authority import (
    revoke_invitations_beyond_authority,
)
from faultmaven_auth.rbac.dependencies import OrgAccess
from faultmaven_auth.rbac.permissions import OWNER, SYSTEM_ROLE_IDS, Permission
from faultmaven_auth.rbac.policies import can_grant
from faultmaven_auth.rbac.repository import (
    get_custom_role,
    get_role,
    permissions_of_roles,
    replace_user_roles,
    role_name_taken,
    roles_of_user,
    set_role_permissions,
)
from faultmaven_auth.rbac.schemas import RoleCreate, RoleOut, RoleUpdate
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import Invitation, Role, SsoProvider


def role_out(role: Role, permissions: frozenset[Permission]) -> RoleOut:
    return RoleOut(
        id=role.id,
        name=role.name,
        description=role.description,
        is_system=role.is_system,
        permissions=sorted(p.value for p in permissions),
    )


def _check_grant(access: OrgAccess, permissions: set[Permission]) -> None:
    if not can_grant(access.principal.permissions, permissions):
        raise PrivilegeEscalationDenied("You cannot grant permissions you do not hold")


def _name_conflict() -> Conflict:
    return Conflict("A role with this name already exists", code="ROLE_NAME_TAKEN")


async def create_role(runtime: Runtime, access: OrgAccess, data: RoleCreate) -> RoleOut:
    permissions = set(data.permissions)
    try:
        async with access.transaction(runtime.db) as session:
            _check_grant(access, permissions)
            if await role_name_taken(session, access.org_id, data.name):
                raise _name_conflict()
            role = Role(organization_id=access.org_id, name=data.name, description=data.description)
            session.add(role)
            await session.flush()
            await set_role_permissions(session, role.id, permissions)
            access.audit(
                session,
                AuditEventType.ROLE_CREATED,
                target_type="role",
                target_id=role.id,
                details={"permissions": sorted(p.value for p in permissions)},
            )
            return role_out(role, frozenset(permissions))
    except IntegrityError as exc:
        raise _name_conflict() from exc


async def update_role(
    runtime: Runtime, access: OrgAccess, role_id: uuid.UUID, data: RoleUpdate
) -> RoleOut:
    try:
        async with access.transaction(runtime.db) as session:
            role = await _custom_role(session, access, role_id)
            current = (await permissions_of_roles(session, [role]))[role.id]
            # Changing a role changes what its holders can do: the actor needs both sets.
            _check_grant(access, set(current))
            if data.name is not None and data.name != role.name:
                if await role_name_taken(session, access.org_id, data.name):
                    raise _name_conflict()
                role.name = data.name
            if data.description is not None:
                role.description = data.description
            permissions = current
            if data.permissions is not None:
                _check_grant(access, set(data.permissions))
                permissions = frozenset(data.permissions)
                await set_role_permissions(session, role.id, permissions)
            access.audit(
                session,
                AuditEventType.ROLE_UPDATED,
                target_type="role",
                target_id=role.id,
                details={"permissions": sorted(p.value for p in permissions)},
            )
            return role_out(role, permissions)
    except IntegrityError as exc:
        # Two renames to the same free name at once: the unique index decides.
        raise _name_conflict() from exc


def _role_in_use(
    reason: str = "Invitations were issued with this role, so it cannot be deleted",
) -> Conflict:
    return Conflict(reason, code="ROLE_IN_USE")


async def delete_role(runtime: Runtime, access: OrgAccess, role_id: uuid.UUID) -> None:
    try:
        async with access.transaction(runtime.db) as session:
            role = await _custom_role(session, access, role_id)
            current = (await permissions_of_roles(session, [role]))[role.id]
            _check_grant(access, set(current))
            # Invitations keep their role for the record (a foreign key without cascade).
            if await session.scalar(
                select(func.count()).select_from(Invitation).where(Invitation.role_id == role.id)
            ):
                raise _role_in_use()
            # SSO providers name roles as their default (a foreign key) and in JSON
            # (group -> role), which no foreign key guards.
            providers = await session.execute(
                select(SsoProvider.default_role_id, SsoProvider.group_role_map).where(
                    SsoProvider.organization_id == access.org_id
                )
            )
            if any(
                default == role.id or str(role.id) in mapping.values()
                for default, mapping in providers
            ):
                raise _role_in_use("An SSO provider gives this role; change the provider first")
            await session.delete(role)
            access.audit(
                session,
                AuditEventType.ROLE_DELETED,
                target_type="role",
                target_id=role.id,
                details={"name": role.name},
            )
    except IntegrityError as exc:
        # An invitation created with the role while it was being deleted.
        raise _role_in_use() from exc


async def _custom_role(session: AsyncSession, access: OrgAccess, role_id: uuid.UUID) -> Role:
    role = await get_role(session, access.org_id, role_id)
    if role is None:
        raise NotFound("Role not found", code="ROLE_NOT_FOUND")
    if role.is_system:
        raise Conflict("System roles cannot be changed", code="SYSTEM_ROLE_IMMUTABLE")
    custom = await get_custom_role(session, access.org_id, role_id)
    if custom is None:
        # Deleted by a concurrent request while this one waited for the row lock.
        raise NotFound("Role not found", code="ROLE_NOT_FOUND")
    return custom


async def set_user_roles(
    runtime: Runtime, access: OrgAccess, user_id: uuid.UUID, role_ids: list[uuid.UUID]
) -> list[RoleOut]:
    """Replace a member's roles. The actor must hold every permission added or removed."""
    wanted_ids = list(dict.fromkeys(role_ids))
    async with access.transaction(runtime.db) as session:
        await lock_organization(session, access.org_id)
        user = await get_user(session, access.org_id, user_id)
        await check_can_manage(session, access, user)
        wanted: list[Role] = []
        for role_id in wanted_ids:
            role = await get_role(session, access.org_id, role_id, for_use=True)
            if role is None:
                raise NotFound("Role not found", code="ROLE_NOT_FOUND")
            wanted.append(role)
        current = await roles_of_user(session, user.id)
        current_ids = {r.id for r in current}
        added = [r for r in wanted if r.id not in current_ids]
        removed = [r for r in current if r.id not in set(wanted_ids)]
        permissions = await permissions_of_roles(session, added + removed)
        _check_grant(access, set().union(*permissions.values()))
        if any(r.id == SYSTEM_ROLE_IDS[OWNER] for r in removed):
            await ensure_not_last_owner(session, access.org_id, user)
        await replace_user_roles(session, user.id, wanted_ids)
        # The member's pending invitations must not hand out more than they now hold.
        await revoke_invitations_beyond_authority(
            session, access.org_id, user.id, meta=access.meta, actor_id=access.principal.user.id
        )
        for roles, event_type in (
            (added, AuditEventType.ROLE_ASSIGNED),
            (removed, AuditEventType.ROLE_REMOVED),
        ):
            for role in roles:
                access.audit(
                    session,
                    event_type,
                    target_type="user",
                    target_id=user.id,
                    details={"role_id": str(role.id), "role": role.name},
                )
        all_permissions = await permissions_of_roles(session, wanted)
        return [role_out(r, all_permissions[r.id]) for r in wanted]

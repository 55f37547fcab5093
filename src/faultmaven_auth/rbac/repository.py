"""All RBAC SQL: roles visible to a tenant, role permissions, user-role links."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.rbac.permissions import SYSTEM_ROLE_PERMISSIONS, Permission
from faultmaven_auth.storage.models import Role, RolePermission, User, UserRole
from faultmaven_auth.storage.tenancy import OrgId, scoped
from faultmaven_auth.storage.write_scope import in_organization


def role_permissions(role: Role, custom: Iterable[str]) -> frozenset[Permission]:
    if role.is_system:
        return SYSTEM_ROLE_PERMISSIONS.get(role.name, frozenset())
    return frozenset(Permission(p) for p in custom if p in Permission._value2member_map_)


async def permissions_of_roles(
    session: AsyncSession, roles: list[Role]
) -> dict[uuid.UUID, frozenset[Permission]]:
    custom_ids = [r.id for r in roles if not r.is_system]
    stored: dict[uuid.UUID, list[str]] = {rid: [] for rid in custom_ids}
    if custom_ids:
        rows = await session.execute(
            select(RolePermission.role_id, RolePermission.permission).where(
                RolePermission.role_id.in_(custom_ids)
            )
        )
        for role_id, permission in rows:
            stored[role_id].append(permission)
    return {r.id: role_permissions(r, stored.get(r.id, [])) for r in roles}


async def roles_of_user(session: AsyncSession, user_id: uuid.UUID) -> list[Role]:
    result = await session.scalars(
        select(Role).join(UserRole, UserRole.role_id == Role.id).where(UserRole.user_id == user_id)
    )
    return list(result.all())


async def effective_permissions(
    session: AsyncSession, user_id: uuid.UUID
) -> tuple[list[Role], frozenset[Permission]]:
    roles = await roles_of_user(session, user_id)
    by_role = await permissions_of_roles(session, roles)
    merged: frozenset[Permission] = frozenset().union(*by_role.values())
    return roles, merged


def _visible_roles(org_id: OrgId) -> ColumnElement[bool]:
    # System roles are shared by every tenant; custom roles belong to one.
    return or_(Role.organization_id.is_(None), Role.organization_id == org_id)


async def list_roles(session: AsyncSession, org_id: OrgId) -> list[Role]:
    result = await session.scalars(
        select(Role).where(_visible_roles(org_id)).order_by(Role.is_system.desc(), Role.name)
    )
    return list(result.all())


async def get_role(
    session: AsyncSession, org_id: OrgId, role_id: uuid.UUID, *, for_use: bool = False
) -> Role | None:
    """A role the tenant can see. ``for_use``: it is about to be referenced (assigned,
    invited with), so hold it: a concurrent deletion waits for this transaction to end
    (PostgreSQL ``FOR KEY SHARE``; SQLite write transactions never overlap anyway)."""
    stmt = select(Role).where(Role.id == role_id, _visible_roles(org_id))
    if for_use:
        stmt = stmt.with_for_update(read=True, key_share=True)
    role: Role | None = await session.scalar(stmt)
    return role


async def get_custom_role(session: AsyncSession, org_id: OrgId, role_id: uuid.UUID) -> Role | None:
    """A custom role of the tenant, locked for a change (rename, new permissions, delete)."""
    role: Role | None = await session.scalar(
        scoped(select(Role), Role, org_id).where(Role.id == role_id).with_for_update()
    )
    return role


async def role_name_taken(session: AsyncSession, org_id: OrgId, name: str) -> bool:
    count = await session.scalar(
        select(func.count()).select_from(Role).where(_visible_roles(org_id), Role.name == name)
    )
    return bool(count)


async def set_role_permissions(
    session: AsyncSession, role_id: uuid.UUID, permissions: Iterable[Permission]
) -> None:
    role = await session.get(Role, role_id)  # loaded by the caller: no query
    await session.execute(
        delete(RolePermission).where(RolePermission.role_id == role_id),
        execution_options=in_organization(role.organization_id if role else None),
    )
    session.add_all(RolePermission(role_id=role_id, permission=p.value) for p in permissions)


async def replace_user_roles(
    session: AsyncSession, user_id: uuid.UUID, role_ids: Iterable[uuid.UUID]
) -> None:
    user = await session.get(User, user_id)  # loaded (or just added) by the caller
    await session.execute(
        delete(UserRole).where(UserRole.user_id == user_id),
        execution_options=in_organization(user.organization_id if user else None),
    )
    session.add_all(UserRole(user_id=user_id, role_id=rid) for rid in role_ids)


async def count_active_holders(session: AsyncSession, org_id: OrgId, role_id: uuid.UUID) -> int:
    count = await session.scalar(
        scoped(select(func.count()).select_from(User), User, org_id)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role_id == role_id, User.is_active.is_(True))
    )
    return int(count or 0)

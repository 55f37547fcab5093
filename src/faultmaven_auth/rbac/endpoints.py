"""Roles of an organization, and the roles of one member."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, status

from faultmaven_auth.api.openapi import error_responses
from faultmaven_auth.errors import NotFound
from faultmaven_auth.identity.service import get_user
from faultmaven_auth.rbac import service
from faultmaven_auth.rbac.dependencies import OrgAccess, require
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.rbac.repository import (
    get_role,
    list_roles,
    permissions_of_roles,
    roles_of_user,
)
from faultmaven_auth.rbac.schemas import RoleCreate, RoleOut, RoleUpdate, UserRolesUpdate
from faultmaven_auth.runtime import Runtime, get_runtime

router = APIRouter(prefix="/api/v1/organizations/{org_id}", tags=["roles"])


@router.get("/roles", response_model=list[RoleOut])
async def get_roles(
    access: OrgAccess = Depends(require(Permission.ROLES_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> list[RoleOut]:
    async with runtime.db.session() as session:
        roles = await list_roles(session, access.org_id)
        permissions = await permissions_of_roles(session, roles)
    return [service.role_out(r, permissions[r.id]) for r in roles]


@router.get("/roles/{role_id}", response_model=RoleOut)
async def get_one_role(
    role_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.ROLES_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> RoleOut:
    async with runtime.db.session() as session:
        role = await get_role(session, access.org_id, role_id)
        if role is None:
            raise NotFound("Role not found", code="ROLE_NOT_FOUND")
        permissions = await permissions_of_roles(session, [role])
    return service.role_out(role, permissions[role.id])


@router.post(
    "/roles",
    status_code=status.HTTP_201_CREATED,
    response_model=RoleOut,
    responses=error_responses(409),
)
async def create_role(
    body: RoleCreate,
    access: OrgAccess = Depends(require(Permission.ROLES_MANAGE)),
    runtime: Runtime = Depends(get_runtime),
) -> RoleOut:
    return await service.create_role(runtime, access, body)


@router.patch("/roles/{role_id}", response_model=RoleOut, responses=error_responses(409))
async def update_role(
    role_id: uuid.UUID,
    body: RoleUpdate,
    access: OrgAccess = Depends(require(Permission.ROLES_MANAGE)),
    runtime: Runtime = Depends(get_runtime),
) -> RoleOut:
    return await service.update_role(runtime, access, role_id, body)


@router.delete(
    "/roles/{role_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(409)
)
async def delete_role(
    role_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.ROLES_MANAGE)),
    runtime: Runtime = Depends(get_runtime),
) -> None:
    await service.delete_role(runtime, access, role_id)


@router.get("/users/{user_id}/roles", response_model=list[RoleOut])
async def get_user_roles(
    user_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.ROLES_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> list[RoleOut]:
    async with runtime.db.session() as session:
        user = await get_user(session, access.org_id, user_id)
        roles = await roles_of_user(session, user.id)
        permissions = await permissions_of_roles(session, roles)
    return [service.role_out(r, permissions[r.id]) for r in roles]


@router.put("/users/{user_id}/roles", response_model=list[RoleOut], responses=error_responses(409))
async def put_user_roles(
    user_id: uuid.UUID,
    body: UserRolesUpdate,
    access: OrgAccess = Depends(require(Permission.ROLES_ASSIGN)),
    runtime: Runtime = Depends(get_runtime),
) -> list[RoleOut]:
    return await service.set_user_roles(runtime, access, user_id, body.role_ids)

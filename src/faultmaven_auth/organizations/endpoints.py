"""The organization, its invitations and its teams."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, status

from faultmaven_auth.api.openapi import error_responses
from faultmaven_auth.identity.schemas import UserOut
from faultmaven_auth.organizations import service
from faultmaven_auth.organizations.schemas import (
    InvitationCreate,
    InvitationCreated,
    InvitationOut,
    OrganizationOut,
    OrganizationUpdate,
    TeamCreate,
    TeamMemberAdd,
    TeamOut,
    TeamUpdate,
)
from faultmaven_auth.rbac.dependencies import OrgAccess, require
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.runtime import Runtime, get_runtime

router = APIRouter(prefix="/api/v1/organizations/{org_id}", tags=["organizations"])


@router.get("", response_model=OrganizationOut)
async def get_organization(
    access: OrgAccess = Depends(require(Permission.ORGANIZATION_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> OrganizationOut:
    return OrganizationOut.model_validate(await service.get_organization(runtime, access))


@router.patch("", response_model=OrganizationOut)
async def update_organization(
    body: OrganizationUpdate,
    access: OrgAccess = Depends(require(Permission.ORGANIZATION_UPDATE)),
    runtime: Runtime = Depends(get_runtime),
) -> OrganizationOut:
    return OrganizationOut.model_validate(await service.update_organization(runtime, access, body))


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
async def delete_organization(
    access: OrgAccess = Depends(require(Permission.ORGANIZATION_DELETE)),
    runtime: Runtime = Depends(get_runtime),
) -> None:
    await service.delete_organization(runtime, access)


@router.post(
    "/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationCreated,
    responses=error_responses(409),
)
async def create_invitation(
    body: InvitationCreate,
    access: OrgAccess = Depends(require(Permission.INVITATIONS_MANAGE)),
    runtime: Runtime = Depends(get_runtime),
) -> InvitationCreated:
    invitation, token = await service.create_invitation(runtime, access, body)
    out = InvitationOut.model_validate(invitation)
    return InvitationCreated(**out.model_dump(), token=token)


@router.get("/invitations", response_model=list[InvitationOut])
async def list_invitations(
    access: OrgAccess = Depends(require(Permission.INVITATIONS_MANAGE)),
    runtime: Runtime = Depends(get_runtime),
) -> list[InvitationOut]:
    async with runtime.db.session() as session:
        rows = await service.list_invitations(session, access.org_id)
    return [InvitationOut.model_validate(r) for r in rows]


@router.delete(
    "/invitations/{invitation_id}", response_model=InvitationOut, responses=error_responses(409)
)
async def revoke_invitation(
    invitation_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.INVITATIONS_MANAGE)),
    runtime: Runtime = Depends(get_runtime),
) -> InvitationOut:
    return InvitationOut.model_validate(
        await service.revoke_invitation(runtime, access, invitation_id)
    )


@router.get("/teams", response_model=list[TeamOut])
async def list_teams(
    access: OrgAccess = Depends(require(Permission.TEAMS_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> list[TeamOut]:
    async with runtime.db.session() as session:
        return [TeamOut.model_validate(t) for t in await service.list_teams(session, access.org_id)]


@router.post(
    "/teams",
    status_code=status.HTTP_201_CREATED,
    response_model=TeamOut,
    responses=error_responses(409),
)
async def create_team(
    body: TeamCreate,
    access: OrgAccess = Depends(require(Permission.TEAMS_CREATE)),
    runtime: Runtime = Depends(get_runtime),
) -> TeamOut:
    return TeamOut.model_validate(await service.create_team(runtime, access, body))


@router.get("/teams/{team_id}", response_model=TeamOut)
async def get_team(
    team_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.TEAMS_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> TeamOut:
    async with runtime.db.session() as session:
        return TeamOut.model_validate(await service.get_team(session, access.org_id, team_id))


@router.patch("/teams/{team_id}", response_model=TeamOut, responses=error_responses(409))
async def update_team(
    team_id: uuid.UUID,
    body: TeamUpdate,
    access: OrgAccess = Depends(require(Permission.TEAMS_UPDATE)),
    runtime: Runtime = Depends(get_runtime),
) -> TeamOut:
    return TeamOut.model_validate(await service.update_team(runtime, access, team_id, body))


@router.delete("/teams/{team_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_team(
    team_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.TEAMS_DELETE)),
    runtime: Runtime = Depends(get_runtime),
) -> None:
    await service.delete_team(runtime, access, team_id)


@router.get("/teams/{team_id}/members", response_model=list[UserOut])
async def list_team_members(
    team_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.TEAMS_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> list[UserOut]:
    async with runtime.db.session() as session:
        users = await service.list_team_members(session, access.org_id, team_id)
    return [UserOut.model_validate(u) for u in users]


@router.post(
    "/teams/{team_id}/members",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=error_responses(409),
)
async def add_team_member(
    team_id: uuid.UUID,
    body: TeamMemberAdd,
    access: OrgAccess = Depends(require(Permission.TEAMS_UPDATE)),
    runtime: Runtime = Depends(get_runtime),
) -> UserOut:
    return UserOut.model_validate(
        await service.add_team_member(runtime, access, team_id, body.user_id)
    )


@router.delete("/teams/{team_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_team_member(
    team_id: uuid.UUID,
    user_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.TEAMS_UPDATE)),
    runtime: Runtime = Depends(get_runtime),
) -> None:
    await service.remove_team_member(runtime, access, team_id, user_id)

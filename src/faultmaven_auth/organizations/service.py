"""The organization itself, its invitations and its teams."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.errors import Conflict, NotFound, PrivilegeEscalationDenied
from faultmaven_auth.identity.service import (
    email_conflict,
    email_taken_in,
    get_user,
    lock_organization,
)
from faultmaven_auth.organizations.schemas import (
    InvitationCreate,
    OrganizationUpdate,
    TeamCreate,
    TeamUpdate,
)
from faultmaven_auth.rbac.dependencies import OrgAccess
from faultmaven_auth.rbac.policies import can_grant
from faultmaven_auth.rbac.repository import get_role, permissions_of_roles
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import Invitation, Organization, Team, TeamMembership, User
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.storage.tenancy import OrgId, scoped
from faultmaven_auth.storage.write_scope import in_organization
from faultmaven_auth.tokens.service import hash_token, normalize_email, revoke_organization_sessions
from faultmaven_auth.tokens.service_clients import revoke_organization_service_clients

# -- organization -------------------------------------------------------------------


async def get_organization(runtime: Runtime, access: OrgAccess) -> Organization:
    """The caller's organization (live: the principal's checks found it so)."""
    async with runtime.db.session() as session:
        org = await session.get(Organization, access.org_id)
    if org is None:
        raise NotFound("Organization not found", code="ORGANIZATION_NOT_FOUND")
    return org


async def update_organization(
    runtime: Runtime, access: OrgAccess, data: OrganizationUpdate
) -> Organization:
    async with access.transaction(runtime.db) as session:
        org = await lock_organization(session, access.org_id)
        assert org is not None  # noqa: S101 - the caller's own organization
        before = org.name
        org.name = data.name
        access.audit(
            session,
            AuditEventType.ORGANIZATION_UPDATED,
            target_type="organization",
            target_id=org.id,
            details={"name": {"from": before, "to": data.name}},
        )
        return org


async def delete_organization(runtime: Runtime, access: OrgAccess) -> None:
    """Soft delete: the org and its members stop working at once; rows stay for audit."""
    async with access.transaction(runtime.db) as session:
        org = await lock_organization(session, access.org_id)
        assert org is not None  # noqa: S101
        org.deleted_at = utcnow()
        await revoke_organization_sessions(session, org.id)
        await revoke_organization_service_clients(
            session, org.id, meta=access.meta, actor_id=access.principal.user.id
        )
        access.audit(
            session,
            AuditEventType.ORGANIZATION_DELETED,
            target_type="organization",
            target_id=org.id,
        )
    runtime.metrics.organizations_deleted_total.inc()


# -- invitations --------------------------------------------------------------------


async def create_invitation(
    runtime: Runtime, access: OrgAccess, data: InvitationCreate
) -> tuple[Invitation, str]:
    token = "fmi_" + secrets.token_urlsafe(32)
    email = normalize_email(data.email)
    async with access.transaction(runtime.db) as session:
        role = await get_role(session, access.org_id, data.role_id, for_use=True)
        if role is None:
            raise NotFound("Role not found", code="ROLE_NOT_FOUND")
        granted = (await permissions_of_roles(session, [role]))[role.id]
        if not can_grant(access.principal.permissions, granted):
            raise PrivilegeEscalationDenied(
                "You cannot invite with a role whose permissions you lack"
            )
        # Only this organization's members count: an address with an account elsewhere
        # is invited like any unknown one.
        if await email_taken_in(session, access.org_id, email):
            raise email_conflict()
        invitation = Invitation(
            organization_id=access.org_id,
            email=email,
            role_id=role.id,
            token_hash=hash_token(token),
            invited_by_id=access.principal.user.id,
            expires_at=utcnow() + timedelta(seconds=runtime.settings.invitation_ttl_seconds),
        )
        session.add(invitation)
        await session.flush()
        access.audit(
            session,
            AuditEventType.INVITATION_CREATED,
            target_type="invitation",
            target_id=invitation.id,
            details={"role_id": str(role.id)},
        )
        return invitation, token


async def list_invitations(session: AsyncSession, org_id: OrgId) -> list[Invitation]:
    result = await session.scalars(
        scoped(select(Invitation), Invitation, org_id).order_by(Invitation.id)
    )
    return list(result.all())


async def revoke_invitation(
    runtime: Runtime, access: OrgAccess, invitation_id: uuid.UUID
) -> Invitation:
    async with access.transaction(runtime.db) as session:
        invitation: Invitation | None = await session.scalar(
            scoped(select(Invitation), Invitation, access.org_id).where(
                Invitation.id == invitation_id
            )
        )
        if invitation is None:
            raise NotFound("Invitation not found", code="INVITATION_NOT_FOUND")
        if invitation.accepted_at is not None:
            raise Conflict("The invitation was already accepted", code="INVITATION_ACCEPTED")
        if invitation.revoked_at is None:
            invitation.revoked_at = utcnow()
            access.audit(
                session,
                AuditEventType.INVITATION_REVOKED,
                target_type="invitation",
                target_id=invitation.id,
            )
        return invitation


# -- teams --------------------------------------------------------------------------


async def get_team(
    session: AsyncSession, org_id: OrgId, team_id: uuid.UUID, *, for_update: bool = False
) -> Team:
    """A team of the tenant. ``for_update`` locks its row (PostgreSQL) so that changes to
    the team and its membership run one after the other: a second identical request then
    sees the first one's result instead of failing on the primary key."""
    stmt = scoped(select(Team), Team, org_id).where(Team.id == team_id)
    if for_update:
        stmt = stmt.with_for_update()
    team: Team | None = await session.scalar(stmt)
    if team is None:
        raise NotFound("Team not found", code="TEAM_NOT_FOUND")
    return team


async def list_teams(session: AsyncSession, org_id: OrgId) -> list[Team]:
    return list(
        (await session.scalars(scoped(select(Team), Team, org_id).order_by(Team.name))).all()
    )


def _team_name_taken() -> Conflict:
    return Conflict("A team with this name already exists", code="TEAM_NAME_TAKEN")


async def create_team(runtime: Runtime, access: OrgAccess, data: TeamCreate) -> Team:
    try:
        async with access.transaction(runtime.db) as session:
            org = await lock_organization(session, access.org_id)
            assert org is not None  # noqa: S101
            count = await session.scalar(
                scoped(select(func.count()).select_from(Team), Team, access.org_id)
            )
            if int(count or 0) >= org.max_teams:
                raise Conflict(
                    f"The organization's plan allows at most {org.max_teams} teams",
                    code="PLAN_LIMIT_REACHED",
                )
            if await session.scalar(
                scoped(select(func.count()).select_from(Team), Team, access.org_id).where(
                    Team.name == data.name
                )
            ):
                raise _team_name_taken()
            team = Team(organization_id=access.org_id, name=data.name, description=data.description)
            session.add(team)
            await session.flush()
            access.audit(
                session,
                AuditEventType.TEAM_CREATED,
                target_type="team",
                target_id=team.id,
                details={"name": team.name},
            )
            return team
    except IntegrityError as exc:
        raise _team_name_taken() from exc


async def update_team(
    runtime: Runtime, access: OrgAccess, team_id: uuid.UUID, data: TeamUpdate
) -> Team:
    try:
        async with access.transaction(runtime.db) as session:
            team = await get_team(session, access.org_id, team_id, for_update=True)
            if data.name is not None:
                team.name = data.name
            if data.description is not None:
                team.description = data.description
            await session.flush()
            access.audit(
                session,
                AuditEventType.TEAM_UPDATED,
                target_type="team",
                target_id=team.id,
                details={"changed": sorted(data.model_dump(exclude_none=True))},
            )
            return team
    except IntegrityError as exc:
        raise _team_name_taken() from exc


async def delete_team(runtime: Runtime, access: OrgAccess, team_id: uuid.UUID) -> None:
    async with access.transaction(runtime.db) as session:
        team = await get_team(session, access.org_id, team_id, for_update=True)
        await session.execute(
            delete(TeamMembership).where(TeamMembership.team_id == team.id),
            execution_options=in_organization(team.organization_id),
        )
        await session.delete(team)
        access.audit(
            session,
            AuditEventType.TEAM_DELETED,
            target_type="team",
            target_id=team.id,
            details={"name": team.name},
        )


async def list_team_members(session: AsyncSession, org_id: OrgId, team_id: uuid.UUID) -> list[User]:
    team = await get_team(session, org_id, team_id)
    result = await session.scalars(
        scoped(select(User), User, org_id)
        .join(TeamMembership, TeamMembership.user_id == User.id)
        .where(TeamMembership.team_id == team.id)
        .order_by(User.id)
    )
    return list(result.all())


async def add_team_member(
    runtime: Runtime, access: OrgAccess, team_id: uuid.UUID, user_id: uuid.UUID
) -> User:
    async with access.transaction(runtime.db) as session:
        team = await get_team(session, access.org_id, team_id, for_update=True)
        user = await get_user(session, access.org_id, user_id)
        exists = await session.get(TeamMembership, (team.id, user.id))
        if exists is None:
            session.add(TeamMembership(team_id=team.id, user_id=user.id))
            access.audit(
                session,
                AuditEventType.TEAM_MEMBER_ADDED,
                target_type="team",
                target_id=team.id,
                details={"user_id": str(user.id)},
            )
        return user


async def remove_team_member(
    runtime: Runtime, access: OrgAccess, team_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    async with access.transaction(runtime.db) as session:
        team = await get_team(session, access.org_id, team_id, for_update=True)
        membership = await session.get(TeamMembership, (team.id, user_id))
        if membership is None:
            raise NotFound("The user is not a member of this team", code="TEAM_MEMBER_NOT_FOUND")
        await session.delete(membership)
        access.audit(
            session,
            AuditEventType.TEAM_MEMBER_REMOVED,
            target_type="team",
            target_id=team.id,
            details={"user_id": str(user_id)},
        )

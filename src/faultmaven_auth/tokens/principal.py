"""Who is calling: the caller's user, organization, roles, permissions and teams.

``Identity`` is plain immutable data (no ORM object, no session), so one loaded from the
database can be kept by the principal cache and shared by concurrent requests.
``Principal`` is an identity plus the claims of the token that proved it.

``load_identity`` selects columns, not entities: the ORM's identity map, attribute
instrumentation and relationship machinery cost more than the two key lookups they
carry, and nothing here is written back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.errors import InvalidToken
from faultmaven_auth.rbac.permissions import SYSTEM_ROLE_PERMISSIONS, Permission
from faultmaven_auth.storage.models import (
    Organization,
    Role,
    RolePermission,
    TeamMembership,
    User,
    UserRole,
)
from faultmaven_auth.storage.tenancy import OrgId
from faultmaven_auth.tokens.access import AccessClaims


@dataclass(frozen=True)
class PrincipalUser:
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    full_name: str


@dataclass(frozen=True)
class PrincipalOrganization:
    id: uuid.UUID


@dataclass(frozen=True)
class PrincipalRole:
    id: uuid.UUID
    name: str


@dataclass(frozen=True)
class Identity:
    """An active user of a live organization, with what they may do."""

    user: PrincipalUser
    organization: PrincipalOrganization
    roles: tuple[PrincipalRole, ...]
    permissions: frozenset[Permission]
    team_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class Principal:
    identity: Identity
    claims: AccessClaims

    @property
    def user(self) -> PrincipalUser:
        return self.identity.user

    @property
    def organization(self) -> PrincipalOrganization:
        return self.identity.organization

    @property
    def roles(self) -> tuple[PrincipalRole, ...]:
        return self.identity.roles

    @property
    def permissions(self) -> frozenset[Permission]:
        return self.identity.permissions

    @property
    def org_id(self) -> OrgId:
        # The caller's own organization is, by construction, checked.
        return OrgId(self.identity.organization.id)


async def load_identity(session: AsyncSession, claims: AccessClaims) -> Identity:
    """The token's user as they are now; ``InvalidToken`` if inactive or gone.

    One query for the user, organization and roles; one for the permissions of custom
    roles (system roles' permissions live in code) only when there are any; one for
    the teams.
    """
    rows = (
        await session.execute(
            select(
                User.email,
                User.full_name,
                User.is_active,
                Organization.deleted_at,
                Role.id,
                Role.name,
                Role.is_system,
            )
            .join(Organization, Organization.id == User.organization_id)
            .outerjoin(UserRole, UserRole.user_id == User.id)
            .outerjoin(Role, Role.id == UserRole.role_id)
            .where(User.id == claims.user_id, User.organization_id == claims.organization_id)
        )
    ).all()
    if not rows:
        raise InvalidToken
    email, full_name, is_active, deleted_at = rows[0][:4]
    if not is_active or deleted_at is not None:
        raise InvalidToken
    roles = [(row[4], row[5], row[6]) for row in rows if row[4] is not None]
    permissions: set[Permission] = set()
    for _, name, is_system in roles:
        if is_system:
            permissions |= SYSTEM_ROLE_PERMISSIONS.get(name, frozenset())
    custom = [role_id for role_id, _, is_system in roles if not is_system]
    if custom:
        stored = await session.scalars(
            select(RolePermission.permission).where(RolePermission.role_id.in_(custom))
        )
        permissions |= {Permission(p) for p in stored if p in Permission._value2member_map_}
    team_ids = await session.scalars(
        select(TeamMembership.team_id)
        .where(TeamMembership.user_id == claims.user_id)
        .order_by(TeamMembership.team_id)
    )
    return Identity(
        user=PrincipalUser(claims.user_id, claims.organization_id, email, full_name),
        organization=PrincipalOrganization(claims.organization_id),
        roles=tuple(PrincipalRole(role_id, name) for role_id, name, _ in roles),
        permissions=frozenset(permissions),
        team_ids=tuple(team_ids),
    )

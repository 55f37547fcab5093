"""Permissions and the fixed permission sets of the system roles.

RBAC is data: a ``Permission`` enum, and a mapping from system role name to the
permissions it grants. Custom roles store their own lists. Policies elsewhere are
predicates over these sets, so "can X grant Y" is a subset test.
"""

from __future__ import annotations

import uuid
from enum import StrEnum


class Permission(StrEnum):
    ORGANIZATION_READ = "organization:read"
    ORGANIZATION_UPDATE = "organization:update"
    ORGANIZATION_DELETE = "organization:delete"
    USERS_READ = "users:read"
    USERS_CREATE = "users:create"
    USERS_UPDATE = "users:update"
    USERS_DELETE = "users:delete"
    ROLES_READ = "roles:read"
    ROLES_ASSIGN = "roles:assign"
    ROLES_MANAGE = "roles:manage"
    TEAMS_READ = "teams:read"
    TEAMS_CREATE = "teams:create"
    TEAMS_UPDATE = "teams:update"
    TEAMS_DELETE = "teams:delete"
    INVITATIONS_MANAGE = "invitations:manage"
    SSO_READ = "sso:read"
    SSO_MANAGE = "sso:manage"
    AUDIT_READ = "audit:read"
    SERVICE_CLIENTS_MANAGE = "service_clients:manage"


ALL_PERMISSIONS = frozenset(Permission)

_READ = frozenset(
    {
        Permission.ORGANIZATION_READ,
        Permission.USERS_READ,
        Permission.TEAMS_READ,
        Permission.ROLES_READ,
    }
)

SYSTEM_ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "owner": ALL_PERMISSIONS,
    "admin": ALL_PERMISSIONS - {Permission.ORGANIZATION_DELETE},
    "member": _READ | {Permission.SSO_READ},
    "viewer": _READ,
}

SYSTEM_ROLE_DESCRIPTIONS = {
    "owner": "Full control of the organization, including deleting it",
    "admin": "Manages members, teams, roles, invitations, SSO and audit",
    "member": "Reads the organization, its members, teams and roles",
    "viewer": "Read-only access to the organization, its members and teams",
}

OWNER = "owner"

# System roles are rows with fixed ids (seeded by the first migration), so user_roles
# can point at them like at any custom role.
_SYSTEM_NAMESPACE = uuid.UUID("5b0c1f8e-3f0a-4d1e-9d7a-6a7f00000000")
SYSTEM_ROLE_IDS: dict[str, uuid.UUID] = {
    name: uuid.uuid5(_SYSTEM_NAMESPACE, name) for name in SYSTEM_ROLE_PERMISSIONS
}

from __future__ import annotations

from enum import StrEnum


class AuditEventType(StrEnum):
    LOGIN_SUCCEEDED = "auth.login.succeeded"
    LOGIN_FAILED = "auth.login.failed"
    LOGOUT = "auth.logout"
    TOKEN_REFRESHED = "auth.token.refreshed"
    REFRESH_TOKEN_REUSED = "auth.refresh_token.reused"
    REGISTERED = "auth.registered"
    PASSWORD_CHANGED = "auth.password.changed"
    PASSWORD_CHANGE_FAILED = "auth.password.change_failed"
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    USER_DEACTIVATED = "user.deactivated"
    ROLE_ASSIGNED = "role.assigned"
    ROLE_REMOVED = "role.removed"
    ROLE_CREATED = "role.created"
    ROLE_UPDATED = "role.updated"
    ROLE_DELETED = "role.deleted"
    TEAM_CREATED = "team.created"
    TEAM_UPDATED = "team.updated"
    TEAM_DELETED = "team.deleted"
    TEAM_MEMBER_ADDED = "team.member_added"
    TEAM_MEMBER_REMOVED = "team.member_removed"
    INVITATION_CREATED = "invitation.created"
    INVITATION_REVOKED = "invitation.revoked"
    INVITATION_ACCEPTED = "invitation.accepted"
    ORGANIZATION_UPDATED = "organization.updated"
    ORGANIZATION_DELETED = "organization.deleted"
    PERMISSION_DENIED = "authz.permission_denied"
    CROSS_TENANT_ACCESS = "authz.cross_tenant_access"
    SIGNING_KEY_ROTATED = "keys.rotated"
    SIGNING_KEYS_ENCRYPTED = "keys.encrypted"
    SERVICE_CLIENT_CREATED = "service_client.created"
    SERVICE_CLIENT_REVOKED = "service_client.revoked"
    BRUTE_FORCE_DETECTED = "security.brute_force_detected"
    CREDENTIAL_STUFFING_DETECTED = "security.credential_stuffing_detected"
    ACCOUNT_LOCKED = "auth.account.locked"
    ACCOUNT_UNLOCKED = "auth.account.unlocked"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"

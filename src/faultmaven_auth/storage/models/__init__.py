"""All ORM models, one module per aggregate; importing this package registers them all."""

from faultmaven_auth.storage.models.audit import AuditChainHead, AuditEvent
from faultmaven_auth.storage.models.base import Base
from faultmaven_auth.storage.models.invitation import Invitation
from faultmaven_auth.storage.models.organization import Organization
from faultmaven_auth.storage.models.role import Role, RolePermission, UserRole
from faultmaven_auth.storage.models.sso import SsoDomain, SsoIdentity, SsoProvider, SsoRedirectUri
from faultmaven_auth.storage.models.team import Team, TeamMembership
from faultmaven_auth.storage.models.token import RefreshToken, ServiceClient, SigningKey
from faultmaven_auth.storage.models.user import User

__all__ = [
    "AuditChainHead",
    "AuditEvent",
    "Base",
    "Invitation",
    "Organization",
    "RefreshToken",
    "Role",
    "RolePermission",
    "ServiceClient",
    "SigningKey",
    "SsoDomain",
    "SsoIdentity",
    "SsoProvider",
    "SsoRedirectUri",
    "Team",
    "TeamMembership",
    "User",
    "UserRole",
]

# Every ORM session chains the audit events it writes; importing the models is enough,
# so no writer of audit events can forget it (see storage.audit_chain).
from faultmaven_auth.storage.audit_chain import install_audit_chain

install_audit_chain()

"""SSO-required mode: may this user still sign in with a password?

When an enabled provider of the user's organization has ``sso_required`` and allows
the domain of the user's email, password login is refused (403 ``SSO_REQUIRED``),
after the password was verified, so the answer tells nothing to someone guessing.
Owners keep a break-glass path: their password login still works (an IdP outage
must not lock the organization out of its own settings) and is audited with
``break_glass: true``.
"""

from __future__ import annotations

from sqlalchemy import select

from faultmaven_auth.errors import Forbidden
from faultmaven_auth.rbac.permissions import OWNER, SYSTEM_ROLE_IDS
from faultmaven_auth.storage.db import Database
from faultmaven_auth.storage.models import SsoProvider, User, UserRole


class SsoRequired(Forbidden):
    code = "SSO_REQUIRED"
    message = "This organization requires single sign-on; sign in through its identity provider"


async def check_password_login(db: Database, user: User) -> bool:
    """True for a break-glass owner login; raises ``SsoRequired`` for anyone else
    under SSO-required; False when SSO does not apply."""
    domain = user.email.rsplit("@", 1)[-1]
    async with db.session() as session:
        required = await session.scalars(
            select(SsoProvider.allowed_domains).where(
                SsoProvider.organization_id == user.organization_id,
                SsoProvider.enabled.is_(True),
                SsoProvider.sso_required.is_(True),
            )
        )
        if not any(domain in domains for domains in required.all()):
            return False
        owner = await session.scalar(
            select(UserRole.user_id).where(
                UserRole.user_id == user.id, UserRole.role_id == SYSTEM_ROLE_IDS[OWNER]
            )
        )
    if owner is None:
        raise SsoRequired
    return True

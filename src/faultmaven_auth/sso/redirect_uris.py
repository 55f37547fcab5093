"""The redirect URIs an organization registers: where a finished SSO login may send the
browser (with its one-time code). Matching is exact, string for string: no prefix,
no wildcard, no normalization, so an attacker cannot find a look-alike that passes."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.errors import Conflict, NotFound
from faultmaven_auth.rbac.dependencies import OrgAccess
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.sso.errors import SsoConfigurationInvalid
from faultmaven_auth.storage.models import SsoRedirectUri
from faultmaven_auth.storage.tenancy import OrgId, scoped

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_redirect_uri(uri: str) -> None:
    """Absolute https (http only to loopback, for native and local apps), no fragment."""
    parts = urlsplit(uri)
    secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)
    if not secure or not parts.hostname or parts.fragment or parts.username is not None:
        raise SsoConfigurationInvalid(
            "A redirect URI must be an absolute https URL (http only for loopback) "
            "without a fragment or credentials",
            code="SSO_INVALID_REDIRECT_URI",
        )


async def add_redirect_uri(runtime: Runtime, access: OrgAccess, uri: str) -> SsoRedirectUri:
    check_redirect_uri(uri)
    try:
        async with access.transaction(runtime.db) as session:
            if await redirect_uri_registered(session, access.org_id, uri):
                raise Conflict("The redirect URI is already registered", code="REDIRECT_URI_EXISTS")
            row = SsoRedirectUri(organization_id=access.org_id, uri=uri)
            session.add(row)
            await session.flush()
            access.audit(
                session,
                AuditEventType.SSO_REDIRECT_URI_ADDED,
                target_type="sso_redirect_uri",
                target_id=row.id,
                details={"uri": uri},
            )
    except IntegrityError as exc:
        raise Conflict(
            "The redirect URI is already registered", code="REDIRECT_URI_EXISTS"
        ) from exc
    return row


async def list_redirect_uris(session: AsyncSession, org_id: OrgId) -> list[SsoRedirectUri]:
    stmt = scoped(select(SsoRedirectUri), SsoRedirectUri, org_id).order_by(SsoRedirectUri.id)
    return list((await session.scalars(stmt)).all())


async def redirect_uri_registered(session: AsyncSession, org_id: OrgId, uri: str) -> bool:
    stmt = scoped(select(SsoRedirectUri.id), SsoRedirectUri, org_id).where(
        SsoRedirectUri.uri == uri
    )
    return (await session.scalar(stmt)) is not None


async def remove_redirect_uri(runtime: Runtime, access: OrgAccess, uri_id: uuid.UUID) -> None:
    async with access.transaction(runtime.db) as session:
        row = await session.scalar(
            scoped(select(SsoRedirectUri), SsoRedirectUri, access.org_id).where(
                SsoRedirectUri.id == uri_id
            )
        )
        if row is None:
            raise NotFound("Redirect URI not found", code="REDIRECT_URI_NOT_FOUND")
        await session.delete(row)
        access.audit(
            session,
            AuditEventType.SSO_REDIRECT_URI_REMOVED,
            target_type="sso_redirect_uri",
            target_id=row.id,
            details={"uri": row.uri},
        )

"""Email domains an organization claims, their DNS verification, and discovery.

A claim gets a random token; the organization proves it controls the domain by
publishing ``_faultmaven-auth.<domain> TXT "faultmaven-auth-verification=<token>"``
and calling verify. Only one organization can hold a domain verified (a partial
unique index backs the check against concurrent verifications). The resolver's
servers are ``SSO_DNS_NAMESERVERS`` (the system's when empty), so tests run a real
DNS server on 127.0.0.1.

Discovery answers "which provider handles this address" from verified domains and
enabled providers only, and says nothing about whether the address has an account.
"""

from __future__ import annotations

import secrets
import uuid

import dns.asyncresolver
import dns.exception
import dns.resolver
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.config import Settings
from faultmaven_auth.errors import Conflict, NotFound, ServiceUnavailable
from faultmaven_auth.rbac.dependencies import OrgAccess
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.sso.errors import SsoConfigurationInvalid
from faultmaven_auth.sso.schemas import DomainOut, DomainVerification
from faultmaven_auth.storage.models import Organization, SsoDomain, SsoProvider
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.storage.tenancy import OrgId, scoped

RECORD_PREFIX = "_faultmaven-auth."
VALUE_PREFIX = "faultmaven-auth-verification="


def domain_out(row: SsoDomain) -> DomainOut:
    return DomainOut(
        id=row.id,
        domain=row.domain,
        verified=row.verified_at is not None,
        verified_at=row.verified_at,
        verification=DomainVerification(
            name=RECORD_PREFIX + row.domain, value=VALUE_PREFIX + row.verification_token
        ),
        created_at=row.created_at,
    )


def _claimed_elsewhere() -> Conflict:
    return Conflict("Another organization has verified this domain", code="DOMAIN_ALREADY_CLAIMED")


async def _verified_owner(session: AsyncSession, domain: str) -> uuid.UUID | None:
    owner: uuid.UUID | None = await session.scalar(
        select(SsoDomain.organization_id).where(
            SsoDomain.domain == domain, SsoDomain.verified_at.is_not(None)
        )
    )
    return owner


async def claim_domain(runtime: Runtime, access: OrgAccess, domain: str) -> SsoDomain:
    try:
        async with access.transaction(runtime.db) as session:
            owner = await _verified_owner(session, domain)
            if owner is not None and owner != access.org_id:
                raise _claimed_elsewhere()
            existing = await session.scalar(
                scoped(select(SsoDomain), SsoDomain, access.org_id).where(
                    SsoDomain.domain == domain
                )
            )
            if existing is not None:
                raise Conflict("The domain is already claimed", code="DOMAIN_EXISTS")
            row = SsoDomain(
                organization_id=access.org_id,
                domain=domain,
                verification_token=secrets.token_urlsafe(24),
            )
            session.add(row)
            await session.flush()
            access.audit(
                session,
                AuditEventType.SSO_DOMAIN_CLAIMED,
                target_type="sso_domain",
                target_id=row.id,
                details={"domain": domain},
            )
    except IntegrityError as exc:
        raise Conflict("The domain is already claimed", code="DOMAIN_EXISTS") from exc
    return row


async def list_domains(session: AsyncSession, org_id: OrgId) -> list[SsoDomain]:
    stmt = scoped(select(SsoDomain), SsoDomain, org_id).order_by(SsoDomain.domain)
    return list((await session.scalars(stmt)).all())


async def _get_domain(session: AsyncSession, org_id: OrgId, domain_id: uuid.UUID) -> SsoDomain:
    row: SsoDomain | None = await session.scalar(
        scoped(select(SsoDomain), SsoDomain, org_id)
        .where(SsoDomain.id == domain_id)
        .with_for_update()
    )
    if row is None:
        raise NotFound("Domain not found", code="DOMAIN_NOT_FOUND")
    return row


def _host_port(server: str) -> tuple[str, int]:
    """ "10.0.0.2" or "127.0.0.1:5353" (an IPv6 address takes no port here)."""
    if server.count(":") == 1:
        host, port = server.split(":")
        return host, int(port)
    return server, 53


async def txt_records(settings: Settings, name: str) -> list[str]:
    """The TXT strings at ``name``; none when it does not exist."""
    resolver = dns.asyncresolver.Resolver(configure=not settings.sso_dns_nameservers)
    if settings.sso_dns_nameservers:
        servers = [_host_port(s) for s in settings.sso_dns_nameservers]
        resolver.nameservers = [host for host, _ in servers]
        resolver.nameserver_ports = dict(servers)
    resolver.lifetime = settings.sso_http_timeout_seconds
    try:
        answer = await resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise ServiceUnavailable(
            "DNS cannot be queried right now; try again", code="DNS_UNAVAILABLE"
        ) from exc
    return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


async def verify_domain(runtime: Runtime, access: OrgAccess, domain_id: uuid.UUID) -> SsoDomain:
    async with runtime.db.session() as session:
        row = await _get_domain(session, access.org_id, domain_id)
        name, token = RECORD_PREFIX + row.domain, row.verification_token
    if row.verified_at is not None:
        return row
    found = await txt_records(runtime.settings, name)
    if VALUE_PREFIX + token not in found:
        raise SsoConfigurationInvalid(
            "The verification TXT record was not found", code="DOMAIN_NOT_VERIFIED"
        )
    try:
        async with access.transaction(runtime.db) as session:
            row = await _get_domain(session, access.org_id, domain_id)
            owner = await _verified_owner(session, row.domain)
            if owner is not None and owner != access.org_id:
                raise _claimed_elsewhere()
            row.verified_at = utcnow()
            access.audit(
                session,
                AuditEventType.SSO_DOMAIN_VERIFIED,
                target_type="sso_domain",
                target_id=row.id,
                details={"domain": row.domain},
            )
    except IntegrityError as exc:
        raise _claimed_elsewhere() from exc
    return row


async def remove_domain(runtime: Runtime, access: OrgAccess, domain_id: uuid.UUID) -> None:
    async with access.transaction(runtime.db) as session:
        row = await _get_domain(session, access.org_id, domain_id)
        await session.delete(row)
        access.audit(
            session,
            AuditEventType.SSO_DOMAIN_REMOVED,
            target_type="sso_domain",
            target_id=row.id,
            details={"domain": row.domain},
        )


async def domain_verified_by(session: AsyncSession, org_id: uuid.UUID, domain: str) -> bool:
    return await _verified_owner(session, domain) == org_id


async def discover_provider(session: AsyncSession, domain: str) -> SsoProvider | None:
    """The enabled provider of the organization that verified ``domain`` and allows it."""
    org_id = await _verified_owner(session, domain)
    if org_id is None:
        return None
    live = await session.scalar(
        select(Organization.id).where(Organization.id == org_id, Organization.deleted_at.is_(None))
    )
    if live is None:
        return None
    providers = (
        await session.scalars(
            select(SsoProvider)
            .where(SsoProvider.organization_id == org_id, SsoProvider.enabled.is_(True))
            .order_by(SsoProvider.id)
        )
    ).all()
    return next((p for p in providers if domain in p.allowed_domains), None)

"""SSO provider configuration of an organization: create, read, update, delete.

Discovery runs before the write transaction (it is network I/O): an issuer that does
not answer with a valid document is refused and nothing is stored. The client secret
is sealed with the signing-key cipher (AES-GCM; the provider id is the associated
data, so a sealed secret cannot be moved to another provider row) and never leaves
this module except to the token endpoint. Roles a provider hands out must be roles the
configuring admin could grant, and never ``owner``: an IdP group must not be able to
mint owners.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.config import Settings
from faultmaven_auth.errors import NotFound, PrivilegeEscalationDenied
from faultmaven_auth.rbac.dependencies import OrgAccess
from faultmaven_auth.rbac.permissions import OWNER, SYSTEM_ROLE_IDS
from faultmaven_auth.rbac.policies import can_grant
from faultmaven_auth.rbac.repository import get_role, permissions_of_roles
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.sso.errors import SsoConfigurationInvalid
from faultmaven_auth.sso.oidc_http import OidcHttp
from faultmaven_auth.sso.schemas import (
    ClaimMapping,
    OidcProviderCreate,
    OidcProviderUpdate,
    SsoProviderOut,
)
from faultmaven_auth.storage.ids import uuid7
from faultmaven_auth.storage.models import SsoIdentity, SsoProvider
from faultmaven_auth.storage.tenancy import OrgId, scoped
from faultmaven_auth.tokens.keys import KeyCipher

# The discovered endpoints kept in the provider's config.
_DISCOVERED = ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")


def _secret_context(provider_id: uuid.UUID) -> str:
    return f"sso-provider:{provider_id}"


def seal_client_secret(cipher: KeyCipher, provider: SsoProvider, secret: str) -> None:
    provider.secret = cipher.seal(secret.encode("utf-8"), _secret_context(provider.id))
    provider.secret_encrypted = cipher.enabled


def open_client_secret(cipher: KeyCipher, provider: SsoProvider) -> str:
    stored = provider.secret or b""
    context = _secret_context(provider.id)
    return cipher.open(stored, context, encrypted=provider.secret_encrypted).decode("utf-8")


def provider_out(provider: SsoProvider, settings: Settings) -> SsoProviderOut:
    config = provider.config
    base = (settings.sso_public_base_url or settings.jwt_issuer).rstrip("/")
    return SsoProviderOut(
        id=provider.id,
        organization_id=provider.organization_id,
        provider_type=provider.provider_type,
        name=provider.name,
        enabled=provider.enabled,
        issuer=config["issuer"],
        client_id=config["client_id"],
        client_secret_set=provider.secret is not None,
        token_endpoint_auth_method=config["token_endpoint_auth_method"],
        scopes=config["scopes"],
        claim_mapping=ClaimMapping(**config["claim_mapping"]),
        use_userinfo=config["use_userinfo"],
        allowed_domains=provider.allowed_domains,
        jit_enabled=provider.jit_enabled,
        default_role_id=provider.default_role_id,
        group_role_map={k: uuid.UUID(v) for k, v in provider.group_role_map.items()},
        sso_required=provider.sso_required,
        login_url=f"{base}/api/v1/sso/{provider.id}/login",
        callback_url=settings.sso_callback_url,
        created_at=provider.created_at,
        updated_at=provider.updated_at,
    )


async def _check_roles(session: AsyncSession, access: OrgAccess, role_ids: list[uuid.UUID]) -> None:
    roles = []
    for role_id in dict.fromkeys(role_ids):
        role = await get_role(session, access.org_id, role_id, for_use=True)
        if role is None:
            raise NotFound("Role not found", code="ROLE_NOT_FOUND")
        if role.id == SYSTEM_ROLE_IDS[OWNER]:
            raise SsoConfigurationInvalid(
                "SSO cannot grant the owner role", code="SSO_ROLE_NOT_ALLOWED"
            )
        roles.append(role)
    granted = await permissions_of_roles(session, roles)
    if not can_grant(access.principal.permissions, set().union(*granted.values())):
        raise PrivilegeEscalationDenied("You cannot grant a role with permissions you lack")


def _discovered(document: dict[str, Any]) -> dict[str, Any]:
    return {key: document.get(key) for key in _DISCOVERED}


async def create_provider(
    runtime: Runtime, http: OidcHttp, access: OrgAccess, body: OidcProviderCreate
) -> SsoProvider:
    document = await http.discover(body.issuer)
    default_role_id = body.default_role_id or SYSTEM_ROLE_IDS["member"]
    async with access.transaction(runtime.db) as session:
        await _check_roles(session, access, [default_role_id, *body.group_role_map.values()])
        provider = SsoProvider(
            id=uuid7(),
            organization_id=access.org_id,
            provider_type=body.provider_type,
            name=body.name,
            enabled=body.enabled,
            config={
                "issuer": body.issuer,
                "client_id": body.client_id,
                "token_endpoint_auth_method": body.token_endpoint_auth_method,
                "scopes": body.scopes,
                "claim_mapping": body.claim_mapping.model_dump(),
                "use_userinfo": body.use_userinfo,
                **_discovered(document),
            },
            allowed_domains=body.allowed_domains,
            jit_enabled=body.jit_enabled,
            default_role_id=default_role_id,
            group_role_map={k: str(v) for k, v in body.group_role_map.items()},
            sso_required=body.sso_required,
        )
        seal_client_secret(runtime.cipher, provider, body.client_secret)
        session.add(provider)
        await session.flush()
        access.audit(
            session,
            AuditEventType.SSO_PROVIDER_CREATED,
            target_type="sso_provider",
            target_id=provider.id,
            details={"provider_type": provider.provider_type, "issuer": body.issuer},
        )
    return provider


async def list_providers(session: AsyncSession, org_id: OrgId) -> list[SsoProvider]:
    stmt = scoped(select(SsoProvider), SsoProvider, org_id).order_by(SsoProvider.id)
    return list((await session.scalars(stmt)).all())


async def get_provider(
    session: AsyncSession, org_id: OrgId, provider_id: uuid.UUID, *, lock: bool = False
) -> SsoProvider:
    stmt = scoped(select(SsoProvider), SsoProvider, org_id).where(SsoProvider.id == provider_id)
    provider: SsoProvider | None = await session.scalar(stmt.with_for_update() if lock else stmt)
    if provider is None:
        raise NotFound("SSO provider not found", code="SSO_PROVIDER_NOT_FOUND")
    return provider


async def update_provider(
    runtime: Runtime,
    http: OidcHttp,
    access: OrgAccess,
    provider_id: uuid.UUID,
    body: OidcProviderUpdate,
) -> SsoProvider:
    document = await http.discover(body.issuer) if body.issuer is not None else None
    changes = body.model_dump(exclude_unset=True, exclude={"client_secret"})
    async with access.transaction(runtime.db) as session:
        provider = await get_provider(session, access.org_id, provider_id, lock=True)
        roles = [r for r in [body.default_role_id] if r is not None]
        await _check_roles(session, access, [*roles, *(body.group_role_map or {}).values()])
        config = dict(provider.config)
        for key in ("issuer", "client_id", "token_endpoint_auth_method", "scopes", "use_userinfo"):
            if key in changes and changes[key] is not None:
                config[key] = changes[key]
        if body.claim_mapping is not None:
            config["claim_mapping"] = body.claim_mapping.model_dump()
        if document is not None:
            config.update(_discovered(document))
        provider.config = config
        for key in ("name", "enabled", "allowed_domains", "jit_enabled", "sso_required"):
            if changes.get(key) is not None:
                setattr(provider, key, changes[key])
        if body.default_role_id is not None:
            provider.default_role_id = body.default_role_id
        if body.group_role_map is not None:
            provider.group_role_map = {k: str(v) for k, v in body.group_role_map.items()}
        if body.client_secret is not None:
            seal_client_secret(runtime.cipher, provider, body.client_secret)
        access.audit(
            session,
            AuditEventType.SSO_PROVIDER_UPDATED,
            target_type="sso_provider",
            target_id=provider.id,
            # Which fields changed, never their values (the secret is one of them).
            details={"fields": sorted(body.model_dump(exclude_unset=True))},
        )
        await session.flush()
        await session.refresh(provider)
    return provider


async def delete_provider(runtime: Runtime, access: OrgAccess, provider_id: uuid.UUID) -> None:
    """The provider and its identity links; the users it provisioned stay (deactivate
    them separately if they should go too)."""
    async with access.transaction(runtime.db) as session:
        provider = await get_provider(session, access.org_id, provider_id, lock=True)
        await session.execute(delete(SsoIdentity).where(SsoIdentity.provider_id == provider.id))
        await session.delete(provider)
        access.audit(
            session,
            AuditEventType.SSO_PROVIDER_DELETED,
            target_type="sso_provider",
            target_id=provider.id,
        )

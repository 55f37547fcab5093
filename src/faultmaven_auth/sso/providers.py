"""SSO provider configuration of an organization: create, read, update, delete.

Discovery runs before the write transaction (it is network I/O): an issuer that does
not answer with a valid document, or SAML metadata that does not parse or lacks what
a login needs (``saml_metadata``), is refused and nothing is stored. The client secret
is sealed with the signing-key cipher (AES-GCM; the provider id is the associated
data, so a sealed secret cannot be moved to another provider row) and never leaves
this module except to the token endpoint. Roles a provider hands out must be roles the
configuring admin could grant, and never ``owner``: an IdP group must not be able to
mint owners.
"""

from __future__ import annotations

import asyncio
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
from faultmaven_auth.sso import saml
from faultmaven_auth.sso.errors import SsoConfigurationInvalid
from faultmaven_auth.sso.oidc_http import OidcHttp
from faultmaven_auth.sso.saml_metadata import MAX_METADATA_BYTES, IdpMetadata, parse_idp_metadata
from faultmaven_auth.sso.schemas import (
    AttributeMapping,
    ClaimMapping,
    OidcProviderCreate,
    OidcProviderUpdate,
    SamlProviderCreate,
    SamlProviderUpdate,
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
    shared: dict[str, Any] = {
        "id": provider.id,
        "organization_id": provider.organization_id,
        "provider_type": provider.provider_type,
        "name": provider.name,
        "enabled": provider.enabled,
        "client_secret_set": provider.secret is not None,
        "allowed_domains": provider.allowed_domains,
        "jit_enabled": provider.jit_enabled,
        "default_role_id": provider.default_role_id,
        "group_role_map": {k: uuid.UUID(v) for k, v in provider.group_role_map.items()},
        "sso_required": provider.sso_required,
        "sync_roles": provider.sync_roles,
        "login_url": f"{base}/api/v1/sso/{provider.id}/login",
        "created_at": provider.created_at,
        "updated_at": provider.updated_at,
    }
    if provider.provider_type == "saml":
        entity_id = saml.sp_entity_id(settings, provider.id)
        return SsoProviderOut(
            **shared,
            issuer=None,
            client_id=None,
            token_endpoint_auth_method=None,
            scopes=None,
            claim_mapping=None,
            use_userinfo=None,
            require_email_verified=None,
            callback_url=None,
            idp_entity_id=config["idp_entity_id"],
            idp_sso_url=config["idp_sso_url"],
            idp_metadata_url=config.get("idp_metadata_url"),
            sp_entity_id=entity_id,
            metadata_url=entity_id,
            acs_url=saml.acs_url(settings, provider.id),
            allow_idp_initiated=config["allow_idp_initiated"],
            attribute_mapping=AttributeMapping(**config["attribute_mapping"]),
        )
    return SsoProviderOut(
        **shared,
        issuer=config["issuer"],
        client_id=config["client_id"],
        token_endpoint_auth_method=config["token_endpoint_auth_method"],
        scopes=config["scopes"],
        claim_mapping=ClaimMapping(**config["claim_mapping"]),
        use_userinfo=config["use_userinfo"],
        require_email_verified=config.get("require_email_verified", True),
        callback_url=settings.sso_callback_url,
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


async def _saml_metadata(
    http: OidcHttp, *, xml: str | None, url: str | None, entity_id: str | None
) -> IdpMetadata:
    """The IdP's checked essentials from an uploaded document or one fetched now."""
    document: str | bytes
    if url is not None:
        document = await http.fetch_saml_metadata(url, MAX_METADATA_BYTES)
    else:
        document = xml or ""
    return await asyncio.to_thread(
        parse_idp_metadata, document, entity_id, url_allowed=http.check_url
    )


async def create_provider(
    runtime: Runtime,
    http: OidcHttp,
    access: OrgAccess,
    body: OidcProviderCreate | SamlProviderCreate,
) -> SsoProvider:
    config: dict[str, Any]
    if isinstance(body, SamlProviderCreate):
        idp = await _saml_metadata(
            http, xml=body.idp_metadata_xml, url=body.idp_metadata_url, entity_id=body.idp_entity_id
        )
        config = saml.provider_config(
            idp,
            metadata_url=body.idp_metadata_url,
            metadata_xml=body.idp_metadata_xml,
            attribute_mapping=body.attribute_mapping.model_dump(),
            allow_idp_initiated=body.allow_idp_initiated,
        )
        audited = {"provider_type": "saml", "idp_entity_id": idp.entity_id}
    else:
        document = await http.discover(body.issuer)
        config = {
            "issuer": body.issuer,
            "client_id": body.client_id,
            "token_endpoint_auth_method": body.token_endpoint_auth_method,
            "scopes": body.scopes,
            "claim_mapping": body.claim_mapping.model_dump(),
            "use_userinfo": body.use_userinfo,
            "require_email_verified": body.require_email_verified,
            **_discovered(document),
        }
        audited = {"provider_type": "oidc", "issuer": body.issuer}
    default_role_id = body.default_role_id or SYSTEM_ROLE_IDS["member"]
    async with access.transaction(runtime.db) as session:
        await _check_roles(session, access, [default_role_id, *body.group_role_map.values()])
        provider = SsoProvider(
            id=uuid7(),
            organization_id=access.org_id,
            provider_type=body.provider_type,
            name=body.name,
            enabled=body.enabled,
            config=config,
            allowed_domains=body.allowed_domains,
            jit_enabled=body.jit_enabled,
            default_role_id=default_role_id,
            group_role_map={k: str(v) for k, v in body.group_role_map.items()},
            sso_required=body.sso_required,
            sync_roles=body.sync_roles,
        )
        if isinstance(body, OidcProviderCreate):
            seal_client_secret(runtime.cipher, provider, body.client_secret)
        session.add(provider)
        await session.flush()
        access.audit(
            session,
            AuditEventType.SSO_PROVIDER_CREATED,
            target_type="sso_provider",
            target_id=provider.id,
            details=audited,
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


_OIDC_ONLY = frozenset(OidcProviderUpdate.model_fields) - frozenset(SamlProviderUpdate.model_fields)


def _oidc_config(
    config: dict[str, Any], body: OidcProviderUpdate, document: dict[str, Any] | None
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, exclude={"client_secret"})
    for key in (
        "issuer",
        "client_id",
        "token_endpoint_auth_method",
        "scopes",
        "use_userinfo",
        "require_email_verified",
    ):
        if key in changes and changes[key] is not None:
            config[key] = changes[key]
    if body.claim_mapping is not None:
        config["claim_mapping"] = body.claim_mapping.model_dump()
    if document is not None:
        config.update(_discovered(document))
    return config


async def _new_saml_metadata(
    http: OidcHttp, config: dict[str, Any], body: SamlProviderUpdate
) -> dict[str, Any] | None:
    """The config keys new metadata (or a new entity id) sets, checked; None when the
    update touches neither."""
    if not body.model_fields_set & {"idp_metadata_xml", "idp_metadata_url", "idp_entity_id"}:
        return None
    # New metadata replaces the old source; a new entity id alone re-reads it.
    xml, url = body.idp_metadata_xml, body.idp_metadata_url
    if xml is None and url is None:
        xml, url = config.get("idp_metadata_xml"), config.get("idp_metadata_url")
    idp = await _saml_metadata(http, xml=xml, url=url, entity_id=body.idp_entity_id)
    return saml.provider_config(
        idp,
        metadata_url=url,
        metadata_xml=xml,
        attribute_mapping=config["attribute_mapping"],
        allow_idp_initiated=config["allow_idp_initiated"],
    )


def _saml_config(
    config: dict[str, Any], body: SamlProviderUpdate, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    if metadata is not None:
        for key in ("idp_entity_id", "idp_sso_url", "idp_certificates"):
            config[key] = metadata[key]
        config["idp_metadata_url"] = metadata["idp_metadata_url"]
        config["idp_metadata_xml"] = metadata["idp_metadata_xml"]
    if body.attribute_mapping is not None:
        config["attribute_mapping"] = body.attribute_mapping.model_dump()
    if body.allow_idp_initiated is not None:
        config["allow_idp_initiated"] = body.allow_idp_initiated
    return config


async def update_provider(
    runtime: Runtime,
    http: OidcHttp,
    access: OrgAccess,
    provider_id: uuid.UUID,
    body: OidcProviderUpdate | SamlProviderUpdate,
) -> SsoProvider:
    async with runtime.db.session() as session:
        current = await get_provider(session, access.org_id, provider_id)
    sent = body.model_fields_set
    if body.provider_type not in (None, current.provider_type) or (
        current.provider_type == "saml" and sent & _OIDC_ONLY
    ):
        raise SsoConfigurationInvalid(
            f"Fields of another provider type; this provider is {current.provider_type}"
        )
    metadata = document = None
    if isinstance(body, SamlProviderUpdate):
        metadata = await _new_saml_metadata(http, current.config, body)
    elif body.issuer is not None:
        document = await http.discover(body.issuer)
    changes = body.model_dump(exclude_unset=True, exclude={"client_secret"})
    async with access.transaction(runtime.db) as session:
        provider = await get_provider(session, access.org_id, provider_id, lock=True)
        roles = [r for r in [body.default_role_id] if r is not None]
        await _check_roles(session, access, [*roles, *(body.group_role_map or {}).values()])
        if isinstance(body, SamlProviderUpdate):
            provider.config = _saml_config(dict(provider.config), body, metadata)
        elif provider.provider_type == "oidc":
            provider.config = _oidc_config(dict(provider.config), body, document)
        for key in (
            "name",
            "enabled",
            "allowed_domains",
            "jit_enabled",
            "sso_required",
            "sync_roles",
        ):
            if changes.get(key) is not None:
                setattr(provider, key, changes[key])
        if body.default_role_id is not None:
            provider.default_role_id = body.default_role_id
        if body.group_role_map is not None:
            provider.group_role_map = {k: str(v) for k, v in body.group_role_map.items()}
        if isinstance(body, OidcProviderUpdate) and body.client_secret is not None:
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

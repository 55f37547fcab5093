"""Admin routes of an organization's SSO set-up: providers, redirect URIs, domains.

``sso:read`` to look, ``sso:manage`` to change; another tenant's ids are 404 (the
``require`` dependency); every change is audited by the services.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request, status

from faultmaven_auth.api.openapi import error_responses
from faultmaven_auth.rbac.dependencies import OrgAccess, require
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.sso import domains, providers, redirect_uris
from faultmaven_auth.sso.oidc_http import OidcHttp
from faultmaven_auth.sso.schemas import (
    DomainClaim,
    DomainOut,
    RedirectUriCreate,
    RedirectUriOut,
    SsoProviderCreate,
    SsoProviderOut,
    SsoProviderUpdate,
)

router = APIRouter(prefix="/api/v1/organizations/{org_id}", tags=["sso"])
READ = Depends(require(Permission.SSO_READ))
MANAGE = Depends(require(Permission.SSO_MANAGE))


def get_oidc_http(request: Request) -> OidcHttp:
    http: OidcHttp = request.app.state.sso_http
    return http


@router.post(
    "/sso-providers",
    status_code=status.HTTP_201_CREATED,
    response_model=SsoProviderOut,
    responses=error_responses(409),
)
async def create_sso_provider(
    body: SsoProviderCreate,
    access: OrgAccess = MANAGE,
    runtime: Runtime = Depends(get_runtime),
    http: OidcHttp = Depends(get_oidc_http),
) -> SsoProviderOut:
    """Checked first: an OpenID issuer that does not answer properly, or SAML metadata
    that cannot be fetched, is a 400; SAML metadata lacking what a login needs, a 422."""
    provider = await providers.create_provider(runtime, http, access, body)
    return providers.provider_out(provider, runtime.settings)


@router.get("/sso-providers", response_model=list[SsoProviderOut])
async def list_sso_providers(
    access: OrgAccess = READ, runtime: Runtime = Depends(get_runtime)
) -> list[SsoProviderOut]:
    async with runtime.db.session() as session:
        rows = await providers.list_providers(session, access.org_id)
    return [providers.provider_out(p, runtime.settings) for p in rows]


@router.get("/sso-providers/{provider_id}", response_model=SsoProviderOut)
async def get_sso_provider(
    provider_id: uuid.UUID, access: OrgAccess = READ, runtime: Runtime = Depends(get_runtime)
) -> SsoProviderOut:
    async with runtime.db.session() as session:
        provider = await providers.get_provider(session, access.org_id, provider_id)
    return providers.provider_out(provider, runtime.settings)


@router.patch(
    "/sso-providers/{provider_id}", response_model=SsoProviderOut, responses=error_responses(409)
)
async def update_sso_provider(
    provider_id: uuid.UUID,
    body: SsoProviderUpdate,
    access: OrgAccess = MANAGE,
    runtime: Runtime = Depends(get_runtime),
    http: OidcHttp = Depends(get_oidc_http),
) -> SsoProviderOut:
    provider = await providers.update_provider(runtime, http, access, provider_id, body)
    return providers.provider_out(provider, runtime.settings)


@router.delete("/sso-providers/{provider_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_sso_provider(
    provider_id: uuid.UUID, access: OrgAccess = MANAGE, runtime: Runtime = Depends(get_runtime)
) -> None:
    await providers.delete_provider(runtime, access, provider_id)


@router.get("/sso-redirect-uris", response_model=list[RedirectUriOut])
async def list_sso_redirect_uris(
    access: OrgAccess = READ, runtime: Runtime = Depends(get_runtime)
) -> list[RedirectUriOut]:
    async with runtime.db.session() as session:
        rows = await redirect_uris.list_redirect_uris(session, access.org_id)
    return [RedirectUriOut.model_validate(r) for r in rows]


@router.post(
    "/sso-redirect-uris",
    status_code=status.HTTP_201_CREATED,
    response_model=RedirectUriOut,
    responses=error_responses(409),
)
async def add_sso_redirect_uri(
    body: RedirectUriCreate, access: OrgAccess = MANAGE, runtime: Runtime = Depends(get_runtime)
) -> RedirectUriOut:
    row = await redirect_uris.add_redirect_uri(runtime, access, body.uri)
    return RedirectUriOut.model_validate(row)


@router.delete("/sso-redirect-uris/{uri_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_sso_redirect_uri(
    uri_id: uuid.UUID, access: OrgAccess = MANAGE, runtime: Runtime = Depends(get_runtime)
) -> None:
    await redirect_uris.remove_redirect_uri(runtime, access, uri_id)


@router.get("/sso-domains", response_model=list[DomainOut])
async def list_sso_domains(
    access: OrgAccess = READ, runtime: Runtime = Depends(get_runtime)
) -> list[DomainOut]:
    async with runtime.db.session() as session:
        rows = await domains.list_domains(session, access.org_id)
    return [domains.domain_out(r) for r in rows]


@router.post(
    "/sso-domains",
    status_code=status.HTTP_201_CREATED,
    response_model=DomainOut,
    responses=error_responses(409),
)
async def claim_sso_domain(
    body: DomainClaim, access: OrgAccess = MANAGE, runtime: Runtime = Depends(get_runtime)
) -> DomainOut:
    """The answer names the TXT record to publish before calling verify."""
    return domains.domain_out(await domains.claim_domain(runtime, access, body.domain))


@router.post(
    "/sso-domains/{domain_id}/verify",
    response_model=DomainOut,
    responses=error_responses(409, 422),
)
async def verify_sso_domain(
    domain_id: uuid.UUID, access: OrgAccess = MANAGE, runtime: Runtime = Depends(get_runtime)
) -> DomainOut:
    return domains.domain_out(await domains.verify_domain(runtime, access, domain_id))


@router.delete("/sso-domains/{domain_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_sso_domain(
    domain_id: uuid.UUID, access: OrgAccess = MANAGE, runtime: Runtime = Depends(get_runtime)
) -> None:
    await domains.remove_domain(runtime, access, domain_id)

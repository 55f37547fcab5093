"""Public SSO routes: discovery, the redirect to the IdP, the OIDC callback, the SAML
ACS and SP metadata, the code exchange.

All are unauthenticated and most write to the store or the audit log, so they share
one per-address rate limit (``RATE_LIMIT_SSO``).
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from faultmaven_auth.api.openapi import error_responses
from faultmaven_auth.observability.tracing import traced
from faultmaven_auth.rbac.dependencies import request_meta
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.security.rate_limit import RateLimitScope, enforce_rate_limit
from faultmaven_auth.sso import oidc, saml
from faultmaven_auth.sso.config_endpoints import get_oidc_http
from faultmaven_auth.sso.domains import discover_provider
from faultmaven_auth.sso.login import provider_type_of
from faultmaven_auth.sso.oidc_http import OidcHttp
from faultmaven_auth.sso.schemas import DiscoverRequest, DiscoverResponse, SsoTokenRequest
from faultmaven_auth.tokens.schemas import TokenResponse


async def _rate_limited(request: Request, runtime: Runtime = Depends(get_runtime)) -> None:
    await enforce_rate_limit(runtime, RateLimitScope.SSO, request_meta(request))


router = APIRouter(
    prefix="/api/v1/sso",
    tags=["sso"],
    dependencies=[Depends(_rate_limited)],
    responses=error_responses(429),
)


@router.post("/discover", response_model=DiscoverResponse)
async def discover(
    body: DiscoverRequest, runtime: Runtime = Depends(get_runtime)
) -> DiscoverResponse:
    """Which provider handles this address's domain; says nothing about the address."""
    domain = body.email.rsplit("@", 1)[-1].strip().lower()
    async with runtime.db.session() as session:
        provider = await discover_provider(session, domain)
    if provider is None:
        return DiscoverResponse(sso=False)
    base = (runtime.settings.sso_public_base_url or runtime.settings.jwt_issuer).rstrip("/")
    return DiscoverResponse(
        sso=True,
        organization_id=provider.organization_id,
        provider_id=provider.id,
        provider_type=provider.provider_type,
        login_url=f"{base}/api/v1/sso/{provider.id}/login",
    )


@router.get(
    "/{provider_id}/login",
    status_code=302,
    response_class=RedirectResponse,
    responses=error_responses(400, 404),
)
async def start_sso_login(
    provider_id: uuid.UUID,
    request: Request,
    redirect_uri: str = Query(min_length=1, max_length=2000),
    state: str | None = Query(default=None, max_length=512),
    login_hint: str | None = Query(default=None, max_length=320),
    runtime: Runtime = Depends(get_runtime),
) -> RedirectResponse:
    """Send the browser to the provider. ``redirect_uri`` must be registered (exact
    match) by the provider's organization; ``state`` is returned to it untouched."""
    with traced(runtime.tracer, "sso_redirect") as span:
        span.set_attribute("sso.provider_id", str(provider_id))
        if await provider_type_of(runtime, provider_id) == "saml":
            location = await saml.start_login(
                runtime,
                provider_id,
                redirect_uri=redirect_uri,
                app_state=state,
                meta=request_meta(request),
            )
            return RedirectResponse(location, status_code=302)
        started = await oidc.start_login(
            runtime,
            provider_id,
            redirect_uri=redirect_uri,
            app_state=state,
            login_hint=login_hint,
            meta=request_meta(request),
        )
    response = RedirectResponse(started.authorization_url, status_code=302)
    response.set_cookie(
        started.cookie_name,
        started.cookie_value,
        max_age=runtime.settings.sso_state_ttl_seconds,
        path="/api/v1/sso/oidc/callback",
        secure=runtime.settings.sso_callback_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get(
    "/oidc/callback",
    status_code=302,
    response_class=RedirectResponse,
    responses=error_responses(400, 401, 403, 404),
)
async def oidc_callback(
    request: Request,
    code: str | None = Query(default=None, max_length=2048),
    state: str | None = Query(default=None, max_length=512),
    error: str | None = Query(default=None, max_length=256),
    runtime: Runtime = Depends(get_runtime),
    http: OidcHttp = Depends(get_oidc_http),
) -> RedirectResponse:
    """Where every OpenID provider sends the browser back (register this URL there)."""
    target = await oidc.finish_login(
        runtime,
        http,
        state=state,
        code=code,
        error=error,
        cookies=dict(request.cookies),
        meta=request_meta(request),
    )
    response = RedirectResponse(target, status_code=302)
    if state:
        response.delete_cookie(oidc.binding_cookie_name(state), path="/api/v1/sso/oidc/callback")
    return response


@router.get(
    "/{provider_id}/metadata",
    response_class=Response,
    responses={200: {"content": {saml.METADATA_MEDIA_TYPE: {}}}, **error_responses(404)},
)
async def saml_sp_metadata(
    provider_id: uuid.UUID, runtime: Runtime = Depends(get_runtime)
) -> Response:
    """Our SAML SP metadata for this provider (give this URL, or the file, to the IdP)."""
    document = await saml.sp_metadata(runtime, provider_id)
    return Response(document, media_type=saml.METADATA_MEDIA_TYPE)


@router.post(
    "/{provider_id}/acs",
    status_code=302,
    response_class=RedirectResponse,
    responses=error_responses(400, 401, 403, 404, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "SAMLResponse": {"type": "string"},
                            "RelayState": {"type": "string"},
                        },
                        "required": ["SAMLResponse"],
                    }
                }
            },
        }
    },
)
async def saml_acs(
    provider_id: uuid.UUID, request: Request, runtime: Runtime = Depends(get_runtime)
) -> RedirectResponse:
    """Where the IdP posts the SAML response (HTTP-POST binding); register this URL there."""
    body = await request.body()
    try:
        form = parse_qs(body.decode("latin-1"), max_num_fields=10)
    except ValueError:  # too many fields: refused below as a malformed response
        form = {}
    target = await saml.finish_login(
        runtime,
        provider_id,
        saml_response=next(iter(form.get("SAMLResponse", [])), None),
        relay_state=next(iter(form.get("RelayState", [])), None),
        meta=request_meta(request),
    )
    return RedirectResponse(target, status_code=302)


@router.post("/token", response_model=TokenResponse, responses=error_responses(400))
async def exchange_sso_code(
    body: SsoTokenRequest, request: Request, runtime: Runtime = Depends(get_runtime)
) -> TokenResponse:
    """The application trades the one-time code from its redirect URI for tokens."""
    pair = await oidc.redeem_login_code(runtime, body.code, request_meta(request))
    return TokenResponse(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )

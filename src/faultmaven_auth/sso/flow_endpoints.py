"""Public SSO routes: discovery, the OIDC redirect and callback, the code exchange.

All four are unauthenticated and each writes to the store or the audit log, so they
share one per-address rate limit (``RATE_LIMIT_SSO``).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse

from faultmaven_auth.api.openapi import error_responses
from faultmaven_auth.rbac.dependencies import request_meta
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.security.rate_limit import RateLimitScope, enforce_rate_limit
from faultmaven_auth.sso import oidc
from faultmaven_auth.sso.config_endpoints import get_oidc_http
from faultmaven_auth.sso.domains import discover_provider
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


@router.post("/token", response_model=TokenResponse, responses=error_responses(400))
async def exchange_sso_code(
    body: SsoTokenRequest, request: Request, runtime: Runtime = Depends(get_runtime)
) -> TokenResponse:
    """The application trades the one-time code from its redirect URI for tokens."""
    pair = await oidc.redeem_login_code(runtime, body.code, request_meta(request))
    return TokenResponse(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )

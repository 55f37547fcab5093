"""Session endpoints (login, refresh, logout, me, introspect) and the public key routes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Security, status

from faultmaven_auth.api import security
from faultmaven_auth.api.openapi import error_responses
from faultmaven_auth.errors import BadRequest
from faultmaven_auth.hostile_input import unsafe_text
from faultmaven_auth.rbac.dependencies import request_meta
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.security.rate_limit import RateLimitScope, enforce_rate_limit
from faultmaven_auth.tokens import introspection, rotation, service
from faultmaven_auth.tokens.authentication import (
    authenticate_request,
    bearer_token,
    verify_access_token,
)
from faultmaven_auth.tokens.schemas import (
    LoginRequest,
    MeResponse,
    RefreshRequest,
    TokenResponse,
)
from faultmaven_auth.tokens.service_client_auth import authenticate_service_client

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
well_known = APIRouter(tags=["discovery"])


def _tokens(pair: service.TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
    )


@router.post("/login", response_model=TokenResponse, responses=error_responses(401, 429))
async def login(
    body: LoginRequest, request: Request, runtime: Runtime = Depends(get_runtime)
) -> TokenResponse:
    pair = await service.login(
        runtime,
        body.email,
        body.password,
        request_meta(request),
        organization_id=body.organization_id,
    )
    return _tokens(pair)


@router.post("/refresh", response_model=TokenResponse, responses=error_responses(401, 429))
async def refresh(
    body: RefreshRequest, request: Request, runtime: Runtime = Depends(get_runtime)
) -> TokenResponse:
    meta = request_meta(request)
    await enforce_rate_limit(runtime, RateLimitScope.REFRESH, meta)
    pair = await rotation.refresh_session(runtime, body.refresh_token, meta)
    return _tokens(pair)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Security(security.access_token)],
)
async def logout(request: Request, runtime: Runtime = Depends(get_runtime)) -> None:
    # Only the token itself is checked: a user deactivated a second ago can still log out.
    claims = await verify_access_token(runtime, bearer_token(request))
    await service.logout(runtime, claims, request_meta(request))


@router.get("/me", response_model=MeResponse, dependencies=[Security(security.access_token)])
async def me(request: Request, runtime: Runtime = Depends(get_runtime)) -> MeResponse:
    # Everything comes with the principal (cached while nothing about it changes).
    principal = await authenticate_request(request, runtime)
    return MeResponse(
        id=principal.user.id,
        email=principal.user.email,
        full_name=principal.user.full_name,
        organization_id=principal.organization.id,
        team_ids=list(principal.identity.team_ids),
        roles=sorted(r.name for r in principal.roles),
        permissions=sorted(p.value for p in principal.permissions),
    )


async def _introspection_token(request: Request) -> str:
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    token: Any = None
    if content_type == "application/json":
        try:
            data = json.loads(body or b"null")
        # Deeply nested arrays exhaust the decoder's recursion: still just bad JSON.
        except (ValueError, RecursionError) as exc:
            raise BadRequest("The request body is not valid JSON", code="INVALID_JSON") from exc
        token = data.get("token") if isinstance(data, dict) else None
    elif content_type == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8", "replace")).get("token", [])
        token = values[0] if values else None
    if not isinstance(token, str) or not token or len(token) > 8192:
        raise BadRequest("A 'token' parameter is required", code="INVALID_REQUEST")
    if unsafe_text(token) is not None:
        # No token has control characters; a lone surrogate would crash hashing it.
        raise BadRequest("The 'token' parameter is not valid", code="INVALID_REQUEST")
    return token


# The body is read by hand (form or JSON), so FastAPI cannot document it by itself.
_INTROSPECTION_BODY = {
    "required": True,
    "content": {
        media_type: {
            "schema": {
                "type": "object",
                "required": ["token"],
                "properties": {"token": {"type": "string", "minLength": 1, "maxLength": 8192}},
            }
        }
        for media_type in ("application/x-www-form-urlencoded", "application/json")
    },
}


@router.post(
    "/introspect",
    dependencies=[Security(security.service_client)],
    openapi_extra={"requestBody": _INTROSPECTION_BODY},
    responses=error_responses(429),
)
async def introspect(request: Request, runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """RFC 7662 token introspection for service clients (HTTP Basic)."""
    await enforce_rate_limit(runtime, RateLimitScope.INTROSPECT, request_meta(request))
    client = await authenticate_service_client(runtime, request.headers.get("authorization"))
    token = await _introspection_token(request)
    return await introspection.introspect(runtime, client, token)


@well_known.get("/.well-known/jwks.json")
async def jwks(runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    return runtime.keys.jwks()


@well_known.get("/.well-known/openid-configuration")
async def openid_configuration(runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """Issuer metadata: only what this service really offers.

    There is no OAuth token or authorization endpoint (login takes JSON email and
    password), so no ``token_endpoint``, grant types or response types are advertised.
    ``id_token_signing_alg_values_supported`` is kept because discovery clients require
    it and JWT libraries read it to choose the algorithm; it names the access tokens'
    algorithm (no ID tokens are issued).
    """
    issuer = runtime.settings.jwt_issuer.rstrip("/")
    return {
        "issuer": runtime.settings.jwt_issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "introspection_endpoint": f"{issuer}/api/v1/auth/introspect",
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "id_token_signing_alg_values_supported": [runtime.settings.jwt_algorithm.value],
    }

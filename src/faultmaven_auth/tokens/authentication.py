"""Bearer token -> principal: the authentication half of every protected request.

The hot path does one key-value round trip and no database work: the token's signature
is checked once per worker (``VerifiedTokenCache``); its revocation (``jti`` and session
family) and the generations of the principal cache are read in one ``get_many``; the
identity comes from the principal cache while those generations stand. A miss loads the
identity from the database (columns, not ORM entities) and keeps it. A role change, a
deactivation or a permission edit replaces a generation at commit (``principal_writes``),
so it takes effect on the very next request, in every worker and replica.

Authorization (may this principal do X here) stays in ``rbac.dependencies``.
"""

from __future__ import annotations

from fastapi import Depends, Request, Security

from faultmaven_auth.api import security
from faultmaven_auth.errors import InvalidToken, Unauthorized
from faultmaven_auth.observability.context import bind_context
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.tokens.access import AccessClaims, ExpiredToken
from faultmaven_auth.tokens.principal import Identity, Principal, load_identity
from faultmaven_auth.tokens.principal_cache import (
    Generations,
    complete_generations,
    generation_keys,
)
from faultmaven_auth.tokens.revocation import revocation_keys


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A bearer access token is required", code="NOT_AUTHENTICATED")
    return token.strip()


def verify_signature(runtime: Runtime, token: str) -> AccessClaims:
    """Signature and claims (counted when they fail); no store or database access."""
    try:
        return runtime.verified_tokens.verify(token)
    except ExpiredToken:
        runtime.metrics.token_validated("expired")
        raise
    except InvalidToken:
        runtime.metrics.token_validated("failure")
        raise


async def verify_access_token(runtime: Runtime, token: str) -> AccessClaims:
    """Signature, claims and revocation; no database access."""
    claims = verify_signature(runtime, token)
    _check_not_revoked(runtime, await runtime.kv.get_many(revocation_keys(claims)))
    runtime.metrics.token_validated("success")
    return claims


def _check_not_revoked(runtime: Runtime, revoked: list[str | None]) -> None:
    if any(value is not None for value in revoked):
        runtime.metrics.token_validated("failure")
        raise InvalidToken


async def resolve_principal(runtime: Runtime, claims: AccessClaims) -> Principal:
    """The verified token's principal, or ``InvalidToken`` (revoked, inactive, gone).

    One store round trip reads the revocation keys and the cache's generations.
    """
    org_id = claims.organization_id
    keys = revocation_keys(claims)
    values = await runtime.kv.get_many([*keys, *generation_keys(org_id)])
    _check_not_revoked(runtime, values[: len(keys)])
    generations = Generations(*values[len(keys) :])
    identity = runtime.principals.get((claims.user_id, org_id), generations)
    if identity is None:
        try:
            identity = await _load(runtime, claims, generations)
        except InvalidToken:
            runtime.metrics.token_validated("failure")
            raise
    runtime.metrics.token_validated("success")
    return Principal(identity, claims)


async def _load(runtime: Runtime, claims: AccessClaims, seen: Generations) -> Identity:
    # The generations are settled before the load, so an entry can only be stale if a
    # write committed after the load, and that write replaces a generation it holds.
    generations = seen
    if not seen.complete:
        keys = generation_keys(claims.organization_id)
        generations = await complete_generations(runtime.kv, keys, seen)
    async with runtime.db.session() as session:
        identity = await load_identity(session, claims)
    runtime.principals.put((claims.user_id, claims.organization_id), identity, generations)
    return identity


async def authenticate_request(request: Request, runtime: Runtime) -> Principal:
    """The request's principal, resolved once per request."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    claims = verify_signature(runtime, bearer_token(request))
    principal = await resolve_principal(runtime, claims)
    request.state.principal = principal
    user_id, org_id = str(principal.user.id), str(principal.organization.id)
    bind_context(user_id=user_id, organization_id=org_id)
    await runtime.activity.record_seen(org_id, user_id)
    return principal


async def current_principal(
    request: Request,
    runtime: Runtime = Depends(get_runtime),
    _scheme: None = Security(security.access_token),
) -> Principal:
    return await authenticate_request(request, runtime)

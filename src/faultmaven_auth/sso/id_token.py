"""ID token verification: every check a relying party owes (OIDC Core 3.1.3.7).

The algorithm comes from an allow-list of asymmetric ones before anything else is
read: ``none`` and the HMAC family are refused outright, so a token "signed" with the
provider's public key as an HMAC secret never reaches a verifier. Then the signature
through the provider's JWKS, ``iss``, ``aud`` (and ``azp`` when there are several
audiences or it is present), ``exp`` and ``iat`` with bounded clock skew, and the
``nonce`` of this login, compared in constant time. Each failure has its own reason.
"""

from __future__ import annotations

import hmac
from typing import Any

import jwt

from faultmaven_auth.hostile_input import unsafe_text
from faultmaven_auth.sso.errors import SsoLoginRefused
from faultmaven_auth.sso.oidc_http import OidcHttp

ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

# PyJWT's exceptions, most specific first, to our reasons.
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.InvalidAudienceError, "audience_mismatch"),
    (jwt.InvalidIssuerError, "issuer_mismatch"),
    (jwt.ImmatureSignatureError, "issued_in_future"),
    (jwt.InvalidIssuedAtError, "issued_in_future"),
    (jwt.InvalidSignatureError, "invalid_signature"),
)


async def verify_id_token(
    http: OidcHttp,
    token: str,
    *,
    issuer: str,
    client_id: str,
    jwks_uri: str,
    nonce: str,
    leeway_seconds: int,
) -> dict[str, Any]:
    """The token's claims once every check passed; ``SsoLoginRefused(reason)`` otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise SsoLoginRefused("invalid_id_token") from exc
    algorithm = header.get("alg")
    if algorithm not in ALLOWED_ALGORITHMS:
        raise SsoLoginRefused("alg_not_allowed")
    kid = header.get("kid")
    key = await http.signing_key(jwks_uri, kid if isinstance(kid, str) else None, algorithm)
    if key is None:
        raise SsoLoginRefused("invalid_signature")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=[algorithm],
            audience=client_id,
            issuer=issuer,
            leeway=leeway_seconds,
            options={"require": ["iss", "aud", "sub", "exp", "iat"]},
        )
    except jwt.PyJWTError as exc:
        reason = next((r for kind, r in _REASONS if isinstance(exc, kind)), "invalid_id_token")
        raise SsoLoginRefused(reason) from exc
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise SsoLoginRefused("azp_mismatch")
    token_nonce = claims.get("nonce")
    if not isinstance(token_nonce, str) or not hmac.compare_digest(
        token_nonce.encode(), nonce.encode()
    ):
        raise SsoLoginRefused("nonce_mismatch")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject or len(subject) > 255 or unsafe_text(subject):
        raise SsoLoginRefused("invalid_id_token")
    return claims

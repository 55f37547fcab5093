"""Access tokens: short-lived JWTs signed with the current asymmetric key.

Verification trusts nothing in the token before the signature checks out: the ``kid``
picks a key we published, the algorithm comes from that key (never from the header, so
``alg: none`` and HS256-with-the-public-key are refused), and ``iss``, ``aud``, ``exp``,
``iat``, ``sub``, ``jti`` and ``type=access`` are all required.

The tokens follow RFC 9068 (JWT profile for OAuth 2.0 access tokens): header
``typ: at+jwt``, which verification insists on, so no other JWT signed by these keys
(an ID token, a logout token) can pass for an access token. ``client_id`` is the fixed
``FIRST_PARTY_CLIENT_ID``: tokens come from this service's own login, not from an
OAuth client registration.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from faultmaven_auth.errors import InvalidToken, ServiceUnavailable
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.tokens.keys import KeyRing

ACCESS_TOKEN_TYPE = "access"
JWT_TYPE = "at+jwt"  # RFC 9068 section 2.1
_ACCEPTED_TYPES = {JWT_TYPE, "application/at+jwt"}  # compared case-insensitively
FIRST_PARTY_CLIENT_ID = "faultmaven-auth"
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti", "org_id", "sid", "type"]


def _canonical_segments(token: str) -> bool:
    """Each segment is canonical unpadded base64url: one token, one spelling.

    Lenient decoders ignore the spare low bits of the last character, so without this a
    changed final character could still verify (PyJWT before 2.15.1 accepted such
    tokens). The check is a cheap re-encode of the signature segment.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return False
    signature = parts[2]
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (ValueError, binascii.Error):
        return False
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == signature


class ExpiredToken(InvalidToken):
    """Distinguished from other failures so metrics can count expiry separately."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    session_id: uuid.UUID
    jti: str
    issued_at: datetime
    expires_at: datetime
    issuer: str
    audience: str


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    claims: AccessClaims


class AccessTokenCodec:
    def __init__(self, keys: KeyRing, *, issuer: str, audience: str, ttl: timedelta) -> None:
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl

    def issue(
        self,
        *,
        user_id: uuid.UUID,
        organization_id: uuid.UUID,
        session_id: uuid.UUID,
        not_after: datetime | None = None,
    ) -> IssuedAccessToken:
        """A signed token; it expires after the TTL, or at ``not_after`` if that is sooner."""
        key = self._keys.current()
        now = utcnow().replace(microsecond=0)
        expires_at = now + self.ttl
        if not_after is not None:
            expires_at = min(expires_at, not_after.replace(microsecond=0))
        claims = AccessClaims(
            user_id=user_id,
            organization_id=organization_id,
            session_id=session_id,
            jti=str(uuid.uuid4()),
            issued_at=now,
            expires_at=expires_at,
            issuer=self.issuer,
            audience=self.audience,
        )
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "org_id": str(organization_id),
            "sid": str(session_id),
            "iat": int(now.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
            "jti": claims.jti,
            "client_id": FIRST_PARTY_CLIENT_ID,
            "type": ACCESS_TOKEN_TYPE,
        }
        token = jwt.encode(
            payload,
            key.private_key,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": JWT_TYPE},
        )
        return IssuedAccessToken(token=token, claims=claims)

    def require_signing_key(self) -> None:
        """Raise what ``issue`` would (``NO_SIGNING_KEY``) when no key can sign now.

        For callers that commit before they sign: a refresh that consumed its token and
        then failed to sign would leave the client with a spent token.
        """
        self._keys.current()

    def verify(self, token: str) -> AccessClaims:
        """The token's claims, or ``InvalidToken`` (``ExpiredToken`` when only expired)."""
        if not self._keys.loaded:
            # Nothing to verify with (the database was down at start): not the token's fault.
            raise ServiceUnavailable("No signing key is available", code="NO_SIGNING_KEY")
        if not _canonical_segments(token):
            raise InvalidToken
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken from exc
        kid = header.get("kid")
        key = self._keys.verifying_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken
        try:
            payload = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise ExpiredToken from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken from exc
        # Checked after the signature and expiry, so an expired token still counts as expired.
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
            raise InvalidToken
        if payload.get("type") != ACCESS_TOKEN_TYPE:
            raise InvalidToken
        try:
            return AccessClaims(
                user_id=uuid.UUID(str(payload["sub"])),
                organization_id=uuid.UUID(str(payload["org_id"])),
                session_id=uuid.UUID(str(payload["sid"])),
                jti=str(payload["jti"]),
                issued_at=datetime.fromtimestamp(int(payload["iat"]), utcnow().tzinfo),
                expires_at=datetime.fromtimestamp(int(payload["exp"]), utcnow().tzinfo),
                issuer=str(payload["iss"]),
                audience=self.audience,
            )
        except (ValueError, TypeError) as exc:
            raise InvalidToken from exc

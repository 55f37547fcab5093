"""Forged and misused access tokens are refused with 401 INVALID_TOKEN.

Each case changes exactly one thing about an otherwise valid token signed with the
service's real key; the control case (nothing changed) must be accepted, so every
refusal below is caused by the defect the case names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from faultmaven_auth.runtime import Runtime
from tests.conftest import Account, sign_up
from tests.tokens.conftest import access_claims, bearer, sign_with_current_key


@dataclass(frozen=True)
class Scene:
    """What a forger works with: the service's runtime, their own account, a victim's."""

    runtime: Runtime
    attacker: Account
    victim: Account


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unsigned_alg_none(scene: Scene) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": scene.runtime.keys.current().kid}
    return f"{b64url_json(header)}.{b64url_json(access_claims(scene.runtime, scene.attacker))}."


def hs256_with_public_key(scene: Scene) -> str:
    # The classic key-confusion attack: HMAC keyed with the published public key.
    key = scene.runtime.keys.current()
    pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = (
        f"{b64url_json(header)}.{b64url_json(access_claims(scene.runtime, scene.attacker))}"
    )
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def expired(scene: Scene) -> str:
    now = int(time.time())
    claims = access_claims(scene.runtime, scene.attacker, iat=now - 1000, exp=now - 60)
    return sign_with_current_key(scene.runtime, claims)


def wrong_audience(scene: Scene) -> str:
    claims = access_claims(scene.runtime, scene.attacker, aud="some-other-service")
    return sign_with_current_key(scene.runtime, claims)


def wrong_issuer(scene: Scene) -> str:
    claims = access_claims(scene.runtime, scene.attacker, iss="https://evil.example.com")
    return sign_with_current_key(scene.runtime, claims)


def unknown_kid_own_key(scene: Scene) -> str:
    # An attacker's own key under a kid the service never published.
    own = ec.generate_private_key(ec.SECP256R1())
    claims = access_claims(scene.runtime, scene.attacker)
    return jwt.encode(claims, own, algorithm="ES256", headers={"kid": "attacker-key-1"})


def real_key_unknown_kid(scene: Scene) -> str:
    claims = access_claims(scene.runtime, scene.attacker)
    return sign_with_current_key(scene.runtime, claims, kid="no-such-kid")


def own_key_real_kid(scene: Scene) -> str:
    own = ec.generate_private_key(ec.SECP256R1())
    claims = access_claims(scene.runtime, scene.attacker)
    kid = scene.runtime.keys.current().kid
    return jwt.encode(claims, own, algorithm="ES256", headers={"kid": kid})


def tampered_payload(scene: Scene) -> str:
    # A genuine token of the attacker, its payload rewritten to name the victim.
    header, _, signature = scene.attacker.access_token.split(".")
    payload = jwt.decode(scene.attacker.access_token, options={"verify_signature": False})
    payload.update(sub=scene.victim.user_id, org_id=scene.victim.org_id)
    return f"{header}.{b64url_json(payload)}.{signature}"


def refresh_token_as_access(scene: Scene) -> str:
    return scene.attacker.refresh_token


def type_refresh(scene: Scene) -> str:
    claims = access_claims(scene.runtime, scene.attacker, type="refresh")
    return sign_with_current_key(scene.runtime, claims)


def type_missing(scene: Scene) -> str:
    claims = access_claims(scene.runtime, scene.attacker, type=None)
    return sign_with_current_key(scene.runtime, claims)


def jti_missing(scene: Scene) -> str:
    claims = access_claims(scene.runtime, scene.attacker, jti=None)
    return sign_with_current_key(scene.runtime, claims)


def typ_jwt(scene: Scene) -> str:
    # Another kind of JWT signed with the same key (an ID token, say) is not an access token.
    claims = access_claims(scene.runtime, scene.attacker)
    return sign_with_current_key(scene.runtime, claims, typ="JWT")


def typ_missing(scene: Scene) -> str:
    claims = access_claims(scene.runtime, scene.attacker)
    return sign_with_current_key(scene.runtime, claims, typ=None)


def signature_stripped(scene: Scene) -> str:
    header, payload, _ = scene.attacker.access_token.split(".")
    return f"{header}.{payload}."


FORGERIES: dict[str, Callable[[Scene], str]] = {
    "alg none": unsigned_alg_none,
    "HS256 keyed with the public key": hs256_with_public_key,
    "expired": expired,
    "wrong aud": wrong_audience,
    "wrong iss": wrong_issuer,
    "unknown kid, attacker's key": unknown_kid_own_key,
    "unknown kid, real key": real_key_unknown_kid,
    "real kid, attacker's key": own_key_real_kid,
    "payload tampered to another user and org": tampered_payload,
    "refresh token as access token": refresh_token_as_access,
    "type refresh": type_refresh,
    "type missing": type_missing,
    "jti missing": jti_missing,
    "typ JWT instead of at+jwt": typ_jwt,
    "typ missing": typ_missing,
    "signature stripped": signature_stripped,
}


@pytest.fixture
async def scene(client: httpx.AsyncClient, runtime: Runtime) -> Scene:
    return Scene(
        runtime=runtime,
        attacker=await sign_up(client, org_name="Forgers"),
        victim=await sign_up(client, org_name="Victims"),
    )


async def test_control_token_signed_with_the_real_key_is_accepted(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    """A token built like the forgeries but with nothing wrong authenticates its subject."""
    token = sign_with_current_key(scene.runtime, access_claims(scene.runtime, scene.attacker))
    response = await client.get("/api/v1/auth/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == scene.attacker.user_id


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
async def test_forged_or_misused_token_is_refused(
    client: httpx.AsyncClient, scene: Scene, forge: Callable[[Scene], str]
) -> None:
    """Each forged or misused bearer token gets 401 INVALID_TOKEN on /auth/me."""
    response = await client.get("/api/v1/auth/me", headers=bearer(forge(scene)))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "INVALID_TOKEN"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_tampered_token_does_not_reach_the_victims_organization(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    """A payload rewritten to the victim's org is refused on the victim's org routes too."""
    token = tampered_payload(scene)
    response = await client.get(f"{scene.victim.org_url}/users", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_TOKEN"


async def test_access_token_is_not_accepted_as_refresh_token(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    """POST /auth/refresh with an access token in refresh_token gets 401 INVALID_TOKEN."""
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": scene.attacker.access_token}
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "INVALID_TOKEN"
    # The session it belongs to is untouched: its real refresh token still works.
    ok = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": scene.attacker.refresh_token}
    )
    assert ok.status_code == 200

"""Forged and tampered ID tokens at the real callback, each refused with its reason
logged, counted and audited, and no user created. The token endpoint is a
hand-made provider (``fake_idp``) that returns whatever token the test crafted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from tests.sso.conftest import (
    APP_REDIRECT,
    SsoTenant,
    audit_events,
    refusal_logged,
    sso_failures,
    sso_tenant,
)
from tests.sso.dns_server import TxtZone
from tests.sso.fake_idp import CLIENT_ID, FakeIdp

pytestmark = pytest.mark.backends


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hs256_with_public_key(idp: FakeIdp, claims: dict[str, Any]) -> str:
    """The classic key-confusion forgery: HMAC keyed with the provider's public key."""
    public_pem = idp.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "kid": idp.kid, "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def _other_key(idp: FakeIdp, claims: dict[str, Any], kid: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


Forge = Callable[[FakeIdp, str, str], str]

ATTACKS: dict[str, tuple[Forge, str]] = {
    "wrong nonce": (lambda i, n, e: i.sign(i.claims("another-login", e)), "nonce_mismatch"),
    "no nonce": (
        lambda i, n, e: i.sign({k: v for k, v in i.claims(n, e).items() if k != "nonce"}),
        "nonce_mismatch",
    ),
    "other audience": (
        lambda i, n, e: i.sign(i.claims(n, e, aud="another-client")),
        "audience_mismatch",
    ),
    "other issuer": (
        lambda i, n, e: i.sign(i.claims(n, e, iss="https://evil.example")),
        "issuer_mismatch",
    ),
    "two audiences without azp": (
        lambda i, n, e: i.sign(i.claims(n, e, aud=[CLIENT_ID, "another-client"])),
        "azp_mismatch",
    ),
    "azp of another client": (
        lambda i, n, e: i.sign(i.claims(n, e, azp="another-client")),
        "azp_mismatch",
    ),
    "alg none": (lambda i, n, e: _unsigned(i.claims(n, e)), "alg_not_allowed"),
    "HS256 keyed with the public key": (
        lambda i, n, e: _hs256_with_public_key(i, i.claims(n, e)),
        "alg_not_allowed",
    ),
    "signed by another key, same kid": (
        lambda i, n, e: _other_key(i, i.claims(n, e), i.kid),
        "invalid_signature",
    ),
    "unknown kid": (
        lambda i, n, e: _other_key(i, i.claims(n, e), "rotated-away"),
        "invalid_signature",
    ),
    "expired": (
        lambda i, n, e: i.sign(
            i.claims(n, e, iat=int(time.time()) - 900, exp=int(time.time()) - 600)
        ),
        "expired",
    ),
    "issued in the future": (
        lambda i, n, e: i.sign(
            i.claims(n, e, iat=int(time.time()) + 3600, exp=int(time.time()) + 7200)
        ),
        "issued_in_future",
    ),
    "not a JWT": (lambda i, n, e: "not-a-jwt", "invalid_id_token"),
    "NUL in the subject": (
        lambda i, n, e: i.sign(i.claims(n, e, sub="a\u0000b")),
        "invalid_id_token",
    ),
}


async def _forged_tenant(
    client: httpx.AsyncClient, dns: tuple[TxtZone, str], idp: FakeIdp
) -> SsoTenant:
    return await sso_tenant(client, dns[0], idp.issuer, client_id=CLIENT_ID)


async def _start(client: httpx.AsyncClient, tenant: SsoTenant) -> httpx.URL:
    started = await client.get(tenant.login_url())
    assert started.status_code == 302, started.text
    return httpx.URL(started.headers["location"])


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_forged_id_token_is_refused(
    attack: str,
    client: httpx.AsyncClient,
    sso_app: FastAPI,
    fake_idp: FakeIdp,
    dns: tuple[TxtZone, str],
) -> None:
    forge, reason = ATTACKS[attack]
    tenant = await _forged_tenant(client, dns, fake_idp)
    authorize = await _start(client, tenant)
    fake_idp.id_token = forge(fake_idp, authorize.params["nonce"], tenant.email())
    failures = await sso_failures(client)
    request_id = f"attack-{uuid.uuid4().hex}"
    response = await client.get(
        "/api/v1/sso/oidc/callback",
        params={"state": authorize.params["state"], "code": "c0de"},
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "SSO_ID_TOKEN_INVALID"
    assert await sso_failures(client) == failures + 1
    assert refusal_logged(request_id, reason)
    events = await audit_events(sso_app, request_id)
    assert [(e.event_type, e.details["reason"], str(e.organization_id)) for e in events] == [
        ("auth.sso.failed", reason, tenant.owner.org_id)
    ]
    users = await client.get(f"{tenant.owner.org_url}/users", headers=tenant.owner.headers)
    assert len(users.json()["items"]) == 1  # the owner only


async def test_a_correct_token_from_the_same_provider_signs_in_with_pkce(
    client: httpx.AsyncClient, fake_idp: FakeIdp, dns: tuple[TxtZone, str]
) -> None:
    """The control for the attacks above: the same set-up with an honest token works,
    and the code exchange carried the PKCE verifier of the S256 challenge we sent."""
    tenant = await _forged_tenant(client, dns, fake_idp)
    authorize = await _start(client, tenant)
    assert authorize.params["code_challenge_method"] == "S256"
    fake_idp.id_token = fake_idp.sign(fake_idp.claims(authorize.params["nonce"], tenant.email()))
    fake_idp.token_requests.clear()
    response = await client.get(
        "/api/v1/sso/oidc/callback", params={"state": authorize.params["state"], "code": "c0de"}
    )
    assert response.status_code == 302, response.text
    assert response.headers["location"].startswith(APP_REDIRECT + "?code=")
    (form,) = fake_idp.token_requests
    verifier = form["code_verifier"][0]
    challenge = _b64(hashlib.sha256(verifier.encode()).digest())
    assert challenge == authorize.params["code_challenge"]
    assert form["redirect_uri"] == ["http://testserver/api/v1/sso/oidc/callback"]


async def test_jwks_is_cached_and_fetched_again_for_a_rotated_key(
    client: httpx.AsyncClient, fake_idp: FakeIdp, dns: tuple[TxtZone, str]
) -> None:
    """A known kid is served from the cache; a new kid (the IdP rotated) refetches."""
    tenant = await _forged_tenant(client, dns, fake_idp)

    async def log_in() -> int:
        authorize = await _start(client, tenant)
        claims = fake_idp.claims(authorize.params["nonce"], tenant.email())
        fake_idp.id_token = fake_idp.sign(claims)
        response = await client.get(
            "/api/v1/sso/oidc/callback",
            params={"state": authorize.params["state"], "code": "c0de"},
        )
        return response.status_code

    assert await log_in() == 302
    fetched = fake_idp.jwks_fetches
    assert await log_in() == 302
    assert fake_idp.jwks_fetches == fetched
    previous = (fake_idp.key, fake_idp.kid)
    fake_idp.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake_idp.kid = "k2"
    try:
        assert await log_in() == 302
        assert fake_idp.jwks_fetches == fetched + 1
    finally:
        fake_idp.key, fake_idp.kid = previous


@pytest.mark.parametrize(
    ("require", "claim", "signs_in"),
    [
        (True, None, False),  # absent: refused by default
        (True, False, False),
        (True, True, True),
        (False, None, True),  # Entra ID: never sent, provider configured not to require it
        (False, False, False),  # an explicit "not verified" is refused either way
        (False, "false", False),
        (False, True, True),
    ],
)
async def test_email_verified_policy(
    require: bool,
    claim: bool | str | None,
    signs_in: bool,
    client: httpx.AsyncClient,
    sso_app: FastAPI,
    fake_idp: FakeIdp,
    dns: tuple[TxtZone, str],
) -> None:
    """``require_email_verified`` (default true) decides whether an ID token without the
    claim may sign in; an address the provider says is unverified never does."""
    tenant = await sso_tenant(
        client, dns[0], fake_idp.issuer, client_id=CLIENT_ID, require_email_verified=require
    )
    assert tenant.provider["require_email_verified"] is require
    authorize = await _start(client, tenant)
    claims = fake_idp.claims(authorize.params["nonce"], tenant.email())
    claims.pop("email_verified", None)
    if claim is not None:
        claims["email_verified"] = claim
    fake_idp.id_token = fake_idp.sign(claims)
    failures = await sso_failures(client)
    response = await client.get(
        "/api/v1/sso/oidc/callback", params={"state": authorize.params["state"], "code": "c0de"}
    )
    users = await client.get(f"{tenant.owner.org_url}/users", headers=tenant.owner.headers)
    if signs_in:
        assert response.status_code == 302, response.text
        assert len(users.json()["items"]) == 2
        return
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "SSO_EMAIL_NOT_ALLOWED"
    assert await sso_failures(client) == failures + 1
    events = await audit_events(sso_app, response.headers["x-request-id"])
    assert [e.details["reason"] for e in events] == ["email_not_verified"]
    assert len(users.json()["items"]) == 1


async def test_require_email_verified_can_be_changed(
    client: httpx.AsyncClient, fake_idp: FakeIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await sso_tenant(client, dns[0], fake_idp.issuer, client_id=CLIENT_ID)
    assert tenant.provider["require_email_verified"] is True
    url = f"{tenant.owner.org_url}/sso-providers/{tenant.provider_id}"
    changed = await client.patch(
        url, headers=tenant.owner.headers, json={"require_email_verified": False}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["require_email_verified"] is False
    again = await client.get(url, headers=tenant.owner.headers)
    assert again.json()["require_email_verified"] is False

"""Public keys and issuer metadata, as a relying party sees them, and key rotation.

A relying party fetches the JWKS and verifies access tokens with nothing but a JWT
library; rotation must never break that: new tokens carry the new kid, tokens signed
before stay valid while their key is published, and a retired key leaves the JWKS and
stops verifying.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import jwt
from sqlalchemy import update

from faultmaven_auth.config import Settings, SigningAlgorithm
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import SigningKey
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.tokens.keys import new_signing_key, rotate_signing_key
from tests.conftest import PASSWORD, client_for, login, running_app, sign_up
from tests.tokens.conftest import access_claims, bearer, run_cli

PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


async def fetch_jwks(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return {key["kid"]: key for key in response.json()["keys"]}


def verify_as_relying_party(token: str, jwks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What an integrating service does: pick the JWK by kid, verify with PyJWT alone."""
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = jwks[kid]
    claims: dict[str, Any] = jwt.decode(
        token,
        key=jwt.PyJWK(jwk),
        algorithms=[jwk["alg"]],
        audience="faultmaven",
        issuer="http://testserver",
    )
    return claims


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


async def refresh_keys(runtime: Runtime) -> None:
    """What the app's periodic refresher does, without waiting for it."""
    async with runtime.db.session() as session:
        await runtime.keys.refresh(session)


async def test_jwks_publishes_public_ec_keys_only(client: httpx.AsyncClient) -> None:
    """Every published key is a P-256 ES256 signing key with a kid and no private part."""
    keys = await fetch_jwks(client)
    assert keys
    for kid, key in keys.items():
        assert kid
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
        assert key["x"]
        assert key["y"]
        assert not PRIVATE_JWK_MEMBERS & key.keys(), key


async def test_openid_configuration_names_the_issuer_and_a_working_jwks_uri(
    client: httpx.AsyncClient,
) -> None:
    """Discovery gives the configured issuer, and its jwks_uri serves the JWKS."""
    response = await client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    meta = response.json()
    assert meta["issuer"] == "http://testserver"
    assert meta["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert meta["id_token_signing_alg_values_supported"] == ["ES256"]
    assert meta["introspection_endpoint"] == "http://testserver/api/v1/auth/introspect"
    served = await client.get(meta["jwks_uri"])
    assert served.status_code == 200
    assert served.json()["keys"]


async def test_login_token_verifies_against_the_published_jwks(client: httpx.AsyncClient) -> None:
    """A relying party verifies a login's access token with PyJWT and the JWKS alone."""
    account = await sign_up(client)
    claims = verify_as_relying_party(account.access_token, await fetch_jwks(client))
    assert claims["sub"] == account.user_id
    assert claims["org_id"] == account.org_id
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 900
    assert jwt.get_unverified_header(account.access_token)["alg"] == "ES256"


async def test_rotation_signs_with_the_new_key_and_keeps_old_tokens_valid(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """After a rotation new tokens carry the new kid; old ones still work; both are published."""
    account = await sign_up(client)
    old_kid = kid_of(account.access_token)
    grace = timedelta(seconds=runtime.settings.access_token_ttl_seconds + 120)
    async with runtime.db.transaction() as session:
        new_key, replaced = await rotate_signing_key(
            session, algorithm="ES256", cipher=runtime.cipher, grace=grace
        )
    await refresh_keys(runtime)

    assert new_key.kid != old_kid
    assert old_kid in replaced
    assert runtime.keys.current().kid == new_key.kid
    new_token = (await login(client, account.email, PASSWORD))["access_token"]
    assert kid_of(new_token) == new_key.kid

    jwks = await fetch_jwks(client)
    assert {old_kid, new_key.kid} <= jwks.keys()
    for token in (account.access_token, new_token):
        assert verify_as_relying_party(token, jwks)["sub"] == account.user_id
        me = await client.get("/api/v1/auth/me", headers=bearer(token))
        assert me.status_code == 200


async def test_retired_key_leaves_the_jwks_and_its_tokens_fail(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Once retire_after has passed, the key is unpublished and its tokens get 401."""
    account = await sign_up(client)
    # A key replaced by an earlier rotation and still in its grace period.
    now = utcnow()
    row = new_signing_key("ES256", runtime.cipher)
    row.activated_at = now - timedelta(days=1)
    row.retire_after = now + timedelta(hours=1)
    async with runtime.db.transaction() as session:
        session.add(row)
    await refresh_keys(runtime)
    key = runtime.keys.verifying_key(row.kid)
    assert key is not None
    assert runtime.keys.current().kid != row.kid  # a key in grace never signs
    token = jwt.encode(
        access_claims(runtime, account),
        key.private_key,
        algorithm="ES256",
        headers={"kid": key.kid},
    )
    assert row.kid in await fetch_jwks(client)
    before = await client.get("/api/v1/auth/me", headers=bearer(token))
    assert before.status_code == 200, before.text

    async with runtime.db.transaction() as session:
        await session.execute(
            update(SigningKey)
            .where(SigningKey.kid == row.kid)
            .values(retire_after=utcnow() - timedelta(seconds=1))
        )
    await refresh_keys(runtime)

    assert row.kid not in await fetch_jwks(client)
    after = await client.get("/api/v1/auth/me", headers=bearer(token))
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "INVALID_TOKEN"
    # Tokens of the current key are unaffected.
    me = await client.get("/api/v1/auth/me", headers=account.headers)
    assert me.status_code == 200


async def test_cli_keys_rotate_reaches_a_running_app(private_sqlite: Settings) -> None:
    """`keys rotate` prints the new kid; after its key refresh the app signs with it."""
    async with running_app(private_sqlite) as app, client_for(app) as client:
        account = await sign_up(client)
        old_kid = kid_of(account.access_token)

        output = await run_cli(private_sqlite, "keys", "rotate")

        assert output["kid"] != old_kid
        assert output["algorithm"] == "ES256"
        assert output["previous"] == [old_kid]
        await refresh_keys(app.state.runtime)
        jwks = await fetch_jwks(client)
        assert {old_kid, output["kid"]} <= jwks.keys()
        new_token = (await login(client, account.email, PASSWORD))["access_token"]
        assert kid_of(new_token) == output["kid"]
        me = await client.get("/api/v1/auth/me", headers=account.headers)
        assert me.status_code == 200


async def test_rs256_app_issues_rs256_tokens(private_sqlite: Settings) -> None:
    """With JWT_ALGORITHM=RS256 on a fresh database, keys and tokens are RS256."""
    settings = private_sqlite.model_copy(update={"jwt_algorithm": SigningAlgorithm.RS256})
    async with running_app(settings) as app, client_for(app) as client:
        account = await sign_up(client)
        header = jwt.get_unverified_header(account.access_token)
        assert header["alg"] == "RS256"
        jwks = await fetch_jwks(client)
        key = jwks[header["kid"]]
        assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
        assert not PRIVATE_JWK_MEMBERS & key.keys(), json.dumps(key)
        assert verify_as_relying_party(account.access_token, jwks)["sub"] == account.user_id
        meta = (await client.get("/.well-known/openid-configuration")).json()
        assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
        me = await client.get("/api/v1/auth/me", headers=account.headers)
        assert me.status_code == 200

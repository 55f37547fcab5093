"""Public keys and issuer metadata, as a relying party sees them, and key rotation.

A relying party fetches the JWKS and verifies access tokens with nothing but a JWT
library; rotation must never break that. Rotation is publish-then-activate: the new key
is in the JWKS at once but signs only after the activation delay, so replicas and
verifiers that cache the JWKS know it before its first token; tokens signed before stay
valid while their key is published, and a retired key leaves the JWKS and stops verifying.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import update

from faultmaven_auth.config import Settings, SigningAlgorithm
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import SigningKey
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.tokens.keys import new_signing_key, rotate_signing_key
from tests.conftest import PASSWORD, client_for, login, running_app, sign_up
from tests.tokens.conftest import ACCESS_TOKEN_HEADER, access_claims, bearer, run_cli

PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


async def fetch_jwks(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return {key["kid"]: key for key in response.json()["keys"]}


def verify_as_relying_party(token: str, jwks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the README tells an integrating service to do, with PyJWT and the JWKS alone.

    Pick the JWK by kid, take the algorithm from the JWK, check the signature, ``iss``,
    ``aud``, ``exp`` and ``typ: at+jwt``.
    """
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    jwk = jwks[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key=jwt.PyJWK(jwk),
        algorithms=[jwk["alg"]],
        audience="faultmaven",
        issuer="http://testserver",
        options={"require": ["iss", "aud", "exp", "iat", "sub", "jti", "client_id"]},
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
    assert meta["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    served = await client.get(meta["jwks_uri"])
    assert served.status_code == 200
    assert served.json()["keys"]


async def test_openid_configuration_advertises_only_endpoints_that_exist(
    client: httpx.AsyncClient,
) -> None:
    """No OAuth token endpoint, grant or response types: login is not an OAuth token request.

    Every URL advertised answers (the introspection endpoint asks for client credentials).
    """
    meta = (await client.get("/.well-known/openid-configuration")).json()
    assert set(meta) == {
        "issuer",
        "jwks_uri",
        "introspection_endpoint",
        "introspection_endpoint_auth_methods_supported",
        "id_token_signing_alg_values_supported",
    }
    assert (await client.get(meta["jwks_uri"])).status_code == 200
    introspect = await client.post(meta["introspection_endpoint"], data={"token": "x"})
    assert introspect.status_code == 401


async def test_access_tokens_follow_rfc_9068(client: httpx.AsyncClient) -> None:
    """Header typ at+jwt; claims iss, sub, aud, exp, iat, jti and the first-party client_id."""
    account = await sign_up(client)
    header = jwt.get_unverified_header(account.access_token)
    assert header["typ"] == "at+jwt"
    claims = verify_as_relying_party(account.access_token, await fetch_jwks(client))
    assert claims["client_id"] == "faultmaven-auth"
    assert claims["iss"] == "http://testserver"
    assert claims["aud"] == "faultmaven"
    assert claims["sub"] == account.user_id
    assert claims["iat"] <= claims["exp"]
    assert claims["jti"]


async def test_login_token_verifies_against_the_published_jwks(client: httpx.AsyncClient) -> None:
    """A relying party verifies a login's access token with PyJWT and the JWKS alone."""
    account = await sign_up(client)
    claims = verify_as_relying_party(account.access_token, await fetch_jwks(client))
    assert claims["sub"] == account.user_id
    assert claims["org_id"] == account.org_id
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 900
    assert jwt.get_unverified_header(account.access_token)["alg"] == "ES256"


def move_key_clock(monkeypatch: pytest.MonkeyPatch, to: datetime) -> None:
    """The key ring's clock (which key signs, which are published) jumps to ``to``."""
    monkeypatch.setattr("faultmaven_auth.tokens.keys.utcnow", lambda: to)


async def test_rotation_publishes_first_and_signs_after_the_activation_delay(
    client: httpx.AsyncClient,
    runtime: Runtime,
    backend_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a rotation both keys are published and verify on every replica at once;
    the old key keeps signing until the activation time, then the new one signs."""
    account = await sign_up(client)
    old_kid = kid_of(account.access_token)
    async with running_app(backend_settings) as replica, client_for(replica) as other:
        async with runtime.db.transaction() as session:
            rotation = await rotate_signing_key(
                session,
                algorithm="ES256",
                cipher=runtime.cipher,
                activation_delay=timedelta(seconds=600),
                token_lifetime=timedelta(seconds=1020),
            )
        new_kid = rotation.key.kid
        assert old_kid in rotation.previous
        # Each replica's periodic refresh picks the new key up.
        await refresh_keys(runtime)
        await refresh_keys(replica.state.runtime)

        for http in (client, other):
            assert {old_kid, new_kid} <= (await fetch_jwks(http)).keys()
        before = (await login(client, account.email, PASSWORD))["access_token"]
        assert kid_of(before) == old_kid  # not yet active: the old key still signs
        assert kid_of((await login(other, account.email, PASSWORD))["access_token"]) == old_kid

        # Time passes beyond the activation (the key ring's clock; tokens use the real one).
        move_key_clock(monkeypatch, rotation.activates_at + timedelta(seconds=1))
        after = (await login(client, account.email, PASSWORD))["access_token"]
        assert kid_of(after) == new_kid
        from_replica = (await login(other, account.email, PASSWORD))["access_token"]
        assert kid_of(from_replica) == new_kid

        jwks = await fetch_jwks(other)
        assert {old_kid, new_kid} <= jwks.keys()  # the old key's tokens are still live
        for token in (account.access_token, before, after, from_replica):
            assert verify_as_relying_party(token, jwks)["sub"] == account.user_id
            for http in (client, other):
                me = await http.get("/api/v1/auth/me", headers=bearer(token))
                assert me.status_code == 200, me.text

        # Once the last token the old key may have signed has expired, it is unpublished.
        move_key_clock(monkeypatch, rotation.previous_retire_after + timedelta(seconds=1))
        await refresh_keys(runtime)
        assert old_kid not in await fetch_jwks(client)
        assert new_kid in await fetch_jwks(client)
    monkeypatch.undo()
    await refresh_keys(runtime)  # back to real time for the tests that follow


async def test_a_key_pending_activation_is_published_but_does_not_sign(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A token signed with a published, not yet active key verifies (a replica whose clock
    runs ahead may already use it), while this replica keeps signing with the current key."""
    account = await sign_up(client)
    row = new_signing_key("ES256", runtime.cipher)
    row.activated_at = utcnow() + timedelta(hours=1)
    row.retire_after = utcnow() + timedelta(hours=2)  # never becomes current in other tests
    async with runtime.db.transaction() as session:
        session.add(row)
    await refresh_keys(runtime)
    assert row.kid in await fetch_jwks(client)
    assert kid_of((await login(client, account.email, PASSWORD))["access_token"]) != row.kid
    key = runtime.keys.verifying_key(row.kid)
    assert key is not None
    token = jwt.encode(
        access_claims(runtime, account),
        key.private_key,
        algorithm="ES256",
        headers={"kid": key.kid, **ACCESS_TOKEN_HEADER},
    )
    me = await client.get("/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 200, me.text


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
        headers={"kid": key.kid, **ACCESS_TOKEN_HEADER},
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
    """`keys rotate` prints the new kid and its activation time; a running app publishes
    the key at its next refresh and keeps signing with the old one until then."""
    async with running_app(private_sqlite) as app, client_for(app) as client:
        account = await sign_up(client)
        old_kid = kid_of(account.access_token)

        started = utcnow()
        output = await run_cli(private_sqlite, "keys", "rotate")

        assert output["kid"] != old_kid
        assert output["algorithm"] == "ES256"
        assert output["previous"] == [old_kid]
        assert output["immediately"] is False
        activates_at = datetime.fromisoformat(output["activates_at"]).replace(tzinfo=UTC)
        delay = (activates_at - started).total_seconds()
        assert 899 <= delay <= 910  # SIGNING_KEY_ACTIVATION_DELAY_SECONDS, default 900
        retire = datetime.fromisoformat(output["previous_retire_after"]).replace(tzinfo=UTC)
        assert retire - activates_at >= timedelta(seconds=900)  # its last token's lifetime
        await refresh_keys(app.state.runtime)
        jwks = await fetch_jwks(client)
        assert {old_kid, output["kid"]} <= jwks.keys()
        new_token = (await login(client, account.email, PASSWORD))["access_token"]
        assert kid_of(new_token) == old_kid
        me = await client.get("/api/v1/auth/me", headers=account.headers)
        assert me.status_code == 200


async def test_cli_keys_rotate_immediately_replaces_a_compromised_key(
    private_sqlite: Settings,
) -> None:
    """`keys rotate --immediately` signs with the new key at once and unpublishes the old
    one: tokens it signed get 401, and a refresh gets a token of the new key."""
    async with running_app(private_sqlite) as app, client_for(app) as client:
        account = await sign_up(client)
        old_kid = kid_of(account.access_token)

        output = await run_cli(private_sqlite, "keys", "rotate", "--immediately")

        assert output["previous"] == [old_kid]
        assert output["immediately"] is True
        await refresh_keys(app.state.runtime)
        assert set(await fetch_jwks(client)) == {output["kid"]}
        me = await client.get("/api/v1/auth/me", headers=account.headers)
        assert me.status_code == 401
        assert me.json()["error"]["code"] == "INVALID_TOKEN"
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        assert refreshed.status_code == 200
        assert kid_of(refreshed.json()["access_token"]) == output["kid"]


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

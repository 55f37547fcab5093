"""The admin side of SSO: providers, redirect URIs and domains over the API, on both
backends. Secrets are write-only, discovery is checked before anything is stored,
other tenants get 404, and every change is audited."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from faultmaven_auth.config import Settings
from faultmaven_auth.storage.migrate import upgrade_async
from faultmaven_auth.storage.models import SsoProvider
from tests.conftest import (
    FAST_ARGON2,
    SEEN_SECRETS,
    SYSTEM_ROLE_IDS,
    add_member,
    client_for,
    running_app,
    sign_up,
)
from tests.sso.conftest import sso_tenant
from tests.sso.dns_server import TxtZone
from tests.sso.fake_idp import CLIENT_ID, FakeIdp

pytestmark = pytest.mark.backends


def _provider_body(
    issuer: str, domain: str = "corp.example.com", **fields: object
) -> dict[str, object]:
    return {
        "name": "Okta",
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": "write-only-" + secrets.token_hex(8),
        "allowed_domains": [domain],
        **fields,
    }


async def test_provider_crud_never_returns_the_secret_and_is_audited(
    client: httpx.AsyncClient, fake_idp: FakeIdp
) -> None:
    owner = await sign_up(client)
    body = _provider_body(fake_idp.issuer)
    created = await client.post(f"{owner.org_url}/sso-providers", headers=owner.headers, json=body)
    assert created.status_code == 201, created.text
    provider = created.json()
    assert "client_secret" not in provider
    assert provider["client_secret_set"] is True
    assert body["client_secret"] not in created.text
    assert provider["issuer"] == fake_idp.issuer
    assert provider["provider_type"] == "oidc"
    assert provider["callback_url"] == "http://testserver/api/v1/sso/oidc/callback"
    assert provider["default_role_id"] == SYSTEM_ROLE_IDS["member"]
    url = f"{owner.org_url}/sso-providers/{provider['id']}"

    new_secret = "rotated-" + secrets.token_hex(8)
    patched = await client.patch(
        url, headers=owner.headers, json={"name": "Okta EU", "client_secret": new_secret}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Okta EU"
    assert new_secret not in patched.text
    listed = await client.get(f"{owner.org_url}/sso-providers", headers=owner.headers)
    assert [p["id"] for p in listed.json()] == [provider["id"]]
    assert new_secret not in listed.text
    assert body["client_secret"] not in listed.text

    assert (await client.delete(url, headers=owner.headers)).status_code == 204
    gone = await client.get(url, headers=owner.headers)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "SSO_PROVIDER_NOT_FOUND"
    audit = await client.get(f"{owner.org_url}/audit-events", headers=owner.headers)
    events = {e["event_type"]: e["details"] for e in audit.json()["items"]}
    assert events["sso.provider.updated"] == {"fields": ["client_secret", "name"]}
    assert {"sso.provider.created", "sso.provider.deleted"} <= set(events)
    assert new_secret not in audit.text
    assert body["client_secret"] not in audit.text


async def test_other_tenants_get_404_and_roles_need_sso_permissions(
    client: httpx.AsyncClient, fake_idp: FakeIdp
) -> None:
    owner = await sign_up(client)
    created = await client.post(
        f"{owner.org_url}/sso-providers",
        headers=owner.headers,
        json=_provider_body(fake_idp.issuer),
    )
    provider_id = created.json()["id"]
    stranger = await sign_up(client, "Other")
    for path in (f"{owner.org_url}/sso-providers/{provider_id}", f"{owner.org_url}/sso-providers"):
        answer = await client.get(path, headers=stranger.headers)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "ORGANIZATION_NOT_FOUND"
    own_path = f"{stranger.org_url}/sso-providers/{provider_id}"
    for method in ("GET", "PATCH", "DELETE"):
        kwargs = {"json": {"name": "x"}} if method == "PATCH" else {}
        answer = await client.request(method, own_path, headers=stranger.headers, **kwargs)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "SSO_PROVIDER_NOT_FOUND"

    member = await add_member(client, owner, "member")
    assert (
        await client.get(f"{owner.org_url}/sso-providers", headers=member.headers)
    ).status_code == 200
    refused = await client.post(
        f"{owner.org_url}/sso-providers",
        headers=member.headers,
        json=_provider_body(fake_idp.issuer),
    )
    assert refused.status_code == 403
    viewer = await add_member(client, owner, "viewer")
    assert (
        await client.get(f"{owner.org_url}/sso-domains", headers=viewer.headers)
    ).status_code == 403


@pytest.mark.parametrize(
    ("issuer_of", "expected"),
    [
        (lambda idp: "http://127.0.0.1:1", "SSO_DISCOVERY_FAILED"),  # nothing listens there
        (lambda idp: idp.issuer + "/", "SSO_DISCOVERY_FAILED"),  # the document names another
        (lambda idp: idp.issuer + "/jwks", "SSO_DISCOVERY_FAILED"),  # no document there
        (lambda idp: "ftp://127.0.0.1/x", "SSO_DISCOVERY_FAILED"),
    ],
)
async def test_a_provider_whose_discovery_fails_is_not_stored(
    client: httpx.AsyncClient, fake_idp: FakeIdp, issuer_of: object, expected: str
) -> None:
    owner = await sign_up(client)
    issuer = issuer_of(fake_idp)  # type: ignore[operator]
    answer = await client.post(
        f"{owner.org_url}/sso-providers", headers=owner.headers, json=_provider_body(issuer)
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == expected
    listed = await client.get(f"{owner.org_url}/sso-providers", headers=owner.headers)
    assert listed.json() == []


async def test_sso_cannot_mint_owners(client: httpx.AsyncClient, fake_idp: FakeIdp) -> None:
    owner = await sign_up(client)
    for fields in (
        {"default_role_id": SYSTEM_ROLE_IDS["owner"]},
        {"group_role_map": {"root": SYSTEM_ROLE_IDS["owner"]}},
    ):
        answer = await client.post(
            f"{owner.org_url}/sso-providers",
            headers=owner.headers,
            json=_provider_body(fake_idp.issuer, **fields),
        )
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "SSO_ROLE_NOT_ALLOWED"


async def test_redirect_uris_are_absolute_https_and_unique(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    url = f"{owner.org_url}/sso-redirect-uris"
    for bad in (
        "http://app.example.com/cb",
        "/relative",
        "https://app.example.com/cb#x",
        "https://u:p@app.example.com/",
    ):
        answer = await client.post(url, headers=owner.headers, json={"uri": bad})
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["code"] == "SSO_INVALID_REDIRECT_URI"
    good = "https://app.example.com/sso/done"
    assert (await client.post(url, headers=owner.headers, json={"uri": good})).status_code == 201
    again = await client.post(url, headers=owner.headers, json={"uri": good})
    assert again.status_code == 409
    listed = await client.get(url, headers=owner.headers)
    assert [u["uri"] for u in listed.json()] == [good]


async def test_domain_verification_through_dns_and_one_owner_per_domain(
    client: httpx.AsyncClient, dns: tuple[TxtZone, str]
) -> None:
    zone = dns[0]
    domain = f"{secrets.token_hex(5)}.example.com"
    first, second = await sign_up(client, "First"), await sign_up(client, "Second")
    claims = {}
    for account in (first, second):  # unverified claims may overlap: no squatting
        answer = await client.post(
            f"{account.org_url}/sso-domains",
            headers=account.headers,
            json={"domain": domain.upper()},
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["domain"] == domain
        assert answer.json()["verified"] is False
        claims[account.org_id] = answer.json()
    first_claim = claims[first.org_id]
    verify = f"{first.org_url}/sso-domains/{first_claim['id']}/verify"
    missing = await client.post(verify, headers=first.headers)
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "DOMAIN_NOT_VERIFIED"
    record = first_claim["verification"]
    assert record["name"] == f"_faultmaven-auth.{domain}"
    zone.records[record["name"]] = ["faultmaven-auth-verification=wrong"]
    assert (await client.post(verify, headers=first.headers)).status_code == 422
    zone.records[record["name"]] = ["v=spf1 -all", record["value"]]
    verified = await client.post(verify, headers=first.headers)
    assert verified.status_code == 200, verified.text
    assert verified.json()["verified"] is True
    # The second organization publishes its own token too: still refused.
    second_claim = claims[second.org_id]
    zone.records[record["name"]].append(second_claim["verification"]["value"])
    taken = await client.post(
        f"{second.org_url}/sso-domains/{second_claim['id']}/verify", headers=second.headers
    )
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "DOMAIN_ALREADY_CLAIMED"
    audit = await client.get(f"{first.org_url}/audit-events", headers=first.headers)
    assert {"sso.domain.claimed", "sso.domain.verified"} <= {
        e["event_type"] for e in audit.json()["items"]
    }


async def test_login_via_disabled_provider_is_refused(
    client: httpx.AsyncClient, fake_idp: FakeIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await sso_tenant(client, dns[0], fake_idp.issuer, client_id=CLIENT_ID)
    await client.patch(
        f"{tenant.owner.org_url}/sso-providers/{tenant.provider_id}",
        headers=tenant.owner.headers,
        json={"enabled": False},
    )
    answer = await client.get(tenant.login_url())
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "SSO_PROVIDER_NOT_FOUND"
    found = await client.post("/api/v1/sso/discover", json={"email": tenant.email()})
    assert found.json()["sso"] is False


async def test_client_secret_is_encrypted_at_rest(tmp_path: Path, fake_idp: FakeIdp) -> None:
    """With SIGNING_KEY_ENCRYPTION_KEY set, the stored secret is AES-GCM sealed."""
    settings = Settings(
        **FAST_ARGON2,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        redis_url=None,
        environment="development",
        jwt_issuer="http://testserver",
        signing_key_encryption_key="an encryption key for this test only, 0123456789",
        sso_allow_insecure_issuers=True,
    )
    await upgrade_async(settings.database_url)
    secret = "sealed-" + secrets.token_hex(12)
    SEEN_SECRETS.add(secret)  # the suite's guard fails the run if it ever reaches a log
    async with running_app(settings) as app, client_for(app) as http:
        owner = await sign_up(http)
        created = await http.post(
            f"{owner.org_url}/sso-providers",
            headers=owner.headers,
            json={**_provider_body(fake_idp.issuer), "client_secret": secret},
        )
        assert created.status_code == 201, created.text
        async with app.state.runtime.db.session() as session:
            row = await session.scalar(select(SsoProvider))
    assert row is not None
    assert row.secret is not None
    assert row.secret_encrypted is True
    assert secret.encode() not in row.secret


async def test_public_sso_routes_are_rate_limited(tmp_path: Path) -> None:
    settings = Settings(
        **FAST_ARGON2,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        redis_url=None,
        environment="development",
        rate_limit_sso="2/minute",
    )
    await upgrade_async(settings.database_url)
    async with running_app(settings) as app, client_for(app) as http:
        answers = [
            await http.post("/api/v1/sso/discover", json={"email": "a@b.example.com"})
            for _ in range(3)
        ]
        start = await http.get(f"/api/v1/sso/{uuid.uuid4()}/login?redirect_uri=x")
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["error"]["code"] == "RATE_LIMITED"
    assert start.status_code == 429

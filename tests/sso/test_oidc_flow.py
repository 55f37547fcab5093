"""The OIDC login end to end against a real OpenID provider (node oidc-provider):
browser-like redirects and forms, our callback, the one-time code, the token pair.
Runs on both backends (SQLite + in-process store, PostgreSQL + Redis)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import login
from tests.sso.conftest import (
    APP_REDIRECT,
    IDP_POST_CLIENT_ID,
    audit_events,
    browse,
    browser,
    metric,
    query_of,
    refusal_logged,
    sso_failures,
    sso_tenant,
)
from tests.sso.dns_server import TxtZone
from tests.sso.idp_server import RealIdp

pytestmark = pytest.mark.backends


async def _tokens(client: httpx.AsyncClient, response: httpx.Response) -> dict[str, str]:
    assert response.is_redirect, response.text
    assert response.headers["location"].startswith(APP_REDIRECT + "?")
    exchanged = await client.post("/api/v1/sso/token", json={"code": query_of(response)["code"]})
    assert exchanged.status_code == 200, exchanged.text
    tokens: dict[str, str] = exchanged.json()
    return tokens


async def test_jit_login_then_second_login_links_the_same_user(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    """A first login creates the user (default role), a second one signs the same user in."""
    tenant = await sso_tenant(client, dns[0], real_idp.issuer)
    email = tenant.email()
    before = await metric(client, 'sso_attempts_total{provider_type="oidc",status="success"}')
    async with browser(sso_app) as http:
        first = await browse(http, tenant.login_url(state="app-state-1"), login=email)
    assert query_of(first)["state"] == "app-state-1"
    tokens = await _tokens(client, first)
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["email"] == email
    assert me.json()["organization_id"] == tenant.owner.org_id
    assert me.json()["roles"] == ["member"]

    async with browser(sso_app) as http:
        second = await browse(http, tenant.login_url(), login=email)
    again = await _tokens(client, second)
    me_again = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {again['access_token']}"}
    )
    assert me_again.json()["id"] == me.json()["id"]
    users = await client.get(f"{tenant.owner.org_url}/users", headers=tenant.owner.headers)
    assert [u["email"] for u in users.json()["items"]].count(email) == 1
    after = await metric(client, 'sso_attempts_total{provider_type="oidc",status="success"}')
    assert after - before == 2
    assert await metric(client, 'auth_attempts_total{method="sso_oidc",status="success"}') >= 2
    audit = await client.get(f"{tenant.owner.org_url}/audit-events", headers=tenant.owner.headers)
    types = [e["event_type"] for e in audit.json()["items"]]
    assert types.count("auth.sso.succeeded") == 2
    assert types.count("auth.sso.user_provisioned") == 1


async def test_existing_member_is_linked_and_group_maps_to_role(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    """An account of the same org with the same verified email is linked, not duplicated;
    with client_secret_post; an IdP group maps a new user to its role."""
    admin_role = "b4de660a-8416-5803-8be4-4aaed1ca999f"
    tenant = await sso_tenant(
        client,
        dns[0],
        real_idp.issuer,
        client_id=IDP_POST_CLIENT_ID,
        token_endpoint_auth_method="client_secret_post",
        scopes=["openid", "email", "profile", "groups"],
        group_role_map={"admins": admin_role},
    )
    email = tenant.email("admin")
    async with browser(sso_app) as http:
        tokens = await _tokens(client, await browse(http, tenant.login_url(), login=email))
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["roles"] == ["admin"]


async def test_userinfo_when_configured(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    """With use_userinfo, the claims come from the provider's userinfo endpoint too."""
    tenant = await sso_tenant(client, dns[0], real_idp.issuer, use_userinfo=True)
    email = tenant.email()
    async with browser(sso_app) as http:
        tokens = await _tokens(client, await browse(http, tenant.login_url(), login=email))
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["email"] == email
    assert me.json()["full_name"] == f"Test {email.split('@')[0]}"


async def test_an_error_from_the_provider_is_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await sso_tenant(client, dns[0], real_idp.issuer)
    async with browser(sso_app) as http:
        callback = httpx.URL(await _stop_before_callback(http, tenant.login_url(), tenant.email()))
        denied = callback.copy_remove_param("code").copy_add_param("error", "access_denied")
        await _callback_refused(
            client,
            sso_app,
            str(denied).removeprefix("http://testserver"),
            status=400,
            code="SSO_PROVIDER_ERROR",
            reason="provider_error",
            via=http,
        )


async def test_one_time_code_cannot_be_used_twice(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await sso_tenant(client, dns[0], real_idp.issuer)
    async with browser(sso_app) as http:
        done = await browse(http, tenant.login_url(), login=tenant.email())
    code = query_of(done)["code"]
    assert (await client.post("/api/v1/sso/token", json={"code": code})).status_code == 200
    again = await client.post("/api/v1/sso/token", json={"code": code})
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "SSO_CODE_INVALID"


async def _callback_refused(
    client: httpx.AsyncClient,
    sso_app: FastAPI,
    url: str,
    *,
    status: int,
    code: str,
    reason: str,
    via: httpx.AsyncClient | None = None,
) -> None:
    """The callback (or start) refuses with ``code``; the reason is logged, counted, audited.

    ``via``: the browser that started the login (it holds the binding cookie)."""
    request_id = f"sso-{uuid.uuid4().hex}"
    failures = await sso_failures(client)
    response = await (via or client).get(
        url if via is None else f"http://testserver{url}", headers={"X-Request-ID": request_id}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await sso_failures(client) == failures + 1
    assert refusal_logged(request_id, reason)
    events = await audit_events(sso_app, request_id)
    assert [(e.event_type, e.details["reason"]) for e in events] == [("auth.sso.failed", reason)]


async def _stop_before_callback(http: httpx.AsyncClient, url: str, email: str) -> str:
    """Run the browser until the provider sends it to our callback; return that URL."""
    response = await browse(http, url, login=email, stop_at="http://testserver/api/v1/sso/oidc")
    return str(response.headers["location"])


async def test_replayed_state_and_replayed_code_are_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await sso_tenant(client, dns[0], real_idp.issuer)
    email = tenant.email()
    async with browser(sso_app) as http:
        callback = await _stop_before_callback(http, tenant.login_url(), email)
        path = callback.removeprefix("http://testserver")
        first = await http.get(callback)
        assert first.is_redirect
        await _callback_refused(
            client,
            sso_app,
            path,
            status=400,
            code="SSO_STATE_INVALID",
            reason="replayed",
            via=http,
        )
        # The provider's code again, under a fresh state of ours: the provider refuses it.
        fresh = await _stop_before_callback(http, tenant.login_url(), email)
        old_code = httpx.URL(callback).params["code"]
        forged = httpx.URL(fresh).copy_set_param("code", old_code)
        await _callback_refused(
            client,
            sso_app,
            str(forged).removeprefix("http://testserver"),
            status=400,
            code="SSO_CODE_REJECTED",
            reason="code_rejected",
            via=http,
        )


async def test_unknown_state_and_other_browser_are_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    """A made-up state; and a genuine callback URL opened in another browser (login CSRF)."""
    await _callback_refused(
        client,
        sso_app,
        "/api/v1/sso/oidc/callback?state=made-up&code=x",
        status=400,
        code="SSO_STATE_INVALID",
        reason="state_mismatch",
    )
    tenant = await sso_tenant(client, dns[0], real_idp.issuer)
    async with browser(sso_app) as http:
        callback = await _stop_before_callback(http, tenant.login_url(), tenant.email())
    async with browser(sso_app) as other_browser:
        await _callback_refused(
            client,
            sso_app,
            callback.removeprefix("http://testserver"),
            status=400,
            code="SSO_STATE_INVALID",
            reason="browser_mismatch",
            via=other_browser,
        )


async def test_unregistered_redirect_uri_is_refused_before_the_provider(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await sso_tenant(client, dns[0], real_idp.issuer)
    for uri in ("https://evil.example/cb", APP_REDIRECT + "/", APP_REDIRECT + "?x=1"):
        await _callback_refused(
            client,
            sso_app,
            tenant.login_url(redirect_uri=uri),
            status=400,
            code="SSO_REDIRECT_URI_NOT_REGISTERED",
            reason="redirect_uri_not_registered",
        )


async def test_user_from_a_domain_the_org_does_not_own_is_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    """An email outside the provider's domains, and an unverified email: no user is made."""
    tenant = await sso_tenant(client, dns[0], real_idp.issuer)
    for email, reason, code in (
        (
            f"x-{uuid.uuid4().hex[:6]}@elsewhere.example",
            "domain_not_allowed",
            "SSO_DOMAIN_NOT_ALLOWED",
        ),
        (tenant.email("unverified"), "email_not_verified", "SSO_EMAIL_NOT_ALLOWED"),
    ):
        async with browser(sso_app) as http:
            callback = await _stop_before_callback(http, tenant.login_url(), email)
            await _callback_refused(
                client,
                sso_app,
                callback.removeprefix("http://testserver"),
                status=403,
                code=code,
                reason=reason,
                via=http,
            )
    users = await client.get(f"{tenant.owner.org_url}/users", headers=tenant.owner.headers)
    assert [u["email"] for u in users.json()["items"]] == [tenant.owner.email]


async def test_provider_of_org_a_never_signs_into_org_b(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    """Org A's provider allows a domain only org B verified, and B has a member there:
    A's login is refused, and B's member is neither linked nor signed in."""
    org_a = await sso_tenant(client, dns[0], real_idp.issuer)
    org_b = await sso_tenant(client, dns[0], real_idp.issuer)
    member = org_b.email("member")
    created = await client.post(
        f"{org_b.owner.org_url}/users",
        headers=org_b.owner.headers,
        json={"email": member, "password": "Correct-Horse-Battery-42", "full_name": "B Member"},
    )
    assert created.status_code == 201
    patched = await client.patch(
        f"{org_a.owner.org_url}/sso-providers/{org_a.provider_id}",
        headers=org_a.owner.headers,
        json={"allowed_domains": [org_a.domain, org_b.domain]},
    )
    assert patched.status_code == 200, patched.text
    async with browser(sso_app) as http:
        callback = await _stop_before_callback(http, org_a.login_url(), member)
        await _callback_refused(
            client,
            sso_app,
            callback.removeprefix("http://testserver"),
            status=403,
            code="SSO_DOMAIN_NOT_ALLOWED",
            reason="domain_not_allowed",
            via=http,
        )
    users_a = await client.get(f"{org_a.owner.org_url}/users", headers=org_a.owner.headers)
    assert member not in [u["email"] for u in users_a.json()["items"]]
    # B's own login still works, and signs in B's existing member.
    async with browser(sso_app) as http:
        tokens = await _tokens(client, await browse(http, org_b.login_url(), login=member))
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["organization_id"] == org_b.owner.org_id
    assert me.json()["email"] == member
    # Org A cannot claim B's verified domain either.
    refused = await client.post(
        f"{org_a.owner.org_url}/sso-domains",
        headers=org_a.owner.headers,
        json={"domain": org_b.domain},
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "DOMAIN_ALREADY_CLAIMED"


async def test_without_jit_an_unknown_user_is_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await sso_tenant(client, dns[0], real_idp.issuer, jit_enabled=False)
    async with browser(sso_app) as http:
        callback = await _stop_before_callback(http, tenant.login_url(), tenant.email())
        await _callback_refused(
            client,
            sso_app,
            callback.removeprefix("http://testserver"),
            status=403,
            code="SSO_USER_NOT_ALLOWED",
            reason="user_not_provisioned",
            via=http,
        )


async def test_discovery_names_the_provider_of_a_verified_domain_only(
    client: httpx.AsyncClient, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await sso_tenant(client, dns[0], real_idp.issuer)
    found = await client.post("/api/v1/sso/discover", json={"email": tenant.email()})
    assert found.json() == {
        "sso": True,
        "organization_id": tenant.owner.org_id,
        "provider_id": tenant.provider_id,
        "provider_type": "oidc",
        "login_url": f"http://testserver/api/v1/sso/{tenant.provider_id}/login",
    }
    unverified_owner = tenant.owner
    other = f"{uuid.uuid4().hex[:8]}.example.com"
    await client.post(
        f"{unverified_owner.org_url}/sso-domains",
        headers=unverified_owner.headers,
        json={"domain": other},
    )
    for email in (f"a@{other}", "someone@nowhere.example"):
        answer = await client.post("/api/v1/sso/discover", json={"email": email})
        assert answer.json() == {
            "sso": False,
            "organization_id": None,
            "provider_id": None,
            "provider_type": None,
            "login_url": None,
        }


async def test_password_login_refused_when_sso_is_required_but_owner_breaks_glass(
    client: httpx.AsyncClient, real_idp: RealIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await sso_tenant(client, dns[0], real_idp.issuer, sso_required=True)
    member = tenant.email("member")
    created = await client.post(
        f"{tenant.owner.org_url}/users",
        headers=tenant.owner.headers,
        json={"email": member, "password": "Correct-Horse-Battery-42", "full_name": "M"},
    )
    assert created.status_code == 201
    refused = await client.post(
        "/api/v1/auth/login", json={"email": member, "password": "Correct-Horse-Battery-42"}
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "SSO_REQUIRED"
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": member, "password": "Wrong-42-x"}
    )
    assert wrong.status_code == 401  # a guesser learns nothing about SSO
    # The owner's address is outside the SSO domain here; put an owner inside it.
    owner_in_domain = tenant.email("owner")
    made = await client.post(
        f"{tenant.owner.org_url}/users",
        headers=tenant.owner.headers,
        json={
            "email": owner_in_domain,
            "password": "Correct-Horse-Battery-42",
            "full_name": "O",
            "role_ids": ["7e1d0c48-677f-5270-aeb5-b3243144f3ae"],
        },
    )
    assert made.status_code == 201, made.text
    await login(client, owner_in_domain, "Correct-Horse-Battery-42")
    audit = await client.get(
        f"{tenant.owner.org_url}/audit-events",
        headers=tenant.owner.headers,
        params={"event_type": "auth.login.succeeded"},
    )
    details = [e["details"] for e in audit.json()["items"]]
    assert {"method": "password", "password_rehashed": False, "break_glass": True} in details

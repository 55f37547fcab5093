"""SAML logins refused for who they are for or where they come from rather than for
what is wrong inside the response: login state (unknown, another login's, spent,
replayed, unsolicited), another organization, the org's domains and JIT rules, the
redirect URI at the start, the ACS of a provider that is not SAML. Each refusal is
logged, counted and audited, and nothing is created. Runs on both backends."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from tests.sso.conftest import (
    APP_REDIRECT,
    SsoTenant,
    audit_events,
    browser,
    metric,
    refusal_logged,
    saml_tenant,
    sso_tenant,
)
from tests.sso.dns_server import TxtZone
from tests.sso.fake_idp import CLIENT_ID, FakeIdp
from tests.sso.saml_idp import SamlIdp
from tests.sso.saml_steps import (
    ASSERTION_INVALID,
    SAML_FAILURES,
    STATE_INVALID,
    acs_url,
    assert_refused,
    exchange,
    form,
    me,
    start_login,
)

pytestmark = pytest.mark.backends


async def _tenant(client: httpx.AsyncClient, dns: tuple[TxtZone, str], idp: SamlIdp) -> SsoTenant:
    return await saml_tenant(client, dns[0], idp)


async def test_unknown_relay_state_is_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """A correct response under a RelayState we never issued, or none at all."""
    tenant = await _tenant(client, dns, saml_idp)
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = saml_idp.response_xml(request, tenant.email())
        for relay_state in ("made-up-relay-state", None):
            await assert_refused(
                client,
                sso_app,
                http,
                tenant,
                form(xml, relay_state),
                refusal=STATE_INVALID,
                reason="state_mismatch",
            )


async def test_relay_state_of_another_login_is_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """A correct response to one login under the RelayState of another: of the same
    provider, then of another organization's provider (its state is not ours)."""
    tenant = await _tenant(client, dns, saml_idp)
    other = await _tenant(client, dns, saml_idp)
    async with browser(sso_app) as http:
        first = await start_login(http, saml_idp, tenant)
        second = await start_login(http, saml_idp, tenant)
        elsewhere = await start_login(http, saml_idp, other)
        xml = saml_idp.response_xml(first, tenant.email())
        for relay_state in (second.relay_state, elsewhere.relay_state):
            await assert_refused(
                client,
                sso_app,
                http,
                tenant,
                form(xml, relay_state),
                refusal=STATE_INVALID,
                reason="state_mismatch",
            )


async def test_replayed_response_and_second_answer_to_a_used_login_are_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """The accepted response posted again is a replay; a fresh response to the login that
    already completed finds its state used."""
    tenant = await _tenant(client, dns, saml_idp)
    email = tenant.email()
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        accepted = form(saml_idp.response_xml(request, email), request.relay_state)
        first = await http.post(acs_url(tenant), data=accepted)
        await exchange(client, first)
        await assert_refused(
            client, sso_app, http, tenant, accepted, refusal=STATE_INVALID, reason="replayed"
        )
        fresh = form(saml_idp.response_xml(request, email), request.relay_state)
        await assert_refused(
            client, sso_app, http, tenant, fresh, refusal=STATE_INVALID, reason="state_mismatch"
        )


async def test_unsolicited_response_refused_unless_idp_initiated_is_allowed(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """No InResponseTo (RelayState: the app URL, as IdP portals often send it; the
    service does not trust it): refused by default; once allowed, accepted once (to the
    organization's registered redirect URI) and its replay refused (the assertion ID is
    remembered, there is no login state to spend)."""
    tenant = await _tenant(client, dns, saml_idp)
    email = tenant.email()
    xml = saml_idp.response_xml(
        None, email, sp_entity_id=tenant.provider["sp_entity_id"], acs_url=acs_url(tenant)
    )
    async with browser(sso_app) as http:
        await assert_refused(
            client,
            sso_app,
            http,
            tenant,
            form(xml, APP_REDIRECT),
            refusal=ASSERTION_INVALID,
            reason="unsolicited",
        )
    allowed = await client.patch(
        f"{tenant.owner.org_url}/sso-providers/{tenant.provider_id}",
        headers=tenant.owner.headers,
        json={"allow_idp_initiated": True},
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["allow_idp_initiated"] is True
    async with browser(sso_app) as http:
        done = await http.post(acs_url(tenant), data=form(xml, APP_REDIRECT))
        assert (await me(client, await exchange(client, done)))["email"] == email
        await assert_refused(
            client,
            sso_app,
            http,
            tenant,
            form(xml, APP_REDIRECT),
            refusal=STATE_INVALID,
            reason="replayed",
        )


async def test_response_for_org_a_is_refused_at_org_b(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """Both organizations trust the same IdP. A's genuine response (with A's RelayState)
    posted to B's ACS is refused there and creates nothing in either organization."""
    org_a = await _tenant(client, dns, saml_idp)
    org_b = await _tenant(client, dns, saml_idp)
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, org_a)
        xml = saml_idp.response_xml(request, org_a.email(), sign="both")
        users_a = await client.get(f"{org_a.owner.org_url}/users", headers=org_a.owner.headers)
        request_id = f"saml-cross-tenant-{org_b.provider_id}"
        refused = await http.post(
            acs_url(org_b),
            data=form(xml, request.relay_state),
            headers={"X-Request-ID": request_id},
        )
    assert refused.status_code in (400, 401), refused.text
    assert refused.json()["error"]["code"] in ("SSO_ASSERTION_INVALID", "SSO_STATE_INVALID")
    assert "location" not in refused.headers
    events = await audit_events(sso_app, request_id)
    assert [(e.event_type, str(e.organization_id)) for e in events] == [
        ("auth.sso.failed", org_b.owner.org_id)
    ]
    # Several checks fail (Destination, Audience, Recipient, login state): the contract
    # does not order them, any of those reasons is the right answer.
    assert events[0].details["reason"] in (
        "destination_mismatch",
        "audience_mismatch",
        "recipient_mismatch",
        "state_mismatch",
    )
    again_a = await client.get(f"{org_a.owner.org_url}/users", headers=org_a.owner.headers)
    assert again_a.json()["items"] == users_a.json()["items"]
    users_b = await client.get(f"{org_b.owner.org_url}/users", headers=org_b.owner.headers)
    assert [u["email"] for u in users_b.json()["items"]] == [org_b.owner.email]


async def test_user_outside_the_organization_domains_is_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """A correctly signed response for an email of a domain the org does not own."""
    tenant = await _tenant(client, dns, saml_idp)
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = saml_idp.response_xml(request, "someone@elsewhere.example")
        await assert_refused(
            client,
            sso_app,
            http,
            tenant,
            form(xml, request.relay_state),
            refusal=(403, "SSO_DOMAIN_NOT_ALLOWED"),
            reason="domain_not_allowed",
        )


async def test_no_email_at_all_is_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """No email attribute and a persistent (opaque) NameID: no address to sign in."""
    tenant = await _tenant(client, dns, saml_idp)
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = saml_idp.response_xml(
            request,
            tenant.email(),
            name_id="3f1c9a7e-opaque-subject",
            name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            omit_attributes=["email"],
        )
        await assert_refused(
            client,
            sso_app,
            http,
            tenant,
            form(xml, request.relay_state),
            refusal=(403, "SSO_EMAIL_NOT_ALLOWED"),
            reason="email_missing",
        )


async def test_without_jit_an_unknown_user_is_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await saml_tenant(client, dns[0], saml_idp, jit_enabled=False)
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = saml_idp.response_xml(request, tenant.email())
        await assert_refused(
            client,
            sso_app,
            http,
            tenant,
            form(xml, request.relay_state),
            refusal=(403, "SSO_USER_NOT_ALLOWED"),
            reason="user_not_provisioned",
        )


async def test_unregistered_redirect_uri_is_refused_before_the_idp(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """The login never reaches the IdP with a redirect URI the org did not register."""
    tenant = await _tenant(client, dns, saml_idp)
    for uri in ("https://evil.example/cb", APP_REDIRECT + "/", APP_REDIRECT + "?x=1"):
        request_id = f"saml-start-{uuid.uuid4().hex}"
        failures = await metric(client, SAML_FAILURES)
        response = await client.get(
            tenant.login_url(redirect_uri=uri), headers={"X-Request-ID": request_id}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "SSO_REDIRECT_URI_NOT_REGISTERED"
        assert "location" not in response.headers
        assert await metric(client, SAML_FAILURES) == failures + 1
        assert refusal_logged(request_id, "redirect_uri_not_registered")
        events = await audit_events(sso_app, request_id)
        assert [(e.event_type, e.details["reason"]) for e in events] == [
            ("auth.sso.failed", "redirect_uri_not_registered")
        ]


async def test_acs_of_an_unknown_or_oidc_provider_is_not_found(
    client: httpx.AsyncClient,
    sso_app: FastAPI,
    saml_idp: SamlIdp,
    fake_idp: FakeIdp,
    dns: tuple[TxtZone, str],
) -> None:
    """A genuine response posted to the ACS path of a provider that does not exist, or
    of an OIDC provider: 404, no login."""
    tenant = await _tenant(client, dns, saml_idp)
    oidc = await sso_tenant(client, dns[0], fake_idp.issuer, client_id=CLIENT_ID)
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        fields = form(saml_idp.response_xml(request, tenant.email()), request.relay_state)
        for provider_id in (str(uuid.uuid4()), oidc.provider_id):
            response = await http.post(
                f"http://testserver/api/v1/sso/{provider_id}/acs", data=fields
            )
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "SSO_PROVIDER_NOT_FOUND"
        # Not spent by those: the right ACS still accepts it.
        done = await http.post(acs_url(tenant), data=fields)
    assert (await me(client, await exchange(client, done)))["email"].endswith(tenant.domain)

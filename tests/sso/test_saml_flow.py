"""The SAML 2.0 login end to end against a real IdP (pysaml2's IdP side, xmlsec1
signatures): our login redirect (HTTP-Redirect AuthnRequest), the IdP's signed response
posted to our ACS, the one-time code, the token pair. Configuration from metadata XML and
from a metadata URL; our SP metadata; IdP-initiated login when the provider allows it.
Runs on both backends (SQLite + in-process store, PostgreSQL + Redis)."""

from __future__ import annotations

import httpx
import pytest
from defusedxml import ElementTree
from fastapi import FastAPI

from tests.sso.conftest import APP_REDIRECT, browser, metric, saml_tenant
from tests.sso.dns_server import TxtZone
from tests.sso.saml_idp import SamlIdp
from tests.sso.saml_steps import (
    AUTH_SUCCESSES,
    SAML_SUCCESSES,
    acs_url,
    exchange,
    me,
    post_response,
    start_login,
)

pytestmark = pytest.mark.backends

ADMIN_ROLE = "b4de660a-8416-5803-8be4-4aaed1ca999f"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"


async def test_first_login_provisions_the_user_and_a_second_links_to_it(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """SP-initiated: the AuthnRequest names our SP and ACS; the signed response signs in a
    JIT-provisioned member; a second login signs in the same user."""
    tenant = await saml_tenant(client, dns[0], saml_idp)
    email = tenant.email()
    successes = await metric(client, SAML_SUCCESSES)
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant, state="app-state-1")
        assert request.issuer == tenant.provider["sp_entity_id"]
        assert request.acs_url == acs_url(tenant)
        assert request.destination == saml_idp.sso_url
        xml = saml_idp.response_xml(request, email, name="Ada Lovelace")
        first = await post_response(http, tenant, xml, request.relay_state)
    assert httpx.URL(first.headers["location"]).params["state"] == "app-state-1"
    profile = await me(client, await exchange(client, first))
    assert profile["email"] == email
    assert profile["full_name"] == "Ada Lovelace"
    assert profile["organization_id"] == tenant.owner.org_id
    assert profile["roles"] == ["member"]

    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = saml_idp.response_xml(request, email, name="Ada Lovelace")
        second = await post_response(http, tenant, xml, request.relay_state)
    assert "state" not in httpx.URL(second.headers["location"]).params
    again = await me(client, await exchange(client, second))
    assert again["id"] == profile["id"]
    users = await client.get(f"{tenant.owner.org_url}/users", headers=tenant.owner.headers)
    assert [u["email"] for u in users.json()["items"]].count(email) == 1
    assert await metric(client, SAML_SUCCESSES) == successes + 2
    assert await metric(client, AUTH_SUCCESSES) >= 2
    audit = await client.get(f"{tenant.owner.org_url}/audit-events", headers=tenant.owner.headers)
    events = audit.json()["items"]
    types = [e["event_type"] for e in events]
    assert types.count("auth.sso.succeeded") == 2
    assert types.count("auth.sso.user_provisioned") == 1


@pytest.mark.parametrize("sign", ["response", "both"])
async def test_a_signed_response_or_both_signed_is_accepted(
    sign: str,
    client: httpx.AsyncClient,
    sso_app: FastAPI,
    saml_idp: SamlIdp,
    dns: tuple[TxtZone, str],
) -> None:
    """The signature may cover the whole response instead of (or besides) the assertion."""
    tenant = await saml_tenant(client, dns[0], saml_idp)
    email = tenant.email()
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = saml_idp.response_xml(request, email, sign=sign)  # type: ignore[arg-type]
        done = await post_response(http, tenant, xml, request.relay_state)
    assert (await me(client, await exchange(client, done)))["email"] == email


async def test_group_maps_to_role_and_custom_attribute_names(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """attribute_mapping names the IdP's attributes; a mapped group gives its role."""
    tenant = await saml_tenant(
        client,
        dns[0],
        saml_idp,
        attribute_mapping={"email": "mail", "name": "displayName", "groups": "memberOf"},
        group_role_map={"platform-admins": ADMIN_ROLE},
    )
    assert tenant.provider["attribute_mapping"] == {
        "email": "mail",
        "name": "displayName",
        "groups": "memberOf",
    }
    email = tenant.email("admin")
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = saml_idp.response_xml(
            request,
            "not-this@elsewhere.example",  # the NameID: the mapped attribute wins
            name=None,
            omit_attributes=["email"],
            attributes={
                "mail": [email],
                "displayName": ["Grace Hopper"],
                "memberOf": ["staff", "platform-admins"],
            },
        )
        done = await post_response(http, tenant, xml, request.relay_state)
    profile = await me(client, await exchange(client, done))
    assert profile["email"] == email
    assert profile["full_name"] == "Grace Hopper"
    assert profile["roles"] == ["admin"]


async def test_without_an_email_attribute_the_email_name_id_is_used(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await saml_tenant(client, dns[0], saml_idp)
    email = tenant.email()
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = saml_idp.response_xml(request, email, omit_attributes=["email"])
        done = await post_response(http, tenant, xml, request.relay_state)
    assert (await me(client, await exchange(client, done)))["email"] == email


async def test_provider_out_and_sp_metadata(
    client: httpx.AsyncClient, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """The admin sees the SP values to give the IdP; our metadata says the same."""
    tenant = await saml_tenant(client, dns[0], saml_idp)
    out = tenant.provider
    base = f"http://testserver/api/v1/sso/{tenant.provider_id}"
    assert out["provider_type"] == "saml"
    assert out["idp_entity_id"] == saml_idp.entity_id
    assert out["sp_entity_id"] == f"{base}/metadata"
    assert out["metadata_url"] == f"{base}/metadata"
    assert out["acs_url"] == f"{base}/acs"
    assert out["login_url"] == f"{base}/login"
    assert out["allow_idp_initiated"] is False
    assert out["attribute_mapping"] == {"email": "email", "name": "name", "groups": "groups"}
    for oidc_only in ("issuer", "client_id", "token_endpoint_auth_method"):
        assert out[oidc_only] is None, oidc_only
    listed = await client.get(
        f"{tenant.owner.org_url}/sso-providers/{tenant.provider_id}", headers=tenant.owner.headers
    )
    assert listed.json()["idp_entity_id"] == saml_idp.entity_id

    metadata = await client.get(f"/api/v1/sso/{tenant.provider_id}/metadata")
    assert metadata.status_code == 200
    assert metadata.headers["content-type"].startswith("application/samlmetadata+xml")
    root = ElementTree.fromstring(metadata.text)
    assert root.get("entityID") == out["sp_entity_id"]
    sp = root.find(f"{{{MD}}}SPSSODescriptor")
    assert sp is not None
    assert sp.get("AuthnRequestsSigned") == "false"
    assert sp.get("WantAssertionsSigned") == "true"
    acs = sp.find(f"{{{MD}}}AssertionConsumerService")
    assert acs is not None
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    assert acs.get("Location") == out["acs_url"]


async def test_configured_from_the_idp_metadata_url(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """The metadata is fetched at create time (loopback http allowed in tests) and the
    login works with what it says."""
    tenant = await saml_tenant(client, dns[0], saml_idp, idp_metadata_url=saml_idp.metadata_url)
    assert tenant.provider["idp_entity_id"] == saml_idp.entity_id
    email = tenant.email()
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = saml_idp.response_xml(request, email)
        done = await post_response(http, tenant, xml, request.relay_state)
    assert (await me(client, await exchange(client, done)))["email"] == email


async def test_idp_initiated_login_when_allowed(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """With allow_idp_initiated, an unsolicited response (no InResponseTo) signs in and
    lands on the organization's registered redirect URI, whatever the IdP's RelayState
    names (no open redirect through it)."""
    tenant = await saml_tenant(client, dns[0], saml_idp, allow_idp_initiated=True)
    assert tenant.provider["allow_idp_initiated"] is True
    for relay_state in (APP_REDIRECT, "https://evil.example/steal"):
        email = tenant.email()
        xml = saml_idp.response_xml(
            None, email, sp_entity_id=tenant.provider["sp_entity_id"], acs_url=acs_url(tenant)
        )
        async with browser(sso_app) as http:
            done = await post_response(http, tenant, xml, relay_state)
        assert "state" not in httpx.URL(done.headers["location"]).params
        assert (await me(client, await exchange(client, done)))["email"] == email

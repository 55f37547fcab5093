"""SAML 2.0 SSO from the SP's side, on both backends: provider configuration (metadata
checked before anything is stored), our SP metadata, the AuthnRequest in the login
redirect, and logins end to end against a pysaml2 IdP signing with xmlsec1."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring
from fastapi import FastAPI

from tests.conftest import SEEN_SECRETS, sign_up
from tests.sso.conftest import (
    APP_REDIRECT,
    SsoTenant,
    audit_events,
    metric,
    query_of,
    refusal_logged,
    verified_domain,
)
from tests.sso.dns_server import TxtZone
from tests.sso.saml_sp_idp import (
    SamlTestIdp,
    authn_request_of,
    cert_body,
    idp_metadata,
    make_test_idp,
    self_signed,
)

pytestmark = pytest.mark.backends

IDP_ENTITY = "https://idp.saml-sp-test.example/metadata"
# Never contacted: the test plays the browser and hands the request to the IdP object.
IDP_SSO = "https://idp.saml-sp-test.example/sso"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
# pysaml2's IdP names its attributes after the "urn:mace:dir" profile.
MAPPING = {
    "email": "urn:mace:dir:attribute-def:email",
    "name": "urn:mace:dir:attribute-def:name",
    "groups": "groups",
}
ADMIN_ROLE = "b4de660a-8416-5803-8be4-4aaed1ca999f"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> SamlTestIdp:
    return make_test_idp(tmp_path_factory.mktemp("saml-idp"), IDP_ENTITY, IDP_SSO)


async def saml_tenant(
    client: httpx.AsyncClient, zone: TxtZone, idp: SamlTestIdp, **fields: Any
) -> SsoTenant:
    owner = await sign_up(client, "SAML Org")
    domain = await verified_domain(client, owner, zone)
    added = await client.post(
        f"{owner.org_url}/sso-redirect-uris", headers=owner.headers, json={"uri": APP_REDIRECT}
    )
    assert added.status_code == 201, added.text
    body = {
        "provider_type": "saml",
        "name": "Corporate SAML",
        "idp_metadata_xml": idp.metadata(),
        "allowed_domains": [domain],
        "jit_enabled": True,
        **fields,
    }
    created = await client.post(f"{owner.org_url}/sso-providers", headers=owner.headers, json=body)
    assert created.status_code == 201, created.text
    return SsoTenant(owner, domain, created.json()["id"], created.json())


async def _started(client: httpx.AsyncClient, tenant: SsoTenant, **params: str) -> str:
    response = await client.get(tenant.login_url(**params))
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    SEEN_SECRETS.add(authn_request_of(location)[2] or "")
    return location


async def _post_acs(
    client: httpx.AsyncClient,
    tenant: SsoTenant,
    saml_response: str,
    relay_state: str | None,
    request_id: str | None = None,
) -> httpx.Response:
    form = {"SAMLResponse": saml_response, **({"RelayState": relay_state} if relay_state else {})}
    headers = {"X-Request-ID": request_id} if request_id else {}
    response = await client.post(
        f"/api/v1/sso/{tenant.provider_id}/acs", data=form, headers=headers
    )
    if response.is_redirect:
        SEEN_SECRETS.update(httpx.URL(response.headers["location"]).params.get_list("code"))
    return response


async def _sp_metadata(client: httpx.AsyncClient, tenant: SsoTenant) -> str:
    response = await client.get(f"/api/v1/sso/{tenant.provider_id}/metadata")
    assert response.status_code == 200, response.text
    return response.text


async def _refused(
    client: httpx.AsyncClient,
    app: FastAPI,
    tenant: SsoTenant,
    saml_response: str,
    relay_state: str | None,
    *,
    status: int,
    code: str,
    reason: str,
    users: int = 1,
) -> None:
    """Refused with this status, code and reason: logged, counted, audited, no user made
    (``users``: how many the organization already has)."""
    series = 'sso_attempts_total{provider_type="saml",status="failure"}'
    failures = await metric(client, series)
    request_id = f"saml-{uuid.uuid4().hex}"
    response = await _post_acs(client, tenant, saml_response, relay_state, request_id)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await metric(client, series) == failures + 1
    assert refusal_logged(request_id, reason)
    events = await audit_events(app, request_id)
    assert [(e.event_type, e.details) for e in events] == [
        ("auth.sso.failed", {"reason": reason, "provider_type": "saml"})
    ]
    listed = await client.get(f"{tenant.owner.org_url}/users", headers=tenant.owner.headers)
    assert len(listed.json()["items"]) == users


# --- configuration -----------------------------------------------------------------


async def test_saml_provider_shows_what_to_register_at_the_idp(
    client: httpx.AsyncClient, idp: SamlTestIdp, dns: tuple[TxtZone, str]
) -> None:
    """The created provider names our SP entity id, ACS and metadata URLs; OIDC fields
    are null; a PATCH changes only what it sends; OIDC fields are refused; another
    organization gets 404."""
    tenant = await saml_tenant(client, dns[0], idp, attribute_mapping=MAPPING)
    out, pid = tenant.provider, tenant.provider_id
    base = f"http://testserver/api/v1/sso/{pid}"
    assert out["provider_type"] == "saml"
    assert out["sp_entity_id"] == out["metadata_url"] == f"{base}/metadata"
    assert out["acs_url"] == f"{base}/acs"
    assert out["login_url"] == f"{base}/login"
    assert out["idp_entity_id"] == IDP_ENTITY
    assert out["idp_sso_url"] == IDP_SSO
    assert out["attribute_mapping"] == MAPPING
    assert out["allow_idp_initiated"] is False
    assert out["client_secret_set"] is False
    assert {k: out[k] for k in ("issuer", "client_id", "scopes", "callback_url")} == dict.fromkeys(
        ("issuer", "client_id", "scopes", "callback_url")
    )

    url = f"{tenant.owner.org_url}/sso-providers/{pid}"
    headers = tenant.owner.headers
    patched = await client.patch(url, headers=headers, json={"allow_idp_initiated": True})
    assert patched.status_code == 200, patched.text
    assert patched.json()["allow_idp_initiated"] is True
    assert patched.json()["attribute_mapping"] == MAPPING
    wrong = await client.patch(url, headers=headers, json={"client_id": "x"})
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["error"]["code"] == "SSO_INVALID_CONFIGURATION"
    bad = await client.patch(url, headers=headers, json={"idp_metadata_xml": "<not-metadata/>"})
    assert bad.status_code == 422
    kept = await client.get(url, headers=headers)
    assert kept.json()["idp_entity_id"] == IDP_ENTITY

    other = await sign_up(client, "Other Org")
    foreign = f"{other.org_url}/sso-providers/{pid}"
    assert (await client.get(foreign, headers=other.headers)).status_code == 404
    assert (
        await client.patch(foreign, headers=other.headers, json={"name": "x"})
    ).status_code == 404


def _bad_metadata(idp: SamlTestIdp) -> dict[str, tuple[dict[str, Any], str]]:
    """case -> (fields, the phrase the refusal names)."""
    _, expired = self_signed("expired", days=-1)
    two = (
        '<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
        + idp_metadata("https://a.example/idp", IDP_SSO, [idp.certificate])
        + idp_metadata("https://b.example/idp", IDP_SSO, [idp.certificate])
        + "</md:EntitiesDescriptor>"
    )
    return {
        "not xml": ({"idp_metadata_xml": "this is not <xml"}, "well-formed"),
        "entity expansion": (
            {
                "idp_metadata_xml": '<!DOCTYPE x [<!ENTITY e "boom">]>'
                + idp_metadata(IDP_ENTITY, IDP_SSO, [idp.certificate])
            },
            "well-formed",
        ),
        "no idp descriptor": (
            {"idp_metadata_xml": f'<md:EntityDescriptor xmlns:md="{MD[1:-1]}" entityID="x"/>'},
            "IdPSSODescriptor",
        ),
        "no certificate": (
            {"idp_metadata_xml": idp_metadata(IDP_ENTITY, IDP_SSO, [])},
            "no signing certificate",
        ),
        "bad certificate": (
            {"idp_metadata_xml": idp_metadata(IDP_ENTITY, IDP_SSO, ["bm90IGEgY2VydA=="])},
            "not a valid X.509",
        ),
        "expired certificate": (
            {"idp_metadata_xml": idp_metadata(IDP_ENTITY, IDP_SSO, [cert_body(expired)])},
            "expired",
        ),
        "no redirect sso service": (
            {
                "idp_metadata_xml": idp_metadata(
                    IDP_ENTITY, IDP_SSO, [idp.certificate], binding=POST
                )
            },
            "HTTP-Redirect",
        ),
        "plain http sso service": (
            {
                "idp_metadata_xml": idp_metadata(
                    IDP_ENTITY, "ftp://idp.example/sso", [idp.certificate]
                )
            },
            "https",
        ),
        "ambiguous entity": ({"idp_metadata_xml": two}, "idp_entity_id"),
        "unknown entity": (
            {"idp_metadata_xml": two, "idp_entity_id": "https://c.example/idp"},
            "idp_entity_id",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "not xml",
        "entity expansion",
        "no idp descriptor",
        "no certificate",
        "bad certificate",
        "expired certificate",
        "no redirect sso service",
        "plain http sso service",
        "ambiguous entity",
        "unknown entity",
    ],
)
async def test_unusable_idp_metadata_is_refused_and_nothing_stored(
    case: str, client: httpx.AsyncClient, idp: SamlTestIdp
) -> None:
    owner = await sign_up(client, "SAML Org")
    fields, phrase = _bad_metadata(idp)[case]
    body = {"provider_type": "saml", "name": "IdP", "allowed_domains": ["corp.example.com"]}
    response = await client.post(
        f"{owner.org_url}/sso-providers", headers=owner.headers, json={**body, **fields}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "SSO_INVALID_CONFIGURATION"
    assert phrase in response.json()["error"]["message"]
    listed = await client.get(f"{owner.org_url}/sso-providers", headers=owner.headers)
    assert listed.json() == []


async def test_one_of_several_idps_is_picked_by_entity_id(
    client: httpx.AsyncClient, idp: SamlTestIdp
) -> None:
    owner = await sign_up(client, "SAML Org")
    fields, _ = _bad_metadata(idp)["ambiguous entity"]
    response = await client.post(
        f"{owner.org_url}/sso-providers",
        headers=owner.headers,
        json={
            "provider_type": "saml",
            "name": "IdP",
            "allowed_domains": ["corp.example.com"],
            "idp_entity_id": "https://b.example/idp",
            **fields,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["idp_entity_id"] == "https://b.example/idp"


async def test_both_or_neither_metadata_source_is_a_422(
    client: httpx.AsyncClient, idp: SamlTestIdp
) -> None:
    owner = await sign_up(client, "SAML Org")
    body = {"provider_type": "saml", "name": "IdP", "allowed_domains": ["corp.example.com"]}
    for extra in (
        {},
        {"idp_metadata_xml": idp.metadata(), "idp_metadata_url": "https://x.example/md"},
    ):
        response = await client.post(
            f"{owner.org_url}/sso-providers", headers=owner.headers, json={**body, **extra}
        )
        assert response.status_code == 422, response.text


@pytest.fixture
def metadata_server(idp: SamlTestIdp) -> Iterator[str]:
    """A metadata URL on 127.0.0.1 (http: the test settings allow local IdPs)."""
    document = idp.metadata().encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/metadata.xml"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.end_headers()
            self.wfile.write(document if found else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_metadata_url_is_fetched_and_an_unreachable_one_refused(
    client: httpx.AsyncClient, metadata_server: str
) -> None:
    owner = await sign_up(client, "SAML Org")
    body = {"provider_type": "saml", "name": "IdP", "allowed_domains": ["corp.example.com"]}
    url = f"{owner.org_url}/sso-providers"
    fetched = await client.post(
        url,
        headers=owner.headers,
        json={**body, "idp_metadata_url": f"{metadata_server}/metadata.xml"},
    )
    assert fetched.status_code == 201, fetched.text
    assert fetched.json()["idp_entity_id"] == IDP_ENTITY
    assert fetched.json()["idp_metadata_url"] == f"{metadata_server}/metadata.xml"
    for missing in (f"{metadata_server}/nothing-here", "http://127.0.0.1:9/metadata.xml"):
        refused = await client.post(
            url, headers=owner.headers, json={**body, "idp_metadata_url": missing}
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "SSO_DISCOVERY_FAILED"
    listed = await client.get(url, headers=owner.headers)
    assert [p["id"] for p in listed.json()] == [fetched.json()["id"]]


# --- SP metadata and the redirect ----------------------------------------------------


async def test_sp_metadata_names_our_entity_and_acs(
    client: httpx.AsyncClient, idp: SamlTestIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await saml_tenant(client, dns[0], idp)
    response = await client.get(f"/api/v1/sso/{tenant.provider_id}/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/samlmetadata+xml")
    root = fromstring(response.text)
    assert root.tag == f"{MD}EntityDescriptor"
    assert root.get("entityID") == tenant.provider["sp_entity_id"]
    sp = root.find(f"{MD}SPSSODescriptor")
    assert sp is not None
    assert (sp.get("AuthnRequestsSigned"), sp.get("WantAssertionsSigned")) == ("false", "true")
    acs = sp.findall(f"{MD}AssertionConsumerService")
    assert [(a.get("Binding"), a.get("Location")) for a in acs] == [
        (POST, tenant.provider["acs_url"])
    ]
    unknown = await client.get(f"/api/v1/sso/{uuid.uuid4()}/metadata")
    assert unknown.status_code == 404


async def test_login_redirects_to_the_idp_with_our_authn_request(
    client: httpx.AsyncClient, idp: SamlTestIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await saml_tenant(client, dns[0], idp)
    location = await _started(client, tenant, state="app-state-1")
    assert location.startswith(IDP_SSO + "?")
    xml, _, relay_state = authn_request_of(location)
    request = fromstring(xml)
    assert request.tag == f"{SAMLP}AuthnRequest"
    assert request.get("ID")
    assert request.get("Destination") == IDP_SSO
    assert request.get("AssertionConsumerServiceURL") == tenant.provider["acs_url"]
    assert request.get("ProtocolBinding") == POST
    issuer = request.find(f"{SAML}Issuer")
    assert issuer is not None
    assert issuer.text == tenant.provider["sp_entity_id"]
    assert request.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None
    assert relay_state
    assert "app-state-1" not in relay_state
    again = authn_request_of(await _started(client, tenant))
    assert fromstring(again[0]).get("ID") != request.get("ID")
    assert again[2] != relay_state

    foreign = await client.get(tenant.login_url("https://evil.example/cb"))
    assert foreign.status_code == 400
    assert foreign.json()["error"]["code"] == "SSO_REDIRECT_URI_NOT_REGISTERED"


# --- end to end ----------------------------------------------------------------------


async def test_saml_login_provisions_maps_groups_and_trades_the_code(
    client: httpx.AsyncClient, sso_app: FastAPI, idp: SamlTestIdp, dns: tuple[TxtZone, str]
) -> None:
    """Login through the IdP: JIT user with the group's role, the app's state back, the
    code traded for tokens, counted as a SAML success; the same response again is
    refused as a replay and creates nothing."""
    tenant = await saml_tenant(
        client, dns[0], idp, attribute_mapping=MAPPING, group_role_map={"admins": ADMIN_ROLE}
    )
    email = tenant.email("ann")
    success = 'sso_attempts_total{provider_type="saml",status="success"}'
    auth = 'auth_attempts_total{method="sso_saml",status="success"}'
    before = (await metric(client, success), await metric(client, auth))
    location = await _started(client, tenant, state="app-state-1")
    saml_response = idp.respond(
        location,
        await _sp_metadata(client, tenant),
        email=email,
        attributes={"email": [email], "name": ["Ann Example"], "groups": ["staff", "admins"]},
    )
    relay_state = authn_request_of(location)[2]
    done = await _post_acs(client, tenant, saml_response, relay_state)
    assert done.status_code == 302, done.text
    assert done.headers["location"].startswith(APP_REDIRECT + "?")
    query = query_of(done)
    assert query["state"] == "app-state-1"
    exchanged = await client.post("/api/v1/sso/token", json={"code": query["code"]})
    assert exchanged.status_code == 200, exchanged.text
    me = await client.get(
        "/api/v1/auth/me",
        headers={"Authorization": f"Bearer {exchanged.json()['access_token']}"},
    )
    assert (me.json()["email"], me.json()["full_name"]) == (email, "Ann Example")
    assert me.json()["roles"] == ["admin"]
    assert (await metric(client, success), await metric(client, auth)) == (
        before[0] + 1,
        before[1] + 1,
    )
    await _refused(
        client, sso_app, tenant, saml_response, relay_state,
        status=400, code="SSO_STATE_INVALID", reason="replayed", users=2,
    )  # fmt: skip


async def test_nameid_email_is_used_without_an_email_attribute(
    client: httpx.AsyncClient, idp: SamlTestIdp, dns: tuple[TxtZone, str]
) -> None:
    """Default mapping ("email") finds no such attribute: the emailAddress NameID is the
    email; a second login links the same user."""
    tenant = await saml_tenant(client, dns[0], idp)
    email = tenant.email("bob")
    user_ids = []
    for _ in range(2):
        location = await _started(client, tenant)
        saml_response = idp.respond(
            location, await _sp_metadata(client, tenant), email=email, attributes={}
        )
        done = await _post_acs(client, tenant, saml_response, authn_request_of(location)[2])
        assert done.status_code == 302, done.text
        assert "state" not in query_of(done)
        tokens = await client.post("/api/v1/sso/token", json={"code": query_of(done)["code"]})
        me = await client.get(
            "/api/v1/auth/me",
            headers={"Authorization": f"Bearer {tokens.json()['access_token']}"},
        )
        assert me.json()["email"] == email
        user_ids.append(me.json()["id"])
    assert user_ids[0] == user_ids[1]


async def test_idp_initiated_login_only_when_allowed(
    client: httpx.AsyncClient, sso_app: FastAPI, idp: SamlTestIdp, dns: tuple[TxtZone, str]
) -> None:
    """Without allow_idp_initiated an unsolicited response is refused; with it, the
    browser goes to the organization's first registered redirect URI, once."""
    tenant = await saml_tenant(client, dns[0], idp)
    sp_md = await _sp_metadata(client, tenant)
    target = (tenant.provider["sp_entity_id"], tenant.provider["acs_url"])
    unsolicited = idp.respond("", sp_md, email=tenant.email(), unsolicited_to=target)
    await _refused(
        client, sso_app, tenant, unsolicited, "whatever-the-idp-sent",
        status=401, code="SSO_ASSERTION_INVALID", reason="unsolicited",
    )  # fmt: skip

    url = f"{tenant.owner.org_url}/sso-providers/{tenant.provider_id}"
    patched = await client.patch(
        url, headers=tenant.owner.headers, json={"allow_idp_initiated": True}
    )
    assert patched.status_code == 200
    fresh = idp.respond("", sp_md, email=tenant.email(), unsolicited_to=target)
    done = await _post_acs(client, tenant, fresh, "https://evil.example/relay")
    assert done.status_code == 302, done.text
    assert done.headers["location"].startswith(APP_REDIRECT + "?code=")
    assert "state" not in query_of(done)
    await _refused(
        client, sso_app, tenant, fresh, None,
        status=400, code="SSO_STATE_INVALID", reason="replayed", users=2,
    )  # fmt: skip


async def test_tampered_unsigned_and_oversized_responses_are_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, idp: SamlTestIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await saml_tenant(client, dns[0], idp)
    location = await _started(client, tenant)
    relay_state = authn_request_of(location)[2]
    email = tenant.email("carol")
    signed = idp.respond(location, await _sp_metadata(client, tenant), email=email)
    xml = base64.b64decode(signed).decode()
    tampered = base64.b64encode(xml.replace(email, tenant.email("mallory")).encode()).decode()
    await _refused(
        client, sso_app, tenant, tampered, relay_state,
        status=401, code="SSO_ASSERTION_INVALID", reason="invalid_signature",
    )  # fmt: skip
    await _refused(
        client, sso_app, tenant, "not base64 at all!", relay_state,
        status=401, code="SSO_ASSERTION_INVALID", reason="malformed",
    )  # fmt: skip
    huge = base64.b64encode(b"<x>" + b"a" * (300 * 1024) + b"</x>").decode()
    await _refused(
        client, sso_app, tenant, huge, relay_state,
        status=413, code="SSO_RESPONSE_TOO_LARGE", reason="response_too_large",
    )  # fmt: skip
    # The pending login survived the refusals: the genuine response still signs in.
    done = await _post_acs(client, tenant, signed, relay_state)
    assert done.status_code == 302, done.text


def test_fixture_files_stay_in_the_temp_dir(idp: SamlTestIdp) -> None:
    """The IdP's key lives in pytest's temp dir, never in the repository."""
    assert Path(__file__).parent not in idp.key_file.parents

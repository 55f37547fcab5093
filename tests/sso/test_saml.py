"""SAML 2.0 SSO from the SP's side, on both backends: provider configuration (metadata
checked before anything is stored), our SP metadata, the AuthnRequest in the login
redirect, attribute mapping, IdP-initiated logins and the spans and counters, against
the pysaml2 test IdP (``saml_idp``). The attack matrix is in ``test_saml_attacks``."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from defusedxml.ElementTree import fromstring
from fastapi import FastAPI

from faultmaven_auth.config import Settings
from tests.conftest import CAPTURED_SPAN_TEXT, SEEN_SECRETS, client_for, running_app, sign_up
from tests.observability.otlp_receiver import OtlpReceiver, children, one
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
from tests.sso.saml_idp import SamlIdp, encode

pytestmark = pytest.mark.backends

POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
# Attribute Names as Entra ID or ADFS send them (not the defaults).
MAPPING = {
    "email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "name": "http://schemas.microsoft.com/identity/claims/displayname",
    "groups": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
}
ADMIN_ROLE = "b4de660a-8416-5803-8be4-4aaed1ca999f"


@pytest.fixture
def idp(saml_idp: SamlIdp) -> SamlIdp:
    return saml_idp


def expired_certificate() -> str:
    """A self-signed certificate (base64 DER) that expired yesterday."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()


async def saml_tenant(
    client: httpx.AsyncClient, zone: TxtZone, idp: SamlIdp, **fields: Any
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
        "idp_metadata_xml": idp.metadata_xml(),
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
    SEEN_SECRETS.add(httpx.URL(location).params["RelayState"])
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
    client: httpx.AsyncClient, idp: SamlIdp, dns: tuple[TxtZone, str]
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
    assert out["idp_entity_id"] == idp.entity_id
    assert out["idp_sso_url"] == idp.sso_url
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
    assert kept.json()["idp_entity_id"] == idp.entity_id

    other = await sign_up(client, "Other Org")
    foreign = f"{other.org_url}/sso-providers/{pid}"
    assert (await client.get(foreign, headers=other.headers)).status_code == 404
    assert (
        await client.patch(foreign, headers=other.headers, json={"name": "x"})
    ).status_code == 404


def _bad_metadata(idp: SamlIdp) -> dict[str, tuple[dict[str, Any], str]]:
    """case -> (fields, the phrase the refusal names)."""
    good = idp.metadata_xml()
    certificate = idp.key.cert_base64
    no_key = re.sub(r"<md:KeyDescriptor.*</md:KeyDescriptor>", "", good)
    two = (
        '<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
        + idp.metadata_xml(entity_id="https://a.example/idp")
        + idp.metadata_xml(entity_id="https://b.example/idp")
        + "</md:EntitiesDescriptor>"
    )
    return {
        "not xml": ({"idp_metadata_xml": "this is not <xml"}, "well-formed"),
        "entity expansion": (
            {"idp_metadata_xml": '<!DOCTYPE x [<!ENTITY e "boom">]>' + good},
            "well-formed",
        ),
        "no idp descriptor": (
            {"idp_metadata_xml": f'<md:EntityDescriptor xmlns:md="{MD[1:-1]}" entityID="x"/>'},
            "IdPSSODescriptor",
        ),
        "no certificate": ({"idp_metadata_xml": no_key}, "no signing certificate"),
        "bad certificate": (
            {"idp_metadata_xml": good.replace(certificate, "bm90IGEgY2VydA==")},
            "not a valid X.509",
        ),
        "expired certificate": (
            {"idp_metadata_xml": good.replace(certificate, expired_certificate())},
            "expired",
        ),
        "no redirect sso service": (
            {"idp_metadata_xml": idp.metadata_xml(sso_binding=POST)},
            "HTTP-Redirect",
        ),
        "plain ftp sso service": (
            {"idp_metadata_xml": idp.metadata_xml(sso_url="ftp://idp.example/sso")},
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
        "plain ftp sso service",
        "ambiguous entity",
        "unknown entity",
    ],
)
async def test_unusable_idp_metadata_is_refused_and_nothing_stored(
    case: str, client: httpx.AsyncClient, idp: SamlIdp
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
    client: httpx.AsyncClient, idp: SamlIdp
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
    client: httpx.AsyncClient, idp: SamlIdp
) -> None:
    owner = await sign_up(client, "SAML Org")
    body = {"provider_type": "saml", "name": "IdP", "allowed_domains": ["corp.example.com"]}
    for extra in (
        {},
        {"idp_metadata_xml": idp.metadata_xml(), "idp_metadata_url": "https://x.example/md"},
    ):
        response = await client.post(
            f"{owner.org_url}/sso-providers", headers=owner.headers, json={**body, **extra}
        )
        assert response.status_code == 422, response.text


async def test_metadata_url_is_fetched_and_an_unreachable_one_refused(
    client: httpx.AsyncClient, idp: SamlIdp
) -> None:
    """The metadata URL is fetched at creation (http to 127.0.0.1: the test settings
    allow local IdPs); a 404 or a closed port is a 400 and nothing is stored."""
    owner = await sign_up(client, "SAML Org")
    body = {"provider_type": "saml", "name": "IdP", "allowed_domains": ["corp.example.com"]}
    url = f"{owner.org_url}/sso-providers"
    fetched = await client.post(
        url,
        headers=owner.headers,
        json={**body, "idp_metadata_url": idp.metadata_url},
    )
    assert fetched.status_code == 201, fetched.text
    assert fetched.json()["idp_entity_id"] == idp.entity_id
    assert fetched.json()["idp_metadata_url"] == idp.metadata_url
    for missing in (idp.metadata_url + "/nothing-here", "http://127.0.0.1:9/metadata.xml"):
        refused = await client.post(
            url, headers=owner.headers, json={**body, "idp_metadata_url": missing}
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "SSO_DISCOVERY_FAILED"
    listed = await client.get(url, headers=owner.headers)
    assert [p["id"] for p in listed.json()] == [fetched.json()["id"]]


# --- SP metadata and the redirect ----------------------------------------------------


async def test_sp_metadata_names_our_entity_and_acs(
    client: httpx.AsyncClient, idp: SamlIdp, dns: tuple[TxtZone, str]
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
    client: httpx.AsyncClient, idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await saml_tenant(client, dns[0], idp)
    location = await _started(client, tenant, state="app-state-1")
    seen = idp.read_login(location)
    relay_state = seen.relay_state
    request = fromstring(seen.xml)
    assert request.tag == f"{SAMLP}AuthnRequest"
    assert request.get("ID")
    assert request.get("Destination") == idp.sso_url
    assert request.get("AssertionConsumerServiceURL") == tenant.provider["acs_url"]
    assert request.get("ProtocolBinding") == POST
    issuer = request.find(f"{SAML}Issuer")
    assert issuer is not None
    assert issuer.text == tenant.provider["sp_entity_id"]
    assert request.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None
    assert relay_state
    assert "app-state-1" not in relay_state
    again = idp.read_login(await _started(client, tenant))
    assert again.id != request.get("ID")
    assert again.relay_state != relay_state

    foreign = await client.get(tenant.login_url("https://evil.example/cb"))
    assert foreign.status_code == 400
    assert foreign.json()["error"]["code"] == "SSO_REDIRECT_URI_NOT_REGISTERED"


# --- end to end ----------------------------------------------------------------------


async def test_saml_login_provisions_maps_groups_and_trades_the_code(
    client: httpx.AsyncClient, sso_app: FastAPI, idp: SamlIdp, dns: tuple[TxtZone, str]
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
    seen = idp.read_login(location)
    saml_response = encode(
        idp.response_xml(
            seen,
            email,
            name=None,
            omit_attributes=("email",),
            attributes={
                MAPPING["email"]: [email],
                MAPPING["name"]: ["Ann Example"],
                MAPPING["groups"]: ["staff", "admins"],
            },
        )
    )
    relay_state = seen.relay_state
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
    client: httpx.AsyncClient, idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """Default mapping ("email") finds no such attribute: the emailAddress NameID is the
    email; a second login links the same user."""
    tenant = await saml_tenant(client, dns[0], idp)
    email = tenant.email("bob")
    user_ids = []
    for _ in range(2):
        location = await _started(client, tenant)
        seen = idp.read_login(location)
        saml_response = encode(idp.response_xml(seen, email, omit_attributes=("email",)))
        done = await _post_acs(client, tenant, saml_response, seen.relay_state)
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
    client: httpx.AsyncClient, sso_app: FastAPI, idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """Without allow_idp_initiated an unsolicited response is refused; with it, the
    browser goes to the organization's first registered redirect URI, once."""
    tenant = await saml_tenant(client, dns[0], idp)
    target = {
        "sp_entity_id": tenant.provider["sp_entity_id"],
        "acs_url": tenant.provider["acs_url"],
    }
    unsolicited = encode(idp.response_xml(None, tenant.email(), **target))
    await _refused(
        client, sso_app, tenant, unsolicited, "whatever-the-idp-sent",
        status=401, code="SSO_ASSERTION_INVALID", reason="unsolicited",
    )  # fmt: skip

    url = f"{tenant.owner.org_url}/sso-providers/{tenant.provider_id}"
    patched = await client.patch(
        url, headers=tenant.owner.headers, json={"allow_idp_initiated": True}
    )
    assert patched.status_code == 200
    fresh = encode(idp.response_xml(None, tenant.email(), **target))
    done = await _post_acs(client, tenant, fresh, "https://evil.example/relay")
    assert done.status_code == 302, done.text
    assert done.headers["location"].startswith(APP_REDIRECT + "?code=")
    assert "state" not in query_of(done)
    await _refused(
        client, sso_app, tenant, fresh, None,
        status=400, code="SSO_STATE_INVALID", reason="replayed", users=2,
    )  # fmt: skip


async def test_tampered_unsigned_and_oversized_responses_are_refused(
    client: httpx.AsyncClient, sso_app: FastAPI, idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    tenant = await saml_tenant(client, dns[0], idp)
    location = await _started(client, tenant)
    seen = idp.read_login(location)
    relay_state = seen.relay_state
    email = tenant.email("carol")
    signed = encode(idp.response_xml(seen, email))
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


async def test_saml_login_spans_and_counters(
    backend_settings: Settings, idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """The redirect, the assertion validation and the provisioning are spans under their
    requests, with nothing secret in them; SAML attempts are counted under their own
    labels, the OIDC series untouched."""
    receiver = OtlpReceiver().start()
    settings = backend_settings.model_copy(
        update={
            "sso_allow_insecure_issuers": True,
            "sso_dns_nameservers": [dns[1]],
            "database_pool_size": 2,
            "otel_exporter_otlp_endpoint": receiver.endpoint,
            "tracing_sample_ratio": 1.0,
        }
    )
    try:
        async with running_app(settings) as app, client_for(app) as client:
            tenant = await saml_tenant(client, dns[0], idp)
            email = tenant.email()
            location = await _started(client, tenant)
            seen = idp.read_login(location)
            relay_state = seen.relay_state
            saml_response = encode(idp.response_xml(seen, email))
            done = await _post_acs(client, tenant, saml_response, relay_state)
            assert done.status_code == 302, done.text
            code = query_of(done)["code"]
            assert (await _post_acs(client, tenant, saml_response, relay_state)).status_code == 400
            for labels, value in (
                ('provider_type="saml",status="success"', 1),
                ('provider_type="saml",status="failure"', 1),
                ('provider_type="oidc",status="success"', 0),
            ):
                assert await metric(client, f"sso_attempts_total{{{labels}}}") == value
            for status in ("success", "failure"):
                series = f'auth_attempts_total{{method="sso_saml",status="{status}"}}'
                assert await metric(client, series) == 1
    finally:
        receiver.stop()
    spans = receiver.spans()
    CAPTURED_SPAN_TEXT.extend(span.text() for span in spans)

    start = one(spans, "GET /api/v1/sso/{provider_id}/login")
    assert [s.name for s in children(spans, start)][:1] == ["sso_redirect"]
    acs = [s for s in spans if s.name == "POST /api/v1/sso/{provider_id}/acs"]
    succeeded = next(s for s in acs if s.attributes["http.response.status_code"] == 302)
    names = [s.name for s in children(spans, succeeded)]
    assert "sso_assertion_validation" in names
    assert "sso_provisioning" in names
    assert one(spans, "sso_provisioning").attributes["sso.user_created"] is True
    everything = "\n".join(span.text() for span in spans)
    for secret in (email, relay_state or "", code, saml_response[:40]):
        assert secret not in everything

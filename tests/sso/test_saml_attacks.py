"""Forged, tampered, misdirected, expired and unreadable SAML responses at the real
ACS. Each response differs from a correct one (made by the same IdP for the same login)
in one way; each is refused with its reason logged, counted (sso_attempts_total and
auth_attempts_total, failure) and audited, and nothing is created. Runs on both backends."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from tests.sso.conftest import (
    SsoTenant,
    browser,
    saml_tenant,
)
from tests.sso.dns_server import TxtZone
from tests.sso.saml_forgery import (
    split_by_comment,
    tamper,
    with_doctype,
    wrap_extra_assertion,
    wrap_in_extensions,
    wrap_in_object,
)
from tests.sso.saml_idp import (
    OMIT,
    AuthnRequestSeen,
    SamlIdp,
)
from tests.sso.saml_steps import (
    ASSERTION_INVALID,
    PROVIDER_ERROR,
    STATE_INVALID,
    acs_url,
    assert_refused,
    exchange,
    form,
    me,
    start_login,
)

pytestmark = pytest.mark.backends

ATTACKER_LOCAL = "mallory"
EVIL_ACS = "https://evil.example/acs"
AUTHN_FAILED = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"

# (idp, request, victim email, attacker email) -> the response XML the attacker posts
Forge = Callable[[SamlIdp, AuthnRequestSeen, str, str], str]


def _ago(seconds: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


ATTACKS: dict[str, tuple[Forge, str, tuple[int, str]]] = {
    "nothing signed": (
        lambda i, r, v, a: i.response_xml(r, v, sign="none"),
        "signature_missing",
        ASSERTION_INVALID,
    ),
    "assertion signed by another key": (
        lambda i, r, v, a: i.response_xml(r, v, signing_key=i.attacker),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "response signed by another key": (
        lambda i, r, v, a: i.response_xml(r, v, sign="response", signing_key=i.attacker),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "both signed by another key": (
        lambda i, r, v, a: i.response_xml(r, v, sign="both", signing_key=i.attacker),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "IdP-signed response around an assertion signed by another key": (
        lambda i, r, v, a: i.response_xml(r, v, sign="both", assertion_signing_key=i.attacker),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "response signed by another key around an IdP-signed assertion": (
        lambda i, r, v, a: i.response_xml(
            r, v, sign="both", signing_key=i.attacker, assertion_signing_key=i.key
        ),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "email changed after the assertion was signed": (
        lambda i, r, v, a: tamper(i.response_xml(r, v), v, a),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "email changed after the response was signed": (
        lambda i, r, v, a: tamper(i.response_xml(r, v, sign="response"), v, a),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "wrapping: forged assertion before the signed one": (
        lambda i, r, v, a: wrap_extra_assertion(i.response_xml(r, v), v, a, where="before"),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "wrapping: forged assertion after the signed one": (
        lambda i, r, v, a: wrap_extra_assertion(i.response_xml(r, v), v, a, where="after"),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "wrapping: signed assertion moved into Extensions": (
        lambda i, r, v, a: wrap_in_extensions(i.response_xml(r, v), v, a),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "wrapping: signed assertion moved into a ds:Object": (
        lambda i, r, v, a: wrap_in_object(i.response_xml(r, v), v, a),
        "invalid_signature",
        ASSERTION_INVALID,
    ),
    "another audience": (
        lambda i, r, v, a: i.response_xml(r, v, sign="both", audience="https://other-sp.example"),
        "audience_mismatch",
        ASSERTION_INVALID,
    ),
    "another destination": (
        lambda i, r, v, a: i.response_xml(r, v, sign="both", destination=EVIL_ACS),
        "destination_mismatch",
        ASSERTION_INVALID,
    ),
    "no destination on a signed response": (
        lambda i, r, v, a: i.response_xml(r, v, sign="both", destination=OMIT),
        "destination_mismatch",
        ASSERTION_INVALID,
    ),
    "another recipient": (
        lambda i, r, v, a: i.response_xml(r, v, sign="both", recipient=EVIL_ACS),
        "recipient_mismatch",
        ASSERTION_INVALID,
    ),
    "no recipient": (
        lambda i, r, v, a: i.response_xml(r, v, sign="both", recipient=OMIT),
        "recipient_mismatch",
        ASSERTION_INVALID,
    ),
    "expired beyond the clock skew": (
        lambda i, r, v, a: i.response_xml(
            r, v, sign="both", not_before=_ago(900), not_on_or_after=_ago(300)
        ),
        "expired",
        ASSERTION_INVALID,
    ),
    "subject confirmation expired beyond the clock skew": (
        lambda i, r, v, a: i.response_xml(
            r, v, sign="both", confirmation_not_on_or_after=_ago(300)
        ),
        "expired",
        ASSERTION_INVALID,
    ),
    "not valid before a time beyond the clock skew": (
        lambda i, r, v, a: i.response_xml(r, v, sign="both", not_before=_ago(-600)),
        "not_yet_valid",
        ASSERTION_INVALID,
    ),
    "issued by another IdP": (
        lambda i, r, v, a: i.response_xml(r, v, sign="both", issuer="https://other-idp.example"),
        "issuer_mismatch",
        ASSERTION_INVALID,
    ),
    "assertion issued by another IdP inside the IdP's response": (
        lambda i, r, v, a: i.response_xml(
            r, v, sign="both", assertion_issuer="https://other-idp.example"
        ),
        "issuer_mismatch",
        ASSERTION_INVALID,
    ),
    "answer to another login of the same provider": (
        lambda i, r, v, a: i.response_xml(r, v, sign="both", in_response_to="id-another-login"),
        "state_mismatch",
        STATE_INVALID,
    ),
    "error status from the IdP": (
        lambda i, r, v, a: i.response_xml(r, v, status=AUTHN_FAILED),
        "provider_error",
        PROVIDER_ERROR,
    ),
}


async def _tenant(client: httpx.AsyncClient, dns: tuple[TxtZone, str], idp: SamlIdp) -> SsoTenant:
    return await saml_tenant(client, dns[0], idp)


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_forged_response_is_refused(
    attack: str,
    client: httpx.AsyncClient,
    sso_app: FastAPI,
    saml_idp: SamlIdp,
    dns: tuple[TxtZone, str],
) -> None:
    forge, reason, refusal = ATTACKS[attack]
    tenant = await _tenant(client, dns, saml_idp)
    victim = tenant.email("victim")
    attacker = f"{ATTACKER_LOCAL}@{tenant.domain}"
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = forge(saml_idp, request, victim, attacker)
        await assert_refused(
            client,
            sso_app,
            http,
            tenant,
            form(xml, request.relay_state),
            refusal=refusal,
            reason=reason,
        )


async def test_control_the_same_login_with_a_correct_response_signs_in(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """The control for the attacks above, and the clock skew: a response whose
    NotOnOrAfter passed a minute ago (within the 120 s skew) is still accepted."""
    tenant = await _tenant(client, dns, saml_idp)
    email = tenant.email()
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = saml_idp.response_xml(
            request, email, sign="both", not_before=_ago(600), not_on_or_after=_ago(60)
        )
        done = await http.post(acs_url(tenant), data=form(xml, request.relay_state))
    assert (await me(client, await exchange(client, done)))["email"] == email


@pytest.mark.parametrize(
    "value",
    [
        "",
        "%%% not base64 %%%",
        base64.b64encode(b"this is not XML").decode(),
        base64.b64encode(b"<html><body>an error page</body></html>").decode(),
    ],
)
async def test_malformed_response_is_refused(
    value: str,
    client: httpx.AsyncClient,
    sso_app: FastAPI,
    saml_idp: SamlIdp,
    dns: tuple[TxtZone, str],
) -> None:
    tenant = await _tenant(client, dns, saml_idp)
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        await assert_refused(
            client,
            sso_app,
            http,
            tenant,
            {"SAMLResponse": value, "RelayState": request.relay_state},
            refusal=ASSERTION_INVALID,
            reason="malformed",
        )


async def test_doctype_and_entities_are_refused_as_malformed(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """A correctly signed response behind a DOCTYPE with entity declarations (entity
    expansion, an external file): never parsed with them."""
    tenant = await _tenant(client, dns, saml_idp)
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        xml = with_doctype(saml_idp.response_xml(request, tenant.email()))
        await assert_refused(
            client,
            sso_app,
            http,
            tenant,
            form(xml, request.relay_state),
            refusal=ASSERTION_INVALID,
            reason="malformed",
        )


async def test_comment_in_the_email_does_not_truncate_it(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """The IdP signs ``admin@<org domain>.attacker.test`` (an address the attacker may
    hold); a comment inserted after the org domain leaves the signature valid. The whole
    address is read, so it is outside the org's domains: refused, nobody signed in."""
    tenant = await _tenant(client, dns, saml_idp)
    admin = f"admin@{tenant.domain}"
    attacker_address = f"{admin}.attacker.test"
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        signed = saml_idp.response_xml(request, attacker_address, sign="both")
        xml = split_by_comment(signed, attacker_address, len(admin))
        await assert_refused(
            client,
            sso_app,
            http,
            tenant,
            form(xml, request.relay_state),
            refusal=(403, "SSO_DOMAIN_NOT_ALLOWED"),
            reason="domain_not_allowed",
        )


async def test_the_authn_request_posted_back_is_refused_as_malformed(
    client: httpx.AsyncClient, sso_app: FastAPI, saml_idp: SamlIdp, dns: tuple[TxtZone, str]
) -> None:
    """Well-formed SAML that is not a Response."""
    tenant = await _tenant(client, dns, saml_idp)
    async with browser(sso_app) as http:
        request = await start_login(http, saml_idp, tenant)
        await assert_refused(
            client,
            sso_app,
            http,
            tenant,
            form(request.xml, request.relay_state),
            refusal=ASSERTION_INVALID,
            reason="malformed",
        )

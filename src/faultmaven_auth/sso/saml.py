"""SAML 2.0 Web Browser SSO, SP-initiated: the redirect to the IdP and the ACS.

1. ``start_login``: the application sends the browser to ``/api/v1/sso/{id}/login``
   with a registered ``redirect_uri``. We build an AuthnRequest (pysaml2, unsigned,
   HTTP-Redirect binding), keep its ID single-use in the key-value store under a
   random RelayState (with the redirect URI and the application's state) and send the
   browser to the IdP's SingleSignOnService.
2. ``finish_login``: the IdP posts the SAMLResponse and the RelayState to our ACS.
   The response is checked (``saml_response``; signatures through pysaml2/xmlsec1 in a
   worker thread). An assertion ID accepted before is ``replayed``. Then the
   RelayState is consumed and the response's InResponseTo must be that login's
   AuthnRequest ID (``state_mismatch`` otherwise, a spent RelayState included), the
   assertion ID goes into the replay store, and the identity is mapped and the user
   signed in exactly as for OIDC (``login.complete_login``): the browser goes to the
   redirect URI with a one-time code for ``POST /api/v1/sso/token``.

IdP-initiated responses (no InResponseTo) are refused (``unsolicited``) unless the
provider has ``allow_idp_initiated``; then they pass every other check, the replay
store included, and the browser goes to the organization's first registered redirect
URI with no ``state`` (the IdP's RelayState is ignored: it is not ours to trust).

The pysaml2 SP configuration is built per provider in memory from the checked
metadata essentials kept in the provider's ``config``; pysaml2 writes the document
and certificate to temporary files for xmlsec1 and deletes them.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import secrets
import shutil
import time
import uuid
from typing import Any

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, class_name
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.sigver import CryptoBackendXmlSec1
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from faultmaven_auth.audit.recorder import RequestMeta
from faultmaven_auth.config import Settings
from faultmaven_auth.hostile_input import printable, unsafe_text
from faultmaven_auth.observability.tracing import traced
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.sso.errors import SamlLoginRefused, SsoLoginRefused
from faultmaven_auth.sso.login import Protocol, complete_login, enabled_provider, refuse
from faultmaven_auth.sso.provisioning import AssertedIdentity
from faultmaven_auth.sso.redirect_uris import list_redirect_uris, redirect_uri_registered
from faultmaven_auth.sso.saml_metadata import (
    NAMEID_EMAIL,
    IdpMetadata,
    idp_metadata_xml,
    sp_metadata_xml,
)
from faultmaven_auth.sso.saml_response import (
    CheckedAssertion,
    Expected,
    check_response,
    decode_response,
)
from faultmaven_auth.sso.state import (
    PendingSamlLogin,
    accept_assertion_once,
    assertion_accepted,
    save_pending_saml_login,
    take_pending_saml_login,
)
from faultmaven_auth.storage.models import SsoProvider
from faultmaven_auth.storage.tenancy import OrgId

PROTOCOL = Protocol(provider_type="saml", auth_method="sso_saml")
METADATA_MEDIA_TYPE = "application/samlmetadata+xml"
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"


def _base(settings: Settings) -> str:
    return (settings.sso_public_base_url or settings.jwt_issuer).rstrip("/")


def sp_entity_id(settings: Settings, provider_id: uuid.UUID) -> str:
    """Our entity ID for this provider, which is also where our metadata is served."""
    return f"{_base(settings)}/api/v1/sso/{provider_id}/metadata"


def acs_url(settings: Settings, provider_id: uuid.UUID) -> str:
    return f"{_base(settings)}/api/v1/sso/{provider_id}/acs"


def idp_of(provider: SsoProvider) -> IdpMetadata:
    config = provider.config
    return IdpMetadata(
        config["idp_entity_id"], config["idp_sso_url"], list(config["idp_certificates"])
    )


@functools.cache
def _xmlsec1_version(binary: str) -> str:
    return str(CryptoBackendXmlSec1(binary).version)


class _XmlSec1(CryptoBackendXmlSec1):  # type: ignore[misc]
    """pysaml2's xmlsec1 backend, asking the binary for its version once per process
    instead of twice per verified signature (each ask is a subprocess)."""

    @property
    def version(self) -> str:
        return _xmlsec1_version(self.xmlsec)


def _xmlsec1_binary() -> str:
    return shutil.which("xmlsec1") or "/usr/bin/xmlsec1"


def _client(provider: SsoProvider, settings: Settings) -> Saml2Client:
    """pysaml2's SP for this provider, configured in memory."""
    acs = acs_url(settings, provider.id)
    config = SPConfig()
    config.load(
        {
            "entityid": sp_entity_id(settings, provider.id),
            "xmlsec_binary": _xmlsec1_binary(),
            "metadata": {"inline": [idp_metadata_xml(idp_of(provider))]},
            # Only the IdP's certificates from its metadata, never one in the message.
            "only_use_keys_in_metadata": True,
            "accepted_time_diff": settings.sso_saml_clock_skew_seconds,
            "delete_tmpfiles": True,
            "service": {
                "sp": {
                    "endpoints": {"assertion_consumer_service": [(acs, BINDING_HTTP_POST)]},
                    "authn_requests_signed": False,
                    "want_assertions_or_response_signed": True,
                    "want_assertions_signed": False,
                    "want_response_signed": False,
                    "allow_unsolicited": False,
                    # pysaml2 defaults to SHA-1 for anything it signs or digests.
                    "signing_algorithm": SIG_RSA_SHA256,
                    "digest_algorithm": DIGEST_SHA256,
                }
            },
        }
    )
    client = Saml2Client(config=config)
    client.sec.crypto = _XmlSec1(_xmlsec1_binary(), delete_tmpfiles=True)
    return client


def _redirect_to_idp(
    provider: SsoProvider, settings: Settings, relay_state: str
) -> tuple[str, str]:
    """(AuthnRequest ID, the IdP URL carrying it) — blocking (pysaml2)."""
    client = _client(provider, settings)
    destination = provider.config["idp_sso_url"]
    request_id, request = client.create_authn_request(destination, binding=BINDING_HTTP_POST)
    info = client.apply_binding(
        BINDING_HTTP_REDIRECT, str(request), destination, relay_state=relay_state, sign=False
    )
    location = dict(info["headers"])["Location"]
    return str(request_id), str(location)


def _check(provider: SsoProvider, settings: Settings, encoded: str) -> CheckedAssertion:
    """The response's checked assertion — blocking (xmlsec1 subprocesses)."""
    document = decode_response(encoded)
    sec = _client(provider, settings).sec

    def check_signature(element: object, issuer: object, origdoc: str) -> None:
        sec.check_signature(element, class_name(element), origdoc=origdoc, must=True, issuer=issuer)

    expected = Expected(
        sp_entity_id=sp_entity_id(settings, provider.id),
        acs_url=acs_url(settings, provider.id),
        idp_entity_id=provider.config["idp_entity_id"],
        clock_skew_seconds=settings.sso_saml_clock_skew_seconds,
        now=time.time(),
    )
    return check_response(document, expected, check_signature)


async def sp_metadata(runtime: Runtime, provider_id: uuid.UUID) -> str:
    await enabled_provider(runtime, provider_id, PROTOCOL.provider_type)
    settings = runtime.settings
    return sp_metadata_xml(sp_entity_id(settings, provider_id), acs_url(settings, provider_id))


async def start_login(
    runtime: Runtime,
    provider_id: uuid.UUID,
    *,
    redirect_uri: str,
    app_state: str | None,
    meta: RequestMeta,
) -> str:
    """The IdP URL to send the browser to."""
    started = time.perf_counter()
    org_id: uuid.UUID | None = None
    try:
        provider = await enabled_provider(runtime, provider_id, PROTOCOL.provider_type)
        org_id = provider.organization_id
        async with runtime.db.session() as session:
            registered = await redirect_uri_registered(session, OrgId(org_id), redirect_uri)
        if not registered:
            raise SsoLoginRefused("redirect_uri_not_registered")
        relay_state = secrets.token_urlsafe(32)
        request_id, location = await asyncio.to_thread(
            _redirect_to_idp, provider, runtime.settings, relay_state
        )
        await save_pending_saml_login(
            runtime.kv,
            relay_state,
            PendingSamlLogin(
                provider_id=str(provider.id),
                organization_id=str(org_id),
                request_id=request_id,
                redirect_uri=redirect_uri,
                app_state=app_state,
            ),
            runtime.settings.sso_state_ttl_seconds,
        )
    except SsoLoginRefused as exc:
        await refuse(runtime, PROTOCOL, exc.reason, org_id, provider_id, meta, started)
        raise
    return location


def _asserted_identity(provider: SsoProvider, checked: CheckedAssertion) -> AssertedIdentity:
    mapping: dict[str, str] = provider.config["attribute_mapping"]

    def first(name: str) -> str | None:
        values = checked.attributes.get(mapping[name]) or []
        return values[0] if values else None

    email = first("email")
    if email is None and checked.name_id_format == NAMEID_EMAIL:
        email = checked.name_id
    # The IdP is trusted for who the user is, not for well-formed text.
    if email is None or "@" not in email or len(email) > 320 or unsafe_text(email):
        raise SamlLoginRefused("email_missing")
    email = email.strip().lower()
    if email.rsplit("@", 1)[1] not in provider.allowed_domains:
        raise SamlLoginRefused("domain_not_allowed")
    name = first("name")
    # A transient NameID changes at every login: the email is the stable subject then.
    subject = email if checked.name_id_format == NAMEID_TRANSIENT else checked.name_id
    return AssertedIdentity(
        subject=subject,
        email=email,
        full_name=printable(name).strip()[:200] if name else "",
        groups=list(checked.attributes.get(mapping["groups"], [])),
    )


async def _destination(
    runtime: Runtime, provider: SsoProvider, checked: CheckedAssertion, relay_state: str | None
) -> tuple[str, str | None]:
    """(redirect URI, application state) of the login this response answers."""
    if checked.in_response_to is None:
        if not provider.config.get("allow_idp_initiated", False):
            raise SamlLoginRefused("unsolicited")
        async with runtime.db.session() as session:
            uris = await list_redirect_uris(session, OrgId(provider.organization_id))
        if not uris:
            raise SamlLoginRefused("redirect_uri_not_registered")
        return uris[0].uri, None
    if not relay_state:
        raise SamlLoginRefused("state_mismatch")
    pending = await take_pending_saml_login(
        runtime.kv, relay_state, runtime.settings.sso_state_ttl_seconds
    )
    if not hmac.compare_digest(pending.provider_id, str(provider.id)) or not hmac.compare_digest(
        pending.request_id.encode(), checked.in_response_to.encode()
    ):
        raise SamlLoginRefused("state_mismatch")
    return pending.redirect_uri, pending.app_state


async def finish_login(
    runtime: Runtime,
    provider_id: uuid.UUID,
    *,
    saml_response: str | None,
    relay_state: str | None,
    meta: RequestMeta,
) -> str:
    """The URL to send the browser to: the redirect URI with a one-time code."""
    started = time.perf_counter()
    org_id: uuid.UUID | None = None
    settings = runtime.settings
    try:
        provider = await enabled_provider(runtime, provider_id, PROTOCOL.provider_type)
        org_id = provider.organization_id
        if not saml_response:
            raise SamlLoginRefused("malformed")
        with traced(runtime.tracer, "sso_assertion_validation") as span:
            span.set_attribute("sso.provider_id", str(provider.id))
            try:
                checked = await asyncio.to_thread(_check, provider, settings, saml_response)
            except SsoLoginRefused:
                raise
            except Exception as exc:  # whatever else the XML stack raises on hostile input
                raise SamlLoginRefused("malformed") from exc
            # A replayed assertion is told apart from a login whose state is spent.
            if await assertion_accepted(runtime.kv, str(provider.id), checked.assertion_id):
                raise SamlLoginRefused("replayed")
            redirect_uri, app_state = await _destination(runtime, provider, checked, relay_state)
            ttl = checked.not_on_or_after + settings.sso_saml_clock_skew_seconds - time.time()
            if not await accept_assertion_once(
                runtime.kv, str(provider.id), checked.assertion_id, int(ttl) + 1
            ):
                raise SamlLoginRefused("replayed")
        identity = _asserted_identity(provider, checked)
        return await complete_login(
            runtime,
            PROTOCOL,
            provider,
            identity,
            redirect_uri=redirect_uri,
            app_state=app_state,
            meta=meta,
            started=started,
        )
    except SsoLoginRefused as exc:
        await refuse(runtime, PROTOCOL, exc.reason, org_id, provider_id, meta, started)
        raise


def provider_config(
    idp: IdpMetadata,
    *,
    metadata_url: str | None,
    metadata_xml: str | None,
    attribute_mapping: dict[str, Any],
    allow_idp_initiated: bool,
) -> dict[str, Any]:
    """The ``config`` JSON of a SAML provider row."""
    return {
        "idp_entity_id": idp.entity_id,
        "idp_sso_url": idp.sso_url,
        "idp_certificates": idp.certificates,
        "idp_metadata_url": metadata_url,
        "idp_metadata_xml": metadata_xml,
        "attribute_mapping": attribute_mapping,
        "allow_idp_initiated": allow_idp_initiated,
    }

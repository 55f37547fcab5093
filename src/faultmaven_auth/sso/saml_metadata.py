"""SAML metadata: reading the IdP's (uploaded or fetched at configuration time) and
writing ours.

From the IdP's metadata we keep only what a login needs, checked once when the admin
saves it: the entity id, the HTTP-Redirect SingleSignOnService URL and the signing
certificates (those that parse and have not expired). Anything else is refused with
``422 SSO_INVALID_CONFIGURATION`` and nothing is stored. Metadata is parsed with
defusedxml (no DTDs, no entities, no network) and bounded in size; its own signature,
if any, is not checked: the admin vouches for the document they upload or point to.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape, quoteattr

from cryptography import x509
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from faultmaven_auth.sso.errors import SsoConfigurationInvalid

MAX_METADATA_BYTES = 1024 * 1024
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"


@dataclass(frozen=True)
class IdpMetadata:
    entity_id: str
    sso_url: str
    certificates: list[str]  # PEM


def _invalid(message: str) -> SsoConfigurationInvalid:
    return SsoConfigurationInvalid(f"IdP metadata: {message}")


def _pem(der_b64: str) -> str | None:
    """The certificate as PEM, None when it has expired; refused when it does not parse."""
    compact = "".join(der_b64.split())
    try:
        der = base64.b64decode(compact, validate=True)
        certificate = x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise _invalid("a signing certificate is not a valid X.509 certificate") from exc
    if certificate.not_valid_after_utc <= datetime.now(UTC):
        return None
    lines = [compact[i : i + 64] for i in range(0, len(compact), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _idp_entities(root: Element) -> list[tuple[str, Element]]:
    """(entityID, IdPSSODescriptor) of each SAML 2.0 IdP in the document."""
    if root.tag == f"{{{MD}}}EntityDescriptor":
        entities = [root]
    elif root.tag == f"{{{MD}}}EntitiesDescriptor":
        entities = list(root.iter(f"{{{MD}}}EntityDescriptor"))
    else:
        raise _invalid("the document is not SAML 2.0 metadata (no EntityDescriptor)")
    found = []
    for entity in entities:
        for descriptor in entity.findall(f"{{{MD}}}IDPSSODescriptor"):
            if PROTOCOL in descriptor.get("protocolSupportEnumeration", "").split():
                found.append((entity.get("entityID", ""), descriptor))
                break
    return found


def parse_idp_metadata(
    document: str | bytes, entity_id: str | None, *, url_allowed: Callable[[str], bool]
) -> IdpMetadata:
    """The checked essentials of one IdP in ``document`` (``entity_id`` picks it when
    the document describes several). ``url_allowed(url) -> bool`` is the rule the
    SingleSignOnService URL must pass (https, or http for local test providers)."""
    raw = document.encode("utf-8") if isinstance(document, str) else document
    if len(raw) > MAX_METADATA_BYTES:
        raise _invalid(f"the document is larger than {MAX_METADATA_BYTES} bytes")
    try:
        root = fromstring(raw, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise _invalid("the document is not well-formed XML (or declares a DTD)") from exc
    idps = _idp_entities(root)
    if not idps:
        raise _invalid("no SAML 2.0 IdPSSODescriptor")
    if entity_id is not None:
        idps = [(e, d) for e, d in idps if e == entity_id]
        if not idps:
            raise _invalid("no IdP with this idp_entity_id")
    if len(idps) > 1:
        raise _invalid("the document describes several IdPs; set idp_entity_id")
    found_id, descriptor = idps[0]
    if not found_id or len(found_id) > 1024:
        raise _invalid("the IdP has no usable entityID")
    sso_urls = [
        s.get("Location", "")
        for s in descriptor.findall(f"{{{MD}}}SingleSignOnService")
        if s.get("Binding") == BINDING_REDIRECT
    ]
    if not sso_urls or not sso_urls[0]:
        raise _invalid("no SingleSignOnService with the HTTP-Redirect binding")
    if not url_allowed(sso_urls[0]) or len(sso_urls[0]) > 2000:
        raise _invalid("the SingleSignOnService location is not an https URL")
    found = [
        _pem(cert.text or "")
        for key in descriptor.findall(f"{{{MD}}}KeyDescriptor")
        if key.get("use", "signing") == "signing"
        for cert in key.iter(f"{{{DS}}}X509Certificate")
    ]
    if not found:
        raise _invalid("no signing certificate")
    # An expired certificate left next to its successor (a rollover) is dropped.
    certificates = [pem for pem in found if pem is not None]
    if not certificates:
        raise _invalid("every signing certificate has expired")
    return IdpMetadata(found_id, sso_urls[0], list(dict.fromkeys(certificates)))


def _cert_body(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if "CERTIFICATE" not in line)


def idp_metadata_xml(idp: IdpMetadata) -> str:
    """A minimal metadata document of exactly the checked essentials, which is all the
    SAML library is given to trust (not the admin's original document)."""
    keys = "".join(
        f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
        f"{_cert_body(pem)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        for pem in idp.certificates
    )
    return (
        f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" entityID={quoteattr(idp.entity_id)}>'
        f'<md:IDPSSODescriptor protocolSupportEnumeration="{PROTOCOL}">{keys}'
        f'<md:SingleSignOnService Binding="{BINDING_REDIRECT}" Location={quoteattr(idp.sso_url)}/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )


def sp_metadata_xml(sp_entity_id: str, acs_url: str) -> str:
    """Our metadata for the IdP admin: unsigned AuthnRequests, signed assertions wanted,
    one HTTP-POST AssertionConsumerService."""
    formats = "".join(
        f"<md:NameIDFormat>{escape(f)}</md:NameIDFormat>"
        for f in (NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_UNSPECIFIED)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<md:EntityDescriptor xmlns:md="{MD}" entityID={quoteattr(sp_entity_id)}>'
        f'<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" '
        f'protocolSupportEnumeration="{PROTOCOL}">{formats}'
        f'<md:AssertionConsumerService Binding="{BINDING_POST}" Location={quoteattr(acs_url)} '
        'index="0" isDefault="true"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>\n"
    )

"""Checking a SAML Response posted to our ACS, before anything in it is believed.

pysaml2 (with xmlsec1) verifies the XML signatures; every other rule is checked here,
explicitly, so each refusal has its own ``reason`` and none depends on a library
default. In order:

1. ``malformed``: not base64, not UTF-8 XML (defusedxml: no DTD, no entities), not a
   SAML 2.0 ``samlp:Response`` with an ID.
2. ``provider_error``: the top-level StatusCode is not Success (such responses carry
   no assertion and are often unsigned).
3. Structure (XML signature wrapping): exactly one ``saml:Assertion`` anywhere in
   the document and it is a direct child of the Response (more, or one hidden
   elsewhere: ``invalid_signature``; none: ``malformed``); an ``EncryptedAssertion``
   is refused (``encrypted_assertion``: not supported); no ID value appears twice.
4. ``signature_missing``: neither the Response nor the Assertion carries an enveloped
   signature of its own.
5. ``issuer_mismatch``: the Assertion's Issuer (and the Response's, when present) is
   not the configured IdP entity id.
6. ``invalid_signature``: every signature present must verify with a certificate from
   the IdP's metadata (never a key carried in the message) and reference its own
   element; it must also be the first signature in that element, so xmlsec1 cannot be
   made to check another one. A verified Response signature covers the Assertion
   (its direct child); otherwise the Assertion's own signature is what vouches for it.
7. ``destination_mismatch``: Destination differs from our ACS URL, or is absent on a
   signed Response.
8. ``audience_mismatch``: no AudienceRestriction, or one without our SP entity id.
9. ``recipient_mismatch``: no bearer SubjectConfirmationData whose Recipient is our
   ACS URL.
10. ``expired`` / ``not_yet_valid``: Conditions and SubjectConfirmationData times, with
    ``SSO_SAML_CLOCK_SKEW_SECONDS`` of leeway.

InResponseTo, the replay store and the identity are checked by the caller (they need
the key-value store and the database). This module only blocks (xmlsec1 runs as a
subprocess): call ``check_response`` in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from saml2 import samlp

from faultmaven_auth.sso.errors import SamlLoginRefused

logger = logging.getLogger("faultmaven_auth.sso")

MAX_RESPONSE_BYTES = 256 * 1024
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"


@dataclass(frozen=True)
class Expected:
    """What this SP expects of a response for one provider."""

    sp_entity_id: str
    acs_url: str
    idp_entity_id: str
    clock_skew_seconds: int
    now: float  # epoch seconds


@dataclass(frozen=True)
class CheckedAssertion:
    assertion_id: str
    in_response_to: str | None
    # The earliest NotOnOrAfter (Conditions, SubjectConfirmationData): how long the
    # assertion ID must be remembered.
    not_on_or_after: float
    name_id: str
    name_id_format: str | None
    attributes: dict[str, list[str]] = field(default_factory=dict)


# Verifies the signature of one parsed pysaml2 element against the IdP's metadata;
# raises when it does not verify. (element, issuer, document) -> None
SignatureCheck = Callable[[object, object, str], None]


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def _text(element: Element | None) -> str | None:
    return element.text.strip() if element is not None and element.text else None


def _instant(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError as exc:
        raise SamlLoginRefused("malformed") from exc


def decode_response(encoded: str) -> str:
    """The XML text of a form-posted SAMLResponse; ``malformed`` / ``response_too_large``."""
    if len(encoded) > MAX_RESPONSE_BYTES * 4 // 3 + 4:
        raise SamlLoginRefused("response_too_large")
    try:
        raw = base64.b64decode("".join(encoded.split()), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise SamlLoginRefused("malformed") from exc
    if len(raw) > MAX_RESPONSE_BYTES:
        raise SamlLoginRefused("response_too_large")
    return text


def _own_signature(element: Element) -> bool:
    """An enveloped signature of the element itself: a direct child, and the first
    signature in its subtree (the one xmlsec1 finds when asked about this element)."""
    direct = element.find(f"{{{DS}}}Signature")
    return direct is not None and next(element.iter(f"{{{DS}}}Signature")) is direct


def _structure(root: Element) -> Element:
    """The one assertion, refusing every shape a wrapping attack needs."""
    if any(True for _ in root.iter(f"{{{SAML}}}EncryptedAssertion")):
        raise SamlLoginRefused("encrypted_assertion")
    assertions = list(root.iter(f"{{{SAML}}}Assertion"))
    if not assertions:
        raise SamlLoginRefused("malformed")
    if len(assertions) > 1 or root.find(f"{{{SAML}}}Assertion") is not assertions[0]:
        raise SamlLoginRefused("invalid_signature")
    ids = [e.get("ID") for e in root.iter() if e.get("ID") is not None]
    if len(ids) != len(set(ids)) or not assertions[0].get("ID"):
        raise SamlLoginRefused("invalid_signature")
    return assertions[0]


def _verify_signatures(
    document: str, response_signed: bool, assertion_signed: bool, check_signature: SignatureCheck
) -> None:
    try:
        parsed = samlp.response_from_string(document)
    except Exception as exc:  # pysaml2 raises whatever its parser meets
        raise SamlLoginRefused("malformed") from exc
    if parsed is None or len(parsed.assertion) != 1 or parsed.encrypted_assertion:
        raise SamlLoginRefused("malformed")
    typed_assertion = parsed.assertion[0]
    if (parsed.signature is not None) != response_signed or (
        typed_assertion.signature is not None
    ) != assertion_signed:
        raise SamlLoginRefused("invalid_signature")
    try:
        if response_signed:
            check_signature(parsed, typed_assertion.issuer, document)
        if assertion_signed:
            check_signature(typed_assertion, typed_assertion.issuer, document)
    except SamlLoginRefused:
        raise
    except Exception as exc:  # SignatureError, MissingKey, CertificateError, XmlsecError, ...
        logger.info("SAML signature not verified", extra={"error": type(exc).__name__})
        raise SamlLoginRefused("invalid_signature") from exc


def _check_conditions(assertion: Element, expected: Expected) -> list[float]:
    conditions = assertion.find(f"{{{SAML}}}Conditions")
    audiences = (
        conditions.findall(f"{{{SAML}}}AudienceRestriction") if conditions is not None else []
    )
    # Every AudienceRestriction must name us (SAML core 2.5.1.4).
    if not audiences or not all(
        any(_same(_text(a), expected.sp_entity_id) for a in r.findall(f"{{{SAML}}}Audience"))
        for r in audiences
    ):
        raise SamlLoginRefused("audience_mismatch")
    subject = assertion.find(f"{{{SAML}}}Subject")
    bearer = [
        data
        for confirmation in (
            subject.findall(f"{{{SAML}}}SubjectConfirmation") if subject is not None else []
        )
        if confirmation.get("Method") == BEARER
        for data in confirmation.findall(f"{{{SAML}}}SubjectConfirmationData")
    ]
    if not bearer or not all(_same(d.get("Recipient"), expected.acs_url) for d in bearer):
        raise SamlLoginRefused("recipient_mismatch")
    skew = expected.clock_skew_seconds
    ends: list[float] = []
    for element in [*([conditions] if conditions is not None else []), *bearer]:
        not_before = _instant(element.get("NotBefore"))
        not_after = _instant(element.get("NotOnOrAfter"))
        if not_before is not None and expected.now + skew < not_before:
            raise SamlLoginRefused("not_yet_valid")
        if not_after is not None:
            if expected.now - skew >= not_after:
                raise SamlLoginRefused("expired")
            ends.append(not_after)
    if not any(_instant(d.get("NotOnOrAfter")) is not None for d in bearer):
        # A bearer confirmation without an end would be valid forever.
        raise SamlLoginRefused("expired")
    return ends


def check_response(
    document: str, expected: Expected, check_signature: SignatureCheck
) -> CheckedAssertion:
    """The assertion of a response that passed every check above (blocking)."""
    try:
        root = fromstring(document.encode("utf-8"), forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise SamlLoginRefused("malformed") from exc
    if root.tag != f"{{{SAMLP}}}Response" or root.get("Version") != "2.0" or not root.get("ID"):
        raise SamlLoginRefused("malformed")
    status = root.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode")
    if status is None or status.get("Value") != SUCCESS:
        raise SamlLoginRefused("provider_error")
    assertion = _structure(root)
    response_signed, assertion_signed = _own_signature(root), _own_signature(assertion)
    if not response_signed and not assertion_signed:
        raise SamlLoginRefused("signature_missing")
    response_issuer = root.find(f"{{{SAML}}}Issuer")
    if (
        response_issuer is not None and not _same(_text(response_issuer), expected.idp_entity_id)
    ) or not _same(_text(assertion.find(f"{{{SAML}}}Issuer")), expected.idp_entity_id):
        raise SamlLoginRefused("issuer_mismatch")
    _verify_signatures(document, response_signed, assertion_signed, check_signature)
    destination = root.get("Destination")
    if (destination is not None or response_signed) and not _same(destination, expected.acs_url):
        raise SamlLoginRefused("destination_mismatch")
    ends = _check_conditions(assertion, expected)
    return _checked(root, assertion, ends)


def _checked(root: Element, assertion: Element, ends: list[float]) -> CheckedAssertion:
    subject = assertion.find(f"{{{SAML}}}Subject")
    name_id = subject.find(f"{{{SAML}}}NameID") if subject is not None else None
    # The Response's and the confirmation's InResponseTo, when both are given, agree.
    in_response_to = {
        value
        for value in [
            root.get("InResponseTo"),
            *(d.get("InResponseTo") for d in assertion.iter(f"{{{SAML}}}SubjectConfirmationData")),
        ]
        if value
    }
    if len(in_response_to) > 1:
        raise SamlLoginRefused("state_mismatch")
    value = _text(name_id)
    if value is None or len(value) > 255:
        raise SamlLoginRefused("malformed")
    attributes: dict[str, list[str]] = {}
    for statement in assertion.findall(f"{{{SAML}}}AttributeStatement"):
        for attribute in statement.findall(f"{{{SAML}}}Attribute"):
            values = [
                v.text.strip() for v in attribute.findall(f"{{{SAML}}}AttributeValue") if v.text
            ]
            attributes.setdefault(attribute.get("Name", ""), []).extend(values)
    return CheckedAssertion(
        assertion_id=assertion.get("ID", ""),
        in_response_to=next(iter(in_response_to), None),
        not_on_or_after=min(ends),
        name_id=value,
        name_id_format=name_id.get("Format") if name_id is not None else None,
        attributes=attributes,
    )

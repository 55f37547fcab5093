"""The test SAML IdP itself, proven without our service: its responses verify with
xmlsec1 against its certificate and are accepted by pysaml2's own SP; every attack knob
produces the defect it claims and nothing else (a wrapped response still carries a
signature that verifies, the forged assertion is what a naive SP would read)."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import subprocess
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import httpx
import pytest
from defusedxml import ElementTree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.response import StatusError

from tests.sso.saml_forgery import (
    split_by_comment,
    tamper,
    with_doctype,
    wrap_extra_assertion,
    wrap_in_extensions,
    wrap_in_object,
)
from tests.sso.saml_idp import (
    NAMEID_EMAIL,
    OMIT,
    AuthnRequestSeen,
    KeyPair,
    SamlIdp,
)

SP_ENTITY = "http://testserver/api/v1/sso/harness/metadata"
SP_ACS = "http://testserver/api/v1/sso/harness/acs"
VICTIM = "alice@corp.example"
ATTACKER = "mallory@corp.example"
CONFIRMATION = "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData"
AUDIENCE = "saml:Conditions/saml:AudienceRestriction/saml:Audience"
NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}


@pytest.fixture(scope="module")
def idp(saml_idp: SamlIdp) -> SamlIdp:
    return saml_idp


@pytest.fixture(scope="module")
def sp(idp: SamlIdp) -> Saml2Client:
    """pysaml2's SP, trusting the IdP's metadata: a second, independent reader."""
    config = SPConfig()
    config.load(
        {
            "entityid": SP_ENTITY,
            "xmlsec_binary": shutil.which("xmlsec1"),
            "service": {
                "sp": {
                    "endpoints": {"assertion_consumer_service": [(SP_ACS, BINDING_HTTP_POST)]},
                    "authn_requests_signed": False,
                    "want_assertions_signed": True,
                    "want_response_signed": False,
                    "allow_unsolicited": False,
                }
            },
            "metadata": {"inline": [idp.metadata_xml()]},
            # Attribute names as sent ("email", ...), not pysaml2's OID maps.
            "allow_unknown_attributes": True,
        }
    )
    return Saml2Client(config=config)


def _login(idp: SamlIdp, sp: Saml2Client) -> AuthnRequestSeen:
    _, info = sp.prepare_for_authenticate(
        entityid=idp.entity_id, relay_state="opaque-relay", binding=BINDING_HTTP_REDIRECT
    )
    return idp.read_login(dict(info["headers"])["Location"])


def _verifies(xml: str, cert: KeyPair, node_id: str, tmp_path: Path) -> bool:
    """xmlsec1 verifies the signature found from the element with ID ``node_id``."""
    document = tmp_path / f"doc-{node_id}.xml"
    document.write_text(xml)
    result = subprocess.run(
        [
            shutil.which("xmlsec1") or "xmlsec1",
            "--verify",
            "--pubkey-cert-pem",
            str(cert.cert_file),
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
            "--node-id",
            node_id,
            str(document),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _root(xml: str) -> Element:
    root: Element = ElementTree.fromstring(xml)
    return root


def _one(root: Element, path: str) -> Element:
    found = root.find(path, NS)
    assert found is not None, path
    return found


def _assertions(root: Element) -> list[Element]:
    return root.findall("saml:Assertion", NS)


def _parsed_by_pysaml2(sp: Saml2Client, xml: str, request: AuthnRequestSeen) -> Any:
    return sp.parse_authn_request_response(
        base64.b64encode(xml.encode()).decode(), BINDING_HTTP_POST, {request.id: "/"}
    )


def test_metadata_names_entity_redirect_endpoint_and_certificate(idp: SamlIdp) -> None:
    """The IdP metadata is served over HTTP and holds what an SP configures from."""
    served = httpx.get(idp.metadata_url)
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/samlmetadata+xml"
    assert served.text == idp.metadata_xml()
    root = _root(served.text)
    assert root.get("entityID") == idp.entity_id
    sso = _one(root, "md:IDPSSODescriptor/md:SingleSignOnService")
    assert sso.get("Binding") == BINDING_HTTP_REDIRECT
    assert sso.get("Location") == idp.sso_url
    cert = _one(
        root, "md:IDPSSODescriptor/md:KeyDescriptor/ds:KeyInfo/ds:X509Data/ds:X509Certificate"
    )
    assert cert.text == idp.key.cert_base64
    assert idp.key.cert_base64 != idp.attacker.cert_base64


def test_reads_the_authn_request_of_a_redirect(idp: SamlIdp, sp: Saml2Client) -> None:
    request = _login(idp, sp)
    assert request.issuer == SP_ENTITY
    assert request.acs_url == SP_ACS
    assert request.relay_state == "opaque-relay"
    assert request.destination == idp.sso_url
    assert request.id


def test_default_response_is_correct_and_accepted_by_pysaml2_sp(
    idp: SamlIdp, sp: Saml2Client, tmp_path: Path
) -> None:
    """Signed assertion (SHA-256), Destination/Recipient = ACS, Audience = SP, InResponseTo."""
    request = _login(idp, sp)
    xml = idp.response_xml(request, VICTIM, name="Alice A", groups=["admins", "ops"])
    root = _root(xml)
    assert root.get("Destination") == SP_ACS
    assert root.get("InResponseTo") == request.id
    assert root.find("ds:Signature", NS) is None
    [assertion] = _assertions(root)
    assert _one(assertion, "saml:Issuer").text == idp.entity_id
    name_id = _one(assertion, "saml:Subject/saml:NameID")
    assert (name_id.get("Format"), name_id.text) == (NAMEID_EMAIL, VICTIM)
    data = _one(assertion, CONFIRMATION)
    assert data.get("Recipient") == SP_ACS
    assert data.get("InResponseTo") == request.id
    audience = _one(assertion, AUDIENCE)
    assert audience.text == SP_ENTITY
    signature = _one(assertion, "ds:Signature")
    assert (
        _one(signature, "ds:SignedInfo/ds:SignatureMethod")
        .get("Algorithm", "")
        .endswith("rsa-sha256")
    )
    assert (
        _one(signature, "ds:SignedInfo/ds:Reference/ds:DigestMethod")
        .get("Algorithm", "")
        .endswith("sha256")
    )
    assert _verifies(xml, idp.key, assertion.get("ID", ""), tmp_path)
    assert not _verifies(xml, idp.attacker, assertion.get("ID", ""), tmp_path)

    accepted = _parsed_by_pysaml2(sp, xml, request)
    assert accepted.get_identity() == {
        "email": [VICTIM],
        "name": ["Alice A"],
        "groups": ["admins", "ops"],
    }
    assert accepted.name_id.text == VICTIM


@pytest.mark.parametrize(
    ("sign", "response_signed", "assertion_signed"),
    [("both", True, True), ("response", True, False), ("none", False, False)],
)
def test_signing_choices(
    idp: SamlIdp,
    sp: Saml2Client,
    tmp_path: Path,
    sign: Any,
    response_signed: bool,
    assertion_signed: bool,
) -> None:
    request = _login(idp, sp)
    xml = idp.response_xml(request, VICTIM, sign=sign)
    root = _root(xml)
    [assertion] = _assertions(root)
    assert (root.find("ds:Signature", NS) is not None) == response_signed
    assert (assertion.find("ds:Signature", NS) is not None) == assertion_signed
    if response_signed:
        assert _verifies(xml, idp.key, root.get("ID", ""), tmp_path)
    if assertion_signed:
        assert _verifies(xml, idp.key, assertion.get("ID", ""), tmp_path)


def test_mixed_keys_and_several_audiences(idp: SamlIdp, sp: Saml2Client, tmp_path: Path) -> None:
    """The response and the assertion signed by different keys; a list of audiences;
    the assertion's Issuer set apart from the response's."""
    request = _login(idp, sp)
    xml = idp.response_xml(
        request,
        VICTIM,
        sign="both",
        assertion_signing_key=idp.attacker,
        audience=["urn:first", SP_ENTITY],
        assertion_issuer="urn:other-idp",
    )
    root = _root(xml)
    [assertion] = _assertions(root)
    assert _verifies(xml, idp.key, root.get("ID", ""), tmp_path)
    assert not _verifies(xml, idp.key, assertion.get("ID", ""), tmp_path)
    assert _verifies(xml, idp.attacker, assertion.get("ID", ""), tmp_path)
    audiences = assertion.findall(f"{AUDIENCE.rsplit('/', 1)[0]}/saml:Audience", NS)
    assert [a.text for a in audiences] == ["urn:first", SP_ENTITY]
    assert _one(root, "saml:Issuer").text == idp.entity_id
    assert _one(assertion, "saml:Issuer").text == "urn:other-idp"


def test_attacker_key_and_change_after_signing_do_not_verify(
    idp: SamlIdp, sp: Saml2Client, tmp_path: Path
) -> None:
    request = _login(idp, sp)
    forged = idp.response_xml(request, VICTIM, sign="both", signing_key=idp.attacker)
    root = _root(forged)
    assert not _verifies(forged, idp.key, root.get("ID", ""), tmp_path)
    assert _verifies(forged, idp.attacker, root.get("ID", ""), tmp_path)
    with pytest.raises(Exception, match=r"(?i)signature"):
        _parsed_by_pysaml2(sp, forged, request)

    genuine = idp.response_xml(request, VICTIM)
    changed = tamper(genuine, VICTIM, ATTACKER)
    [assertion] = _assertions(_root(changed))
    assert _one(assertion, "saml:Subject/saml:NameID").text == ATTACKER
    assert _verifies(genuine, idp.key, assertion.get("ID", ""), tmp_path)
    assert not _verifies(changed, idp.key, assertion.get("ID", ""), tmp_path)


def test_comment_in_the_name_id_keeps_the_signature_valid(
    idp: SamlIdp, sp: Saml2Client, tmp_path: Path
) -> None:
    """The comment-truncation attack is real: the signature survives the comment."""
    request = _login(idp, sp)
    long_email = "alice@corp.example.attacker.test"
    xml = split_by_comment(idp.response_xml(request, long_email), long_email, len(VICTIM))
    assert "alice@corp.example<!---->.attacker.test</" in xml
    [assertion] = _assertions(_root(xml))
    assert _verifies(xml, idp.key, assertion.get("ID", ""), tmp_path)


def test_doctype_variant_declares_entities(idp: SamlIdp, sp: Saml2Client) -> None:
    request = _login(idp, sp)
    xml = with_doctype(idp.response_xml(request, VICTIM))
    assert xml.startswith("<!DOCTYPE samlp:Response [<!ENTITY a ")
    assert 'SYSTEM "file:///etc/hostname"' in xml
    with pytest.raises(Exception, match=r"(?i)DTD|entit"):
        _root(xml)


@pytest.mark.parametrize("where", ["before", "after"])
def test_extra_assertion_wrapping(
    idp: SamlIdp, sp: Saml2Client, tmp_path: Path, where: Any
) -> None:
    """Two assertions: the signed one (still verifying) and an unsigned forged one."""
    request = _login(idp, sp)
    xml = wrap_extra_assertion(idp.response_xml(request, VICTIM), VICTIM, ATTACKER, where=where)
    assertions = _assertions(_root(xml))
    assert len(assertions) == 2
    forged, signed = assertions if where == "before" else assertions[::-1]
    assert forged.find("ds:Signature", NS) is None
    assert _one(forged, "saml:Subject/saml:NameID").text == ATTACKER
    assert _one(signed, "saml:Subject/saml:NameID").text == VICTIM
    assert forged.get("ID") != signed.get("ID")
    assert _verifies(xml, idp.key, signed.get("ID", ""), tmp_path)


def test_signed_assertion_hidden_in_extensions(
    idp: SamlIdp, sp: Saml2Client, tmp_path: Path
) -> None:
    request = _login(idp, sp)
    xml = wrap_in_extensions(idp.response_xml(request, VICTIM), VICTIM, ATTACKER)
    root = _root(xml)
    [visible] = _assertions(root)
    assert visible.find("ds:Signature", NS) is None
    assert _one(visible, "saml:Subject/saml:NameID").text == ATTACKER
    hidden = _one(root, "samlp:Extensions/saml:Assertion")
    assert _one(hidden, "saml:Subject/saml:NameID").text == VICTIM
    reference = _one(hidden, "ds:Signature/ds:SignedInfo/ds:Reference")
    assert reference.get("URI") == f"#{hidden.get('ID')}"
    assert _verifies(xml, idp.key, hidden.get("ID", ""), tmp_path)


def test_signed_assertion_hidden_in_signature_object(
    idp: SamlIdp, sp: Saml2Client, tmp_path: Path
) -> None:
    request = _login(idp, sp)
    xml = wrap_in_object(idp.response_xml(request, VICTIM), VICTIM, ATTACKER)
    [visible] = _assertions(_root(xml))
    assert _one(visible, "saml:Subject/saml:NameID").text == ATTACKER
    hidden = _one(visible, "ds:Signature/ds:Object/saml:Assertion")
    assert _one(hidden, "saml:Subject/saml:NameID").text == VICTIM
    reference = _one(visible, "ds:Signature/ds:SignedInfo/ds:Reference")
    assert reference.get("URI") == f"#{hidden.get('ID')}"
    assert visible.get("ID") != hidden.get("ID")
    # The hidden original's own signature still verifies; it does not cover the visible one.
    assert _one(hidden, "ds:Signature/ds:SignedInfo/ds:Reference").get("URI") == reference.get(
        "URI"
    )
    assert _verifies(xml, idp.key, hidden.get("ID", ""), tmp_path)


def test_one_defect_knobs(idp: SamlIdp, sp: Saml2Client, tmp_path: Path) -> None:
    """Each knob changes its part and the response stays validly signed."""
    request = _login(idp, sp)
    now = dt.datetime.now(dt.UTC)
    later, earlier = now + dt.timedelta(hours=1), now - dt.timedelta(hours=1)
    cases: list[tuple[dict[str, Any], str, str, str | None]] = [
        ({"audience": "urn:other"}, AUDIENCE, "", "urn:other"),
        ({"destination": "http://evil/acs"}, ".", "Destination", "http://evil/acs"),
        ({"destination": OMIT}, ".", "Destination", None),
        ({"recipient": "http://evil/acs"}, CONFIRMATION, "Recipient", "http://evil/acs"),
        ({"issuer": "urn:other-idp"}, "saml:Issuer", "", "urn:other-idp"),
        ({"in_response_to": OMIT}, ".", "InResponseTo", None),
        ({"recipient": OMIT}, CONFIRMATION, "Recipient", None),
        ({"assertion_issuer": "urn:other-idp"}, "saml:Issuer", "", "urn:other-idp"),
        ({"not_before": later}, "saml:Conditions", "NotBefore", _stamp(later)),
        ({"not_on_or_after": earlier}, "saml:Conditions", "NotOnOrAfter", _stamp(earlier)),
        ({"not_on_or_after": earlier}, CONFIRMATION, "NotOnOrAfter", _stamp(earlier)),
        ({"confirmation_not_on_or_after": earlier}, CONFIRMATION, "NotOnOrAfter", _stamp(earlier)),
    ]
    for knob, path, attribute, expected in cases:
        xml = idp.response_xml(request, VICTIM, sign="both", **knob)
        root = _root(xml)
        [assertion] = _assertions(root)
        element = root if path == "." else _one(assertion, path)
        value = element.get(attribute) if attribute else element.text
        assert value == expected, knob
        assert _verifies(xml, idp.key, root.get("ID", ""), tmp_path), knob
        assert _verifies(xml, idp.key, assertion.get("ID", ""), tmp_path), knob
    unsolicited = _root(idp.response_xml(None, VICTIM, sp_entity_id=SP_ENTITY, acs_url=SP_ACS))
    data = _one(_assertions(unsolicited)[0], CONFIRMATION)
    assert data.get("InResponseTo") is None
    assert unsolicited.get("InResponseTo") is None
    assert unsolicited.get("Destination") == SP_ACS


def test_error_status_response(idp: SamlIdp, sp: Saml2Client, tmp_path: Path) -> None:
    request = _login(idp, sp)
    xml = idp.response_xml(request, VICTIM, status="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed")
    root = _root(xml)
    code = _one(root, "samlp:Status/samlp:StatusCode")
    assert code.get("Value") == "urn:oasis:names:tc:SAML:2.0:status:Responder"
    assert _assertions(root) == []
    assert _verifies(xml, idp.key, root.get("ID", ""), tmp_path)
    with pytest.raises(StatusError):
        _parsed_by_pysaml2(sp, xml, request)

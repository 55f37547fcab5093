"""A real SAML 2.0 identity provider for the SSO tests: pysaml2's IdP side
(``saml2.server.Server``) reads the service's AuthnRequest (HTTP-Redirect binding) and
writes the Response; xmlsec1 signs it (RSA-SHA256, SHA-256 digests) with a key pair made
for the test session, beside a second "attacker" pair.

Every way a response can be wrong at the IdP is a knob of ``response_xml``, so the
attack tests present exactly one defect at a time to the real ACS: nothing signed, only
the response or only the assertion signed, another key (for one or both signatures),
another audience, destination, recipient or issuer, validity windows in the past or
future, no InResponseTo (IdP-initiated) and an error status. What an attacker does to a
signed response afterwards (tampering, signature wrapping) is in ``saml_forgery``.

The metadata is served over HTTP on 127.0.0.1 (``running_saml_idp``) for the metadata-URL
configuration path; the SingleSignOnService URL it names is never opened by the tests: they
read the service's redirect ``Location`` directly (``read_login``).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp
from saml2.config import IdPConfig
from saml2.server import Server
from saml2.sigver import pre_signature_part
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

ASSERTION_NODE = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
RESPONSE_NODE = "urn:oasis:names:tc:SAML:2.0:protocol:Response"
NAMEID_EMAIL = saml.NAMEID_FORMAT_EMAILADDRESS
ATTRNAME_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

Signed = Literal["both", "response", "assertion", "none"]


class _Omit:
    """Marks an attribute the response leaves out (e.g. no Destination)."""


OMIT = _Omit()


def saml_idp_missing() -> str | None:
    if shutil.which("xmlsec1") is None:
        return "xmlsec1 is not installed (run scripts/install-system-deps.sh)"
    return None


@dataclass(frozen=True)
class KeyPair:
    key_file: Path
    cert_file: Path

    @property
    def cert_pem(self) -> str:
        return self.cert_file.read_text()

    @property
    def cert_base64(self) -> str:
        """The DER certificate in base64, as metadata and KeyInfo carry it."""
        return "".join(line for line in self.cert_pem.splitlines() if "-----" not in line)


def make_key_pair(directory: Path, name: str) -> KeyPair:
    """A fresh RSA 2048 key and a self-signed certificate valid from yesterday for a year."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} SAML signing")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_file = directory / f"{name}.key"
    cert_file = directory / f"{name}.crt"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return KeyPair(key_file, cert_file)


@dataclass(frozen=True)
class AuthnRequestSeen:
    """What the IdP read from the service's login redirect."""

    id: str
    issuer: str  # the SP entity id
    acs_url: str
    destination: str | None
    relay_state: str
    xml: str


def _saml_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode(xml: str) -> str:
    """The SAMLResponse form value (HTTP-POST binding: base64, no deflate)."""
    return base64.b64encode(xml.encode()).decode()


@dataclass
class SamlIdp:
    entity_id: str
    sso_url: str
    key: KeyPair
    attacker: KeyPair
    metadata_url: str = ""
    served_metadata: dict[str, str] = field(default_factory=dict)
    _servers: dict[tuple[str, str], Server] = field(default_factory=dict)

    # ------------------------------------------------------------------ metadata
    def metadata_xml(
        self,
        *,
        entity_id: str | None = None,
        cert: KeyPair | None = None,
        sso_url: str | None = None,
        sso_binding: str = BINDING_HTTP_REDIRECT,
    ) -> str:
        """The IdP's EntityDescriptor: entity id, signing certificate, SSO endpoint."""
        return (
            '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
            'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
            f'entityID="{entity_id or self.entity_id}">'
            '<md:IDPSSODescriptor WantAuthnRequestsSigned="false" '
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f"{(cert or self.key).cert_base64}"
            "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            f"<md:NameIDFormat>{NAMEID_EMAIL}</md:NameIDFormat>"
            f'<md:SingleSignOnService Binding="{sso_binding}" '
            f'Location="{sso_url or self.sso_url}"/>'
            "</md:IDPSSODescriptor></md:EntityDescriptor>"
        )

    # ------------------------------------------------------------------ requests
    def read_login(self, location: str) -> AuthnRequestSeen:
        """Parse the service's redirect to our SSO endpoint (HTTP-Redirect binding)."""
        assert location.startswith(self.sso_url + "?"), location
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        parsed = self._server(None).parse_authn_request(
            query["SAMLRequest"], BINDING_HTTP_REDIRECT, relay_state=query.get("RelayState")
        )
        message = parsed.message
        assert message.issuer is not None, "the AuthnRequest names no Issuer"
        return AuthnRequestSeen(
            id=message.id,
            issuer=message.issuer.text.strip(),
            acs_url=message.assertion_consumer_service_url,
            destination=message.destination,
            relay_state=query.get("RelayState", ""),
            xml=parsed.xmlstr.decode() if isinstance(parsed.xmlstr, bytes) else parsed.xmlstr,
        )

    # ------------------------------------------------------------------ responses
    def response_xml(
        self,
        request: AuthnRequestSeen | None,
        email: str,
        *,
        sp_entity_id: str | None = None,
        acs_url: str | None = None,
        name: str | None = "Test User",
        groups: Sequence[str] = (),
        attributes: Mapping[str, Sequence[str]] | None = None,
        name_id: str | None = None,
        name_id_format: str = NAMEID_EMAIL,
        omit_attributes: Sequence[str] = (),
        sign: Signed = "assertion",
        signing_key: KeyPair | None = None,
        assertion_signing_key: KeyPair | None = None,
        audience: str | list[str] | None = None,
        destination: str | _Omit | None = None,
        recipient: str | _Omit | None = None,
        issuer: str | None = None,
        assertion_issuer: str | None = None,
        in_response_to: str | _Omit | None = None,
        not_before: dt.datetime | None = None,
        not_on_or_after: dt.datetime | None = None,
        confirmation_not_on_or_after: dt.datetime | None = None,
        status: str | None = None,
    ) -> str:
        """A Response to ``request`` (or unsolicited when ``request`` is None, then
        ``sp_entity_id`` and ``acs_url`` say where to) for ``email``.

        By default everything is right: Destination and Recipient the request's ACS URL,
        Audience its Issuer, InResponseTo its ID, valid for five minutes, the assertion
        signed. ``attributes`` adds or replaces attributes (by Name), ``omit_attributes``
        drops some. Each other keyword sets one part wrong (``signing_key`` signs both, or
        the response only when ``assertion_signing_key`` is given; ``audience`` a list: one
        AudienceRestriction with several audiences); ``status`` (a second-level StatusCode
        under Responder) makes an error response without an assertion.
        """
        sp = sp_entity_id or (request.issuer if request else None)
        acs = acs_url or (request.acs_url if request else None)
        assert sp, "an unsolicited response needs sp_entity_id"
        assert acs, "an unsolicited response needs acs_url"
        server = self._server((sp, acs))
        response: samlp.Response = server.create_authn_response(
            {},
            request.id if request else None,
            acs,
            sp,
            name_id=saml.NameID(format=name_id_format, text=name_id or email),
            authn={"class_ref": saml.AUTHN_PASSWORD_PROTECTED},
            sign_response=False,
            sign_assertion=False,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        assertion: saml.Assertion = response.assertion
        values: dict[str, Sequence[str]] = {"email": [email]}
        if name:
            values["name"] = [name]
        if groups:
            values["groups"] = list(groups)
        values.update(attributes or {})
        values = {k: v for k, v in values.items() if k not in omit_attributes}
        assertion.attribute_statement = [_attribute_statement(values)] if values else []

        confirmation = assertion.subject.subject_confirmation[0].subject_confirmation_data
        conditions = assertion.conditions
        if isinstance(audience, list):
            conditions.audience_restriction[0].audience = [saml.Audience(text=a) for a in audience]
        elif audience is not None:
            conditions.audience_restriction[0].audience[0].text = audience
        if isinstance(destination, _Omit):
            response.destination = None
        elif destination is not None:
            response.destination = destination
        if isinstance(recipient, _Omit):
            confirmation.recipient = None
        elif recipient is not None:
            confirmation.recipient = recipient
        if issuer is not None:
            response.issuer.text = issuer
            assertion.issuer.text = issuer
        if assertion_issuer is not None:
            assertion.issuer.text = assertion_issuer
        if isinstance(in_response_to, _Omit):
            response.in_response_to = None
            confirmation.in_response_to = None
        elif in_response_to is not None:
            response.in_response_to = in_response_to
            confirmation.in_response_to = in_response_to
        if not_before is not None:
            conditions.not_before = _saml_time(not_before)
        if not_on_or_after is not None:
            conditions.not_on_or_after = _saml_time(not_on_or_after)
            confirmation.not_on_or_after = _saml_time(not_on_or_after)
        if confirmation_not_on_or_after is not None:
            confirmation.not_on_or_after = _saml_time(confirmation_not_on_or_after)
        if status is not None:
            response.status = samlp.Status(
                status_code=samlp.StatusCode(
                    value=samlp.STATUS_RESPONDER, status_code=samlp.StatusCode(value=status)
                ),
                status_message=samlp.StatusMessage(text="The user could not be authenticated"),
            )
            response.assertion = None
            if sign == "assertion":
                sign = "response"
        key = signing_key or self.key
        return self._sign(server, response, sign, key, assertion_signing_key or key)

    def _sign(
        self,
        server: Server,
        response: samlp.Response,
        sign: Signed,
        key: KeyPair,
        assertion_key: KeyPair,
    ) -> str:
        """Sign the assertion, then the response (its digest covers the assertion's
        signature), each enveloped, exclusive C14N, RSA-SHA256 over SHA-256 digests."""
        targets: list[tuple[str, str, KeyPair]] = []
        if sign in ("both", "assertion"):
            assertion = response.assertion
            assertion.signature = _signature_template(assertion.id, assertion_key)
            targets.append((ASSERTION_NODE, assertion.id, assertion_key))
        if sign in ("both", "response"):
            response.signature = _signature_template(response.id, key)
            targets.append((RESPONSE_NODE, response.id, key))
        xml = str(response)
        for node, node_id, signer in targets:
            signed = server.sec.sign_statement(
                xml, node, key_file=str(signer.key_file), node_id=node_id
            )
            xml = signed.decode() if isinstance(signed, bytes) else signed
        return _strip_declaration(xml)

    def _server(self, sp: tuple[str, str] | None) -> Server:
        """pysaml2's IdP, knowing the SP (entity id, ACS URL) it answers."""
        cached = self._servers.get(sp or ("", ""))
        if cached is not None:
            return cached
        config: dict[str, Any] = {
            "entityid": self.entity_id,
            "xmlsec_binary": shutil.which("xmlsec1"),
            "key_file": str(self.key.key_file),
            "cert_file": str(self.key.cert_file),
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)]
                    },
                    "name_id_format": [NAMEID_EMAIL],
                    "policy": {"default": {"lifetime": {"minutes": 5}}},
                }
            },
        }
        if sp is not None:
            config["metadata"] = {"inline": [_sp_metadata(*sp)]}
        idp_config = IdPConfig()
        idp_config.load(config)
        server = Server(config=idp_config)
        self._servers[sp or ("", "")] = server
        return server


def _signature_template(node_id: str, key: KeyPair) -> Any:
    return pre_signature_part(
        ident=node_id, public_key=key.cert_base64, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
    )


def _attribute_statement(values: Mapping[str, Sequence[str]]) -> saml.AttributeStatement:
    """Attributes named exactly as given (no OID mapping), basic name format."""
    attributes = []
    for attribute_name, attribute_values in values.items():
        items = []
        for value in attribute_values:
            items.append(saml.AttributeValue(text=value))
        attributes.append(
            saml.Attribute(name=attribute_name, name_format=ATTRNAME_BASIC, attribute_value=items)
        )
    return saml.AttributeStatement(attribute=attributes)


def _sp_metadata(entity_id: str, acs_url: str) -> str:
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'entityID="{entity_id}"><md:SPSSODescriptor AuthnRequestsSigned="false" '
        'WantAssertionsSigned="true" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="{acs_url}" '
        'index="0"/></md:SPSSODescriptor></md:EntityDescriptor>'
    )


def _strip_declaration(xml: str) -> str:
    return re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", xml)


# ---------------------------------------------------------------------- serving metadata
@contextmanager
def running_saml_idp() -> Iterator[SamlIdp]:
    """The IdP with fresh keys; its metadata served at ``metadata_url`` (127.0.0.1),
    other documents at the paths the test puts in ``served_metadata``."""
    with tempfile.TemporaryDirectory(prefix="saml-idp-") as directory:
        keys = make_key_pair(Path(directory), "idp")
        attacker = make_key_pair(Path(directory), "attacker")
        holder: dict[str, SamlIdp] = {}
        server = ThreadingHTTPServer(("127.0.0.1", 0), _metadata_handler(holder))
        base = f"http://127.0.0.1:{server.server_address[1]}"
        idp = SamlIdp(
            entity_id=f"{base}/idp",
            sso_url=f"{base}/sso",
            key=keys,
            attacker=attacker,
            metadata_url=f"{base}/metadata",
        )
        idp.served_metadata["/metadata"] = idp.metadata_xml()
        holder["idp"] = idp
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield idp
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _metadata_handler(holder: dict[str, SamlIdp]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            document = holder["idp"].served_metadata.get(self.path)
            if document is None:
                self.send_error(404)
                return
            data = document.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler

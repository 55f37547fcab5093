"""A SAML 2.0 IdP in the test process (pysaml2's IdP side, signing with xmlsec1), for
the SP's own end-to-end tests: it reads the AuthnRequest our login redirect carries and
answers with a signed Response, as a real IdP's HTTP-POST form would."""

from __future__ import annotations

import base64
import datetime
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import quoteattr

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.saml import AUTHN_PASSWORD, NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"


def self_signed(common_name: str, days: int = 30) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM); a negative ``days`` gives an expired certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    start, end = (now - datetime.timedelta(days=60), now + datetime.timedelta(days=days))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def cert_body(cert_pem: bytes) -> str:
    return "".join(line for line in cert_pem.decode().splitlines() if "CERTIFICATE" not in line)


def idp_metadata(
    entity_id: str,
    sso_url: str,
    certificates: list[str],
    *,
    binding: str = BINDING_HTTP_REDIRECT,
) -> str:
    keys = "".join(
        f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>'
        f"<ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
        "</md:KeyDescriptor>"
        for c in certificates
    )
    return (
        f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" entityID={quoteattr(entity_id)}>'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'{keys}<md:SingleSignOnService Binding="{binding}" Location={quoteattr(sso_url)}/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )


def authn_request_of(location: str) -> tuple[str, str, str | None]:
    """(decoded AuthnRequest XML, the raw SAMLRequest, RelayState) of a redirect URL."""
    query = parse_qs(urlsplit(location).query)
    raw = query["SAMLRequest"][0]
    xml = zlib.decompress(base64.b64decode(raw), -15).decode()
    return xml, raw, query.get("RelayState", [None])[0]


@dataclass
class SamlTestIdp:
    entity_id: str
    sso_url: str
    key_file: Path
    cert_file: Path

    @property
    def certificate(self) -> str:
        return cert_body(self.cert_file.read_bytes())

    def metadata(self) -> str:
        return idp_metadata(self.entity_id, self.sso_url, [self.certificate])

    def _server(self, sp_metadata: str) -> Server:
        config = IdPConfig()
        config.load(
            {
                "entityid": self.entity_id,
                "xmlsec_binary": "/usr/bin/xmlsec1",
                "key_file": str(self.key_file),
                "cert_file": str(self.cert_file),
                "metadata": {"inline": [sp_metadata]},
                "delete_tmpfiles": True,
                "service": {
                    "idp": {
                        "endpoints": {
                            "single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)]
                        },
                        "signing_algorithm": SIG_RSA_SHA256,
                        "digest_algorithm": DIGEST_SHA256,
                        "policy": {
                            "default": {
                                "lifetime": {"minutes": 5},
                                "attribute_restrictions": None,
                                "name_form": BASIC,
                            }
                        },
                    }
                },
            }
        )
        return Server(config=config)

    def respond(
        self,
        login_location: str,
        sp_metadata: str,
        *,
        email: str,
        attributes: dict[str, list[str]] | None = None,
        sign_response: bool = True,
        sign_assertion: bool = False,
        unsolicited_to: tuple[str, str] | None = None,
    ) -> str:
        """The base64 SAMLResponse answering the AuthnRequest in ``login_location``
        (or, with ``unsolicited_to=(sp entity id, acs url)``, an IdP-initiated one)."""
        server = self._server(sp_metadata)
        if unsolicited_to is None:
            _, raw, _ = authn_request_of(login_location)
            request = server.parse_authn_request(raw, BINDING_HTTP_REDIRECT).message
            in_response_to, sp_entity_id = request.id, request.issuer.text
            acs = request.assertion_consumer_service_url
        else:
            in_response_to = None
            sp_entity_id, acs = unsolicited_to
        response = server.create_authn_response(
            attributes if attributes is not None else {"email": [email]},
            in_response_to=in_response_to,
            destination=acs,
            sp_entity_id=sp_entity_id,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email),
            sign_response=sign_response,
            sign_assertion=sign_assertion,
            authn={"class_ref": AUTHN_PASSWORD},
        )
        return base64.b64encode(str(response).encode()).decode()


def make_test_idp(directory: Path, entity_id: str, sso_url: str) -> SamlTestIdp:
    key_pem, cert_pem = self_signed("saml-test-idp")
    key_file, cert_file = directory / "idp.key", directory / "idp.crt"
    key_file.write_bytes(key_pem)
    cert_file.write_bytes(cert_pem)
    return SamlTestIdp(entity_id, sso_url, key_file, cert_file)

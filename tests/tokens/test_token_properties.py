"""Properties of the access-token codec: what it issues it verifies, and nothing else.

The codec is the running app's (real keys from the database). Hypothesis drives a sync
inner function from each async test, since ``@given`` cannot wrap a coroutine that
uses the session's event loop; the codec itself does no I/O.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultmaven_auth.errors import InvalidToken
from faultmaven_auth.runtime import Runtime

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


async def test_issue_then_verify_returns_the_same_claims(runtime: Runtime) -> None:
    """For any user, organization and session ids, verify(issue(...)) gives them back."""
    codec = runtime.access_tokens

    @PROPERTY_SETTINGS
    @given(user_id=st.uuids(), org_id=st.uuids(), session_id=st.uuids())
    def round_trip(user_id: uuid.UUID, org_id: uuid.UUID, session_id: uuid.UUID) -> None:
        issued = codec.issue(user_id=user_id, organization_id=org_id, session_id=session_id)
        claims = codec.verify(issued.token)
        assert claims == issued.claims
        assert (claims.user_id, claims.organization_id, claims.session_id) == (
            user_id,
            org_id,
            session_id,
        )
        assert claims.issuer == runtime.settings.jwt_issuer
        assert claims.audience == runtime.settings.jwt_audience
        assert claims.expires_at - claims.issued_at == codec.ttl

    round_trip()


async def test_every_issued_token_has_a_fresh_jti(runtime: Runtime) -> None:
    """Two tokens for the same user and session differ in jti (revocation is per token)."""
    codec = runtime.access_tokens
    ids = {"user_id": uuid.uuid4(), "organization_id": uuid.uuid4(), "session_id": uuid.uuid4()}
    first, second = codec.issue(**ids), codec.issue(**ids)
    assert first.claims.jti != second.claims.jti
    assert codec.verify(first.token).jti != codec.verify(second.token).jti


async def test_any_single_byte_flip_makes_the_token_invalid(runtime: Runtime) -> None:
    """Flipping any bits of any one byte of a token makes verify raise InvalidToken."""
    codec = runtime.access_tokens
    token = codec.issue(
        user_id=uuid.uuid4(), organization_id=uuid.uuid4(), session_id=uuid.uuid4()
    ).token
    raw = token.encode("ascii")
    codec.verify(token)  # the unflipped token is valid, so only the flip can fail it

    @PROPERTY_SETTINGS
    @given(position=st.integers(0, len(raw) - 1), mask=st.integers(1, 255))
    def flipped_is_invalid(position: int, mask: int) -> None:
        mutated = bytearray(raw)
        mutated[position] ^= mask
        # latin-1 maps every byte to one character, so the flip survives as a str.
        with pytest.raises(InvalidToken):
            codec.verify(mutated.decode("latin-1"))

    flipped_is_invalid()


async def test_flip_in_the_last_signature_character_is_refused(runtime: Runtime) -> None:
    """Every flip of the final character is refused, even one only touching padding bits."""
    # The last base64url character of the signature carries 4 unused bits; a lenient
    # decoder maps several characters to the same bytes, making the token malleable.
    codec = runtime.access_tokens
    token = codec.issue(
        user_id=uuid.uuid4(), organization_id=uuid.uuid4(), session_id=uuid.uuid4()
    ).token
    head, last = token[:-1], ord(token[-1])
    for mask in range(1, 256):
        with pytest.raises(InvalidToken):
            codec.verify(head + chr(last ^ mask))

"""The verified-token cache: a token's signature is checked once, and the cache never
accepts what a fresh verification would refuse (expired, signed by a retired key)."""

from __future__ import annotations

import time
import uuid

import pytest

from faultmaven_auth.errors import InvalidToken
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.tokens.access import AccessClaims, AccessTokenCodec
from faultmaven_auth.tokens.verified_tokens import VerifiedTokenCache


class CountingCodec(AccessTokenCodec):
    """The service's codec, counting the verifications it really performs."""

    verifications = 0

    def verify(self, token: str) -> AccessClaims:
        self.verifications += 1
        return super().verify(token)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make_cache(runtime: Runtime, clock: Clock, max_entries: int = 100) -> VerifiedTokenCache:
    codec = CountingCodec(
        runtime.keys,
        issuer=runtime.access_tokens.issuer,
        audience=runtime.access_tokens.audience,
        ttl=runtime.access_tokens.ttl,
    )
    return VerifiedTokenCache(codec, runtime.keys, max_entries=max_entries, clock=clock)


def issue(runtime: Runtime) -> tuple[str, AccessClaims]:
    issued = runtime.access_tokens.issue(
        user_id=uuid.uuid4(), organization_id=uuid.uuid4(), session_id=uuid.uuid4()
    )
    return issued.token, issued.claims


def verifications(cache: VerifiedTokenCache) -> int:
    codec = cache._codec  # the counting codec this test built
    assert isinstance(codec, CountingCodec)
    return codec.verifications


def test_a_token_is_verified_once(runtime: Runtime) -> None:
    """The second use of a token returns the same claims without a verification."""
    cache = make_cache(runtime, Clock())
    token, claims = issue(runtime)
    assert cache.verify(token) == claims
    assert cache.verify(token) == claims
    assert verifications(cache) == 1


def test_an_entry_never_outlives_the_token(runtime: Runtime) -> None:
    """At the token's exp the cache no longer answers: the codec decides again."""
    clock = Clock()
    cache = make_cache(runtime, clock)
    token, claims = issue(runtime)
    cache.verify(token)
    clock.now = claims.expires_at.timestamp()
    cache.verify(token)  # still valid by the real clock, so the codec accepts it again
    assert verifications(cache) == 2


def test_a_retired_key_is_refused_even_when_cached(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the signing key stops verifying, a cached token signed by it is refused."""
    cache = make_cache(runtime, Clock())
    token, _ = issue(runtime)
    cache.verify(token)
    monkeypatch.setattr(runtime.keys, "verifying_key", lambda kid: None)
    with pytest.raises(InvalidToken):
        cache.verify(token)


def test_the_cache_is_bounded(runtime: Runtime) -> None:
    """Beyond its size the least recently used token goes (and is verified again)."""
    cache = make_cache(runtime, Clock(), max_entries=2)
    first, second, third = (issue(runtime)[0] for _ in range(3))
    for token in (first, second, first, third):
        cache.verify(token)
    assert len(cache) == 2
    cache.verify(first)
    assert verifications(cache) == 3  # ``second`` was evicted, ``first`` was not
    cache.verify(second)
    assert verifications(cache) == 4


def test_a_refused_token_is_not_cached(runtime: Runtime) -> None:
    """A token that fails verification is refused every time, never remembered."""
    cache = make_cache(runtime, Clock())
    token, _ = issue(runtime)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for _ in range(2):
        with pytest.raises(InvalidToken):
            cache.verify(tampered)
    assert len(cache) == 0

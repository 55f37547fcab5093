"""A per-worker cache of verified access tokens, so a client's repeated requests with
one token pay for the ES256 verification once.

Only what the signature proves is cached (the claims), never a decision that can change:
revocation, the user's state and permissions are checked on every request by the caller.
An entry never outlives its token's ``exp`` (no leeway is granted from the cache), and
it is dropped as soon as the key that signed it stops verifying (retired at once after a
compromise, or past its ``retire_after``), exactly as a fresh verification would refuse it.
Only tokens that verified are stored, so the cache holds nothing an attacker chose
beyond tokens we signed; its size is capped (least recently used entries go first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import jwt

from faultmaven_auth.tokens.access import AccessClaims, AccessTokenCodec
from faultmaven_auth.tokens.keys import KeyRing


class _Entry(NamedTuple):
    claims: AccessClaims
    kid: str
    expires_at: float  # the token's exp, epoch seconds


class VerifiedTokenCache:
    """``verify`` with the codec's contract (claims, or ``InvalidToken``/``ExpiredToken``)."""

    def __init__(
        self,
        codec: AccessTokenCodec,
        keys: KeyRing,
        *,
        max_entries: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._codec = codec
        self._keys = keys
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, token: str) -> AccessClaims:
        entry = self._entries.get(token)
        if entry is not None:
            if self._clock() < entry.expires_at and self._keys.verifying_key(entry.kid):
                self._entries.move_to_end(token)
                return entry.claims
            del self._entries[token]
        # Raises for anything that does not verify now (expired included): nothing stored.
        claims = self._codec.verify(token)
        self._remember(token, claims)
        return claims

    def _remember(self, token: str, claims: AccessClaims) -> None:
        expires_at = claims.expires_at.timestamp()
        if self._max_entries == 0 or expires_at <= self._clock():
            return  # within the codec's leeway: accepted, but not worth keeping
        kid = jwt.get_unverified_header(token)["kid"]  # verified a moment ago
        self._entries[token] = _Entry(claims, str(kid), expires_at)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

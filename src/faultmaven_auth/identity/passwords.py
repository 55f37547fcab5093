"""Password hashing with argon2id, off the event loop.

Argon2 is deliberately slow (tens of milliseconds); run inline it would stall every
other request on the loop, so hashing and verifying go to a worker thread. A login for
an unknown email verifies against a dummy hash, so both paths cost the same.

Passwords are used exactly as typed (never trimmed) except for one step: Unicode NFC
normalization, applied here on both hashing and verifying, so "é" typed as one code
point or as "e" + combining accent (macOS, some keyboards) is the same password.
"""

from __future__ import annotations

import asyncio
import unicodedata
from dataclasses import dataclass

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@dataclass(frozen=True)
class VerifyResult:
    valid: bool
    needs_rehash: bool = False


class PasswordHasher:
    def __init__(self, *, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
        self._argon2 = _Argon2(
            time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism
        )
        # Made once per process; verified against when the email is unknown.
        self._dummy_hash = self._argon2.hash("not-a-real-password-only-for-timing")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._argon2.hash, _normalized(password))

    async def verify(self, password_hash: str | None, password: str) -> VerifyResult:
        """Check a password; with no hash (unknown user), still spend the same time."""
        return await asyncio.to_thread(self._verify_sync, password_hash, password)

    def _verify_sync(self, password_hash: str | None, password: str) -> VerifyResult:
        target = password_hash or self._dummy_hash
        try:
            self._argon2.verify(target, _normalized(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return VerifyResult(valid=False)
        if password_hash is None:
            return VerifyResult(valid=False)
        return VerifyResult(valid=True, needs_rehash=self._argon2.check_needs_rehash(target))


def _normalized(password: str) -> str:
    return unicodedata.normalize("NFC", password)

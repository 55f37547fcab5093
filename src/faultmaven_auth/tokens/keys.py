"""Signing keys: generated when none exist, persisted, published as a JWKS, rotated.

Keys live in the ``signing_keys`` table so every replica signs with the same current key
and verifies every published one. The private key is AES-GCM encrypted at rest when
``SIGNING_KEY_ENCRYPTION_KEY`` is set (production requires it). ``KeyRing`` parses each
key once and keeps it in memory; ``refresh`` (run periodically by the app) only parses
keys it has not seen, so a rotation made by the CLI reaches running servers.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.errors import ServiceUnavailable
from faultmaven_auth.storage.models import SigningKey
from faultmaven_auth.storage.models.base import utcnow

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class KeyDecryptionError(Exception):
    """A stored private key could not be decrypted with the configured secret."""


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    algorithm: str
    private_key: PrivateKey
    public_key: PublicKey
    public_jwk: dict[str, Any]
    activated_at: datetime | None
    retire_after: datetime | None

    def usable_at(self, now: datetime) -> bool:
        return self.retire_after is None or now < self.retire_after


class KeyCipher:
    """AES-256-GCM with a key derived (HKDF-SHA256) from the configured secret."""

    def __init__(self, secret: str | None) -> None:
        self._aead: AESGCM | None = None
        if secret:
            key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"fm-auth signing keys"
            ).derive(secret.encode())
            self._aead = AESGCM(key)

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    def seal(self, plaintext: bytes, kid: str) -> bytes:
        if self._aead is None:
            return plaintext
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, kid.encode())

    def open(self, stored: bytes, kid: str, *, encrypted: bool) -> bytes:
        if not encrypted:
            return stored
        if self._aead is None:
            raise KeyDecryptionError(
                f"signing key {kid} is encrypted but SIGNING_KEY_ENCRYPTION_KEY is not set"
            )
        try:
            return self._aead.decrypt(stored[:12], stored[12:], kid.encode())
        except Exception as exc:
            raise KeyDecryptionError(
                f"signing key {kid} cannot be decrypted with SIGNING_KEY_ENCRYPTION_KEY"
            ) from exc


def _generate(algorithm: str) -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _public_jwk(kid: str, algorithm: str, public_key: PublicKey) -> dict[str, Any]:
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public_key))
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(public_key))
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    return jwk


def new_signing_key(algorithm: str, cipher: KeyCipher) -> SigningKey:
    """A fresh key row, not yet active."""
    kid = secrets.token_urlsafe(12)
    private_key = _generate(algorithm)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    jwk = _public_jwk(kid, algorithm, private_key.public_key())
    return SigningKey(
        kid=kid,
        algorithm=algorithm,
        private_key=cipher.seal(pem, kid),
        encrypted=cipher.enabled,
        public_jwk=json.dumps(jwk),
    )


async def rotate_signing_key(
    session: AsyncSession, *, algorithm: str, cipher: KeyCipher, grace: timedelta
) -> tuple[SigningKey, list[str]]:
    """Make a new current key; older keys stay published for ``grace``, then retire.

    Returns the new key and the kids of the keys it replaced.
    """
    now = utcnow()
    key = new_signing_key(algorithm, cipher)
    key.activated_at = now
    current = (
        await session.scalars(
            select(SigningKey).where(
                SigningKey.activated_at.is_not(None), SigningKey.retire_after.is_(None)
            )
        )
    ).all()
    for old in current:
        old.retire_after = now + grace
    session.add(key)
    await session.flush()
    return key, [old.kid for old in current]


async def ensure_signing_key(session: AsyncSession, *, algorithm: str, cipher: KeyCipher) -> None:
    """On first start, create the first key. Safe when several replicas start at once."""
    existing = await session.scalar(
        select(SigningKey.kid).where(SigningKey.activated_at.is_not(None)).limit(1)
    )
    if existing is None:
        key = new_signing_key(algorithm, cipher)
        key.activated_at = utcnow()
        session.add(key)


class KeyRing:
    """The parsed keys in memory: the current signing key and every verifying key."""

    def __init__(self, cipher: KeyCipher) -> None:
        self._cipher = cipher
        self._keys: dict[str, LoadedKey] = {}

    def _load(self, row: SigningKey) -> LoadedKey:
        pem = self._cipher.open(row.private_key, row.kid, encrypted=row.encrypted)
        private_key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyDecryptionError(f"signing key {row.kid} has an unsupported type")
        return LoadedKey(
            kid=row.kid,
            algorithm=row.algorithm,
            private_key=private_key,
            public_key=private_key.public_key(),
            public_jwk=json.loads(row.public_jwk),
            activated_at=row.activated_at,
            retire_after=row.retire_after,
        )

    async def refresh(self, session: AsyncSession) -> None:
        rows = (
            await session.scalars(select(SigningKey).where(SigningKey.activated_at.is_not(None)))
        ).all()
        now = utcnow()
        keys: dict[str, LoadedKey] = {}
        for row in rows:
            if row.retire_after is not None and row.retire_after <= now:
                continue
            known = self._keys.get(row.kid)
            if known is not None and known.retire_after == row.retire_after:
                keys[row.kid] = known
            elif known is not None:
                keys[row.kid] = LoadedKey(**{**known.__dict__, "retire_after": row.retire_after})
            else:
                keys[row.kid] = self._load(row)
        self._keys = keys

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    def current(self) -> LoadedKey:
        """The key that signs: the newest active key that has not been superseded."""
        now = utcnow()
        candidates = [k for k in self._keys.values() if k.retire_after is None and k.activated_at]
        if not candidates:
            candidates = [k for k in self._keys.values() if k.usable_at(now)]
        if not candidates:
            raise ServiceUnavailable("No signing key is available", code="NO_SIGNING_KEY")
        return max(candidates, key=lambda k: k.activated_at or now)

    def verifying_key(self, kid: str) -> LoadedKey | None:
        key = self._keys.get(kid)
        if key is None or not key.usable_at(utcnow()):
            return None
        return key

    def jwks(self) -> dict[str, Any]:
        now = utcnow()
        return {"keys": [k.public_jwk for k in self._keys.values() if k.usable_at(now)]}

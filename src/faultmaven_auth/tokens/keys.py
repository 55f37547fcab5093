"""Signing keys: generated when none exist, persisted, published as a JWKS, rotated.

Keys live in the ``signing_keys`` table so every replica signs with the same current key
and verifies every published one. The private key is AES-GCM encrypted at rest when
``SIGNING_KEY_ENCRYPTION_KEY`` is set (production requires it); keys stored before the
secret was set are encrypted at the next start (``encrypt_plaintext_keys``). ``KeyRing``
parses each key once and keeps it in memory; ``refresh`` (run periodically by the app)
only parses keys it has not seen, so a rotation made by the CLI reaches running servers.

Rotation is publish-then-activate. A key's life, by its two timestamps:

    created ── published (verifies) ── activated_at: signs ── superseded ── retire_after
                                                                            (unpublished)

``rotate_signing_key`` sets the new key's ``activated_at`` in the future (the activation
delay), so every replica and every verifier's cached JWKS knows it before it signs; the
old key keeps signing until then and stays published until its last token has expired.
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
from sqlalchemy import select, update
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

    def signs_at(self, now: datetime) -> bool:
        return self.activated_at is not None and self.activated_at <= now and self.usable_at(now)


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


@dataclass(frozen=True)
class Rotation:
    key: SigningKey
    previous: list[str]
    activates_at: datetime
    previous_retire_after: datetime


async def rotate_signing_key(
    session: AsyncSession,
    *,
    algorithm: str,
    cipher: KeyCipher,
    activation_delay: timedelta,
    token_lifetime: timedelta,
) -> Rotation:
    """Publish a new key now that signs from ``now + activation_delay``.

    Keys not already on their way out keep signing until then and retire once the
    last token they may sign has expired (``token_lifetime`` after the activation).
    With a zero delay the new key signs at once (the emergency path).
    """
    now = utcnow()
    activates_at = now + activation_delay
    key = new_signing_key(algorithm, cipher)
    key.activated_at = activates_at
    current = (
        await session.scalars(
            select(SigningKey).where(
                SigningKey.activated_at.is_not(None), SigningKey.retire_after.is_(None)
            )
        )
    ).all()
    retire_after = activates_at + token_lifetime
    for old in current:
        old.retire_after = retire_after
    session.add(key)
    await session.flush()
    return Rotation(
        key=key,
        previous=[old.kid for old in current],
        activates_at=activates_at,
        previous_retire_after=retire_after,
    )


async def retire_keys_now(session: AsyncSession, kids: list[str]) -> None:
    """Unpublish ``kids`` at once: tokens they signed stop verifying (a compromised key)."""
    if kids:
        await session.execute(
            update(SigningKey)
            .where(SigningKey.kid.in_(kids))
            .values(retire_after=utcnow())
            .execution_options(synchronize_session=False)
        )


async def ensure_signing_key(session: AsyncSession, *, algorithm: str, cipher: KeyCipher) -> None:
    """On first start, create the first key. Safe when several replicas start at once."""
    existing = await session.scalar(
        select(SigningKey.kid).where(SigningKey.activated_at.is_not(None)).limit(1)
    )
    if existing is None:
        key = new_signing_key(algorithm, cipher)
        key.activated_at = utcnow()
        session.add(key)


async def encrypt_plaintext_keys(session: AsyncSession, cipher: KeyCipher) -> int:
    """Encrypt every key stored in plaintext; the number this call encrypted.

    Each row is rewritten only while it is still plaintext (a conditional update), so
    replicas starting at once encrypt each key exactly once; the loser's update matches
    no row. Keys stay decryptable either way: both sealed the same PEM with one secret.
    """
    if not cipher.enabled:
        return 0
    rows = (
        await session.execute(
            select(SigningKey.kid, SigningKey.private_key).where(SigningKey.encrypted.is_(False))
        )
    ).all()
    done = 0
    for kid, pem in rows:
        result = await session.execute(
            update(SigningKey)
            .where(SigningKey.kid == kid, SigningKey.encrypted.is_(False))
            .values(private_key=cipher.seal(pem, kid), encrypted=True)
            .execution_options(synchronize_session=False)
        )
        done += result.rowcount  # type: ignore[attr-defined]
    return done


@dataclass(frozen=True)
class KeyInventory:
    """What is stored, without key material: for ``check-config`` and ``keys encrypt``."""

    total: int
    plaintext: int
    encrypted: int
    undecryptable: int  # encrypted, but not with the configured secret (or none is set)


async def inventory_keys(session: AsyncSession, cipher: KeyCipher) -> KeyInventory:
    """Every stored key counts (retired ones hold private keys too); only keys the service
    would load (not retired) are tried for decryption."""
    now = utcnow()
    rows = (
        await session.execute(
            select(
                SigningKey.kid,
                SigningKey.private_key,
                SigningKey.encrypted,
                SigningKey.retire_after,
            )
        )
    ).all()
    undecryptable = 0
    for kid, stored, encrypted, retire_after in rows:
        if not encrypted or (retire_after is not None and retire_after <= now):
            continue
        try:
            cipher.open(stored, kid, encrypted=True)
        except KeyDecryptionError:
            undecryptable += 1
    plaintext = sum(1 for row in rows if not row.encrypted)
    return KeyInventory(
        total=len(rows),
        plaintext=plaintext,
        encrypted=len(rows) - plaintext,
        undecryptable=undecryptable,
    )


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
            if known is not None and (known.activated_at, known.retire_after) == (
                row.activated_at,
                row.retire_after,
            ):
                keys[row.kid] = known
            elif known is not None:
                keys[row.kid] = LoadedKey(
                    **{
                        **known.__dict__,
                        "activated_at": row.activated_at,
                        "retire_after": row.retire_after,
                    }
                )
            else:
                keys[row.kid] = self._load(row)
        self._keys = keys

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    def current(self) -> LoadedKey:
        """The key that signs: the newest key whose activation time has come.

        A key published by a rotation but not yet active only verifies. Should no key
        be active yet (clocks far apart), the earliest-activating published key signs
        rather than none.
        """
        now = utcnow()
        active = [k for k in self._keys.values() if k.signs_at(now)]
        if active:
            return max(active, key=lambda k: k.activated_at or now)
        pending = [k for k in self._keys.values() if k.usable_at(now)]
        if not pending:
            raise ServiceUnavailable("No signing key is available", code="NO_SIGNING_KEY")
        return min(pending, key=lambda k: k.activated_at or now)

    def verifying_key(self, kid: str) -> LoadedKey | None:
        key = self._keys.get(kid)
        if key is None or not key.usable_at(utcnow()):
            return None
        return key

    def jwks(self) -> dict[str, Any]:
        now = utcnow()
        return {"keys": [k.public_jwk for k in self._keys.values() if k.usable_at(now)]}

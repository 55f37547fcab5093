"""Which service client a presented id and secret proved, remembered per worker.

Keyed by an HMAC of the credentials under a random key made at start, so the secret is
never kept, and a lookup (a dict probe) teaches a guesser nothing: without the key they
cannot aim at an entry. Only credentials a full check accepted are stored; whether the
client is still good is decided by ``service_client_auth`` on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class AuthenticatedClient:
    """A service client whose secret and authority were checked."""

    id: uuid.UUID
    client_id: str
    organization_id: uuid.UUID | None
    created_by_id: uuid.UUID | None


class ClientCredentials:
    """Which client a presented id and secret proved, by their keyed hash (bounded)."""

    def __init__(self, *, max_entries: int) -> None:
        self._key = secrets.token_bytes(32)
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, AuthenticatedClient] = OrderedDict()

    def fingerprint(self, client_id: str, secret: str) -> bytes:
        message = f"{client_id}\x00{secret}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def get(self, fingerprint: bytes) -> AuthenticatedClient | None:
        client = self._entries.get(fingerprint)
        if client is not None:
            self._entries.move_to_end(fingerprint)
        return client

    def put(self, fingerprint: bytes, client: AuthenticatedClient) -> None:
        if self._max_entries == 0:
            return
        self._entries[fingerprint] = client
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget(self, fingerprint: bytes) -> None:
        self._entries.pop(fingerprint, None)

    def clear(self) -> None:
        self._entries.clear()

"""Which service client a presented id and secret proved, remembered per worker.

Keyed by an HMAC of the credentials under a random key made at start, so the secret is
never kept, and a lookup (a dict probe) teaches a guesser nothing: without the key they
cannot aim at an entry. Only credentials a full check accepted are stored; whether the
client is still good is decided by ``service_client_auth`` on every request.

An entry can carry a tag (``ClientChangeMarker.current``): it is then found only while
the tag is unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faultmaven_auth.config import Settings


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
        self._entries: OrderedDict[bytes, tuple[AuthenticatedClient, bytes | None]] = OrderedDict()

    def fingerprint(self, client_id: str, secret: str) -> bytes:
        message = f"{client_id}\x00{secret}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def get(self, fingerprint: bytes, tag: bytes | None = None) -> AuthenticatedClient | None:
        entry = self._entries.get(fingerprint)
        if entry is None or not hmac.compare_digest(entry[1] or b"", tag or b""):
            return None
        self._entries.move_to_end(fingerprint)
        return entry[0]

    def put(
        self, fingerprint: bytes, client: AuthenticatedClient, tag: bytes | None = None
    ) -> None:
        if self._max_entries == 0:
            return
        self._entries[fingerprint] = (client, tag)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget(self, fingerprint: bytes) -> None:
        self._entries.pop(fingerprint, None)

    def clear(self) -> None:
        self._entries.clear()


class ClientChangeMarker:
    """A file beside the SQLite database that the operator's CLI rewrites with fresh
    random bytes after every service-client revocation.

    With the in-process store the CLI (another process) cannot reach the server's
    generations, so without this the server would read the client's row on every
    introspection (about three quarters of its cost on SQLite). Reading this small file
    instead is a few microseconds; a check cached under one content is not used once
    the content changed. The CLI replaces the file only after its transaction has
    committed, and the server reads the content before it reads the row, so a check
    cached under the old content never outlives the revocation. Random content (not the
    modification time) keeps two changes in the same clock tick apart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def beside(cls, database: Path) -> ClientChangeMarker:
        return cls(database.with_name(database.name + ".service-clients"))

    def current(self) -> bytes:
        """The marker's content; empty while no revocation has written it."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def replace(self) -> None:
        """New content, swapped in whole (a reader never sees a half-written file)."""
        staging = self.path.with_name(f"{self.path.name}.{secrets.token_hex(8)}")
        try:
            staging.write_bytes(secrets.token_bytes(16))
            staging.replace(self.path)
        finally:
            staging.unlink(missing_ok=True)


def client_change_marker(settings: Settings) -> ClientChangeMarker | None:
    """The marker when servers cannot hear of the CLI's changes otherwise: an in-process
    store on a SQLite file. None with a shared store or another database."""
    path = settings.sqlite_path()
    if path is None or not settings.uses_in_process_store:
        return None
    return ClientChangeMarker.beside(path)

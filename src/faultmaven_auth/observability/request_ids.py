"""Request ids: random UUID4 strings, with the randomness read in batches.

``uuid.uuid4()`` is ``os.urandom(16)`` with the version and variant bits set; the system
call is most of its cost, and on some virtual machines it is slow (tens of
microseconds). Here 4 KiB of ``os.urandom`` serve 256 ids: each id still has 122 bits
from the operating system's CSPRNG, never reused and never derived from another id, so
ids are as unique and as hard to guess as ``uuid4``'s (they only correlate log lines;
nothing is authorized by one). A forked child starts with a fresh batch.
"""

from __future__ import annotations

import os
import threading

_ID_BYTES = 16
_BATCH_BYTES = _ID_BYTES * 256
_VARIANT = "89ab"  # RFC 4122 variant: the top two bits of byte 8 are 10


class _RandomBatch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def reset(self) -> None:
        self._buffer, self._offset = b"", 0

    def take(self) -> bytes:
        with self._lock:
            if self._offset >= len(self._buffer):
                self._buffer, self._offset = os.urandom(_BATCH_BYTES), 0
            start = self._offset
            self._offset = start + _ID_BYTES
            return self._buffer[start : self._offset]


_batch = _RandomBatch()
os.register_at_fork(after_in_child=_batch.reset)


def new_request_id() -> str:
    """A random UUID4 in its canonical form, like ``str(uuid.uuid4())``."""
    return format_uuid4(_batch.take())


def format_uuid4(raw: bytes) -> str:
    """``str(uuid.UUID(bytes=raw, version=4))``, without building the UUID object."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

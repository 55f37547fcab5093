"""Generated request ids are canonical random UUID4s, never repeated."""

from __future__ import annotations

import os
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from faultmaven_auth.observability.request_ids import format_uuid4, new_request_id


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=16, max_size=16))
def test_format_is_exactly_uuid4s(raw: bytes) -> None:
    """Same text as ``str(uuid.UUID(bytes=raw, version=4))`` for any 16 bytes."""
    assert format_uuid4(raw) == str(uuid.UUID(bytes=raw, version=4))


def test_ids_are_version_4_and_unique_across_batches() -> None:
    """Several batches' worth: all distinct, all parse as version-4 RFC 4122 UUIDs."""
    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids[::97]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    """After fork the child draws fresh randomness, not the rest of the parent's batch."""
    new_request_id()  # the parent holds a partly used batch
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent_next = new_request_id()
    assert child != parent_next

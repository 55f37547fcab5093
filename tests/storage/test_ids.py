"""Primary keys are UUIDv7 and sort by creation, which cursor pagination relies on."""

from __future__ import annotations

import itertools
import uuid

from faultmaven_auth.storage.ids import uuid7


def test_ids_are_version_7_with_the_rfc_variant() -> None:
    """Every id is a version-7 UUID of the RFC 9562 variant."""
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_ids_made_in_a_burst_are_strictly_increasing() -> None:
    """Thousands of ids made within a few milliseconds still sort in creation order."""
    ids = [uuid7() for _ in range(20_000)]
    assert all(earlier < later for earlier, later in itertools.pairwise(ids))
    assert len(set(ids)) == len(ids)

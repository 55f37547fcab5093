"""A store failure between a commit and its invalidation: the write is not answered
with an error (it happened), the worker forgets what it cached, and the invalidation is
retried until the store takes it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest

from faultmaven_auth.storage.db import create_engine
from faultmaven_auth.storage.kv import MemoryStore, StoreUnavailable
from faultmaven_auth.storage.models import Organization
from faultmaven_auth.tokens import tracking_db
from faultmaven_auth.tokens.principal_cache import organization_generation_key
from faultmaven_auth.tokens.tracking_db import TrackingDatabase
from tests.tokens.conftest import migrated_sqlite_settings


class FlakyStore(MemoryStore):
    """Refuses the first ``failures`` writes, as a store that is briefly down."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def set(self, key: str, value: str, ttl_seconds: int) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable
        await super().set(key, value, ttl_seconds)


async def test_a_lost_invalidation_is_logged_retried_and_empties_local_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Renaming an organization while the store is down commits, logs the failure,
    clears this worker's caches, and replaces the generation once the store is back."""
    settings = await migrated_sqlite_settings(tmp_path / "flaky.db")
    monkeypatch.setattr(tracking_db, "RETRY_INTERVAL_SECONDS", 0.01)
    store = FlakyStore(failures=0)
    cleared: list[bool] = []
    db = TrackingDatabase(
        create_engine(settings.database_url),
        store,
        clear_local_caches=lambda: cleared.append(True),
        retry_for_seconds=30,
    )
    try:
        org_id = uuid.uuid4()
        async with db.transaction() as session:
            session.add(
                Organization(id=org_id, name="Flaky", slug=f"f-{org_id}", max_users=5, max_teams=5)
            )
        assert await store.get(organization_generation_key(org_id)) is None  # new: nothing
        store.failures = 2
        with caplog.at_level(logging.ERROR, logger="faultmaven_auth.principal_cache"):
            async with db.transaction() as session:
                org = await session.get(Organization, org_id)
                assert org is not None
                org.name = "Renamed"
        assert cleared == [True]
        events = [
            getattr(r, "event_type", None)
            for r in caplog.records
            if r.name == "faultmaven_auth.principal_cache"
        ]
        assert events == ["principal_invalidation_failed"]
        async with asyncio.timeout(5):
            # The retry runs in the background: poll the store it writes to.
            while await store.get(organization_generation_key(org_id)) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        async with db.session() as session:
            renamed = await session.get(Organization, org_id)
        assert renamed is not None
        assert renamed.name == "Renamed"
    finally:
        await db.dispose()

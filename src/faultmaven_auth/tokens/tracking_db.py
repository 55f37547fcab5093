"""A ``Database`` whose write transactions invalidate the principals they change.

After a transaction that changed a principal (``principal_writes``) commits, the
generations of its organizations are replaced before the caller can answer. Should the
store fail at that moment, the committed change is not answered with a 503 (the caller
would retry a write that happened): the failure is logged, this worker's caches are
emptied, and the invalidation is retried every second until it lands or until every
cache entry it protects against has aged out. Meanwhile no request can use a cached
principal anyway: each one reads the same store first, and fails while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from faultmaven_auth.storage.db import Database
from faultmaven_auth.storage.kv import KeyValueStore, StoreUnavailable
from faultmaven_auth.tokens.principal_cache import invalidate_principals
from faultmaven_auth.tokens.principal_writes import (
    PrincipalChanges,
    install_principal_tracking,
    take_changes,
)

logger = logging.getLogger("faultmaven_auth.principal_cache")
RETRY_INTERVAL_SECONDS = 1.0


class TrackingDatabase(Database):
    def __init__(
        self,
        engine: AsyncEngine,
        kv: KeyValueStore,
        *,
        clear_local_caches: Callable[[], None],
        retry_for_seconds: float,
    ) -> None:
        super().__init__(engine)
        self._kv = kv
        self._clear_local_caches = clear_local_caches
        self._retry_for = retry_for_seconds
        self._retries: set[asyncio.Task[None]] = set()
        install_principal_tracking()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        session: AsyncSession | None = None
        try:
            async with super().transaction() as session:
                yield session
        except BaseException:
            # Rolled back, or failed while committing (then it may have committed):
            # invalidating is harmless either way, and the original error wins.
            if session is not None:
                with contextlib.suppress(Exception):
                    await self._invalidate(session)
            raise
        await self._invalidate(session)

    async def _invalidate(self, session: AsyncSession) -> None:
        changes = take_changes(session)
        if changes is None:
            return
        try:
            await self._send(changes)
        except StoreUnavailable:
            logger.error(
                "Could not invalidate cached principals; retrying",
                extra={"event_type": "principal_invalidation_failed"},
            )
            self._clear_local_caches()
            task = asyncio.create_task(self._retry(changes))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    async def _send(self, changes: PrincipalChanges) -> None:
        await invalidate_principals(self._kv, changes.organizations, everything=changes.everything)

    async def _retry(self, changes: PrincipalChanges) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_for
        while loop.time() < deadline:
            await asyncio.sleep(RETRY_INTERVAL_SECONDS)
            with contextlib.suppress(StoreUnavailable):
                await self._send(changes)
                logger.info(
                    "Cached principals invalidated after a store failure",
                    extra={"event_type": "principal_invalidation_recovered"},
                )
                return

    async def dispose(self) -> None:
        for task in list(self._retries):
            task.cancel()
        await super().dispose()

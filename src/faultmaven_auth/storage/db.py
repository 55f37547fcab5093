"""Engine and session factory; built from a URL by the app's lifespan, never at import.

Write transactions and reads are handed out separately because SQLite needs them to
start differently. pysqlite (under aiosqlite) runs SELECTs outside any transaction and
opens one only at the first INSERT/UPDATE/DELETE, so a "check, then write" (plan limits,
the last-owner rule, unique names) reads a state that another writer may change before
the write: ``SELECT … FOR UPDATE`` does not exist there. So the driver's own
transaction handling is switched off (``isolation_level=None``) and SQLAlchemy's
``begin`` event emits the BEGIN itself: ``BEGIN IMMEDIATE`` for ``Database.transaction()``
(the write lock is taken before the first read, so writers run one after the other),
and nothing for ``Database.session()``: reads run in autocommit, as before, and never
wait for writers in WAL mode. PostgreSQL keeps its default READ COMMITTED; writes that
check a count lock the organization row (``lock_organization``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Connection, event, exc, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# Execution option carried by the write engine; read by the SQLite ``begin`` listener.
SQLITE_BEGIN = "faultmaven_sqlite_begin"
WRITE_QUEUE_TIMEOUT_SECONDS = 30


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    # Bound parameters (password hashes, emails, token hashes) never go into exception
    # text, so an error that reaches a log line carries the statement only.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if url.startswith("sqlite"):
        # One writer at a time: wait for the lock rather than failing with "database is locked".
        # No pre-ping: a local file does not drop connections, and each ping is a thread hop.
        kwargs["connect_args"] = {"timeout": WRITE_QUEUE_TIMEOUT_SECONDS}
    else:
        # A server may close idle connections (restarts, failovers): test before use.
        kwargs["pool_pre_ping"] = True
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = pool_size
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _: Any) -> None:
    # The driver must not open (or commit) transactions on its own: ``_sqlite_begin`` does.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN)
    if mode is None:
        # Reads run each statement in autocommit, as pysqlite always ran SELECTs: a BEGIN
        # and its ROLLBACK would add two thread hops (about 40 %) to every read session.
        return
    # Straight to the driver, as asyncpg's BEGIN on PostgreSQL: transaction control is
    # not a query, so it stays out of db_queries_total and the SQL spans.
    statement = f"BEGIN {mode}"
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None  # noqa: S101 - a connection that is beginning is open
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
    except Exception as error:
        # Wrapped as SQLAlchemy wraps a statement's errors, so a lock that is never
        # granted ("database is locked") is the same 503 as any other database failure.
        raise exc.DBAPIError.instance(
            statement, None, error, connection.dialect.loaded_dbapi.Error
        ) from error
    finally:
        cursor.close()


class Database:
    """Owns the engine; hands out read sessions and write transactions.

    Anything that writes goes through ``transaction()``; ``session()`` is for reads.
    A request never opens a write transaction while it holds another one: on SQLite the
    second would wait for the first until the timeout and fail (503).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        writer = engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        self.write_sessionmaker = async_sessionmaker(writer, expire_on_commit=False)
        # SQLite grants its write lock to whichever waiter polls first (busy handler sleeps
        # of up to 100 ms), so under a burst the lock sits idle between writers and one can
        # lose for the whole busy timeout. Queueing this process's writers first hands the
        # lock over at once, in arrival order, and waiting writers hold no pooled
        # connection. BEGIN IMMEDIATE still orders writers of other processes.
        self._write_queue: asyncio.Lock | None = (
            asyncio.Lock() if engine.dialect.name == "sqlite" else None
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._queued_writer(), self.write_sessionmaker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def _queued_writer(self) -> AsyncIterator[None]:
        if self._write_queue is None:
            yield
            return
        # As long as SQLite's own busy timeout: a writer stuck behind a hung one gets a 503.
        async with asyncio.timeout(WRITE_QUEUE_TIMEOUT_SECONDS):
            await self._write_queue.acquire()
        try:
            yield
        finally:
            self._write_queue.release()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

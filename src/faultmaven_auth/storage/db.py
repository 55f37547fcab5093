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
check a count lock the organization row (``lock_organization``). Its read sessions run
in autocommit too: at READ COMMITTED each statement takes its own snapshot inside a
transaction as well, so a read loses nothing, and it saves the ``BEGIN`` and ``ROLLBACK``
round trips (each costs the event loop about as much CPU as the query itself).

Capacity: a checkout waits up to ``pool_timeout`` for a free connection (pool size plus
overflow per worker, sized with the admission limit: docs/deployment.md, "Sizing"). When
none comes free, or PostgreSQL refuses a new connection because it has too many clients
(SQLSTATE 53300, asyncpg's ``TooManyConnectionsError``, which SQLAlchemy passes through
unwrapped at connect), the pool raises ``DatabaseAtCapacity``: a 503 whose refusal is
counted and logged once per interval, instead of a 500.

A ``PoolMonitor`` given to ``create_engine`` hears of every checkout (with the time it
waited for a connection) and every return, on the event loop's thread, with the pool's
usage right after the change. This module knows nothing of metrics; the monitor is
``observability.db_metrics.PoolMetrics``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar, NamedTuple, Protocol

from sqlalchemy import Connection, event, exc, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from faultmaven_auth.errors import DependencyAtCapacity

# Execution option carried by the write engine; read by the SQLite ``begin`` listener.
SQLITE_BEGIN = "faultmaven_sqlite_begin"
WRITE_QUEUE_TIMEOUT_SECONDS = 30
POOL_RECYCLE_SECONDS = 300


TOO_MANY_CONNECTIONS = "53300"  # PostgreSQL: too_many_connections (server or role limit)


class DatabaseAtCapacity(DependencyAtCapacity):
    code = "DATABASE_UNAVAILABLE"
    message = "The database is at capacity; try again shortly"
    refusal_reason = "database_pool_exhausted"


class DatabaseConnectionLimit(DatabaseAtCapacity):
    refusal_reason = "database_connection_limit"


class PoolUsage(NamedTuple):
    size: int  # configured pool size (overflow not included)
    checked_out: int  # connections in use
    overflow: int  # connections in use beyond ``size``


class PoolMonitor(Protocol):
    def checked_out(self, usage: PoolUsage, waited_seconds: float) -> None: ...

    def returned(self, usage: PoolUsage) -> None: ...


def pool_usage(pool: AsyncAdaptedQueuePool) -> PoolUsage:
    # Overflow as in use beyond the size, not SQLAlchemy's ``overflow()`` (connections
    # open beyond it), which also counts an idle one while the rest are out.
    size, checked_out = pool.size(), pool.checkedout()
    return PoolUsage(size, checked_out, max(0, checked_out - size))


class MonitoredQueuePool(AsyncAdaptedQueuePool):
    """The queue pool both drivers use: capacity errors translated, usage reported.

    ``create_engine`` makes a subclass per engine that carries the monitor (or None),
    because SQLAlchemy builds the pool itself (and rebuilds it as ``self.__class__`` on
    dispose). The hooks are the pool's own get/return steps: the wait includes opening a
    new connection when the pool has room.
    """

    monitor: ClassVar[PoolMonitor | None] = None

    def _do_get(self) -> ConnectionPoolEntry:
        start = time.perf_counter()
        try:
            return super()._do_get()
        except exc.TimeoutError as error:
            raise DatabaseAtCapacity from error
        except Exception as error:
            if getattr(error, "sqlstate", None) == TOO_MANY_CONNECTIONS:
                raise DatabaseConnectionLimit from error
            raise
        finally:
            # A checkout that timed out waited too; that is the wait worth seeing.
            if self.monitor is not None:
                self.monitor.checked_out(pool_usage(self), time.perf_counter() - start)

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        try:
            super()._do_return_conn(record)
        finally:
            if self.monitor is not None:
                self.monitor.returned(pool_usage(self))


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    pool_timeout: float = 30.0,
    pool_monitor: PoolMonitor | None = None,
) -> AsyncEngine:
    # Bound parameters (password hashes, emails, token hashes) never go into exception
    # text, so an error that reaches a log line carries the statement only.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if url.startswith("sqlite"):
        # One writer at a time: wait for the lock rather than failing with "database is locked".
        # No pre-ping: a local file does not drop connections, and each ping is a thread hop.
        kwargs["connect_args"] = {"timeout": WRITE_QUEUE_TIMEOUT_SECONDS}
    else:
        # No pre-ping: it is a round trip on every checkout. Connections are replaced
        # before servers and proxies commonly drop idle ones; one dropped anyway
        # (restart, failover) fails its statement as a 503 and invalidates the pool,
        # so the next checkout connects afresh.
        kwargs["pool_recycle"] = POOL_RECYCLE_SECONDS
    if _uses_queue_pool(url):
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = pool_size if max_overflow is None else max_overflow
        kwargs["pool_timeout"] = pool_timeout
        kwargs["poolclass"] = type(
            "MonitoredQueuePool", (MonitoredQueuePool,), {"monitor": pool_monitor}
        )
    engine = create_async_engine(url, **kwargs)
    if pool_monitor is not None and isinstance(engine.pool, AsyncAdaptedQueuePool):
        pool_monitor.returned(pool_usage(engine.pool))  # the size, before any checkout
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _uses_queue_pool(url: str) -> bool:
    """PostgreSQL and a SQLite file do; in-memory SQLite has one static connection."""
    parsed = make_url(url)
    dialect: Any = parsed.get_dialect()  # a DefaultDialect subclass; typed as the interface
    return issubclass(dialect.get_pool_class(parsed), AsyncAdaptedQueuePool)


def _sqlite_connect(dbapi_connection: Any, _: Any) -> None:
    # The driver must not open (or commit) transactions on its own: ``_sqlite_begin`` does.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Writers run one at a time, each holding the lock through its commit: with FULL every
    # commit waits for an fsync (milliseconds, and tens of them on a busy disk), which is
    # what queued writers' tail latency was made of. NORMAL (SQLite's advice for WAL)
    # syncs at checkpoints: still never corrupt, and nothing is lost when the process
    # crashes; a power loss or OS crash may undo the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
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

    Anything that writes goes through ``transaction()``; ``session()`` is for reads (it
    runs in autocommit on both backends: a write there would commit statement by statement).
    A request never opens a write transaction while it holds another one: on SQLite the
    second would wait for the first until the timeout and fail (503).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        writer = engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        self.write_sessionmaker = async_sessionmaker(writer, expire_on_commit=False)
        self.autocommit_sessionmaker = async_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        # Reads: SQLite's already run in autocommit (no BEGIN is emitted for them);
        # PostgreSQL's do so too, without a BEGIN and a ROLLBACK round trip each.
        self.sessionmaker = (
            self.autocommit_sessionmaker
            if engine.dialect.name == "postgresql"
            else async_sessionmaker(engine, expire_on_commit=False)
        )
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
    async def single_statement(self) -> AsyncIterator[AsyncSession]:
        """PostgreSQL: a session whose statements commit one by one, as they end.

        For a write that is one statement (a refresh): no ``BEGIN`` and ``COMMIT`` round
        trips, and the row locks it takes are released as it ends, not after the
        application has read its result and sent ``COMMIT``. The session's commit events
        still run when the block ends (audit export). SQLite writers use
        ``transaction()``, which queues them.
        """
        if self._write_queue is not None:
            raise RuntimeError("single_statement() is for PostgreSQL; use transaction()")
        async with self.autocommit_sessionmaker() as session, session.begin():
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

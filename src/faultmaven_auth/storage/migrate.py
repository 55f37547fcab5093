"""Alembic, driven from code: the only way a schema is built, in tests too.

``migration_status`` only reads: the revision stamped in ``alembic_version`` (none when
the table or the SQLite file does not exist) against the newest migration shipped with
the code. PostgreSQL sessions are opened read-only and SQLite files with ``mode=ro``,
so it cannot write even by mistake, and a missing SQLite file is not created.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's ini interpolation treats % specially; URLs may contain %-escapes.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``. Creates the SQLite file's folder if needed."""
    if database_url.startswith("sqlite"):
        _, _, path = database_url.partition(":///")
        if path and not path.startswith(":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, database_url, revision)


STATUS_TIMEOUT_SECONDS = 15


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None  # None: nothing applied yet
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def as_dict(self) -> dict[str, Any]:
        return {"current": self.current, "head": self.head, "up_to_date": self.up_to_date}


def head_revision(database_url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert head is not None  # noqa: S101 - the package ships its migrations
    return head


def migration_status(database_url: str) -> MigrationStatus:
    """Where the database's schema stands; raises if the database cannot be read."""
    head = head_revision(database_url)
    url = make_url(database_url)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if not path or path.startswith(":memory:"):
            return MigrationStatus(current=None, head=head)
        if not Path(path).exists():
            return MigrationStatus(current=None, head=head)
        url = url.set(database=f"file:{path}", query={**url.query, "mode": "ro", "uri": "true"})
    else:
        connect_args["server_settings"] = {"default_transaction_read_only": "on"}
    return MigrationStatus(current=asyncio.run(_read_revision(url, connect_args)), head=head)


async def _read_revision(url: URL, connect_args: dict[str, Any]) -> str | None:
    engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        async with asyncio.timeout(STATUS_TIMEOUT_SECONDS), engine.connect() as conn:
            return await conn.run_sync(_current_revision)
    finally:
        await engine.dispose()


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()

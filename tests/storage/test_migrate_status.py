"""`faultmaven-auth migrate --status`: where the schema stands, without touching it.

Run on an empty database, a database one migration behind and an up-to-date one, on
SQLite and PostgreSQL; and against a database that cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from faultmaven_auth.config import Settings
from faultmaven_auth.storage.migrate import alembic_config, upgrade
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.support.server import free_port


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'status.db'}"
        return
    database = await create_postgres_database()
    try:
        yield database.async_url
    finally:
        await drop_postgres_database(database.name)


def revisions(url: str) -> list[str]:
    """Every shipped revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config(url))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def status(url: str) -> subprocess.CompletedProcess[str]:
    names = {field.upper() for field in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "faultmaven_auth", "migrate", "--status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def snapshot(url: str) -> dict[str, Any]:
    """The tables and the stamped revision: what `--status` must leave as it was."""

    def read(conn: Connection) -> dict[str, Any]:
        tables = set(inspect(conn).get_table_names())
        stamped = (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            if "alembic_version" in tables
            else None
        )
        return {"tables": tables, "stamped": stamped}

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(read)
    finally:
        await engine.dispose()


async def test_status_on_empty_behind_and_current_databases(empty_database_url: str) -> None:
    """No revision and behind exit 1, up to date exits 0; the JSON names both
    revisions; the database is the same after each call."""
    url = empty_database_url
    shipped = revisions(url)
    head = shipped[-1]
    sqlite_file = Path(url.partition(":///")[2]) if url.startswith("sqlite") else None

    fresh = await asyncio.to_thread(status, url)
    assert fresh.returncode == 1, fresh.stderr
    assert json.loads(fresh.stdout) == {"current": None, "head": head, "up_to_date": False}
    if sqlite_file is not None:
        assert not sqlite_file.exists()  # a status check does not create the database
    else:
        assert await snapshot(url) == {"tables": set(), "stamped": None}

    await asyncio.to_thread(upgrade, url, shipped[-2])
    before = await snapshot(url)
    behind = await asyncio.to_thread(status, url)
    assert behind.returncode == 1, behind.stderr
    assert json.loads(behind.stdout) == {
        "current": shipped[-2],
        "head": head,
        "up_to_date": False,
    }
    assert await snapshot(url) == before

    await asyncio.to_thread(upgrade, url)
    current = await asyncio.to_thread(status, url)
    assert current.returncode == 0, current.stderr
    assert json.loads(current.stdout) == {"current": head, "head": head, "up_to_date": True}
    assert (await snapshot(url))["stamped"] == [head]


def test_status_of_an_unreachable_database_is_a_clear_error() -> None:
    """A closed port: exit 1, one line naming the failure, no traceback, no password."""
    url = f"postgresql+asyncpg://postgres:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    result = status(url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "cannot read the schema version" in result.stderr
    assert "ConnectionRefusedError" in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret-pw" not in result.stderr

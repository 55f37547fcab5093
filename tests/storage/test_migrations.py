"""Alembic migrations are the only way a schema is built, and they match the models.

Each test gets an empty database (a SQLite file, or a PostgreSQL database of its own),
runs the real migrations on it and compares the result with ``Base.metadata`` the way
``alembic revision --autogenerate`` would: any difference is a migration someone forgot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, select
from sqlalchemy.ext.asyncio import create_async_engine

from faultmaven_auth.app import ConfigurationError
from faultmaven_auth.config import Settings
from faultmaven_auth.storage.migrate import alembic_config, upgrade
from faultmaven_auth.storage.models import Base, Role
from tests.conftest import (
    FAST_ARGON2,
    SYSTEM_ROLE_IDS,
    create_postgres_database,
    drop_postgres_database,
    running_app,
)


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The async URL of a database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    database = await create_postgres_database()
    try:
        yield database.async_url
    finally:
        await drop_postgres_database(database.name)


async def _on_sync_connection(url: str, work: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(work)
    finally:
        await engine.dispose()


def _schema_diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _system_roles(conn: Connection) -> dict[str, tuple[str, bool, Any]]:
    rows = conn.execute(select(Role.name, Role.id, Role.is_system, Role.organization_id))
    return {name: (str(role_id), is_system, org_id) for name, role_id, is_system, org_id in rows}


async def _upgrade(url: str) -> None:
    await asyncio.to_thread(upgrade, url)


async def _downgrade_to_base(url: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(url), "base")


async def test_migrated_schema_matches_the_models(empty_database_url: str) -> None:
    """After `upgrade head` autogenerate finds nothing to change on SQLite and PostgreSQL."""
    await _upgrade(empty_database_url)
    assert await _on_sync_connection(empty_database_url, _schema_diff) == []


async def test_migrations_create_every_model_table(empty_database_url: str) -> None:
    """Every table the models declare exists after migrating, plus Alembic's version table."""
    await _upgrade(empty_database_url)
    tables = await _on_sync_connection(empty_database_url, _table_names)
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


async def test_migrations_seed_the_four_system_roles(empty_database_url: str) -> None:
    """owner, admin, member and viewer exist with their fixed ids, global and system."""
    await _upgrade(empty_database_url)
    roles = await _on_sync_connection(empty_database_url, _system_roles)
    assert roles == {name: (role_id, True, None) for name, role_id in SYSTEM_ROLE_IDS.items()}


async def test_upgrade_twice_is_a_no_op(empty_database_url: str) -> None:
    """Running `migrate` again on an up-to-date database changes nothing and seeds nothing twice."""
    await _upgrade(empty_database_url)
    await _upgrade(empty_database_url)
    roles = await _on_sync_connection(empty_database_url, _system_roles)
    assert sorted(roles) == sorted(SYSTEM_ROLE_IDS)
    assert await _on_sync_connection(empty_database_url, _schema_diff) == []


async def test_app_does_not_build_a_schema_itself(empty_database_url: str) -> None:
    """On an unmigrated database the app refuses to start and says to run `migrate`."""
    settings = Settings(database_url=empty_database_url, redis_url=None, **FAST_ARGON2)
    with pytest.raises(ConfigurationError, match="faultmaven-auth migrate"):
        async with running_app(settings):
            pass
    assert await _on_sync_connection(empty_database_url, _table_names) == set()


async def test_sqlite_downgrade_to_base_then_upgrade_again(tmp_path: Path) -> None:
    """`downgrade base` removes every table; upgrading again rebuilds the same schema."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'roundtrip.db'}"
    await _upgrade(url)

    await _downgrade_to_base(url)
    assert await _on_sync_connection(url, _table_names) == {"alembic_version"}

    await _upgrade(url)
    assert await _on_sync_connection(url, _schema_diff) == []
    roles = await _on_sync_connection(url, _system_roles)
    assert sorted(roles) == sorted(SYSTEM_ROLE_IDS)

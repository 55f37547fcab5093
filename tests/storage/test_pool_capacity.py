"""Pools at capacity, as a client sees it: a request waits briefly for a connection, and
when none comes free (or PostgreSQL refuses one: "too many clients") it gets a 503 with a
stable code and Retry-After, never a 500; every such refusal is counted by reason in
``http_requests_rejected_total`` and logged (once per interval).

Each test holds the pool's only connection itself, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url

from faultmaven_auth.config import Settings
from tests.conftest import (
    PG_ADMIN_DSN,
    Account,
    client_for,
    delete_redis_prefix,
    running_app,
    sign_up,
)


@asynccontextmanager
async def app_on(
    backend: Settings, **update: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    prefix = f"{backend.kv_key_prefix}p{secrets.token_hex(4)}:"
    settings = backend.model_copy(update={"kv_key_prefix": prefix, **update})
    try:
        async with running_app(settings) as app, client_for(app) as http:
            yield app, http
    finally:
        if not settings.uses_in_process_store:
            await delete_redis_prefix(prefix)


def rejected(app: FastAPI, reason: str) -> float:
    registry = app.state.runtime.metrics.registry
    return registry.get_sample_value("http_requests_rejected_total", {"reason": reason}) or 0.0


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "Requests refused at capacity"]


def assert_capacity_refusal(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]


async def list_users(http: httpx.AsyncClient, owner: Account) -> httpx.Response:
    """A read every backend answers from the database, whatever is cached."""
    return await http.get(f"{owner.org_url}/users", headers=owner.headers)


async def test_redis_pool_exhaustion_is_a_counted_503(
    backend_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """With the pool's only Redis connection held past the wait, a request gets 503
    STORE_UNAVAILABLE with Retry-After, counted as store_pool_exhausted and logged; once
    the connection is back, the same request succeeds."""
    if backend_settings.uses_in_process_store:
        pytest.skip("the embedded backend has no Redis pool")
    caplog.set_level(logging.WARNING, logger="faultmaven_auth.admission")
    async with app_on(
        backend_settings, redis_max_connections=1, redis_pool_timeout_seconds=0.2
    ) as (app, http):
        owner = await sign_up(http)
        pool = app.state.runtime.kv.client.connection_pool
        held = await pool.get_connection()
        try:
            refused = await http.get("/api/v1/auth/me", headers=owner.headers)
        finally:
            await pool.release(held)
        after = await http.get("/api/v1/auth/me", headers=owner.headers)
        assert_capacity_refusal(refused, "STORE_UNAVAILABLE")
        assert after.status_code == 200
        assert rejected(app, "store_pool_exhausted") == 1
        assert [r.reasons for r in refusal_lines(caplog)] == [  # type: ignore[attr-defined]
            {"store_pool_exhausted": 1}
        ]


async def test_a_request_waits_for_a_redis_connection(backend_settings: Settings) -> None:
    """Within the pool's wait, a request that finds every connection busy is not
    refused: it gets the connection once it is released."""
    if backend_settings.uses_in_process_store:
        pytest.skip("the embedded backend has no Redis pool")
    async with app_on(backend_settings, redis_max_connections=1, redis_pool_timeout_seconds=30) as (
        app,
        http,
    ):
        owner = await sign_up(http)
        pool = app.state.runtime.kv.client.connection_pool
        held = await pool.get_connection()
        request = asyncio.create_task(http.get("/api/v1/auth/me", headers=owner.headers))
        for _ in range(500):  # until the request is queued on the pool
            if pool._condition._waiters:
                break
            await asyncio.sleep(0.01)
        assert not request.done()
        await pool.release(held)
        response = await request
    assert response.status_code == 200
    assert rejected(app, "store_pool_exhausted") == 0


async def test_database_pool_exhaustion_is_a_counted_503(
    backend_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """With the pool's only database connection held past the wait, a request gets 503
    DATABASE_UNAVAILABLE with Retry-After (not a 500), counted as database_pool_exhausted
    and logged; once the connection is back, the same request succeeds."""
    caplog.set_level(logging.WARNING, logger="faultmaven_auth.admission")
    async with app_on(
        backend_settings,
        database_pool_size=1,
        database_max_overflow=0,
        database_pool_timeout_seconds=0.2,
    ) as (app, http):
        owner = await sign_up(http)
        held = await app.state.runtime.db.engine.connect()
        try:
            refused = await list_users(http, owner)
        finally:
            await held.close()
        after = await list_users(http, owner)
        assert_capacity_refusal(refused, "DATABASE_UNAVAILABLE")
        assert after.status_code == 200
        assert rejected(app, "database_pool_exhausted") == 1
        assert [r.reasons for r in refusal_lines(caplog)] == [  # type: ignore[attr-defined]
            {"database_pool_exhausted": 1}
        ]


@asynccontextmanager
async def role_with_one_connection(database_url: str) -> AsyncIterator[str]:
    """A PostgreSQL role allowed one connection, with the app's rights on the database."""
    import asyncpg

    url = make_url(database_url)
    role = f"fm_limited_{secrets.token_hex(4)}"
    admin_dsn = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{url.database}"
    admin = await asyncpg.connect(admin_dsn, timeout=5)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
        await admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        await admin.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        yield url.set(username=role, password=None).render_as_string(hide_password=False)
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


async def test_too_many_clients_is_a_counted_503(
    backend_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """When PostgreSQL refuses a new connection (SQLSTATE 53300, here a role limited to
    one connection), the request gets 503 DATABASE_UNAVAILABLE with Retry-After, not a
    500, counted as database_connection_limit and logged."""
    if backend_settings.uses_sqlite:
        pytest.skip("SQLite has no connection limit")
    caplog.set_level(logging.WARNING, logger="faultmaven_auth.admission")
    async with app_on(backend_settings) as (_, http):
        owner = await sign_up(http)  # as the database owner
    async with (
        role_with_one_connection(backend_settings.database_url) as limited_url,
        app_on(backend_settings, database_url=limited_url, database_pool_timeout_seconds=5) as (
            app,
            http,
        ),
    ):
        held = await app.state.runtime.db.engine.connect()  # the role's one connection
        try:
            refused = await list_users(http, owner)
        finally:
            await held.close()
        after = await list_users(http, owner)
        assert_capacity_refusal(refused, "DATABASE_UNAVAILABLE")
        assert after.status_code == 200
        assert rejected(app, "database_connection_limit") == 1
        assert {"database_connection_limit": 1} in [
            r.reasons  # type: ignore[attr-defined]
            for r in refusal_lines(caplog)
        ]

"""Runbook signals as Prometheus scrapes them: process and runtime collectors, build
info, database and Redis pool usage, and whether each dependency is up.

Every test builds its own app (its own registry) on the backend's database and reads
``/metrics`` as text, like a scraper.
"""

from __future__ import annotations

import asyncio
import resource
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url, text

from faultmaven_auth import __version__
from faultmaven_auth.config import Settings
from tests.conftest import REDIS_URL, client_for, delete_redis_prefix, running_app
from tests.support.server import free_port
from tests.support.tcp_proxy import TcpProxy

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await asyncio.wait_for(client.get("/metrics"), timeout=20)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


@asynccontextmanager
async def app_on(
    backend: Settings, **update: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app on the backend, with its own store prefix (removed afterwards)."""
    prefix = f"{backend.kv_key_prefix}s{secrets.token_hex(4)}:"
    settings = backend.model_copy(update={"kv_key_prefix": prefix, **update})
    try:
        async with running_app(settings) as app, client_for(app) as http:
            yield app, http
    finally:
        if not backend.uses_in_process_store:  # keys written through a proxy, too
            await delete_redis_prefix(prefix)


async def test_process_and_python_runtime_collectors(backend_settings: Settings) -> None:
    """process_*, python_info and python_gc_* describe this very process."""
    async with app_on(backend_settings) as (_, http):
        samples = await scrape(http)
    rss = value(samples, "process_resident_memory_bytes")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    assert rss is not None
    assert 0 < rss <= peak_rss
    cpu = value(samples, "process_cpu_seconds_total")
    assert cpu is not None
    assert 0 < cpu <= time.process_time() + 1
    start = value(samples, "process_start_time_seconds")
    assert start is not None
    assert start <= time.time()
    assert (value(samples, "process_open_fds") or 0) > 0
    info = [labels for name, labels in samples if name == "python_info"]
    assert len(info) == 1
    assert dict(info[0])["implementation"] == "CPython"
    assert value(samples, "python_gc_collections_total", generation="0") is not None


@pytest.mark.parametrize(
    ("environment", "commit"),
    [
        ({"BUILD_COMMIT": "0123abc", "GIT_COMMIT": "fedcba9"}, "0123abc"),
        ({"GIT_COMMIT": "fedcba9"}, "fedcba9"),
        ({}, "unknown"),
    ],
    ids=["build-commit", "git-commit", "none"],
)
async def test_build_info_names_the_version_and_commit(
    backend_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    commit: str,
) -> None:
    """build_info is 1 with the package version and BUILD_COMMIT (else GIT_COMMIT)."""
    for name in ("BUILD_COMMIT", "GIT_COMMIT"):
        monkeypatch.delenv(name, raising=False)
    for name, setting in environment.items():
        monkeypatch.setenv(name, setting)
    async with app_on(backend_settings) as (_, http):
        samples = await scrape(http)
    series = [dict(labels) for name, labels in samples if name == "build_info"]
    assert series == [{"version": __version__, "commit": commit}]
    assert value(samples, "build_info", version=__version__, commit=commit) == 1


async def test_db_pool_gauges_follow_connections_in_use(backend_settings: Settings) -> None:
    """Connections held from the app's pool show as checked out, past the size as
    overflow; all back means zero again."""
    async with app_on(backend_settings, database_pool_size=2) as (app, http):
        engine = app.state.runtime.db.engine
        size = engine.pool.size()
        # PostgreSQL and a SQLite file both take DATABASE_POOL_SIZE.
        assert size == 2
        idle = await scrape(http)
        assert value(idle, "db_pool_size") == size
        assert value(idle, "db_pool_checked_out") == 0
        assert value(idle, "db_pool_overflow") == 0
        async with AsyncExitStack() as held:
            for _ in range(size + 1):
                conn = await held.enter_async_context(engine.connect())
                await conn.execute(text("SELECT 1"))
            busy = await scrape(http)
        after = await scrape(http)
    assert value(busy, "db_pool_checked_out") == size + 1
    assert value(busy, "db_pool_overflow") == 1
    assert value(after, "db_pool_checked_out") == 0
    assert value(after, "db_pool_overflow") == 0


async def test_db_pool_wait_is_measured_when_the_pool_is_exhausted(
    backend_settings: Settings,
) -> None:
    """A checkout that queues behind a full pool is observed with the time it waited."""
    async with app_on(backend_settings, database_pool_size=1) as (app, http):
        engine = app.state.runtime.db.engine
        before = await scrape(http)
        # No public accessor for max_overflow: PostgreSQL gets the pool size, SQLite 10.
        capacity = engine.pool.size() + engine.pool._max_overflow
        async with AsyncExitStack() as held:
            connections = [
                await held.enter_async_context(engine.connect()) for _ in range(capacity)
            ]

            async def checkout() -> None:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))

            waiter = asyncio.create_task(checkout())
            await asyncio.sleep(0.4)
            assert not waiter.done()
            await connections[0].close()
            await asyncio.wait_for(waiter, 10)
        after = await scrape(http)

    def slow(samples: Samples) -> float:
        count = value(samples, "db_pool_wait_seconds_count") or 0
        return count - (value(samples, "db_pool_wait_seconds_bucket", le="0.25") or 0)

    # The queued checkout, at least; a slow connect on a busy machine may add one.
    assert slow(after) - slow(before) >= 1
    waited = (value(after, "db_pool_wait_seconds_sum") or 0) - (
        value(before, "db_pool_wait_seconds_sum") or 0
    )
    assert waited >= 0.4


async def test_redis_pool_usage_only_with_redis(backend_settings: Settings) -> None:
    """With Redis: connections in use and available, and the URL's max_connections;
    with the in-process store: no Redis series at all."""
    if backend_settings.uses_in_process_store:
        async with app_on(backend_settings) as (_, http):
            samples = await scrape(http)
        assert not {n for n in names(samples) if n.startswith("redis_pool")}
        assert value(samples, "dependency_up", dependency="redis") is None
        assert value(samples, "dependency_up", dependency="database") == 1
        return
    url = f"{REDIS_URL}?max_connections=7"
    async with app_on(backend_settings, redis_url=url) as (app, http):
        pool = app.state.runtime.kv.client.connection_pool
        connection = await pool.get_connection()
        try:
            busy = await scrape(http)
        finally:
            await pool.release(connection)
        after = await scrape(http)
    assert value(busy, "redis_pool_max_connections") == 7
    assert value(busy, "redis_pool_connections", state="in_use") == 1
    assert value(after, "redis_pool_connections", state="in_use") == 0
    assert (value(after, "redis_pool_connections", state="available") or 0) >= 1
    assert value(after, "dependency_up", dependency="redis") == 1


async def test_dependency_up_flips_when_the_database_goes_away(
    backend_settings: Settings,
) -> None:
    """dependency_up{database} is 1, then 0 once the connection to PostgreSQL is cut,
    both from /ready and from a scrape, and the scrape still answers quickly."""
    if backend_settings.uses_sqlite:
        pytest.skip("a SQLite file cannot become unreachable over the network")
    url = make_url(backend_settings.database_url)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with app_on(
            backend_settings, database_url=proxied, health_check_timeout_seconds=0.5
        ) as (app, http):
            assert value(await scrape(http), "dependency_up", dependency="database") == 1
            await proxy.cut()
            registry = app.state.runtime.metrics.registry
            assert (await http.get("/ready")).status_code == 503
            up = registry.get_sample_value("dependency_up", {"dependency": "database"})
            assert up == 0
            started = time.monotonic()
            samples = await scrape(http)
            assert time.monotonic() - started < 10
    finally:
        await proxy.cut()
    assert value(samples, "dependency_up", dependency="database") == 0
    assert value(samples, "dependency_up", dependency="redis") == 1


async def test_dependency_up_flips_when_redis_goes_away(backend_settings: Settings) -> None:
    """dependency_up{redis} is 1, then 0 from /ready and from a scrape once Redis is cut."""
    if backend_settings.uses_in_process_store:
        pytest.skip("the embedded backend has no Redis to lose")
    redis = make_url(REDIS_URL.replace("redis://", "postgresql://", 1))  # host and port only
    proxy = await TcpProxy(redis.host or "127.0.0.1", redis.port or 6379).start()
    try:
        async with app_on(
            backend_settings,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            health_check_timeout_seconds=0.5,
        ) as (app, http):
            assert value(await scrape(http), "dependency_up", dependency="redis") == 1
            await proxy.cut()
            registry = app.state.runtime.metrics.registry
            assert (await http.get("/ready")).status_code == 503
            assert registry.get_sample_value("dependency_up", {"dependency": "redis"}) == 0
            samples = await scrape(http)
    finally:
        await proxy.cut()
    assert value(samples, "dependency_up", dependency="redis") == 0
    assert value(samples, "dependency_up", dependency="database") == 1


async def test_a_scrape_does_not_hang_on_a_hung_store(backend_settings: Settings) -> None:
    """A store that accepts and never answers: the scrape still answers, redis down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        async with app_on(
            backend_settings,
            redis_url=f"redis://127.0.0.1:{port}/0",
            health_check_timeout_seconds=0.3,
        ) as (_, http):
            samples = await scrape(http)  # bounded by wait_for inside scrape()
    assert value(samples, "dependency_up", dependency="redis") == 0
    assert value(samples, "dependency_up", dependency="database") == 1


async def test_unreachable_database_at_start_reports_down() -> None:
    """Started against a closed PostgreSQL port: the scrape answers, database is 0."""
    settings = Settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere",
        redis_url=None,
        health_check_timeout_seconds=0.5,
    )
    async with running_app(settings) as app, client_for(app) as http:
        samples = await scrape(http)
    assert value(samples, "dependency_up", dependency="database") == 0
    assert value(samples, "db_pool_checked_out") == 0

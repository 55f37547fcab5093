"""One worker or two, a scrape shows the same metric families and zero-initialised series.

Production runs several workers (prometheus_client's multiprocess mode), development and
most tests one: dashboards and `increase()` alerts must not find a family or a series
at 0 in one mode and nothing in the other. Both servers run on PostgreSQL + Redis.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    REDIS_URL,
    check_redis,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
)
from tests.support.server import migrate, running_server, server_env

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Scrape:
    families: dict[str, str]  # name -> type
    zero_counters: set[SeriesKey]  # counter series exported at 0
    values: dict[SeriesKey, float]


WORKERS_UP_SECONDS = 30


def worker_pids(metrics_dir: Path) -> set[str]:
    """The processes that have written counter files to the multiprocess directory."""
    return {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}


def scrape(base_url: str) -> Scrape:
    response = httpx.get(f"{base_url}/metrics")
    assert response.status_code == 200
    families: dict[str, str] = {}
    values: dict[SeriesKey, float] = {}
    zero: set[SeriesKey] = set()
    for family in text_string_to_metric_families(response.text):
        families[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            values[key] = sample.value
            if family.type == "counter" and sample.value == 0:
                zero.add(key)
    return Scrape(families, zero, values)


@pytest.fixture
async def postgres_and_redis() -> AsyncIterator[tuple[str, str]]:
    await check_redis()
    database = await create_postgres_database()
    prefix = f"fmtest:par{secrets.token_hex(4)}:"
    try:
        yield database.async_url, prefix
    finally:
        await drop_postgres_database(database.name)
        await delete_redis_prefix(prefix)


def test_two_workers_export_what_one_worker_exports(
    tmp_path: Path, postgres_and_redis: tuple[str, str]
) -> None:
    """Same family names and types; every counter series one mode exports at 0 (security
    events, refusals, python_gc_objects_uncollectable_total...) the other exports too;
    labelled counters never incremented (sso_attempts_total) are declared in both."""
    database_url, prefix = postgres_and_redis
    metrics_dir = tmp_path / "multiproc"
    metrics_dir.mkdir()
    common = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "KV_KEY_PREFIX": prefix,
        "LOG_LEVEL": "WARNING",
        "DATABASE_POOL_SIZE": "2",  # PostgreSQL's connections are shared with others
        "DATABASE_MAX_OVERFLOW": "0",
    }
    single_env = server_env(tmp_path, **common)
    migrate(single_env)
    with running_server(single_env, tmp_path / "one.log") as server:
        one = scrape(server.base_url)
    multi_env = server_env(tmp_path, **common, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    with running_server(multi_env, tmp_path / "two.log", "--workers", "2") as server:
        # The first worker up answers /health; wait until the second has written its
        # metric files too (it registers its counters at start), so both are in the sum.
        deadline = time.monotonic() + WORKERS_UP_SECONDS
        while len(worker_pids(metrics_dir)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        # Whichever worker answers, the families are the same.
        twos = [scrape(server.base_url) for _ in range(6)]
        workers = worker_pids(metrics_dir)
    assert len(workers) == 2, workers

    for two in twos:
        assert set(two.families) - set(one.families) == set()
        assert set(one.families) - set(two.families) == set()
        assert two.families == one.families
        assert one.zero_counters - set(two.values) == set()
        assert two.zero_counters - set(one.values) == set()
    # The families the report named, and the ones with no sample yet, are declared.
    for name in ("sso_attempts", "siem_events_dropped", "python_gc_collections", "http_requests"):
        assert name in twos[0].families, name
    # python_gc_* is the workers' collector activity summed (each worker publishes its own).
    for scraped in (one, *twos):
        collections = sum(
            value
            for (name, _), value in scraped.values.items()
            if name == "python_gc_collections_total"
        )
        assert collections > 0

"""Two worker processes, one view: scraped counters and runtime signals cover both."""

from __future__ import annotations

import os
import resource
import secrets
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from faultmaven_auth import __version__
from tests.conftest import REDIS_URL, check_redis, delete_redis_prefix
from tests.support.server import migrate, running_server, server_env

REQUESTS = 40


def me_401_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "http_requests_total"
                and sample.labels.get("handler") == "/api/v1/auth/me"
                and sample.labels.get("status") == "401"
            ):
                return sample.value
    return 0.0


@pytest.fixture
async def redis_prefix() -> str:
    await check_redis()
    prefix = f"fmtest:mw{secrets.token_hex(4)}:"
    yield prefix
    await delete_redis_prefix(prefix)


def test_two_workers_report_the_sum_of_their_counters(tmp_path: Path, redis_prefix: str) -> None:
    """Requests spread over two workers; every scrape, whichever worker answers, sums both."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = server_env(
        tmp_path,
        REDIS_URL=REDIS_URL,
        KV_KEY_PREFIX=redis_prefix,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        LOG_LEVEL="WARNING",
    )
    migrate(env)
    with running_server(env, tmp_path / "out.log", "--workers", "2") as server:
        for _ in range(REQUESTS):
            # A new connection each time, so the kernel spreads them over both workers.
            assert httpx.get(f"{server.base_url}/api/v1/auth/me").status_code == 401
        scrapes = [me_401_count(httpx.get(f"{server.base_url}/metrics").text) for _ in range(10)]
        worker_pids = {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}
    assert len(worker_pids) == 2, worker_pids
    assert scrapes == [REQUESTS] * 10


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _proc_cpu_and_rss(pids: set[str]) -> tuple[float, float]:
    """CPU seconds and resident bytes of the given processes, summed, read from /proc."""
    ticks, page = os.sysconf("SC_CLK_TCK"), resource.getpagesize()
    cpu = rss = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu += (int(fields[11]) + int(fields[12])) / ticks
        rss += int(fields[21]) * page
    return cpu, rss


def test_runtime_signals_cover_every_worker(tmp_path: Path, redis_prefix: str) -> None:
    """With two workers, whichever answers: pool sizes add up, process_* is both workers
    together, python_info and build_info are there, python_gc_* is the workers' collectors."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = server_env(
        tmp_path,
        REDIS_URL=f"{REDIS_URL}?max_connections=9",
        KV_KEY_PREFIX=redis_prefix,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        BUILD_COMMIT="feedbeef",
        LOG_LEVEL="WARNING",
    )
    migrate(env)
    with running_server(env, tmp_path / "out.log", "--workers", "2") as server:
        for _ in range(REQUESTS):
            assert httpx.get(f"{server.base_url}/api/v1/auth/me").status_code == 401
        workers = {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("gauge_livesum_*.db")}
        assert len(workers) == 2, workers
        scrapes = []
        for _ in range(6):
            cpu_before, _ = _proc_cpu_and_rss(workers)
            text = httpx.get(f"{server.base_url}/metrics").text
            cpu_after, rss = _proc_cpu_and_rss(workers)
            scrapes.append((_samples(text), cpu_before, cpu_after, rss))
    for samples, cpu_before, cpu_after, rss in scrapes:
        assert samples[("db_pool_size", ())] == 2 * 10  # DATABASE_POOL_SIZE per worker
        assert samples[("redis_pool_max_connections", ())] == 2 * 9
        assert samples[("build_info", (("commit", "feedbeef"), ("version", __version__)))] == 1
        assert samples[("dependency_up", (("dependency", "database"),))] == 1
        assert samples[("dependency_up", (("dependency", "redis"),))] == 1
        tick = 1 / os.sysconf("SC_CLK_TCK")  # sums of ticks in floating point
        assert cpu_before - tick <= samples[("process_cpu_seconds_total", ())] <= cpu_after + tick
        assert samples[("process_resident_memory_bytes", ())] == pytest.approx(rss, rel=0.2)
        assert any(name == "python_info" for name, _ in samples)
        for generation in ("0", "1", "2"):
            key = ("python_gc_collections_total", (("generation", generation),))
            assert key in samples, key
        assert samples[("python_gc_collections_total", (("generation", "0"),))] > 0

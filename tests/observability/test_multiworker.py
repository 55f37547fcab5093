"""Two worker processes, one view: scraped counters add up across workers."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

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

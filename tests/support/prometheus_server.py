"""A real Prometheus for tests, configured to scrape given targets, with query helpers.

It scrapes the given targets every second, keeps its data under the test's directory,
and is always stopped when the block exits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.monitoring.stack import running_prometheus as start_prometheus


@dataclass
class PrometheusServer:
    url: str
    log_path: Path

    def query(self, expr: str) -> dict[str, Any]:
        """The API's JSON answer to an instant query (``status`` is "success" or "error")."""
        response = httpx.post(f"{self.url}/api/v1/query", data={"query": expr}, timeout=10)
        body: dict[str, Any] = response.json()
        return body

    def series(self, selector: str) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/api/v1/series", data={"match[]": selector}, timeout=10)
        body: dict[str, Any] = response.json()
        return body

    def scrapes(self, job: str) -> int:
        """How many scrapes of ``job`` are stored (all targets together)."""
        result = self.query(f'sum(count_over_time(up{{job="{job}"}}[1h]))')["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    def wait_for_scrapes(self, job: str, count: int, timeout: float = 20) -> None:
        """Wait until ``count`` more scrapes of ``job`` have happened, all successful."""
        target = self.scrapes(job) + count
        deadline = time.monotonic() + timeout
        while self.scrapes(job) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus did not scrape {job} {count} times")
            time.sleep(0.2)
        up = self.query(f'min(up{{job="{job}"}})')["data"]["result"]
        assert up, f"no scrape of {job} is stored"
        assert up[0]["value"][1] == "1", f"the last scrape of {job} failed: {up}"


@contextmanager
def running_prometheus(directory: Path, jobs: dict[str, list[str]]) -> Iterator[PrometheusServer]:
    """Prometheus scraping ``jobs`` (job name -> ``host:port`` targets) every second."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in jobs.items()
        ],
    }
    config_path = directory / "prometheus.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    # The process itself is started, awaited and stopped as in the alert pipeline tests.
    with start_prometheus(config_path, directory) as url:
        yield PrometheusServer(url, directory / "prometheus.log")

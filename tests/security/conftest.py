"""Fixtures for the security tests: a fresh app per test and its security log lines."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from faultmaven_auth.config import Settings
from faultmaven_auth.observability.logging import JsonFormatter, _Fields
from tests.conftest import client_for, delete_redis_prefix, running_app


class SecurityLines(logging.Handler):
    """The ``security`` logger's lines, formatted exactly as production writes them."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(
            JsonFormatter(
                _Fields("fm-auth-service-enterprise", "test", False, trace_ids=lambda: None)
            )
        )
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.lines]
        return [e for e in parsed if event_type is None or e.get("event_type") == event_type]


@pytest.fixture
def security_lines() -> Iterator[SecurityLines]:
    handler = SecurityLines()
    logger = logging.getLogger("security")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


FreshApp = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def fresh_app(backend_settings: Settings) -> FreshApp:
    """``async with fresh_app(**settings) as http``: a new app (fresh metrics) on the
    backend's database, with its own store prefix; its lifespan closes on exit."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        prefix = f"{backend_settings.kv_key_prefix}s{secrets.token_hex(4)}:"
        settings = backend_settings.model_copy(update={"kv_key_prefix": prefix, **overrides})
        try:
            async with running_app(settings) as app, client_for(app) as http:
                yield http
        finally:
            if not settings.uses_in_process_store:
                await delete_redis_prefix(prefix)

    return start


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    """Every sample of /metrics, keyed by name and sorted labels."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)

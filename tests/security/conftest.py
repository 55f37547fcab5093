"""Fixtures for the security tests: fresh apps, login protection with a clock the test
moves, and the log lines and metrics they emit.

Each app gets its own key prefix (fresh counters) and metrics registry on the session's
database; protected apps' clients come from an address of their own. Log lines are
captured as the production JSON formatter writes them.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from faultmaven_auth.config import Settings
from faultmaven_auth.observability.logging import JsonFormatter, _Fields
from faultmaven_auth.runtime import Runtime
from tests.conftest import (
    _remember_request_secrets,
    _remember_response_secrets,
    client_for,
    delete_redis_prefix,
    running_app,
)


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


# A whole hour on the clock: minute and hour windows all start here.
START = 1_800_000_000.0


@dataclass
class FakeClock:
    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Protected:
    app: FastAPI
    clock: FakeClock
    settings: Settings

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    def client(self, ip: str | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(ip or new_ip(), 50000))
        return httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            headers={"User-Agent": "attack-tool/1.0"},
            event_hooks={
                "request": [_remember_request_secrets],
                "response": [_remember_response_secrets],
            },
        )


def new_ip() -> str:
    return "10." + ".".join(str(b) for b in secrets.token_bytes(3))


# Limits far above what a test sends unless it sets them: each test turns on what it checks.
GENEROUS = {
    "rate_limit_enabled": True,
    "rate_limit_login": "1000/minute",
    "rate_limit_register": "1000/minute",
    "rate_limit_refresh": "1000/minute",
    "rate_limit_introspect": "1000/minute",
    "rate_limit_invitation": "1000/minute",
    "credential_stuffing_max_failures": 20,
    "credential_stuffing_max_accounts": 10,
}

StartProtected = Callable[..., AbstractAsyncContextManager[Protected]]


@pytest.fixture
def protected(backend_settings: Settings) -> StartProtected:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Protected]:
        prefix = f"{backend_settings.kv_key_prefix}s{secrets.token_hex(4)}:"
        settings = backend_settings.model_copy(
            update={**GENEROUS, "kv_key_prefix": prefix, **overrides}
        )
        try:
            async with running_app(settings) as app:
                clock = FakeClock()
                app.state.runtime.clock = clock
                yield Protected(app, clock, settings)
        finally:
            if not settings.uses_in_process_store:
                await delete_redis_prefix(prefix)

    return start


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter(_Fields("test", "test", False, lambda: None)))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class LogLines:
    handler: _Lines = field(default_factory=_Lines)

    def records(self, message: str | None = None, **match: Any) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.handler.lines]
        return [
            r
            for r in parsed
            if (message is None or r["message"] == message)
            and all(r.get(k) == v for k, v in match.items())
        ]

    def text(self) -> str:
        return "\n".join(self.handler.lines)


@pytest.fixture
def logs() -> Iterator[LogLines]:
    captured = LogLines()
    root = logging.getLogger()
    root.addHandler(captured.handler)
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def audit_types(
    client: httpx.AsyncClient, org_url: str, headers: dict[str, str]
) -> list[str]:
    response = await client.get(f"{org_url}/audit-events?limit=500", headers=headers)
    assert response.status_code == 200, response.text
    return [item["event_type"] for item in response.json()["items"]]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def sample(samples: Samples, name: str, **labels: str) -> float:
    return metric(samples, name, **labels)

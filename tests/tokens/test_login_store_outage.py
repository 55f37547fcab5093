"""With the key-value store down, login is all-or-nothing.

The store holds the shared success-rate counters, written in the background after the
session has been committed. A store outage then must not answer 503 for a login whose
session and audit event already exist: the failed write is logged, counted in
``telemetry_store_errors_total`` and retried. The store here is a real Redis URL pointing at a
closed port, so the failure is the one production would see.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from faultmaven_auth.config import Settings
from tests.conftest import PASSWORD, client_for, running_app, unique_email
from tests.tokens.conftest import migrated_sqlite_settings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


@pytest.fixture
async def store_down(tmp_path: Path) -> Settings:
    settings = await migrated_sqlite_settings(tmp_path / "outage.db")
    return settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})


@pytest.fixture
async def client(store_down: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(store_down) as app, client_for(app) as http:
        yield http


async def register(client: httpx.AsyncClient) -> str:
    email = unique_email("outage")
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "organization_name": "Outage",
            "email": email,
            "password": PASSWORD,
            "full_name": "Out Age",
        },
    )
    assert response.status_code == 201, response.text
    return email


async def test_login_succeeds_and_its_session_works_while_the_store_is_down(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Login answers 200 with tokens (not 503 after committing); the refresh token it
    returned is a real session; the lost counter is logged and counted."""
    email = await register(client)
    with caplog.at_level(logging.WARNING, logger="faultmaven_auth"):
        response = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        tokens = response.json()
        assert tokens["access_token"]
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        # The counters' background write fails within a second or so: logged and counted.
        async with asyncio.timeout(5):
            while not _store_warnings(caplog):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    assert _store_warnings(caplog)
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
    metrics = (await client.get("/metrics")).text
    failed = re.search(r'telemetry_store_errors_total\{operation="auth_counters"\} (\S+)', metrics)
    assert failed is not None
    assert float(failed.group(1)) >= 1


def _store_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event_type", None) == "telemetry_store_error"]


async def test_failed_login_is_still_401_while_the_store_is_down(client: httpx.AsyncClient) -> None:
    """A wrong password gets the same 401 INVALID_CREDENTIALS as with the store up."""
    email = await register(client)
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": "not-the-password-1"}
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"

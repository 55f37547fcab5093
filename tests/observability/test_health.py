"""Liveness and readiness as an orchestrator sees them, with dependencies up and down."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest

from faultmaven_auth.config import Settings
from tests.conftest import PASSWORD, client_for, running_app, sign_up
from tests.support.server import free_port


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung dependency)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


async def test_health_and_ready_when_everything_is_up(client: httpx.AsyncClient) -> None:
    """/health is the fixed liveness body; /ready checks both stores."""
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "healthy", "edition": "enterprise"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": True, "redis": True, "login_protection": True},
        "login_protection": "enforced",
    }


async def test_unreachable_postgres_fails_readiness_not_liveness() -> None:
    """Pointed at a closed port, the service starts; /ready names the database; APIs say 503."""
    settings = Settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere",
        redis_url=None,
        health_check_timeout_seconds=0.5,
    )
    async with running_app(settings) as app, client_for(app) as http:
        assert (await http.get("/health")).status_code == 200
        ready = await http.get("/ready")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "not_ready",
            "checks": {"database": False, "redis": True, "login_protection": True},
            "login_protection": "enforced",
        }
        login = await http.post(
            "/api/v1/auth/login", json={"email": "a@example.com", "password": PASSWORD}
        )
        assert login.status_code == 503
        assert login.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        me = await http.get("/api/v1/auth/me", headers={"Authorization": "Bearer x.y.z"})
        assert me.status_code == 503
        assert me.json()["error"]["code"] == "NO_SIGNING_KEY"


async def test_unreachable_redis_fails_readiness_not_liveness(
    backend_settings: Settings,
) -> None:
    """With Redis down, /ready names it and token checks answer 503, not 500."""
    if backend_settings.uses_sqlite:
        pytest.skip("the embedded backend has no Redis to lose")
    healthy = backend_settings
    async with running_app(healthy) as app, client_for(app) as http:
        account = await sign_up(http)
    broken = backend_settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "health_check_timeout_seconds": 0.5,
        }
    )
    async with running_app(broken) as app, client_for(app) as http:
        assert (await http.get("/health")).status_code == 200
        ready = await http.get("/ready")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "not_ready",
            "checks": {"database": True, "redis": False, "login_protection": False},
            # Development default: logins go on without lockout while the store is down.
            "login_protection": "failing_open",
        }
        me = await http.get("/api/v1/auth/me", headers=account.headers)
        assert me.status_code == 503
        assert me.json()["error"]["code"] == "STORE_UNAVAILABLE"


async def test_a_hung_dependency_does_not_hang_the_probe(
    backend_settings: Settings, black_hole: int
) -> None:
    """A store that accepts and never answers makes /ready fail after the check timeout."""
    settings = backend_settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{black_hole}/0",
            "health_check_timeout_seconds": 0.3,
        }
    )
    async with running_app(settings) as app, client_for(app) as http:
        # The guard only catches a hang; the check's own timeout is 0.3 s.
        ready = await asyncio.wait_for(http.get("/ready"), timeout=20)
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] is False

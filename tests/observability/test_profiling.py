"""Profiling is opt-in twice over: enabled by the operator, asked for by an entitled caller."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import SecretStr

from faultmaven_auth.app import ConfigurationError, create_app
from faultmaven_auth.config import Settings
from tests.conftest import add_member, client_for, running_app, sign_up

TOKEN = "profiling-token-for-tests-0123456789"


def profiles(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "Request profile"]


@pytest.fixture
async def profiled(backend_settings: Settings) -> httpx.AsyncClient:
    settings = backend_settings.model_copy(
        update={"profiling_enabled": True, "profiling_token": SecretStr(TOKEN)}
    )
    async with running_app(settings) as app, client_for(app) as http:
        yield http


async def test_token_holder_gets_a_profile_in_the_log(
    profiled: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """X-Profile with the right token logs the request's top functions."""
    caplog.set_level(logging.INFO, logger="faultmaven_auth.profiling")
    response = await profiled.get(
        "/api/v1/auth/me", headers={"X-Profile": "true", "X-Profiling-Token": TOKEN}
    )
    assert response.status_code == 401
    [record] = profiles(caplog)
    assert record.endpoint == "/api/v1/auth/me"
    assert record.profile
    assert {"function", "calls", "total_ms", "cumulative_ms"} <= set(record.profile[0])


async def test_owner_gets_a_profile_others_do_not(
    profiled: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """An owner may ask without the token; a member, a wrong token or no header get none."""
    caplog.set_level(logging.INFO, logger="faultmaven_auth.profiling")
    owner = await sign_up(profiled)
    member = await add_member(profiled, owner, "member")
    await profiled.get("/api/v1/auth/me", headers={**member.headers, "X-Profile": "true"})
    await profiled.get(
        "/api/v1/auth/me", headers={"X-Profile": "true", "X-Profiling-Token": "wrong"}
    )
    await profiled.get("/api/v1/auth/me?profile=true", headers=owner.headers)
    assert profiles(caplog) == []
    await profiled.get("/api/v1/auth/me", headers={**owner.headers, "X-Profile": "true"})
    assert len(profiles(caplog)) == 1


async def test_disabled_profiling_ignores_the_headers(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """With PROFILING_ENABLED off (the default) nothing is profiled, even with a token."""
    caplog.set_level(logging.INFO, logger="faultmaven_auth.profiling")
    await client.get("/api/v1/auth/me", headers={"X-Profile": "true", "X-Profiling-Token": TOKEN})
    assert profiles(caplog) == []


def test_production_refuses_profiling() -> None:
    """ENVIRONMENT=production with PROFILING_ENABLED=true does not start."""
    settings = Settings(
        environment="production",
        database_url="postgresql+asyncpg://x@127.0.0.1/x",
        redis_url="redis://127.0.0.1:6379/0",
        signing_key_encryption_key=SecretStr("k" * 40),
        profiling_enabled=True,
    )
    with pytest.raises(ConfigurationError, match="PROFILING_ENABLED"):
        create_app(settings, configure_logs=False)

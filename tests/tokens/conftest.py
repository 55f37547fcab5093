"""Helpers for token tests: the running app's runtime, forged JWTs, and private databases.

Forged tokens are built with PyJWT and the service's *real* keys, so a test that expects
a 401 fails for the one defect it names (wrong audience, expired, ...) and nothing else;
``test_token_attacks`` proves that with a control token built by the same helper.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from faultmaven_auth.cli import main as cli_main
from faultmaven_auth.config import Settings
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.migrate import upgrade, upgrade_async
from tests.conftest import FAST_ARGON2, Account


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    """The runtime (keys, codec, database) of the session's app."""
    value: Runtime = app.state.runtime
    return value


def access_claims(runtime: Runtime, account: Account, **changes: Any) -> dict[str, Any]:
    """A complete, valid access-token payload for ``account``; ``changes`` override it.

    A change whose value is ``None`` removes that claim.
    """
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": runtime.settings.jwt_issuer,
        "aud": runtime.settings.jwt_audience,
        "sub": account.user_id,
        "org_id": account.org_id,
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "type": "access",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


ACCESS_TOKEN_HEADER = {"typ": "at+jwt"}  # RFC 9068, as the service issues them


def sign_with_current_key(runtime: Runtime, claims: dict[str, Any], **headers: Any) -> str:
    """Sign ``claims`` with the service's current private key, its kid and ``typ: at+jwt``."""
    key = runtime.keys.current()
    return jwt.encode(
        claims,
        key.private_key,
        algorithm=key.algorithm,
        headers={"kid": key.kid, **ACCESS_TOKEN_HEADER, **headers},
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sqlite_settings(path: Path, **overrides: Any) -> Settings:
    """Settings for a private SQLite database at ``path`` (embedded store), not migrated."""
    return Settings(
        database_url=f"sqlite+aiosqlite:///{path}",
        redis_url=None,
        environment="development",
        jwt_issuer="http://testserver",
        cors_origins=[],
        **{**FAST_ARGON2, **overrides},
    )


async def migrated_sqlite_settings(path: Path, **overrides: Any) -> Settings:
    """Like ``sqlite_settings``, with the schema migrated (for use inside async tests)."""
    settings = sqlite_settings(path, **overrides)
    await upgrade_async(settings.database_url)
    return settings


@pytest.fixture
def private_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A private, migrated SQLite database (for the CLI and one-off apps).

    The working directory moves to ``tmp_path`` so a developer's ``.env`` cannot leak in.
    """
    settings = sqlite_settings(tmp_path / "private.db")
    upgrade(settings.database_url)
    monkeypatch.chdir(tmp_path)
    return settings


def cli_env(settings: Settings) -> dict[str, str | None]:
    """The environment a CLI command needs to reach ``settings``' database."""
    return {"DATABASE_URL": settings.database_url, "REDIS_URL": None, "ENVIRONMENT": "development"}


async def run_cli(settings: Settings, *args: str) -> dict[str, Any]:
    """Run ``faultmaven-auth <args>`` against ``settings``' database; its JSON output.

    The CLI calls ``asyncio.run``, which cannot nest in the test's loop: it runs in a thread.
    """
    result = await asyncio.to_thread(
        CliRunner().invoke, cli_main, list(args), env=cli_env(settings), catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    output: dict[str, Any] = json.loads(result.stdout)
    return output

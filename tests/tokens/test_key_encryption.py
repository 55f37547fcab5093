"""Signing keys stored in plaintext are encrypted once SIGNING_KEY_ENCRYPTION_KEY is set.

A database first used without the secret holds plain PEM keys. Setting the secret must
not leave production signing with them: the next start encrypts them (a conditional
update, so replicas starting together encrypt each key once) and says so at WARNING;
`keys encrypt` does the same on demand; `check-config` reports the stored keys and, in
production, refuses plaintext ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import SecretStr
from sqlalchemy import select

from faultmaven_auth.cli import main as cli_main
from faultmaven_auth.config import Settings
from faultmaven_auth.storage.migrate import upgrade_async
from faultmaven_auth.storage.models import SigningKey
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.tokens.keys import KeyCipher, new_signing_key
from tests.conftest import (
    FAST_ARGON2,
    PASSWORD,
    REDIS_URL,
    client_for,
    create_postgres_database,
    drop_postgres_database,
    login,
    running_app,
    sign_up,
)
from tests.tokens.conftest import bearer

SECRET = "Hq3xV9pL2mZ7cT5wR8nB4kD6fJ1sG0yAeU"


@pytest.fixture
async def plain_postgres() -> AsyncIterator[Settings]:
    """A private, migrated PostgreSQL database (no encryption secret yet)."""
    database = await create_postgres_database()
    settings = Settings(
        database_url=database.async_url,
        redis_url=None,
        environment="development",
        jwt_issuer="http://testserver",
        cors_origins=[],
        **FAST_ARGON2,
    )
    try:
        await upgrade_async(settings.database_url)
        yield settings
    finally:
        await drop_postgres_database(database.name)


def with_secret(settings: Settings, secret: str = SECRET) -> Settings:
    return settings.model_copy(update={"signing_key_encryption_key": SecretStr(secret)})


async def stored_keys(settings: Settings) -> list[SigningKey]:
    from faultmaven_auth.storage.db import Database, create_engine

    db = Database(create_engine(settings.database_url))
    try:
        async with db.session() as session:
            return list((await session.scalars(select(SigningKey))).all())
    finally:
        await db.dispose()


async def add_plaintext_keys(settings: Settings, count: int) -> None:
    """Keys a rotation made before the secret was set (published, not yet signing)."""
    from faultmaven_auth.storage.db import Database, create_engine

    db = Database(create_engine(settings.database_url))
    try:
        async with db.transaction() as session:
            for _ in range(count):
                row = new_signing_key("ES256", KeyCipher(None))
                row.activated_at = utcnow()
                session.add(row)
    finally:
        await db.dispose()


def encryption_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event_type", None) == "signing_keys_encrypted"]


async def test_start_with_a_new_secret_encrypts_plaintext_keys(
    plain_postgres: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The first start with SIGNING_KEY_ENCRYPTION_KEY encrypts the stored key, logs a
    WARNING with the count (no key material), and tokens signed before still work."""
    async with running_app(plain_postgres) as app, client_for(app) as client:
        account = await sign_up(client)
    assert [k.encrypted for k in await stored_keys(plain_postgres)] == [False]

    secured = with_secret(plain_postgres)
    with caplog.at_level(logging.WARNING, logger="faultmaven_auth"):
        async with running_app(secured) as app, client_for(app) as client:
            me = await client.get("/api/v1/auth/me", headers=account.headers)
            assert me.status_code == 200, me.text
            fresh = await login(client, account.email, PASSWORD)
            assert (
                await client.get("/api/v1/auth/me", headers=bearer(fresh["access_token"]))
            ).status_code == 200

    (warning,) = encryption_warnings(caplog)
    assert warning.levelno == logging.WARNING
    assert warning.__dict__["count"] == 1
    keys = await stored_keys(plain_postgres)
    assert [k.encrypted for k in keys] == [True]
    assert b"PRIVATE KEY" not in keys[0].private_key
    text = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert "PRIVATE KEY" not in text
    assert SECRET not in text

    # The next start has nothing left to encrypt and says nothing.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="faultmaven_auth"):
        async with running_app(secured):
            pass
    assert encryption_warnings(caplog) == []


async def test_replicas_starting_together_encrypt_each_key_once(
    plain_postgres: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Three replicas start at once on a database with four plaintext keys: the counts
    they log add up to four, every key is encrypted, and every replica serves."""
    async with running_app(plain_postgres):
        pass
    await add_plaintext_keys(plain_postgres, 3)
    secured = with_secret(plain_postgres)
    with caplog.at_level(logging.WARNING, logger="faultmaven_auth"):
        async with AsyncExitStack() as stack:
            apps = await asyncio.gather(
                *(stack.enter_async_context(running_app(secured)) for _ in range(3))
            )
            for app in apps:
                async with client_for(app) as client:
                    jwks = (await client.get("/.well-known/jwks.json")).json()
                    assert len(jwks["keys"]) == 4
            async with client_for(apps[0]) as first, client_for(apps[2]) as last:
                account = await sign_up(first)
                me = await last.get("/api/v1/auth/me", headers=account.headers)
                assert me.status_code == 200, me.text

    assert sum(r.__dict__["count"] for r in encryption_warnings(caplog)) == 4
    assert [k.encrypted for k in await stored_keys(plain_postgres)] == [True] * 4


def cli_env(settings: Settings, **extra: str) -> dict[str, str | None]:
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": None,
        "ENVIRONMENT": "development",
        "SIGNING_KEY_ENCRYPTION_KEY": None,
        **extra,
    }


async def cli(settings: Settings, args: list[str], **env: str) -> Result:
    return await asyncio.to_thread(
        CliRunner().invoke, cli_main, args, env=cli_env(settings, **env), catch_exceptions=False
    )


async def test_keys_encrypt_encrypts_plaintext_keys_once(plain_postgres: Settings) -> None:
    """`keys encrypt` needs the secret, encrypts what is plaintext, and is idempotent."""
    async with running_app(plain_postgres):
        pass
    refused = await cli(plain_postgres, ["keys", "encrypt"])
    assert refused.exit_code == 1
    assert "SIGNING_KEY_ENCRYPTION_KEY is not set" in refused.output

    first = await cli(plain_postgres, ["keys", "encrypt"], SIGNING_KEY_ENCRYPTION_KEY=SECRET)
    assert first.exit_code == 0, first.output
    report: dict[str, Any] = json.loads(first.stdout)
    assert report == {
        "newly_encrypted": 1,
        "total": 1,
        "plaintext": 0,
        "encrypted": 1,
        "undecryptable": 0,
    }
    again = await cli(plain_postgres, ["keys", "encrypt"], SIGNING_KEY_ENCRYPTION_KEY=SECRET)
    assert json.loads(again.stdout)["newly_encrypted"] == 0
    assert SECRET not in first.output + again.output
    async with running_app(with_secret(plain_postgres)) as app, client_for(app) as client:
        assert (
            await client.post(
                "/api/v1/auth/login", json={"email": "x@example.com", "password": "whatever-1"}
            )
        ).status_code == 401


def production_env(**extra: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "REDIS_URL": REDIS_URL,
        "JWT_ISSUER": "https://auth.example.com",
        "METRICS_BEARER_TOKEN": "metrics-scrape-token",
        "SIGNING_KEY_ENCRYPTION_KEY": SECRET,
        **extra,
    }


async def test_check_config_refuses_plaintext_keys_in_production(plain_postgres: Settings) -> None:
    """Production check-config reads the stored keys: plaintext ones fail it (exit 1) with
    a message naming `keys encrypt`; after encrypting, it passes and reports them."""
    async with running_app(plain_postgres):
        pass
    before = await cli(plain_postgres, ["check-config"], **production_env())
    assert before.exit_code == 1, before.output
    report = json.loads(before.output)
    assert report["signing_keys"] == {
        "checked": True,
        "total": 1,
        "plaintext": 1,
        "encrypted": 0,
        "undecryptable": 0,
    }
    (problem,) = report["problems"]
    assert "plaintext" in problem
    assert "keys encrypt" in problem

    encrypted = await cli(plain_postgres, ["keys", "encrypt"], SIGNING_KEY_ENCRYPTION_KEY=SECRET)
    assert encrypted.exit_code == 0, encrypted.output
    after = await cli(plain_postgres, ["check-config"], **production_env())
    assert after.exit_code == 0, after.output
    assert json.loads(after.output)["signing_keys"]["encrypted"] == 1
    assert SECRET not in before.output + after.output


async def test_check_config_reports_plaintext_keys_outside_production(
    plain_postgres: Settings,
) -> None:
    """In development plaintext keys are reported but not refused."""
    async with running_app(plain_postgres):
        pass
    result = await cli(plain_postgres, ["check-config"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["signing_keys"]["plaintext"] == 1
    assert report["problems"] == []


async def test_check_config_refuses_keys_the_secret_cannot_decrypt(
    plain_postgres: Settings,
) -> None:
    """A different secret than the keys were encrypted with fails check-config, which
    would otherwise pass while the service refuses to start."""
    async with running_app(with_secret(plain_postgres)):
        pass
    other = "Other9secret7that4is2also8random5XYZ"
    result = await cli(plain_postgres, ["check-config"], SIGNING_KEY_ENCRYPTION_KEY=other)
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["signing_keys"]["undecryptable"] == 1
    assert any("cannot be decrypted" in p for p in report["problems"])
    assert other not in result.output

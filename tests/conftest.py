"""Fixtures: the app on each storage backend, and helpers to drive it over HTTP.

Every API test runs twice: on the embedded default (SQLite file + in-process store) and
on PostgreSQL + Redis. The PostgreSQL database and the Redis key prefix are created for
this test session and removed after it. With ``CI=true`` a missing PostgreSQL or Redis
fails the run instead of skipping.

Tests do not share state through the database: each one signs up its own organization
with unique emails, so nothing needs truncating between tests.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from faultmaven_auth.app import create_app
from faultmaven_auth.config import Settings
from faultmaven_auth.identity.policy import password_problem
from faultmaven_auth.observability.logging import JsonFormatter, _Fields
from faultmaven_auth.storage.migrate import upgrade_async

PG_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"

# Hashing is deliberately cheap in tests; the production defaults are tested on their own.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost_kib": 1024, "argon2_parallelism": 1}

# Every test client comes from one address (203.0.113.7), so the per-address limits are
# lifted for the shared app; tests/security runs its own apps with the limits on.
# Per-account lockout stays on everywhere (each test uses its own emails).
SHARED_ADDRESS_LIMITS_OFF = {
    "rate_limit_enabled": False,
    "credential_stuffing_max_failures": 1_000_000,
    "credential_stuffing_max_accounts": 1_000_000,
}

PASSWORD = "Correct-Horse-Battery-42"


def unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class PostgresDatabase:
    name: str
    async_url: str


async def create_postgres_database() -> PostgresDatabase:
    import asyncpg

    name = f"fm_auth_test_{secrets.token_hex(6)}"
    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except Exception as exc:
        unavailable("PostgreSQL", exc)
        raise
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return PostgresDatabase(name=name, async_url=f"{base}/{name}")


async def drop_postgres_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def check_redis() -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        await client.ping()
    except Exception as exc:
        unavailable("Redis", exc)
    finally:
        await client.aclose()


async def delete_redis_prefix(prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session", params=["embedded", "postgres"])
async def backend_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    """Settings for one backend, with a freshly migrated, private database."""
    common: dict[str, Any] = {
        **FAST_ARGON2,
        **SHARED_ADDRESS_LIMITS_OFF,
        "environment": "development",
        "jwt_issuer": "http://testserver",
        "cors_origins": [],
        # SSO providers in tests are discovered from issuers on http://127.0.0.1.
        "sso_allow_insecure_issuers": True,
    }
    if request.param == "embedded":
        path: Path = tmp_path_factory.mktemp("embedded") / "auth.db"
        settings = Settings(database_url=f"sqlite+aiosqlite:///{path}", redis_url=None, **common)
        await upgrade_async(settings.database_url)
        yield settings
        return
    await check_redis()
    database = await create_postgres_database()
    prefix = f"fmtest:{secrets.token_hex(4)}:"
    settings = Settings(
        database_url=database.async_url, redis_url=REDIS_URL, kv_key_prefix=prefix, **common
    )
    try:
        await upgrade_async(settings.database_url)
        yield settings
    finally:
        await drop_postgres_database(database.name)
        await delete_redis_prefix(prefix)


@pytest.fixture(scope="session")
def backend(backend_settings: Settings) -> str:
    return "embedded" if backend_settings.uses_sqlite else "postgres"


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app with its lifespan entered (connections open), closed on exit."""
    app = create_app(settings, configure_logs=False)
    async with app.router.lifespan_context(app):
        yield app


# -- the suite-wide secret guard ------------------------------------------------------
# Every password sent and every token or client secret received through `client_for`
# is remembered; every log line written during the session (formatted as in
# production, after redaction) is kept. At the end of the session none of the secrets
# may appear in any line, or in any span the OTLP receiver collected.

SEEN_SECRETS: set[str] = set()
CAPTURED_LOG_LINES: list[str] = []
CAPTURED_SPAN_TEXT: list[str] = []
_SECRET_REQUEST_FIELDS = (
    "password",
    "current_password",
    "new_password",
    "refresh_token",
    "invitation_token",
    "token",
    "client_secret",  # an SSO provider's, write-only
)
_SECRET_RESPONSE_FIELDS = ("access_token", "refresh_token", "client_secret", "token")


def remember_secrets(data: object, fields: tuple[str, ...]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            if key in fields and isinstance(value, str) and len(value) >= 8:
                SEEN_SECRETS.add(value)
            else:
                remember_secrets(value, fields)
    elif isinstance(data, list):
        for item in data:
            remember_secrets(item, fields)


_AUTH_REQUESTS: list[str] = []


async def _remember_request_secrets(request: httpx.Request) -> None:
    if request.url.path.endswith(("/auth/login", "/auth/register")):
        _AUTH_REQUESTS.append(request.url.path)
    if request.headers.get("content-type", "").startswith("application/json"):
        # A streamed body (no `content` yet) carries nothing the tests remember; nor does
        # a deliberately malformed or absurdly nested one.
        with suppress(ValueError, RecursionError, httpx.RequestNotRead):
            remember_secrets(json.loads(request.content or b"null"), _SECRET_REQUEST_FIELDS)


async def _remember_response_secrets(response: httpx.Response) -> None:
    if response.headers.get("content-type", "").startswith("application/json"):
        await response.aread()
        with suppress(ValueError):
            remember_secrets(response.json(), _SECRET_RESPONSE_FIELDS)


class _CaptureLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            CAPTURED_LOG_LINES.append(self.format(record))
        except Exception:  # a broken record must not break the test that logged it
            self.handleError(record)


@pytest.fixture(scope="session", autouse=True)
def secret_guard() -> Iterator[None]:
    handler = _CaptureLines(level=logging.DEBUG)
    handler.setFormatter(
        JsonFormatter(_Fields("test", "test", include_pii=False, trace_ids=lambda: None))
    )
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    if _AUTH_REQUESTS:
        assert SEEN_SECRETS, "logins went through the hooks but no secret was seen"
    haystacks = {"log": "\n".join(CAPTURED_LOG_LINES), "span": "\n".join(CAPTURED_SPAN_TEXT)}
    leaks = [
        (where, secret[:6] + "...")
        for secret in SEEN_SECRETS
        # Refused weak passwords ("password") are ordinary words in any log; they are
        # not secrets the service ever accepted.
        if password_problem(secret) is None
        for where, text in haystacks.items()
        if secret in text
    ]
    assert not leaks, f"secrets leaked into telemetry: {leaks}"
    # Whatever the password, its hash must never be written anywhere either.
    hashes = [where for where, text in haystacks.items() if "$argon2" in text]
    assert not hashes, f"password hashes leaked into telemetry: {hashes}"


def client_for(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    return httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        event_hooks={
            "request": [_remember_request_secrets],
            "response": [_remember_response_secrets],
        },
    )


@pytest.fixture(scope="session")
async def app(backend_settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(backend_settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


def unique_email(label: str = "user") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class Account:
    """A signed-up user with a live session."""

    email: str
    password: str
    user_id: str
    org_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def org_url(self) -> str:
        return f"/api/v1/organizations/{self.org_id}"


async def login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def sign_up(client: httpx.AsyncClient, org_name: str = "Acme") -> Account:
    """Register a new organization and log its owner in."""
    email = unique_email("owner")
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "organization_name": org_name,
            "email": email,
            "password": PASSWORD,
            "full_name": "Owner Person",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    tokens = await login(client, email, PASSWORD)
    return Account(
        email=email,
        password=PASSWORD,
        user_id=body["user"]["id"],
        org_id=body["organization"]["id"],
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


SYSTEM_ROLE_IDS = {
    "owner": "7e1d0c48-677f-5270-aeb5-b3243144f3ae",
    "admin": "b4de660a-8416-5803-8be4-4aaed1ca999f",
    "member": "cfdd76b1-af5a-59ce-a0c8-1246d37161ca",
    "viewer": "3ca73aea-152f-5df0-92f7-56538e7d9560",
}


async def add_member(
    client: httpx.AsyncClient, owner: Account, role: str = "member", *, login_too: bool = True
) -> Account:
    """Create a member of ``owner``'s organization with a system role, and log them in."""
    email = unique_email(role)
    response = await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={
            "email": email,
            "password": PASSWORD,
            "full_name": f"{role.title()} Person",
            "role_ids": [SYSTEM_ROLE_IDS[role]],
        },
    )
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    tokens = (
        await login(client, email, PASSWORD)
        if login_too
        else {"access_token": "", "refresh_token": ""}
    )
    return Account(
        email=email,
        password=PASSWORD,
        user_id=user_id,
        org_id=owner.org_id,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> Account:
    return await sign_up(client)

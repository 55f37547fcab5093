"""The backends a run measures, prepared through the service's own HTTP API and CLI.

The embedded default lives in a temporary SQLite file; PostgreSQL + Redis get a fresh
database and a Redis key prefix, both removed at the end. Each has an organization, a pool
of users able to log in, and a service client for introspection (made with
``faultmaven-auth service-clients create``, as an operator would).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.common.service import (
    ServiceProcess,
    checkout_env,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    migrate,
)
from benchmarks.load.model import MIXED_CONNECTIONS

PASSWORD = "Bench-Passphrase-2026"
LOGIN_USERS = 24
ACCESS_TOKENS = 8
# Limits far above any rate here: the checks still run (their cost is measured), they
# just never refuse the load generator's single address.
UNLIMITED = "1000000/second"


@dataclass
class Options:
    seconds: int
    mixed_connections: tuple[int, ...] = MIXED_CONNECTIONS
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The service's default. Below the 16 requests a worker admits, refreshes wait for a
    # connection and every burst opens and closes overflow connections: at 5 (overflow
    # 5), 1 worker refreshed about half as fast as at 10 (overflow_ab.py).
    db_pool_size: int = 10


@dataclass
class Backend:
    kind: str
    env: dict[str, str]
    work: Path
    users_file: Path
    client_file: Path
    database: str = ""
    redis_prefix: str = ""
    refresh_pool: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


def backend_env(kind: str, work: Path, options: Options) -> tuple[dict[str, str], str, str]:
    overrides = {
        "ENVIRONMENT": "development",
        "DEFAULT_MAX_USERS": "1000",
        "RATE_LIMIT_LOGIN": UNLIMITED,
        "RATE_LIMIT_REFRESH": UNLIMITED,
        "RATE_LIMIT_INTROSPECT": UNLIMITED,
        "RATE_LIMIT_REGISTER": UNLIMITED,
    }
    if kind == "embedded":
        overrides["DATABASE_URL"] = f"sqlite+aiosqlite:///{work / 'embedded.db'}"
        return checkout_env(overrides), "", ""
    database, url = create_postgres_database()
    prefix = f"fmbench:{uuid.uuid4().hex[:8]}:"
    overrides |= {
        "DATABASE_URL": url,
        "REDIS_URL": options.redis_url,
        "KV_KEY_PREFIX": prefix,
        "DATABASE_POOL_SIZE": str(options.db_pool_size),
    }
    return checkout_env(overrides), database, prefix


def prepare_backend(kind: str, work: Path, options: Options) -> Backend:
    env, database, prefix = backend_env(kind, work, options)
    backend = Backend(
        kind, env, work, work / f"{kind}-users.txt", work / f"{kind}-client.txt", database, prefix
    )
    try:
        migrate(env)
        server = ServiceProcess.auth(env, work / f"{kind}-setup.log")
        try:
            backend.users = _create_users(server.base)
        finally:
            server.stop()
        backend.users_file.write_text("\n".join(backend.users) + "\n")
        backend.client_file.write_text(_service_client_header(env) + "\n")
    except BaseException:
        close_backend(backend)
        raise
    return backend


def close_backend(backend: Backend) -> None:
    if backend.database:
        drop_postgres_database(backend.database)
    if backend.redis_prefix:
        delete_redis_prefix(backend.env["REDIS_URL"], backend.redis_prefix)


def _create_users(base: str) -> list[str]:
    owner = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=base, timeout=60) as client:
        client.post(
            "/api/v1/auth/register",
            json={
                "organization_name": "Bench",
                "email": owner,
                "password": PASSWORD,
                "full_name": "Bench Owner",
            },
        ).raise_for_status()
        login = client.post("/api/v1/auth/login", json={"email": owner, "password": PASSWORD})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        org_id = client.get("/api/v1/auth/me", headers=headers).json()["organization_id"]
        roles = client.get(f"/api/v1/organizations/{org_id}/roles", headers=headers).json()
        member = [r["id"] for r in roles if r["name"] == "member"]
        users = []
        for n in range(LOGIN_USERS):
            email = f"user{n}-{uuid.uuid4().hex[:6]}@example.com"
            client.post(
                f"/api/v1/organizations/{org_id}/users",
                headers=headers,
                json={
                    "email": email,
                    "password": PASSWORD,
                    "full_name": f"Bench User {n}",
                    "role_ids": member,
                },
            ).raise_for_status()
            users.append(email)
    return users


def _service_client_header(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "faultmaven_auth", "service-clients", "create", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    created = json.loads(out.strip().splitlines()[-1])
    pair = f"{created['client_id']}:{created['client_secret']}".encode()
    return f"Basic {base64.b64encode(pair).decode()}"


def issue_sessions(base: str, users: list[str], count: int) -> list[tuple[str, str]]:
    """``count`` fresh logins: (access token, refresh token) each."""

    def one(n: int) -> tuple[str, str]:
        response = httpx.post(
            f"{base}/api/v1/auth/login",
            timeout=60,
            json={"email": users[n % len(users)], "password": PASSWORD},
        )
        response.raise_for_status()
        body = response.json()
        return body["access_token"], body["refresh_token"]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))

"""The lockout limit holds on a real server: uvicorn on PostgreSQL + Redis, parallel clients."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import httpx

from tests.conftest import (
    PASSWORD,
    REDIS_URL,
    SYSTEM_ROLE_IDS,
    check_redis,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    unique_email,
)
from tests.support.server import migrate, running_server, server_env

WRONG = "Wrong-Password-123"


async def test_parallel_burst_on_redis_verifies_at_most_the_limit(tmp_path: Path) -> None:
    """50 parallel wrong passwords + the right one: <= 5 checked, no token, lock holds."""
    await check_redis()
    database = await create_postgres_database()
    prefix = f"fmtest-burst:{secrets.token_hex(4)}:"
    env = server_env(
        tmp_path,
        DATABASE_URL=database.async_url,
        DATABASE_POOL_SIZE="5",
        REDIS_URL=REDIS_URL,
        KV_KEY_PREFIX=prefix,
        RATE_LIMIT_LOGIN="1000/minute",
        LOG_LEVEL="INFO",
    )
    try:
        await asyncio.to_thread(migrate, env)
        with running_server(env, tmp_path / "server.log") as server:
            async with httpx.AsyncClient(
                base_url=server.base_url, limits=httpx.Limits(max_connections=64), timeout=60
            ) as http:
                owner_email = unique_email("owner")
                registered = await http.post(
                    "/api/v1/auth/register",
                    json={
                        "organization_name": "Burst",
                        "email": owner_email,
                        "password": PASSWORD,
                        "full_name": "Owner",
                    },
                )
                org_id = registered.json()["organization"]["id"]
                tokens = await http.post(
                    "/api/v1/auth/login", json={"email": owner_email, "password": PASSWORD}
                )
                headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
                victim = unique_email("victim")
                created = await http.post(
                    f"/api/v1/organizations/{org_id}/users",
                    headers=headers,
                    json={
                        "email": victim,
                        "password": PASSWORD,
                        "full_name": "Victim",
                        "role_ids": [SYSTEM_ROLE_IDS["member"]],
                    },
                )
                assert created.status_code == 201, created.text

                def attempt(password: str) -> asyncio.Task[httpx.Response]:
                    body = {"email": victim, "password": password}
                    return asyncio.ensure_future(http.post("/api/v1/auth/login", json=body))

                burst = [attempt(WRONG) for _ in range(50)]
                burst.append(attempt(PASSWORD))
                responses = await asyncio.gather(*burst)
                audit = await http.get(
                    f"/api/v1/organizations/{org_id}/audit-events",
                    params={"event_type": "auth.login.failed", "limit": 500},
                    headers=headers,
                )
                later = await http.post(
                    "/api/v1/auth/login", json={"email": victim, "password": PASSWORD}
                )
        statuses = [r.status_code for r in responses]
        lines = [json.loads(line) for line in server.log_lines()]
    finally:
        await drop_postgres_database(database.name)
        await delete_redis_prefix(prefix)

    checked = [
        line
        for line in lines
        if line["message"] == "Failed login attempt" and line["reason"] == "invalid_credentials"
    ]
    assert 1 <= len(checked) <= 5
    assert statuses.count(401) == len(checked)
    assert statuses.count(429) == len(statuses) - len(checked)
    assert responses[-1].status_code == 429  # the right password, after the limit: no token
    assert all("access_token" not in r.text for r in responses)
    assert later.status_code == 429
    assert later.json()["error"]["code"] == "ACCOUNT_LOCKED"
    assert int(later.headers["retry-after"]) <= 60
    assert len(audit.json()["items"]) == len(checked)
    assert sum(line["message"] == "Potential brute force attack" for line in lines) <= 1

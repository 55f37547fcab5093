"""Error paths leak nothing: real database errors and crashes, read from the log lines.

Each test forces a real failure inside a real route (a repository function is replaced
by one that makes the database refuse a value, break a constraint, or crash with a
message full of secrets), then reads the lines the suite captured through the
production ``JsonFormatter``. No password, argon2 hash, token or unmasked email may
appear in a message, an exception message or a traceback; the client gets a 4xx with
a stable code for data errors, and a bare 500 for a crash.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit import endpoints as audit_endpoints
from faultmaven_auth.observability.logging import JsonFormatter, _Fields
from faultmaven_auth.storage.models import User
from tests.conftest import CAPTURED_LOG_LINES, PASSWORD, Account
from tests.test_errors import assert_error


def lines_since(start: int) -> list[dict[str, Any]]:
    return [json.loads(line) for line in CAPTURED_LOG_LINES[start:]]


async def password_hash(app: FastAPI) -> str:
    hashed: str = await app.state.runtime.hasher.hash(PASSWORD)
    assert hashed.startswith("$argon2id$")
    return hashed


def assert_no_secrets(lines: list[dict[str, Any]], owner: Account, *secrets: str) -> None:
    text_ = "\n".join(json.dumps(line) for line in lines)
    assert "$argon2" not in text_
    assert owner.email not in text_
    assert owner.email.split("@")[0][1:] not in text_  # not even the masked-off part
    for secret in (PASSWORD, owner.access_token, owner.refresh_token, *secrets):
        assert secret not in text_, secret[:8]


def replace_audit_query(monkeypatch: pytest.MonkeyPatch, action: Any) -> None:
    async def failing_query(session: AsyncSession, *args: Any, **kwargs: Any) -> list[Any]:
        await action(session)
        return []

    monkeypatch.setattr(audit_endpoints, "list_audit_events", failing_query)


@pytest.mark.parametrize(
    ("statement", "suffix", "sqlstate"),
    [
        ("SELECT CAST(CAST(:value AS text) AS INTEGER)", "", "22P02"),  # refused by the server
        ("SELECT CAST(:value AS INTEGER)", "", "22000"),  # refused by asyncpg before sending
        ("SELECT CAST(:value AS text)", "\x00", "22021"),  # NUL is not valid text
    ],
    ids=["server-side", "client-side", "nul"],
)
async def test_a_value_the_database_refuses_is_a_422_and_never_logged(
    client: httpx.AsyncClient,
    owner: Account,
    app: FastAPI,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    statement: str,
    suffix: str,
    sqlstate: str,
) -> None:
    """PostgreSQL and asyncpg quote a refused value; we answer 422 and log its type only."""
    if backend != "postgres":
        pytest.skip("SQLite casts any text to a number and stores NUL without complaint")
    hashed = await password_hash(app)
    value = f"{owner.email} password={PASSWORD} {hashed}{suffix}"

    async def refused_value(session: AsyncSession) -> None:
        await session.execute(text(statement), {"value": value})

    replace_audit_query(monkeypatch, refused_value)
    start = len(CAPTURED_LOG_LINES)
    response = await client.get(f"{owner.org_url}/audit-events", headers=owner.headers)

    assert_error(response, 422, "INVALID_DATA")
    assert owner.email not in response.text
    assert PASSWORD not in response.text
    lines = lines_since(start)
    refused = [line for line in lines if line["message"] == "The database refused a value"]
    assert len(refused) == 1
    assert refused[0]["sqlstate"] == sqlstate
    assert_no_secrets(lines, owner, hashed)


async def test_other_database_errors_stay_a_logged_500(
    client: httpx.AsyncClient,
    owner: Account,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broken query is our bug, not the client's: 500 INTERNAL_ERROR, logged scrubbed."""
    if backend != "postgres":
        pytest.skip("SQLite reports a missing table as an OperationalError (503)")

    async def broken_query(session: AsyncSession) -> None:
        await session.execute(text("SELECT * FROM no_such_table WHERE v = :v"), {"v": PASSWORD})

    replace_audit_query(monkeypatch, broken_query)
    start = len(CAPTURED_LOG_LINES)
    response = await client.get(f"{owner.org_url}/audit-events", headers=owner.headers)

    assert_error(response, 500, "INTERNAL_ERROR")
    lines = lines_since(start)
    crash = [line for line in lines if line["message"] == "Unhandled exception"]
    assert [line["exception"]["type"] for line in crash] == ["ProgrammingError"]
    assert_no_secrets(lines, owner)


async def test_a_constraint_escaping_a_service_is_a_409_without_row_values(
    client: httpx.AsyncClient, owner: Account, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unique violation no service caught is 409 CONFLICT; the row stays out of the log."""
    hashed = await password_hash(app)

    async def insert_duplicate_user(session: AsyncSession) -> None:
        session.add(
            User(
                organization_id=uuid.UUID(owner.org_id),
                email=owner.email,
                full_name="Duplicate Person",
                password_hash=hashed,
            )
        )
        await session.flush()

    replace_audit_query(monkeypatch, insert_duplicate_user)
    start = len(CAPTURED_LOG_LINES)
    response = await client.get(f"{owner.org_url}/audit-events", headers=owner.headers)

    assert_error(response, 409, "CONFLICT")
    assert owner.email not in response.text
    lines = lines_since(start)
    assert any(line["message"] == "A database constraint refused a change" for line in lines)
    assert_no_secrets(lines, owner, hashed)


async def test_a_crash_with_secrets_in_its_message_is_logged_scrubbed(
    client: httpx.AsyncClient, owner: Account, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unhandled exception is a bare 500; its logged message and traceback are scrubbed."""
    hashed = await password_hash(app)
    secret_text = (
        f"cannot audit {owner.email}: password={PASSWORD} hash {hashed} "
        f"Authorization: Bearer {owner.access_token} refresh {owner.refresh_token}"
    )

    async def crash(session: AsyncSession) -> None:
        try:
            raise ValueError(f"inner cause for {owner.email} with {hashed}")
        except ValueError as exc:
            raise RuntimeError(secret_text) from exc

    replace_audit_query(monkeypatch, crash)
    start = len(CAPTURED_LOG_LINES)
    response = await client.get(f"{owner.org_url}/audit-events", headers=owner.headers)

    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert error["message"] == "Internal server error"
    lines = lines_since(start)
    crashes = [line for line in lines if line["message"] == "Unhandled exception"]
    assert len(crashes) == 1
    exception = crashes[0]["exception"]
    assert exception["type"] == "RuntimeError"
    masked = owner.email[0] + "***@example.com"
    # Scrubbed, not dropped: the shape of the failure is still there to debug.
    assert exception["message"].startswith(f"cannot audit {masked}: password=[REDACTED]")
    assert "inner cause for " + masked in exception["traceback"]
    assert "RuntimeError" in exception["traceback"]
    assert_no_secrets(lines, owner, hashed)


def test_with_pii_allowed_emails_stay_but_secrets_still_go() -> None:
    """LOG_INCLUDE_PII=true unmasks emails in exception text; hashes, passwords, SQL
    parameters never appear."""
    formatter = JsonFormatter(_Fields("svc", "test", include_pii=True, trace_ids=lambda: None))
    hashed = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
    try:
        sql_error = (  # the shape of a SQLAlchemy error without hide_parameters
            "[SQL: INSERT INTO users (email, full_name) VALUES ($1, $2)]\n"
            "[parameters: ('bob@example.com', 'Robert Secretperson')]"
        )
        raise RuntimeError(f"ann@example.com password={PASSWORD} {hashed}\n{sql_error}")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = json.loads(formatter.format(record))
    assert line["exception"]["message"].startswith("ann@example.com password=[REDACTED] [REDACTED]")
    assert "[parameters: [REDACTED]]" in line["exception"]["message"]
    assert "Secretperson" not in line["exception"]["traceback"]
    assert "ann@example.com" in line["exception"]["traceback"]
    assert PASSWORD not in line["exception"]["traceback"]
    assert "$argon2" not in line["exception"]["traceback"]

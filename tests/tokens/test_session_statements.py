"""What refresh and login cost the database, and the refusals of the one-statement claim.

Refresh and login are the hot write paths: a refresh consumes its token with one
statement (reuse detection included), inserts the successor and appends the audit event;
a login updates the user, inserts the token and appends the event. The counts are what
the engine's statement hook sees (the one ``db_queries_total`` counts), on both backends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, update

from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import User
from tests.conftest import PASSWORD, Account

# claim (UPDATE … RETURNING), INSERT of the successor, and the audit append: advance the
# chain head, INSERT the event, store the head's hash. PostgreSQL runs all of it as one
# statement (the append is a function called from it) that commits on its own.
MAX_STATEMENTS_PER_REFRESH = {"embedded": 5, "postgres": 1}
# the account's SELECT, the user's UPDATE (last login), the token's INSERT, the audit append.
MAX_STATEMENTS_PER_LOGIN = {"embedded": 6, "postgres": 4}
# PostgreSQL's append is a SELECT of a function that writes; it reads nothing back.
APPEND_CALL = "FROM audit_chain_append("


def reads(seen: list[str]) -> list[str]:
    """The statements that only read (SELECT), the audit append's call aside."""
    return [s for s in seen if s.lstrip().upper().startswith("SELECT") and APPEND_CALL not in s]


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """Every SQL statement the service's engine sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_a_refresh_takes_at_most_five_statements(
    client: httpx.AsyncClient, runtime: Runtime, owner: Account, backend: str
) -> None:
    """A successful refresh sends at most five statements (one on PostgreSQL), no read."""
    with statements(runtime) as seen:
        response = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
        )
    assert response.status_code == 200
    assert len(seen) <= MAX_STATEMENTS_PER_REFRESH[backend], seen
    assert not reads(seen), seen


async def test_a_login_takes_at_most_six_statements(
    client: httpx.AsyncClient, runtime: Runtime, owner: Account, backend: str
) -> None:
    """A successful login sends at most six statements (four on PostgreSQL), one read."""
    with statements(runtime) as seen:
        response = await client.post(
            "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
        )
    assert response.status_code == 200
    assert len(seen) <= MAX_STATEMENTS_PER_LOGIN[backend], seen
    assert len(reads(seen)) == 1, seen


async def _set_active(runtime: Runtime, user_id: str, active: bool) -> None:
    """Flip the flag in the database only (no session revocation, as an API call would)."""
    async with runtime.db.transaction() as session:
        await session.execute(
            update(User).where(User.id == uuid.UUID(user_id)).values(is_active=active)
        )


async def test_an_inactive_accounts_token_is_refused_and_not_consumed(
    client: httpx.AsyncClient, runtime: Runtime, owner: Account
) -> None:
    """While the user is inactive the token is a plain 401 (no reuse); it is not used up."""
    await _set_active(runtime, owner.user_id, False)
    try:
        refused = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
        )
    finally:
        await _set_active(runtime, owner.user_id, True)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "INVALID_TOKEN"
    # Not rotated by the refusal: once active again, the same token still rotates once.
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert again.status_code == 200
    reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert reused.json()["error"]["code"] == "REFRESH_TOKEN_REUSED"


async def test_an_unknown_refresh_token_is_a_plain_401(client: httpx.AsyncClient) -> None:
    """A token that was never issued is INVALID_TOKEN, not reuse."""
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "fmr_unknown"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_TOKEN"


async def test_a_refresh_that_cannot_sign_leaves_its_token_unspent(
    client: httpx.AsyncClient, runtime: Runtime, owner: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No signing key (the database was down at start): 503 NO_SIGNING_KEY, and the token
    is not consumed (PostgreSQL commits the refresh before it signs), so once the keys
    are back the same token still rotates once."""
    with monkeypatch.context() as keyless:
        keyless.setattr(runtime.keys, "_keys", {})
        refused = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
        )
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "NO_SIGNING_KEY"
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert again.status_code == 200
    reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert reused.json()["error"]["code"] == "REFRESH_TOKEN_REUSED"

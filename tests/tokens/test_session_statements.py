"""What refresh and login cost the database, and the refusals of the one-statement claim.

Refresh and login are the hot write paths: a refresh consumes its token with one
statement (reuse detection included), inserts the successor and appends the audit event;
a login updates the user, inserts the token and appends the event. The counts are what
the engine's statement hook sees (the one ``db_queries_total`` counts), on both backends.
On PostgreSQL the round trips are counted too: transaction control (``BEGIN``,
``COMMIT``, ``ROLLBACK``) is not a statement, so the driver's own query log tells.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, update

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import AuditEvent, RefreshToken, User
from tests.conftest import PASSWORD, Account

# claim (UPDATE … RETURNING), INSERT of the successor, and the audit append: advance the
# chain head, INSERT the event, store the head's hash. PostgreSQL runs all of it as one
# statement (the append is a function called from it) that commits on its own.
MAX_STATEMENTS_PER_REFRESH = {"embedded": 5, "postgres": 1}
# the account's SELECT, the user's UPDATE (last login), the token's INSERT, the audit append
# (three statements on SQLite). PostgreSQL runs the writes as one statement.
MAX_STATEMENTS_PER_LOGIN = {"embedded": 6, "postgres": 2}
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
    """A successful login sends at most six statements (two on PostgreSQL), one read."""
    with statements(runtime) as seen:
        response = await client.post(
            "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
        )
    assert response.status_code == 200
    assert len(seen) <= MAX_STATEMENTS_PER_LOGIN[backend], seen
    assert len(reads(seen)) == 1, seen


@contextmanager
def transaction_control(runtime: Runtime) -> Iterator[list[str]]:
    """PostgreSQL: every BEGIN, COMMIT and ROLLBACK the driver sends while the block runs
    (asyncpg logs the queries it sends without arguments: transaction control)."""
    sent: list[str] = []

    def log(query: Any) -> None:
        text = query.query.strip().upper()
        if text.startswith(("BEGIN", "START", "COMMIT", "ROLLBACK", "END")):
            sent.append(text)

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(log)

    def checkin(dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None:
            dbapi_connection.driver_connection.remove_query_logger(log)

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        yield sent
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)


async def test_hot_paths_send_no_transaction_control_on_postgresql(
    client: httpx.AsyncClient, runtime: Runtime, owner: Account, backend: str
) -> None:
    """On PostgreSQL a login, a refresh and the reads behind GET /me (a principal cache
    miss) and GET /users send no BEGIN, COMMIT or ROLLBACK: the writes are one statement
    each and reads run in autocommit, so each is one round trip, not three."""
    if backend != "postgres":
        pytest.skip("SQLite has no round trips; its reads were always autocommit")
    runtime.principals.clear()
    with transaction_control(runtime) as sent, statements(runtime) as seen:
        logged_in = await client.post(
            "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
        )
        assert logged_in.status_code == 200, logged_in.text
        tokens = logged_in.json()
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200
        listed = await client.get(f"{owner.org_url}/users", headers=headers)
        assert listed.status_code == 200, listed.text
    assert len(reads(seen)) >= 3, seen  # the login's account, the principal, the users
    assert sent == [], sent


async def test_a_login_that_cannot_sign_writes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, owner: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No signing key: the login is 503 NO_SIGNING_KEY and leaves no session, no audit
    event and no last-login time behind (PostgreSQL commits a login's writes before it
    signs)."""
    before = await _login_footprint(runtime, owner)
    with monkeypatch.context() as keyless:
        keyless.setattr(runtime.keys, "_keys", {})
        refused = await client.post(
            "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
        )
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "NO_SIGNING_KEY"
    assert await _login_footprint(runtime, owner) == before
    again = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    )
    assert again.status_code == 200
    after = await _login_footprint(runtime, owner)
    assert after[:2] == (before[0] + 1, before[1] + 1)
    assert after[2] is not None
    assert after[2] != before[2]


async def _login_footprint(runtime: Runtime, owner: Account) -> tuple[int, int, Any]:
    """The owner's refresh tokens, its login audit events and its last-login time."""
    user_id = uuid.UUID(owner.user_id)
    async with runtime.db.session() as session:
        tokens = await session.scalar(
            select(func.count()).select_from(RefreshToken).where(RefreshToken.user_id == user_id)
        )
        events = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.actor_id == user_id,
                AuditEvent.event_type == AuditEventType.LOGIN_SUCCEEDED.value,
            )
        )
        last_login = await session.scalar(select(User.last_login_at).where(User.id == user_id))
    return int(tokens or 0), int(events or 0), last_login


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

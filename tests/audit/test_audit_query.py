"""Reading the audit log: filters, cursor pagination, NDJSON export, access, durability.

Also checks the recorder's promise: an audit row is written in the same transaction as
the change it describes, so a change that does not happen leaves no event, and a
change cannot happen without its event.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

# Organization-scoped changes record their events through OrgAccess.audit.
from faultmaven_auth.rbac import dependencies as org_access_module
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import AuditEvent
from tests.audit.conftest import audit_events, events_caused_by
from tests.conftest import (
    PASSWORD,
    SYSTEM_ROLE_IDS,
    Account,
    add_member,
    login,
    sign_up,
    unique_email,
)


async def _make_team_events(client: httpx.AsyncClient, owner: Account, count: int) -> None:
    for i in range(count):
        response = await client.post(
            f"{owner.org_url}/teams", headers=owner.headers, json={"name": f"team-{i}"}
        )
        assert response.status_code == 201, response.text


async def test_event_type_filter_returns_only_that_type(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """?event_type= keeps exactly the events of that type."""
    await _make_team_events(client, owner, 2)
    everything = await audit_events(client, owner)
    teams = await audit_events(client, owner, event_type="team.created")
    assert len(teams) == 2
    assert {e["event_type"] for e in teams} == {"team.created"}
    assert teams == [e for e in everything if e["event_type"] == "team.created"]
    assert await audit_events(client, owner, event_type="no.such.event") == []


async def test_actor_filter_returns_only_that_actors_events(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """?actor_id= keeps the events that member caused and nothing else."""
    member = await add_member(client, owner, "member")  # logging in is audited
    mine = await audit_events(client, owner, actor_id=member.user_id)
    assert [e["event_type"] for e in mine] == ["auth.login.succeeded"]
    owners = await audit_events(client, owner, actor_id=owner.user_id)
    assert {e["actor_id"] for e in owners} == {owner.user_id}
    assert "user.created" in {e["event_type"] for e in owners}


async def test_since_is_inclusive_and_until_exclusive(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """since/until select a time window: since includes its instant, until excludes it."""
    await _make_team_events(client, owner, 3)
    newest, middle, oldest = await audit_events(client, owner, event_type="team.created")
    pivot = middle["occurred_at"]

    after = await audit_events(client, owner, event_type="team.created", since=pivot)
    before = await audit_events(client, owner, event_type="team.created", until=pivot)
    assert [e["id"] for e in after] == [newest["id"], middle["id"]]
    assert [e["id"] for e in before] == [oldest["id"]]
    window = await audit_events(
        client, owner, event_type="team.created", since=pivot, until=newest["occurred_at"]
    )
    assert [e["id"] for e in window] == [middle["id"]]


async def test_cursor_pages_are_disjoint_newest_first_and_complete(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Following next_cursor walks the whole log once, newest first, in pages of `limit`."""
    await _make_team_events(client, owner, 3)
    member = await add_member(client, owner, "member", login_too=False)
    # One request, two events in one transaction: their order must hold too.
    swapped = await client.put(
        f"{owner.org_url}/users/{member.user_id}/roles",
        headers=owner.headers,
        json={"role_ids": [SYSTEM_ROLE_IDS["viewer"]]},
    )
    assert swapped.status_code == 200
    response = await client.post(
        f"{owner.org_url}/teams", headers=owner.headers, json={"name": "last"}
    )
    assert response.status_code == 201
    expected = await audit_events(client, owner)
    assert len(expected) == 9  # registration, login, 4 teams, user, role assigned + removed

    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await client.get(
            f"{owner.org_url}/audit-events", headers=owner.headers, params=params
        )
        assert response.status_code == 200
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 20, "pagination does not terminate"

    assert all(len(page) == 3 for page in pages[:-1])
    walked = [event for page in pages for event in page]
    assert len({e["id"] for e in walked}) == len(walked)
    assert walked == expected
    times = [datetime.fromisoformat(e["occurred_at"]) for e in walked]
    assert times == sorted(times, reverse=True)
    assert [e["id"] for e in walked] == sorted((e["id"] for e in walked), reverse=True)


async def test_malformed_cursor_is_a_400(client: httpx.AsyncClient, owner: Account) -> None:
    """A cursor that was not issued by the service is refused with INVALID_CURSOR."""
    response = await client.get(
        f"{owner.org_url}/audit-events", headers=owner.headers, params={"cursor": "not-a-cursor"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_CURSOR"


async def test_export_streams_the_same_events_as_ndjson(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """/export answers application/x-ndjson, one JSON event per line, same as the list."""
    await _make_team_events(client, owner, 2)
    listed = await audit_events(client, owner)
    response = await client.get(f"{owner.org_url}/audit-events/export", headers=owner.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "application/x-ndjson"
    assert "attachment" in response.headers["content-disposition"]
    assert response.text.endswith("\n")
    lines = response.text.splitlines()
    assert all(line.strip() for line in lines)
    assert [json.loads(line) for line in lines] == listed


async def test_export_applies_the_filters(client: httpx.AsyncClient, owner: Account) -> None:
    """Filters given to /export select the same events as on the list."""
    await _make_team_events(client, owner, 2)
    response = await client.get(
        f"{owner.org_url}/audit-events/export",
        headers=owner.headers,
        params={"event_type": "team.created"},
    )
    assert response.status_code == 200
    exported = [json.loads(line) for line in response.text.splitlines()]
    assert exported == await audit_events(client, owner, event_type="team.created")
    assert len(exported) == 2


@pytest.mark.parametrize("role", ["member", "viewer"])
async def test_reading_the_log_needs_audit_read(
    client: httpx.AsyncClient, owner: Account, role: str
) -> None:
    """Members and viewers get 403 PERMISSION_DENIED on the list and on the export."""
    reader = await add_member(client, owner, role)
    for path in ("/audit-events", "/audit-events/export"):
        response = await client.get(f"{owner.org_url}{path}", headers=reader.headers)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "PERMISSION_DENIED"


async def test_admins_may_read_the_log(client: httpx.AsyncClient, owner: Account) -> None:
    """An admin (who holds audit:read) reads the log of their organization."""
    admin = await add_member(client, owner, "admin")
    events = await audit_events(client, admin)
    assert {e["organization_id"] for e in events} == {owner.org_id}


async def test_log_is_private_to_its_organization(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Another organization's owner gets 404 for this log and never sees its events."""
    stranger = await sign_up(client, org_name="Elsewhere")
    for path in ("/audit-events", "/audit-events/export"):
        response = await client.get(f"{owner.org_url}{path}", headers=stranger.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "ORGANIZATION_NOT_FOUND"
    theirs = await audit_events(client, stranger)
    assert theirs
    assert {e["organization_id"] for e in theirs} == {stranger.org_id}


async def test_reading_the_log_needs_authentication(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Without a bearer token the log answers 401."""
    response = await client.get(f"{owner.org_url}/audit-events")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "NOT_AUTHENTICATED"


async def test_rejected_change_leaves_no_event(client: httpx.AsyncClient, owner: Account) -> None:
    """Creating a user with a taken email is a 409 and records no user.created."""
    before = await audit_events(client, owner, event_type="user.created")
    response = await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={"email": owner.email, "password": PASSWORD, "full_name": "Duplicate"},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "EMAIL_TAKEN"
    assert await events_caused_by(client, owner, response) == []
    assert await audit_events(client, owner, event_type="user.created") == before


async def test_change_and_its_event_commit_together(
    client: httpx.AsyncClient, owner: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash right after the audit row is written rolls back the row and the new user."""
    real_record = org_access_module.record_audit_event

    def record_then_crash(*args: Any, **kwargs: Any) -> AuditEvent:
        real_record(*args, **kwargs)
        raise RuntimeError("simulated crash after the audit write")

    monkeypatch.setattr(org_access_module, "record_audit_event", record_then_crash)
    email = unique_email("phantom")
    response = await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={"email": email, "password": PASSWORD, "full_name": "Phantom"},
    )
    monkeypatch.undo()
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"

    assert await events_caused_by(client, owner, response) == []
    failed_login = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert failed_login.status_code == 401
    users = await client.get(f"{owner.org_url}/users", headers=owner.headers)
    assert email not in {u["email"] for u in users.json()["items"]}


async def test_events_survive_organization_soft_deletion(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """After the organization is deleted its audit rows, and the deletion itself, remain."""
    owner = await sign_up(client, org_name="Short Lived")
    await login(client, owner.email, PASSWORD)
    before = {e["id"] for e in await audit_events(client, owner)}
    deleted = await client.delete(owner.org_url, headers=owner.headers)
    assert deleted.status_code == 204
    assert (
        await client.get(f"{owner.org_url}/audit-events", headers=owner.headers)
    ).status_code == 401

    runtime: Runtime = app.state.runtime
    async with runtime.db.session() as session:
        rows = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.organization_id == uuid.UUID(owner.org_id))
            )
        ).all()
    kept = {str(row.id) for row in rows}
    assert before <= kept
    deletion = [row for row in rows if row.event_type == "organization.deleted"]
    assert len(deletion) == 1
    assert deletion[0].request_id == deleted.headers["x-request-id"]
    assert str(deletion[0].actor_id) == owner.user_id

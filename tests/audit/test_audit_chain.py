"""The audit log is a hash chain per organization that `audit verify` recomputes.

Events are written over the API (or through ``record_audit_event``), read back from
the database and the NDJSON export, then tampered with directly in the database, on
SQLite and on PostgreSQL; verification must name the first broken event. A SIEM's view
is checked with an independent implementation of the documented hash (stdlib only).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select, update

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event, write_audit_event
from faultmaven_auth.audit.verification import verify_chain
from faultmaven_auth.cli import main
from faultmaven_auth.config import Settings
from faultmaven_auth.storage.audit_chain import (
    HOLES,
    canonical_bytes,
    canonical_fragments,
    event_hash,
)
from faultmaven_auth.storage.db import Database, create_engine
from faultmaven_auth.storage.ids import uuid7
from faultmaven_auth.storage.models import AuditEvent
from tests.conftest import Account, add_member

GENESIS = "0" * 64


@pytest.fixture
async def db(backend_settings: Settings) -> AsyncIterator[Database]:
    """A direct connection to the app's database, as an operator (or attacker) has."""
    database = Database(create_engine(backend_settings.database_url, pool_size=2))
    try:
        yield database
    finally:
        await database.dispose()


def siem_hash(event: dict[str, Any]) -> str:
    """The documented hash, recomputed from an exported event without the service's code."""
    when = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).astimezone(UTC)
    document = {
        "v": 1,
        "seq": event["chain_seq"],
        "prev_hash": event["prev_hash"],
        "occurred_at": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        **{
            name: event[name]
            for name in (
                "id",
                "organization_id",
                "actor_id",
                "event_type",
                "target_type",
                "target_id",
                "outcome",
                "ip_address",
                "user_agent",
                "request_id",
                "details",
            )
        },
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def assert_linked(events: list[dict[str, Any]]) -> None:
    """Positions 1..n, each pointing at the previous event's hash and hashing to its own."""
    events = sorted(events, key=lambda e: e["chain_seq"])
    assert [e["chain_seq"] for e in events] == list(range(1, len(events) + 1))
    previous = GENESIS
    for event in events:
        assert event["prev_hash"] == previous
        assert event["hash"] == siem_hash(event)
        previous = event["hash"]


async def export(client: httpx.AsyncClient, reader: Account) -> list[dict[str, Any]]:
    response = await client.get(f"{reader.org_url}/audit-events/export", headers=reader.headers)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


async def create_teams(client: httpx.AsyncClient, owner: Account, count: int) -> None:
    for _ in range(count):
        response = await client.post(
            f"{owner.org_url}/teams",
            headers=owner.headers,
            json={"name": f"team-{uuid.uuid4().hex[:8]}"},
        )
        assert response.status_code == 201, response.text


async def chain_rows(db: Database, org_id: str) -> list[AuditEvent]:
    async with db.session() as session:
        stmt = (
            select(AuditEvent)
            .where(
                AuditEvent.organization_id == uuid.UUID(org_id),
                AuditEvent.chain_seq.is_not(None),
            )
            .order_by(AuditEvent.chain_seq)
        )
        return list((await session.scalars(stmt)).all())


def _invoke_verify(database_url: str, args: list[str]) -> tuple[Result, dict[str, Any]]:
    result = CliRunner().invoke(
        main, ["audit", "verify", *args], env={"DATABASE_URL": database_url}, catch_exceptions=False
    )
    return result, json.loads(result.stdout)


async def cli_verify(database_url: str, *args: str) -> tuple[Result, dict[str, Any]]:
    """`faultmaven-auth audit verify ARGS` (off the test's event loop): result and JSON."""
    return await asyncio.to_thread(_invoke_verify, database_url, list(args))


# -- chaining --------------------------------------------------------------------------


async def test_events_of_an_organization_form_one_chain(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Sign-up, login and changes are positions 1..n of the organization's chain."""
    await create_teams(client, owner, 3)
    events = await export(client, owner)
    assert len(events) >= 5
    assert events[-1]["event_type"] == "auth.registered"
    assert events[-1]["chain_seq"] == 1
    assert events[-1]["prev_hash"] == GENESIS
    assert_linked(events)


async def test_the_list_api_carries_the_chain_fields(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """GET /audit-events shows chain_seq, prev_hash and hash, matching the export."""
    response = await client.get(f"{owner.org_url}/audit-events", headers=owner.headers)
    assert response.status_code == 200
    listed = {e["id"]: e for e in response.json()["items"]}
    exported = {e["id"]: e for e in await export(client, owner)}
    assert listed
    for event_id, event in listed.items():
        for name in ("chain_seq", "prev_hash", "hash"):
            assert event[name] == exported[event_id][name]
            assert event[name] is not None


async def test_concurrent_audited_requests_never_fork_the_chain(
    client: httpx.AsyncClient, owner: Account, backend_settings: Settings, db: Database
) -> None:
    """20 requests at once (changes and audited refusals) still verify as one chain."""
    viewer = await add_member(client, owner, "viewer")

    async def create_team(who: Account) -> int:
        response = await client.post(
            f"{owner.org_url}/teams",
            headers=who.headers,
            json={"name": f"concurrent-{uuid.uuid4().hex[:8]}"},
        )
        return response.status_code

    statuses = await asyncio.gather(*(create_team(owner if i % 2 else viewer) for i in range(20)))
    assert sorted(statuses) == [201] * 10 + [403] * 10

    events = await export(client, owner)
    assert sum(e["event_type"] == "team.created" for e in events) == 10
    assert sum(e["event_type"] == "authz.permission_denied" for e in events) == 10
    assert_linked(events)

    report = await verify_chain(db, owner.org_id)
    assert report.broken is None
    assert report.events_checked == len(events) == report.head_sequence

    result, body = await cli_verify(backend_settings.database_url, "--organization", owner.org_id)
    assert result.exit_code == 0, result.output
    assert body["ok"] is True
    assert body["events_checked"] == len(events)
    assert body["first_break"] is None


async def test_concurrent_refreshes_and_logins_append_to_one_chain(
    client: httpx.AsyncClient, owner: Account, db: Database
) -> None:
    """20 hot-path appends at once (10 refreshes, 10 logins) still verify as one chain,
    and the appended events' ids and times follow their positions (they are stamped
    while the chain's head is locked)."""
    members = [await add_member(client, owner) for _ in range(10)]

    async def refresh(member: Account) -> int:
        response = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": member.refresh_token}
        )
        return response.status_code

    async def log_in(member: Account) -> int:
        response = await client.post(
            "/api/v1/auth/login", json={"email": member.email, "password": member.password}
        )
        return response.status_code

    statuses = await asyncio.gather(*map(refresh, members), *map(log_in, members))
    assert statuses == [200] * 20

    events = await export(client, owner)
    assert_linked(events)
    appended = sorted(
        (e for e in events if e["event_type"] in ("auth.token.refreshed", "auth.login.succeeded")),
        key=lambda e: e["chain_seq"],
    )
    assert sum(e["event_type"] == "auth.token.refreshed" for e in appended) == 10
    assert len(appended) == 1 + 10 + 20  # the owner's login, the members' logins, the 20
    ids = [uuid.UUID(e["id"]) for e in appended]
    assert ids == sorted(ids)
    times = [e["occurred_at"] for e in appended]
    assert times == sorted(times)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for event_id, when in zip(ids, times, strict=True):
        # UUIDv7: the first 48 bits are Unix milliseconds, read with the event's time
        # (the same clock reading, or one a millisecond apart at most).
        at = datetime.fromisoformat(when.replace("Z", "+00:00"))
        assert abs((event_id.int >> 80) - (at - epoch) // timedelta(milliseconds=1)) <= 1

    report = await verify_chain(db, owner.org_id)
    assert report.broken is None
    assert report.events_checked == len(events) == report.head_sequence


async def test_canonical_encoding_round_trips_through_the_database(db: Database) -> None:
    """What is hashed at write time is byte for byte what is rebuilt from the stored row."""
    org_id = uuid.uuid4()
    details = {
        "zeta": [1, 2.5, True, None, "ünïcødé ✓"],
        "alpha": {"b": 10**15, "a": -0.001, "nested": {"y": [], "x": {}}},
        "tuple": (1, 2),
        "quote": 'a "quoted" \\ value\n',
    }
    written: list[AuditEvent] = []
    async with db.transaction() as session:
        written.append(
            record_audit_event(
                session,
                AuditEventType.USER_UPDATED,
                meta=RequestMeta("2001:db8::1", "agent/1 (ünï)", "req-1"),
                organization_id=org_id,
                actor_id=uuid.uuid4(),
                target_type="user",
                target_id=uuid.uuid4(),
                details=details,
            )
        )
        # A whole second (no microseconds) and no optional fields at all.
        on_the_second = AuditEvent(
            organization_id=org_id,
            occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            event_type="user.updated",
            outcome="success",
        )
        session.add(on_the_second)
        written.append(on_the_second)
    # The hot path's append (one SQL call on PostgreSQL, which fills in the stamped
    # fields and hashes there): text that JSON must escape, and text it must not.
    async with db.transaction() as session:
        written.append(
            await write_audit_event(
                session,
                AuditEventType.TOKEN_REFRESHED,
                meta=RequestMeta("203.0.113.9", 'q"uo\\te \u2028 ✓ 𝄞 \t', 'r"\\\x01'),
                organization_id=org_id,
                actor_id=None,
                target_type="session",
                target_id="tab\tand\u007fdel",
                details={**details, "é": {"\u0000": "nul", "𝄞": [float(2**53), 1e-7]}},
            )
        )
    at_write = {e.id: (canonical_bytes(e), e.hash) for e in written}

    async with db.session() as session:
        rows = (
            await session.scalars(select(AuditEvent).where(AuditEvent.organization_id == org_id))
        ).all()
    assert {row.id for row in rows} == set(at_write)
    for row in rows:
        assert (canonical_bytes(row), row.hash) == at_write[row.id]
        assert event_hash(row) == row.hash
    assert (await verify_chain(db, str(org_id))).broken is None


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    text_fields=st.lists(st.none() | _TEXT, min_size=7, max_size=7),
    details=st.dictionaries(_TEXT, _JSON, max_size=4),
    ids=st.lists(st.none() | st.uuids(), min_size=2, max_size=2),
    seq=st.integers(1, 2**62),
    when=st.datetimes(timezones=st.just(UTC)),
)
def test_the_documents_fragments_rebuild_the_canonical_bytes(
    text_fields: list[str | None],
    details: dict[str, Any],
    ids: list[uuid.UUID | None],
    seq: int,
    when: datetime,
) -> None:
    """PostgreSQL hashes ``fragments[0] + actor_id + … + fragments[7]``: for any event,
    that is exactly the document ``canonical_bytes`` writes (and verification
    recomputes)."""
    event_type, target_type, target_id, outcome, ip_address, user_agent, request_id = text_fields
    audit_event = AuditEvent(
        organization_id=ids[0],
        actor_id=ids[1],
        event_type=event_type,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        ip_address=ip_address,
        user_agent=user_agent,
        request_id=request_id,
        details=details,
    )
    fragments = canonical_fragments(audit_event)
    audit_event.id, audit_event.occurred_at = uuid7(), when
    audit_event.prev_hash, audit_event.chain_seq = hashlib.sha256(b"x").hexdigest(), seq
    # What SQL fills in: each hole's JSON text (to_json of the text, or null).
    values = {
        "actor_id": None if ids[1] is None else str(ids[1]),
        "id": str(audit_event.id),
        "occurred_at": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "organization_id": None if ids[0] is None else str(ids[0]),
        "prev_hash": audit_event.prev_hash,
        "seq": seq,
        "target_id": target_id,
    }
    holes = [json.dumps(values[name], ensure_ascii=False) for name in HOLES]
    rebuilt = fragments[0] + "".join(v + f for v, f in zip(holes, fragments[1:], strict=True))
    assert rebuilt.encode("utf-8") == canonical_bytes(audit_event)


# -- tampering -------------------------------------------------------------------------


async def _update_details(db: Database, rows: list[AuditEvent]) -> tuple[str | None, str]:
    async with db.transaction() as session:
        await session.execute(
            update(AuditEvent).where(AuditEvent.id == rows[2].id).values(details={"forged": 1})
        )
    return str(rows[2].id), "event altered"


async def _update_details_and_rehash(db: Database, rows: list[AuditEvent]) -> tuple[str, str]:
    forged = rows[2]
    forged.details = {"forged": 1}
    async with db.transaction() as session:
        await session.execute(
            update(AuditEvent)
            .where(AuditEvent.id == forged.id)
            .values(details=forged.details, hash=event_hash(forged))
        )
    return str(rows[3].id), "replaced or reordered"


async def _delete_middle(db: Database, rows: list[AuditEvent]) -> tuple[str, str]:
    async with db.transaction() as session:
        await session.execute(delete(AuditEvent).where(AuditEvent.id == rows[2].id))
    return str(rows[3].id), "event(s) 3 to 3 of this chain are missing"


async def _swap_positions(db: Database, rows: list[AuditEvent]) -> tuple[str, str]:
    second, third = rows[1], rows[2]
    async with db.transaction() as session:
        for event_id, seq in ((second.id, -1), (third.id, 2), (second.id, 3)):
            await session.execute(
                update(AuditEvent).where(AuditEvent.id == event_id).values(chain_seq=seq)
            )
    return str(third.id), "replaced or reordered"


async def _delete_newest(db: Database, rows: list[AuditEvent]) -> tuple[None, str]:
    async with db.transaction() as session:
        await session.execute(delete(AuditEvent).where(AuditEvent.id == rows[-1].id))
    return None, "the newest 1 event(s) are missing"


async def _insert_unchained(db: Database, rows: list[AuditEvent]) -> tuple[str, str]:
    forged_id = uuid7()
    async with db.transaction() as session:
        await session.execute(
            insert(AuditEvent).values(
                id=forged_id,
                organization_id=rows[0].organization_id,
                occurred_at=datetime.now(UTC),
                event_type="user.updated",
                outcome="success",
                details={},
            )
        )
    return str(forged_id), "carries no hash but was written after the chain began"


TAMPERING = {
    "update details": _update_details,
    "update details and its hash": _update_details_and_rehash,
    "delete an event": _delete_middle,
    "swap two positions": _swap_positions,
    "delete the newest event": _delete_newest,
    "insert an unhashed event": _insert_unchained,
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
async def test_verify_names_the_first_broken_event(
    client: httpx.AsyncClient,
    owner: Account,
    backend_settings: Settings,
    db: Database,
    tamper: Any,
) -> None:
    """Changing the table behind the service's back makes `audit verify` exit 1 and name
    the first event that no longer verifies, with the reason."""
    await create_teams(client, owner, 4)
    rows = await chain_rows(db, owner.org_id)
    assert len(rows) >= 6
    result, body = await cli_verify(backend_settings.database_url, "--organization", owner.org_id)
    assert result.exit_code == 0, result.output
    assert body["ok"] is True

    event_id, reason = await tamper(db, rows)

    result, body = await cli_verify(backend_settings.database_url, "--organization", owner.org_id)
    assert result.exit_code == 1, result.output
    assert body["ok"] is False
    broken = body["first_break"]
    assert broken["chain"] == owner.org_id
    assert broken["event_id"] == event_id
    assert reason in broken["reason"]
    # Other organizations' chains are untouched.
    other = await verify_chain(db, "platform")
    assert other.broken is None


# -- legacy rows and the whole database ------------------------------------------------


async def test_rows_from_before_the_chain_are_reported_not_broken(tmp_path: Path) -> None:
    """Events written before schema 0003 count as unchained; the chain starts after them."""
    from faultmaven_auth.storage.migrate import upgrade_async

    url = f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}"
    await upgrade_async(url, "0002")
    org_id = uuid.uuid4()
    database = Database(create_engine(url))
    try:
        async with database.engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO audit_events (id, occurred_at, organization_id, event_type, "
                "outcome, details) VALUES (?, ?, ?, 'user.created', 'success', '{}')",
                (uuid7().hex, "2025-01-01 00:00:00.000000", org_id.hex),
            )
        await database.engine.dispose()
        await upgrade_async(url)
        async with database.transaction() as session:
            for _ in range(2):
                record_audit_event(
                    session,
                    AuditEventType.USER_UPDATED,
                    meta=RequestMeta(),
                    organization_id=org_id,
                    actor_id=None,
                )
        report = await verify_chain(database, str(org_id))
    finally:
        await database.dispose()
    assert report.broken is None
    assert (report.events_checked, report.unchained_events) == (2, 1)

    result, body = await cli_verify(url)
    assert result.exit_code == 0, result.output
    assert body["unchained_events"] == 1
    assert body["chains_checked"] == 1


async def test_verify_rejects_an_organization_that_is_not_an_id(tmp_path: Path) -> None:
    """`--organization` takes a UUID or `platform`; anything else is a usage error (exit 2)."""
    result = CliRunner().invoke(
        main,
        ["audit", "verify", "--organization", "acme"],
        env={"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"},
    )
    assert result.exit_code == 2
    assert "UUID" in result.output

"""Every organization-scoped list reads its page through an index, on both backends.

The statements checked are the ones the repositories run: each list function is called
on a database holding a few organizations' rows, the SQL it sends is captured at the
driver (``before_cursor_execute``), and the database is asked for that exact
statement's plan with the same parameters. A list must find the organization's rows
through an index that leads with ``organization_id`` (no scan of a table, which grows
with every tenant) and read them in the list's order (no sort, which reads the whole
organization before the first page comes back). Roles are the exception: the list is the
shared system roles plus the organization's own, two ranges of one index whose merged
order needs a sort, no larger than the answer (the list is not paginated).

PostgreSQL's choice between plans depends on the statistics of tables this small (it
happily sorts four rows), so its plans are taken with ``enable_seqscan`` and
``enable_sort`` off: the question is whether an index can serve the filter and the
order at all. Without one, the plan still shows a sort (the only way left to order the
rows) or a walk over a whole index.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from faultmaven_auth.audit.repository import AuditFilter, list_audit_events
from faultmaven_auth.config import Settings
from faultmaven_auth.identity.service import list_users
from faultmaven_auth.organizations.service import (
    list_invitations,
    list_team_members,
    list_teams,
)
from faultmaven_auth.rbac.permissions import SYSTEM_ROLE_IDS
from faultmaven_auth.rbac.repository import list_roles
from faultmaven_auth.storage.db import Database, create_engine
from faultmaven_auth.storage.models import (
    AuditEvent,
    Invitation,
    Organization,
    Role,
    ServiceClient,
    Team,
    TeamMembership,
    User,
)
from faultmaven_auth.storage.tenancy import OrgId
from faultmaven_auth.tokens.service_clients import list_service_clients

ROWS_PER_ORG = 5


@dataclass(frozen=True)
class Tenant:
    org_id: OrgId
    user_ids: list[uuid.UUID]
    team_id: uuid.UUID
    event_ids: list[uuid.UUID]


@pytest.fixture
async def database(backend_settings: Settings) -> AsyncIterator[Database]:
    db = Database(create_engine(backend_settings.database_url, pool_size=1))
    try:
        yield db
    finally:
        await db.engine.dispose()


async def _add_tenant(db: Database) -> Tenant:
    """An organization with a few rows in every table that has an organization list."""
    tag = secrets.token_hex(4)
    async with db.transaction() as session:
        org = Organization(name=f"Plans {tag}", slug=f"plans-{tag}", max_users=50, max_teams=5)
        session.add(org)
        await session.flush()
        users = [
            User(organization_id=org.id, email=f"u{i}-{tag}@example.com", full_name="P")
            for i in range(ROWS_PER_ORG)
        ]
        team = Team(organization_id=org.id, name=f"team-{tag}")
        session.add_all([*users, team])
        session.add(Role(organization_id=org.id, name=f"custom-{tag}"))
        await session.flush()
        session.add_all(TeamMembership(team_id=team.id, user_id=u.id) for u in users)
        expires = datetime.now(UTC) + timedelta(days=1)
        for i in range(ROWS_PER_ORG):
            session.add(
                Invitation(
                    organization_id=org.id,
                    email=f"i{i}-{tag}@example.com",
                    role_id=SYSTEM_ROLE_IDS["member"],
                    token_hash=secrets.token_hex(32),
                    expires_at=expires,
                )
            )
            session.add(
                ServiceClient(
                    client_id=f"sc_{tag}{i}",
                    secret_hash=secrets.token_hex(32),
                    name="plans",
                    organization_id=org.id,
                )
            )
        events = [
            AuditEvent(
                organization_id=org.id,
                actor_id=users[0].id,
                event_type="user.updated",
                outcome="success",
                details={},
            )
            for _ in range(ROWS_PER_ORG)
        ]
        session.add_all(events)
        await session.flush()
        return Tenant(OrgId(org.id), [u.id for u in users], team.id, [e.id for e in events])


@pytest.fixture
async def tenant(database: Database) -> Tenant:
    await _add_tenant(database)  # another organization's rows, which no list may read
    return await _add_tenant(database)


ListCall = Callable[[AsyncSession, Tenant], Awaitable[Any]]


@dataclass(frozen=True)
class ListQuery:
    table: str
    call: ListCall
    # The leading columns of the index the list's statement must search (None: any
    # index, e.g. a join on primary keys). Columns, not names: SQLite names the indexes
    # of unique constraints itself.
    index: tuple[str, ...] | None
    in_index_order: bool = True


def _audit(flt: AuditFilter, *, cursor: bool = False) -> ListCall:
    async def call(session: AsyncSession, t: Tenant) -> Any:
        before = t.event_ids[-2] if cursor else None
        return await list_audit_events(session, t.org_id, flt, before=before, limit=51)

    return call


LISTS: dict[str, ListQuery] = {
    "audit events, first page": ListQuery(
        "audit_events", _audit(AuditFilter()), ("organization_id", "id")
    ),
    "audit events, next page": ListQuery(
        "audit_events", _audit(AuditFilter(), cursor=True), ("organization_id", "id")
    ),
    "audit events by type": ListQuery(
        "audit_events",
        _audit(AuditFilter(event_type="user.updated"), cursor=True),
        ("organization_id", "event_type", "id"),
    ),
    "users, first page": ListQuery(
        "users",
        lambda s, t: list_users(s, t.org_id, after=None, limit=51),
        ("organization_id", "id"),
    ),
    "users, next page": ListQuery(
        "users",
        lambda s, t: list_users(s, t.org_id, after=t.user_ids[1], limit=51),
        ("organization_id", "id"),
    ),
    "service clients": ListQuery(
        "service_clients",
        lambda s, t: list_service_clients(s, t.org_id, after=None, limit=51),
        ("organization_id", "id"),
    ),
    "invitations": ListQuery(
        "invitations",
        lambda s, t: list_invitations(s, t.org_id),
        ("organization_id", "id"),
    ),
    "teams": ListQuery("teams", lambda s, t: list_teams(s, t.org_id), ("organization_id", "name")),
    "team members": ListQuery(
        "team_memberships",
        lambda s, t: list_team_members(s, t.org_id, t.team_id),
        None,
    ),
    "roles": ListQuery(
        "roles",
        lambda s, t: list_roles(s, t.org_id),
        ("organization_id",),
        in_index_order=False,
    ),
}


async def _captured_selects(db: Database, query: ListQuery, tenant: Tenant) -> list[Any]:
    """The SELECT statements (SQL, parameters) the list function sends to the driver."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.session() as session:
            await query.call(session, tenant)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    assert sent, "the list ran no SELECT"
    return sent


@dataclass(frozen=True)
class Plan:
    full_scans: list[str]  # tables (or indexes) read from end to end
    sorts: int
    searched_indexes: set[str]  # indexes searched with a condition
    text: str


async def _sqlite_plan(conn: AsyncConnection, sql: str, params: Any) -> Plan:
    rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)).all()
    details = [str(row[3]) for row in rows]
    searched = set()
    for detail in details:
        match = re.match(r"SEARCH \w+ USING (?:COVERING )?INDEX (\w+) \(", detail)
        if match:
            searched.add(match.group(1))
    return Plan(
        full_scans=[d for d in details if d.startswith("SCAN ")],
        sorts=sum("TEMP B-TREE" in d for d in details),
        searched_indexes=searched,
        text="\n".join(details),
    )


def _pg_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _pg_nodes(child))]


async def _postgres_plan(conn: AsyncConnection, sql: str, params: Any) -> Plan:
    await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    await conn.exec_driver_sql("SET LOCAL enable_sort = off")
    result = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params)
    document = result.scalar_one()
    nodes = _pg_nodes(document[0]["Plan"])
    full_scans = [
        f"{n['Node Type']} on {n.get('Relation Name')} {n.get('Index Name', '')}"
        for n in nodes
        if n["Node Type"] == "Seq Scan"
        or (n["Node Type"].startswith("Index") and "Index Cond" not in n)
    ]
    return Plan(
        full_scans=full_scans,
        sorts=sum(n["Node Type"] in ("Sort", "Incremental Sort") for n in nodes),
        searched_indexes={n["Index Name"] for n in nodes if "Index Cond" in n},
        text=str(document),
    )


_PG_INDEX_COLUMNS = """
SELECT a.attname FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE c.relname = $1 ORDER BY array_position(i.indkey::int2[], a.attnum)
"""


async def _index_columns(conn: AsyncConnection, index: str) -> tuple[str, ...]:
    if conn.dialect.name == "sqlite":
        sql, params = "SELECT name FROM pragma_index_info(?) ORDER BY seqno", (index,)
    else:
        sql, params = _PG_INDEX_COLUMNS, (index,)
    return tuple((await conn.exec_driver_sql(sql, params)).scalars())


async def _plans(
    db: Database, query: ListQuery, tenant: Tenant
) -> tuple[list[Plan], set[tuple[str, ...]]]:
    """The plan of each statement, and the columns of each index the last one searches."""
    statements = await _captured_selects(db, query, tenant)
    plans = []
    async with db.engine.connect() as conn:
        for sql, params in statements:
            if conn.dialect.name == "sqlite":
                plans.append(await _sqlite_plan(conn, sql, params))
            else:
                plans.append(await _postgres_plan(conn, sql, params))
        searched = {await _index_columns(conn, i) for i in plans[-1].searched_indexes}
        await conn.rollback()
    return plans, searched


@pytest.mark.parametrize("name", list(LISTS))
async def test_list_reads_the_organization_through_an_index(
    name: str, database: Database, tenant: Tenant
) -> None:
    """No statement of the list scans a table; lists read in index order, unsorted."""
    query = LISTS[name]
    plans, searched = await _plans(database, query, tenant)
    for plan in plans:
        assert plan.full_scans == [], plan.text
        if query.in_index_order:
            assert plan.sorts == 0, plan.text
    if query.index is not None:
        leading = {columns[: len(query.index)] for columns in searched}
        assert query.index in leading, plans[-1].text

"""The audit log's hash chain: every new event is linked to the one before it.

Each organization has one chain (events of no organization form the ``platform``
chain). An event's ``hash`` is SHA-256 over a canonical JSON document of its fields,
its position (``chain_seq``) and the previous event's hash (``prev_hash``), so changing,
removing or reordering a stored event breaks every link after it.

The links are made by a ``before_flush`` listener on every ORM session, not by the code
that records events: whoever adds an ``AuditEvent`` to a session gets a chained event,
in the same transaction. Hot paths (refresh, login) skip the ORM's flush with
``append_event``, which links and inserts one event through the same head with Core
statements (on PostgreSQL, one call of a function, which refresh and login make from
the one statement that also writes their rows). Appends are serialized per chain
through its row in ``audit_chain_heads``: the first statement of an append advances the
head (an UPDATE, so PostgreSQL locks that row until commit and SQLite takes its single
write lock), and only then reads the previous hash, so two transactions can never link
to the same predecessor. Rolled-back transactions roll the head back with their events.

The canonical document (version 1) is what verifiers outside this service recompute:
UTF-8 JSON with sorted keys, no whitespace, non-ASCII kept as is, of ``v`` (1), ``seq``,
``prev_hash``, ``id`` and the ids ``organization_id``/``actor_id`` (lowercase hyphenated
UUID or null), ``occurred_at`` (UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``), the strings
``event_type``, ``target_type``, ``target_id``, ``outcome``, ``ip_address``,
``user_agent``, ``request_id`` (or null) and ``details`` (its keys sorted too).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    CTE,
    JSON,
    ColumnElement,
    Row,
    Select,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.sql.selectable import TableValuedAlias

from faultmaven_auth.storage.ids import uuid7
from faultmaven_auth.storage.models.audit import AuditChainHead, AuditEvent
from faultmaven_auth.storage.models.base import utcnow

GENESIS_HASH = "0" * 64
PLATFORM_CHAIN = "platform"
CANONICAL_VERSION = 1
# ``Session.info`` key: events ``append_event`` wrote in the session's transaction.
APPENDED_EVENTS = "faultmaven_audit_appended"
# Core statements: nothing here needs the ORM's bookkeeping mid-flush.
_HEADS = cast(Table, AuditChainHead.__table__)
_EVENTS = cast(Table, AuditEvent.__table__)
_EVENT_COLUMNS = tuple(_EVENTS.c.keys())


def chain_key(organization_id: uuid.UUID | None) -> str:
    return PLATFORM_CHAIN if organization_id is None else str(organization_id)


def format_timestamp(value: datetime) -> str:
    """The one timestamp spelling that is hashed: UTC, microseconds, ``Z``."""
    if value.tzinfo is None:
        raise ValueError("audit timestamps are aware UTC datetimes")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _uuid_text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _document(event: AuditEvent) -> dict[str, Any]:
    """The canonical document's fields, as JSON values (see the module's docstring)."""
    return {
        "v": CANONICAL_VERSION,
        "seq": event.chain_seq,
        "prev_hash": event.prev_hash,
        "id": _uuid_text(event.id),
        "occurred_at": None if event.occurred_at is None else format_timestamp(event.occurred_at),
        "organization_id": _uuid_text(event.organization_id),
        "actor_id": _uuid_text(event.actor_id),
        "event_type": event.event_type,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "outcome": event.outcome,
        "ip_address": event.ip_address,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details,
    }


# One encoder for every call: json.dumps with options builds a new one each time.
_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def canonical_bytes(event: AuditEvent) -> bytes:
    """The exact bytes hashed for ``event`` (chain fields included)."""
    if event.occurred_at is None:
        raise ValueError("an audit event is hashed once its time is set")
    return _dumps(_document(event)).encode("utf-8")


# The fields PostgreSQL fills in (see migration 0007), in the document's key order: the
# stamped ones, and the ones a refresh only learns inside its statement.
HOLES = ("actor_id", "id", "occurred_at", "organization_id", "prev_hash", "seq", "target_id")


def canonical_fragments(event: AuditEvent) -> list[str]:
    """The canonical document as text, cut where the ``HOLES`` fields' JSON values go.

    ``fragments[0] + json(actor_id) + fragments[1] + json(id) + … + fragments[7]`` is,
    byte for byte, what ``canonical_bytes`` encodes once those fields are known; the
    event's own values for them are not used. A flat JSON object with sorted keys is
    its members' texts joined by commas, which is how it is put together here.
    """
    document = _document(event)
    fragments: list[str] = []
    text = "{"
    for position, key in enumerate(sorted(document)):
        text += ("," if position else "") + _dumps(key) + ":"
        if key in HOLES:
            fragments.append(text)
            text = ""
        else:
            text += _dumps(document[key])
    fragments.append(text + "}")
    return fragments


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


def _as_stored(details: dict[str, Any] | None) -> dict[str, Any]:
    """``details`` as it will read back from a JSON column (tuples become lists, keys
    strings), so the hash computed now matches the one recomputed from the database."""
    stored: dict[str, Any] = json.loads(json.dumps(details or {}, allow_nan=False))
    return stored


# Built once: a statement's cache key is memoized on it, so reusing one skips the
# per-call construction and key generation that would cost more than the hashing.
_ADVANCE = (
    update(_HEADS)
    .where(_HEADS.c.chain_key == bindparam("key"))
    .values(seq=_HEADS.c.seq + bindparam("count"))
    .returning(_HEADS.c.seq, _HEADS.c.hash)
)
_SET_HASH = (
    update(_HEADS).where(_HEADS.c.chain_key == bindparam("key")).values(hash=bindparam("head_hash"))
)
_INSERT_EVENT = insert(_EVENTS)
# The event's fields bound as they are; the holes' fields come from the caller. Every
# parameter of the call is named ``audit_<field>``: a statement that also writes other
# tables (``append_after``) must not hand a column of theirs a value meant for the event
# (SQLAlchemy adds a parameter named like a column to an UPDATE's SET).
_KNOWN_FIELDS = (
    "event_type",
    "target_type",
    "outcome",
    "ip_address",
    "user_agent",
    "request_id",
    "details",
)
_HOLE_PARAMETERS = ("organization_id", "actor_id", "target_id")
# What the function returns: the columns ``take_appended`` reads.
APPENDED_COLUMNS = (
    "appended_id",
    "appended_at",
    "appended_seq",
    "appended_prev_hash",
    "appended_hash",
)


def append_call(
    key: ColumnElement[Any],
    organization_id: ColumnElement[Any],
    actor_id: ColumnElement[Any],
    target_id: ColumnElement[Any],
) -> TableValuedAlias:
    """PostgreSQL: ``audit_chain_append`` (migration 0007) as a table: the chain's key and
    the holes' values as given (bound, or columns of the caller's statement), the rest
    bound from ``append_parameters``."""
    return func.audit_chain_append(
        key,
        bindparam("audit_fragments", type_=ARRAY(Text())),
        organization_id,
        actor_id,
        bindparam("audit_event_type", type_=String()),
        bindparam("audit_target_type", type_=String()),
        target_id,
        bindparam("audit_outcome", type_=String()),
        bindparam("audit_ip_address", type_=String()),
        bindparam("audit_user_agent", type_=String()),
        bindparam("audit_request_id", type_=String()),
        bindparam("audit_details", type_=JSON()),
    ).table_valued(*APPENDED_COLUMNS)


def append_after(*writes: CTE) -> Select[Any]:
    """PostgreSQL: one statement that runs ``writes`` (data-modifying ``WITH`` queries
    whose rows nothing reads) and appends one event, every argument of the call bound
    (``append_call_parameters``).

    Run in autocommit (``Database.single_statement``), the writes and the event commit
    together as the statement ends: no ``BEGIN`` or ``COMMIT`` round trip, and the
    organization's chain head is locked only while PostgreSQL runs it.
    """
    appended = append_call(
        bindparam("audit_key", type_=String()),
        bindparam("audit_organization_id", type_=Uuid()),
        bindparam("audit_actor_id", type_=Uuid()),
        bindparam("audit_target_id", type_=String()),
    )
    statement = select(*appended.c)
    return statement.add_cte(*writes) if writes else statement


# Built once: the append alone (``append_event``).
_APPEND = append_after()


def _advance_head(session: Session, key: str, count: int) -> tuple[int, str]:
    """Reserve ``count`` positions on chain ``key``; returns the head before them.

    The UPDATE comes first so the head row is locked (PostgreSQL) or the database's
    write lock is held (SQLite) before the previous hash is read.
    """
    params = {"key": key, "count": count}
    row = session.execute(_ADVANCE, params).one_or_none()
    if row is None:
        # First event of this chain: create its head, tolerating a concurrent creator.
        table = _HEADS
        dialect = session.get_bind().dialect.name
        make = pg_insert if dialect == "postgresql" else sqlite_insert
        values = {"chain_key": key, "seq": 0, "hash": GENESIS_HASH}
        if dialect in ("postgresql", "sqlite"):
            session.execute(make(table).values(values).on_conflict_do_nothing())
        else:  # pragma: no cover - only the two supported backends exist
            session.execute(insert(table).values(values))
        row = session.execute(_ADVANCE, params).one()
    seq, head_hash = int(row[0]), str(row[1])
    return seq - count, head_hash


def _set_head_hash(session: Session, key: str, head_hash: str) -> None:
    session.execute(_SET_HASH, {"key": key, "head_hash": head_hash})


def link_new_audit_events(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    """Chain every audit event this flush will insert (``before_flush`` listener)."""
    new_events = [obj for obj in session.new if isinstance(obj, AuditEvent)]
    if not new_events:
        return
    chains: dict[str, list[AuditEvent]] = defaultdict(list)
    for audit_event in new_events:
        chains[chain_key(audit_event.organization_id)].append(audit_event)
    # A fixed lock order: two transactions appending to the same two chains never
    # wait on each other in a cycle.
    for key in sorted(chains):
        events = chains[key]
        previous_seq, previous_hash = _advance_head(session, key, len(events))
        for offset, audit_event in enumerate(events, start=1):
            previous_hash = _link(audit_event, previous_seq + offset, previous_hash)
        _set_head_hash(session, key, previous_hash)


def _link(audit_event: AuditEvent, seq: int, previous_hash: str) -> str:
    """Give ``audit_event`` its place ``seq`` after ``previous_hash``; returns its hash.

    Called with the chain's head locked: id and time are taken under the lock, so a
    chain's order is also its time order (for events this service stamps itself).
    """
    if audit_event.id is None:
        audit_event.id = uuid7()
    if audit_event.occurred_at is None:
        audit_event.occurred_at = utcnow()
    audit_event.details = _as_stored(audit_event.details)
    audit_event.chain_seq = seq
    audit_event.prev_hash = previous_hash
    audit_event.hash = event_hash(audit_event)
    return audit_event.hash


def append_event(session: Session, audit_event: AuditEvent) -> None:
    """Link and insert one event now, with Core statements, outside the ORM's flush.

    For hot paths (every refresh writes an event): the unit of work costs more than the
    event itself. ``audit_event`` only carries the fields and never joins the session;
    the chain is the same as the listener's (same head, lock and canonical document).
    The event's id and time are always taken under the head's lock, and set on
    ``audit_event`` with its chain fields.

    On PostgreSQL the append is one statement (``audit_chain_append``), so between it
    and the commit, while the head row is locked, there is one round trip to this
    process instead of three: under load each of them also waits for the event loop,
    and one organization's appends queue on its head. Refresh and login go further and
    call the function from the one statement that commits them (``append_call``,
    ``append_after``).
    """
    if session.get_bind().dialect.name == "postgresql":
        params = append_call_parameters(audit_event)
        take_appended(session, audit_event, session.execute(_APPEND, params).one())
        return
    key = chain_key(audit_event.organization_id)
    audit_event.details = _as_stored(audit_event.details)
    previous_seq, previous_hash = _advance_head(session, key, 1)
    audit_event.id, audit_event.occurred_at = uuid7(), utcnow()
    head_hash = _link(audit_event, previous_seq + 1, previous_hash)
    session.execute(_INSERT_EVENT, {name: getattr(audit_event, name) for name in _EVENT_COLUMNS})
    _set_head_hash(session, key, head_hash)
    # The ORM's flush events never see this event: whoever ships committed events
    # (security.audit_export) finds it here.
    session.info.setdefault(APPENDED_EVENTS, []).append(audit_event)


def append_parameters(audit_event: AuditEvent) -> dict[str, Any]:
    """``audit_chain_append``'s parameters known before the call: the document's
    fragments and the fields that are not holes (the caller gives ``append_call`` the
    key and the organization, actor and target, bound or from its statement's rows)."""
    audit_event.details = _as_stored(audit_event.details)
    params = {f"audit_{name}": getattr(audit_event, name) for name in _KNOWN_FIELDS}
    params["audit_fragments"] = canonical_fragments(audit_event)
    return params


def append_call_parameters(audit_event: AuditEvent) -> dict[str, Any]:
    """Every parameter of an ``append_after`` statement's call, from the event alone."""
    params = append_parameters(audit_event)
    params["audit_key"] = chain_key(audit_event.organization_id)
    params.update({f"audit_{name}": getattr(audit_event, name) for name in _HOLE_PARAMETERS})
    return params


def take_appended(session: Session, audit_event: AuditEvent, row: Row[Any]) -> None:
    """Set what ``audit_chain_append`` stamped (its ``appended_*`` columns) on the event,
    and hand the event to whoever ships committed events (``security.audit_export``)."""
    audit_event.id = uuid.UUID(bytes=row.appended_id.bytes)
    audit_event.occurred_at = row.appended_at
    audit_event.chain_seq = int(row.appended_seq)
    audit_event.prev_hash = str(row.appended_prev_hash)
    audit_event.hash = str(row.appended_hash)
    session.info.setdefault(APPENDED_EVENTS, []).append(audit_event)


def install_audit_chain() -> None:
    """Chain audit events written through any ORM session of this process (idempotent)."""
    if not event.contains(Session, "before_flush", link_new_audit_events):
        event.listen(Session, "before_flush", link_new_audit_events)


def uninstall_audit_chain() -> None:
    """Stop chaining (benchmarks measure the cost with and without)."""
    if event.contains(Session, "before_flush", link_new_audit_events):
        event.remove(Session, "before_flush", link_new_audit_events)

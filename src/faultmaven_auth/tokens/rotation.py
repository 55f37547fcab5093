"""Refresh rotation with reuse detection: the hottest write path, kept to few statements.

Each refresh rotates the token: the presented one is marked rotated (atomically, so two
concurrent refreshes cannot both succeed) and a successor is issued in the same family.
Presenting a token that was already rotated means a copy is in someone else's hands:
the whole family is revoked, its access tokens too, and the reuse is audited.

The success path is Core statements: the claim (a conditional ``UPDATE … RETURNING``
that checks expiry, the absolute lifetime and a live account), the successor's
``INSERT`` and the audit append. On PostgreSQL they are one statement (a data-modifying
``WITH`` that calls ``audit_chain_append``), run in autocommit: no ``BEGIN`` or
``COMMIT`` round trips, and the organization's audit chain head is locked only while
PostgreSQL runs it. SQLite, which has no such ``WITH``, runs them apart in one
transaction (five statements). Only a refused claim reads the token again, to tell reuse
from an invalid token.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Interval,
    Row,
    Select,
    String,
    Update,
    bindparam,
    cast,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from faultmaven_auth.audit.events import AuditEventType, Outcome
from faultmaven_auth.audit.recorder import (
    RequestMeta,
    new_audit_event,
    record_audit_event,
    write_audit_event,
)
from faultmaven_auth.errors import InvalidToken
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.security.events import SecurityEventType, emit_security_event
from faultmaven_auth.storage.audit_chain import (
    append_call,
    append_parameters,
    take_appended,
)
from faultmaven_auth.storage.ids import uuid7
from faultmaven_auth.storage.models import Organization, User
from faultmaven_auth.storage.models.base import UTCDateTime, utcnow
from faultmaven_auth.tokens.revocation import revoke_family_access
from faultmaven_auth.tokens.service import (
    REFRESH_ROW_COLUMNS,
    REFRESH_TOKENS,
    TokenPair,
    hash_token,
    issue_token_pair,
    new_refresh_token,
    observe_session_end,
    record_auth_attempt,
    revoke_refresh_family,
    session_ends_at,
    signed_pair,
)


async def refresh_session(runtime: Runtime, raw_token: str, meta: RequestMeta) -> TokenPair:
    """Rotate a refresh token; an already-rotated one revokes its whole family."""
    started = time.perf_counter()
    try:
        pair = await _rotate_refresh_token(runtime, raw_token, meta)
    except InvalidToken:
        await record_auth_attempt(runtime, "refresh", False, started)
        raise
    await record_auth_attempt(runtime, "refresh", True, started)
    return pair


def _claim_statement() -> Update:
    """Mark the presented token rotated if, and only if, it may be exchanged now.

    One statement decides and claims: two concurrent refreshes of the same token cannot
    both match (PostgreSQL re-checks the WHERE on the updated row; SQLite runs writers
    one at a time). It also requires a live account: an inactive user or a deleted
    organization matches nothing, and ``_refusal`` says why.
    """
    tokens = REFRESH_TOKENS.c
    users, organizations = User.__table__.c, Organization.__table__.c
    live_account = (
        select(users.id)
        .join(Organization.__table__, organizations.id == users.organization_id)
        .where(
            users.id == tokens.user_id,
            users.is_active.is_(True),
            organizations.deleted_at.is_(None),
        )
        .exists()
    )
    return (
        update(REFRESH_TOKENS)
        .where(
            tokens.token_hash == bindparam("presented_hash"),
            tokens.rotated_at.is_(None),
            tokens.revoked_at.is_(None),
            tokens.expires_at > bindparam("now"),
            # Tokens stored before the absolute lifetime existed may expire later than it.
            tokens.session_started_at > bindparam("started_after"),
            live_account,
        )
        .values(rotated_at=bindparam("now"))
        .returning(
            tokens.family_id, tokens.user_id, tokens.organization_id, tokens.session_started_at
        )
    )


def _claim_and_insert_statement() -> ReturningInsert[Any]:
    """PostgreSQL: the claim, and the successor inserted from the claimed row.

    The successor expires at its TTL or at the session's absolute end, whichever is
    first (``LEAST``, computed from the claimed row's ``session_started_at``).
    """
    claimed = _CLAIM.cte("claimed")
    started = claimed.c.session_started_at
    # In REFRESH_ROW_COLUMNS' order.
    successor = select(
        bindparam("successor_id", type_=REFRESH_TOKENS.c.id.type),
        claimed.c.family_id,
        claimed.c.user_id,
        claimed.c.organization_id,
        bindparam("successor_hash", type_=String()),
        bindparam("now", type_=UTCDateTime()),
        func.least(
            bindparam("ttl_end", type_=UTCDateTime()),
            started + bindparam("lifetime", type_=Interval()),
        ),
        started,
    )
    tokens = REFRESH_TOKENS.c
    return (
        insert(REFRESH_TOKENS)
        .from_select(REFRESH_ROW_COLUMNS, successor)
        .returning(
            tokens.family_id, tokens.user_id, tokens.organization_id, tokens.session_started_at
        )
    )


def _refresh_statement() -> Select[Any]:
    """PostgreSQL: the whole refresh (claim, successor, audit event) as one statement.

    The audit event is appended by ``audit_chain_append`` (migration 0007) for the
    successor's row: organization, user and family come from the claimed token, and
    the document's other fields are bound. Run in autocommit, the statement commits as
    it ends, so the organization's chain head is locked only while it runs.
    """
    successor = _claim_and_insert_statement().cte("successor")
    appended = append_call(
        cast(successor.c.organization_id, String),
        successor.c.organization_id,
        successor.c.user_id,
        cast(successor.c.family_id, String),
    ).lateral("appended")
    return select(
        successor.c.family_id,
        successor.c.user_id,
        successor.c.organization_id,
        successor.c.session_started_at,
        *appended.c,
    ).select_from(successor.join(appended, true()))


# Built once: a statement's cache key is memoized on it, so no request rebuilds one.
_CLAIM = _claim_statement()
_REFRESH = _refresh_statement()


async def _claim_and_issue(
    session: AsyncSession, runtime: Runtime, token_hash: str, now: datetime, meta: RequestMeta
) -> TokenPair | None:
    """SQLite: claim the presented token, issue its successor and audit the refresh, in
    the caller's transaction; None when the claim failed."""
    lifetime = timedelta(seconds=runtime.settings.session_absolute_lifetime_seconds)
    claim = {"presented_hash": token_hash, "now": now, "started_after": now - lifetime}
    claimed = (await session.execute(_CLAIM, claim)).first()
    if claimed is None:
        return None
    pair = await issue_token_pair(
        session,
        runtime,
        user_id=claimed.user_id,
        organization_id=claimed.organization_id,
        family_id=claimed.family_id,
        session_started_at=claimed.session_started_at,
    )
    await write_audit_event(
        session,
        AuditEventType.TOKEN_REFRESHED,
        meta=meta,
        organization_id=claimed.organization_id,
        actor_id=claimed.user_id,
        target_type="session",
        target_id=claimed.family_id,
    )
    return pair


async def _refresh_in_one_statement(
    runtime: Runtime, token_hash: str, now: datetime, meta: RequestMeta
) -> TokenPair | None:
    """PostgreSQL: the refresh as one statement that commits on its own (``_REFRESH``);
    None when the claim failed (nothing was written)."""
    # The statement commits before the access token is signed: make sure one can be,
    # or the presented token would be spent on a 503.
    runtime.access_tokens.require_signing_key()
    lifetime = timedelta(seconds=runtime.settings.session_absolute_lifetime_seconds)
    raw = new_refresh_token()
    ttl = timedelta(seconds=runtime.settings.refresh_token_ttl_seconds)
    # The event's organization, actor and target are the claimed token's: holes here.
    audit_event = new_audit_event(
        AuditEventType.TOKEN_REFRESHED, meta, target_type="session", target_id=None
    )
    params = {
        "presented_hash": token_hash,
        "now": now,
        "started_after": now - lifetime,
        "successor_id": uuid7(),
        "successor_hash": hash_token(raw),
        "ttl_end": now + ttl,
        "lifetime": lifetime,
        **append_parameters(audit_event),
    }
    async with runtime.db.single_statement() as session:
        claimed = (await session.execute(_REFRESH, params)).first()
        if claimed is None:
            return None
        audit_event.organization_id = claimed.organization_id
        audit_event.actor_id = claimed.user_id
        audit_event.target_id = str(claimed.family_id)
        take_appended(session.sync_session, audit_event, claimed)
    return signed_pair(
        runtime,
        raw,
        claimed.user_id,
        claimed.organization_id,
        claimed.family_id,
        session_ends_at(runtime, claimed.session_started_at),
    )


async def _refusal(
    session: AsyncSession, runtime: Runtime, token_hash: str, now: datetime
) -> Row[Any]:
    """Why a token could not be claimed: raises ``InvalidToken``, or returns the row of a
    token that was already rotated (reuse: the caller revokes its family).

    Only refused refreshes come here, so the extra read costs nothing on the hot path.
    """
    tokens = REFRESH_TOKENS.c
    token = (
        await session.execute(
            select(
                tokens.family_id,
                tokens.user_id,
                tokens.organization_id,
                tokens.session_started_at,
                tokens.rotated_at,
                tokens.revoked_at,
                tokens.expires_at,
            ).where(tokens.token_hash == token_hash)
        )
    ).first()
    if (
        token is None
        or token.revoked_at is not None
        or token.expires_at <= now
        or session_ends_at(runtime, token.session_started_at) <= now
        # Not rotated: the account is what refused it (inactive user, deleted organization).
        or token.rotated_at is None
    ):
        raise InvalidToken
    return token


async def _revoke_reused_family(
    session: AsyncSession, runtime: Runtime, reused: Row[Any], meta: RequestMeta
) -> None:
    await revoke_refresh_family(session, reused.family_id)
    observe_session_end(runtime, reused.session_started_at)
    record_audit_event(
        session,
        AuditEventType.REFRESH_TOKEN_REUSED,
        meta=meta,
        organization_id=reused.organization_id,
        actor_id=reused.user_id,
        target_type="session",
        target_id=reused.family_id,
        outcome=Outcome.FAILURE,
    )


async def _rotate_refresh_token(runtime: Runtime, raw_token: str, meta: RequestMeta) -> TokenPair:
    now = utcnow()
    token_hash = hash_token(raw_token)
    if runtime.db.engine.dialect.name == "postgresql":
        pair = await _refresh_in_one_statement(runtime, token_hash, now, meta)
        if pair is not None:
            return pair
        # Refused, and nothing was written: why is read in a transaction of its own
        # (the reads that followed a refused claim in the same transaction before).
        async with runtime.db.transaction() as session:
            reused = await _refusal(session, runtime, token_hash, now)
            await _revoke_reused_family(session, runtime, reused, meta)
    else:
        async with runtime.db.transaction() as session:
            pair = await _claim_and_issue(session, runtime, token_hash, now, meta)
            if pair is not None:
                return pair
            reused = await _refusal(session, runtime, token_hash, now)
            await _revoke_reused_family(session, runtime, reused, meta)
    # Committed: the family is revoked and the reuse audited; now deny its access tokens.
    await revoke_family_access(
        runtime.kv, reused.family_id, runtime.settings.access_token_ttl_seconds
    )
    emit_security_event(
        SecurityEventType.REFRESH_TOKEN_REUSE,
        "Refresh token reuse: session family revoked",
        metrics=runtime.metrics,
        reason="rotated_token_presented",
        session_id=str(reused.family_id),
        user_id=str(reused.user_id),
        organization_id=str(reused.organization_id),
    )
    raise InvalidToken("The refresh token was already used", code="REFRESH_TOKEN_REUSED")

"""Sessions: login, token issue, logout and revocation (refresh rotation: ``rotation``).

A session is a *family* of refresh tokens that begins at login; each refresh rotates
the token within the family (``tokens.rotation``).

A session also has an absolute lifetime (``SESSION_ABSOLUTE_LIFETIME_SECONDS`` from its
login): rotation never issues a token that outlives it, and after it refresh is refused.

Telemetry never decides an outcome: the shared success-rate counters live in the
key-value store, and a store outage after a login has committed is logged and counted
(``telemetry_store_errors_total``), not turned into a 503 for a session that exists.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import RequestMeta, new_audit_event, record_audit_event
from faultmaven_auth.errors import InvalidCredentials, LoginCapacityExceeded, TooManyRequests
from faultmaven_auth.observability.tracing import current_trace_exemplar, traced
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.security.lockout import begin_login_attempt
from faultmaven_auth.sso.policy import SsoRequired, check_password_login
from faultmaven_auth.storage.audit_chain import (
    append_after,
    append_call_parameters,
    append_event,
    take_appended,
)
from faultmaven_auth.storage.ids import uuid7
from faultmaven_auth.storage.models import (
    AuditEvent,
    Organization,
    RefreshToken,
    SsoProvider,
    User,
)
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.tokens.access import AccessClaims
from faultmaven_auth.tokens.revocation import (
    revoke_access_token,
    revoke_family_access,
)

logger = logging.getLogger("faultmaven_auth.tokens")

REFRESH_TOKEN_PREFIX = "fmr_"
# Refresh and login write tokens with Core statements: the ORM's unit of work would cost
# more than the row.
REFRESH_TOKENS = cast(Table, RefreshToken.__table__)
_USERS = cast(Table, User.__table__)
_INSERT_REFRESH_TOKEN = insert(REFRESH_TOKENS)
# A login's write to its user, built once (see _LOGIN_ACCOUNT); keyed by whether the
# password is rehashed too. ``updated_at`` is set explicitly (to the login's time): a
# Python-side ``onupdate`` is not applied to an UPDATE inside a WITH (_LOGIN_WRITES).
_LOGIN_TIME = bindparam("last_login_at", type_=_USERS.c.last_login_at.type)
_RECORD_LOGIN = {
    rehashed: update(_USERS)
    .where(_USERS.c.id == bindparam("user_id"))
    .values(
        last_login_at=_LOGIN_TIME,
        updated_at=_LOGIN_TIME,
        **(
            {"password_hash": bindparam("password_hash", type_=_USERS.c.password_hash.type)}
            if rehashed
            else {}
        ),
    )
    for rehashed in (False, True)
}
# The columns a new refresh token is inserted with (``new_refresh_row``, and the
# successor a refresh inserts from its claimed row); ``rotated_at`` and ``revoked_at``
# start NULL.
REFRESH_ROW_COLUMNS = (
    "id",
    "family_id",
    "user_id",
    "organization_id",
    "token_hash",
    "created_at",
    "expires_at",
    "session_started_at",
)
# PostgreSQL: a successful login's writes as one statement (``_record_login``): the
# user's UPDATE and the token's INSERT as data-modifying WITH queries, then the audit
# append. Keyed, as _RECORD_LOGIN, by whether the password is rehashed.
_LOGIN_WRITES = {
    rehashed: append_after(
        _RECORD_LOGIN[rehashed].cte("recorded"),
        insert(REFRESH_TOKENS)
        .values(
            {
                name: bindparam(f"token_{name}", type_=REFRESH_TOKENS.c[name].type)
                for name in REFRESH_ROW_COLUMNS
            }
        )
        .cte("issued"),
    )
    for rehashed in (False, True)
}


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user_id: uuid.UUID
    organization_id: uuid.UUID


def hash_token(raw: str) -> str:
    """SHA-256 hex. Enough for 256-bit random values: there is nothing to brute-force."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def issue_token_pair(
    session: AsyncSession,
    runtime: Runtime,
    *,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    family_id: uuid.UUID | None = None,
    session_started_at: datetime | None = None,
) -> TokenPair:
    """A new refresh token (in ``family_id``, or a new family) and its access token.

    Neither outlives the session's absolute end (``session_ends_at``). The row is
    inserted at once with a Core statement: nothing needs it as an ORM object.
    """
    token = new_refresh_row(
        runtime,
        user_id=user_id,
        organization_id=organization_id,
        family_id=family_id,
        session_started_at=session_started_at,
    )
    await session.execute(_INSERT_REFRESH_TOKEN, token.row)
    return token.signed(runtime)


@dataclass(frozen=True)
class NewRefreshToken:
    """A refresh token about to be stored: its raw value, its row and its session's end."""

    raw: str
    row: dict[str, Any]
    session_end: datetime

    def signed(self, runtime: Runtime) -> TokenPair:
        """Once the row is stored: the pair with a new access token of its session."""
        row = self.row
        return signed_pair(
            runtime,
            self.raw,
            row["user_id"],
            row["organization_id"],
            row["family_id"],
            self.session_end,
        )


def new_refresh_row(
    runtime: Runtime,
    *,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    family_id: uuid.UUID | None = None,
    session_started_at: datetime | None = None,
) -> NewRefreshToken:
    now = utcnow()
    started = session_started_at or now
    session_end = session_ends_at(runtime, started)
    raw = new_refresh_token()
    ttl = timedelta(seconds=runtime.settings.refresh_token_ttl_seconds)
    values = (
        uuid7(),
        family_id or uuid.uuid4(),
        user_id,
        organization_id,
        hash_token(raw),
        now,
        min(now + ttl, session_end),
        started,
    )
    return NewRefreshToken(raw, dict(zip(REFRESH_ROW_COLUMNS, values, strict=True)), session_end)


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def signed_pair(
    runtime: Runtime,
    refresh_token: str,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    family_id: uuid.UUID,
    session_end: datetime,
) -> TokenPair:
    """``refresh_token`` (stored by the caller) with a new access token of its session."""
    access = runtime.access_tokens.issue(
        user_id=user_id,
        organization_id=organization_id,
        session_id=family_id,
        not_after=session_end,
    )
    runtime.metrics.token_issued("access")
    runtime.metrics.token_issued("refresh")
    return TokenPair(
        access_token=access.token,
        refresh_token=refresh_token,
        expires_in=int((access.claims.expires_at - access.claims.issued_at).total_seconds()),
        user_id=user_id,
        organization_id=organization_id,
    )


def session_ends_at(runtime: Runtime, session_started_at: datetime) -> datetime:
    """The absolute end of a session that began (logged in) at ``session_started_at``."""
    lifetime = timedelta(seconds=runtime.settings.session_absolute_lifetime_seconds)
    return session_started_at + lifetime


def _login_account_query(*, by_organization: bool) -> Select[Any]:
    """The one account a login is checked against, chosen before any password is.

    An address may have accounts in several organizations. Without an organization the
    choice is deterministic: an active account in a live organization first, then the
    oldest. Only that account's password is verified (once, however many accounts the
    address has), so neither timing nor answers reveal the other accounts.

    Built once (``_LOGIN_ACCOUNT``) with the email, and the organization, as bound
    parameters: constructing this statement and its cache key on every login cost
    more CPU than running it.
    """
    usable = and_(User.is_active.is_(True), Organization.deleted_at.is_(None))
    # Whether the organization requires SSO for some domain: asked here, in the same
    # statement, so only those organizations' logins pay for the full check.
    sso_required = (
        exists()
        .where(
            SsoProvider.organization_id == User.organization_id,
            SsoProvider.enabled.is_(True),
            SsoProvider.sso_required.is_(True),
        )
        .label("sso_required")
    )
    stmt = (
        select(User, Organization, sso_required)
        .join(Organization, Organization.id == User.organization_id)
        .where(User.email == bindparam("email"))
        .order_by(case((usable, 0), else_=1), User.created_at, User.id)
        .limit(1)
    )
    if by_organization:
        stmt = stmt.where(User.organization_id == bindparam("organization_id"))
    return stmt


# Keyed by whether the login names its organization.
_LOGIN_ACCOUNT = {
    False: _login_account_query(by_organization=False),
    True: _login_account_query(by_organization=True),
}


async def login(
    runtime: Runtime,
    email: str,
    password: str,
    meta: RequestMeta,
    *,
    organization_id: uuid.UUID | None = None,
) -> TokenPair:
    """Email + password to a new session. Every failure is the same 401, in the same time.

    ``organization_id`` picks the account when the address has several; an organization
    where the address has no account is an unknown user (still one dummy verification).
    """
    started = time.perf_counter()
    try:  # refused before any lookup or hashing: locked account, throttled address
        attempt = await begin_login_attempt(runtime, email, organization_id, meta)
    except TooManyRequests:
        await record_auth_attempt(runtime, "password", False, started)
        raise
    tracer = runtime.tracer
    with traced(tracer, "authenticate_user") as span:
        with traced(tracer, "db_query_user"):
            async with runtime.db.session() as session:
                statement = _LOGIN_ACCOUNT[organization_id is not None]
                params = {"email": normalize_email(email), "organization_id": organization_id}
                row = (await session.execute(statement, params)).first()
        user, organization = (row[0], row[1]) if row else (None, None)
        organization_requires_sso = bool(row[2]) if row else False
        # Verified even for an unknown email (against a dummy hash), so timing tells nothing.
        with traced(tracer, "verify_password"):
            result = await attempt.verify_password(user.password_hash if user else None, password)
        reason = None
        if user is None or organization is None:
            reason = "unknown_user"
        elif not result.valid:
            reason = "invalid_password"
        elif not user.is_active:
            reason = "user_inactive"
        elif organization.is_deleted:
            reason = "organization_deleted"
        # The user is named by id, and only once the credentials proved who it is.
        span.set_attribute("auth_success", reason is None)
        if reason is None and user is not None:
            span.set_attribute("enduser.id", str(user.id))
        if reason is not None:
            span.set_attribute("auth.failure_reason", reason)
            # Audit (aggregated for unknown emails), security log, lockout and stuffing.
            await attempt.failed(reason, user, organization)
            await record_auth_attempt(runtime, "password", False, started)
    if reason is not None:
        # Raised outside the span: a refused login is an outcome (auth_success), not an error.
        raise InvalidCredentials
    assert user is not None  # noqa: S101 - narrowed by the reason checks above
    try:  # SSO-required organizations (sso/policy.py): owners only, as break-glass
        break_glass = organization_requires_sso and await check_password_login(runtime.db, user)
    except SsoRequired:
        await record_auth_attempt(runtime, "password", False, started)
        raise
    new_hash = await _rehashed(runtime, password) if result.needs_rehash else None
    # Core statements only: the user row was read above and needs no reloading (merge).
    recorded: dict[str, Any] = {"user_id": user.id, "last_login_at": utcnow()}
    if new_hash is not None:
        recorded["password_hash"] = new_hash
    token = new_refresh_row(runtime, user_id=user.id, organization_id=user.organization_id)
    details: dict[str, Any] = {"method": "password", "password_rehashed": new_hash is not None}
    if break_glass:
        details["break_glass"] = True
    audit_event = new_audit_event(
        AuditEventType.LOGIN_SUCCEEDED,
        meta,
        user.organization_id,
        user.id,
        "user",
        user.id,
        details=details,
    )
    await _record_login(runtime, recorded, token, audit_event)
    pair = token.signed(runtime)
    await attempt.succeeded(user)
    await record_auth_attempt(runtime, "password", True, started)
    return pair


async def _record_login(
    runtime: Runtime, recorded: dict[str, Any], token: NewRefreshToken, audit_event: AuditEvent
) -> None:
    """A login's writes: the user's last login (and rehashed password), the session's
    first refresh token and the audit event, committed together.

    PostgreSQL runs them as one statement that commits on its own (``_LOGIN_WRITES``):
    no ``BEGIN`` or ``COMMIT`` round trip, and the organization's audit chain head is
    locked only while PostgreSQL runs it. SQLite runs them in one write transaction.
    """
    # Committed before the access token is signed: make sure one can be, or the login
    # would leave a session its caller never gets.
    runtime.access_tokens.require_signing_key()
    rehashed = "password_hash" in recorded
    if runtime.db.engine.dialect.name == "postgresql":
        params = {
            **recorded,
            **{f"token_{name}": value for name, value in token.row.items()},
            **append_call_parameters(audit_event),
        }
        async with runtime.db.single_statement() as session:
            appended = (await session.execute(_LOGIN_WRITES[rehashed], params)).one()
            take_appended(session.sync_session, audit_event, appended)
        return
    async with runtime.db.transaction() as session:
        await session.execute(_RECORD_LOGIN[rehashed], recorded)
        await session.execute(_INSERT_REFRESH_TOKEN, token.row)
        await session.run_sync(append_event, audit_event)


async def record_auth_attempt(runtime: Runtime, method: str, success: bool, started: float) -> None:
    """Count an attempt in the metrics and in the shared success-rate counters.

    Called after the attempt's outcome is committed. The shared counters are written
    in the background (``ActivityTracker``), so a store outage never turns a committed
    login into an error: the write is retried, logged and counted there.
    """
    runtime.metrics.auth_attempt(
        method, success, time.perf_counter() - started, exemplar=current_trace_exemplar()
    )
    runtime.activity.record_auth(success)


async def revoke_refresh_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def observe_session_end(runtime: Runtime, started_at: datetime | None) -> None:
    if started_at is not None:
        seconds = (utcnow() - started_at).total_seconds()
        runtime.metrics.session_duration_seconds.observe(max(seconds, 0.0))


async def logout(runtime: Runtime, claims: AccessClaims, meta: RequestMeta) -> None:
    """Revoke the caller's session family and the access token they presented."""
    async with runtime.db.transaction() as session:
        started_at = await session.scalar(
            select(func.min(RefreshToken.session_started_at)).where(
                RefreshToken.family_id == claims.session_id,
                RefreshToken.revoked_at.is_(None),
            )
        )
        await revoke_refresh_family(session, claims.session_id)
        record_audit_event(
            session,
            AuditEventType.LOGOUT,
            meta=meta,
            organization_id=claims.organization_id,
            actor_id=claims.user_id,
            target_type="session",
            target_id=claims.session_id,
        )
    await revoke_access_token(runtime.kv, claims)
    await revoke_family_access(
        runtime.kv, claims.session_id, runtime.settings.access_token_ttl_seconds
    )
    observe_session_end(runtime, started_at)


async def revoke_organization_sessions(session: AsyncSession, org_id: uuid.UUID) -> None:
    """Every refresh token of the organization; its access tokens die with the org check."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.organization_id == org_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def revoke_user_sessions(
    session: AsyncSession, user_id: uuid.UUID, *, keep_family: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Revoke every live refresh token of the user (but ``keep_family``'s); returns the
    session families ended.

    The caller denies those families' access tokens in the store once the transaction
    has committed (``revoke_families_access``).
    """
    live = [RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)]
    if keep_family is not None:
        live.append(RefreshToken.family_id != keep_family)
    families = list(
        (await session.scalars(select(RefreshToken.family_id).where(*live).distinct())).all()
    )
    await session.execute(
        update(RefreshToken)
        .where(*live)
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return families


async def revoke_families_access(runtime: Runtime, families: list[uuid.UUID]) -> None:
    for family in families:
        await revoke_family_access(runtime.kv, family, runtime.settings.access_token_ttl_seconds)


async def _rehashed(runtime: Runtime, password: str) -> str | None:
    """The password under the current parameters, or None when hashing is at capacity.

    The password was already proven; refusing the login now would fail a user who typed
    it right. The upgrade is simply left for a later login.
    """
    try:
        return await runtime.hasher.hash(password)
    except LoginCapacityExceeded:
        return None

"""Sessions: login, refresh rotation with reuse detection, logout, introspection.

A session is a *family* of refresh tokens that begins at login. Each refresh rotates the
token: the presented one is marked rotated (atomically, so two concurrent refreshes
cannot both succeed) and a successor is issued in the same family. Presenting a token
that was already rotated means a copy is in someone else's hands: the whole family is
revoked, its access tokens too, and the reuse is audited.

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
from typing import Any

from sqlalchemy import Select, and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.events import AuditEventType, Outcome
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.errors import InvalidCredentials, InvalidToken, TooManyRequests
from faultmaven_auth.observability.tracing import current_trace_exemplar, traced
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.security.events import SecurityEventType, emit_security_event
from faultmaven_auth.security.lockout import begin_login_attempt
from faultmaven_auth.sso.policy import SsoRequired, check_password_login
from faultmaven_auth.storage.kv import StoreUnavailable
from faultmaven_auth.storage.models import Organization, RefreshToken, User
from faultmaven_auth.storage.models.base import utcnow
from faultmaven_auth.tokens.access import AccessClaims
from faultmaven_auth.tokens.revocation import (
    revoke_access_token,
    revoke_family_access,
)

logger = logging.getLogger("faultmaven_auth.tokens")

REFRESH_TOKEN_PREFIX = "fmr_"


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
    user: User,
    *,
    family_id: uuid.UUID | None = None,
    session_started_at: datetime | None = None,
) -> TokenPair:
    """A new refresh token (in ``family_id``, or a new family) and its access token.

    Neither outlives the session's absolute end (``session_ends_at``).
    """
    now = utcnow()
    family = family_id or uuid.uuid4()
    started = session_started_at or now
    session_end = session_ends_at(runtime, started)
    raw = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            family_id=family,
            user_id=user.id,
            organization_id=user.organization_id,
            token_hash=hash_token(raw),
            created_at=now,
            expires_at=min(
                now + timedelta(seconds=runtime.settings.refresh_token_ttl_seconds), session_end
            ),
            session_started_at=started,
        )
    )
    access = runtime.access_tokens.issue(
        user_id=user.id,
        organization_id=user.organization_id,
        session_id=family,
        not_after=session_end,
    )
    runtime.metrics.token_issued("access")
    runtime.metrics.token_issued("refresh")
    return TokenPair(
        access_token=access.token,
        refresh_token=raw,
        expires_in=int((access.claims.expires_at - access.claims.issued_at).total_seconds()),
        user_id=user.id,
        organization_id=user.organization_id,
    )


def session_ends_at(runtime: Runtime, session_started_at: datetime) -> datetime:
    """The absolute end of a session that began (logged in) at ``session_started_at``."""
    lifetime = timedelta(seconds=runtime.settings.session_absolute_lifetime_seconds)
    return session_started_at + lifetime


def _login_account_query(email: str, organization_id: uuid.UUID | None) -> Select[Any]:
    """The one account a login is checked against, chosen before any password is.

    An address may have accounts in several organizations. Without ``organization_id``
    the choice is deterministic: an active account in a live organization first, then
    the oldest. Only that account's password is verified (once, however many accounts
    the address has), so neither timing nor answers reveal the other accounts.
    """
    usable = and_(User.is_active.is_(True), Organization.deleted_at.is_(None))
    stmt = (
        select(User, Organization)
        .join(Organization, Organization.id == User.organization_id)
        .where(User.email == normalize_email(email))
        .order_by(case((usable, 0), else_=1), User.created_at, User.id)
        .limit(1)
    )
    if organization_id is not None:
        stmt = stmt.where(User.organization_id == organization_id)
    return stmt


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
                row = (await session.execute(_login_account_query(email, organization_id))).first()
        user, organization = (row[0], row[1]) if row else (None, None)
        # Verified even for an unknown email (against a dummy hash), so timing tells nothing.
        with traced(tracer, "verify_password"):
            result = await runtime.hasher.verify(user.password_hash if user else None, password)
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
        break_glass = await check_password_login(runtime.db, user)
    except SsoRequired:
        await record_auth_attempt(runtime, "password", False, started)
        raise
    new_hash = await runtime.hasher.hash(password) if result.needs_rehash else None
    async with runtime.db.transaction() as session:
        user = await session.merge(user)
        assert user is not None  # noqa: S101
        if new_hash is not None:
            user.password_hash = new_hash
        user.last_login_at = utcnow()
        pair = await issue_token_pair(session, runtime, user)
        record_audit_event(
            session,
            AuditEventType.LOGIN_SUCCEEDED,
            meta=meta,
            organization_id=user.organization_id,
            actor_id=user.id,
            target_type="user",
            target_id=user.id,
            details={
                "method": "password",
                "password_rehashed": new_hash is not None,
                **({"break_glass": True} if break_glass else {}),
            },
        )
    await attempt.succeeded(user)
    await record_auth_attempt(runtime, "password", True, started)
    return pair


async def record_auth_attempt(runtime: Runtime, method: str, success: bool, started: float) -> None:
    """Count an attempt in the metrics and, best effort, in the shared success-rate counters.

    Called after the attempt's outcome is committed: a store outage here must not turn
    a committed login into an error, so it is logged and counted instead.
    """
    runtime.metrics.auth_attempt(
        method, success, time.perf_counter() - started, exemplar=current_trace_exemplar()
    )
    try:
        await runtime.activity.record_auth(success)
    except StoreUnavailable as exc:
        runtime.metrics.telemetry_store_error("auth_counters")
        logger.warning(
            "Could not count the authentication attempt in the key-value store",
            extra={"event_type": "telemetry_store_error", "reason": type(exc.__cause__).__name__},
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


async def _rotate_refresh_token(runtime: Runtime, raw_token: str, meta: RequestMeta) -> TokenPair:
    now = utcnow()
    reused_family: uuid.UUID | None = None
    reuser: dict[str, str] = {}
    async with runtime.db.transaction() as session:
        token = await session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == hash_token(raw_token))
        )
        if (
            token is None
            or token.revoked_at is not None
            or token.expires_at <= now
            # Tokens stored before the absolute lifetime existed may expire later than it.
            or session_ends_at(runtime, token.session_started_at) <= now
        ):
            raise InvalidToken
        claimed = await session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.id == token.id,
                RefreshToken.rotated_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(rotated_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 0:  # type: ignore[attr-defined]
            reused_family = token.family_id
            await revoke_refresh_family(session, token.family_id)
            reuser = {"user_id": str(token.user_id), "organization_id": str(token.organization_id)}
            observe_session_end(runtime, token.session_started_at)
            record_audit_event(
                session,
                AuditEventType.REFRESH_TOKEN_REUSED,
                meta=meta,
                organization_id=token.organization_id,
                actor_id=token.user_id,
                target_type="session",
                target_id=token.family_id,
                outcome=Outcome.FAILURE,
            )
        else:
            row = (
                await session.execute(
                    select(User, Organization)
                    .join(Organization, Organization.id == User.organization_id)
                    .where(User.id == token.user_id)
                )
            ).one()
            user, organization = row
            if not user.is_active or organization.is_deleted:
                raise InvalidToken
            pair = await issue_token_pair(
                session,
                runtime,
                user,
                family_id=token.family_id,
                session_started_at=token.session_started_at,
            )
            record_audit_event(
                session,
                AuditEventType.TOKEN_REFRESHED,
                meta=meta,
                organization_id=user.organization_id,
                actor_id=user.id,
                target_type="session",
                target_id=token.family_id,
            )
    if reused_family is not None:
        await revoke_family_access(
            runtime.kv, reused_family, runtime.settings.access_token_ttl_seconds
        )
        emit_security_event(
            SecurityEventType.REFRESH_TOKEN_REUSE,
            "Refresh token reuse: session family revoked",
            metrics=runtime.metrics,
            reason="rotated_token_presented",
            session_id=str(reused_family),
            user_id=reuser.get("user_id"),
            organization_id=reuser.get("organization_id"),
        )
        raise InvalidToken("The refresh token was already used", code="REFRESH_TOKEN_REUSED")
    return pair


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

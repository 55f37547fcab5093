"""Brute-force detection and temporary lockout for password login.

Per account (the normalized email, plus the organization when the login names one,
whether or not such an account exists, so an unknown email locks exactly like a known
one) every attempt is *reserved* before any password is verified: one atomic store step
checks the lock and counts the attempt (``KeyValueStore.reserve_attempt``). Attempt
N+1 of a window is refused without a database query or a hash, so parallel requests
cannot race past the limit (the failure mode of parallel checks that each read "4
failures so far"), and a locked account costs an attacker nothing to probe.

The N-th failure in the window locks the account for ``LOCKOUT_BASE_SECONDS``, doubled
for each further lock in the same episode up to ``LOCKOUT_MAX_SECONDS``, and starts a
fresh count. The first lock of an episode is also reported as a potential brute-force
attack. A successful login forgets the account's failures and lock history. An attempt the
password-hashing pool refuses at capacity (503) is given back: no password was checked.

Per client address, failures across accounts are counted in fixed windows; too many
failures or too many distinct accounts (credential stuffing) block the address.

Unknown emails never write one audit row per failure: they are counted per address and
window, and a row is written when that count reaches 1, 10, 100, ... so anonymous
traffic grows the audit table logarithmically, not linearly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from dataclasses import dataclass

from faultmaven_auth.audit.events import AuditEventType, Outcome
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.errors import AccountLocked, LoginCapacityExceeded, TooManyRequests
from faultmaven_auth.identity.passwords import VerifyResult
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.security.events import (
    SecurityEventType,
    emit_security_event,
    log_security_line,
    masked_email,
)
from faultmaven_auth.security.rate_limit import (
    RateLimitScope,
    limits_for,
    rate_limited,
    seconds_until_allowed,
)
from faultmaven_auth.security.store_guard import store_guarded
from faultmaven_auth.storage.kv import StoreUnavailable
from faultmaven_auth.storage.models import Organization, User

# Internal failure reasons (kept in audit rows) -> the reasons security logs report.
LOG_REASONS = {
    "unknown_user": "invalid_credentials",
    "invalid_password": "invalid_credentials",
    "user_inactive": "account_inactive",
    "organization_deleted": "organization_inactive",
}


def account_key(email: str, organization_id: uuid.UUID | None) -> str:
    """Store key part for one login identity; hashed so no email sits in the store."""
    scope = str(organization_id) if organization_id else "*"
    return hashlib.sha256(f"{scope}|{email.strip().lower()}".encode()).hexdigest()[:32]


def _keys(account: str) -> tuple[str, str, str]:
    return f"login:fail:{account}", f"login:lock:{account}", f"login:history:{account}"


@dataclass
class LoginAttempt:
    """One reserved login attempt; the login reports how it ended."""

    runtime: Runtime
    email: str
    organization_id: uuid.UUID | None
    meta: RequestMeta
    account: str
    number: int  # this attempt's number in the account's window; 0 if not counted
    reserved_at: float = 0.0  # the store clock's time when it was counted

    @property
    def _client(self) -> str:
        return self.meta.ip_address or "unknown"

    async def verify_password(self, password_hash: str | None, password: str) -> VerifyResult:
        """Verify for this attempt; a verification refused at capacity gives it back.

        A 503 LOGIN_CAPACITY_EXCEEDED checked no password, so it must not bring the
        account nearer its lock: the reserved attempt is released before the refusal
        reaches the client.
        """
        try:
            return await self.runtime.hasher.verify(password_hash, password)
        except LoginCapacityExceeded:
            await self.release()
            raise

    async def release(self) -> None:
        """Un-count this attempt (best effort: on a store outage it just stays counted)."""
        if self.number == 0:
            return
        counter, _, _ = _keys(self.account)
        try:
            await self.runtime.kv.release_attempt(counter, reserved_at=self.reserved_at)
        except StoreUnavailable:
            self.runtime.metrics.telemetry_store_error("lockout_release")
        self.number = 0

    async def failed(
        self, reason: str, user: User | None, organization: Organization | None
    ) -> None:
        """Audit (or aggregate), log, and count the failure toward lockout and stuffing."""
        runtime = self.runtime
        if user is not None:
            async with runtime.db.transaction() as session:
                record_audit_event(
                    session,
                    AuditEventType.LOGIN_FAILED,
                    meta=self.meta,
                    organization_id=organization.id if organization else None,
                    actor_id=user.id,
                    target_type="user",
                    target_id=user.id,
                    outcome=Outcome.FAILURE,
                    details={"method": "password", "reason": reason},
                )
        log_failed_login(runtime, self.email, self.meta, LOG_REASONS.get(reason, reason))
        async with store_guarded(runtime, "lockout"):
            if user is None:
                await self._aggregate_unknown_failure()
        await self.count_failure(user, organization)

    async def count_failure(self, user: User | None, organization: Organization | None) -> None:
        """Count a wrong password toward the account's lock and the address's stuffing
        limits (a login, or a password change proving the current password)."""
        async with store_guarded(self.runtime, "lockout"):
            if self.number == self.runtime.settings.login_max_failures:
                await self._lock(user, organization)
            await self._count_address_failure()

    async def succeeded(self, user: User) -> None:
        log_security_line(
            "login_succeeded",
            "User logged in",
            level=logging.INFO,
            user_id=str(user.id),
            organization_id=str(user.organization_id),
            ip_address=self.meta.ip_address,
        )
        await self.clear()

    async def clear(self) -> None:
        """The right password was given: forget the account's failures (best effort)."""
        counter, _, history = _keys(self.account)
        try:
            await self.runtime.kv.delete_many([counter, history])  # one round trip
        except StoreUnavailable as exc:
            # The session is committed: a 503 now would deny a login that happened, even
            # when failing closed. A count left standing only brings a lock one step
            # nearer; it expires with its window.
            self.runtime.metrics.telemetry_store_error("lockout_reset")
            log_security_line(
                "login_protection_unavailable",
                "Login protection store unavailable: failure count not cleared",
                level=logging.ERROR,
                check="lockout_reset",
                reason=type(exc.__cause__ or exc).__name__,
            )

    async def _aggregate_unknown_failure(self) -> None:
        runtime = self.runtime
        window = runtime.settings.login_failure_window_seconds
        bucket = int(runtime.clock() // window)
        count = await runtime.kv.increment(f"login:unknown:{self._client}:{bucket}", window)
        if str(count).rstrip("0") != "1":  # rows at 1, 10, 100, ... failures
            return
        async with runtime.db.transaction() as session:
            record_audit_event(
                session,
                AuditEventType.LOGIN_FAILED,
                meta=self.meta,
                organization_id=None,
                actor_id=None,
                outcome=Outcome.FAILURE,
                details={
                    "method": "password",
                    "reason": "unknown_user",
                    "aggregated": True,
                    "failures_in_window": count,
                    "window_seconds": window,
                },
            )

    async def _lock(self, user: User | None, organization: Organization | None) -> None:
        runtime, settings = self.runtime, self.runtime.settings
        kv, now = runtime.kv, runtime.clock()
        counter, lock, history_key = _keys(self.account)
        history = _load_history(await kv.get(history_key))
        episode = settings.login_failure_window_seconds + settings.lockout_max_seconds
        if history is not None and now - history["locked_at"] > episode:
            history = None
        level = 1 if history is None else int(history["level"]) + 1
        seconds = min(
            settings.lockout_base_seconds * 2 ** min(level - 1, 32), settings.lockout_max_seconds
        )
        # The lock first, then the fresh count: a reservation between the two sees the lock.
        await kv.set(lock, repr(now + seconds), math.ceil(seconds) + 1)
        await kv.delete(counter)
        alerted_at = None if history is None else history.get("alerted_at")
        first = (
            alerted_at is None or now - float(alerted_at) >= settings.login_failure_window_seconds
        )
        await kv.set(
            history_key,
            json.dumps(
                {"level": level, "locked_at": now, "alerted_at": now if first else alerted_at}
            ),
            episode + settings.lockout_max_seconds,
        )
        fields = {
            "email": masked_email(self.email),
            "ip_address": self.meta.ip_address,
            "user_agent": self.meta.user_agent,
            "failed_attempts": settings.login_max_failures,
        }
        if first:
            emit_security_event(
                SecurityEventType.BRUTE_FORCE_DETECTED,
                "Potential brute force attack",
                metrics=runtime.metrics,
                level=logging.CRITICAL,
                reason="failed_login_limit",
                **fields,
            )
        emit_security_event(
            SecurityEventType.ACCOUNT_LOCKED,
            "Account temporarily locked",
            metrics=runtime.metrics,
            level=logging.WARNING,
            reason="failed_login_limit",
            lock_seconds=seconds,
            lock_level=level,
            **fields,
        )
        if user is None:
            return  # an unknown email: metrics and logs only, no audit rows to flood
        async with runtime.db.transaction() as session:
            details = {"failed_attempts": settings.login_max_failures, "lock_seconds": seconds}
            for event_type, wanted in (
                (AuditEventType.BRUTE_FORCE_DETECTED, first),
                (AuditEventType.ACCOUNT_LOCKED, True),
            ):
                if wanted:
                    record_audit_event(
                        session,
                        event_type,
                        meta=self.meta,
                        organization_id=organization.id if organization else None,
                        actor_id=None,
                        target_type="user",
                        target_id=user.id,
                        outcome=Outcome.FAILURE,
                        details=details,
                    )

    async def _count_address_failure(self) -> None:
        runtime, settings = self.runtime, self.runtime.settings
        kv, now = runtime.kv, runtime.clock()
        window = settings.credential_stuffing_window_seconds
        bucket = int(now // window)
        failures = await kv.increment(f"login:ip-fail:{self._client}:{bucket}", window)
        accounts_key = f"login:ip-accounts:{self._client}:{bucket}"
        await kv.touch_member(accounts_key, self.account, window)
        accounts = len(await kv.members_since(accounts_key, window))
        if (
            failures < settings.credential_stuffing_max_failures
            and accounts < settings.credential_stuffing_max_accounts
        ):
            return
        until = (bucket + 1) * window
        await kv.set(f"login:ip-block:{self._client}", repr(until), math.ceil(until - now) + 1)
        if await kv.set_if_absent(f"login:ip-alerted:{self._client}:{bucket}", "1", window):
            emit_security_event(
                SecurityEventType.CREDENTIAL_STUFFING_DETECTED,
                "Potential credential stuffing attack",
                metrics=runtime.metrics,
                level=logging.CRITICAL,
                reason="failures_from_address",
                ip_address=self.meta.ip_address,
                user_agent=self.meta.user_agent,
                failed_attempts=failures,
                distinct_accounts=accounts,
            )
            async with runtime.db.transaction() as session:
                record_audit_event(
                    session,
                    AuditEventType.CREDENTIAL_STUFFING_DETECTED,
                    meta=self.meta,
                    organization_id=None,
                    actor_id=None,
                    outcome=Outcome.FAILURE,
                    details={"failed_attempts": failures, "distinct_accounts": accounts},
                )


def _load_history(value: str | None) -> dict[str, float] | None:
    try:
        data = json.loads(value) if value else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def log_failed_login(runtime: Runtime, email: str, meta: RequestMeta, reason: str) -> None:
    log_security_line(
        "login_failed",
        "Failed login attempt",
        level=logging.WARNING,
        email=masked_email(email),
        ip_address=meta.ip_address,
        user_agent=meta.user_agent,
        reason=reason,
    )


async def begin_login_attempt(
    runtime: Runtime, email: str, organization_id: uuid.UUID | None, meta: RequestMeta
) -> LoginAttempt:
    """Reserve an attempt, or refuse it (429) before any lookup or password check.

    Refusals are logged as failed logins; the caller counts them in the auth metrics.
    A refusal at hashing capacity (503) comes first and is neither: it says nothing
    about the credentials (the hashing pool counts and logs it).
    """
    settings = runtime.settings
    # At hashing capacity the password could not be checked in time: refuse (503)
    # before counting the attempt or querying anything.
    runtime.hasher.check_capacity()
    attempt = LoginAttempt(
        runtime, email, organization_id, meta, account_key(email, organization_id), 0
    )
    client = meta.ip_address or "unknown"
    refusal: TooManyRequests | None = None
    async with store_guarded(runtime, "lockout"):
        now = runtime.clock()
        blocked = _as_deadline(await runtime.kv.get(f"login:ip-block:{client}"))
        if blocked is not None and blocked > now:
            refusal = TooManyRequests(blocked - now)
        elif settings.rate_limit_enabled and (limits := limits_for(settings, RateLimitScope.LOGIN)):
            wait = await seconds_until_allowed(runtime.kv, runtime.clock, "login", client, limits)
            if wait is not None:
                refusal = rate_limited(runtime, RateLimitScope.LOGIN, meta, wait)
        if refusal is None:
            counter, lock, _ = _keys(attempt.account)
            reserved = await runtime.kv.reserve_attempt(
                counter,
                lock_key=lock,
                now=now,
                window_seconds=settings.login_failure_window_seconds,
            )
            if reserved.locked_until is not None:
                refusal = AccountLocked(reserved.locked_until - now)
            elif reserved.attempts > settings.login_max_failures:
                # The limit's attempts are still being checked; the lock follows them.
                refusal = AccountLocked(settings.lockout_base_seconds)
            attempt.number, attempt.reserved_at = reserved.attempts, now
    if refusal is not None:
        reason = "account_locked" if isinstance(refusal, AccountLocked) else "rate_limited"
        log_failed_login(runtime, email, meta, reason)
        raise refusal
    return attempt


def _as_deadline(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


async def unlock_account(
    runtime: Runtime, email: str, organization_id: uuid.UUID, *, unscoped_too: bool
) -> bool:
    """Forget failures, lock and history of the account; True when it was locked.

    ``unscoped_too`` also clears the organization-less identity (login without
    ``organization_id``), which only the sole organization holding the email may do.
    """
    identities = [account_key(email, organization_id)]
    if unscoped_too:
        identities.append(account_key(email, None))
    now = runtime.clock()
    was_locked = False
    for identity in identities:
        counter, lock, history = _keys(identity)
        deadline = _as_deadline(await runtime.kv.get(lock))
        was_locked = was_locked or (deadline is not None and deadline > now)
        for key in (lock, counter, history):
            await runtime.kv.delete(key)
    return was_locked

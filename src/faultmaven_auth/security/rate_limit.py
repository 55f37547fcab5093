"""Per-client-address rate limits on the unauthenticated endpoints.

Each scope (login, register, refresh, introspect, invitation, sso) has one or more windows,
e.g. ``10/minute;100/hour``. Every window is a fixed-window counter in the key-value
store (``increment``: atomic on Redis and in-process alike, so the limit holds across
replicas), keyed by scope, address, window length and the window's number on the
runtime clock. A request is refused when any window is over its limit, with
``Retry-After`` until the latest such window ends.

Why not the ``limits`` library: its async storages open their own Redis connections and
read the system clock; these counters belong in the one store every replica shares,
under the service's key prefix and its injectable clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

from faultmaven_auth.audit.recorder import RequestMeta
from faultmaven_auth.config import Settings, parse_rate_limits
from faultmaven_auth.errors import TooManyRequests
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.security.events import SecurityEventType, emit_security_event
from faultmaven_auth.security.store_guard import store_guarded
from faultmaven_auth.storage.kv import KeyValueStore


class RateLimitScope(StrEnum):
    LOGIN = "login"
    REGISTER = "register"
    REFRESH = "refresh"
    INTROSPECT = "introspect"
    INVITATION = "invitation"
    SSO = "sso"  # discovery, login start, callback and code exchange


def limits_for(settings: Settings, scope: RateLimitScope) -> list[tuple[int, int]]:
    text = {
        RateLimitScope.LOGIN: settings.rate_limit_login,
        RateLimitScope.REGISTER: settings.rate_limit_register,
        RateLimitScope.REFRESH: settings.rate_limit_refresh,
        RateLimitScope.INTROSPECT: settings.rate_limit_introspect,
        RateLimitScope.INVITATION: settings.rate_limit_invitation,
        RateLimitScope.SSO: settings.rate_limit_sso,
    }[scope]
    return parse_rate_limits(text)


async def seconds_until_allowed(
    kv: KeyValueStore,
    clock: Callable[[], float],
    scope: str,
    client: str,
    limits: list[tuple[int, int]],
) -> float | None:
    """Count this request in every window; None when allowed, else seconds to wait."""
    now = clock()
    windows = [int(now // period) for _, period in limits]
    # Every window in one round trip to the store.
    counts = await kv.increment_many(
        [
            (f"rl:{scope}:{client}:{period}:{window}", period)
            for (_, period), window in zip(limits, windows, strict=True)
        ]
    )
    wait: float | None = None
    for (limit, period), window, count in zip(limits, windows, counts, strict=True):
        if count > limit:
            wait = max(wait or 0.0, (window + 1) * period - now)
    return wait


async def enforce_rate_limit(runtime: Runtime, scope: RateLimitScope, meta: RequestMeta) -> None:
    """Raise 429 ``RATE_LIMITED`` (and emit ``rate_limited``) when the address is over."""
    settings = runtime.settings
    if not settings.rate_limit_enabled:
        return
    limits = limits_for(settings, scope)
    if not limits:
        return
    client = meta.ip_address or "unknown"
    wait: float | None = None  # stays None when the store is down and policy is fail_open
    async with store_guarded(runtime, "rate_limit"):
        wait = await seconds_until_allowed(runtime.kv, runtime.clock, scope, client, limits)
    if wait is not None:
        raise rate_limited(runtime, scope, meta, wait)


def rate_limited(
    runtime: Runtime, scope: RateLimitScope, meta: RequestMeta, wait: float
) -> TooManyRequests:
    """Emit ``rate_limited`` for a refused request and return the 429 to raise."""
    emit_security_event(
        SecurityEventType.RATE_LIMITED,
        "Rate limit exceeded",
        metrics=runtime.metrics,
        level=logging.WARNING,
        reason="rate_limit_exceeded",
        scope=scope.value,
        ip_address=meta.ip_address,
        user_agent=meta.user_agent,
        retry_after=round(wait),
    )
    return TooManyRequests(wait)

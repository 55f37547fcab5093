"""Per-request profiling, off unless ``PROFILING_ENABLED=true`` (refused in production).

A request is profiled only when it asks (``X-Profile: true``) *and* is entitled: it
presents ``X-Profiling-Token`` equal to ``PROFILING_TOKEN``, or it is authenticated as
an owner of its organization. Owner status is known only once the request has been
authenticated, so the request runs under the profiler and the result is kept only if it
turns out to be entitled. The top functions by cumulative time go to the log as one
``Request profile`` line. A query parameter never triggers anything.

cProfile sees the whole thread, so concurrent requests on the same event loop show up
in the profile too: this is a diagnosis tool for a quiet instance, not a production
sampler.
"""

from __future__ import annotations

import cProfile
import hmac
import io
import logging
import pstats

from starlette.types import ASGIApp, Receive, Scope, Send

from faultmaven_auth.rbac.permissions import OWNER

logger = logging.getLogger("faultmaven_auth.profiling")

TOP_FUNCTIONS = 25


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def _is_owner(scope: Scope) -> bool:
    principal = scope.get("state", {}).get("principal")
    roles = getattr(principal, "roles", ())
    return any(getattr(role, "name", None) == OWNER for role in roles)


def top_functions(profile: cProfile.Profile, limit: int = TOP_FUNCTIONS) -> list[dict[str, object]]:
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_, calls, total, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{filename}:{line}({name})",
                "calls": calls,
                "total_ms": round(total * 1000, 3),
                "cumulative_ms": round(cumulative * 1000, 3),
            }
        )
    rows.sort(key=lambda row: float(str(row["cumulative_ms"])), reverse=True)
    return rows[:limit]


class ProfilingMiddleware:
    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token else None

    def _token_ok(self, scope: Scope) -> bool:
        presented = _header(scope, b"x-profiling-token")
        return (
            self._token is not None
            and presented is not None
            and hmac.compare_digest(presented, self._token)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (_header(scope, b"x-profile") or b"").lower() != b"true":
            await self.app(scope, receive, send)
            return
        profile = cProfile.Profile()
        profile.enable()
        try:
            await self.app(scope, receive, send)
        finally:
            profile.disable()
        if self._token_ok(scope) or _is_owner(scope):
            logger.info(
                "Request profile",
                extra={
                    "endpoint": scope["path"],
                    "method": scope["method"],
                    "profile": top_functions(profile),
                },
            )

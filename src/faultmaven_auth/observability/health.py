"""Liveness and readiness probes (DESIGN §8).

``/health`` touches nothing: a process that answers is alive. ``/ready`` checks the
database and the key-value store concurrently, each with a short timeout, so a hung
dependency makes the probe fail fast instead of hanging it. Every check (from ``/ready``
or from a scrape of ``/metrics``) sets ``dependency_up``; ``redis`` only when Redis is
configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from faultmaven_auth.config import Settings, StoreFailurePolicy
from faultmaven_auth.runtime import Runtime, get_runtime

router = APIRouter(tags=["operations"])
logger = logging.getLogger("faultmaven_auth.health")


async def _check(name: str, probe: Callable[[], Awaitable[None]], limit: float) -> bool:
    try:
        await asyncio.wait_for(probe(), limit)
    except Exception as exc:
        logger.warning(
            "Readiness check failed", extra={"check": name, "reason": type(exc).__name__}
        )
        return False
    return True


def login_protection_state(settings: Settings, *, store_up: bool) -> str:
    """``enforced``; or, with its store down, ``failing_closed`` / ``failing_open``."""
    if store_up:
        return "enforced"
    if settings.store_failure_policy is StoreFailurePolicy.FAIL_CLOSED:
        return "failing_closed"
    return "failing_open"


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy", "edition": "enterprise"}


async def check_dependencies(runtime: Runtime) -> tuple[bool, bool]:
    """Check the database and the store concurrently; record ``dependency_up``."""
    timeout = runtime.settings.health_check_timeout_seconds
    database, redis = await asyncio.gather(
        _check("database", runtime.db.ping, timeout), _check("redis", runtime.kv.ping, timeout)
    )
    runtime.metrics.dependency_checked("database", database)
    if not runtime.settings.uses_in_process_store:
        runtime.metrics.dependency_checked("redis", redis)
    return database, redis


class ReadinessChecks(BaseModel):
    database: bool
    redis: bool


class Readiness(BaseModel):
    """The document's description of /ready (the answer is built by hand, below)."""

    status: str
    checks: ReadinessChecks


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is not ready"}},
)
async def ready(runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    database, redis = await check_dependencies(runtime)
    ok = database and redis
    return JSONResponse(
        {
            "status": "ready" if ok else "not_ready",
            "checks": {"database": database, "redis": redis, "login_protection": redis},
            "login_protection": login_protection_state(runtime.settings, store_up=redis),
        },
        status_code=200 if ok else 503,
    )

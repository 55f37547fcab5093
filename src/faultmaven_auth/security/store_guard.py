"""What login protection does when its store is down (LOGIN_PROTECTION_STORE_FAILURE).

``fail_closed`` (the production default) refuses the request with 503
``LOGIN_PROTECTION_UNAVAILABLE``: no login runs without brute-force protection.
``fail_open`` (the default elsewhere) lets it through unprotected. Either way an ERROR
line says so, every time, and ``/ready`` reports the state.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faultmaven_auth.config import StoreFailurePolicy
from faultmaven_auth.errors import ServiceUnavailable
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.security.events import log_security_line
from faultmaven_auth.storage.kv import StoreUnavailable


class LoginProtectionUnavailable(ServiceUnavailable):
    code = "LOGIN_PROTECTION_UNAVAILABLE"
    message = "Login protection is unavailable; try again later"


@asynccontextmanager
async def store_guarded(runtime: Runtime, check: str) -> AsyncIterator[None]:
    """Run store calls of ``check``; on an outage apply the configured policy."""
    try:
        yield
    except StoreUnavailable as exc:
        policy = runtime.settings.store_failure_policy
        closed = policy is StoreFailurePolicy.FAIL_CLOSED
        log_security_line(
            "login_protection_unavailable",
            "Login protection store unavailable: "
            + ("refusing requests" if closed else "continuing WITHOUT protection"),
            level=logging.ERROR,
            check=check,
            policy=policy.value,
            reason=type(exc.__cause__ or exc).__name__,
        )
        if closed:
            raise LoginProtectionUnavailable from exc

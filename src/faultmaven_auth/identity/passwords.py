"""Password hashing with argon2id, off the event loop.

Argon2 is deliberately slow (tens of milliseconds); run inline it would stall every
other request on the loop, so hashing and verifying go to the threads of a
``HashingPool`` (one per core, a fair queue, early 503 at capacity: see
``hashing_pool``). argon2-cffi releases the GIL while it hashes, so those threads leave
the loop free. A login for an unknown email verifies against a dummy hash, so both
paths cost the same.

Passwords are used exactly as typed (never trimmed) except for one step: Unicode NFC
normalization, applied here on both hashing and verifying, so "é" typed as one code
point or as "e" + combining accent (macOS, some keyboards) is the same password.
"""

from __future__ import annotations

import functools
import logging
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from faultmaven_auth.config import Settings, available_cores
from faultmaven_auth.identity.hashing_pool import HashingPool, PoolObserver
from faultmaven_auth.observability.metrics import Metrics
from faultmaven_auth.observability.refusal_log import RefusalLog

logger = logging.getLogger("faultmaven_auth.identity")


@dataclass(frozen=True)
class VerifyResult:
    valid: bool
    needs_rehash: bool = False


class PasswordHasher:
    """Hash and verify on a bounded pool; at capacity both raise ``LoginCapacityExceeded``."""

    def __init__(
        self,
        *,
        time_cost: int,
        memory_cost_kib: int,
        parallelism: int,
        threads: int,
        queue_timeout_seconds: float,
        queue_limit: int,
        niceness: int = 0,
        telemetry: HashingTelemetry | None = None,
    ) -> None:
        self._argon2 = _Argon2(
            time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism
        )
        # Made once per process; verified against when the email is unknown. Its cost
        # is the pool's first estimate of a job, before any real one has been timed.
        started = time.perf_counter()
        self._dummy_hash = self._argon2.hash("not-a-real-password-only-for-timing")
        self._telemetry = telemetry
        self.pool = HashingPool(
            threads=threads,
            queue_timeout_seconds=queue_timeout_seconds,
            queue_limit=queue_limit,
            expected_job_seconds=time.perf_counter() - started,
            observer=telemetry,
            niceness=niceness,
        )

    def check_capacity(self) -> None:
        """Refuse (503) now if a hash requested now would be refused: see HashingPool."""
        self.pool.check_capacity()

    async def hash(self, password: str) -> str:
        return await self.pool.run(functools.partial(self._argon2.hash, _normalized(password)))

    async def verify(self, password_hash: str | None, password: str) -> VerifyResult:
        """Check a password; with no hash (unknown user), still spend the same time."""
        return await self.pool.run(functools.partial(self._verify_sync, password_hash, password))

    def close(self) -> None:
        self.pool.close()
        if self._telemetry is not None:
            self._telemetry.log.flush()

    def _verify_sync(self, password_hash: str | None, password: str) -> VerifyResult:
        target = password_hash or self._dummy_hash
        try:
            self._argon2.verify(target, _normalized(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return VerifyResult(valid=False)
        if password_hash is None:
            return VerifyResult(valid=False)
        return VerifyResult(valid=True, needs_rehash=self._argon2.check_needs_rehash(target))


class HashingTelemetry(PoolObserver):
    """Reports the pool to the metrics, and its refusals to the log once per interval."""

    def __init__(self, metrics: Metrics, log: RefusalLog) -> None:
        self._metrics = metrics
        self.log = log

    def refused(self, reason: str, estimated_wait: float) -> None:
        self._metrics.password_hash_rejected_total.labels(reason).inc()
        self.log.refused(reason, estimated_wait)

    def queue_changed(self, waiting: int, running: int) -> None:
        self._metrics.password_hash_queue_depth.set(waiting)
        self._metrics.password_hash_in_progress.set(running)

    def waited(self, seconds: float) -> None:
        self._metrics.password_hash_queue_wait_seconds.observe(seconds)


def hashing_threads(settings: Settings) -> int:
    """The default pool size: this worker's share of the cores.

    Argon2 keeps a core busy for the whole hash, so the workers of one host together
    should run about one hash per core; more threads only queue on the CPU and starve
    the event loops (``/health`` included).
    """
    return max(1, available_cores() // (settings.workers or 1))


def hashing_refusal_log(**options: Any) -> RefusalLog:
    """The throttled warning for logins refused at hashing capacity."""
    return RefusalLog(
        logger,
        "Password hashing at capacity: requests refused",
        "login_capacity_exceeded",
        **options,
    )


def build_password_hasher(settings: Settings, metrics: Metrics) -> PasswordHasher:
    """The hasher the settings describe, reporting to ``metrics``."""
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost_kib=settings.argon2_memory_cost_kib,
        parallelism=settings.argon2_parallelism,
        threads=settings.password_hash_threads or hashing_threads(settings),
        queue_timeout_seconds=settings.password_hash_queue_timeout_seconds,
        queue_limit=settings.password_hash_queue_limit,
        niceness=settings.password_hash_thread_niceness,
        telemetry=HashingTelemetry(metrics, hashing_refusal_log()),
    )


def _normalized(password: str) -> str:
    return unicodedata.normalize("NFC", password)

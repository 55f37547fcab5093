"""Admission control: at most N requests run at once per worker; the rest wait briefly,
then get 503 ``OVERLOADED`` with ``Retry-After`` without the app running at all.

Why: unbounded, a burst of 512 connections is admitted whole; every request then shares
the CPU and the pools, so all of them get slow (p99 ≈ 8 s) and some fail deep inside.
Refusing at the door keeps the admitted requests fast and tells the others when to come
back, before any state changes (a retry is always safe).

The middleware sits inside the request-context and HTTP-metrics middleware, so a refusal
has a request id and shows in ``http_requests_total{status="503"}``. Probes and scrapes
(``/health``, ``/ready``, ``/metrics``) never wait: a busy worker is still alive.

Waiters are served first come, first served while the queue is short-lived, and newest
first once it has stood for ``STANDING_QUEUE_SECONDS`` ("adaptive LIFO", as in
Maurer's "Fail at Scale", ACM Queue 2015). Under a sustained overload a first-come queue
makes every admitted request wait the whole queue timeout before it even starts (p50 of
admitted = the timeout); newest-first admits requests that have barely waited and lets
the oldest time out, which they would have done anyway. The number refused is the same,
each refusal still waits the full timeout (so a client that retries at once cannot turn
refusals into a busy loop), and a brief burst is still served in order.

Refusals from further in (a Redis or database pool that stayed exhausted) are marked on
the request's scope state by the error handler (``errors.REFUSAL_STATE_KEY``) and counted
here as well: every refusal is one ``http_requests_rejected_total{reason}`` increment and
part of one warning per interval (``RefusalLog``), never one log line per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from faultmaven_auth.errors import REFUSAL_STATE_KEY, Overloaded, error_body
from faultmaven_auth.observability.metrics import Metrics
from faultmaven_auth.observability.refusal_log import RefusalLog

logger = logging.getLogger("faultmaven_auth.admission")

EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
# A queue that has not emptied for this long is standing, not a burst: serve newest first.
STANDING_QUEUE_SECONDS = 0.1


def admission_refusal_log(**options: Any) -> RefusalLog:
    """The throttled warning for requests refused at the door or by an exhausted pool."""
    return RefusalLog(logger, "Requests refused at capacity", "requests_refused", **options)


class RefusalReporter:
    """Counts every refusal in ``http_requests_rejected_total`` and logs it (throttled)."""

    def __init__(self, metrics: Metrics, log: RefusalLog | None = None) -> None:
        self._counter = metrics.http_requests_rejected_total
        self._log = log or admission_refusal_log()

    def refused(self, reason: str) -> None:
        self._counter.labels(reason).inc()
        self._log.refused(reason)


class RequestSlots:
    """``limit`` slots and the requests waiting for one (adaptive LIFO, see above).

    A freed slot goes straight to a waiter, so a newcomer never takes it ahead of the
    queue. Each waiter has its own timer; when it fires the waiter is refused.
    """

    def __init__(
        self,
        limit: int,
        *,
        standing_seconds: float = STANDING_QUEUE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = limit
        self._standing_seconds = standing_seconds
        self._clock = clock
        # Every waiter, oldest on the left; expired or cancelled ones are skipped when met.
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._waiting = 0  # waiters still waiting
        self._queued_since = 0.0  # when the queue last went from empty to not empty

    def try_acquire(self) -> bool:
        """Take a free slot without waiting, unless others are already waiting."""
        if self._free and not self._waiting:
            self._free -= 1
            return True
        return False

    async def acquire(self, timeout_seconds: float) -> bool:
        """Wait up to ``timeout_seconds`` for a slot: true once it is ours."""
        if self.try_acquire():
            return True
        if timeout_seconds <= 0:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        if not self._waiting:
            self._queued_since = self._clock()
        self._waiters.append(waiter)
        self._waiting += 1
        timer = loop.call_later(timeout_seconds, self._expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                self._left()  # cancelled while waiting: it never had the slot
            elif waiter.result():
                self.release()  # granted, then cancelled before it could run
            raise
        finally:
            timer.cancel()

    def release(self) -> None:
        while self._waiting:
            waiter = self._waiters.pop() if self._standing() else self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                self._left()
                return
        self._free += 1

    @property
    def waiting(self) -> int:
        return self._waiting

    def _standing(self) -> bool:
        return self._clock() - self._queued_since >= self._standing_seconds

    def _expire(self, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            waiter.set_result(False)
            self._left()

    def _left(self) -> None:
        self._waiting -= 1
        if not self._waiting:
            self._waiters.clear()  # only finished waiters remain
        elif len(self._waiters) > 2 * self._waiting + 64:
            # Served newest first, a standing queue leaves its expired waiters at the old
            # end: drop them now and then, or a long overload would keep every one.
            self._waiters = deque(w for w in self._waiters if not w.done())


class AdmissionMiddleware:
    """Bounds the requests in flight in this worker (pure ASGI: no per-request task)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        queue_timeout_seconds: float,
        reporter: RefusalReporter,
    ) -> None:
        self.app = app
        self._slots = RequestSlots(limit)
        self._queue_timeout = queue_timeout_seconds
        self._reporter = reporter
        self._refusal = Overloaded(retry_after=max(1.0, queue_timeout_seconds))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if not self._slots.try_acquire() and not await self._slots.acquire(self._queue_timeout):
            self._reporter.refused("overloaded")
            await self._refuse(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()
            reason = scope.get("state", {}).get(REFUSAL_STATE_KEY)
            if reason is not None:
                self._reporter.refused(str(reason))

    async def _refuse(self, send: Send) -> None:
        refusal = self._refusal
        payload = json.dumps(error_body(refusal.code, refusal.message)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"retry-after", str(refusal.retry_after).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

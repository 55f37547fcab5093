"""Admission control: at most N requests run at once per worker; the rest wait briefly,
then get 503 ``OVERLOADED`` with ``Retry-After`` without the app running at all.

Why: unbounded, a burst of 512 connections is admitted whole; every request then shares
the CPU and the pools, so all of them get slow (p99 ≈ 8 s) and some fail deep inside.
Refusing at the door keeps the admitted requests fast and tells the others when to come
back, before any state changes (a retry is always safe).

The middleware sits inside the request-context and HTTP-metrics middleware, so a refusal
has a request id and shows in ``http_requests_total{status="503"}``. Probes and scrapes
(``/health``, ``/ready``, ``/metrics``) never wait: a busy worker is still alive.

Refusals from further in (a Redis or database pool that stayed exhausted) are marked on
the request's scope state by the error handler (``errors.REFUSAL_STATE_KEY``) and counted
here as well: every refusal is one ``http_requests_rejected_total{reason}`` increment and
part of one warning per interval (``RefusalLog``), never one log line per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from faultmaven_auth.errors import REFUSAL_STATE_KEY, Overloaded, error_body
from faultmaven_auth.observability.metrics import Metrics
from faultmaven_auth.observability.refusal_log import RefusalLog

logger = logging.getLogger("faultmaven_auth.admission")

EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})


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
        self._slots = asyncio.Semaphore(limit)
        self._queue_timeout = queue_timeout_seconds
        self._reporter = reporter
        self._refusal = Overloaded(retry_after=max(1.0, queue_timeout_seconds))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if not await self._admit():
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

    async def _admit(self) -> bool:
        # ``locked`` is also true while others wait, so a newcomer never jumps the queue.
        if not self._slots.locked():
            await self._slots.acquire()  # returns without suspending: a slot is free
            return True
        if self._queue_timeout <= 0:
            return False
        try:
            async with asyncio.timeout(self._queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            return False
        return True

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

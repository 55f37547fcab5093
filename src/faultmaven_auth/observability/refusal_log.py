"""One warning per interval for refusals at capacity, however many requests were refused.

A storm refuses thousands of requests a minute; one line each would flood the logs (and
the log shipper) exactly when the service is busiest. The first refusal after a quiet
interval is logged at once; later ones are counted by reason and written when the
interval has passed, by a timer, so the end of a burst is not lost. Used from the event
loop's thread only. The line summarises many requests, so it is written outside the
current request's context: it carries no request id or user of whichever refusal
happened to trigger it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import Counter
from collections.abc import Callable

REFUSAL_LOG_INTERVAL_SECONDS = 10.0


class RefusalLog:
    """Refusals counted by reason, written as at most one ``message`` per interval."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        event_type: str,
        *,
        interval_seconds: float = REFUSAL_LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._message = message
        self._event_type = event_type
        self._interval = interval_seconds
        self._clock = clock
        self._last: float | None = None
        self._counts: Counter[str] = Counter()
        self._max_wait: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def refused(self, reason: str, estimated_wait: float | None = None) -> None:
        """One refusal; ``estimated_wait`` (seconds), when known, is reported as a maximum."""
        self._counts[reason] += 1
        if estimated_wait is not None:
            self._max_wait = max(self._max_wait or 0.0, estimated_wait)
        now = self._clock()
        if self._last is None or now - self._last >= self._interval:
            self._write(now)
        elif self._timer is None:
            with contextlib.suppress(RuntimeError):  # no loop: the next refusal writes
                self._timer = asyncio.get_running_loop().call_later(
                    self._last + self._interval - now, self.flush
                )

    def flush(self) -> None:
        """Write the refusals not logged yet, if any."""
        if self._counts:
            self._write(self._clock())

    def _write(self, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        extra: dict[str, object] = {
            "event_type": self._event_type,
            "count": sum(self._counts.values()),
            "reasons": dict(self._counts),
            "interval_seconds": self._interval,
        }
        if self._max_wait is not None:
            extra["max_estimated_wait_seconds"] = round(self._max_wait, 3)
        self._last = now
        self._counts.clear()
        self._max_wait = None
        contextvars.Context().run(self._logger.warning, self._message, extra=extra)

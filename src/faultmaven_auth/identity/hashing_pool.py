"""A small, fair thread pool for password hashing, which refuses work it cannot start in time.

Why not ``asyncio.to_thread``: its default executor has up to ``cores + 4`` threads, so
on two cores a login storm ran six argon2 hashes at once. They did not finish any
sooner (the CPU is the limit), but they crowded out the event loop (``/health`` p50 went
from 1 to 10.5 ms) and the queue in front of them grew without bound, so every login
waited longer than its client would.

Here:

- ``threads`` jobs run at most (one per core by default): hashing proceeds at the CPU's
  rate and the event loop keeps its share.
- Jobs start in arrival order (a FIFO queue, not whichever waiter wakes first).
- Admission is decided before a job enters the queue: the wait is estimated as the jobs
  ahead of it times the recent job duration (an exponentially weighted average) divided
  by ``threads``. Past the deadline, or with the queue at its hard limit, the job is
  refused at once with ``LoginCapacityExceeded`` (503, ``Retry-After`` = the estimate)
  instead of joining a queue it would time out in.
- A job still waiting when its deadline passes (the estimate was too low) is refused
  when it reaches the front rather than started late.
- A job whose caller was cancelled (the client went away) is skipped, never occupying
  a thread.

The counts and the average are kept on the event loop's thread; worker threads only
run jobs (checking the deadline first) and report back with ``call_soon_threadsafe``,
so no lock is needed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from faultmaven_auth.errors import LoginCapacityExceeded

T = TypeVar("T")

logger = logging.getLogger("faultmaven_auth.identity")

# How much the newest job duration moves the average: recent enough to follow a CPU that
# got busier, smooth enough that one slow job does not refuse a burst of logins.
_SMOOTHING = 0.2


class PoolObserver(Protocol):
    """Where the pool reports refusals and its queue (metrics, throttled logs)."""

    def refused(self, reason: str, estimated_wait: float) -> None: ...

    def queue_changed(self, waiting: int, running: int) -> None: ...

    def waited(self, seconds: float) -> None: ...


class _PastDeadline(Exception):
    """Raised on the worker thread for a job that waited too long; never leaves the pool."""

    def __init__(self, waited: float) -> None:
        super().__init__(waited)
        self.waited = waited


class HashingPool:
    """``threads`` worker threads behind a FIFO queue with early refusal (see module doc).

    The queue is the executor's own: its threads take jobs in submission order and go
    from one job to the next without a round trip through the event loop, so a busy
    loop never leaves a hashing thread idle. A cancelled job still in the queue is
    skipped by the thread that reaches it.
    """

    def __init__(
        self,
        *,
        threads: int,
        queue_timeout_seconds: float,
        queue_limit: int,
        expected_job_seconds: float,
        observer: PoolObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        niceness: int = 0,
    ) -> None:
        self._threads = threads
        self._timeout = queue_timeout_seconds
        self._limit = queue_limit
        self._average = expected_job_seconds
        self._observer = observer
        self._clock = clock
        self._pending = 0  # submitted and not finished: running + waiting
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix="password-hash",
            initializer=_ThreadPriority(niceness).lower,
        )

    @property
    def average_job_seconds(self) -> float:
        return self._average

    @property
    def _waiting(self) -> int:
        return max(0, self._pending - self._threads)

    def estimated_wait(self) -> float:
        """Seconds a job arriving now would wait for a thread (0 when one is free)."""
        if self._pending < self._threads:
            return 0.0
        return (self._waiting + 1) * self._average / self._threads

    def check_capacity(self) -> None:
        """Refuse now (``LoginCapacityExceeded``) if a job arriving now would be refused.

        Lets a caller refuse before it changes any state (reserves a login attempt,
        queries the database) for work the pool would turn away anyway.
        """
        wait = self.estimated_wait()
        if self._waiting >= self._limit:
            raise self._refusal("queue_full", wait)
        if wait > self._timeout:
            raise self._refusal("estimated_wait", wait)

    async def run(self, job: Callable[[], T]) -> T:
        """Run ``job`` on a pool thread once its turn comes; refuse it if that is too late."""
        loop = asyncio.get_running_loop()
        self.check_capacity()
        # Only a job queued behind others can be late; one that finds a thread free
        # starts now, however tight the deadline.
        queued = self._pending >= self._threads
        work = self._executor.submit(self._start, job, self._clock(), queued)
        self._pending += 1
        self._report_queue()
        # Counted until the thread is done (or skips it), not until the caller stops
        # waiting: a cancelled caller's running hash still occupies its thread.
        work.add_done_callback(lambda done: _call_soon(loop, self._job_done, done))
        try:
            result, waited, _ = await asyncio.wrap_future(work, loop=loop)
        except _PastDeadline as late:
            raise self._refusal("deadline", late.waited) from None
        if self._observer is not None:
            self._observer.waited(waited)
        return result

    def _start(
        self, job: Callable[[], T], enqueued_at: float, queued: bool
    ) -> tuple[T, float, float]:
        """On a worker thread: run the job, unless it waited past its deadline."""
        waited = self._clock() - enqueued_at
        if queued and waited > self._timeout:
            raise _PastDeadline(waited)
        started = time.perf_counter()
        result = job()
        return result, waited, time.perf_counter() - started

    def _job_done(self, work: concurrent.futures.Future[tuple[object, float, float]]) -> None:
        self._pending -= 1
        if not work.cancelled() and work.exception() is None:
            _, _, seconds = work.result()
            self._average += _SMOOTHING * (seconds - self._average)
        self._report_queue()

    def _refusal(self, reason: str, wait: float) -> LoginCapacityExceeded:
        if self._observer is not None:
            self._observer.refused(reason, wait)
        # Retry when the work queued now should be done.
        return LoginCapacityExceeded(max(wait, self.estimated_wait()))

    def _report_queue(self) -> None:
        if self._observer is not None:
            self._observer.queue_changed(self._waiting, min(self._pending, self._threads))

    def close(self) -> None:
        """Let running jobs finish; queued ones are cancelled (their callers see that)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class _ThreadPriority:
    """Runs each worker thread ``niceness`` steps below the event loop's priority.

    Linux schedules threads one by one, so the loop thread (and the database, on the
    same host) preempt hashing whenever they have work: requests that do not hash
    keep their idle latency, and hashing still gets every cycle nobody else wants.
    Where that cannot be done (another OS, a sandbox refusing ``setpriority``) the
    threads run at the loop's priority and this is said once, not once per thread.
    """

    def __init__(self, niceness: int) -> None:
        self._niceness = niceness
        self._reported = False
        self._lock = threading.Lock()

    def lower(self) -> None:
        if self._niceness <= 0:
            return
        if not sys.platform.startswith("linux"):
            self._report("per-thread priority is Linux only")
            return
        thread = threading.get_native_id()
        try:
            current = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, min(19, current + self._niceness))
        except OSError as exc:
            self._report(type(exc).__name__)

    def _report(self, reason: str) -> None:
        with self._lock:
            if self._reported:
                return
            self._reported = True
        logger.warning(
            "Could not lower the priority of the password-hashing threads; "
            "they run at the event loop's priority",
            extra={
                "event_type": "hash_thread_priority_unavailable",
                "niceness": self._niceness,
                "reason": reason,
            },
        )


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object
) -> None:
    """Report to the loop from a worker thread; a loop already closed has nobody to tell."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)

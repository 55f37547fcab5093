"""The password-hashing pool: fair order, bounded threads, early refusal, cancellation.

Jobs here are fake hashes that block on a ``threading.Event`` the test sets, so the
queue is forced by holding threads, never by timing; the pool's clock is a fake the
test moves when a deadline must pass.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from faultmaven_auth.config import Settings
from faultmaven_auth.errors import LoginCapacityExceeded
from faultmaven_auth.identity.hashing_pool import HashingPool
from faultmaven_auth.identity.passwords import hashing_refusal_log, hashing_threads

# Long enough that a job blocked by a bug fails the test instead of hanging it.
BLOCK_LIMIT = 30.0


@dataclass
class Recorder:
    """A PoolObserver that keeps what the pool reported."""

    refusals: list[tuple[str, float]] = field(default_factory=list)
    depths: list[tuple[int, int]] = field(default_factory=list)

    def refused(self, reason: str, estimated_wait: float) -> None:
        self.refusals.append((reason, estimated_wait))

    def queue_changed(self, waiting: int, running: int) -> None:
        self.depths.append((waiting, running))

    def waited(self, seconds: float) -> None:
        pass


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


class Jobs:
    """Fake hashes: each records when it starts, then blocks until released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0

    def job(self, name: str) -> Callable[[], str]:
        def run() -> str:
            with self._lock:
                self.started.append(name)
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
            try:
                assert self.release.wait(BLOCK_LIMIT), "the test never released the job"
            finally:
                with self._lock:
                    self.running -= 1
            return name

        return run


def new_pool(
    *,
    threads: int = 1,
    timeout: float = 60.0,
    limit: int = 100,
    expected: float = 0.001,
    observer: Recorder | None = None,
    clock: FakeClock | None = None,
) -> HashingPool:
    return HashingPool(
        threads=threads,
        queue_timeout_seconds=timeout,
        queue_limit=limit,
        expected_job_seconds=expected,
        observer=observer,
        clock=clock or FakeClock(),
    )


@pytest.fixture
async def jobs() -> AsyncIterator[Jobs]:
    fakes = Jobs()
    yield fakes
    fakes.release.set()  # never leave a thread blocked behind a failed test


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop and the pool's threads run until ``condition`` holds."""
    for _ in range(int(BLOCK_LIMIT / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def queued(pool: HashingPool, job: Callable[[], str]) -> asyncio.Task[str]:
    """Start ``job`` as its own task and let it reach the queue before returning."""
    task = asyncio.create_task(pool.run(job))
    await asyncio.sleep(0)
    return task


async def test_jobs_start_in_arrival_order(jobs: Jobs) -> None:
    """With the thread busy, queued jobs start first-come first-served."""
    pool = new_pool(threads=1)
    first = await queued(pool, jobs.job("first"))
    await until(lambda: jobs.started == ["first"])
    names = [f"job-{i}" for i in range(8)]
    waiting = [await queued(pool, jobs.job(name)) for name in names]
    jobs.release.set()
    assert await asyncio.gather(first, *waiting) == ["first", *names]
    assert jobs.started == ["first", *names]
    pool.close()


async def test_the_pool_never_runs_more_jobs_than_threads(jobs: Jobs) -> None:
    """Twelve jobs on three threads: at most three ever run at once, and all finish."""
    pool = new_pool(threads=3)
    tasks = [await queued(pool, jobs.job(f"job-{i}")) for i in range(12)]
    await until(lambda: len(jobs.started) == 3)
    assert jobs.running == 3
    jobs.release.set()
    assert len(await asyncio.gather(*tasks)) == 12
    assert jobs.most_at_once == 3
    pool.close()


async def test_a_job_that_would_wait_past_the_deadline_is_refused_at_once(jobs: Jobs) -> None:
    """Estimated wait = jobs ahead x average job time / threads; past the deadline: 503.

    One running and one waiting 1 s job on one thread: a third would wait about 2 s,
    past the 1.5 s deadline, so it is refused without being queued or run, with
    Retry-After = the estimate rounded up.
    """
    recorder = Recorder()
    pool = new_pool(threads=1, timeout=1.5, expected=1.0, observer=recorder)
    running = await queued(pool, jobs.job("running"))
    second = await queued(pool, jobs.job("second"))
    assert pool.estimated_wait() == pytest.approx(2.0)
    with pytest.raises(LoginCapacityExceeded) as refused:
        await pool.run(jobs.job("refused"))
    assert refused.value.status_code == 503
    assert refused.value.code == "LOGIN_CAPACITY_EXCEEDED"
    assert refused.value.retry_after == 2
    assert recorder.refusals == [("estimated_wait", pytest.approx(2.0))]
    jobs.release.set()
    assert await asyncio.gather(running, second) == ["running", "second"]
    assert "refused" not in jobs.started
    pool.close()


async def test_check_capacity_refuses_what_run_would_refuse(jobs: Jobs) -> None:
    """The early check answers like a run would, without queueing anything."""
    pool = new_pool(threads=1, timeout=0.5, expected=1.0)
    pool.check_capacity()  # a free thread: no wait
    running = await queued(pool, jobs.job("running"))
    with pytest.raises(LoginCapacityExceeded):
        pool.check_capacity()  # about 1 s behind the running job
    jobs.release.set()
    await running
    pool.check_capacity()
    pool.close()


async def test_the_queue_has_a_hard_limit(jobs: Jobs) -> None:
    """Whatever the estimate, jobs beyond the queue limit are refused (queue_full)."""
    recorder = Recorder()
    pool = new_pool(threads=1, limit=2, observer=recorder)
    tasks = [await queued(pool, jobs.job(f"job-{i}")) for i in range(3)]  # 1 running, 2 waiting
    with pytest.raises(LoginCapacityExceeded):
        await pool.run(jobs.job("one too many"))
    assert [reason for reason, _ in recorder.refusals] == ["queue_full"]
    jobs.release.set()
    await asyncio.gather(*tasks)
    pool.close()


async def test_a_cancelled_waiting_job_never_runs(jobs: Jobs) -> None:
    """A caller gone while its job waits: the job leaves the queue; the next one runs."""
    pool = new_pool(threads=1)
    running = await queued(pool, jobs.job("running"))
    abandoned = await queued(pool, jobs.job("abandoned"))
    after = await queued(pool, jobs.job("after"))
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    await until(lambda: pool.estimated_wait() == pytest.approx(2 * 0.001))  # 1 waiting, not 2
    jobs.release.set()
    assert await asyncio.gather(running, after) == ["running", "after"]
    assert jobs.started == ["running", "after"]
    pool.close()


async def test_a_job_still_waiting_at_its_deadline_is_refused_not_started(jobs: Jobs) -> None:
    """When the estimate was too low, a job reaching the front past its deadline gets
    503 (reason deadline) instead of starting late; the next one in time still runs."""
    recorder = Recorder()
    clock = FakeClock()
    pool = new_pool(threads=1, timeout=2.0, expected=0.001, observer=recorder, clock=clock)
    running = await queued(pool, jobs.job("running"))
    late = await queued(pool, jobs.job("late"))
    clock.now += 1.5
    in_time = await queued(pool, jobs.job("in time"))
    clock.now += 1.0  # "late" has waited 2.5 s, "in time" 1 s
    jobs.release.set()
    assert await running == "running"
    with pytest.raises(LoginCapacityExceeded):
        await late
    assert await in_time == "in time"
    assert jobs.started == ["running", "in time"]
    assert [reason for reason, _ in recorder.refusals] == ["deadline"]
    pool.close()


async def test_the_queue_is_reported_as_it_changes(jobs: Jobs) -> None:
    """The observer sees jobs waiting and running (the metrics' gauges), back to zero."""
    recorder = Recorder()
    pool = new_pool(threads=1, observer=recorder)
    tasks = [await queued(pool, jobs.job(f"job-{i}")) for i in range(3)]
    assert recorder.depths[-1] == (2, 1)
    jobs.release.set()
    await asyncio.gather(*tasks)
    await until(lambda: recorder.depths[-1] == (0, 0))
    pool.close()


async def test_the_average_follows_real_job_durations() -> None:
    """The estimate starts from the expected duration and moves toward measured ones."""
    pool = new_pool(threads=1, expected=10.0)
    for _ in range(5):
        await pool.run(lambda: "quick")
    assert pool.average_job_seconds < 10.0 * 0.8**5 + 0.01
    pool.close()


def kernel_nice(thread: int) -> int:
    """The nice value Linux schedules ``thread`` of this process with (/proc, field 19)."""
    stat = Path(f"/proc/self/task/{thread}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def lowered_pool(threads: int, niceness: int) -> HashingPool:
    return HashingPool(
        threads=threads,
        queue_timeout_seconds=60,
        queue_limit=10,
        expected_job_seconds=0.001,
        niceness=niceness,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
async def test_hashing_threads_run_at_the_configured_niceness_below_the_loop() -> None:
    """With niceness 5, the kernel schedules jobs five nice steps below the loop's thread."""
    here = kernel_nice(threading.get_native_id())
    plain, lowered = new_pool(threads=1), lowered_pool(threads=1, niceness=5)

    def nice_of_this_thread() -> int:
        return kernel_nice(threading.get_native_id())

    assert await plain.run(nice_of_this_thread) == here
    assert await lowered.run(nice_of_this_thread) == min(19, here + 5)
    # The loop's own thread is left as it was.
    assert kernel_nice(threading.get_native_id()) == here
    plain.close()
    lowered.close()


async def test_a_refused_priority_change_is_logged_once_and_jobs_still_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, jobs: Jobs
) -> None:
    """Where setpriority is not permitted: one warning for the pool, and hashing goes on."""

    def not_permitted(*_: object) -> None:
        raise PermissionError("not permitted")

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(os, "setpriority", not_permitted)
    pool = lowered_pool(threads=2, niceness=5)
    with caplog.at_level(logging.WARNING, logger="faultmaven_auth.identity"):
        first, second = await queued(pool, jobs.job("a")), await queued(pool, jobs.job("b"))
        await until(lambda: jobs.most_at_once == 2)  # both threads started
        jobs.release.set()
        assert await asyncio.gather(first, second) == ["a", "b"]
    warnings = [r for r in caplog.records if r.name == "faultmaven_auth.identity"]
    assert [r.__dict__["event_type"] for r in warnings] == ["hash_thread_priority_unavailable"]
    assert warnings[0].__dict__["reason"] == "PermissionError"
    pool.close()


async def test_niceness_zero_leaves_the_priority_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Niceness 0 (disabled) never calls setpriority, so it never warns either."""
    calls: list[object] = []
    monkeypatch.setattr(os, "setpriority", lambda *args: calls.append(args))
    pool = lowered_pool(threads=1, niceness=0)
    with caplog.at_level(logging.WARNING, logger="faultmaven_auth.identity"):
        assert await pool.run(lambda: "done") == "done"
    assert calls == []
    assert not [r for r in caplog.records if r.name == "faultmaven_auth.identity"]
    pool.close()


def test_refusals_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """Many refusals: one line at the first, then one per interval with the count since."""
    clock = FakeClock()
    log = hashing_refusal_log(interval_seconds=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="faultmaven_auth.identity"):
        for _ in range(50):
            log.refused("estimated_wait", 2.5)
        clock.now += 10.0
        log.refused("queue_full", 3.0)
        log.flush()  # nothing left to write
    lines = [r for r in caplog.records if r.name == "faultmaven_auth.identity"]
    assert [(r.levelname, r.__dict__["count"]) for r in lines] == [("WARNING", 1), ("WARNING", 50)]
    assert lines[1].__dict__["reasons"] == {"estimated_wait": 49, "queue_full": 1}
    assert lines[1].__dict__["event_type"] == "login_capacity_exceeded"


async def test_refusals_left_at_the_end_of_an_interval_are_written_then() -> None:
    """Refusals after the first line are written when the interval ends, not lost."""
    written: list[int] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            written.append(record.__dict__["count"])

    logger = logging.getLogger("faultmaven_auth.identity")
    handler = Lines()
    logger.addHandler(handler)
    try:
        log = hashing_refusal_log(interval_seconds=0.05)
        for _ in range(5):
            log.refused("estimated_wait", 1.0)
        assert written == [1]
        await until(lambda: written == [1, 4])
    finally:
        logger.removeHandler(handler)


def test_workers_of_one_host_share_the_cores_for_hashing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Default threads per worker: cores // workers, at least one; an explicit setting wins."""
    monkeypatch.setattr("faultmaven_auth.identity.passwords.available_cores", lambda: 4)
    base = Settings()
    assert hashing_threads(base.model_copy(update={"workers": None})) == 4
    assert hashing_threads(base.model_copy(update={"workers": 2})) == 2
    assert hashing_threads(base.model_copy(update={"workers": 8})) == 1

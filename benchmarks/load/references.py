"""The two references every ratio is taken against, measured in the same run.

- argon2id: how many verifications/s the configured parameters allow on this machine,
  one thread per core (argon2-cffi releases the GIL), so "login / argon2" says how
  close login gets to its unavoidable cryptography; measured next to each login storm,
  and in CPU time per verification, which a busy shared machine does not distort;
- hello-world: a bare FastAPI app under the same uvicorn settings and worker count, so
  "endpoint / hello" says how much a request does beyond the framework.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from argon2 import PasswordHasher

from benchmarks.common.service import ServiceProcess, checkout_env
from benchmarks.common.wrk import run_script
from benchmarks.load.budget import CpuMeter
from benchmarks.load.model import SINGLE_CONNECTIONS, Argon2Params, Argon2Rate, CpuBudget

# OWASP's and RFC 9106's argon2id recommendations, next to the configured parameters.
ARGON2_ALTERNATIVES = (
    Argon2Params(time_cost=1, memory_cost_kib=47_104, parallelism=1),
    Argon2Params(time_cost=3, memory_cost_kib=65_536, parallelism=1),
)


def configured_argon2() -> Argon2Params:
    """The parameters the service will use: read from its own Settings."""
    from faultmaven_auth.config import Settings

    settings = Settings()
    return Argon2Params(
        time_cost=settings.argon2_time_cost,
        memory_cost_kib=settings.argon2_memory_cost_kib,
        parallelism=settings.argon2_parallelism,
    )


def argon2_verify_rate(params: Argon2Params, threads: int, seconds: float) -> Argon2Rate:
    hasher = PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost_kib,
        parallelism=params.parallelism,
    )
    encoded = hasher.hash("Bench-Passphrase-2026")
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def verify(index: int) -> None:
        while time.perf_counter() < deadline:
            hasher.verify(encoded, "Bench-Passphrase-2026")
            counts[index] += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    workers = [threading.Thread(target=verify, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done = sum(counts)
    cpu_ms = 1000 * (time.process_time() - cpu_started) / done if done else 0.0
    return Argon2Rate(params, threads, done / (time.perf_counter() - started), cpu_ms)


def hello_world(workers: int, seconds: int, log: Path) -> tuple[float, CpuBudget | None]:
    """The hello-world app's 2xx/s and the CPU of every process per response."""
    server = ServiceProcess.hello(checkout_env({}), log, workers=workers)
    try:
        run_script("hello", server.base, seconds=1, connections=SINGLE_CONNECTIONS)  # warm-up
        server.wait_idle()
        meter = CpuMeter(server)
        before = meter.snapshot()
        result = run_script("hello", server.base, seconds=seconds, connections=SINGLE_CONNECTIONS)
        budget = CpuMeter.budget(before, meter.snapshot(), result.counted)
    finally:
        server.stop()
    return result.ok_rps, budget

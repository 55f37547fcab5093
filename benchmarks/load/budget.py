"""Where a run's CPU and store round trips go, across every process on the machine.

The server's CPU alone does not say whether a target can be met: on a small machine the
load generator, PostgreSQL and Redis share the cores with it. ``CpuMeter`` reads the CPU
time of each around a run:

- the server: its process tree (psutil), as ``ServiceProcess.cpu_seconds``;
- PostgreSQL: every process named ``postgres`` (the cluster serves nothing else during
  a bench), plus the postmaster's reaped children, so a backend that ends within the run
  still counts;
- Redis: every ``redis-server`` process;
- wrk: the harness's reaped children (``getrusage``): wrk is the only child that ends
  inside a measured run;
- the rest of the machine: all cores' busy time minus the above (the harness itself,
  other users of a shared machine).

``StoreCounter`` reads the operations the stores served: PostgreSQL's
``pg_stat_database`` counters for the run's database (transactions and rows written:
pg_stat_statements is not installed) and Redis's ``INFO commandstats`` (calls by
command; server-wide, so another client of the same Redis would count too).
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass

import psutil

from benchmarks.common.service import PG_ADMIN_DSN, ServiceProcess
from benchmarks.load.model import CpuBudget

# PostgreSQL 15+ backends publish their statistics at most once a second, and within
# about a second of going idle: the counters are read this long after the load stops.
PG_STATS_SETTLE_SECONDS = 1.2
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")


def _own_cpu(proc: psutil.Process, *, reaped: bool) -> float:
    times = proc.cpu_times()
    own = float(times.user + times.system)
    return own + (float(times.children_user + times.children_system) if reaped else 0.0)


def _named_cpu(name: str, *, reaped_by_parent: bool) -> float:
    """CPU seconds of the processes called ``name``; with their reaped children for the
    eldest (the postmaster reaps its backends)."""
    total = 0.0
    procs = [p for p in psutil.process_iter(["name", "ppid"]) if p.info["name"] == name]
    pids = {p.pid for p in procs}
    for proc in procs:
        try:
            total += _own_cpu(proc, reaped=reaped_by_parent and proc.info["ppid"] not in pids)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_busy() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass(frozen=True)
class CpuSnapshot:
    server: float
    postgres: float
    redis: float
    wrk: float
    machine: float


class CpuMeter:
    """CPU seconds of each part, read before and after a run: ``budget()`` per response."""

    def __init__(self, server: ServiceProcess) -> None:
        self.server = server

    def snapshot(self) -> CpuSnapshot:
        return CpuSnapshot(
            server=self.server.cpu_seconds(),
            postgres=_named_cpu("postgres", reaped_by_parent=True),
            redis=_named_cpu("redis-server", reaped_by_parent=False),
            wrk=_children_cpu(),
            machine=_machine_busy(),
        )

    @staticmethod
    def budget(before: CpuSnapshot, after: CpuSnapshot, responses: int) -> CpuBudget | None:
        if not responses:
            return None

        def ms(part: str) -> float:
            spent = float(getattr(after, part) - getattr(before, part))
            return max(0.0, 1000 * spent / responses)

        parts = {part: ms(part) for part in ("server", "postgres", "redis", "wrk")}
        rest = max(0.0, ms("machine") - sum(parts.values()))
        return CpuBudget(**parts, rest=rest)


async def _pg_counters(database: str) -> dict[str, float]:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        row = await conn.fetchrow(
            f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = $1",  # noqa: S608 - fixed column names
            database,
        )
    finally:
        await conn.close()
    return {f"pg {name}": float(row[name]) for name in PG_COUNTERS} if row else {}


def _redis_calls(redis_url: str) -> dict[str, float]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    calls = {}
    for key, value in stats.items():
        command = str(key).removeprefix("cmdstat_")
        if command in ("info", "client|setname", "client|setinfo", "hello"):
            continue  # this counter's own reads and connection set-up
        calls[f"redis {command.upper()}"] = float(value["calls"])
    return calls


class StoreCounter:
    """PostgreSQL and Redis operation counters; ``per_response`` divides two snapshots."""

    def __init__(self, database: str, redis_url: str) -> None:
        self.database, self.redis_url = database, redis_url

    def snapshot(self) -> dict[str, float]:
        time.sleep(PG_STATS_SETTLE_SECONDS)
        return asyncio.run(_pg_counters(self.database)) | _redis_calls(self.redis_url)

    @staticmethod
    def per_response(
        before: dict[str, float], after: dict[str, float], responses: int
    ) -> dict[str, float]:
        if not responses:
            return {}
        deltas = {name: after[name] - before.get(name, 0.0) for name in after}
        return {name: delta / responses for name, delta in deltas.items() if delta > 0}

"""Data scale: list pages at a million audit events and 100,000 users vs a small database.

For each backend two databases are loaded at schema 0003 (before the list indexes):
*small* (1,000 audit events and 100 users in one organization) and *large* (1,000,000
events and 100,000 users across 100 organizations; ``--quick``: a tenth). The first and
the deepest page of every list that grows with the data (audit log, audit log filtered
by type, users) is timed through the repository functions the endpoints call, in one
organization, before and after ``migrate`` to head (also timed); rounds alternate the
databases so drift on a shared machine hits both. The report compares large with small
(target: within 2x) and times ``/metrics`` with the organization-label cap reached.

    PYTHONPATH=src .venv/bin/python benchmarks/data_scale/run.py [--quick]
        [--backends sqlite,postgres] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Writes benchmarks/results/data_scale.md (data_scale_quick.md with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loaders import (
    EVENT_TYPES,
    Size,
    analyze_postgres,
    create_pg_database,
    drop_pg_database,
    load_postgres,
    load_sqlite,
    org_uuid,
)
from metrics_cost import STATUSES, MetricsCost, measure_metrics
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.audit.repository import AuditFilter, list_audit_events
from faultmaven_auth.identity.service import list_users
from faultmaven_auth.storage.db import Database, create_engine
from faultmaven_auth.storage.migrate import upgrade
from faultmaven_auth.storage.models import AuditEvent, User
from faultmaven_auth.storage.tenancy import OrgId

PAGE = 50  # the endpoints' default page size
BEFORE_INDEXES = "0003"
SMALL = Size("small", organizations=1, users=100, events=1_000)
LARGE = Size("large", organizations=100, users=100_000, events=1_000_000)
LARGE_QUICK = Size("large", organizations=100, users=10_000, events=100_000)
FILTER_TYPE = EVENT_TYPES[3]
RESULTS = Path(__file__).resolve().parent.parent / "results"


@dataclass
class Loaded:
    """One loaded database: where it is, the organization measured, its deep cursors."""

    size: Size
    url: str
    org: OrgId
    load_seconds: float
    migrate_seconds: float = 0.0
    cursors: dict[str, Any] = field(default_factory=dict)


ListCall = Callable[[AsyncSession, Loaded], Awaitable[Any]]


def _audit(flt: AuditFilter, cursor: str | None) -> ListCall:
    async def call(session: AsyncSession, db: Loaded) -> Any:
        before = db.cursors[cursor] if cursor else None
        return await list_audit_events(session, db.org, flt, before=before, limit=PAGE + 1)

    return call


def _users(cursor: str | None) -> ListCall:
    async def call(session: AsyncSession, db: Loaded) -> Any:
        after = db.cursors[cursor] if cursor else None
        return await list_users(session, db.org, after=after, limit=PAGE + 1)

    return call


LISTS: dict[str, ListCall] = {
    "audit events, first page": _audit(AuditFilter(), None),
    "audit events, deepest page": _audit(AuditFilter(), "audit"),
    "audit events by type, first page": _audit(AuditFilter(event_type=FILTER_TYPE), None),
    "audit events by type, deepest page": _audit(AuditFilter(event_type=FILTER_TYPE), "type"),
    "users, first page": _users(None),
    "users, deepest page": _users("users"),
}


async def _find_cursors(db: Database, loaded: Loaded) -> None:
    """Cursors whose next page is the organization's last one (the oldest events)."""
    org = AuditEvent.organization_id == loaded.org
    async with db.session() as s:
        oldest = select(AuditEvent.id).where(org).order_by(AuditEvent.id).offset(PAGE)
        loaded.cursors["audit"] = await s.scalar(oldest.limit(1))
        typed = oldest.where(AuditEvent.event_type == FILTER_TYPE)
        loaded.cursors["type"] = await s.scalar(typed.limit(1))
        newest = select(User.id).where(User.organization_id == loaded.org)
        newest = newest.order_by(User.id.desc()).offset(PAGE)
        loaded.cursors["users"] = await s.scalar(newest.limit(1))
    for name, cursor in loaded.cursors.items():
        assert cursor is not None, f"no {name} cursor: the organization is too small"


async def _time_pages(loaded: list[Loaded], rounds: int) -> dict[tuple[str, str], float]:
    """Median milliseconds per (size, list), rounds alternating the databases."""
    dbs = [Database(create_engine(item.url, pool_size=1)) for item in loaded]
    samples: dict[tuple[str, str], list[float]] = {}
    try:
        for db, item in zip(dbs, loaded, strict=True):
            if not item.cursors:
                await _find_cursors(db, item)
        for round_no in range(rounds + 1):  # round 0 warms caches and connections
            for db, item in zip(dbs, loaded, strict=True):
                for name, call in LISTS.items():
                    start = time.perf_counter()
                    async with db.session() as session:
                        rows = await call(session, item)
                    elapsed = (time.perf_counter() - start) * 1000
                    assert len(rows) >= PAGE, f"{name} returned {len(rows)} rows"
                    if round_no:
                        samples.setdefault((item.size.name, name), []).append(elapsed)
    finally:
        for db in dbs:
            await db.engine.dispose()
    return {key: statistics.median(values) for key, values in samples.items()}


async def _prepare(backend: str, size: Size, workdir: Path, admin_dsn: str) -> Loaded:
    org = OrgId(org_uuid(size.organizations // 2))
    start = time.perf_counter()
    if backend == "sqlite":
        path = workdir / f"{size.name}.db"
        url = f"sqlite+aiosqlite:///{path}"
        await asyncio.to_thread(upgrade, url, BEFORE_INDEXES)
        await asyncio.to_thread(load_sqlite, path, size)
    else:
        name = await create_pg_database(admin_dsn)
        dsn = f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        await asyncio.to_thread(upgrade, url, BEFORE_INDEXES)
        await load_postgres(dsn, size)
    return Loaded(size, url, org, time.perf_counter() - start)


async def _migrate(loaded: Loaded) -> None:
    start = time.perf_counter()
    await asyncio.to_thread(upgrade, loaded.url)
    loaded.migrate_seconds = time.perf_counter() - start
    if loaded.url.startswith("postgresql"):
        await analyze_postgres(loaded.url.replace("+asyncpg", "", 1))


@dataclass
class BackendResult:
    backend: str
    loaded: list[Loaded]
    before: dict[tuple[str, str], float]
    after: dict[tuple[str, str], float]


async def run_backend(
    backend: str, sizes: list[Size], admin_dsn: str, rounds: int
) -> BackendResult:
    workdir = Path(tempfile.mkdtemp(prefix="fm-data-scale-"))
    loaded: list[Loaded] = []
    try:
        for size in sizes:
            loaded.append(await _prepare(backend, size, workdir, admin_dsn))
            print(f"{backend}: loaded {size} in {loaded[-1].load_seconds:.1f} s", flush=True)
        before = await _time_pages(loaded, max(3, rounds // 5))
        print(f"{backend}: timed pages before migration 0004", flush=True)
        for item in loaded:
            await _migrate(item)
        after = await _time_pages(loaded, rounds)
        print(f"{backend}: timed pages after migrating", flush=True)
        return BackendResult(backend, loaded, before, after)
    finally:
        if backend == "postgres":
            for item in loaded:
                await drop_pg_database(admin_dsn, item.url.rsplit("/", 1)[1])


# -- the report --------------------------------------------------------------------------

BACKEND_NAMES = {"sqlite": "SQLite (embedded default)", "postgres": "PostgreSQL"}


def _machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{platform.machine()}, {os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def _backend_table(result: BackendResult) -> list[str]:
    small, large = result.loaded
    lines = [
        f"### {BACKEND_NAMES[result.backend]}",
        "",
        f"Loaded in {small.load_seconds:.1f} s (small) and {large.load_seconds:.1f} s (large); "
        f"`migrate` to head (building the indexes) took {small.migrate_seconds:.2f} s and "
        f"{large.migrate_seconds:.2f} s.",
        "",
        "| list, page | small, ms | large before 0004, ms | large, ms | large / small | within 2x |",
        "|---|---|---|---|---|---|",
    ]
    for name in LISTS:
        s, b = result.after["small", name], result.before["large", name]
        a = result.after["large", name]
        ratio = a / s
        lines.append(
            f"| {name} | {s:.2f} | {b:.2f} | {a:.2f} | {ratio:.2f} | {'yes' if ratio <= 2 else 'NO'} |"
        )
    return [*lines, ""]


def write_report(
    path: Path, command: str, sizes: list[Size], results: list[BackendResult],
    metrics: MetricsCost | None, rounds: int,
) -> None:  # fmt: skip
    small, large = sizes
    lines = [
        f"# Data scale: list pages and /metrics ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC run)",
        "",
        f"`{command}` on {_machine()}; a shared machine (other work running), so compare "
        "within a row. Generated by the script; do not edit by hand.",
        "",
        f"- small: {small.events:,} audit events and {small.users:,} users in "
        f"{small.organizations} organization",
        f"- large: {large.events:,} audit events and {large.users:,} users across "
        f"{large.organizations} organizations; the measured organization holds "
        f"{large.events // large.organizations:,} events and "
        f"{large.users // large.organizations:,} users",
        f"- each list asks for one page of {PAGE} (the endpoints' default) through the "
        "repository function its endpoint calls, in a session of its own; *deepest page* "
        "is the organization's last (oldest events, newest users) by keyset cursor",
        f"- medians of {rounds} rounds alternating small and large; *before 0004* is the "
        "large database at schema 0003 (no list indexes), a few rounds",
        "",
    ]
    for result in results:
        lines += _backend_table(result)
    if metrics is not None:
        lines += [
            "## /metrics with the organization-label cap reached",
            "",
            f"{metrics.organizations} organizations seen (cap {metrics.label_cap}: "
            f"the rest fold into `other`), every route with {len(STATUSES)} statuses: "
            f"{metrics.series:,} series, {metrics.text_bytes / 1024:.0f} KiB of text. "
            "Single process. `GET /metrics` is called through the ASGI app as a server "
            "calls it (no HTTP client in the process) and includes the database and store "
            "checks and the computed gauges' refresh on every scrape "
            "(`METRICS_CACHE_SECONDS=0`). *CPU ms* is the process's CPU time (all threads), "
            "steadier than the wall time on a busy machine; medians of 50.",
            "",
            "| what | wall ms | CPU ms | under 10 ms |",
            "|---|---|---|---|",
        ]
        for what, cost in metrics.costs.items():
            ok = "yes" if cost.wall_ms < 10 else ("CPU only" if cost.cpu_ms < 10 else "NO")
            lines.append(f"| {what} | {cost.wall_ms:.2f} | {cost.cpu_ms:.2f} | {ok} |")
        lines += [
            "",
            "### Where the rendering's time goes",
            "",
            "cProfile of `ExpositionRenderer.text` on the same registry (a scrape runs it in "
            "a worker thread; the rest of `GET /metrics` is the difference between the rows "
            "above): the functions with the most time of their own, as a share of the "
            "profiled time (cProfile's own overhead inflates calls that are many and small).",
            "",
            "| own | inclusive | function |",
            "|---:|---:|---|",
            *(
                f"| {own:.1%} | {inclusive:.1%} | `{frame}` |"
                for frame, own, inclusive in metrics.profile
            ),
            "",
        ]
    path.write_text("\n".join(lines))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the large size")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    sizes = [SMALL, LARGE_QUICK if args.quick else LARGE]
    results = [
        await run_backend(backend, sizes, args.postgres, args.rounds)
        for backend in args.backends.split(",")
        if backend
    ]
    workdir = Path(tempfile.mkdtemp(prefix="fm-data-scale-metrics-"))
    metrics_db = f"sqlite+aiosqlite:///{workdir / 'metrics.db'}"
    await asyncio.to_thread(upgrade, metrics_db)
    metrics = await measure_metrics(metrics_db, reps=50)
    command = "PYTHONPATH=src .venv/bin/python benchmarks/data_scale/run.py " + " ".join(
        sys.argv[1:]
    )
    report = RESULTS / ("data_scale_quick.md" if args.quick else "data_scale.md")
    write_report(report, command.strip(), sizes, results, metrics, args.rounds)
    print(report.read_text())


if __name__ == "__main__":
    asyncio.run(main())

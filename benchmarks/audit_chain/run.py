"""Cost of the audit hash chain: audited write transactions per second, chain on and off.

Each transaction records one audit event through ``record_audit_event`` (what every
audited API call does) and commits. Measured on a fresh SQLite file and a fresh
PostgreSQL database, one writer at a time and 20 at once in one organization (the
worst case for the chain: every append waits for the same head row). Rounds alternate
chain on / chain off so drift on a shared machine hits both alike.

    PYTHONPATH=src .venv/bin/python benchmarks/audit_chain/run.py [--transactions 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.storage.audit_chain import install_audit_chain, uninstall_audit_chain
from faultmaven_auth.storage.db import Database, create_engine
from faultmaven_auth.storage.migrate import upgrade_async

PG_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
META = RequestMeta("203.0.113.7", "bench/1.0", "bench")
ROUNDS = 3


async def audited_writes(db: Database, org_id: uuid.UUID, count: int) -> None:
    for _ in range(count):
        async with db.transaction() as session:
            record_audit_event(
                session,
                AuditEventType.USER_UPDATED,
                meta=META,
                organization_id=org_id,
                actor_id=org_id,
                target_type="user",
                target_id=org_id,
                details={"changed": ["full_name"]},
            )


async def rate(db: Database, writers: int, transactions: int) -> float:
    org_id = uuid.uuid4()
    per_writer = transactions // writers
    start = time.perf_counter()
    await asyncio.gather(*(audited_writes(db, org_id, per_writer) for _ in range(writers)))
    return per_writer * writers / (time.perf_counter() - start)


async def measure(url: str, transactions: int) -> dict[tuple[int, bool], float]:
    await upgrade_async(url)
    db = Database(create_engine(url, pool_size=20))
    results: dict[tuple[int, bool], list[float]] = {}
    try:
        await rate(db, 1, 50)  # warm-up: connections, statement caches
        for _ in range(ROUNDS):
            for writers in (1, 20):
                for chained in (True, False):
                    (install_audit_chain if chained else uninstall_audit_chain)()
                    value = await rate(db, writers, transactions)
                    results.setdefault((writers, chained), []).append(value)
    finally:
        install_audit_chain()
        await db.dispose()
    return {key: statistics.median(values) for key, values in results.items()}


async def postgres_url() -> tuple[str, str]:
    import asyncpg

    name = f"fm_auth_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


async def drop_postgres(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=400)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        rows.append(("SQLite", await measure(url, args.transactions)))
    name, url = await postgres_url()
    try:
        rows.append(("PostgreSQL", await measure(url, args.transactions)))
    finally:
        await drop_postgres(name)

    print(f"audited write transactions/s, median of {ROUNDS} alternating rounds")
    print("| backend | writers | chain off | chain on | cost |")
    print("|---|---|---|---|---|")
    for backend, result in rows:
        for writers in (1, 20):
            off, on = result[(writers, False)], result[(writers, True)]
            print(f"| {backend} | {writers} | {off:.0f} | {on:.0f} | {1 - on / off:+.1%} |")


if __name__ == "__main__":
    asyncio.run(main())

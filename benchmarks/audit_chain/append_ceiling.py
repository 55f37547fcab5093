"""How many events one audit chain takes per second on PostgreSQL alone.

Every refresh and login of an organization appends to that organization's chain, and
appends to one chain take turns on its head row. This measures the turn without the
service: ``pgbench`` calls ``audit_chain_append`` (migration 0007) in autocommit, as a
refresh's single statement does, from 1 and from 8 connections on one chain, with the
document fragments the service would send for a refresh. The chain is then verified
with the service's own verifier, so the rate counts only events that link correctly.

    PYTHONPATH=src .venv/bin/python -m benchmarks.audit_chain.append_ceiling [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from benchmarks.audit_chain.run import PG_ADMIN_DSN, drop_postgres, postgres_url
from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import RequestMeta, new_audit_event
from faultmaven_auth.audit.verification import verify_chain
from faultmaven_auth.storage.audit_chain import canonical_fragments
from faultmaven_auth.storage.db import Database, create_engine
from faultmaven_auth.storage.migrate import upgrade_async

META = RequestMeta("203.0.113.7", "bench/1.0", "bench")


def pgbench() -> str:
    found = shutil.which("pgbench") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))), None
    )
    if found is None:
        raise SystemExit("pgbench not found (Debian: postgresql-client or the server package)")
    return found


# The arguments live in a one-row table, so the script pgbench runs is fixed SQL.
APPEND_SCRIPT = """\
SELECT a.* FROM bench_append b, LATERAL audit_chain_append(b.chain_key, b.fragments,
  b.organization_id, b.actor_id, b.event_type, b.target_type, b.target_id, b.outcome,
  b.ip_address, b.user_agent, b.request_id, b.details) a;
"""


async def store_arguments(database: str, org_id: uuid.UUID) -> None:
    """The arguments a refresh of one organization's user would pass."""
    import asyncpg

    event = new_audit_event(AuditEventType.TOKEN_REFRESHED, META, target_type="session")
    conn = await asyncpg.connect(f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{database}")
    try:
        await conn.execute(
            "CREATE TABLE bench_append (chain_key varchar, fragments text[],"
            " organization_id uuid, actor_id uuid, event_type varchar, target_type varchar,"
            " target_id varchar, outcome varchar, ip_address varchar, user_agent varchar,"
            " request_id varchar, details json)"
        )
        await conn.execute(
            "INSERT INTO bench_append VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            str(org_id),
            canonical_fragments(event),
            org_id,
            uuid.uuid4(),
            event.event_type,
            event.target_type,
            str(uuid.uuid4()),
            event.outcome,
            event.ip_address,
            event.user_agent,
            event.request_id,
            "{}",
        )
    finally:
        await conn.close()


def run_pgbench(database: str, script: Path, clients: int, seconds: int) -> float:
    host_dsn = PG_ADMIN_DSN.rsplit("/", 1)[0]
    out = subprocess.run(
        [
            *(pgbench(), "-n", "-f", str(script), "-c", str(clients)),
            *("-j", str(min(clients, 2)), "-T", str(seconds), f"{host_dsn}/{database}"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    if match is None:
        raise SystemExit(f"pgbench printed no rate:\n{out}")
    return float(match.group(1))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    name, url = await postgres_url()
    try:
        await upgrade_async(url)
        org_id = uuid.uuid4()
        await store_arguments(name, org_id)
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "append.sql"
            script.write_text(APPEND_SCRIPT)
            rates = {c: run_pgbench(name, script, c, args.seconds) for c in (1, 8)}
        db = Database(create_engine(url, pool_size=1))
        try:
            report = await verify_chain(db, str(org_id))
        finally:
            await db.dispose()
    finally:
        await drop_postgres(name)
    if report.broken is not None:
        raise SystemExit(f"the chain does not verify: {report.broken}")
    print(f"one chain, audit_chain_append in autocommit, {args.seconds} s per run (pgbench):")
    for clients, rate in rates.items():
        print(f"  {clients} connection(s): {rate:,.0f} appends/s")
    print(f"  chain verified: {report.events_checked:,} events, head {report.head_sequence:,}")


if __name__ == "__main__":
    asyncio.run(main())

"""Quick check of the password-hashing pool: raw argon2id rate, login rate, /health in a storm.

1. Raw verify rate: ``threads`` threads verifying one argon2id hash at the configured
   parameters (default: the production ones) for ``--seconds``; no server running.
2. A real server (``faultmaven-auth serve``, one worker, embedded SQLite, limits off)
   on 127.0.0.1: 200 sequential ``GET /health`` idle, then the same while ``--logins``
   clients log in back to back; the login rate over that storm is reported too.

The load generator runs on the same cores as the server (like the issue's outside
measurement); it is light next to argon2. Not the official harness: a quick A/B.

    PYTHONPATH=src .venv/bin/python benchmarks/hash_pool/run.py [--logins 32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from argon2 import PasswordHasher

PASSWORD = "Correct-Horse-Battery-42"


def raw_verify_rate(
    threads: int, seconds: float, time_cost: int, memory_kib: int
) -> tuple[float, float]:
    """Verifications per second, and CPU seconds per verification."""
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
    stored = hasher.hash(PASSWORD)
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def work(index: int) -> None:
        while time.perf_counter() < deadline:
            hasher.verify(stored, PASSWORD)
            counts[index] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started, cpu = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done = sum(counts)
    return done / (time.perf_counter() - started), (time.process_time() - cpu) / done


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def health_latencies(client: httpx.AsyncClient, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get("/health")
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return latencies


async def measure(
    base_url: str, logins: int, health: int, seconds: float, server_pid: int
) -> dict[str, float]:
    limits = httpx.Limits(max_connections=logins + 2)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        # One account per client: concurrent attempts on one account would hit its
        # lockout reservation (LOGIN_MAX_FAILURES attempts in flight) and get 429.
        emails = [f"bench-{os.getpid()}-{i}@example.com" for i in range(logins)]
        for email in emails:
            response = await client.post(
                "/api/v1/auth/register",
                json={
                    "organization_name": "Bench",
                    "email": email,
                    "password": PASSWORD,
                    "full_name": "Bench Person",
                },
            )
            assert response.status_code == 201, response.text
        await health_latencies(client, 50)  # warm up
        idle_cpu = process_cpu(server_pid)
        idle = await health_latencies(client, health)
        cpu_per_probe = (process_cpu(server_pid) - idle_cpu) / health
        stop = asyncio.Event()
        statuses: dict[int, int] = {}

        async def login_forever(email: str) -> None:
            while not stop.is_set():
                answer = await client.post(
                    "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
                )
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        storm = [asyncio.create_task(login_forever(email)) for email in emails]
        await asyncio.sleep(2)  # let the storm reach its steady state
        before = statuses.get(200, 0)
        started, cpu = time.perf_counter(), process_cpu(server_pid)
        busy: list[float] = []
        while len(busy) < health or time.perf_counter() - started < seconds:
            busy += await health_latencies(client, 10)
        elapsed = time.perf_counter() - started
        done = statuses.get(200, 0) - before
        # The /health probes' own CPU (measured idle) is not the logins'.
        cpu_per_login = (process_cpu(server_pid) - cpu - cpu_per_probe * len(busy)) / done
        rate = done / elapsed
        stop.set()
        await asyncio.gather(*storm)
    print(f"login statuses during the storm: {statuses}")
    return {
        "idle_p50": statistics.median(idle),
        "idle_p99": percentile(idle, 0.99),
        "storm_p50": statistics.median(busy),
        "storm_p99": percentile(busy, 0.99),
        "login_rate": rate,
        "cpu_per_login": cpu_per_login,
    }


def serve(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "REDIS_"))},
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'auth.db'}",
        "ENVIRONMENT": "development",
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "LOG_REQUEST_START": "false",
    }
    cli = [sys.executable, "-m", "faultmaven_auth"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(
        [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=32)
    parser.add_argument("--health", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--port", type=int, default=18731)
    args = parser.parse_args()
    time_cost = int(os.environ.get("ARGON2_TIME_COST", "2"))
    memory_kib = int(os.environ.get("ARGON2_MEMORY_COST_KIB", "19456"))
    first_rate, first_cpu = raw_verify_rate(args.threads, args.seconds, time_cost, memory_kib)
    with tempfile.TemporaryDirectory() as tmp:
        server = serve(Path(tmp), args.port)
        try:
            result = asyncio.run(
                measure(
                    f"http://127.0.0.1:{args.port}",
                    args.logins,
                    args.health,
                    args.seconds,
                    server.pid,
                )
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    # Measured on both sides of the storm: the machine may be shared.
    last_rate, last_cpu = raw_verify_rate(args.threads, args.seconds, time_cost, memory_kib)
    raw, raw_cpu = (first_rate + last_rate) / 2, (first_cpu + last_cpu) / 2
    print(
        f"raw argon2id verify (t={time_cost}, m={memory_kib}, {args.threads} threads): "
        f"{raw:.1f}/s, {raw_cpu * 1000:.1f} ms CPU each"
    )
    print(
        f"/health idle p50 {result['idle_p50']:.2f} ms p99 {result['idle_p99']:.2f} ms; "
        f"during {args.logins} concurrent logins p50 {result['storm_p50']:.2f} ms "
        f"p99 {result['storm_p99']:.2f} ms "
        f"(p50 x{result['storm_p50'] / result['idle_p50']:.1f}, "
        f"p99 x{result['storm_p99'] / result['idle_p99']:.1f})"
    )
    print(f"logins {result['login_rate']:.1f}/s = {result['login_rate'] / raw:.0%} of raw verify")
    # Less sensitive to neighbours than rates: the share of a login's server CPU that
    # is the hash, i.e. the most of the raw rate logins can reach on saturated cores.
    per_login = result["cpu_per_login"]
    print(
        f"server CPU per login {per_login * 1000:.1f} ms (/health probes taken out): "
        f"ceiling {raw_cpu / per_login:.0%} of raw verify"
    )


if __name__ == "__main__":
    main()

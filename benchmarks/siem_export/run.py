"""Request latency with the Logstash export off, up, down (port closed) and stalled.

.venv/bin/python benchmarks/siem_export/run.py [--requests 400] [--rounds 3]

Every request is a cross-tenant read (404) that emits one security event, so each one
goes through the SIEM handler. The app runs in-process on the embedded backend (a
temporary SQLite file) with the JSON log going to /dev/null; scenarios are interleaved
round by round so machine noise hits them alike. "stalled" is a listener that accepts
connections and never reads, so the sender's writes eventually block until they time out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from faultmaven_auth.app import create_app
from faultmaven_auth.config import Settings
from faultmaven_auth.observability.logging import configure_logging
from faultmaven_auth.storage.migrate import upgrade_async

PASSWORD = "Bench-Passphrase-2024"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def listener(*, read: bool) -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that drains (read=True) or never reads what it gets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            if read:
                threading.Thread(target=drain, args=(conn,), daemon=True).start()

    def drain(conn: socket.socket) -> None:
        conn.settimeout(0.1)
        while not stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in conns:
            conn.close()
        server.close()


async def sign_up(http: httpx.AsyncClient, name: str) -> tuple[str, str]:
    email = f"{name.lower()}-{time.monotonic_ns()}@example.com"
    body = {"organization_name": name, "email": email, "password": PASSWORD, "full_name": name}
    org = (await http.post("/api/v1/auth/register", json=body)).json()["organization"]["id"]
    login = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    return org, login.json()["access_token"]


async def measure(settings: Settings, requests: int) -> list[float]:
    app = create_app(settings, configure_logs=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            _, token = await sign_up(http, "Mallory")
            victim, _ = await sign_up(http, "Victim")
            url = f"/api/v1/organizations/{victim}/users"
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(20):  # warm-up
                await http.get(url, headers=headers)
            timings = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await http.get(url, headers=headers)
                timings.append(time.perf_counter() - started)
                assert response.status_code == 404
        shutdown = time.perf_counter()
    timings.append(-(time.perf_counter() - shutdown))  # marker: shutdown time, negative
    return timings


def summary(name: str, timings: list[float], shutdowns: list[float]) -> str:
    ms = sorted(t * 1000 for t in timings)
    q = statistics.quantiles(ms, n=100)
    return (
        f"| {name} | {statistics.mean(ms):.2f} | {q[49]:.2f} | {q[94]:.2f} | {q[98]:.2f} "
        f"| {ms[-1]:.1f} | {max(shutdowns):.2f} |"
    )


def log_to_dev_null() -> None:
    """The production JSON log set-up, written to /dev/null."""
    configure_logging(level="INFO", service="bench", environment="bench")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open("/dev/null", "w"))  # noqa: SIM115 - lives as long as the process


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    log_to_dev_null()
    tmp = Path(tempfile.mkdtemp())
    base = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        argon2_time_cost=1,
        argon2_memory_cost_kib=1024,
        jwt_issuer="http://bench",
    )
    await upgrade_async(base.database_url)
    results: dict[str, list[float]] = {}
    shutdowns: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with listener(read=True) as up, listener(read=False) as stalled:
            scenarios = {
                "export off": {},
                "Logstash up": {"logstash_host": "127.0.0.1", "logstash_port": up},
                "Logstash down (port closed)": {
                    "logstash_host": "127.0.0.1",
                    "logstash_port": free_port(),
                },
                "Logstash stalled (never reads)": {
                    "logstash_host": "127.0.0.1",
                    "logstash_port": stalled,
                },
            }
            for name, overrides in scenarios.items():
                timings = await measure(base.model_copy(update=overrides), args.requests)
                shutdowns.setdefault(name, []).append(-timings.pop())
                results.setdefault(name, []).extend(timings)
    print(f"{args.rounds} rounds x {args.requests} cross-tenant requests, one event each\n")
    print("| scenario | mean ms | p50 ms | p95 ms | p99 ms | max ms | shutdown s (max) |")
    print("|---|---|---|---|---|---|---|")
    for name, timings in results.items():
        print(summary(name, timings, shutdowns[name]))


if __name__ == "__main__":
    asyncio.run(main())

"""The service (and the hello-world reference) started the way an operator starts it.

``python -m faultmaven_auth serve`` from this checkout (PYTHONPATH points at its src/,
whatever the virtualenv has installed), on 127.0.0.1 and a free port, with the
environment as the only configuration. The process tree is watched with psutil: the
CPU time of the server and its uvicorn workers is what "server CPU per request" divides,
and each worker's RSS is its memory.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def checkout_env(overrides: dict[str, str]) -> dict[str, str]:
    """The caller's environment without telemetry exporters, importing this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JAEGER_"))}
    for name in ("REDIS_URL", "DATABASE_URL", "WORKERS", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    paths = [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return {**env, **overrides}


class ServiceProcess:
    """A server process tree on 127.0.0.1; ``stop()`` ends it (and its workers)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self._log = log.open("ab")
        self.process = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._tree = psutil.Process(self.process.pid)

    @classmethod
    def auth(cls, env: dict[str, str], log: Path, *, workers: int = 1) -> ServiceProcess:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "faultmaven_auth",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
        server = cls(argv, env, log, port)
        server.wait_ready("/health")
        return server

    @classmethod
    def hello(cls, env: dict[str, str], log: Path, *, workers: int = 1) -> ServiceProcess:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "benchmarks.common.hello_app",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
        server = cls(argv, env, log, port)
        server.wait_ready("/")
        return server

    def wait_ready(self, path: str, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}: see {self._log.name}"
                )
            try:
                if httpx.get(f"{self.base}{path}", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer {path}: see {self._log.name}")

    def _all(self) -> list[psutil.Process]:
        try:
            return [self._tree, *self._tree.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        """The processes serving requests: uvicorn's workers, or the server itself."""
        children = []
        for child in self._all()[1:]:
            try:
                if "resource_tracker" not in " ".join(child.cmdline()):
                    children.append(child)
            except psutil.NoSuchProcess:
                continue
        return children or [self._tree]

    def cpu_seconds(self) -> float:
        """User + system CPU of the whole tree so far (threads included)."""
        total = 0.0
        for proc in self._all():
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system + times.children_user + times.children_system
        return total

    def wait_idle(self, *, busy_share: float = 0.1, timeout: float = 20.0) -> None:
        """Wait until the server stops working off an earlier run's backlog.

        wrk closes its connections at the end of a run, but requests already queued (logins
        waiting for a hashing thread above all) still run and would be counted against the
        next workload's CPU. Idle: under ``busy_share`` of a core for two samples in a row.
        """
        deadline, quiet, interval = time.monotonic() + timeout, 0, 0.25
        before = self.cpu_seconds()
        while quiet < 2 and time.monotonic() < deadline:
            time.sleep(interval)
            now = self.cpu_seconds()
            quiet = quiet + 1 if now - before < busy_share * interval else 0
            before = now

    def worker_rss_mib(self) -> list[float]:
        sizes = []
        for proc in self.workers():
            try:
                sizes.append(proc.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:
                continue
        return sizes

    def connections_to(self, port: int) -> list[int]:
        """Per worker, its open TCP connections to ``port`` on any host."""
        counts = []
        for proc in self.workers():
            try:
                conns = proc.net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            counts.append(sum(1 for c in conns if c.raddr and c.raddr.port == port))
        return counts

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "faultmaven_auth", "migrate"],
        env=env,
        check=True,
        capture_output=True,
    )


async def _pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_postgres_database(prefix: str = "fm_bench") -> tuple[str, str]:
    """A fresh database: its name and its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def drop_postgres_database(name: str) -> None:
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def delete_redis_prefix(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()

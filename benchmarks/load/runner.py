"""Runs the workloads against one configuration of the service, through HTTP only.

A backend (the embedded default, or a fresh PostgreSQL database with its own Redis key
prefix) is prepared once: an organization, a pool of users able to log in, and a service
client for introspection (made with the CLI, as an operator would). Each round then
starts ``faultmaven-auth serve`` for the configuration, runs every workload with the
server's CPU time read around it, and stops it.

Refresh tokens are single-use: the harness keeps a pool of fresh ones (from logins),
gives each run its own share, and takes back only those the run never sent.
"""

from __future__ import annotations

import base64
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from benchmarks.common.profile import profile_while
from benchmarks.common.service import (
    ServiceProcess,
    checkout_env,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    migrate,
)
from benchmarks.common.wrk import WrkResult, run_script
from benchmarks.load.model import (
    MIXED_CONNECTIONS,
    SINGLE_CONNECTIONS,
    HealthProbe,
    Measurements,
    Sample,
    ServiceConfig,
    mixed,
)
from benchmarks.load.references import argon2_verify_rate

PASSWORD = "Bench-Passphrase-2026"
LOGIN_USERS = 24
ACCESS_TOKENS = 8
# Limits far above any rate here: the checks still run (their cost is measured), they
# just never refuse the load generator's single address.
UNLIMITED = "1000000/second"
MIN_OVERLOAD_SECONDS = 10


@dataclass
class Options:
    seconds: int
    mixed_connections: tuple[int, ...] = MIXED_CONNECTIONS
    redis_url: str = "redis://127.0.0.1:6379/0"
    db_pool_size: int = 5


@dataclass
class Backend:
    kind: str
    env: dict[str, str]
    work: Path
    users_file: Path
    client_file: Path
    database: str = ""
    redis_prefix: str = ""
    refresh_pool: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


def backend_env(kind: str, work: Path, options: Options) -> tuple[dict[str, str], str, str]:
    overrides = {
        "ENVIRONMENT": "development",
        "DEFAULT_MAX_USERS": "1000",
        "RATE_LIMIT_LOGIN": UNLIMITED,
        "RATE_LIMIT_REFRESH": UNLIMITED,
        "RATE_LIMIT_INTROSPECT": UNLIMITED,
        "RATE_LIMIT_REGISTER": UNLIMITED,
    }
    if kind == "embedded":
        overrides["DATABASE_URL"] = f"sqlite+aiosqlite:///{work / 'embedded.db'}"
        return checkout_env(overrides), "", ""
    database, url = create_postgres_database()
    prefix = f"fmbench:{uuid.uuid4().hex[:8]}:"
    overrides |= {
        "DATABASE_URL": url,
        "REDIS_URL": options.redis_url,
        "KV_KEY_PREFIX": prefix,
        "DATABASE_POOL_SIZE": str(options.db_pool_size),
    }
    return checkout_env(overrides), database, prefix


def prepare_backend(kind: str, work: Path, options: Options) -> Backend:
    env, database, prefix = backend_env(kind, work, options)
    backend = Backend(
        kind, env, work, work / f"{kind}-users.txt", work / f"{kind}-client.txt", database, prefix
    )
    try:
        migrate(env)
        server = ServiceProcess.auth(env, work / f"{kind}-setup.log")
        try:
            backend.users = _create_users(server.base)
        finally:
            server.stop()
        backend.users_file.write_text("\n".join(backend.users) + "\n")
        backend.client_file.write_text(_service_client_header(env) + "\n")
    except BaseException:
        close_backend(backend)
        raise
    return backend


def close_backend(backend: Backend) -> None:
    if backend.database:
        drop_postgres_database(backend.database)
    if backend.redis_prefix:
        delete_redis_prefix(backend.env["REDIS_URL"], backend.redis_prefix)


def _create_users(base: str) -> list[str]:
    owner = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=base, timeout=60) as client:
        client.post(
            "/api/v1/auth/register",
            json={
                "organization_name": "Bench",
                "email": owner,
                "password": PASSWORD,
                "full_name": "Bench Owner",
            },
        ).raise_for_status()
        login = client.post("/api/v1/auth/login", json={"email": owner, "password": PASSWORD})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        org_id = client.get("/api/v1/auth/me", headers=headers).json()["organization_id"]
        roles = client.get(f"/api/v1/organizations/{org_id}/roles", headers=headers).json()
        member = [r["id"] for r in roles if r["name"] == "member"]
        users = []
        for n in range(LOGIN_USERS):
            email = f"user{n}-{uuid.uuid4().hex[:6]}@example.com"
            client.post(
                f"/api/v1/organizations/{org_id}/users",
                headers=headers,
                json={
                    "email": email,
                    "password": PASSWORD,
                    "full_name": f"Bench User {n}",
                    "role_ids": member,
                },
            ).raise_for_status()
            users.append(email)
    return users


def _service_client_header(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "faultmaven_auth", "service-clients", "create", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    created = json.loads(out.strip().splitlines()[-1])
    pair = f"{created['client_id']}:{created['client_secret']}".encode()
    return f"Basic {base64.b64encode(pair).decode()}"


def issue_sessions(base: str, users: list[str], count: int) -> list[tuple[str, str]]:
    """``count`` fresh logins: (access token, refresh token) each."""

    def one(n: int) -> tuple[str, str]:
        response = httpx.post(
            f"{base}/api/v1/auth/login",
            timeout=60,
            json={"email": users[n % len(users)], "password": PASSWORD},
        )
        response.raise_for_status()
        body = response.json()
        return body["access_token"], body["refresh_token"]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


class HealthProber:
    """GET /health every 20 ms on one keep-alive connection; latencies in ms."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                conn.request("GET", "/health")
                conn.getresponse().read()
                self.samples.append((time.perf_counter() - start) * 1000)
                self._stop.wait(0.02)
        finally:
            conn.close()

    @contextmanager
    def running(self) -> Iterator[HealthProber]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=35)

    def percentile(self, q: float) -> float:
        if len(self.samples) < 2:
            return self.samples[0] if self.samples else 0.0
        return statistics.quantiles(self.samples, n=100, method="inclusive")[int(q) - 1]


class ConnectionSampler:
    """Peak TCP connections per worker to PostgreSQL and to Redis while a run lasts."""

    def __init__(self, server: ServiceProcess, redis_port: int) -> None:
        self.server, self.redis_port = server, redis_port
        self.db_peak = self.redis_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.db_peak = max([self.db_peak, *self.server.connections_to(5432)])
            self.redis_peak = max([self.redis_peak, *self.server.connections_to(self.redis_port)])

    @contextmanager
    def running(self) -> Iterator[ConnectionSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)


def measured(server: ServiceProcess, run: Callable[[], WrkResult]) -> Sample:
    before = server.cpu_seconds()
    result = run()
    spent = server.cpu_seconds() - before
    return Sample(result, 1000 * spent / result.counted if result.counted else None)


class ConfigRound:
    """Every workload once against a fresh server of one configuration."""

    def __init__(
        self, config: ServiceConfig, backend: Backend, options: Options, m: Measurements, tag: str
    ) -> None:
        self.config, self.backend, self.options, self.m, self.tag = config, backend, options, m, tag
        self.work = Path(tempfile.mkdtemp(prefix=f"{config.key}-", dir=backend.work))
        self.access_file = self.work / "access.txt"
        self.profiling = False

    def _start(self) -> ServiceProcess:
        server = ServiceProcess.auth(
            self.backend.env, self.work / "server.log", workers=self.config.workers
        )
        sessions = issue_sessions(server.base, self.backend.users, ACCESS_TOKENS)
        self.access_file.write_text("\n".join(a for a, _ in sessions) + "\n")
        self.backend.refresh_pool += [r for _, r in sessions]
        # Warm-up: every worker's first requests (connections, the hashing threads).
        self._wrk(server, "me", SINGLE_CONNECTIONS, seconds=1)
        warm = self.work / "warm-up-out.txt"
        self._wrk(server, "login", SINGLE_CONNECTIONS, seconds=1, out=warm)
        self.backend.refresh_pool += warm.read_text().split()
        return server

    def profile(self, workloads: tuple[str, ...]) -> None:
        """py-spy profiles of the event loop under single-endpoint workloads (no numbers)."""
        self.profiling = True
        server = self._start()
        try:
            for workload in workloads:
                if workload == "refresh":
                    self._with_tokens(server, "refresh", SINGLE_CONNECTIONS, 48)
                else:
                    self._sample(server, workload, self._single(server, workload))
        finally:
            server.stop()

    def _single(self, server: ServiceProcess, workload: str) -> Callable[[], WrkResult]:
        return lambda: self._wrk(server, workload, SINGLE_CONNECTIONS)

    def _sample(
        self, server: ServiceProcess, workload: str, run: Callable[[], WrkResult]
    ) -> Sample:
        server.wait_idle()
        if not self.profiling:
            return measured(server, run)
        results: list[WrkResult] = []
        self.m.profiles[f"{self.config.label}: {workload}"] = profile_while(
            server.process.pid, self.options.seconds, lambda: results.append(run())
        )
        return Sample(results[0], None)

    def run(self) -> None:
        server = self._start()
        try:
            self._login_storm(server)
            self._record("refresh", self._with_tokens(server, "refresh", SINGLE_CONNECTIONS, 48))
            for workload in ("me", "introspect"):
                self._record(
                    workload, self._sample(server, workload, self._single(server, workload))
                )
            for connections in self.options.mixed_connections:
                self._mixed(server, connections)
            self.m.rss_mib[self.config.key] = max(
                [self.m.rss_mib.get(self.config.key, 0.0), *server.worker_rss_mib()]
            )
        finally:
            server.stop()

    def _data(self, out: Path | None = None, refresh: Path | None = None) -> dict[str, str]:
        return {
            "BENCH_USERS": str(self.backend.users_file),
            "BENCH_PASSWORD": PASSWORD,
            "BENCH_ACCESS": str(self.access_file),
            "BENCH_CLIENT": str(self.backend.client_file),
            "BENCH_OUT": str(out or ""),
            "BENCH_REFRESH": str(refresh or ""),
        }

    def _wrk(
        self,
        server: ServiceProcess,
        workload: str,
        connections: int,
        *,
        seconds: int | None = None,
        out: Path | None = None,
        refresh: Path | None = None,
    ) -> WrkResult:
        return run_script(
            workload,
            server.base,
            seconds=seconds or self.options.seconds,
            connections=connections,
            data=self._data(out, refresh),
        )

    def _record(self, workload: str, sample: Sample) -> None:
        self.m.add(self.config.key, workload, sample)
        r = sample.result
        print(
            f"{self.tag} {self.config.key:8} {workload:12} {r.ok_rps:8.1f} 2xx/s "
            f"p50 {r.p50_ms:7.1f} ms p99 {r.p99_ms:7.1f} ms cpu "
            f"{sample.cpu_ms or 0:6.2f} ms/req status {r.status} {r.codes or ''} {r.extra or ''}",
            flush=True,
        )

    def _login_storm(self, server: ServiceProcess) -> None:
        server.wait_idle()
        # The reference right before the storm, the server idle: drift hits both alike.
        rate = argon2_verify_rate(self.m.argon2_params, self.m.cores, self.options.seconds)
        self.m.argon2_rates.setdefault(self.config.key, []).append(rate)
        print(
            f"{self.tag} {self.config.key:8} argon2 reference {rate.verify_per_s:6.1f} verify/s "
            f"({rate.cpu_ms:.1f} ms CPU each)",
            flush=True,
        )
        probe_seconds = min(self.options.seconds, 5)
        with HealthProber(server.port).running() as idle:
            time.sleep(probe_seconds)
        out = self.work / "login-out.txt"
        # At 16 connections a login waits seconds for a hashing thread: a short run would
        # count little more than the first wave.
        login_seconds = max(self.options.seconds, MIN_OVERLOAD_SECONDS // 2)
        with HealthProber(server.port).running() as storm:
            sample = measured(
                server,
                lambda: self._wrk(
                    server, "login", SINGLE_CONNECTIONS, seconds=login_seconds, out=out
                ),
            )
        self.backend.refresh_pool += out.read_text().split()
        self._record("login", sample)
        self.m.health.setdefault(self.config.key, []).append(
            HealthProbe(
                idle.percentile(50), idle.percentile(99), storm.percentile(50), storm.percentile(99)
            )
        )

    def _with_tokens(
        self,
        server: ServiceProcess,
        workload: str,
        connections: int,
        wanted: int,
        seconds: int | None = None,
    ) -> Sample:
        pool = self.backend.refresh_pool
        if len(pool) < wanted:
            pool += [
                r for _, r in issue_sessions(server.base, self.backend.users, wanted - len(pool))
            ]
        tokens, pool[:] = pool[:wanted], pool[wanted:]
        given, out = (
            self.work / f"{workload}-{connections}-in.txt",
            self.work / f"{workload}-{connections}-out.txt",
        )
        given.write_text("\n".join(tokens) + "\n")
        sample = self._sample(
            server,
            workload,
            lambda: self._wrk(
                server, workload, connections, seconds=seconds, out=out, refresh=given
            ),
        )
        pool += out.read_text().split() if out.exists() else []
        return sample

    def _mixed(self, server: ServiceProcess, connections: int) -> None:
        wanted = max(48, connections // 4)
        # A closed loop of many connections queues for seconds before the first answers:
        # a short run would count only the few requests that got through.
        seconds = max(self.options.seconds, MIN_OVERLOAD_SECONDS) if connections >= 128 else None
        if self.config.backend == "postgres" and connections == max(self.options.mixed_connections):
            port = urlsplit(self.options.redis_url).port or 6379
            with ConnectionSampler(server, port).running() as sampler:
                sample = self._with_tokens(server, "mixed", connections, wanted, seconds)
            key = self.config.key
            self.m.db_connections[key] = max(self.m.db_connections.get(key, 0), sampler.db_peak)
            self.m.redis_connections[key] = max(
                self.m.redis_connections.get(key, 0), sampler.redis_peak
            )
        else:
            sample = self._with_tokens(server, "mixed", connections, wanted, seconds)
        self._record(mixed(connections), sample)

"""Runs the workloads against one configuration of the service, through HTTP only.

Each backend is prepared once (backends.py). Each round then starts ``faultmaven-auth
serve`` for the configuration, runs every workload with the server's CPU time read around
it, and stops it.

Refresh tokens are single-use: the harness keeps a pool of fresh ones (from logins),
gives each run its own share, and takes back only those the run never sent.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.common.profile import NO_PY_SPY, record_while, split_samples, summarize_samples
from benchmarks.common.service import PG_ADMIN_DSN, ServiceProcess
from benchmarks.common.wrk import WrkResult, run_script
from benchmarks.load.backends import (
    ACCESS_TOKENS,
    PASSWORD,
    Backend,
    Options,
    issue_sessions,
)
from benchmarks.load.budget import CpuMeter, StoreCounter
from benchmarks.load.model import (
    SINGLE_CONNECTIONS,
    SINGLE_WORKLOADS,
    HealthProbe,
    Measurements,
    Profile,
    Sample,
    ServiceConfig,
    mixed,
)
from benchmarks.load.probes import ConnectionSampler, HealthProber, LockWaitSampler, LoopWait
from benchmarks.load.references import argon2_verify_rate

# Runs at 128 connections and more last at least this long (see _mixed), logins half.
MIN_OVERLOAD_SECONDS = 10


def measured(
    server: ServiceProcess, run: Callable[[], WrkResult], counter: StoreCounter | None = None
) -> Sample:
    """``run()`` with the CPU of every process read around it, and with ``counter``, the
    store operations it caused (PostgreSQL and Redis counters, read once they settle)."""
    meter = CpuMeter(server)
    ops_before = counter.snapshot() if counter else {}
    before = meter.snapshot()
    result = run()
    after = meter.snapshot()
    ops = (
        StoreCounter.per_response(ops_before, counter.snapshot(), result.counted) if counter else {}
    )
    spent = after.server - before.server
    return Sample(
        result,
        1000 * spent / result.counted if result.counted else None,
        CpuMeter.budget(before, after, result.counted),
        ops,
    )


class ConfigRound:
    """Every workload once against a fresh server of one configuration."""

    def __init__(
        self, config: ServiceConfig, backend: Backend, options: Options, m: Measurements, tag: str
    ) -> None:
        self.config, self.backend, self.options, self.m, self.tag = config, backend, options, m, tag
        self.work = Path(tempfile.mkdtemp(prefix=f"{config.key}-", dir=backend.work))
        self.access_file = self.work / "access.txt"
        self.profiling = False
        # Store operations per request, for the single-endpoint workloads on PostgreSQL +
        # Redis (reading them settled costs about 2.5 s a run).
        self.counter = (
            StoreCounter(backend.database, backend.env["REDIS_URL"]) if backend.database else None
        )

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
                if workload == "login":
                    self._sample(server, "login", self._login(server, self.work / "p-out.txt"))
                    out = self.work / "p-out.txt"
                    self.backend.refresh_pool += out.read_text().split() if out.exists() else []
                elif workload == "refresh":
                    self._with_tokens(server, "refresh", SINGLE_CONNECTIONS, 48)
                elif workload.startswith("mixed@"):
                    self._mixed_run(server, int(workload.removeprefix("mixed@")))
                else:
                    self._sample(server, workload, self._single(server, workload))
        finally:
            server.stop()

    def _single(self, server: ServiceProcess, workload: str) -> Callable[[], WrkResult]:
        return lambda: self._wrk(server, workload, SINGLE_CONNECTIONS)

    def _sample(
        self,
        server: ServiceProcess,
        workload: str,
        run: Callable[[], WrkResult],
        seconds: int | None = None,
    ) -> Sample:
        server.wait_idle()
        if not self.profiling:
            return measured(server, run, self.counter if workload in SINGLE_WORKLOADS else None)
        results: list[WrkResult] = []
        lines = record_while(
            server.process.pid, seconds or self.options.seconds, lambda: results.append(run())
        )
        self.m.profiles[(self.config.key, workload)] = (
            Profile(summarize_samples(lines), split_samples(lines))
            if lines is not None
            else Profile([NO_PY_SPY])
        )
        return Sample(results[0], None)

    def run(self) -> None:
        server = self._start()
        try:
            self._login_storm(server)
            self._record("refresh", self._refresh(server))
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
        with HealthProber(server.port).running() as idle, LoopWait(server).running() as idle_wait:
            time.sleep(probe_seconds)
        out = self.work / "login-out.txt"
        # The store counters are read outside the storm: their settling is idle time.
        ops_before = self.counter.snapshot() if self.counter else {}
        with HealthProber(server.port).running() as storm, LoopWait(server).running() as wait:
            sample = measured(server, self._login(server, out))
        if self.counter:
            ops = StoreCounter.per_response(
                ops_before, self.counter.snapshot(), sample.result.counted
            )
            sample = dataclasses.replace(sample, ops=ops)
        self.backend.refresh_pool += out.read_text().split()
        self._record("login", sample)
        self.m.health.setdefault(self.config.key, []).append(
            HealthProbe(
                idle.percentile(50),
                idle.percentile(99),
                storm.percentile(50),
                storm.percentile(99),
                idle_wait.ms_per_s,
                wait.ms_per_s,
            )
        )

    def _login(self, server: ServiceProcess, out: Path) -> Callable[[], WrkResult]:
        # At 16 connections a login waits seconds for a hashing thread: a short run would
        # count little more than the first wave.
        login_seconds = max(self.options.seconds, MIN_OVERLOAD_SECONDS // 2)
        return lambda: self._wrk(
            server, "login", SINGLE_CONNECTIONS, seconds=login_seconds, out=out
        )

    def _refresh(self, server: ServiceProcess) -> Sample:
        """Refresh at 16 connections; on PostgreSQL, with its sessions' lock waits sampled
        (writers taking turns on one row show there, not in the CPU)."""
        if self.config.backend != "postgres":
            return self._with_tokens(server, "refresh", SINGLE_CONNECTIONS, 48)
        locks = LockWaitSampler(PG_ADMIN_DSN, self.backend.database or "")
        with locks.running():
            sample = self._with_tokens(server, "refresh", SINGLE_CONNECTIONS, 48)
        if locks.mean is not None:
            self.m.lock_waits.setdefault((self.config.key, "refresh"), []).append(locks.mean)
        return sample

    def _with_tokens(
        self,
        server: ServiceProcess,
        workload: str,
        connections: int,
        wanted: int,
        seconds: int | None = None,
        key: str | None = None,
    ) -> Sample:
        """``workload`` with a share of the fresh refresh tokens; recorded (or profiled)
        under ``key``, by default the workload's name."""
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
            key or workload,
            lambda: self._wrk(
                server, workload, connections, seconds=seconds, out=out, refresh=given
            ),
            seconds,
        )
        pool += out.read_text().split() if out.exists() else []
        return sample

    def _mixed_run(self, server: ServiceProcess, connections: int) -> Sample:
        wanted = max(48, connections // 4)
        # A closed loop of many connections queues for seconds before the first answers:
        # a short run would count only the few requests that got through.
        seconds = max(self.options.seconds, MIN_OVERLOAD_SECONDS) if connections >= 128 else None
        return self._with_tokens(
            server, "mixed", connections, wanted, seconds, key=mixed(connections)
        )

    def _mixed(self, server: ServiceProcess, connections: int) -> None:
        if self.config.backend == "postgres" and connections == max(self.options.mixed_connections):
            port = urlsplit(self.options.redis_url).port or 6379
            locks = LockWaitSampler(PG_ADMIN_DSN, self.backend.database or "")
            with ConnectionSampler(server, port).running() as sampler, locks.running():
                sample = self._mixed_run(server, connections)
            if locks.mean is not None:
                self.m.lock_waits.setdefault((self.config.key, mixed(connections)), []).append(
                    locks.mean
                )
            key = self.config.key
            self.m.db_connections[key] = max(self.m.db_connections.get(key, 0), sampler.db_peak)
            self.m.redis_connections[key] = max(
                self.m.redis_connections.get(key, 0), sampler.redis_peak
            )
        else:
            sample = self._mixed_run(server, connections)
        self._record(mixed(connections), sample)

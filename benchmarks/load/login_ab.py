"""Login storm A/B: server variants side by side, rounds interleaved, CPU split by thread.

Each variant is the server started with extra environment (``NAME=VALUE,...``; a
``PYTHONPATH`` naming another checkout's ``src`` runs that code). Per round and variant:
``/health`` idle, then a login storm of ``--connections`` with ``/health`` probed
during it (as ``benchmarks.load.run`` does), and the server's CPU per login split into
the event loop's thread (the non-hash path) and every other thread (hashing, SQLite),
read from ``/proc/<pid>/task``. CPU per login is what a shared machine distorts least.

    PYTHONPATH=src .venv/bin/python -m benchmarks.load.login_ab \\
        --variant base= --variant nice10=PASSWORD_HASH_THREAD_NICENESS=10 [--rounds 3] \\
        [--backend postgres]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common.service import ServiceProcess
from benchmarks.common.wrk import run_script
from benchmarks.load.backends import PASSWORD, Backend, Options, close_backend, prepare_backend
from benchmarks.load.probes import HealthProber

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU of each thread of ``pid`` (from /proc/<pid>/task/*/stat)."""
    seconds = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        seconds[int(task)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


@dataclass
class Result:
    """One variant's runs; medians over rounds."""

    rates: list[float] = field(default_factory=list)
    loop_ms: list[float] = field(default_factory=list)
    other_ms: list[float] = field(default_factory=list)
    health_ratio: list[float] = field(default_factory=list)
    idle_samples: list[float] = field(default_factory=list)
    storm_samples: list[float] = field(default_factory=list)
    refused: int = 0

    def row(self, name: str) -> str:
        def median(values: list[float]) -> str:
            return f"{statistics.median(values):.2f}" if values else "—"

        per_round = ", ".join(f"{v:.2f}" for v in self.health_ratio)
        idle, storm = p99(self.idle_samples), p99(self.storm_samples)
        return (
            f"| {name} | {median(self.rates)} | {median(self.loop_ms)} | {median(self.other_ms)} "
            f"| {median(self.health_ratio)} ({per_round}) "
            f"| {idle:.2f} / {storm:.2f} = {storm / idle:.2f} | {self.refused} |"
        )


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition("=")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    return name, env


def storm(
    backend: Backend, env: dict[str, str], connections: int, seconds: int, kept: Result
) -> dict[str, float]:
    """One server, one idle probe and one login storm; the numbers of that storm."""
    server = ServiceProcess.auth({**backend.env, **env}, backend.work / "server.log")
    data = {
        "BENCH_USERS": str(backend.users_file),
        "BENCH_PASSWORD": PASSWORD,
        "BENCH_ACCESS": "",
        "BENCH_CLIENT": str(backend.client_file),
        "BENCH_OUT": "",
        "BENCH_REFRESH": "",
    }
    try:
        run_script("login", server.base, seconds=1, connections=connections, data=data)  # warm-up
        server.wait_idle()
        with HealthProber(server.port).running() as idle:
            time.sleep(min(seconds, 5))
        pid = server.process.pid
        before = thread_cpu_seconds(pid)
        with HealthProber(server.port).running() as busy:
            result = run_script(
                "login", server.base, seconds=seconds, connections=connections, data=data
            )
        after = thread_cpu_seconds(pid)
    finally:
        server.stop()
    kept.idle_samples += idle.samples
    kept.storm_samples += busy.samples
    spent = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    logins = max(1, result.counted)
    loop = spent.pop(pid, 0.0)
    return {
        "rate": result.ok_rps,
        "loop_ms": 1000 * loop / logins,
        "other_ms": 1000 * sum(spent.values()) / logins,
        "health_ratio": busy.percentile(99) / idle.percentile(99),
        "refused": result.counted - result.status.get("200", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", required=True, help="NAME=[VAR=VALUE,...]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--backend", choices=("embedded", "postgres"), default="embedded")
    args = parser.parse_args()
    variants = [parse_variant(text) for text in args.variant]
    work = Path(tempfile.mkdtemp(prefix="fm-login-ab-"))
    backend = prepare_backend(args.backend, work, Options(seconds=args.seconds))
    results = {name: Result() for name, _ in variants}
    try:
        for round_no in range(1, args.rounds + 1):
            for name, env in variants:
                kept = results[name]
                numbers = storm(backend, env, args.connections, args.seconds, kept)
                kept.rates.append(numbers["rate"])
                kept.loop_ms.append(numbers["loop_ms"])
                kept.other_ms.append(numbers["other_ms"])
                kept.health_ratio.append(numbers["health_ratio"])
                kept.refused += int(numbers["refused"])
                print(f"round {round_no} {name}: {numbers}", flush=True)
    finally:
        close_backend(backend)
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{args.backend}, 1 worker, {args.connections} connections, {args.rounds} rounds of "
        f"{args.seconds} s; medians over rounds\n"
    )
    print(
        "| variant | logins/s | loop CPU ms/login | other threads CPU ms/login "
        "| /health p99 storm/idle (per round) | /health p99 ms idle / storm, all rounds | refused |"
    )
    print("|---|---:|---:|---:|---|---|---:|")
    for name, _ in variants:
        print(results[name].row(name))


if __name__ == "__main__":
    main()

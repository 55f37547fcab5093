"""Overload A/B: the mixed workload at many connections (or another workload, with
``--workload``) against server variants, side by side, rounds interleaved.

Each variant is the server started with extra environment (``NAME=VALUE,...``; a
``PYTHONPATH`` naming another checkout's ``src`` runs that code), on a fresh server per
round. Per run: 2xx/s, the server's CPU per counted response, the admitted p50/p99 (every
answer timed on its own, see lua/common.lua), the admitted p99 of ``/me``, refresh and
login apart, and the refusals.

    PYTHONPATH=src .venv/bin/python -m benchmarks.load.overload_ab \\
        --variant 32=MAX_CONCURRENT_REQUESTS=32 --variant 16=MAX_CONCURRENT_REQUESTS=16 \\
        [--backend postgres] [--workers 2] [--rounds 3] [--workload refresh --connections 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.common.service import ServiceProcess
from benchmarks.common.wrk import WrkResult, run_script
from benchmarks.load.backends import (
    ACCESS_TOKENS,
    PASSWORD,
    Options,
    close_backend,
    issue_sessions,
    prepare_backend,
)
from benchmarks.load.login_ab import parse_variant

KINDS = ("me", "refresh", "login")


def _run(
    env: dict[str, str], work: Path, users_file: Path, users: list[str], args: argparse.Namespace
) -> tuple[WrkResult, float]:
    """One run against a fresh server: wrk's result and the server's CPU ms per response."""
    server = ServiceProcess.auth(env, work / "server.log", workers=args.workers)
    try:
        # Refresh tokens are single use and chained per connection: one per connection.
        count = max(ACCESS_TOKENS, args.connections // 4, args.connections)
        sessions = issue_sessions(server.base, users, count)
        (work / "access.txt").write_text("\n".join(a for a, _ in sessions) + "\n")
        (work / "refresh.txt").write_text("\n".join(r for _, r in sessions) + "\n")
        server.wait_idle()
        before = server.cpu_seconds()
        result = run_script(
            args.workload,
            server.base,
            seconds=args.seconds,
            connections=args.connections,
            data={
                "BENCH_USERS": str(users_file),
                "BENCH_PASSWORD": PASSWORD,
                "BENCH_ACCESS": str(work / "access.txt"),
                "BENCH_REFRESH": str(work / "refresh.txt"),
                "BENCH_OUT": "",
            },
        )
        return result, 1000 * (server.cpu_seconds() - before) / max(result.counted, 1)
    finally:
        server.stop()


def _line(name: str, r: WrkResult, cpu_ms: float) -> str:
    timed = r.timed
    kinds = ", ".join(
        f"{kind} {timed.by_kind[kind][2]:.0f}" for kind in KINDS if timed and kind in timed.by_kind
    )
    admitted_p50 = f"{timed.admitted_p50_ms:.0f}" if timed and timed.admitted_p50_ms else "—"
    return (
        f"{name:12} {r.ok_rps:7.0f} 2xx/s  {cpu_ms:5.2f} ms CPU  admitted p50 {admitted_p50} ms p99 "
        f"{r.p99_admitted_ms:.0f} ms ({kinds})  refused {r.refused}  500s {r.server_errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", required=True, help="NAME=VAR=VALUE,...")
    parser.add_argument("--backend", choices=("embedded", "postgres"), default="postgres")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workload", default="mixed", help="a script in lua/ (default mixed)")
    args = parser.parse_args()
    variants = [parse_variant(text) for text in args.variant]
    work = Path(tempfile.mkdtemp(prefix="fm-overload-ab-"))
    backend = prepare_backend(args.backend, work, Options(seconds=args.seconds))
    results: dict[str, list[WrkResult]] = {name: [] for name, _ in variants}
    cpu: dict[str, list[float]] = {name: [] for name, _ in variants}
    try:
        for n in range(args.rounds):
            for name, extra in variants:
                result, cpu_ms = _run(
                    {**backend.env, **extra}, work, backend.users_file, backend.users, args
                )
                results[name].append(result)
                cpu[name].append(cpu_ms)
                print(f"round {n + 1} {_line(name, result, cpu_ms)}", flush=True)
    finally:
        close_backend(backend)
    print(f"medians of {args.rounds} rounds ({args.backend}, {args.workers} worker(s)):")
    for name, runs in results.items():
        ok = statistics.median(r.ok_rps for r in runs)
        p99 = statistics.median(r.p99_admitted_ms for r in runs)
        kinds = ", ".join(
            f"{kind} {statistics.median(values):.0f}"
            for kind in KINDS
            if (
                values := [
                    r.timed.by_kind[kind][2] for r in runs if r.timed and kind in r.timed.by_kind
                ]
            )
        )
        cpu_ms = statistics.median(cpu[name])
        print(
            f"{name:12} {ok:7.0f} 2xx/s  {cpu_ms:5.2f} ms CPU  admitted p99 {p99:.0f} ms ({kinds})"
        )


if __name__ == "__main__":
    main()

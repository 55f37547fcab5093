"""A/B of the per-request path: server CPU ms per request for GET /me and introspection
(and, with ``--telemetry``, GET /me with telemetry off and on) for two source trees,
run round by round against the same embedded or PostgreSQL + Redis backend.

On a machine shared with other work, CPU per request is steadier than throughput.

    PYTHONPATH=src .venv/bin/python -m benchmarks.load.ab --base /path/to/other/src
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.common.service import ROOT, ServiceProcess
from benchmarks.common.wrk import run_script
from benchmarks.load.backends import (
    PASSWORD,
    Backend,
    Options,
    close_backend,
    issue_sessions,
    prepare_backend,
)

TELEMETRY = {
    "telemetry off": {"METRICS_ENABLED": "false", "LOG_LEVEL": "WARNING"},
    "telemetry on": {"LOG_LEVEL": "INFO"},
}


def _measure(
    backend: Backend, src: str, extra: dict[str, str], workloads: tuple[str, ...], seconds: int
) -> dict[str, tuple[float, float]]:
    """(2xx/s, server CPU ms per request) per workload against a fresh server."""
    env = {**backend.env, **extra, "PYTHONPATH": f"{src}:{ROOT}"}
    server = ServiceProcess.auth(env, backend.work / "ab-server.log")
    try:
        access = backend.work / "ab-access.txt"
        sessions = issue_sessions(server.base, backend.users, 8)
        access.write_text("\n".join(a for a, _ in sessions) + "\n")
        data = {
            "BENCH_USERS": str(backend.users_file),
            "BENCH_PASSWORD": PASSWORD,
            "BENCH_ACCESS": str(access),
            "BENCH_CLIENT": str(backend.client_file),
            "BENCH_OUT": "",
            "BENCH_REFRESH": "",
        }
        results = {}
        for workload in workloads:
            run_script(workload, server.base, seconds=1, connections=16, data=data)  # warm-up
            server.wait_idle()
            before = server.cpu_seconds()
            out = run_script(workload, server.base, seconds=seconds, connections=16, data=data)
            cpu_ms = 1000 * (server.cpu_seconds() - before) / max(out.counted, 1)
            results[workload] = (out.ok_rps, cpu_ms)
        return results
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the other tree's src/ directory")
    parser.add_argument("--candidate", default=str(ROOT / "src"), help="default: this src/")
    parser.add_argument("--backend", choices=("embedded", "postgres"), default="embedded")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--telemetry", action="store_true", help="GET /me, telemetry off/on")
    args = parser.parse_args()
    trees = {"base": args.base, "candidate": args.candidate}
    configs = TELEMETRY if args.telemetry else {"default": {}}
    workloads = ("me",) if args.telemetry else ("me", "introspect")
    work = Path(tempfile.mkdtemp(prefix="fm-ab-"))
    backend = prepare_backend(args.backend, work, Options(seconds=args.seconds))
    cpu: dict[tuple[str, str, str], list[float]] = {}
    try:
        for n in range(args.rounds):
            for tree, src in trees.items():
                for config, extra in configs.items():
                    for workload, (rps, ms) in _measure(
                        backend, src, extra, workloads, args.seconds
                    ).items():
                        cpu.setdefault((tree, config, workload), []).append(ms)
                        print(
                            f"round {n + 1} {tree} {config} {workload}: {rps:,.0f} 2xx/s, {ms:.3f} ms CPU/req"
                        )
    finally:
        close_backend(backend)
    for (tree, config, workload), values in sorted(cpu.items()):
        median = statistics.median(values)
        rounds = ", ".join(f"{v:.3f}" for v in values)
        print(f"{tree:9} {config:13} {workload:10} median {median:.3f} ms CPU/req ({rounds})")


if __name__ == "__main__":
    main()

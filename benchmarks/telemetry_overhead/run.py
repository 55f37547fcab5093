"""Telemetry overhead: authenticated GET /api/v1/auth/me under four telemetry settings.

One run, one machine, configurations interleaved round by round so drift hits them all
alike. Each configuration is a real `faultmaven-auth serve` (one worker, embedded
default) loaded by wrk over loopback; traces go to a local OTLP/HTTP sink. Results are
reported as medians over rounds and as ratios to "telemetry off", then written to
benchmarks/results/telemetry_overhead.md together with a py-spy profile of the
"metrics + logs" configuration.

    PYTHONPATH=src .venv/bin/python -m benchmarks.telemetry_overhead.run [--quick] [--rounds 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import http.server
import shutil
import statistics
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.common.profile import profile_while
from benchmarks.common.service import (
    ROOT,
    ServiceProcess,
    checkout_env,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    migrate,
)
from benchmarks.common.wrk import run_plain

RESULTS = ROOT / "benchmarks" / "results" / "telemetry_overhead.md"
PASSWORD = "Bench-Passphrase-2026"


@dataclass
class Config:
    name: str
    env: dict[str, str]
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


class _Sink(http.server.BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and drops them (an empty body is a valid response)."""

    spans_bytes = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        _Sink.spans_bytes += len(self.rfile.read(length))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def start_sink() -> tuple[http.server.ThreadingHTTPServer, int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def run_wrk(url: str, token: str, seconds: int, connections: int) -> tuple[float, float, float]:
    result = run_plain(url, seconds=seconds, connections=connections,
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    if result.non_2xx:
        raise RuntimeError(f"{result.non_2xx} failed requests")
    return result.rps, result.p50_ms, result.p99_ms


def start_server(env: dict[str, str], log: Path) -> ServiceProcess:
    """One worker, whatever the default worker count: the overhead is per process."""
    return ServiceProcess.auth(env, log, workers=1)


def login_token(base: str, email: str) -> str:
    response = httpx.post(
        f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=30
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def profile_leaves(pid: int, seconds: int, url: str, token: str, connections: int) -> list[str]:
    """py-spy samples of the server while wrk loads it; top functions by own samples."""
    return profile_while(pid, seconds, lambda: run_wrk(url, token, seconds, connections))


def run_backend(
    backend: str, args: argparse.Namespace, sink_port: int, work: Path
) -> tuple[list[Config], list[str]]:
    """All configurations on one backend; returns their numbers and a profile."""
    overrides = {"ENVIRONMENT": "development"}
    database = prefix = ""
    if backend == "postgres":
        database, url = create_postgres_database()
        prefix = f"fmbench:{uuid.uuid4().hex[:6]}:"
        overrides |= {"DATABASE_URL": url, "REDIS_URL": args.redis_url, "KV_KEY_PREFIX": prefix}
    else:
        overrides["DATABASE_URL"] = f"sqlite+aiosqlite:///{work / f'{backend}.db'}"
    base_env = checkout_env(overrides)
    try:
        migrate(base_env)
        return _measure(backend, args, sink_port, work, base_env)
    finally:
        if database:
            drop_postgres_database(database)
            delete_redis_prefix(args.redis_url, prefix)


def _measure(
    backend: str, args: argparse.Namespace, sink_port: int, work: Path, base_env: dict[str, str]
) -> tuple[list[Config], list[str]]:
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}
    configs = [
        Config("telemetry off", {"METRICS_ENABLED": "false", "LOG_LEVEL": "WARNING"}),
        Config("metrics + JSON logs + request ids", {"LOG_LEVEL": "INFO"}),
        Config("+ tracing, 10 % sampled",
               {"LOG_LEVEL": "INFO", "TRACING_SAMPLE_RATIO": "0.1", **otlp}),
        Config("+ tracing, 100 % sampled",
               {"LOG_LEVEL": "INFO", "TRACING_SAMPLE_RATIO": "1.0", **otlp}),
    ]  # fmt: skip

    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    server = start_server({**base_env, **configs[0].env}, work / "setup.log")
    try:
        httpx.post(
            f"{server.base}/api/v1/auth/register",
            json={"organization_name": "Bench", "email": email, "password": PASSWORD,
                  "full_name": "Bench"},
            timeout=30,
        ).raise_for_status()  # fmt: skip
    finally:
        server.stop()

    for round_no in range(args.rounds):
        for config in configs:
            server = start_server({**base_env, **config.env}, work / f"server-{round_no}.log")
            try:
                token = login_token(server.base, email)
                url = f"{server.base}/api/v1/auth/me"
                run_wrk(url, token, 2, args.connections)  # warm-up
                rps, p50, p99 = run_wrk(url, token, args.seconds, args.connections)
            finally:
                server.stop()
            config.rps.append(rps)
            config.p50.append(p50)
            config.p99.append(p99)
            print(f"{backend} round {round_no + 1} {config.name:36} {rps:8.1f} req/s "
                  f"p50 {p50:6.2f} ms p99 {p99:6.2f} ms", flush=True)  # fmt: skip

    server = start_server({**base_env, **configs[1].env}, work / "profile.log")
    try:
        token = login_token(server.base, email)
        profile = profile_leaves(
            server.process.pid,
            args.seconds,
            f"{server.base}/api/v1/auth/me",
            token,
            args.connections,
        )
    finally:
        server.stop()
    return configs, profile


def table(configs: list[Config]) -> str:
    base_rps = statistics.median(configs[0].rps)
    rows = [
        "| configuration | req/s | ratio to off | throughput cost | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for config in configs:
        rps = statistics.median(config.rps)
        rows.append(
            f"| {config.name} | {rps:,.0f} | {rps / base_rps:.2f} | {100 * (1 - rps / base_rps):+.1f} % "
            f"| {statistics.median(config.p50):.2f} | {statistics.median(config.p99):.2f} |"
        )
    rows.append("")
    rows.append(
        "Per-round req/s: "
        + "; ".join(f"{c.name}: {', '.join(f'{r:.0f}' for r in c.rps)}" for c in configs)
        + "."
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s per configuration")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--seconds", type=int, default=None, help="default 8 (quick: 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--backends", default="embedded,postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (3 if args.quick else 8)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk)")

    sink, sink_port = start_sink()
    work = Path(tempfile.mkdtemp(prefix="fm-bench-"))
    sections = []
    try:
        for backend in args.backends.split(","):
            configs, profile = run_backend(backend, args, sink_port, work)
            title = {
                "embedded": "Embedded default (SQLite file + in-process store)",
                "postgres": "PostgreSQL + Redis (127.0.0.1)",
            }[backend]
            sections.append(
                f"## {title}\n\n{table(configs)}\n\n"
                f'### Where the time goes ("metrics + JSON logs + request ids")\n\n'
                "py-spy samples of the server's event-loop thread under the same load; share "
                "of its samples by the function on top of the stack (own time):\n\n"
                "| samples | function |\n|---:|---|\n" + "\n".join(profile)
            )
    finally:
        sink.shutdown()

    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    report = f"""# Telemetry overhead

Authenticated `GET /api/v1/auth/me` (JWT verification, revocation check in the store, the
user + roles query, the team ids query), one uvicorn worker, loaded by
`wrk -t1 -c{args.connections}` over loopback on a {cpu}-core machine shared with the load
generator. {args.rounds} rounds of {args.seconds} s per configuration, interleaved round by
round; medians shown. Throughput cost is relative to "telemetry off" on the same backend in
the same run; absolute numbers drift on this shared machine, ratios are what to compare.

Command: `make bench` (that is, `python -m benchmarks.telemetry_overhead.run --rounds {args.rounds} --seconds {args.seconds} --backends {args.backends}`).

Targets: metrics + logs ≤ 10 % throughput cost; with tracing at 10 % ≤ 20 %.

{chr(10).join(sections)}
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    main()

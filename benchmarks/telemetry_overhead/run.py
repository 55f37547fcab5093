"""Telemetry overhead: authenticated GET /api/v1/auth/me under five telemetry settings.

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

from benchmarks.common.profile import (
    FRAMEWORK,
    HANDLER,
    LOGGING,
    MIDDLEWARE,
    NO_PY_SPY,
    loop_samples,
    record_while,
    share_spent_in,
    split_samples,
    summarize_samples,
)
from benchmarks.common.service import (
    ROOT,
    ServiceProcess,
    checkout_env,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    migrate,
)
from benchmarks.common.wrk import PlainResult, run_plain

RESULTS = ROOT / "benchmarks" / "results" / "telemetry_overhead.md"
START_LINE = "+ `Request started` line (`LOG_REQUEST_START=true`)"
# py-spy names files relative to their sys.path entry, and OpenTelemetry's namespace
# packages lose their top folder: these are the tracing code's files as it names them.
TRACING_FILES = (
    "opentelemetry",
    "trace/__init__.py",
    "trace/span.py",
    "trace/sampling.py",
    "context/__init__.py",
    "context/contextvars_context.py",
    "propagate/__init__.py",
    "tracecontext.py",
    "sdk/trace",
    "observability/spans.py",
)
PASSWORD = "Bench-Passphrase-2026"


@dataclass
class Config:
    name: str
    env: dict[str, str]
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    # Server CPU (every thread of the process) per answer over each measured run, µs.
    cpu_us: list[float] = field(default_factory=list)


@dataclass
class Profile:
    """py-spy samples of one configuration's event loop under the same load."""

    rows: list[str]  # the summary table's rows
    parts: dict[str, float]  # share of the samples in each part of a request
    tracing: float  # share spent in tracing code (OpenTelemetry's, the server span's)
    samples: int  # of the event loop's thread: few means the shares are rough


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


def run_wrk(url: str, token: str, seconds: int, connections: int) -> PlainResult:
    result = run_plain(url, seconds=seconds, connections=connections,
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    if result.non_2xx:
        raise RuntimeError(f"{result.non_2xx} failed requests")
    return result


def start_server(env: dict[str, str], log: Path) -> ServiceProcess:
    """One worker, whatever the default worker count: the overhead is per process."""
    return ServiceProcess.auth(env, log, workers=1)


def login_token(base: str, email: str) -> str:
    response = httpx.post(
        f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=30
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def profile(pid: int, seconds: int, url: str, token: str, connections: int) -> Profile:
    """py-spy samples of the server while wrk loads it: the top functions by own
    samples, the parts of a request, and the share in OpenTelemetry code."""
    lines = record_while(pid, seconds, lambda: run_wrk(url, token, seconds, connections))
    if lines is None:
        return Profile([NO_PY_SPY], {}, 0.0, 0)
    return Profile(
        summarize_samples(lines),
        split_samples(lines),
        share_spent_in(lines, TRACING_FILES),
        loop_samples(lines),
    )


def run_backend(
    backend: str, args: argparse.Namespace, sink_port: int, work: Path
) -> tuple[list[Config], dict[str, Profile]]:
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
) -> tuple[list[Config], dict[str, Profile]]:
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}
    configs = [
        Config("telemetry off", {"METRICS_ENABLED": "false", "LOG_LEVEL": "WARNING"}),
        Config("metrics + JSON logs + request ids", {"LOG_LEVEL": "INFO"}),
        Config(START_LINE, {"LOG_LEVEL": "INFO", "LOG_REQUEST_START": "true"}),
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
                cpu_before = server.cpu_seconds()
                result = run_wrk(url, token, args.seconds, args.connections)
                cpu = server.cpu_seconds() - cpu_before
            finally:
                server.stop()
            config.rps.append(result.rps)
            config.p50.append(result.p50_ms)
            config.p99.append(result.p99_ms)
            config.cpu_us.append(1e6 * cpu / max(result.requests, 1))
            print(f"{backend} round {round_no + 1} {config.name:36} {result.rps:8.1f} req/s "
                  f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms "
                  f"cpu {config.cpu_us[-1]:6.0f} us/req", flush=True)  # fmt: skip

    profiles = {}
    for config in (configs[1], configs[3]):  # metrics + logs; + tracing at 10 %
        server = start_server({**base_env, **config.env}, work / "profile.log")
        try:
            token = login_token(server.base, email)
            profiles[config.name] = profile(
                server.process.pid,
                args.seconds,
                f"{server.base}/api/v1/auth/me",
                token,
                args.connections,
            )
        finally:
            server.stop()
    return configs, profiles


def table(configs: list[Config]) -> str:
    base_rps = statistics.median(configs[0].rps)
    rows = [
        "| configuration | req/s | ratio to off | throughput cost | server CPU µs/request "
        "| p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for config in configs:
        rps = statistics.median(config.rps)
        rows.append(
            f"| {config.name} | {rps:,.0f} | {rps / base_rps:.2f} | {100 * (1 - rps / base_rps):+.1f} % "
            f"| {statistics.median(config.cpu_us):,.0f} "
            f"| {statistics.median(config.p50):.2f} | {statistics.median(config.p99):.2f} |"
        )
    rows.append("")
    rows.append(
        "Per-round req/s: "
        + "; ".join(f"{c.name}: {', '.join(f'{r:.0f}' for r in c.rps)}" for c in configs)
        + "."
    )
    return "\n".join(rows)


ROUGH_BELOW = 300


def _rough(found: Profile) -> str:
    if found.samples >= ROUGH_BELOW:
        return ""
    return (
        ": few, because py-spy competes for the cores with the server, wrk and the "
        "databases; read its shares as rough"
    )


def explain(configs: list[Config], profiles: dict[str, Profile]) -> str:
    """Why the telemetry costs what it does, from this run's CPU per request and profiles."""
    off, logs, with_start, sampled, everything = (statistics.median(c.cpu_us) for c in configs)
    added = logs - off
    lines = [
        f"**Why.** Server CPU per request (every thread of the process, over each measured "
        f"run; medians): {off:,.0f} µs with telemetry off, {logs:,.0f} µs with metrics + JSON "
        f"logs + request ids: {added:+,.0f} µs ({100 * added / off:+.0f} %)."
    ]
    spread = max(configs[0].cpu_us) - min(configs[0].cpu_us)
    lines.append(
        f"The `Request started` line (`LOG_REQUEST_START=true`; off by default, the "
        f"completion line carries the same fields) would add {with_start - logs:+,.0f} µs"
        + (
            f", within the spread between rounds ({spread:,.0f} µs with telemetry off)."
            if abs(with_start - logs) <= spread
            else "."
        )
    )
    logged = profiles[configs[1].name]
    if logged.parts:
        lines.append(
            f"In the profile of metrics + logs ({logged.samples} samples{_rough(logged)}), "
            f"logging (records, JSON formatting, handlers) has {logged.parts[LOGGING]:.0%} of "
            f"the event loop's samples and the service's middleware (request context, "
            f"metrics, admission, limits) {logged.parts[MIDDLEWARE]:.0%}; the framework and "
            f"runtime have {logged.parts[FRAMEWORK]:.0%} and the endpoint with its "
            f"dependencies {logged.parts[HANDLER]:.0%}."
        )
    traced = profiles[configs[3].name]
    lines.append(
        f"Tracing at 10 % adds {sampled - logs:+,.0f} µs per request to metrics + logs "
        f"(at 100 %: {everything - logs:+,.0f} µs)"
        + (
            f"; in its profile ({traced.samples} samples{_rough(traced)}) {traced.tracing:.0%} "
            "of the event loop's samples are spent in "
            "tracing code (OpenTelemetry's, and the server span's own lines). "
            "Every request gets a server span and a sampling "
            "decision, sampled or not; the spans of sampled requests are recorded and "
            "exported by a background thread, whose CPU is in the figure per request but "
            "not in the event loop's samples."
            if traced.parts
            else "."
        )
    )
    return " ".join(lines)


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
            configs, profiles = run_backend(backend, args, sink_port, work)
            title = {
                "embedded": "Embedded default (SQLite file + in-process store)",
                "postgres": "PostgreSQL + Redis (127.0.0.1)",
            }[backend]
            section = f"## {title}\n\n{table(configs)}\n\n{explain(configs, profiles)}\n"
            for name, found in profiles.items():
                section += (
                    f'\n### Where the time goes ("{name}")\n\n'
                    "py-spy samples of the server's event-loop thread under the same load; "
                    "share of its samples by the function on top of the stack (own time):\n\n"
                    "| samples | function |\n|---:|---|\n" + "\n".join(found.rows) + "\n"
                )
            sections.append(section)
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

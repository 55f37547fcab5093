"""Load harness: login, refresh, GET /me, introspection and a mixed workload, on the
embedded default and on PostgreSQL + Redis (1 and 2 workers), with the hello-world and
raw-argon2id references measured in the same run, rounds interleaved.

Writes benchmarks/results/load.md (targets met or not, with ratios) and rewrites the
generated block of docs/sizing.md from the same numbers.

    PYTHONPATH=src .venv/bin/python -m benchmarks.load.run [--quick] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from benchmarks.common.machine import describe_machine, git_commit, utc_now
from benchmarks.common.service import ROOT
from benchmarks.load.backends import Backend, Options, close_backend, prepare_backend
from benchmarks.load.model import CONFIG_BY_KEY, CONFIGS, MIXED_CONNECTIONS, Measurements, mixed
from benchmarks.load.references import (
    ARGON2_ALTERNATIVES,
    argon2_verify_rate,
    configured_argon2,
    hello_world,
)
from benchmarks.load.report import RunInfo, render_report, render_sizing_block, replace_sizing_block
from benchmarks.load.runner import ConfigRound
from benchmarks.load.targets import evaluate
from faultmaven_auth.config import Settings

REPORT = ROOT / "benchmarks" / "results" / "load.md"
SIZING = ROOT / "docs" / "sizing.md"
QUICK_MIXED = (32, 512)
PROFILED = ("login", "refresh", "me", "introspect", mixed(max(MIXED_CONNECTIONS)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="about 3 minutes: 1 round of 3 s, mixed at 32 and 512 connections only",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 1)"
    )
    parser.add_argument(
        "--seconds", type=int, default=None, help="seconds per run (default 5, quick 3)"
    )
    parser.add_argument(
        "--configs",
        default=",".join(c.key for c in CONFIGS),
        help="comma-separated: embedded, pg1, pg2",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--db-pool-size",
        type=int,
        default=10,
        help="DATABASE_POOL_SIZE of the PostgreSQL runs (default: the service's own; "
        "overflow doubles it)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="py-spy profiles of login, refresh, GET /me and introspection on PostgreSQL + "
        "Redis, 1 worker (default: not quick)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the report instead of writing it"
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (3 if args.quick else 5)
    args.profile = not args.quick if args.profile is None else args.profile
    unknown = set(args.configs.split(",")) - set(CONFIG_BY_KEY)
    if unknown:
        parser.error(f"unknown configurations: {', '.join(sorted(unknown))}")
    return args


def _redis_max_connections(url: str) -> str:
    """The Redis pool size the service will use: the URL's, else REDIS_MAX_CONNECTIONS'."""
    in_url = parse_qs(urlsplit(url).query).get("max_connections")
    if in_url:
        return in_url[0]
    return f"{Settings().redis_pool_size} (REDIS_MAX_CONNECTIONS default)"


def _admission_settings() -> dict[str, str]:
    """What bounds an admitted request's wait and the hashing threads, as the service reads them."""
    settings = Settings()
    return {
        "MAX_CONCURRENT_REQUESTS": str(settings.max_concurrent_requests),
        "REQUEST_QUEUE_TIMEOUT_SECONDS": f"{settings.request_queue_timeout_seconds:g}",
        "PASSWORD_HASH_THREADS": str(settings.password_hash_threads or "cores ÷ workers (default)"),
        "PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS": f"{settings.password_hash_queue_timeout_seconds:g}",
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: ./scripts/install-system-deps.sh bench")
    configs = [CONFIG_BY_KEY[key] for key in args.configs.split(",")]
    cores = os.cpu_count() or 1
    m = Measurements(cores=cores, argon2_params=configured_argon2())
    m.settings = {
        "DATABASE_POOL_SIZE": str(args.db_pool_size),
        "redis max_connections": _redis_max_connections(args.redis_url),
        "rate limits": "1000000/second (checked, never refusing)",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO (default)"),
        **_admission_settings(),
    }
    options = Options(
        seconds=args.seconds,
        redis_url=args.redis_url,
        db_pool_size=args.db_pool_size,
        mixed_connections=QUICK_MIXED if args.quick else MIXED_CONNECTIONS,
    )
    work = Path(tempfile.mkdtemp(prefix="fm-load-"))
    backends: dict[str, Backend] = {}
    try:
        for kind in dict.fromkeys(c.backend for c in configs):
            backends[kind] = prepare_backend(kind, work, options)
        for round_no in range(1, args.rounds + 1):
            tag = f"round {round_no}/{args.rounds}"
            for config in configs:
                ConfigRound(config, backends[config.backend], options, m, tag).run()
            for workers in sorted({c.workers for c in configs}):
                rps, budget = hello_world(workers, args.seconds, work / f"hello-{workers}.log")
                m.hello_rps.setdefault(workers, []).append(rps)
                if budget:
                    m.hello_budgets.setdefault(workers, []).append(budget)
                print(f"{tag} hello-world {workers} worker(s): {rps:,.0f} req/s", flush=True)
        profiled = next((c for c in configs if c.key == "pg1"), configs[0])
        if args.profile:
            ConfigRound(profiled, backends[profiled.backend], options, m, "profile").profile(
                PROFILED
            )
        for params in (m.argon2_params, *ARGON2_ALTERNATIVES):
            m.argon2_sets.append(argon2_verify_rate(params, cores, args.seconds))
    finally:
        for backend in backends.values():
            close_backend(backend)
        shutil.rmtree(work, ignore_errors=True)

    targets = evaluate(m)
    command = "python -m benchmarks.load.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    info = RunInfo(
        command=command.strip(),
        machine=describe_machine(),
        date=utc_now(),
        commit=git_commit(ROOT),
        rounds=args.rounds,
        seconds=args.seconds,
        quick=args.quick,
    )
    report = render_report(m, targets, info)
    if not args.no_write:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(report)
        SIZING.write_text(replace_sizing_block(SIZING.read_text(), render_sizing_block(m, info)))
    else:
        print(report)
    print()
    for target in targets:
        print(
            f"[{target.verdict:>12}] target {target.number}: {target.name} "
            f"({target.config or 'pg2 vs pg1'}): {target.measured} (required {target.required})"
        )
    print(f"\nreport: {REPORT}" if not args.no_write else "")


if __name__ == "__main__":
    main()

"""The generated report (benchmarks/results/load.md) and the sizing guide's numbers.

Pure functions of the measurements: docs/sizing.md quotes only what is between its
``<!-- sizing:begin -->`` and ``<!-- sizing:end -->`` markers, and the harness rewrites
that block on every run, so the guide cannot drift from the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.load.costs import cost_sections, hello_budget, profile_heading, split_table
from benchmarks.load.explain import unmet_section
from benchmarks.load.model import (
    CONFIG_BY_KEY,
    MIXED_CONNECTIONS,
    SINGLE_CONNECTIONS,
    SINGLE_WORKLOADS,
    Measurements,
    Sample,
    cpu_ms,
    kind_p99,
    latency,
    median,
    median_ratio,
    mixed,
    ok_rps,
    timed_median,
)
from benchmarks.load.targets import Target

SIZING_BEGIN = "<!-- sizing:begin -->"
SIZING_END = "<!-- sizing:end -->"
WORKLOAD_LABELS = {
    "login": "login (POST /api/v1/auth/login)",
    "refresh": "refresh, chained single-use tokens",
    "me": "GET /api/v1/auth/me",
    "introspect": "introspection (POST /api/v1/auth/introspect)",
}
# The worked example's peak (requests per second) and the utilisation to plan for.
EXAMPLE_PEAK = {"login": 50.0, "refresh": 500.0, "me": 5000.0, "introspect": 1000.0}
EXAMPLE_LABELS = {
    "login": "logins",
    "refresh": "refreshes",
    "me": "GET /me",
    "introspect": "introspections",
}
PLANNED_UTILISATION = 0.7


@dataclass(frozen=True)
class RunInfo:
    command: str
    machine: str
    date: str
    commit: str
    rounds: int
    seconds: float
    quick: bool


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def _statuses(samples_status: dict[str, int], codes: dict[str, int]) -> str:
    parts = [f"{code}: {n}" for code, n in sorted(samples_status.items())]
    refusals = [f"{code.split(' ', 1)[1]} {n}" for code, n in sorted(codes.items())]
    return ", ".join(parts) + (f" ({', '.join(refusals)})" if refusals else "")


def _summed(m: Measurements, config: str, workload: str) -> tuple[dict[str, int], dict[str, int]]:
    status: dict[str, int] = {}
    codes: dict[str, int] = {}
    for sample in m.runs(config, workload):
        for k, v in sample.result.status.items():
            status[k] = status.get(k, 0) + v
        for k, v in sample.result.codes.items():
            codes[k] = codes.get(k, 0) + v
    return status, codes


def per_core(cpu_ms_per_request: float | None) -> float | None:
    """Requests one fully busy core serves, from the server CPU each one costs."""
    return 1000 / cpu_ms_per_request if cpu_ms_per_request else None


def _workload_table(m: Measurements, config: str) -> list[str]:
    hello = m.hello_rps.get(CONFIG_BY_KEY[config].workers, [])
    rows = [
        f"| workload ({SINGLE_CONNECTIONS} connections) | 2xx/s | ratio | p50 ms | p99 ms "
        "| server CPU ms/req | req/s per busy core | responses (all rounds) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for workload in SINGLE_WORKLOADS:
        if not m.runs(config, workload):
            continue
        rps = ok_rps(m, config, workload)
        if workload == "login":
            ratio = f"{_num(median_ratio(rps, m.argon2_per_s(config)), '{:.0%}')} of argon2"
        else:
            ratio = f"{_num(median_ratio(rps, hello), '{:.1%}')} of hello"
        status, codes = _summed(m, config, workload)
        extra: dict[str, int] = {}
        for sample in m.runs(config, workload):
            for name, count in sample.result.extra.items():
                extra[name] = extra.get(name, 0) + count
        noted = "".join(f"; {k}: {v}" for k, v in sorted(extra.items()) if v)
        rows.append(
            f"| {WORKLOAD_LABELS[workload]} | {_num(median(rps))} | {ratio} "
            f"| {_num(latency(m, config, workload, 'p50_ms'), '{:.1f}')} "
            f"| {_num(latency(m, config, workload, 'p99_ms'), '{:.1f}')} "
            f"| {_num(cpu_ms(m, config, workload), '{:.2f}')} "
            f"| {_num(per_core(cpu_ms(m, config, workload)))} | {_statuses(status, codes)}{noted} |"
        )
    return rows


def _pair(first: float | None, second: float | None) -> str:
    return f"{_num(first, '{:.0f}')} / {_num(second, '{:.0f}')}"


def _by_kind(runs: list[Sample]) -> str:
    """Median over rounds of each kind's admitted p99, with the admitted count (all rounds)."""
    timed = [s.result.timed for s in runs if s.result.timed]
    parts = []
    for kind in sorted({k for t in timed for k in t.by_kind}):
        count = sum(t.by_kind[kind][0] for t in timed if kind in t.by_kind)
        parts.append(f"{kind} {_num(kind_p99(runs, kind), '{:.0f}')} (n={count})")
    return ", ".join(parts) or "—"


def _mixed_table(m: Measurements, config: str) -> list[str]:
    rows = [
        "| connections | responses/s | 2xx/s | p50 ms | p99 ms | admitted p50 / p99 ms "
        "| refused p50 / p99 ms | admitted p99 by kind, ms | CPU ms/req | 500s "
        "| responses (all rounds) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for connections in MIXED_CONNECTIONS:
        runs = m.runs(config, mixed(connections))
        if not runs:
            continue
        status, codes = _summed(m, config, mixed(connections))
        starved = sum(s.result.extra.get("refresh_starved", 0) for s in runs)
        rows.append(
            f"| {connections} | {_num(median([s.result.rps for s in runs]))} "
            f"| {_num(median([s.result.ok_rps for s in runs]))} "
            f"| {_num(median([s.result.p50_ms for s in runs]), '{:.1f}')} "
            f"| {_num(median([s.result.p99_ms for s in runs]), '{:.1f}')} "
            f"| {_pair(timed_median(runs, 'admitted_p50_ms'), median([s.result.p99_admitted_ms for s in runs]))} "
            f"| {_pair(timed_median(runs, 'refused_p50_ms'), timed_median(runs, 'refused_p99_ms'))} "
            f"| {_by_kind(runs)} "
            f"| {_num(median([s.cpu_ms for s in runs if s.cpu_ms is not None]), '{:.2f}')} "
            f"| {sum(s.result.server_errors for s in runs)} | {_statuses(status, codes)}"
            f"{f'; refresh slots sent as /me (no token left): {starved}' if starved else ''} |"
        )
    return rows


def _targets_table(targets: list[Target]) -> list[str]:
    rows = [
        "| # | target | configuration | measured | required | verdict |",
        "|---:|---|---|---:|---:|---|",
    ]
    for t in targets:
        config = CONFIG_BY_KEY[t.config].label if t.config else "PostgreSQL + Redis, 2 vs 1 worker"
        rows.append(
            f"| {t.number} | {t.name} | {config} | {t.measured} | {t.required} | **{t.verdict}** |"
        )
    return rows


def _references(m: Measurements) -> list[str]:
    rows = ["| reference | value (median of rounds) | per round |", "|---|---:|---|"]
    for workers, values in sorted(m.hello_rps.items()):
        rows.append(
            f"| hello-world FastAPI, {workers} worker(s), {SINGLE_CONNECTIONS} connections "
            f"| {_num(median(values))} req/s | {', '.join(f'{v:,.0f}' for v in values)} |"
        )
    for key, rates in m.argon2_rates.items():
        rows.append(
            f"| {m.argon2_params} verify, {m.cores} threads, before the {key} login storm "
            f"| {_num(median([r.verify_per_s for r in rates]), '{:,.1f}')} /s "
            f"| {', '.join(f'{r.verify_per_s:,.1f}' for r in rates)} |"
        )
    rows.append(
        f"| the same, CPU per verification (all runs) "
        f"| {_num(m.argon2_per_core(), '{:,.1f}')} /s per busy core | |"
    )
    return rows


def _health_table(m: Measurements) -> list[str]:
    rows = [
        "| configuration | idle p50 ms | idle p99 ms | storm p50 ms | storm p99 ms | p99 ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, probes in m.health.items():
        ratio = median_ratio([p.storm_p99_ms for p in probes], [p.idle_p99_ms for p in probes])
        rows.append(
            f"| {CONFIG_BY_KEY[key].label} | {_num(median([p.idle_p50_ms for p in probes]), '{:.2f}')} "
            f"| {_num(median([p.idle_p99_ms for p in probes]), '{:.2f}')} "
            f"| {_num(median([p.storm_p50_ms for p in probes]), '{:.2f}')} "
            f"| {_num(median([p.storm_p99_ms for p in probes]), '{:.2f}')} | {_num(ratio, '{:.2f}x')} |"
        )
    return rows


def _argon2_sets(m: Measurements) -> list[str]:
    rows = [
        "| parameters | verify/s, all cores | CPU ms per verify | verify/s per busy core |",
        "|---|---:|---:|---:|",
    ]
    for rate in m.argon2_sets:
        rows.append(
            f"| {rate.params} | {rate.verify_per_s:,.1f} | {rate.cpu_ms:,.1f} "
            f"| {rate.per_core:,.1f} |"
        )
    return rows


def _with_blank(lines: list[str]) -> list[str]:
    return [*lines, ""] if lines else []


def render_report(m: Measurements, targets: list[Target], info: RunInfo) -> str:
    met = sum(1 for t in targets if t.met)
    missed = sum(1 for t in targets if t.met is False)
    parts = [
        "# Load: hot paths, overload and sizing numbers",
        "",
        "Generated by `benchmarks/load/run.py`; do not edit by hand.",
        "",
        f"- Command: `{info.command}`",
        f"- Machine: {info.machine} (the load generator, PostgreSQL and Redis share it)",
        f"- Date: {info.date}; commit {info.commit}",
        f"- {'Quick mode: ' if info.quick else ''}{info.rounds} interleaved round(s) of {info.seconds:g} s "
        "per run; medians over rounds, ratios as the median of per-round ratios.",
        f"- Settings: {', '.join(f'{k}={v}' for k, v in m.settings.items())}",
        "",
        "Server CPU is the user + system time of the server's processes (all threads,",
        "uvicorn workers included) during the run divided by the responses counted;",
        "'per busy core' is 1000 / that. A '2xx/s' column counts successful responses only.",
        "",
        f"## Targets: {met} met, {missed} not met, {len(targets) - met - missed} not measured",
        "",
        *_targets_table(targets),
        "",
        *_with_blank(unmet_section(m, targets)),
        *cost_sections(m),
        "## References (same run, same machine)",
        "",
        *_references(m),
        "",
    ]
    for key in CONFIG_BY_KEY:
        if key not in m.samples:
            continue
        parts += [
            f"## {CONFIG_BY_KEY[key].label}",
            "",
            *_workload_table(m, key),
            "",
            "Mixed workload (1 login : 10 refresh : 100 GET /me):",
            "",
            *_mixed_table(m, key),
            "",
        ]
    parts += [
        "## /health latency during a login storm",
        "",
        *_health_table(m),
        "",
        "## Memory and connections per worker",
        "",
        "| configuration | largest worker RSS MiB | PostgreSQL connections (peak) | Redis connections (peak) |",
        "|---|---:|---:|---:|",
    ]
    for key, rss in m.rss_mib.items():
        parts.append(
            f"| {CONFIG_BY_KEY[key].label} | {rss:.0f} | {m.db_connections.get(key, '—')} "
            f"| {m.redis_connections.get(key, '—')} |"
        )
    if m.argon2_sets:
        parts += ["", "## argon2id cost against capacity", "", *_argon2_sets(m)]
    if split_table(m):
        parts += [
            "",
            "## Where the time goes: the event loop's samples by part of the request",
            "",
            "Each py-spy sample of the event loop's thread counted once: logging wherever it "
            "is called from; else by the innermost frame of the service (its middleware, or "
            "the endpoint and what it calls); framework and runtime when no service frame is "
            "on the stack (uvicorn, asyncio) or the frames under our middleware are "
            "uvicorn's or Starlette/FastAPI's (routing, writing the response); the event "
            "loop when only its native code is on top (uvloop: polling and I/O).",
            "",
            *split_table(m),
        ]
    for (config, workload), profile in m.profiles.items():
        parts += [
            "",
            f"## {profile_heading(config, workload)}",
            "",
            "py-spy samples of the event loop's thread under the same load (a separate, "
            "unmeasured run); share of samples by the function on top of the stack:",
            "",
            "| samples | function |",
            "|---:|---|",
            *profile.rows,
        ]
    parts += ["", "## Per-round 2xx/s", ""]
    for key, workloads in m.samples.items():
        for workload, samples in workloads.items():
            parts.append(
                f"- {key} {workload}: {', '.join(f'{s.result.ok_rps:,.0f}' for s in samples)}"
            )
    return "\n".join(parts) + "\n"


@dataclass(frozen=True)
class CoreRates:
    """Requests per busy core by workload, as the sizing guide quotes them."""

    login: float | None
    refresh: float | None
    me: float | None
    introspect: float | None

    def get(self, workload: str) -> float | None:
        value: float | None = getattr(self, workload)
        return value


def core_rates(m: Measurements, config: str = "pg1") -> CoreRates:
    return CoreRates(*(per_core(cpu_ms(m, config, w)) for w in SINGLE_WORKLOADS))


def cores_for_peak(rates: CoreRates, peak: dict[str, float], utilisation: float) -> float | None:
    """Cores that serve ``peak`` (requests/s by workload) at ``utilisation`` of each core."""
    needed = 0.0
    for workload, rps in peak.items():
        rate = rates.get(workload)
        if not rate:
            return None
        needed += rps / rate
    return needed / utilisation


def _machine_speed(m: Measurements) -> str:
    """How fast this machine's cores are, in the same run: per-core rates scale with it."""
    hello = hello_budget(m, 1)
    if hello is None or not hello.server:
        return ""
    return (
        f" On these cores a hello-world FastAPI request costs its server {hello.server:.2f} ms"
        " of CPU under the same uvicorn set-up: on faster or slower cores, every rate below"
        " scales about as that does, so compare it with yours before reading the rates."
    )


def render_sizing_block(m: Measurements, info: RunInfo) -> str:
    rates = core_rates(m)
    argon2_core = m.argon2_per_core()
    lines = [
        SIZING_BEGIN,
        f"<!-- generated by benchmarks/load/run.py from benchmarks/results/load.md: {info.date}, "
        f"commit {info.commit}, {info.machine}{', quick mode' if info.quick else ''} -->",
        "",
        f"Measured on PostgreSQL + Redis, 1 worker, at {m.argon2_params}.{_machine_speed(m)}",
        "",
        "| per busy core | measured | Keycloak's guide |",
        "|---|---:|---:|",
        f"| logins/s | {_num(rates.login, '{:,.1f}')} | 15 |",
        f"| argon2id verifications/s (the login's floor cost) | {_num(argon2_core, '{:,.1f}')} | — |",
        f"| refresh grants/s | {_num(rates.refresh)} | 120 |",
        f"| GET /me/s | {_num(rates.me)} | — |",
        f"| introspections/s | {_num(rates.introspect)} | — |",
        "",
        "| per worker | value |",
        "|---|---:|",
        f"| memory (largest worker RSS under the mixed load, 2 workers) | {_num(m.rss_mib.get('pg2', m.rss_mib.get('pg1')))} MiB |",
        f"| PostgreSQL connections, peak measured (DATABASE_POOL_SIZE={m.settings.get('DATABASE_POOL_SIZE', '?')}, overflow included) | {m.db_connections.get('pg2', m.db_connections.get('pg1', '—'))} |",
        f"| Redis connections, peak measured (pool limit {m.settings.get('redis max_connections', '?')}) | {m.redis_connections.get('pg2', m.redis_connections.get('pg1', '—'))} |",
    ]
    if m.argon2_sets:
        lines += [
            "",
            "| argon2id parameters | verifications/s per core | logins/s per core, estimated |",
            "|---|---:|---:|",
        ]
        measured_share = (rates.login / argon2_core) if rates.login and argon2_core else None
        for rate in m.argon2_sets:
            estimate = rate.per_core * measured_share if measured_share else None
            lines.append(f"| {rate.params} | {rate.per_core:,.1f} | {_num(estimate, '{:,.1f}')} |")
    cores = cores_for_peak(rates, EXAMPLE_PEAK, PLANNED_UTILISATION)
    peak_text = ", ".join(f"{v:,.0f} {EXAMPLE_LABELS[k]}/s" for k, v in EXAMPLE_PEAK.items())
    lines += [
        "",
        f"Worked example: a peak of {peak_text}, planned at "
        f"{PLANNED_UTILISATION:.0%} CPU: Σ(peak ÷ per-core rate) ÷ {PLANNED_UTILISATION} = "
        f"{_num(cores, '{:.1f}')} cores",
    ]
    if cores is not None:
        replicas = math.ceil(cores / 2)
        lines[-1] += (
            f", that is {replicas} replica(s) of 2 cores (2 workers each), "
            f"plus one for a replica lost: {replicas + 1}."
        )
    lines += ["", SIZING_END]
    return "\n".join(lines)


def replace_sizing_block(document: str, block: str) -> str:
    """``document`` with its marked block replaced by ``block`` (markers included)."""
    start, end = document.find(SIZING_BEGIN), document.find(SIZING_END)
    if start < 0 or end < start:
        raise ValueError(f"no {SIZING_BEGIN} … {SIZING_END} block in the document")
    return document[:start] + block + document[end + len(SIZING_END) :]

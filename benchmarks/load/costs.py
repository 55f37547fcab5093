"""The report's cost sections: where a run's CPU goes across every process on the
machine (and the CPU ceiling that follows), the store round trips per response, and the
profiles' split by part of the request.

Pure functions of the measurements; explain.py builds the paragraphs of the targets not
met on the same numbers.
"""

from __future__ import annotations

import re

from benchmarks.common.profile import PARTS
from benchmarks.load.model import (
    CONFIG_BY_KEY,
    MIXED_CONNECTIONS,
    SINGLE_WORKLOADS,
    CpuBudget,
    Measurements,
    budget,
    median,
    median_ratio,
    mixed,
    ok_rps,
    ops_per_request,
)

WORKLOAD_NAMES = {
    "login": "login",
    "refresh": "refresh",
    "me": "GET /me",
    "introspect": "introspection",
}
PART_NAMES = {
    PARTS[0]: "endpoint and dependencies",
    PARTS[1]: "middleware",
    PARTS[2]: "logging",
    PARTS[3]: "framework and runtime",
    PARTS[4]: "event loop (native)",
}


def ms_text(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f} ms"


def num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "not measured" if value is None else fmt.format(value)


def anchor(heading: str) -> str:
    """The fragment GitHub gives a markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return "#" + slug.replace(" ", "-")


def profile_heading(config: str, workload: str) -> str:
    return f"Where the time goes: {CONFIG_BY_KEY[config].label}: {workload}"


def rate(m: Measurements, config: str, workload: str) -> float | None:
    """Responses/s of every status (the CPU budget divides by all of them)."""
    return median([s.result.rps for s in m.runs(config, workload)])


def hello_budget(m: Measurements, workers: int) -> CpuBudget | None:
    return CpuBudget.median_of(m.hello_budgets.get(workers, []))


def budget_text(b: CpuBudget) -> str:
    return (
        f"server {b.server:.2f} + PostgreSQL {b.postgres:.2f} + Redis {b.redis:.2f} "
        f"+ wrk {b.wrk:.2f} = {b.total:.2f} ms"
    )


def ceiling_text(m: Measurements, b: CpuBudget | None, measured: float | None) -> str:
    if b is None or b.ceiling(m.cores) is None:
        return "CPU budget not measured"
    ceiling = b.ceiling(m.cores) or 0.0
    share = f"; measured {measured:,.0f}/s, {measured / ceiling:.0%} of it" if measured else ""
    others = (
        f" (the machine's other processes took a further {b.rest:.2f} ms per response "
        "meanwhile: a busy machine)"
        if b.rest > b.total / 2
        else ""
    )
    return (
        f"CPU per response {budget_text(b)}, so {m.cores} cores give at most "
        f"{ceiling:,.0f} responses/s{share}{others}"
    )


# --- CPU budget ------------------------------------------------------------------------


def _budget_row(m: Measurements, label: str, b: CpuBudget | None, measured: float | None) -> str:
    if b is None:
        return f"| {label} | — | — | — | — | — | — | {num(measured)} | — | — |"
    ceiling = b.ceiling(m.cores)
    share = f"{measured / ceiling:.0%}" if measured and ceiling else "—"
    return (
        f"| {label} | {b.server:.2f} | {b.postgres:.2f} | {b.redis:.2f} | {b.wrk:.2f} "
        f"| **{b.total:.2f}** | {num(ceiling)} | {num(measured)} | {share} | {b.rest:.2f} |"
    )


def budget_table(m: Measurements) -> list[str]:
    rows = [
        "| configuration: workload | server | PostgreSQL | Redis | wrk | total ms "
        "| CPU ceiling responses/s | measured responses/s | share of ceiling "
        "| rest of machine ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in CONFIG_BY_KEY:
        if key not in m.samples:
            continue
        workloads = [*SINGLE_WORKLOADS, *(mixed(c) for c in MIXED_CONNECTIONS)]
        for workload in workloads:
            if m.runs(key, workload):
                rows.append(
                    _budget_row(
                        m, f"{key}: {workload}", budget(m, key, workload), rate(m, key, workload)
                    )
                )
    for workers, values in sorted(m.hello_rps.items()):
        rows.append(
            _budget_row(
                m, f"hello-world, {workers} worker(s)", hello_budget(m, workers), median(values)
            )
        )
    return rows


def scaling_rows(m: Measurements) -> list[str]:
    """What 2 workers could gain over 1 given every process's CPU, next to what they did."""
    if "pg1" not in m.samples or "pg2" not in m.samples:
        return []
    rows = [
        "| workload | 1 worker responses/s | cores busy at 1 worker (all processes) "
        "| CPU ceiling at 1 worker's cost | max 2-worker ratio the CPU allows | measured ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for workload in ("me", "refresh"):
        limit = scaling_limit(m, workload)
        measured = median_ratio(ok_rps(m, "pg2", workload), ok_rps(m, "pg1", workload))
        if limit is None:
            rows.append(
                f"| {WORKLOAD_NAMES[workload]} | — | — | — | — | {num(measured, '{:.2f}x')} |"
            )
            continue
        r1, busy, ceiling, max_ratio = limit
        rows.append(
            f"| {WORKLOAD_NAMES[workload]} | {r1:,.0f} | {busy:.2f} of {m.cores} | {ceiling:,.0f} "
            f"| {max_ratio:.2f}x | {num(measured, '{:.2f}x')} |"
        )
    return rows


def scaling_limit(m: Measurements, workload: str) -> tuple[float, float, float, float] | None:
    """(1 worker's rate, cores it kept busy, the CPU ceiling, the largest 2/1 ratio).

    Two event loops can at most double one; and at the per-response cost measured with
    one worker, the machine gives at most its CPU ceiling: min(2, ceiling / rate).
    """
    b, r1 = budget(m, "pg1", workload), rate(m, "pg1", workload)
    ceiling = b.ceiling(m.cores) if b else None
    if b is None or not r1 or ceiling is None:
        return None
    return r1, r1 * b.total / 1000, ceiling, min(2.0, ceiling / r1)


# --- store round trips and profile split ----------------------------------------------


def ops_text(ops: dict[str, float]) -> tuple[str, str, str]:
    xacts = ops.get("pg xact_commit", 0.0) + ops.get("pg xact_rollback", 0.0)
    rows = ", ".join(
        f"{name.removeprefix('pg tup_')} {v:.2f}" for name, v in ops.items() if "tup_" in name
    )
    redis = {k.removeprefix("redis "): v for k, v in ops.items() if k.startswith("redis ")}
    calls = ", ".join(f"{k} {v:.2f}" for k, v in sorted(redis.items(), key=lambda kv: -kv[1]))
    total = sum(redis.values())
    return f"{xacts:.2f}", rows or "0", f"{total:.2f} ({calls})" if calls else "0"


def ops_table(m: Measurements) -> list[str]:
    rows = [
        "| configuration: workload | PostgreSQL transactions | rows written | Redis calls (by command) |",
        "|---|---:|---|---|",
    ]
    for key in CONFIG_BY_KEY:
        for workload in SINGLE_WORKLOADS:
            ops = ops_per_request(m, key, workload)
            if ops:
                rows.append(f"| {key}: {workload} | {' | '.join(ops_text(ops))} |")
    return rows if len(rows) > 2 else []


def split_table(m: Measurements) -> list[str]:
    split = [(k, p) for k, p in m.profiles.items() if p.split]
    if not split:
        return []
    rows = [
        "| profile | " + " | ".join(PART_NAMES[part] for part in PARTS) + " |",
        "|---|" + "---:|" * len(PARTS),
    ]
    for (config, workload), profile in split:
        link = f"[{config}: {workload}]({anchor(profile_heading(config, workload))})"
        rows.append(f"| {link} | " + " | ".join(f"{profile.split[p]:.0%}" for p in PARTS) + " |")
    return rows


def cost_sections(m: Measurements) -> list[str]:
    lines = [
        "## CPU budget per response: every process on the machine",
        "",
        "CPU ms per response counted, read around each run: the server's process tree, "
        "every PostgreSQL process (the postmaster's ended backends included), redis-server "
        "and wrk. The CPU ceiling is cores x 1000 ÷ their total: the most responses/s "
        "this machine gives at that cost, whatever the service does; the share of it the "
        "run reached is how busy the cores were. 'Rest of machine' is the other processes' "
        "CPU meanwhile (the harness, anything else running), not in the total.",
        "",
        *budget_table(m),
        "",
    ]
    if scaling_rows(m):
        lines += [
            "2 workers against 1 on PostgreSQL + Redis: two event loops at most double one, "
            "and at the 1-worker cost per response the machine gives at most its ceiling, "
            "so the largest ratio the CPU allows is min(2, ceiling ÷ 1-worker rate):",
            "",
            *scaling_rows(m),
            "",
        ]
    if ops_table(m):
        lines += [
            "## Store round trips per response",
            "",
            "From PostgreSQL's pg_stat_database (the run's database: transactions, rows "
            "written) and Redis's INFO commandstats (server-wide: another client of the same "
            "Redis would count too), read before and after each single-endpoint run once the "
            "counters settle. Transactions are a floor on round trips: statements are not "
            "counted (pg_stat_statements is not installed). Requests still in flight when wrk "
            "stops (up to one per connection) are served after it and counted too: a small "
            "excess for the fast workloads, a larger one for login (tens of logins a run).",
            "",
            *ops_table(m),
            "",
        ]
    return lines

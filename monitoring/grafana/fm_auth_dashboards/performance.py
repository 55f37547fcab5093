"""Performance: latency KPIs and SLO, per route, authentication and database time, and
the refusals at capacity (admission, pools, password hashing) with the hashing queue."""

from __future__ import annotations

from .kit import (
    GREEN,
    JSON,
    RED,
    YELLOW,
    Panel,
    Row,
    dashboard,
    steps,
    target,
)
from .queries import (
    LATENCY_SLO_SECONDS,
    RATE,
    latency_burn,
    latency_sli,
    quantile,
    rate_sum,
    selector,
    standard_annotations,
)
from .shared import (
    HTTP_LATENCY,
    P50_KPI,
    P95_KPI,
    P99_KPI,
    SLO_RUNBOOKS,
    burn_rate_panel,
    in_progress_panel,
    latency_kpi,
    latency_percentiles,
    variables,
)


def performance() -> JSON:
    return dashboard(
        uid="fm-auth-performance",
        title="FaultMaven Auth — Performance",
        description="Latency KPIs and SLO, per route, authentication and database time, "
        "refusals at capacity.",
        variables=variables(),
        annotations=standard_annotations(),
        runbooks=(
            "HighLatency",
            "AuthLatencySLOFastBurn",
            "AuthLatencySLOSlowBurn",
            "RequestsRefusedAtCapacity",
        ),
        panels=[
            Row("Latency KPIs"),
            latency_kpi(0.5, "p50", P50_KPI, "HighLatency"),
            latency_kpi(0.95, "p95", P95_KPI, "HighLatency"),
            latency_kpi(0.99, "p99", P99_KPI, "HighLatency"),
            in_progress_panel(),
            Row("Latency over time"),
            latency_percentiles(),
            Panel(
                f"Requests within {float(LATENCY_SLO_SECONDS) * 1000:.0f} ms",
                "timeseries",
                [target(latency_sli(RATE), "within target")],
                "percentunit",
                "The latency SLI: share of requests answered within 200 ms (SLO 95 %).",
                runbooks=SLO_RUNBOOKS[2:],
                thresholds=steps(RED, (0.95, GREEN)),
                max=1,
            ),
            Panel(
                "p95 latency by route",
                "timeseries",
                [target(quantile(0.95, HTTP_LATENCY, by="handler"), "{{handler}}")],
                "s",
                "Which route is slow: p95 per route template.",
                runbooks=("HighLatency",),
                thresholds=steps(GREEN, (P95_KPI, RED)),
            ),
            burn_rate_panel(
                "Latency SLO burn rate (95 % within 200 ms)",
                latency_burn,
                "latency",
                SLO_RUNBOOKS[2:],
            ),
            Row("Where the time goes"),
            Panel(
                "Request rate by route",
                "timeseries",
                [
                    target(
                        rate_sum("http_requests_total", by="handler, method"),
                        "{{method}} {{handler}}",
                    )
                ],
                "reqps",
                "Traffic per route template and method.",
            ),
            Panel(
                "Authentication time p95 by method",
                "timeseries",
                [target(quantile(0.95, "auth_duration_seconds", by="method"), "{{method}}")],
                "s",
                "Time to authenticate, password hashing included (argon2id dominates "
                "password logins by design).",
            ),
            Panel(
                "Database statements by operation",
                "timeseries",
                [target(rate_sum("db_queries_total", by="operation"), "{{operation}}")],
                "ops",
                "SQL statements per second by kind.",
                runbooks=("DatabaseConnectionFailure",),
                stack=True,
            ),
            Panel(
                "Database statement latency",
                "timeseries",
                [
                    target(quantile(0.5, "db_query_duration_seconds"), "p50"),
                    target(quantile(0.99, "db_query_duration_seconds"), "p99"),
                ],
                "s",
                "SQL statement latency. Rising with flat traffic: the database is "
                "saturated (see Infrastructure).",
            ),
            Panel(
                "Database pool wait p95",
                "timeseries",
                [target(quantile(0.95, "db_pool_wait_seconds"), "p95")],
                "s",
                "Time requests wait for a pooled database connection; above a few ms the "
                "pool (DATABASE_POOL_SIZE) is too small for the load.",
                thresholds=steps(GREEN, (0.05, YELLOW), (0.25, RED)),
            ),
            *capacity_panels(),
        ],
    )


def capacity_panels() -> list[Panel | Row]:
    """Refusals at capacity and the password-hashing queue behind the login refusals."""
    runbooks = ("RequestsRefusedAtCapacity",)
    return [
        Row("Refused at capacity"),
        Panel(
            "Refused at capacity by reason",
            "timeseries",
            [
                target(rate_sum("http_requests_rejected_total", by="reason"), "request {{reason}}"),
                target(
                    rate_sum("password_hash_rejected_total", by="reason"),
                    "password hash {{reason}}",
                ),
            ],
            "reqps",
            "503s with Retry-After when a worker's request slots, a pool or the password "
            "hashing queue stayed full. Short bursts are by design; a sustained rate above "
            "0.1/s fires RequestsRefusedAtCapacity.",
            runbooks=runbooks,
            thresholds=steps(GREEN, (0.1, RED)),
            stack=True,
        ),
        Panel(
            "Password hashing queue",
            "timeseries",
            [
                target(f"sum(password_hash_queue_depth{selector()})", "waiting"),
                target(f"sum(password_hash_in_progress{selector()})", "hashing"),
            ],
            "short",
            "Hashes waiting for a thread and running, over every worker. Hashing at the "
            "thread count with a queue that keeps growing: logins exceed what the CPU can "
            "hash (see docs/login-capacity.md).",
            runbooks=runbooks,
        ),
        Panel(
            "Password hashing queue wait p95",
            "timeseries",
            [target(quantile(0.95, "password_hash_queue_wait_seconds"), "p95")],
            "s",
            "Time hashes wait for a thread; past PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS "
            "(2 s by default) logins are refused with 503 LOGIN_CAPACITY_EXCEEDED.",
            runbooks=runbooks,
            thresholds=steps(GREEN, (0.5, YELLOW), (2.0, RED)),
        ),
    ]

"""Constants and panels more than one dashboard shows the same way."""

from __future__ import annotations

from collections.abc import Callable

from .kit import (
    GREEN,
    INSTANCE_VARIABLE,
    JSON,
    ORANGE,
    ORGANIZATION_VARIABLE,
    RED,
    YELLOW,
    Panel,
    datasource_variable,
    steps,
    target,
)
from .queries import (
    BURN_WINDOWS,
    FAST_BURN,
    FAST_BURN_6H,
    SLOW_BURN,
    http_error_ratio,
    quantile,
    rate_sum,
    ratio,
    selector,
)

HTTP_LATENCY = "http_request_duration_seconds"
ORG = 'organization_id=~"$organization"'
# KPI thresholds of the latency percentiles (monitoring guide): p50 < 100 ms,
# p95 < 200 ms, p99 < 500 ms.
P50_KPI, P95_KPI, P99_KPI = 0.1, 0.2, 0.5
ERROR_RATIO_ALERT = 0.05  # HighErrorRate
AUTH_FAILURE_ALERT = 0.3  # HighAuthFailureRate
UP_DOWN = [
    {
        "type": "value",
        "options": {
            "0": {"text": "DOWN", "color": RED, "index": 0},
            "1": {"text": "UP", "color": GREEN, "index": 1},
        },
    }
]
DEPENDENCY_RUNBOOKS = (
    "AuthServiceDatabaseUnreachable",
    "AuthServiceRedisUnreachable",
    "DatabaseConnectionFailure",
    "RedisDown",
)
SLO_RUNBOOKS = (
    "AuthAvailabilitySLOFastBurn",
    "AuthAvailabilitySLOSlowBurn",
    "AuthLatencySLOFastBurn",
    "AuthLatencySLOSlowBurn",
)


def variables(*, organization: bool = False) -> list[JSON]:
    chosen = [datasource_variable(), INSTANCE_VARIABLE]
    return [*chosen, ORGANIZATION_VARIABLE] if organization else chosen


def latency_kpi(q: float, name: str, kpi: float, alert: str) -> Panel:
    return Panel(
        f"{name} latency (KPI < {kpi * 1000:.0f} ms)",
        "stat",
        [target(quantile(q, HTTP_LATENCY))],
        "s",
        f"{name} of HTTP request latency across the chosen instances. "
        f"Green below the {kpi * 1000:.0f} ms target, red above it.",
        runbooks=(alert,),
        thresholds=steps(GREEN, (round(kpi * 0.8, 3), YELLOW), (kpi, RED)),
    )


def latency_percentiles() -> Panel:
    return Panel(
        "Latency p50 / p95 / p99",
        "timeseries",
        [
            target(quantile(0.5, HTTP_LATENCY), "p50"),
            target(quantile(0.95, HTTP_LATENCY), "p95"),
            target(quantile(0.99, HTTP_LATENCY), "p99", exemplar=True),
        ],
        "s",
        "HTTP latency percentiles from http_request_duration_seconds. Dashed lines: "
        "the p95 (200 ms) and p99 (500 ms) targets. Exemplar dots open the trace "
        "of a sampled request.",
        runbooks=("HighLatency",),
        thresholds=steps(GREEN, (P95_KPI, YELLOW), (P99_KPI, RED)),
        min=0,
    )


def request_rate_by_status() -> Panel:
    return Panel(
        "Requests by status",
        "timeseries",
        [target(rate_sum("http_requests_total", by="status"), "{{status}}")],
        "reqps",
        "Requests per second by exact status code (200, 401, 404, 503, ...).",
        stack=True,
    )


def error_ratio_panel() -> Panel:
    return Panel(
        "Error ratio (5xx and 4xx)",
        "timeseries",
        [
            target(http_error_ratio(), "5xx"),
            target(ratio("http_requests_total", 'status=~"4.."'), "4xx"),
        ],
        "percentunit",
        "Share of requests answered 5xx (server faults: the HighErrorRate alert fires "
        "above 5 %) and 4xx (client errors: a spike often means a broken client or a probe).",
        runbooks=("HighErrorRate",),
        thresholds=steps(GREEN, (ERROR_RATIO_ALERT, RED)),
        min=0,
    )


def auth_attempts_panel() -> Panel:
    return Panel(
        "Authentication attempts by outcome",
        "timeseries",
        [target(rate_sum("auth_attempts_total", by="method, status"), "{{method}} {{status}}")],
        "ops",
        "Logins and refreshes per second, by method (password, refresh, oidc, saml) and outcome.",
        runbooks=("HighAuthFailureRate",),
    )


def dependency_panel() -> Panel:
    return Panel(
        "Dependencies (service view)",
        "stat",
        [target(f"min by (dependency) (dependency_up{selector()})", "{{dependency}}")],
        "none",
        "Whether the service reaches its database and Redis (dependency_up, worst "
        "instance). DOWN here while pg_up / redis_up are 1 points at the network or "
        "credentials between the service and the store.",
        runbooks=DEPENDENCY_RUNBOOKS,
        thresholds=steps(RED, (1, GREEN)),
        mappings=UP_DOWN,
    )


def burn_rate_panel(
    title: str, burn: Callable[[str], str], slo: str, runbooks: tuple[str, ...]
) -> Panel:
    return Panel(
        title,
        "timeseries",
        [target(burn(w), w) for w in BURN_WINDOWS],
        "suffix:x",
        f"How fast the {slo} error budget is spent (1 = exactly the budget over 30 days). "
        f"Fast-burn alert (pages): {FAST_BURN:g}x over 1 h and 5 m, or {FAST_BURN_6H:g}x "
        f"over 6 h and 30 m; slow-burn alert (ticket): {SLOW_BURN:g}x over 1 d and 2 h, "
        "or 1x over 3 d and 6 h.",
        runbooks=runbooks,
        thresholds=steps(GREEN, (SLOW_BURN, YELLOW), (FAST_BURN_6H, ORANGE), (FAST_BURN, RED)),
        min=0,
    )


def in_progress_panel() -> Panel:
    return Panel(
        "Requests in progress",
        "stat",
        [target(f"sum(http_requests_inprogress{selector()})")],
        "short",
        "Requests being served right now (saturation). A steady climb with flat "
        "traffic means requests are waiting on something: check the pools.",
        thresholds=steps(GREEN, (50, YELLOW), (200, RED)),
    )

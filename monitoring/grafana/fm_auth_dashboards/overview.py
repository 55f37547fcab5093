"""Overview: the on-call landing page (golden signals, authentication, dependencies)."""

from __future__ import annotations

from .kit import (
    BLUE,
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
    auth_failure_ratio,
    availability_burn,
    http_error_ratio,
    increase_sum,
    rate_sum,
    selector,
    standard_annotations,
)
from .shared import (
    AUTH_FAILURE_ALERT,
    ERROR_RATIO_ALERT,
    ORG,
    P95_KPI,
    SLO_RUNBOOKS,
    auth_attempts_panel,
    burn_rate_panel,
    dependency_panel,
    error_ratio_panel,
    in_progress_panel,
    latency_kpi,
    latency_percentiles,
    request_rate_by_status,
    variables,
)


def overview() -> JSON:
    http = "http_requests_total"
    return dashboard(
        uid="fm-auth-overview",
        title="FaultMaven Auth — Overview",
        description="On-call landing page: golden signals, authentication, dependencies.",
        variables=variables(organization=True),
        annotations=standard_annotations(),
        runbooks=("ServiceDown", "HighErrorRate", "HighLatency", "HighAuthFailureRate"),
        panels=[
            Row("Golden signals"),
            Panel(
                "Instances up",
                "stat",
                [target(f"sum(up{selector()})")],
                "short",
                "Scrape targets of job auth-service that answered the last scrape.",
                runbooks=("ServiceDown",),
                thresholds=steps(RED, (1, GREEN)),
                width=4,
            ),
            Panel(
                "Request rate",
                "stat",
                [target(rate_sum(http))],
                "reqps",
                "Requests per second over all routes (health, readiness and metrics excluded).",
                thresholds=steps(BLUE),
                width=4,
            ),
            Panel(
                "Error ratio (5xx)",
                "stat",
                [target(http_error_ratio())],
                "percentunit",
                "Share of requests answered 5xx. HighErrorRate fires above 5 %.",
                runbooks=("HighErrorRate",),
                thresholds=steps(GREEN, (0.01, YELLOW), (ERROR_RATIO_ALERT, RED)),
                width=4,
            ),
            latency_kpi(0.95, "p95", P95_KPI, "HighLatency"),
            Panel(
                "Auth success ratio",
                "stat",
                [target(f"1 - ({auth_failure_ratio()})")],
                "percentunit",
                "Share of authentication attempts that succeeded. Below 70 % "
                "HighAuthFailureRate fires: check Security for brute force or stuffing.",
                runbooks=("HighAuthFailureRate",),
                thresholds=steps(RED, (1 - AUTH_FAILURE_ALERT, YELLOW), (0.9, GREEN)),
                width=6,
            ),
            Panel(
                "Active users",
                "stat",
                [target(f"sum(max by (organization_id) (active_users_total{selector(ORG)}))")],
                "short",
                "Distinct users seen in the activity window (15 min) in the chosen "
                "organizations. Every replica reports the shared value, hence max by "
                "organization before the sum.",
                thresholds=steps(BLUE),
                width=6,
            ),
            Panel(
                "Organizations",
                "stat",
                [target(f"max(organizations_total{selector()})")],
                "short",
                "Organizations not deleted (the same value on every replica).",
                thresholds=steps(BLUE),
                width=6,
            ),
            dependency_panel(),
            in_progress_panel(),
            Row("Traffic, errors, latency"),
            request_rate_by_status(),
            error_ratio_panel(),
            latency_percentiles(),
            auth_attempts_panel(),
            Panel(
                "Security events by type",
                "timeseries",
                [target(increase_sum("security_events_total", by="event_type"), "{{event_type}}")],
                "short",
                "Security events per interval: brute force, lockouts, stuffing, rate "
                "limits, privilege escalation, cross-tenant access, refresh-token reuse. "
                "Details on the Security dashboard.",
                runbooks=("BruteForceAttackDetected", "RefreshTokenReuseDetected"),
                stack=True,
            ),
            burn_rate_panel(
                "Availability SLO burn rate (99.9 %)",
                availability_burn,
                "availability",
                SLO_RUNBOOKS[:2],
            ),
        ],
    )

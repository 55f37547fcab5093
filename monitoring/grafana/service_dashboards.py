"""The service's own view: Overview (on-call landing page), Performance, Business."""

from __future__ import annotations

from collections.abc import Callable

from dashboard_queries import (
    FAST_BURN,
    LATENCY_SLO_SECONDS,
    RATE,
    SLOW_BURN,
    auth_failure_ratio,
    availability_burn,
    http_error_ratio,
    in_range,
    increase_sum,
    latency_burn,
    latency_sli,
    quantile,
    rate_sum,
    ratio,
    selector,
    standard_annotations,
)
from grafana_kit import (
    BLUE,
    GREEN,
    INSTANCE_VARIABLE,
    JSON,
    ORANGE,
    ORGANIZATION_VARIABLE,
    RED,
    YELLOW,
    Panel,
    Row,
    dashboard,
    datasource_variable,
    steps,
    target,
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
        thresholds=steps(GREEN, (kpi * 0.8, YELLOW), (kpi, RED)),
    )


def latency_percentiles() -> Panel:
    return Panel(
        "Latency p50 / p95 / p99",
        "timeseries",
        [
            target(quantile(0.5, HTTP_LATENCY), "p50"),
            target(quantile(0.95, HTTP_LATENCY), "p95"),
            target(quantile(0.99, HTTP_LATENCY), "p99"),
        ],
        "s",
        "HTTP latency percentiles from http_request_duration_seconds. Dashed lines: "
        "the p95 (200 ms) and p99 (500 ms) targets.",
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
        [target(burn(w), w) for w in ("5m", "1h", "6h")],
        "x",
        f"How fast the {slo} error budget is spent (1 = exactly the budget over 30 days). "
        f"The fast-burn alert needs {FAST_BURN:g}x over 1 h (and 5 m), the slow-burn "
        f"alert {SLOW_BURN:g}x over 6 h.",
        runbooks=runbooks,
        thresholds=steps(GREEN, (SLOW_BURN, ORANGE), (FAST_BURN, RED)),
        min=0,
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


def performance() -> JSON:
    return dashboard(
        uid="fm-auth-performance",
        title="FaultMaven Auth — Performance",
        description="Latency KPIs and SLO, per route, authentication and database time.",
        variables=variables(),
        annotations=standard_annotations(),
        runbooks=("HighLatency", "AuthLatencySLOFastBurn", "AuthLatencySLOSlowBurn"),
        panels=[
            Row("Latency KPIs"),
            latency_kpi(0.5, "p50", P50_KPI, "HighLatency"),
            latency_kpi(0.95, "p95", P95_KPI, "HighLatency"),
            latency_kpi(0.99, "p99", P99_KPI, "HighLatency"),
            Panel(
                "Requests in progress",
                "stat",
                [target(f"sum(http_requests_inprogress{selector()})")],
                "short",
                "Requests being served right now (saturation). A steady climb with flat "
                "traffic means requests are waiting on something: check the pools.",
                thresholds=steps(GREEN, (50, YELLOW), (200, RED)),
            ),
            Row("Latency over time"),
            latency_percentiles(),
            Panel(
                f"Requests within {float(LATENCY_SLO_SECONDS) * 1000:.0f} ms",
                "timeseries",
                [target(latency_sli(RATE), "within target")],
                "percentunit",
                "The latency SLI: share of requests answered within 500 ms (SLO 99 %).",
                runbooks=SLO_RUNBOOKS[2:],
                thresholds=steps(RED, (0.99, GREEN)),
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
                "Latency SLO burn rate (99 % within 500 ms)",
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
        ],
    )


def business() -> JSON:
    by_org = f"max by (organization_id) (active_users_total{selector(ORG)})"
    return dashboard(
        uid="fm-auth-business",
        title="FaultMaven Auth — Business",
        description="Tenants, users, sign-ups, logins, tokens and API usage.",
        variables=variables(organization=True),
        annotations=standard_annotations(),
        runbooks=("HighAuthFailureRate", "TokenValidationFailureSpike"),
        panels=[
            Row("Now"),
            Panel(
                "Organizations",
                "stat",
                [target(f"max(organizations_total{selector()})")],
                "short",
                "Organizations not deleted.",
                thresholds=steps(BLUE),
                width=4,
            ),
            Panel(
                "Active users",
                "stat",
                [target(f"sum({by_org})")],
                "short",
                "Distinct users seen in the last 15 minutes, chosen organizations.",
                thresholds=steps(BLUE),
                width=4,
            ),
            Panel(
                "New users (range)",
                "stat",
                [target(in_range("new_users_total", ORG))],
                "short",
                "Users created in the time range (sign-up, invitation, admin).",
                thresholds=steps(BLUE),
                width=4,
            ),
            Panel(
                "Auth success rate (5 min)",
                "stat",
                [target(f"max(auth_success_rate{selector()})")],
                "percentunit",
                "Successful / all authentication attempts over the last 5 minutes across "
                "replicas (auth_success_rate).",
                runbooks=("HighAuthFailureRate",),
                thresholds=steps(RED, (0.7, YELLOW), (0.9, GREEN)),
                width=4,
            ),
            Panel(
                "Tokens issued (range)",
                "stat",
                [target(in_range("tokens_generated_total"))],
                "short",
                "Access and refresh tokens issued in the time range.",
                thresholds=steps(BLUE),
                width=4,
            ),
            Panel(
                "Organizations deleted (range)",
                "stat",
                [target(in_range("organizations_deleted_total"))],
                "short",
                "Organizations deleted (soft) in the time range: churn.",
                thresholds=steps(GREEN, (1, YELLOW)),
                width=4,
            ),
            Row("Trends"),
            Panel(
                "Active users by organization (top 10)",
                "timeseries",
                [target(f"topk(10, {by_org})", "{{organization_id}}")],
                "short",
                "The ten busiest organizations. Beyond METRICS_MAX_ORGANIZATION_LABELS "
                "(100) ids, organizations are folded into 'other'.",
            ),
            Panel(
                "New users by organization",
                "timeseries",
                [
                    target(
                        increase_sum("new_users_total", ORG, by="organization_id"),
                        "{{organization_id}}",
                    )
                ],
                "short",
                "Users created per interval, by organization.",
                stack=True,
            ),
            Panel(
                "Logins by method and outcome",
                "timeseries",
                [
                    target(
                        rate_sum("auth_attempts_total", by="method, status"),
                        "{{method}} {{status}}",
                    )
                ],
                "ops",
                "Authentication attempts per second.",
                runbooks=("HighAuthFailureRate",),
            ),
            Panel(
                "Tokens issued and validated",
                "timeseries",
                [
                    target(
                        rate_sum("tokens_generated_total", by="token_type"), "issued {{token_type}}"
                    ),
                    target(rate_sum("tokens_validated_total", by="status"), "validated {{status}}"),
                ],
                "ops",
                "Tokens issued by type and access-token validations by outcome (success, "
                "failure, expired).",
                runbooks=("TokenValidationFailureSpike",),
            ),
            Panel(
                "SSO attempts by provider type",
                "timeseries",
                [
                    target(
                        rate_sum("sso_attempts_total", by="provider_type, status"),
                        "{{provider_type}} {{status}}",
                    )
                ],
                "ops",
                "SSO logins per second (OIDC, OAuth2, SAML) by outcome.",
            ),
            Panel(
                "Session length",
                "timeseries",
                [
                    target(quantile(0.5, "session_duration_seconds"), "median"),
                    target(quantile(0.95, "session_duration_seconds"), "p95"),
                ],
                "s",
                "Length of sessions ended by logout or refresh-token reuse revocation.",
            ),
            Panel(
                "Top API endpoints",
                "bargauge",
                [
                    target(
                        "topk(10, sum by (endpoint, method) "
                        f"(rate(api_calls_by_endpoint_total{selector()}[$__rate_interval])))",
                        "{{method}} {{endpoint}}",
                        instant=True,
                    )
                ],
                "reqps",
                "The ten most called API routes (api_calls_by_endpoint_total).",
                width=24,
            ),
        ],
    )

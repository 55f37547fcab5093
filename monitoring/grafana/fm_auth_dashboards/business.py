"""Business: tenants, users, sign-ups, logins, tokens and API usage."""

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
    in_range,
    increase_sum,
    quantile,
    rate_sum,
    selector,
    standard_annotations,
)
from .shared import (
    ORG,
    variables,
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

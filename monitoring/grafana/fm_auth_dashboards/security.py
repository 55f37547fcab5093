"""Security: login failures, brute force, lockouts, stuffing, token abuse, SIEM drops."""

from __future__ import annotations

from .kit import (
    GREEN,
    INSTANCE_VARIABLE,
    JSON,
    ORANGE,
    RED,
    YELLOW,
    Panel,
    Row,
    dashboard,
    datasource_variable,
    steps,
    target,
)
from .queries import (
    auth_failure_ratio,
    in_range,
    increase_sum,
    rate_sum,
    ratio,
    security_events,
    standard_annotations,
)

# Every event type of security_events_total, with the alert that watches it (if any)
# and the count in the time range from which the stat turns yellow / red.
SECURITY_EVENTS = (
    ("brute_force_detected", "Brute force detected", "BruteForceAttackDetected", 1, 1),
    ("account_locked", "Accounts locked", "AccountLockoutSpike", 1, 20),
    ("credential_stuffing_detected", "Credential stuffing", "CredentialStuffingDetected", 1, 1),
    ("rate_limited", "Rate limited requests", "", 1, 100),
    (
        "privilege_escalation_attempt",
        "Privilege escalation attempts",
        "PrivilegeEscalationBurst",
        1,
        5,
    ),
    ("cross_tenant_access", "Cross-tenant access attempts", "", 1, 5),
    ("refresh_token_reuse", "Refresh token reuse", "RefreshTokenReuseDetected", 1, 1),
)


def security() -> JSON:
    event_stats = [
        Panel(
            f"{title} (range)",
            "stat",
            [target(security_events(event_type))],
            "short",
            f"Events of type {event_type} (security_events_total) in the time range.",
            runbooks=(alert,) if alert else (),
            thresholds=steps(GREEN, (yellow, YELLOW), (red, RED))
            if yellow < red
            else steps(GREEN, (red, RED)),
            width=4,
        )
        for event_type, title, alert, yellow, red in SECURITY_EVENTS
    ]
    failure = 'status="failure"'
    refused = 'status!="success"'
    return dashboard(
        uid="fm-auth-security",
        title="FaultMaven Auth — Security",
        description="Login failures, brute force, lockouts, stuffing, token abuse, SIEM.",
        variables=[datasource_variable(), INSTANCE_VARIABLE],
        annotations=standard_annotations(),
        runbooks=tuple(alert for _, _, alert, _, _ in SECURITY_EVENTS if alert),
        panels=[
            Row("Security events in the time range"),
            *event_stats,
            Panel(
                "Failed logins (range)",
                "stat",
                [target(in_range("auth_attempts_total", failure))],
                "short",
                "Refused authentication attempts in the time range (every reason).",
                runbooks=("HighAuthFailureRate",),
                thresholds=steps(GREEN, (50, YELLOW), (500, RED)),
                width=4,
            ),
            Panel(
                "Auth failure ratio (now)",
                "stat",
                [target(auth_failure_ratio())],
                "percentunit",
                "Share of authentication attempts refused; HighAuthFailureRate fires above 30 %.",
                runbooks=("HighAuthFailureRate",),
                thresholds=steps(GREEN, (0.1, YELLOW), (0.3, RED)),
                width=4,
            ),
            Panel(
                "SIEM events dropped (range)",
                "stat",
                [target(in_range("siem_events_dropped_total"))],
                "short",
                "Security events not shipped to the SIEM (buffer full or destination "
                "down). Any drop is a gap in the SIEM's record.",
                thresholds=steps(GREEN, (1, RED)),
                width=4,
            ),
            Row("Over time"),
            Panel(
                "Security events by type",
                "timeseries",
                [target(increase_sum("security_events_total", by="event_type"), "{{event_type}}")],
                "short",
                "Security events per interval by type.",
                runbooks=("BruteForceAttackDetected", "CredentialStuffingDetected"),
                stack=True,
            ),
            Panel(
                "Failed logins by method",
                "timeseries",
                [
                    target(rate_sum("auth_attempts_total", failure, by="method"), "{{method}}"),
                    target(rate_sum("auth_attempts_total", 'status="success"'), "all successes"),
                ],
                "ops",
                "Refused attempts per second by method, against successes.",
                runbooks=("HighAuthFailureRate",),
            ),
            Panel(
                "Auth failure ratio",
                "timeseries",
                [target(auth_failure_ratio(), "failure ratio")],
                "percentunit",
                "sum(rate(failures)) / sum(rate(attempts)); dashed line: the 30 % alert.",
                runbooks=("HighAuthFailureRate",),
                thresholds=steps(GREEN, (0.3, RED)),
                min=0,
            ),
            Panel(
                "Token validations refused",
                "timeseries",
                [target(rate_sum("tokens_validated_total", refused, by="status"), "{{status}}")],
                "ops",
                "Access tokens refused per second: failure (bad signature, malformed, "
                "revoked, wrong type) and expired (normal at a low rate).",
                runbooks=("TokenValidationFailureSpike",),
            ),
            Panel(
                "Token validation failure ratio",
                "timeseries",
                [target(ratio("tokens_validated_total", 'status="failure"'), "failure ratio")],
                "percentunit",
                "Share of validations that failed, expired tokens not counted. "
                "TokenValidationFailureSpike fires above 20 % (with more than 0.1 failures/s): "
                "forged or replayed tokens.",
                runbooks=("TokenValidationFailureSpike",),
                thresholds=steps(GREEN, (0.2, RED)),
                min=0,
            ),
            Panel(
                "Refused requests by route",
                "timeseries",
                [
                    target(
                        rate_sum(
                            "http_requests_total", 'status=~"401|403|404|429"', by="status, handler"
                        ),
                        "{{status}} {{handler}}",
                    )
                ],
                "reqps",
                "401 (bad credentials or token), 403 (permission), 404 (including "
                "another tenant's ids) and 429 (lockout, rate limit) by route.",
                runbooks=("PrivilegeEscalationBurst",),
            ),
            Panel(
                "SIEM events dropped by destination",
                "timeseries",
                [
                    target(
                        increase_sum("siem_events_dropped_total", by="destination"),
                        "{{destination}}",
                    )
                ],
                "short",
                "Security events lost per interval, by destination (syslog, logstash).",
                thresholds=steps(GREEN, (1, ORANGE)),
            ),
        ],
    )

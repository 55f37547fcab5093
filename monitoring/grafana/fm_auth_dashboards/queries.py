"""PromQL shared by the dashboards, written once so every panel asks the same question.

Rules kept here (the seed guide got each of them wrong at least once):
- error and failure rates are ratios of sums, ``sum(rate(bad)) / sum(rate(all))``, with
  exact status codes (``status=~"5.."``), never a raw rate or a grouped ``5xx`` label;
- percentiles aggregate the buckets first: ``histogram_quantile(q, sum by (le) (rate(..)))``;
- gauges computed from shared state (``active_users_total``, ``organizations_total``,
  ``auth_success_rate``) hold the same value on every replica, so they are combined with
  ``max`` across instances, never summed.
"""

from __future__ import annotations

from .kit import JOB, JSON, SERVICE, annotation

RATE = "$__rate_interval"

# Service-level objectives and burn-rate thresholds, the same as the alert rules'
# (monitoring/prometheus/rules/slo.yml: AuthAvailabilitySLO*Burn, AuthLatencySLO*Burn).
AVAILABILITY_SLO = 0.999  # share of requests not answered 5xx
LATENCY_SLO = 0.95  # share of requests answered within LATENCY_SLO_SECONDS
LATENCY_SLO_SECONDS = "0.2"  # an http_request_duration_seconds bucket boundary
FAST_BURN = 14.4  # over 1 h (confirmed over 5 m): 2 % of a 30-day budget in an hour
FAST_BURN_6H = 6.0  # over 6 h (confirmed over 30 m), also paging: 5 % in six hours
SLOW_BURN = 3.0  # over 1 d (confirmed over 2 h), a ticket: 10 % in a day
BURN_WINDOWS = ("5m", "1h", "6h", "1d")


def selector(extra: str = "") -> str:
    return "{" + SERVICE + (f", {extra}" if extra else "") + "}"


def _sum(by: str) -> str:
    return f"sum by ({by}) " if by else "sum"


def rate_sum(metric: str, extra: str = "", by: str = "", window: str = RATE) -> str:
    return f"{_sum(by)}(rate({metric}{selector(extra)}[{window}]))"


def increase_sum(metric: str, extra: str = "", by: str = "", window: str = RATE) -> str:
    return f"{_sum(by)}(increase({metric}{selector(extra)}[{window}]))"


def ratio(metric: str, bad: str, all_: str = "", window: str = RATE) -> str:
    """Share of ``metric`` matching ``bad``; 0 (not "no data") when nothing went wrong."""
    numerator = rate_sum(metric, bad, window=window)
    return f"({numerator} or vector(0)) / {rate_sum(metric, all_, window=window)}"


def quantile(q: float, histogram: str, by: str = "", extra: str = "") -> str:
    labels = "le" + (f", {by}" if by else "")
    return (
        f"histogram_quantile({q}, sum by ({labels}) "
        f"(rate({histogram}_bucket{selector(extra)}[{RATE}])))"
    )


def http_error_ratio(window: str = RATE) -> str:
    return ratio("http_requests_total", 'status=~"5.."', window=window)


def auth_failure_ratio(window: str = RATE) -> str:
    return ratio("auth_attempts_total", 'status="failure"', window=window)


def latency_sli(window: str) -> str:
    """Share of requests answered within the latency SLO's bucket boundary."""
    boundary = f'le="{LATENCY_SLO_SECONDS}"'
    fast = rate_sum("http_request_duration_seconds_bucket", boundary, window=window)
    return f"{fast} / {rate_sum('http_request_duration_seconds_count', window=window)}"


def availability_burn(window: str) -> str:
    return f"({http_error_ratio(window)}) / {1 - AVAILABILITY_SLO:.4g}"


def latency_burn(window: str) -> str:
    return f"(1 - ({latency_sli(window)})) / {1 - LATENCY_SLO:.4g}"


def in_range(counter: str, extra: str = "") -> str:
    """How much ``counter`` grew over the dashboard's time range; 0 rather than no data."""
    return f"{increase_sum(counter, extra, window='$__range')} or vector(0)"


def security_events(event_type: str) -> str:
    return in_range("security_events_total", f'event_type="{event_type}"')


# The alert rules (monitoring/prometheus/rules) by name; each has a runbook at
# docs/runbooks/<name>.md, linked from the panels that show what the alert watches.
ALERT_NAMES = (
    "HighErrorRate",
    "HighLatency",
    "ServiceDown",
    "DatabaseConnectionFailure",
    "HighAuthFailureRate",
    "RedisDown",
    "DiskSpaceLow",
    "HighMemoryUsage",
    "BruteForceAttackDetected",
    "CredentialStuffingDetected",
    "AccountLockoutSpike",
    "RefreshTokenReuseDetected",
    "PrivilegeEscalationBurst",
    "TokenValidationFailureSpike",
    "AuthServiceDatabaseUnreachable",
    "AuthServiceRedisUnreachable",
    "AuthAvailabilitySLOFastBurn",
    "AuthAvailabilitySLOSlowBurn",
    "AuthLatencySLOFastBurn",
    "AuthLatencySLOSlowBurn",
    "RequestsRefusedAtCapacity",
)


def standard_annotations() -> list[JSON]:
    """Deployments (a new ``build_info`` version), restarts and firing alerts."""
    build = f'build_info{{job="{JOB}"}}'
    return [
        annotation(
            "Deployments",
            f"group by (version, commit) ({build}) "
            f"unless group by (version, commit) ({build} offset 5m)",
            "Deployed {{version}}",
            "commit {{commit}}",
            "blue",
        ),
        annotation(
            "Restarts",
            f'changes(process_start_time_seconds{{job="{JOB}"}}[2m]) > 0',
            "Restart of {{instance}}",
            "the process start time changed",
            "orange",
        ),
        annotation(
            "Firing alerts",
            f'ALERTS{{alertstate="firing", alertname=~"{"|".join(ALERT_NAMES)}"}}',
            "{{alertname}}",
            "{{alertname}} is firing",
            "red",
        ),
    ]

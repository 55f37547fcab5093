"""The rules query what the service really exports.

A rule on a misspelt metric never fires and promtool cannot tell, so every metric name
the rules read from the auth-service job must appear in a fresh app's `/metrics`. The
counters alerts watch with `increase()` must also be there at 0 before the first event:
a series that is born at 1 has no increase, and the first brute force after a restart
would go unnoticed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from faultmaven_auth.config import Settings
from faultmaven_auth.security.events import SecurityEventType
from tests.conftest import client_for, running_app
from tests.monitoring.stack import load_yaml, rule_files

# Series from other jobs (exporters, Prometheus itself), not the service.
OTHER_JOBS = re.compile(r"^(up|pg_|redis_|node_)")
PROMQL_WORDS = {
    "sum", "by", "on", "and", "or", "unless", "rate", "increase", "histogram_quantile",
    "without", "ignoring", "group_left", "group_right", "offset", "bool", "le", "job",
    "status", "event_type", "dependency", "fstype", "inf", "label_replace", "reason",
}  # fmt: skip


def metric_names_in_rules() -> set[str]:
    names: set[str] = set()
    for path in rule_files():
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                expr = re.sub(r'"[^"]*"', "", rule["expr"])  # label values are not names
                expr = re.sub(r"\[[^\]]*\]", "", expr)  # nor range durations
                for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
                    if ":" in word or word.lower() in PROMQL_WORDS or OTHER_JOBS.match(word):
                        continue  # recording rules, PromQL, other jobs' series
                    names.add(re.sub(r"_(bucket|count|sum)$", "", word))
    return names


@pytest.fixture
async def metrics_text(backend_settings: Settings) -> AsyncIterator[str]:
    prefix = f"{backend_settings.kv_key_prefix}r{secrets.token_hex(4)}:"
    settings = backend_settings.model_copy(update={"kv_key_prefix": prefix})
    async with running_app(settings) as app, client_for(app) as http:
        response = await http.get("/metrics")
        assert response.status_code == 200
        yield response.text


async def test_rules_read_metrics_the_service_exports(metrics_text: str) -> None:
    """Every service metric named in a rule is exported (histograms by family name)."""
    exported = {family.name for family in text_string_to_metric_families(metrics_text)}
    # The parser names counter families without their _total suffix.
    exported |= {f"{name}_total" for name in exported}
    missing = metric_names_in_rules() - exported
    assert not missing, f"rules query metrics the service does not export: {missing}"


async def test_alerted_counters_start_at_zero(metrics_text: str) -> None:
    """Security events, token validations and login attempts are exported at 0 at start."""
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
    }
    expected = [
        ("security_events_total", (("event_type", event.value),)) for event in SecurityEventType
    ]
    expected += [
        ("tokens_validated_total", (("status", status),))
        for status in ("success", "failure", "expired")
    ]
    expected += [
        ("auth_attempts_total", (("method", method), ("status", status)))
        for method in ("password", "refresh")
        for status in ("success", "failure")
    ]
    for key in expected:
        assert samples.get(key) == 0, key


def test_the_rule_scan_finds_the_service_metrics() -> None:
    """The name scan above is not vacuous: it sees the metrics the alerts are built on."""
    assert {
        "http_requests_total",
        "http_request_duration_seconds",
        "auth_attempts_total",
        "tokens_validated_total",
        "security_events_total",
        "dependency_up",
    } <= metric_names_in_rules()

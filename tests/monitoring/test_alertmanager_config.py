"""monitoring/alertmanager/alertmanager.yml: valid, routed by severity, no secret inside,
and its inhibitions hold in a real Alertmanager.

amtool checks the file and resolves each alert of the rule files (with its own labels) to
the receiver it would reach. The inhibition test posts alerts to a real Alertmanager
started with the shipped file and reads back which ones it suppressed.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.monitoring.stack import (
    ALERTMANAGER_CONFIG,
    alerting_rules,
    binary,
    load_yaml,
    running_alertmanager,
    wait_until,
)

RECEIVER_BY_SEVERITY = {"critical": "pagerduty-critical", "warning": "slack-warnings"}


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("amtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def routed_receivers(labels: dict[str, str]) -> list[str]:
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        *(f"{name}={value}" for name, value in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


def test_amtool_accepts_the_configuration() -> None:
    """`amtool check-config` accepts the shipped file."""
    result = amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("severity", "receiver"), sorted(RECEIVER_BY_SEVERITY.items()))
def test_severity_reaches_its_receiver(severity: str, receiver: str) -> None:
    """critical pages through PagerDuty, warning goes to Slack."""
    labels = {"alertname": "Anything", "service": "auth-service", "severity": severity}
    assert routed_receivers(labels) == [receiver]


def test_unknown_severity_still_reaches_people() -> None:
    """An alert without a known severity falls back to Slack rather than nowhere."""
    assert routed_receivers({"alertname": "Anything", "severity": "info"}) == ["slack-warnings"]


@pytest.mark.parametrize("name", sorted(alerting_rules()))
def test_each_alert_reaches_the_receiver_of_its_severity(name: str) -> None:
    """Every alert of the rule files, with its own labels, reaches the intended receiver."""
    labels = {"alertname": name, **alerting_rules()[name]["labels"]}
    assert routed_receivers(labels) == [RECEIVER_BY_SEVERITY[labels["severity"]]]


def test_grouping_and_repeat_follow_the_runbooks() -> None:
    """Grouped by alertname, cluster and service; repeated every 12 hours."""
    route = load_yaml(ALERTMANAGER_CONFIG)["route"]
    assert route["group_by"] == ["alertname", "cluster", "service"]
    assert route["repeat_interval"] == "12h"


def test_no_secret_is_committed() -> None:
    """The PagerDuty key and the Slack URL are read from files, never written inline."""
    receivers = {r["name"]: r for r in load_yaml(ALERTMANAGER_CONFIG)["receivers"]}
    for pagerduty in receivers["pagerduty-critical"]["pagerduty_configs"]:
        assert "routing_key" not in pagerduty
        assert "service_key" not in pagerduty
        assert pagerduty["routing_key_file"].startswith("/etc/alertmanager/secrets/")
    for slack in receivers["slack-warnings"]["slack_configs"]:
        assert "api_url" not in slack
        assert slack["api_url_file"].startswith("/etc/alertmanager/secrets/")
    text = ALERTMANAGER_CONFIG.read_text()
    assert "hooks.slack.com" not in text


def _alert(name: str, severity: str, service: str = "auth-service") -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {
            "alertname": name,
            "severity": severity,
            "service": service,
            "cluster": "test",
        },
        "annotations": {"summary": name},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }


def test_service_down_inhibits_the_alerts_it_causes(tmp_path: Path) -> None:
    """With ServiceDown firing, the errors, latency, login failures and SLO burns of the
    same service are suppressed; another service's alerts are not."""
    caused = [
        "HighErrorRate",
        "HighLatency",
        "HighAuthFailureRate",
        "AuthServiceDatabaseUnreachable",
        "AuthAvailabilitySLOFastBurn",
        "AuthLatencySLOSlowBurn",
    ]
    severities = {name: rule["labels"]["severity"] for name, rule in alerting_rules().items()}
    alerts = [_alert("ServiceDown", "critical")]
    alerts += [_alert(name, severities[name]) for name in caused]
    alerts += [_alert("HighErrorRate", "critical", service="billing")]
    alerts += [_alert("BruteForceAttackDetected", severities["BruteForceAttackDetected"])]
    with running_alertmanager(ALERTMANAGER_CONFIG, tmp_path) as url:
        httpx.post(f"{url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

        def states() -> dict[tuple[str, str], str] | None:
            listed = httpx.get(f"{url}/api/v2/alerts", timeout=5).json()
            found = {
                (a["labels"]["alertname"], a["labels"]["service"]): a["status"]["state"]
                for a in listed
            }
            return found if len(found) == len(alerts) else None

        # Inhibition is computed on read; give the ingest a moment to list everything.
        state = wait_until(states, timeout=10, what="alerts listed by Alertmanager")
    assert state[("ServiceDown", "auth-service")] == "active"
    for name in caused:
        assert state[(name, "auth-service")] == "suppressed", name
    assert state[("HighErrorRate", "billing")] == "active"
    assert state[("BruteForceAttackDetected", "auth-service")] == "active"

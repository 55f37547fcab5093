"""The Prometheus configuration and rules, checked by promtool and by their own contract.

promtool checks the scrape configuration and every rule file, then runs the unit tests in
monitoring/prometheus/tests/ against the real rule files. The rest reads the YAML: the
alert names others build on, the labels and annotations every alert carries, a firing and
a silent test case for every alert, and a runbook behind every runbook_url.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.stack import (
    PROMETHEUS_DIR,
    ROOT,
    RULE_TESTS_DIR,
    RULES_DIR,
    RUNBOOK_BASE,
    RUNBOOKS_DIR,
    alerting_rules,
    binary,
    load_yaml,
    rule_files,
)

# Dashboards, runbooks and the Alertmanager inhibitions are written against these names.
EXPECTED_ALERTS = {
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
}

SCRAPE_TARGETS = {
    "auth-service": "auth-service:8000",
    "postgres": "postgres-exporter:9187",
    "redis": "redis-exporter:9121",
    "node": "node-exporter:9100",
    "alertmanager": "alertmanager:9093",
}


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.test.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_scrape_configuration() -> None:
    """`promtool check config` accepts prometheus.yml, rule files included."""
    result = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", rule_files(), ids=lambda path: path.name)
def test_promtool_accepts_each_rule_file(path: Path) -> None:
    """`promtool check rules` accepts every rule file."""
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    """Every `promtool test rules` file passes against the real rule files."""
    files = rule_test_files()
    assert files, "no rule tests in monitoring/prometheus/tests"
    result = promtool("test", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_configuration_names_the_compose_targets() -> None:
    """Jobs and targets are the ones the compose stack and the alerts use; rules and
    Alertmanager are wired in."""
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    targets = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
    for job, target in SCRAPE_TARGETS.items():
        assert targets.get(job) == [target], job
    assert config["rule_files"] == ["rules/*.yml"]
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]


def test_alert_names_are_the_contract() -> None:
    """The rule files define exactly the alert names dashboards and runbooks use."""
    assert set(alerting_rules()) == EXPECTED_ALERTS


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_alert_carries_severity_service_and_annotations(name: str) -> None:
    """Labels severity and service, annotations summary, description and runbook_url."""
    rule = alerting_rules()[name]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["labels"]["service"] == "auth-service"
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}{name}.md"
    # A value shown to people is humanized, never a raw float like 0.0712345.
    for text in (annotations["summary"], annotations["description"]):
        for use in re.findall(r"{{[^}]*\$value[^}]*}}", text):
            assert re.search(r"humanize|printf", use), f"{name}: raw $value in {use}"


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_alert_has_a_runbook(name: str) -> None:
    """runbook_url points at docs/runbooks/<AlertName>.md, which exists and is indexed."""
    runbook = RUNBOOKS_DIR / f"{name}.md"
    assert runbook.is_file(), f"missing {runbook.relative_to(ROOT)}"
    assert runbook.read_text().startswith(f"# {name}")
    assert f"({name}.md)" in (RUNBOOKS_DIR / "README.md").read_text()


def rule_test_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in rule_test_files():
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.append((path.name, case))
    return cases


def test_rule_tests_load_the_real_rule_files() -> None:
    """Rule tests name the files in rules/ (no second copy of the rules to drift)."""
    for path in rule_test_files():
        for name in load_yaml(path)["rule_files"]:
            resolved = (path.parent / name).resolve()
            assert resolved.parent == RULES_DIR.resolve(), f"{path.name}: {name}"
            assert resolved.is_file(), f"{path.name}: {name}"


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_every_alert_fires_and_stays_silent_in_a_rule_test(name: str) -> None:
    """Each alert has a case where it fires (labels and rendered annotations stated) and
    one where it stays silent."""
    cases = [case for _, case in rule_test_cases() if case["alertname"] == name]
    firing = [case for case in cases if case.get("exp_alerts")]
    silent = [case for case in cases if not case.get("exp_alerts")]
    assert firing, f"{name}: no rule test where it fires"
    assert silent, f"{name}: no rule test where it stays silent"
    rule = alerting_rules()[name]
    for case in firing:
        for alert in case["exp_alerts"]:
            for label, value in rule["labels"].items():
                assert alert["exp_labels"].get(label) == value, f"{name}: label {label}"
            annotations = alert["exp_annotations"]
            assert set(annotations) == {"summary", "description", "runbook_url"}
            assert "{{" not in annotations["summary"] + annotations["description"]

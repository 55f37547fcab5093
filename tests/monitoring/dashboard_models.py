"""The committed Grafana dashboards as data, and the names the tests hold them to."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "monitoring" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
JOB = "auth-service"
DATASOURCE_UID = "faultmaven-prometheus"

TITLES = {
    "overview": "FaultMaven Auth — Overview",
    "performance": "FaultMaven Auth — Performance",
    "business": "FaultMaven Auth — Business",
    "infrastructure": "FaultMaven Auth — Infrastructure",
    "security": "FaultMaven Auth — Security",
}
RUNBOOK = re.compile(
    r"^https://github\.com/faultmaven/faultmaven-auth/blob/main/docs/runbooks/(\w+)\.md$"
)
ALERT_NAMES = {
    "HighErrorRate", "HighLatency", "ServiceDown", "DatabaseConnectionFailure",
    "HighAuthFailureRate", "RedisDown", "DiskSpaceLow", "HighMemoryUsage",
    "BruteForceAttackDetected", "CredentialStuffingDetected", "AccountLockoutSpike",
    "RefreshTokenReuseDetected", "PrivilegeEscalationBurst", "TokenValidationFailureSpike",
    "AuthServiceDatabaseUnreachable", "AuthServiceRedisUnreachable",
    "AuthAvailabilitySLOFastBurn", "AuthAvailabilitySLOSlowBurn",
    "AuthLatencySLOFastBurn", "AuthLatencySLOSlowBurn", "RequestsRefusedAtCapacity",
}  # fmt: skip
SECURITY_EVENT_TYPES = (
    "brute_force_detected", "account_locked", "credential_stuffing_detected", "rate_limited",
    "privilege_escalation_attempt", "cross_tenant_access", "refresh_token_reuse",
)  # fmt: skip


def load_generator() -> Any:
    sys.path.insert(0, str(GRAFANA))
    try:
        return importlib.import_module("generate")
    finally:
        sys.path.remove(str(GRAFANA))


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target, variable and annotation of ``dashboard``."""
    for panel in panels(dashboard):
        for target in panel["targets"]:
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", label_values_selector(variable)
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


def label_values_selector(variable: dict[str, Any]) -> str:
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
    assert match, variable["query"]
    return match.group(1)


DASHBOARD_MODELS = load_dashboards()

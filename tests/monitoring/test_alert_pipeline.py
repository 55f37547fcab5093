"""End to end: the service's real metrics, the project's rules, a real Prometheus and a
real Alertmanager deliver alerts to a webhook.

Everything runs on 127.0.0.1 on free ports with its data in the test's temporary
directory: `faultmaven-auth serve` (per-address limits off, so only the per-account
lockout reacts), Prometheus scraping it every second and evaluating every second, and
Alertmanager routing every alert to a small HTTP receiver in this test.

The rules are the project's files. Their `for:` durations (up to 15 minutes) would make
the test wait that long, so the test writes a temporary copy derived from them at run
time: each `for:` is divided by 60 (minutes become seconds), nothing else changes. No
hand-maintained copy exists; a change to the real rules is what this test runs.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import PASSWORD, unique_email
from tests.monitoring.stack import (
    RULES_DIR,
    RUNBOOK_BASE,
    WebhookReceiver,
    binary,
    load_yaml,
    running_alertmanager,
    running_prometheus,
    running_webhook_receiver,
    wait_until,
)
from tests.support.server import migrate, running_server, server_env

WRONG = "Wrong-Password-123"
FOR_SCALE = 60  # minutes become seconds
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A Prometheus duration ("1m", "1h30m") in seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(int(number) * UNITS[unit] for number, unit in parts)


def write_fast_rules(target: Path) -> None:
    """The project's rule files with every `for:` divided by FOR_SCALE (at least 1 s)."""
    target.mkdir()
    for path in sorted(RULES_DIR.glob("*.yml")):
        document = load_yaml(path)
        for group in document["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{max(1, round(seconds(rule['for']) / FOR_SCALE))}s"
        (target / path.name).write_text(yaml.safe_dump(document, sort_keys=False))


def write_prometheus_config(path: Path, rules: Path, service: str, alertmanager: str) -> None:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": "auth-service", "static_configs": [{"targets": [service]}]},
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def write_alertmanager_config(path: Path, webhook_url: str) -> None:
    config = {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": False}]}
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
    answer.raise_for_status()
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def received(webhook: WebhookReceiver, alertname: str, timeout: float) -> dict[str, Any]:
    alerts = wait_until(
        lambda: webhook.alerts(alertname), timeout=timeout, what=f"{alertname} at the webhook"
    )
    alert: dict[str, Any] = alerts[0]
    return alert


def test_alerts_travel_from_the_service_to_the_webhook(tmp_path: Path) -> None:
    """Failed logins raise BruteForceAttackDetected and HighAuthFailureRate, a stopped
    service raises ServiceDown; each arrives with its labels and rendered annotations."""
    binary("prometheus")
    binary("alertmanager")
    rules = tmp_path / "rules"
    write_fast_rules(rules)
    env = server_env(tmp_path, RATE_LIMIT_ENABLED="false")
    migrate(env)

    with ExitStack() as stack:
        webhook = stack.enter_context(running_webhook_receiver())
        write_alertmanager_config(tmp_path / "alertmanager.yml", webhook.url)
        alertmanager = stack.enter_context(
            running_alertmanager(tmp_path / "alertmanager.yml", tmp_path)
        )
        service_stack = stack.enter_context(ExitStack())
        server = service_stack.enter_context(running_server(env, tmp_path / "server.log"))
        service_address = server.base_url.removeprefix("http://")
        write_prometheus_config(
            tmp_path / "prometheus.yml",
            rules,
            service_address,
            alertmanager.removeprefix("http://"),
        )
        prometheus = stack.enter_context(running_prometheus(tmp_path / "prometheus.yml", tmp_path))

        # The counters' zero must be scraped first, so the failures below are an increase;
        # ten seconds of zeros keep increase()'s extrapolation under 10 % (1 event reads 1).
        wait_until(
            lambda: query(
                prometheus,
                "count_over_time(security_events_total"
                '{job="auth-service", event_type="brute_force_detected"}[1m]) >= 10',
            ),
            timeout=30,
            what="ten scrapes of the service",
        )

        # (a) One account fails LOGIN_MAX_FAILURES (5) times: locked, brute force detected.
        email = unique_email("victim")
        registered = httpx.post(
            f"{server.base_url}/api/v1/auth/register",
            json={
                "organization_name": "Pipeline",
                "email": email,
                "password": PASSWORD,
                "full_name": "Victim",
            },
            timeout=30,
        )
        assert registered.status_code == 201, registered.text
        for _ in range(5):
            refused = httpx.post(
                f"{server.base_url}/api/v1/auth/login",
                json={"email": email, "password": WRONG},
                timeout=30,
            )
            assert refused.status_code == 401, refused.text

        brute_force = received(webhook, "BruteForceAttackDetected", timeout=30)
        assert brute_force["labels"] == {
            "alertname": "BruteForceAttackDetected",
            "job": "auth-service",
            "service": "auth-service",
            "severity": "warning",
        }
        assert brute_force["annotations"] == {
            "summary": "Brute-force login attempts: 1 account(s) reached the failure limit in 5m",
            "description": (
                "1 brute_force_detected events in the last 5 minutes: accounts reached the "
                "failed-login limit and were locked. Check the security log for the addresses "
                "and accounts involved."
            ),
            "runbook_url": f"{RUNBOOK_BASE}BruteForceAttackDetected.md",
        }

        failures = received(webhook, "HighAuthFailureRate", timeout=30)
        assert failures["labels"] == {
            "alertname": "HighAuthFailureRate",
            "job": "auth-service",
            "service": "auth-service",
            "severity": "warning",
        }
        assert failures["annotations"] == {
            "summary": "100% of authentication attempts fail",
            "description": (
                "100% of authentication attempts (auth_attempts_total, every method) failed "
                "over the last 5 minutes (threshold 30 %), for at least 10 minutes."
            ),
            "runbook_url": f"{RUNBOOK_BASE}HighAuthFailureRate.md",
        }
        assert not webhook.alerts("ServiceDown")

        # (b) The service stops: its scrapes fail and ServiceDown arrives.
        service_stack.close()
        down = received(webhook, "ServiceDown", timeout=30)
        assert down["labels"] == {
            "alertname": "ServiceDown",
            "instance": service_address,
            "job": "auth-service",
            "service": "auth-service",
            "severity": "critical",
        }
        assert down["annotations"] == {
            "summary": f"Auth service instance {service_address} is down",
            "description": (
                f"Prometheus has not been able to scrape {service_address} (job auth-service) "
                "for more than 1 minute: the process is down, unreachable, or /metrics is "
                "refused."
            ),
            "runbook_url": f"{RUNBOOK_BASE}ServiceDown.md",
        }

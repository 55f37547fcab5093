"""docs/monitoring.md matches the code: its queries parse and name real series, its
recording rules exist, and its `faultmaven-auth` commands are real commands.

Queries are checked by promtool (each becomes a recording rule in a scratch file) and by
name against the service's own /metrics, the project's recording rules, and the
exporters' documented prefixes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from faultmaven_auth.cli import main as cli_main
from faultmaven_auth.config import Settings
from tests.conftest import client_for, running_app
from tests.monitoring.stack import ROOT, binary, load_yaml, rule_files

GUIDE = ROOT / "docs" / "monitoring.md"
# Series of other jobs and of Prometheus itself, not the service's.
NOT_THE_SERVICE = re.compile(r"^(up|ALERTS|pg_|redis_up|redis_connected|node_)")
PROMQL_WORDS = {
    "sum", "by", "min", "max", "count", "rate", "increase", "histogram_quantile",
    "without", "on", "and", "or", "unless", "offset", "bool", "inf",
}  # fmt: skip


def guide_queries() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    return [block.strip() for block in re.findall(r"```promql\n(.*?)```", text, re.S)]


def recorded_names() -> set[str]:
    return {
        rule["record"]
        for path in rule_files()
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def series_names(query: str) -> set[str]:
    """Metric names a query reads (label matchers, values and durations left out)."""
    query = re.sub(r"\{[^}]*\}", "", query)
    query = re.sub(r"\[[^\]]*\]", "", query)
    query = re.sub(r"\((?:[a-z_, ]+)\)(?=\s*\()", "", query)  # by (...) / without (...)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", query))
    return {
        re.sub(r"_(bucket|sum|count)$", "", w) if not w.startswith("job:") else w
        for w in words
        if w.lower() not in PROMQL_WORDS and not NOT_THE_SERVICE.match(w)
    }


@pytest.fixture
async def exported(backend_settings: Settings) -> set[str]:
    """Sample names of /metrics after a few requests (a labelled series appears once used)."""
    async with running_app(backend_settings) as app, client_for(app) as http:
        for path in ("/health", "/ready", "/api/v1/auth/me"):
            await http.get(path)
        response = await http.get("/metrics")
        assert response.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        # Registered families count even before their first labelled sample (drops).
        names |= {sample.name for sample in family.samples}
        names |= {family.name, f"{family.name}_total"}
    return names


def test_the_guide_has_queries() -> None:
    assert len(guide_queries()) >= 10


def test_every_guide_query_parses(tmp_path: Path) -> None:
    """promtool accepts each query as a rule expression."""
    rules = {
        "groups": [
            {
                "name": "guide",
                "rules": [
                    {"record": f"guide:query_{n}", "expr": query}
                    for n, query in enumerate(guide_queries())
                ],
            }
        ]
    }
    scratch = tmp_path / "guide.yml"
    scratch.write_text(yaml.safe_dump(rules), encoding="utf-8")
    checked = subprocess.run(
        [binary("promtool"), "check", "rules", str(scratch)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_every_series_a_guide_query_reads_exists(exported: set[str]) -> None:
    """Exported by the service, recorded by our rules, or an exporter's / Prometheus's."""
    known = exported | recorded_names()
    for query in guide_queries():
        missing = series_names(query) - known
        assert not missing, f"{query}: {missing}"


def test_recording_rules_named_in_the_guide_exist() -> None:
    named = set(re.findall(r"job:[a-z_]+:[a-z0-9_]+", GUIDE.read_text(encoding="utf-8")))
    assert named
    assert named <= recorded_names(), named - recorded_names()


def test_every_command_in_the_guide_exists() -> None:
    """`faultmaven-auth <command> [<subcommand>] [--option]` names real commands and options."""
    text = GUIDE.read_text(encoding="utf-8")
    uses = re.findall(r"faultmaven-auth ((?:[a-z-]+ ?)+(?:--[a-z-]+)?)", text)
    assert uses
    for use in uses:
        words = use.split()
        command: click.Command = cli_main
        for word in words:
            if word.startswith("--"):
                options = {o for p in command.params for o in getattr(p, "opts", [])}
                assert word in options, f"faultmaven-auth {use}: no option {word}"
                break
            if not isinstance(command, click.Group):
                break
            sub = command.commands.get(word)
            assert sub is not None, f"faultmaven-auth {use}: no command {word!r}"
            command = sub

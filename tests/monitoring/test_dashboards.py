"""The Grafana dashboards: what an on-call engineer needs is there, and every query works.

Static checks read the committed JSON (which must equal ``generate.py``'s output) and the
provisioning files. The live check runs the service as a real process, drives a workload
over HTTP, lets a real Prometheus scrape it every second, then sends every panel,
variable and annotation query to Prometheus's HTTP API: each must evaluate without
error and may only use names the service exports (or exporters and Prometheus provide).
Grafana itself is not available here, so its variables are replaced as Grafana would.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import (
    REDIS_URL,
    check_redis,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
)
from tests.monitoring.dashboard_models import (
    ALERT_NAMES,
    DASHBOARD_MODELS,
    DASHBOARDS,
    DATASOURCE_UID,
    GRAFANA,
    JOB,
    ROOT,
    RUNBOOK,
    SECURITY_EVENT_TYPES,
    TITLES,
    load_generator,
    panels,
    queries,
)
from tests.monitoring.promql import exported_names, metric_names, selectors, substitute
from tests.monitoring.stack import binary
from tests.monitoring.workload import run_workload
from tests.support.prometheus_server import PrometheusServer, running_prometheus
from tests.support.server import migrate, running_server, server_env

# Series the service does not export, scraped from exporters under their own jobs
# (postgres_exporter, redis_exporter, node_exporter, cAdvisor, kube-state-metrics).
EXPORTER_PREFIXES = ("pg_", "redis_", "node_", "container_", "kube_")
# Series Prometheus writes itself: scrape health and the state of alerting rules.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})
# Service-side names under an exporter prefix: they must come from the service.
SERVICE_NAMES_WITH_EXPORTER_PREFIX = ("redis_pool_",)

# Panels the workload must fill: their selectors and labels match real series.
PANELS_WITH_DATA = {
    ("overview", "Request rate"),
    ("overview", "Requests by status"),
    ("overview", "Latency p50 / p95 / p99"),
    ("overview", "Authentication attempts by outcome"),
    ("overview", "Security events by type"),
    ("overview", "Organizations"),
    ("performance", "p95 latency by route"),
    ("performance", "Database statements by operation"),
    ("business", "Active users"),
    ("business", "Logins by method and outcome"),
    ("business", "Tokens issued and validated"),
    ("business", "Top API endpoints"),
    ("security", "Failed logins by method"),
    ("security", "Refused requests by route"),
    ("infrastructure", "Running versions"),
    ("infrastructure", "Dependencies (service view)"),
    ("infrastructure", "Process resident memory"),
    ("infrastructure", "Database pool"),
    ("infrastructure", "Redis pool"),
}


# -- static checks --------------------------------------------------------------------


def test_committed_json_is_what_the_generator_writes() -> None:
    """Each dashboards/*.json equals generate.py's output (edit the Python, not the JSON)."""
    generate = load_generator()
    built = generate.build_dashboards()
    assert sorted(built) == sorted(path.stem for path in DASHBOARDS.glob("*.json"))
    for name, model in built.items():
        assert (DASHBOARDS / f"{name}.json").read_text() == generate.render(model), name


def test_five_dashboards_with_their_titles_and_enough_panels() -> None:
    """Overview, Performance, Business, Infrastructure, Security; at least 8 panels each."""
    assert {name: d["title"] for name, d in DASHBOARD_MODELS.items()} == TITLES
    assert len({d["uid"] for d in DASHBOARD_MODELS.values()}) == 5
    for name, dashboard in DASHBOARD_MODELS.items():
        assert len(panels(dashboard)) >= 8, name


@pytest.mark.parametrize("name", sorted(TITLES))
def test_every_panel_has_a_unit_a_description_and_the_datasource(name: str) -> None:
    """Units, descriptions, the datasource variable on panels and targets, a query each."""
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(DASHBOARD_MODELS[name]):
        where = f"{name}: {panel['title']}"
        assert panel["fieldConfig"]["defaults"].get("unit"), where
        assert panel.get("description"), where
        assert panel["datasource"] == datasource, where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"] == datasource, where
            assert target["expr"].strip(), where


@pytest.mark.parametrize("name", sorted(TITLES))
def test_panels_do_not_overlap_and_ids_are_unique(name: str) -> None:
    """Grid positions fit the 24 columns without overlap; panel ids are unique."""
    every = DASHBOARD_MODELS[name]["panels"]
    assert len({panel["id"] for panel in every}) == len(every)
    taken: set[tuple[int, int]] = set()
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


@pytest.mark.parametrize("name", sorted(TITLES))
def test_template_variables(name: str) -> None:
    """datasource (default: the provisioned uid) and instance everywhere; every variable
    a query uses is defined, and every one defined is used."""
    dashboard = DASHBOARD_MODELS[name]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == DATASOURCE_UID
    instance = variables["instance"]
    assert instance["query"]["query"] == f'label_values(up{{job="{JOB}"}}, instance)'
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["query"]["query"].startswith("label_values(")
            assert variable["includeAll"]
            assert variable["allValue"] == ".*"
    if "organization" in variables:
        assert variables["organization"]["query"]["query"] == (
            f'label_values(active_users_total{{job="{JOB}", instance=~"$instance"}}, '
            "organization_id)"
        )
    used = {
        m.group(1) or m.group(2)
        for _, expr in queries(dashboard)
        for m in re.finditer(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", expr)
    }
    grafana_builtins = {"__rate_interval", "__interval", "__range", "__range_s"}
    assert used - grafana_builtins <= set(variables)
    assert set(variables) - {"datasource"} <= used


def test_organization_variable_where_tenants_are_shown() -> None:
    """Overview and Business, which show per-organization users, offer the variable."""
    for name in ("overview", "business"):
        names = {v["name"] for v in DASHBOARD_MODELS[name]["templating"]["list"]}
        assert "organization" in names, name


@pytest.mark.parametrize("name", sorted(TITLES))
def test_service_queries_select_the_scrape_job(name: str) -> None:
    """Every service series is selected with job="auth-service" and the instance filter."""
    for where, expr in queries(DASHBOARD_MODELS[name]):
        found = dict(selectors(expr))
        for metric in metric_names(expr):
            if is_exporter_metric(metric) or metric == "ALERTS":
                continue
            assert metric in found, f"{name} {where}: {metric} without a selector"
            assert f'job="{JOB}"' in found[metric], f"{name} {where}: {metric}"


@pytest.mark.parametrize("name", sorted(TITLES))
def test_queries_follow_the_metrics_contract(name: str) -> None:
    """Exact status codes, ratios of sums, bucket-first percentiles, exported names."""
    for where, expr in queries(DASHBOARD_MODELS[name]):
        for wrong in ("5xx", "active_users_gauge", "api_calls_by_endpoint{"):
            assert wrong not in expr, where
        quantiles = expr.count("histogram_quantile(")
        bucket_first = re.findall(
            r"histogram_quantile\([\d.]+, sum by \(le[,)][^(]*\(rate\(\w+_bucket\{[^}]*\}"
            r"\[\$__rate_interval\]\)\)\)",
            expr,
        )
        assert len(bucket_first) == quantiles, where
        if 'status=~"5.."' in expr:
            assert re.search(r"\) / sum", expr), f"{where}: an error rate must be a ratio"


def test_latency_kpis_have_their_thresholds() -> None:
    """p50 < 100 ms, p95 < 200 ms, p99 < 500 ms: red from each target on the KPI stats."""
    kpis = {
        panel["title"]: panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        for panel in panels(DASHBOARD_MODELS["performance"])
        if panel["type"] == "stat" and "KPI" in panel["title"]
    }
    expected = {"p50": 0.1, "p95": 0.2, "p99": 0.5}
    assert len(kpis) == 3
    for title, steps in kpis.items():
        limit = expected[title.split()[0]]
        assert {"color": "red", "value": limit} in steps, title
        assert f"< {limit * 1000:.0f} ms" in title


def test_security_dashboard_covers_every_event_type() -> None:
    """Each security_events_total event type, failed logins and SIEM drops are shown."""
    exprs = " ".join(expr for _, expr in queries(DASHBOARD_MODELS["security"]))
    for event_type in SECURITY_EVENT_TYPES:
        assert f'event_type="{event_type}"' in exprs, event_type
    assert re.search(r'auth_attempts_total\{[^}]*status="failure"', exprs)
    assert "siem_events_dropped_total" in exprs
    assert "sum by (event_type)" in exprs


def test_infrastructure_dashboard_covers_exporters_and_service_signals() -> None:
    """Exporter families, process metrics, pools, build info and dependency status."""
    names = {
        metric
        for _, expr in queries(DASHBOARD_MODELS["infrastructure"])
        for metric in metric_names(expr)
    }
    for required in (
        "pg_up", "redis_up", "redis_connected_clients", "redis_memory_used_bytes",
        "node_cpu_seconds_total", "db_pool_size", "db_pool_checked_out", "db_pool_overflow",
        "db_pool_wait_seconds_bucket", "redis_pool_connections", "redis_pool_max_connections",
        "build_info", "dependency_up",
    ):  # fmt: skip
        assert required in names, required
    for prefix in ("pg_stat_database_", "node_memory_", "node_filesystem_", "process_"):
        assert any(n.startswith(prefix) for n in names), prefix
    assert any(n.startswith("python_gc_") for n in names)


def test_deployments_are_annotated_from_build_info() -> None:
    """Every dashboard marks deployments (a new build_info version) on its graphs."""
    for name, dashboard in DASHBOARD_MODELS.items():
        exprs = {a["name"]: a.get("expr", "") for a in dashboard["annotations"]["list"]}
        assert "build_info" in exprs.get("Deployments", ""), name


def runbook_links() -> dict[str, set[str]]:
    """Alert name -> dashboards linking its runbook (dashboard or panel links)."""
    linked: dict[str, set[str]] = {}
    for name, dashboard in DASHBOARD_MODELS.items():
        links = [*dashboard["links"], *(k for p in panels(dashboard) for k in p["links"])]
        for link in links:
            if "runbooks" not in link.get("url", ""):
                continue
            match = RUNBOOK.match(link["url"])
            assert match, link["url"]
            linked.setdefault(match.group(1), set()).add(name)
    return linked


def test_every_alert_has_a_runbook_link_and_every_link_an_alert() -> None:
    """The runbook links name exactly the alert rules, each linked from some dashboard."""
    assert set(runbook_links()) == ALERT_NAMES


def test_runbook_links_match_the_rules_and_runbooks_in_the_repository() -> None:
    """Once the alert rules and runbooks are in the tree, the links point at real ones."""
    linked = set(runbook_links())
    runbooks = ROOT / "docs" / "runbooks"
    if runbooks.is_dir():
        missing = {alert for alert in linked if not (runbooks / f"{alert}.md").is_file()}
        assert not missing, f"runbooks linked but absent: {sorted(missing)}"
    # Files named _*.yml are samples for other tests (the PrometheusRule generator's).
    rule_files = [
        path
        for path in sorted((ROOT / "monitoring" / "prometheus").glob("**/rules/*.y*ml"))
        if not path.name.startswith("_")
    ]
    alerts = {
        rule["alert"]
        for path in rule_files
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", [])
        for rule in group.get("rules", [])
        if "alert" in rule
    }
    if alerts:
        assert linked == alerts


def test_provisioning_points_at_the_dashboards_and_the_datasource() -> None:
    """The data source has the uid the dashboards use; the provider loads their folder."""
    provisioning = GRAFANA / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == DATASOURCE_UID
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "FaultMaven Auth"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_data_sources_link_to_each_other_by_provisioned_uids() -> None:
    """Exemplars -> Tempo, traces -> Loki, log lines -> Tempo: every uid referred to exists."""
    sources = [
        source
        for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    uids = [source["uid"] for source in sources]
    assert len(uids) == len(set(uids))
    assert sum(bool(source.get("isDefault")) for source in sources) == 1
    referred = set(re.findall(r"'datasourceUid': '([\w-]+)'", repr(sources)))
    assert referred
    assert referred <= set(uids)
    expected_urls = {
        "prometheus": "http://prometheus:9090",
        "tempo": "http://tempo:3200",
        "loki": "http://loki:3100",
        "alertmanager": "http://alertmanager:9093",
    }
    assert {source["type"]: source["url"] for source in sources} == expected_urls


def test_the_guide_lists_every_dashboard_and_panel() -> None:
    """docs/dashboards.md names each dashboard, uid and panel title."""
    guide = (ROOT / "docs" / "dashboards.md").read_text()
    for dashboard in DASHBOARD_MODELS.values():
        assert dashboard["title"] in guide
        assert f"`{dashboard['uid']}`" in guide
        for panel in dashboard["panels"]:
            assert f"| {panel['title']} |" in guide or f"**{panel['title']}**" in guide, panel


def test_metric_names_reads_promql() -> None:
    """Functions, aggregations, labels, strings, durations and keywords are not names."""
    expr = (
        'histogram_quantile(0.95, sum by (le, handler) (rate(x_bucket{a="b(c)"}[5m]))) '
        "/ on (instance) group_left sum without (le) (y_total offset 1h) > bool 1e3 "
        "or vector(0) unless count(z{le=~'0.5'})"
    )
    assert metric_names(expr) == {"x_bucket", "y_total", "z"}
    assert substitute('rate(a{i=~"$instance"}[$__rate_interval])') == 'rate(a{i=~".*"}[1m])'


# -- live check against a real Prometheus scraping a real server ---------------------


def is_exporter_metric(name: str) -> bool:
    return name.startswith(EXPORTER_PREFIXES) and not name.startswith(
        SERVICE_NAMES_WITH_EXPORTER_PREFIX
    )


def evaluate_every_query(
    prometheus: PrometheusServer, exported: set[str]
) -> tuple[list[str], set[tuple[str, str]]]:
    """(errors, panels without data) over every query of every dashboard."""
    errors: list[str] = []
    empty: set[tuple[str, str]] = set()
    for name, dashboard in DASHBOARD_MODELS.items():
        for where, expr in queries(dashboard):
            query = substitute(expr)
            if where.startswith("variable"):
                answer = prometheus.series(query)
                data = answer.get("data")
            else:
                answer = prometheus.query(query)
                data = answer.get("data", {}).get("result")
            if answer.get("status") != "success":
                errors.append(f"{name} {where}: {answer.get('error')}\n  {query}")
            elif not data:
                empty.add((name, where.split("'")[1] if "'" in where else where))
            unknown = {
                metric
                for metric in metric_names(query)
                if metric not in exported
                and metric not in PROMETHEUS_SERIES
                and not is_exporter_metric(metric)
            }
            if unknown:
                errors.append(f"{name} {where}: not exported: {sorted(unknown)}")
    return errors, empty


def scrape_and_query(env: dict[str, str], tmp_path: Path) -> tuple[list[str], set[tuple[str, str]]]:
    """Migrate, serve, scrape the workload, then evaluate every query (errors, empty
    panels); the server and Prometheus are stopped on the way out."""
    migrate(env)
    with (
        running_server(env, tmp_path / "server.log") as server,
        running_prometheus(
            tmp_path / "prometheus", {JOB: [server.base_url.removeprefix("http://")]}
        ) as prometheus,
    ):
        prometheus.wait_for_scrapes(JOB, 1)
        run_workload(server.base_url)
        prometheus.wait_for_scrapes(JOB, 3)
        exported = exported_names(httpx.get(f"{server.base_url}/metrics").text)
        return evaluate_every_query(prometheus, exported)


async def test_every_query_evaluates_on_real_prometheus_with_exported_names(
    tmp_path: Path,
) -> None:
    """The service on PostgreSQL + Redis under a workload, scraped every second: every
    query succeeds, every name is exported (or comes from an exporter or Prometheus), and
    the panels the workload feeds return series."""
    binary("prometheus")  # fails under CI=true (skips elsewhere) when it is not installed
    await check_redis()
    database = await create_postgres_database()
    prefix = f"fmtest-dashboards:{secrets.token_hex(4)}:"
    env = server_env(
        tmp_path,
        DATABASE_URL=database.async_url,
        REDIS_URL=REDIS_URL,
        KV_KEY_PREFIX=prefix,
        RATE_LIMIT_ENABLED="false",
        # Computed gauges (active users, organizations) are cached; scrapes a second apart
        # should see the workload's.
        METRICS_CACHE_SECONDS="0",
        LOG_LEVEL="WARNING",
    )
    try:
        errors, empty = await asyncio.to_thread(scrape_and_query, env, tmp_path)
    finally:
        await drop_postgres_database(database.name)
        await delete_redis_prefix(prefix)
    assert not errors, "\n".join(errors)
    assert not PANELS_WITH_DATA & empty, sorted(PANELS_WITH_DATA & empty)

"""The deployment files agree with the code and with each other.

No Docker engine or cluster runs here (DESIGN §9), so: Kubernetes manifests are checked
against Kubernetes' own OpenAPI schemas (``kubernetes-validate``) and the Prometheus
Operator resources structurally; the compose stack, Dockerfile and log-shipping configs
are parsed and cross-checked - every mounted file exists, every Prometheus target is a
compose service listening on that port, every setting is one ``config.py`` knows, probes
and ports line up, and Loki gets only low-cardinality labels. Two pieces run for real:
the image's entry point script and its HEALTHCHECK command.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from faultmaven_auth.config import Settings
from faultmaven_auth.observability.logging import JsonFormatter, line_fields
from tests.monitoring.deploy_files import (
    COMPOSE_FILE,
    CRD_KINDS,
    KUBERNETES,
    MONITORING,
    PROMETHEUS_CONFIG,
    ROOT,
    bind_mounts,
    compose_services,
    container_ports,
    dockerfile_instructions,
    environment,
    interpolated_names,
    kubernetes_documents,
    kubernetes_object,
    labels_match,
    load_compose,
    mounted_host_path,
)

IN_CI = os.environ.get("CI", "").lower() == "true"
KUBERNETES_VERSION = "1.29"  # oldest schema set of kubernetes-validate>=1.29
JOB = "auth-service"  # DESIGN §5: the scrape job's name everywhere
# What a container must bind to be reachable; the scratch directory a read-only root needs.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - asserted, not bound
TMP = "/tmp"  # noqa: S108 - a mount path, not a file this test writes

# Names the contract with the Prometheus/Grafana configs fixes (service -> port).
CONTRACT_PORTS = {
    "auth-service": 8000,
    "postgres-exporter": 9187,
    "redis-exporter": 9121,
    "node-exporter": 9100,
    "alertmanager": 9093,
    "prometheus": 9090,
    "grafana": 3000,
}
# Host paths other than repository files that containers legitimately read.
HOST_PATHS = {"/", "/var/run/docker.sock"}
# Environment variables read by the service without being fields of Settings.
NON_SETTINGS_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR"}
# Other programs' variables the deployment guide mentions.
THIRD_PARTY_VARIABLES = {"COLLECTOR_OTLP_ENABLED"}
# Loki labels: bounded values only (DESIGN §6 fields like request_id stay in the line).
ALLOWED_LOKI_LABELS = {"job", "level", "service", "logger"}
PER_REQUEST_FIELDS = {
    "request_id", "trace_id", "span_id", "user_id", "organization_id", "endpoint",
    "method", "status_code", "duration_ms", "client_ip", "user_agent", "reason", "message",
}  # fmt: skip

SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}
SECRET_SETTINGS = {
    name.upper()
    for name, field in Settings.model_fields.items()
    if "SecretStr" in str(field.annotation)
}


def known_variable(name: str) -> bool:
    return name in SETTINGS_VARIABLES or name in NON_SETTINGS_VARIABLES


# --- Dockerfile --------------------------------------------------------------------


def test_dockerfile_builds_wheels_then_runs_slim_as_non_root() -> None:
    """Multi-stage; the last USER is a numeric non-root uid (runAsNonRoot can verify it)."""
    instructions = dockerfile_instructions()
    stages = [i.argument for i in instructions if i.keyword == "FROM"]
    assert len(stages) >= 2
    assert stages[0].endswith("AS builder")
    assert "slim" in stages[-1] + instructions[0].argument
    users = [i.argument for i in instructions if i.keyword == "USER"]
    assert users, "the image runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_dockerfile_serves_on_all_interfaces_and_exposes_the_port() -> None:
    """CMD is `serve --host 0.0.0.0`; EXPOSE is the service's default PORT."""
    instructions = {i.keyword: i for i in dockerfile_instructions()}
    assert instructions["CMD"].exec_form() == ["faultmaven-auth", "serve", "--host", ALL_INTERFACES]
    exposed = {int(p) for p in instructions["EXPOSE"].argument.split()}
    assert exposed == {Settings.model_fields["port"].default}
    assert "PORT=8000" in instructions["ENV"].argument


def test_dockerfile_copies_only_what_the_dockerignore_lets_through() -> None:
    """Every COPY source from the build context exists and is re-included after `*`."""
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for instruction in dockerfile_instructions():
        if instruction.keyword != "COPY" or "--from" in instruction.argument:
            continue
        *sources, _ = [a for a in instruction.argument.split() if not a.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_healthcheck_command_passes_on_200_and_fails_otherwise(
    health_server: http.server.HTTPServer,
) -> None:
    """The image's HEALTHCHECK (python urllib, no curl) asks /health on PORT."""
    (healthcheck,) = [i for i in dockerfile_instructions() if i.keyword == "HEALTHCHECK"]
    command = healthcheck.exec_form()
    assert "/health" in command[-1]
    port = str(health_server.server_address[1])

    def run(status: int) -> int:
        _Health.status = status
        env = {**os.environ, "PORT": port}
        return subprocess.run([sys.executable, *command[1:]], env=env, check=False).returncode

    assert run(200) == 0
    assert run(503) != 0


def test_entrypoint_clears_only_stale_multiprocess_files(tmp_path: Path) -> None:
    """Metric files of an earlier start are removed; nothing else is; the command runs."""
    shutil.which("sh") or pytest.skip("no sh")
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_7.db").write_bytes(b"old")
    (metrics / "keep.txt").write_text("not ours")
    marker = tmp_path / "ran"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    script = ROOT / "scripts" / "docker-entrypoint.sh"
    subprocess.run(["sh", str(script), "touch", str(marker)], env=env, check=True)
    assert marker.exists()
    assert sorted(p.name for p in metrics.iterdir()) == ["keep.txt"]


# --- compose stack -----------------------------------------------------------------


def test_every_mounted_host_path_exists_in_the_repository() -> None:
    """Relative bind mounts point at committed files; absolute ones are known host paths."""
    missing = []
    for mount in bind_mounts():
        if mount.source.startswith("/"):
            assert mount.source in HOST_PATHS, f"{mount.service} mounts {mount.source}"
        elif not (MONITORING / mount.source).exists():
            missing.append(f"{mount.service}: {mount.source}")
    assert not missing, f"mounted but not in the repository: {missing}"


def test_contract_services_listen_on_their_ports() -> None:
    """The service names and ports the Prometheus and Grafana configs rely on."""
    services = compose_services()
    for name, port in CONTRACT_PORTS.items():
        assert name in services, name
        assert port in container_ports(services[name]), f"{name} does not listen on {port}"


def test_prometheus_targets_are_compose_services_on_their_ports() -> None:
    """Every static target of prometheus.yml is a service listening on that port."""
    assert PROMETHEUS_CONFIG.exists(), f"{PROMETHEUS_CONFIG} is missing"
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    services = compose_services()
    targets: dict[str, set[str]] = {}
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            targets.setdefault(job["job_name"], set()).update(static["targets"])
    for alerting in (config.get("alerting") or {}).get("alertmanagers", []):
        for static in alerting.get("static_configs", []):
            targets.setdefault("alertmanagers", set()).update(static["targets"])
    assert f"{JOB}:8000" in targets.get(JOB, set()), f"job {JOB} must scrape {JOB}:8000"
    for job, hosts in targets.items():
        for target in hosts:
            host, _, port = target.rpartition(":")
            assert host in services, f"job {job}: {host} is not a compose service"
            assert int(port) in container_ports(services[host]), f"job {job}: {target}"
    for pattern in config.get("rule_files", []):
        container_dir = PurePosixPath("/etc/prometheus", pattern).parent
        host_dir = mounted_host_path("prometheus", str(container_dir))
        assert host_dir is not None, f"rule_files {pattern}: directory not mounted"
        assert host_dir.is_dir(), f"rule_files {pattern}: {host_dir} is not in the repository"


def test_the_service_migrates_first_and_reaches_its_dependencies() -> None:
    """A one-shot migrate runs before serve; every address it is given is a service."""
    services = compose_services()
    migrate, service = services["auth-migrate"], services["auth-service"]
    assert migrate["command"] == ["faultmaven-auth", "migrate"]
    assert service["depends_on"]["auth-migrate"]["condition"] == "service_completed_successfully"
    env = environment(service)
    assert env["HOST"] == ALL_INTERFACES
    addresses = {
        "DATABASE_URL": r"@([\w-]+):(\d+)/",
        "REDIS_URL": r"//([\w-]+):(\d+)",
        "OTEL_EXPORTER_OTLP_ENDPOINT": r"//([\w-]+):(\d+)",
    }
    for name, pattern in addresses.items():
        match = re.search(pattern, env[name])
        assert match, name
        host, port = match.group(1), int(match.group(2))
        assert host in services, f"{name}: {host} is not a compose service"
        if host not in ("postgres", "redis"):  # fixed image ports, reached without `expose`
            assert port in container_ports(services[host]), f"{name}: {host}:{port}"
    logstash = services[env["LOGSTASH_HOST"]]
    assert int(env["LOGSTASH_PORT"]) in container_ports(logstash)


def test_the_service_gets_only_settings_the_code_knows() -> None:
    """No typo in a variable name silently leaves a setting at its default."""
    for name in ("auth-service", "auth-migrate"):
        unknown = [v for v in environment(compose_services()[name]) if not known_variable(v)]
        assert not unknown, f"{name}: {unknown} are not settings in config.py"


def test_several_workers_write_metrics_to_a_tmpfs() -> None:
    """WORKERS > 1 needs PROMETHEUS_MULTIPROC_DIR on a writable, per-container volume."""
    service = compose_services()["auth-service"]
    env = environment(service)
    assert re.fullmatch(r"\$\{WORKERS:-(\d+)\}", env["WORKERS"])
    tmpfs = {entry.split(":")[0] for entry in service["tmpfs"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"] in tmpfs
    assert TMP in tmpfs
    assert service["read_only"] is True


def test_no_secret_is_written_in_the_compose_file() -> None:
    """Secret values come from monitoring/.env (git-ignored); .env.example names them all."""
    required = set()
    for name, service in compose_services().items():
        for key, value in environment(service).items():
            secret_like = key in SECRET_SETTINGS or re.search(r"PASSWORD|SECRET|TOKEN", key)
            if secret_like and not key.endswith("_FILE"):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", value), f"{name}: {key}"
            required |= {m for m in re.findall(r"\$\{([A-Z0-9_]+):\?", value)}
        if "DATABASE_URL" in environment(service):
            assert "${POSTGRES_PASSWORD:?" in environment(service)["DATABASE_URL"]
    example = (MONITORING / ".env.example").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", example, flags=re.MULTILINE))
    assert required <= set(listed), f"missing from .env.example: {required - set(listed)}"
    assert all(listed[name] == "" for name in required), ".env.example holds a value"
    assert "/monitoring/.env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    for spec in (load_compose().get("secrets") or {}).values():
        assert "environment" in spec, "secrets come from the environment, not files"
        assert spec["environment"] in required


# --- Loki, Promtail, Tempo, Logstash -------------------------------------------------


def _promtail() -> dict[str, Any]:
    path = mounted_host_path("promtail", "/etc/promtail/promtail.yml")
    assert path is not None
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    return config


def _stages(job: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [stage[kind] or {} for stage in job["pipeline_stages"] if kind in stage]


def test_promtail_labels_are_low_cardinality_only() -> None:
    """level, service, logger (and the compose service as job); never per-request values."""
    for job in _promtail()["scrape_configs"]:
        labels = {key for stage in _stages(job, "labels") for key in stage}
        labels |= {rule["target_label"] for rule in job.get("relabel_configs", [])}
        labels |= set((job.get("static_configs") or [{}])[0].get("labels", {}))
        assert labels <= ALLOWED_LOKI_LABELS, labels - ALLOWED_LOKI_LABELS
        assert not labels & PER_REQUEST_FIELDS
        assert {"level", "service", "logger"} <= labels


def test_promtail_parses_the_lines_the_service_writes() -> None:
    """Every field the json stage extracts is on a real line; its timestamp is RFC 3339."""
    formatter = JsonFormatter(line_fields(service="fm-auth-service-enterprise", environment="t"))
    record = logging.LogRecord("faultmaven_auth.request", logging.INFO, __file__, 1, "x", (), None)
    line = json.loads(formatter.format(record))
    (job,) = _promtail()["scrape_configs"]
    (json_stage,) = _stages(job, "json")
    always = {"timestamp", "level", "service", "logger"}
    for label, field in json_stage["expressions"].items():
        assert field in line or field in PER_REQUEST_FIELDS, f"{label}: no field {field}"
        assert label not in always or field in line
    (timestamp,) = _stages(job, "timestamp")
    assert timestamp["format"] == "RFC3339Nano"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", line[timestamp["source"]])
    loki = compose_services()["loki"]
    for client in _promtail()["clients"]:
        match = re.fullmatch(r"http://([\w-]+):(\d+)/loki/api/v1/push", client["url"])
        assert match
        assert match.group(1) == "loki"
        assert int(match.group(2)) in container_ports(loki)


def test_tempo_receives_otlp_where_the_service_sends_it() -> None:
    """OTLP gRPC 4317 and HTTP 4318; the service's endpoint is the HTTP receiver."""
    path = mounted_host_path("tempo", "/etc/tempo/tempo.yml")
    assert path is not None
    protocols = yaml.safe_load(path.read_text(encoding="utf-8"))["distributor"]["receivers"][
        "otlp"
    ]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    endpoint = environment(compose_services()["auth-service"])["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://tempo:4318"  # the service's default protocol is http/protobuf


def test_logstash_takes_json_lines_on_the_service_port() -> None:
    """tcp input, json_lines codec, on LOGSTASH_PORT; output to the compose Elasticsearch."""
    path = mounted_host_path("logstash", "/usr/share/logstash/pipeline/security.conf")
    assert path is not None
    pipeline = re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8"))
    tcp = re.search(r"tcp\s*\{([^}]*)\}", pipeline)
    assert tcp
    assert re.search(r"\bcodec\s*=>\s*json_lines\b", tcp.group(1))
    port = int(re.search(r"\bport\s*=>\s*(\d+)", tcp.group(1)).group(1))  # type: ignore[union-attr]
    assert port == Settings.model_fields["logstash_port"].default
    assert port in container_ports(compose_services()["logstash"])
    assert re.search(r"output\s*\{\s*elasticsearch\s*\{", pipeline)
    assert "elasticsearch" in compose_services()


# --- Kubernetes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "document"),
    [(f, d) for f, d in kubernetes_documents() if d["kind"] not in CRD_KINDS],
    ids=lambda value: value if isinstance(value, str) else value["kind"],
)
def test_manifest_matches_the_kubernetes_schema(file: str, document: dict[str, Any]) -> None:
    """Strict: an unknown or misplaced field fails, as `kubectl apply --validate` would."""
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_kustomization_builds() -> None:
    """`kubectl kustomize` (offline) renders every resource; skipped without kubectl."""
    kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (set KUBECTL to its path)")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    built = sorted(doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc)
    assert built == sorted(doc["kind"] for _, doc in kubernetes_documents())


def test_no_secret_values_in_the_manifests() -> None:
    """Secrets come from an external Secret; the ConfigMap holds no secret setting."""
    kinds = [doc["kind"] for _, doc in kubernetes_documents()]
    assert "Secret" not in kinds
    config = kubernetes_object("ConfigMap")["data"]
    assert not set(config) & SECRET_SETTINGS
    assert not {"DATABASE_URL", "REDIS_URL"} & set(config)  # they may hold passwords
    unknown = [name for name in config if not known_variable(name)]
    assert not unknown, f"ConfigMap keys that are not settings: {unknown}"


def _pod() -> dict[str, Any]:
    template = kubernetes_object("Deployment")["spec"]["template"]
    assert isinstance(template, dict)
    return template


def test_deployment_probes_and_ports_line_up_with_the_service() -> None:
    """/health for liveness and start-up, /ready for readiness, on the Service's port."""
    deployment, service = kubernetes_object("Deployment"), kubernetes_object("Service")
    pod = _pod()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    config = kubernetes_object("ConfigMap")["data"]
    assert config["HOST"] == ALL_INTERFACES
    assert ports["http"] == int(config["PORT"])
    assert ports["metrics"] == int(config["METRICS_PORT"])
    assert labels_match(deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    assert labels_match(service["spec"]["selector"], pod["metadata"]["labels"])
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports, port
    for kind in ("PodDisruptionBudget",):
        selector = kubernetes_object(kind)["spec"]["selector"]["matchLabels"]
        assert labels_match(selector, pod["metadata"]["labels"])
    target = kubernetes_object("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]


def test_deployment_runs_non_root_read_only_with_writable_scratch() -> None:
    """runAsNonRoot + read-only root; emptyDirs for /tmp and PROMETHEUS_MULTIPROC_DIR."""
    pod = _pod()["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    multiproc = kubernetes_object("ConfigMap")["data"]["PROMETHEUS_MULTIPROC_DIR"]
    assert int(kubernetes_object("ConfigMap")["data"]["WORKERS"]) > 1
    for container in pod["containers"] + pod["initContainers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get(TMP) in empty_dirs
    (main,) = pod["containers"]
    assert {m["mountPath"]: m["name"] for m in main["volumeMounts"]}[multiproc] in empty_dirs


def test_init_container_migrates_with_the_same_image_and_database() -> None:
    pod = _pod()["spec"]
    (init,) = pod["initContainers"]
    (main,) = pod["containers"]
    assert init["args"] == ["faultmaven-auth", "migrate"]
    assert "command" not in init  # keeps the image's entry point
    assert init["image"] == main["image"]
    database = [e for e in init["env"] if e["name"] == "DATABASE_URL"]
    assert database == [e for e in main["env"] if e["name"] == "DATABASE_URL"]
    for container in (init, main):
        for variable in container["env"]:
            assert known_variable(variable["name"]), variable["name"]
            assert "value" not in variable or variable["name"] not in SECRET_SETTINGS


def test_service_monitor_scrapes_the_service_as_job_auth_service() -> None:
    """Selects the Service's labels and namespace; the job label resolves to auth-service."""
    monitor, service = kubernetes_object("ServiceMonitor"), kubernetes_object("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert labels_match(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    assert service["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
    # The Prometheus Operator takes `job` from the Service label named by jobLabel, or
    # from the Service's name when that label is absent.
    labels = service["metadata"]["labels"]
    job = labels.get(spec.get("jobLabel", ""), service["metadata"]["name"])
    assert job == JOB
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] in service_ports
        assert endpoint.get("path", "/metrics") == "/metrics"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "generate_prometheusrule", ROOT / "scripts" / "generate_prometheusrule.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prometheusrule_is_generated_from_the_rule_files() -> None:
    """One source of truth: the committed resource is exactly the generator's output."""
    committed = (KUBERNETES / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert committed == _generator().render(), "run: python scripts/generate_prometheusrule.py"


def test_prometheusrule_is_well_formed_and_promtool_accepts_its_groups(tmp_path: Path) -> None:
    """Structure of the CRD, and its groups are valid Prometheus rules (promtool)."""
    rule = kubernetes_object("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"]
    assert rule["metadata"]["namespace"]
    groups = rule["spec"]["groups"]
    assert groups
    assert len({g["name"] for g in groups}) == len(groups)
    for group in groups:
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item)
            assert isinstance(item["expr"], str)
    promtool = shutil.which("promtool")
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool is missing; CI=true requires it")
        pytest.skip("promtool is missing")
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_deployment_doc_names_only_real_variables() -> None:
    """docs/deployment.md names only settings config.py has (or compose-only variables)."""
    doc = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    compose_only = interpolated_names(COMPOSE_FILE.read_text(encoding="utf-8"))
    images = {k for s in compose_services().values() for k in environment(s)}
    named = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`", doc))
    unknown = {
        name
        for name in named
        if not known_variable(name) and name not in compose_only and name not in images
        and name not in THIRD_PARTY_VARIABLES and not name.startswith("OTEL_")
    }  # fmt: skip
    assert not unknown, f"docs/deployment.md names unknown variables: {sorted(unknown)}"

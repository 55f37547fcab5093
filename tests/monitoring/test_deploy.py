"""The image, the compose stack and its log, trace and SIEM configs agree with the code.

No Docker engine runs here (DESIGN §9), so the Dockerfile, the compose stack and the
Promtail, Tempo and Logstash configs are parsed and cross-checked: every mounted file
exists, every Prometheus target is a compose service listening on that port, every
setting is one ``config.py`` knows, secrets are only references, and Loki gets only
low-cardinality labels. Two pieces run for real: the image's HEALTHCHECK command and its
entry point script. The Kubernetes manifests are in ``test_deploy_kubernetes.py``.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from faultmaven_auth.config import Settings
from faultmaven_auth.observability.logging import JsonFormatter, line_fields
from tests.monitoring.deploy_files import (
    ALL_INTERFACES,
    COMPOSE_FILE,
    JOB,
    MONITORING,
    PROMETHEUS_CONFIG,
    ROOT,
    SECRET_SETTINGS,
    TMP,
    bind_mounts,
    compose_services,
    container_ports,
    dockerfile_instructions,
    environment,
    interpolated_names,
    known_variable,
    load_compose,
    mounted_host_path,
)

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
# Other programs' variables the deployment guide mentions.
THIRD_PARTY_VARIABLES = {"COLLECTOR_OTLP_ENABLED"}
# Loki labels: bounded values only (DESIGN §6 fields like request_id stay in the line).
ALLOWED_LOKI_LABELS = {"job", "level", "service", "logger"}
PER_REQUEST_FIELDS = {
    "request_id", "trace_id", "span_id", "user_id", "organization_id", "endpoint",
    "method", "status_code", "duration_ms", "client_ip", "user_agent", "reason", "message",
}  # fmt: skip


# --- Dockerfile --------------------------------------------------------------------


def test_dockerfile_builds_wheels_then_runs_slim_as_non_root() -> None:
    """Multi-stage; the last USER is a numeric non-root uid (runAsNonRoot can verify it)."""
    instructions = dockerfile_instructions()
    defaults = dict(
        i.argument.split("=", 1) for i in instructions if i.keyword == "ARG" and "=" in i.argument
    )
    stages = [i.argument.split() for i in instructions if i.keyword == "FROM"]
    assert len(stages) >= 2
    assert stages[0][-2:] == ["AS", "builder"]
    runtime_base = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], stages[-1][0])
    assert runtime_base.startswith("python:")
    assert "-slim" in runtime_base
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
    runtime_env = dict(pair.split("=", 1) for pair in instructions["ENV"].argument.split())
    assert runtime_env["HOST"] == ALL_INTERFACES
    assert int(runtime_env["PORT"]) in exposed
    service_env = [k for k in runtime_env if not k.startswith(("PIP_", "PYTHON"))]
    assert all(known_variable(name) for name in service_env), service_env


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
    serving = health_server.server_address[1]

    def run(status: int, port: int = serving) -> int:
        _Health.status = status
        env = {**os.environ, "PORT": str(port)}
        return subprocess.run([sys.executable, *command[1:]], env=env, check=False).returncode

    assert run(200) == 0
    assert run(503) != 0
    with socket.socket() as unused:  # a port nothing listens on: refused, unhealthy
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    assert run(200, closed) != 0


def test_entrypoint_clears_only_stale_multiprocess_files(tmp_path: Path) -> None:
    """Metric files of an earlier start are removed; nothing else is; the command runs."""
    if shutil.which("sh") is None:
        pytest.skip("no POSIX shell")
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
            # localhost is the Prometheus container itself (its self-scrape).
            host = "prometheus" if host == "localhost" else host
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

"""The Kubernetes manifests are valid and agree with each other and with the code.

No cluster runs here (DESIGN §9): built-in kinds are checked against Kubernetes' own
OpenAPI schemas (``kubernetes-validate``, strict), the Prometheus Operator's
ServiceMonitor and PrometheusRule structurally; then probes, ports, selectors, the
security context and the scrape job name are cross-checked, and the committed
PrometheusRule must be exactly what ``scripts/generate_prometheusrule.py`` makes of
``monitoring/prometheus/rules/*.yml``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.monitoring.deploy_files import (
    ALL_INTERFACES,
    CRD_KINDS,
    JOB,
    KUBERNETES,
    ROOT,
    SECRET_SETTINGS,
    TMP,
    known_variable,
    kubernetes_documents,
    kubernetes_object,
    labels_match,
)

IN_CI = os.environ.get("CI", "").lower() == "true"
KUBERNETES_VERSION = "1.29"  # oldest schema set of kubernetes-validate>=1.29


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

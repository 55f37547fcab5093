"""Readers for the deployment files checked by ``test_deploy.py``.

No Docker engine or Kubernetes cluster runs here, so the Dockerfile, the compose stack
and the manifests are checked statically: these helpers turn each file into plain data
(instructions, services and their ports, mounted paths, Kubernetes documents).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from faultmaven_auth.config import Settings

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
COMPOSE_FILE = MONITORING / "docker-compose.yml"
KUBERNETES = MONITORING / "kubernetes"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"

# Resource kinds served by the Prometheus Operator's CRDs: not in Kubernetes' schemas.
CRD_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})

JOB = "auth-service"  # DESIGN §5: the scrape job's name everywhere
# What a container must bind to be reachable; the scratch directory a read-only root needs.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - asserted, not bound
TMP = "/tmp"  # noqa: S108 - a mount path, not a file the tests write

# Environment variables read by the service without being fields of Settings.
NON_SETTINGS_VARIABLES = frozenset({"PROMETHEUS_MULTIPROC_DIR"})
SETTINGS_VARIABLES = frozenset(name.upper() for name in Settings.model_fields)
SECRET_SETTINGS = frozenset(
    name.upper()
    for name, field in Settings.model_fields.items()
    if "SecretStr" in str(field.annotation)
)


def known_variable(name: str) -> bool:
    """A variable the service reads: a setting of config.py, or prometheus_client's."""
    return name in SETTINGS_VARIABLES or name in NON_SETTINGS_VARIABLES


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, USER, ...
    argument: str  # the rest of the logical line

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD, parsed."""
        text = self.argument
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + 3 :]
        value = json.loads(text.strip())
        assert isinstance(value, list), f"{self.keyword} is not in exec form"
        return [str(item) for item in value]


def dockerfile_instructions(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """Logical lines (continuations joined, comments dropped) as instructions."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    result = []
    for line in logical:
        keyword, _, argument = line.partition(" ")
        result.append(Instruction(keyword.upper(), argument.strip()))
    return result


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def compose_services() -> dict[str, dict[str, Any]]:
    services = load_compose()["services"]
    assert isinstance(services, dict)
    return services


def container_ports(service: dict[str, Any]) -> set[int]:
    """Ports a service listens on inside the network (``expose`` and ``ports``)."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for mapping in service.get("ports", []):
        if isinstance(mapping, dict):
            ports.add(int(mapping["target"]))
        else:
            ports.add(int(str(mapping).split("/")[0].rsplit(":", 1)[-1]))
    return ports


@dataclass(frozen=True)
class Mount:
    service: str
    source: str
    target: str


def bind_mounts() -> list[Mount]:
    """Every host path mounted into a container (named volumes are left out)."""
    named = set(load_compose().get("volumes") or {})
    mounts = []
    for name, service in compose_services().items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                if volume.get("type") != "bind":
                    continue
                source, target = volume["source"], volume["target"]
            else:
                source, target = str(volume).split(":")[:2]
            if source in named:
                continue
            mounts.append(Mount(name, source, target))
    return mounts


def mounted_host_path(service: str, container_path: str) -> Path | None:
    """The repository path mounted at (or above) ``container_path`` in ``service``."""
    wanted = PurePosixPath(container_path)
    for mount in bind_mounts():
        target = PurePosixPath(mount.target)
        if mount.service == service and (wanted == target or target in wanted.parents):
            return (MONITORING / mount.source / wanted.relative_to(target)).resolve()
    return None


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def interpolated_names(text: str) -> set[str]:
    """Variables a compose value takes from monitoring/.env (``${NAME}``, ``${NAME:?..}``)."""
    return set(re.findall(r"\$\{([A-Z0-9_]+)", text))


def kubernetes_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every manifest but the kustomization."""
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                documents.append((path.name, document))
    return documents


def kubernetes_object(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in kubernetes_documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())

"""Real Prometheus, Alertmanager and a webhook receiver on 127.0.0.1 for the monitoring tests.

Each helper is a context manager that starts one process (or server) on a free loopback
port with its data in a temporary directory, waits until it answers, and always stops it
when the block exits. The binaries are the Debian packages' (`prometheus`, `promtool`,
`prometheus-alertmanager` or upstream's `alertmanager`, `amtool`); without them a test
skips, or fails when CI=true.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import unavailable
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
ALERTMANAGER_CONFIG = MONITORING / "alertmanager" / "alertmanager.yml"
RUNBOOKS_DIR = ROOT / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/faultmaven/faultmaven-auth/blob/main/docs/runbooks/"

# Debian names the Alertmanager binary prometheus-alertmanager; upstream, alertmanager.
PACKAGES = {
    "promtool": ("promtool", "prometheus"),
    "prometheus": ("prometheus", "prometheus"),
    "alertmanager": ("prometheus-alertmanager", "prometheus-alertmanager"),
    "amtool": ("amtool", "prometheus-alertmanager"),
}


def binary(name: str) -> str:
    """Path of a monitoring binary; skips the test (fails it when CI=true) without it."""
    candidates = [PACKAGES[name][0], name]
    for candidate in candidates:
        path = shutil.which(candidate)
        if path is not None:
            return path
    unavailable(f"{name} (Debian package {PACKAGES[name][1]})", FileNotFoundError(name))
    raise AssertionError("unreachable")  # unavailable() always skips or fails


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerting_rules() -> dict[str, dict[str, Any]]:
    """Every alerting rule of the project's rule files, by alert name."""
    rules: dict[str, dict[str, Any]] = {}
    for path in rule_files():
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in rules, f"{rule['alert']} defined twice"
                    rules[rule["alert"]] = rule
    return rules


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def _process(args: list[str], log_path: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers(ready_url):
            if process.poll() is not None:
                raise RuntimeError(
                    f"{args[0]} exited ({process.returncode}): {log_path.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} not ready: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def running_alertmanager(config: Path, workdir: Path) -> Iterator[str]:
    """Alertmanager on 127.0.0.1 with `config`; yields its base URL. No cluster port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    storage = workdir / "alertmanager-data"
    storage.mkdir(parents=True, exist_ok=True)
    args = [
        binary("alertmanager"),
        f"--config.file={config}",
        f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with _process(args, workdir / "alertmanager.log", f"{url}/-/ready"):
        yield url


@contextmanager
def running_prometheus(config: Path, workdir: Path) -> Iterator[str]:
    """Prometheus on 127.0.0.1 with `config`; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    storage = workdir / "prometheus-data"
    storage.mkdir(parents=True, exist_ok=True)
    args = [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with _process(args, workdir / "prometheus.log", f"{url}/-/ready"):
        yield url


@dataclass
class WebhookReceiver:
    """Alertmanager's webhook notifications, as received (one JSON body per POST)."""

    url: str
    notifications: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, alertname: str, status: str = "firing") -> list[dict[str, Any]]:
        with self.lock:
            bodies = list(self.notifications)
        return [
            alert
            for body in bodies
            for alert in body["alerts"]
            if alert["labels"].get("alertname") == alertname and alert["status"] == status
        ]


@contextmanager
def running_webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.notifications.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test reads the notifications, not the access log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

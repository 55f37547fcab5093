"""`make monitor` (scripts/monitor.sh): Prometheus and Alertmanager on 127.0.0.1 with the
project's rules, scraping a running service, stopped and cleaned up by Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.monitoring.stack import ROOT, alerting_rules, binary, wait_until
from tests.support.server import free_port, migrate, running_server, server_env

SCRIPT = ROOT / "scripts" / "monitor.sh"


def closed(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1)
    except httpx.TransportError:
        return True
    return False


def test_monitor_scrapes_the_service_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The script prints its URLs, Prometheus loads every alert and scrapes the service
    as job auth-service, and SIGINT stops both processes and removes the data folder."""
    binary("prometheus")
    binary("alertmanager")
    env = server_env(tmp_path)
    migrate(env)
    prometheus_port, alertmanager_port = free_port(), free_port()
    with running_server(env, tmp_path / "server.log") as server:
        script_env = {
            **env,
            "SERVICE_ADDRESS": server.base_url.removeprefix("http://"),
            "PROMETHEUS_PORT": str(prometheus_port),
            "ALERTMANAGER_PORT": str(alertmanager_port),
            "SCRAPE_INTERVAL": "1s",
            "TMPDIR": str(tmp_path),
        }
        output = tmp_path / "monitor.out"
        with output.open("wb") as out:
            process = subprocess.Popen(
                [str(SCRIPT)], env=script_env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_until(lambda: "Ctrl-C stops both" in output.read_text(), timeout=30, what="URLs")
            text = output.read_text()
            assert f"http://127.0.0.1:{prometheus_port}" in text
            assert f"http://127.0.0.1:{alertmanager_port}" in text
            prometheus = f"http://127.0.0.1:{prometheus_port}"

            groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
            loaded = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
            assert loaded == set(alerting_rules())

            def service_up() -> bool:
                result = httpx.get(
                    f"{prometheus}/api/v1/query",
                    params={"query": 'up{job="auth-service"} == 1'},
                    timeout=5,
                ).json()["data"]["result"]
                return bool(result)

            wait_until(service_up, timeout=20, what="auth-service scraped")
            data_dir = Path(re.findall(r"Data and logs: (\S+)", text)[0])
            assert data_dir.is_dir()

            process.send_signal(signal.SIGINT)
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.terminate()  # the script's trap stops its children
                process.wait(timeout=20)
    assert "monitor: stopped" in output.read_text()
    assert not data_dir.exists()
    deadline = time.monotonic() + 5
    while not (closed(prometheus_port) and closed(alertmanager_port)):
        assert time.monotonic() < deadline, "Prometheus or Alertmanager still answers"
        time.sleep(0.1)

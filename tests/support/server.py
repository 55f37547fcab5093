"""A real server for end-to-end tests: `faultmaven-auth serve` in a subprocess.

It binds 127.0.0.1 on a free port, its stdout (the JSON log) goes to a file the test
reads, and it is always stopped when the block exits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "faultmaven_auth"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_lines(self) -> list[str]:
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]


def migrate(env: dict[str, str]) -> None:
    subprocess.run([*CLI, "migrate"], env=env, check=True, capture_output=True, timeout=120)


def server_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A clean environment on a fresh SQLite file (no inherited service settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JAEGER_"))}
    for name in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR", "LOG_FORMAT", "LOG_LEVEL"):
        env.pop(name, None)
    env.update(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
            "ENVIRONMENT": "development",
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_COST_KIB": "1024",
            # One process unless a test asks for more (`--workers N`): with REDIS_URL,
            # `serve` would otherwise start one worker per core of the test machine.
            "WORKERS": "1",
        }
    )
    env.update(overrides)
    return env


@contextmanager
def running_server(
    env: dict[str, str], log_path: Path, *args: str, timeout: float = 60
) -> Iterator[ServerProcess]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT if env.get("MERGE_STDERR") else subprocess.DEVNULL,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", log_path, process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited early ({process.returncode})")
            try:
                if httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within {timeout} s")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

"""The README's quick start, run as written against a real server on the embedded default."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "faultmaven_auth"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quick_start_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README quick start has no shell block"
    return match.group(1)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`migrate` then `serve` on a fresh SQLite file and a free port; stopped afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        "ENVIRONMENT": "development",
    }
    env.pop("REDIS_URL", None)
    subprocess.run([*CLI, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    process = subprocess.Popen(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not start within 30 s")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.skipif(shutil.which("curl") is None, reason="the quick start uses curl")
def test_quick_start_works_as_written(server: str, tmp_path: Path) -> None:
    """Sign-up, login, me, refresh and logout from the README succeed; the token then fails."""
    script = quick_start_script().replace("API=http://127.0.0.1:8000", f"API={server}")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"organization":{' in out.replace(" ", "")
    assert '"roles":["owner"]' in out.replace(" ", "")
    # curl's bodies have no trailing newline; the logout status line follows one directly.
    assert re.search(r"}204\n", out), out
    assert out.rstrip().endswith("}")
    assert '"code":"INVALID_TOKEN"' in out.replace(" ", "").splitlines()[-1]

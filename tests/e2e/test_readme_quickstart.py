"""The README's quick start, run as written against a real server on the embedded default."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import migrate, running_server, server_env

ROOT = Path(__file__).resolve().parents[2]


def quick_start_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README quick start has no shell block"
    return match.group(1)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`migrate` then `serve` on a fresh SQLite file and a free port; stopped afterwards."""
    env = server_env(tmp_path)
    migrate(env)
    with running_server(env, tmp_path / "server.log") as process:
        yield process.base_url


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

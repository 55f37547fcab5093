"""The real OpenID provider (npm ``oidc-provider``, tests/sso/idp/provider.mjs) in a
subprocess on 127.0.0.1 and a free port; always stopped when the block exits.

``scripts/install-test-idp.sh`` (run by ``make test``) installs the package; without
it, or without Node, the tests fail under CI=true and skip otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IDP_DIR = Path(__file__).parent / "idp"


@dataclass(frozen=True)
class RealIdp:
    issuer: str


def idp_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        return "oidc-provider is not installed (run scripts/install-test-idp.sh)"
    return None


@contextmanager
def running_idp(clients: list[dict[str, Any]]) -> Iterator[RealIdp]:
    env = {**os.environ, "IDP_CLIENTS": json.dumps(clients), "NODE_ENV": "development"}
    process = subprocess.Popen(
        ["node", str(IDP_DIR / "provider.mjs")],
        cwd=IDP_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening "), f"the provider did not start: {line!r}"
        yield RealIdp(issuer=line.split(" ", 1)[1])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""Where a loaded server spends its time: py-spy samples of the event loop's thread.

A benchmark that misses a target shows why: the functions on top of the stack (own
time) and the project's own frames (inclusive), as shares of the samples.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def _py_spy() -> str | None:
    beside_python = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside_python) if beside_python.exists() else None)


def summarize_samples(lines: list[str], *, own_rows: int = 15, our_rows: int = 12) -> list[str]:
    """Markdown rows from py-spy's raw format (``frame;frame;... count`` per line)."""
    own: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        # The event loop's thread only (uvicorn runs it from cli.py): aiosqlite's and the
        # hashing threads mostly wait on their queues.
        if not any("faultmaven_auth/cli.py" in frame for frame in frames):
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if "faultmaven_auth" in frame:
                ours[frame] += n
    if not total:
        return ["(no samples)"]
    rows = [
        f"| {100 * n / total:5.1f} % | `{frame[:110]}` |" for frame, n in own.most_common(own_rows)
    ]
    rows += [
        "",
        "Inclusive share of the project's own frames:",
        "",
        "| samples | frame |",
        "|---:|---|",
    ]
    rows += [
        f"| {100 * n / total:5.1f} % | `{frame[:110]}` |" for frame, n in ours.most_common(our_rows)
    ]
    return rows


def profile_while(pid: int, seconds: int, load: Callable[[], object]) -> list[str]:
    """Record ``pid`` with py-spy for ``seconds`` while ``load()`` runs; summary rows."""
    spy = _py_spy()
    if spy is None:
        return ["(py-spy not installed: pip install py-spy)"]
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--format", "raw",
             "--output", out.name, "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        load()
        recorder.wait(timeout=seconds + 30)
        lines = Path(out.name).read_text().splitlines()
    return summarize_samples(lines)

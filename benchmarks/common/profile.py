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
from collections.abc import Callable, Iterator
from pathlib import Path


def _py_spy() -> str | None:
    beside_python = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside_python) if beside_python.exists() else None)


def _loop_stacks(lines: list[str]) -> Iterator[tuple[list[str], int]]:
    """(frames, samples) of the event loop's thread from py-spy's raw format
    (``frame;frame;... count`` per line)."""
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        # The event loop's thread only (uvicorn runs it from cli.py): aiosqlite's and the
        # hashing threads mostly wait on their queues.
        if any("faultmaven_auth/cli.py" in frame for frame in frames):
            yield frames, int(count)


# Parts of a request, by where a sample's stack is (see part_of).
LOGGING = "logging (log records, JSON formatting, handlers)"
MIDDLEWARE = "the service's middleware (request context, metrics, admission, limits)"
FRAMEWORK = "framework and runtime (uvicorn, Starlette/FastAPI, asyncio: no service frame below)"
HANDLER = "endpoint and its dependencies (database, store, tokens, hashing hand-off)"
LOOP = "event loop itself (native: I/O polling, callbacks, not attributed)"
PARTS = (HANDLER, MIDDLEWARE, LOGGING, FRAMEWORK, LOOP)
_OUTER = ("faultmaven_auth/cli.py", "faultmaven_auth/__main__.py")
_MIDDLEWARE_FILES = ("faultmaven_auth/observability/", "faultmaven_auth/api/cache.py")
_FRAMEWORK_PACKAGES = ("starlette/", "fastapi/", "uvicorn/", "httptools", "h11/")


def part_of(frames: list[str]) -> str:
    """The part of the request one sample is in, from its stack (outermost first).

    Logging wherever it is called from; else the innermost frame of the project decides:
    an endpoint or what it calls is the handler, our middleware is middleware unless the
    frames under it are the framework's (routing, validation); no project frame at all is
    the framework, or the event loop when only the loop's native code is on top.
    """
    if any("logging/__init__.py" in f or "observability/logging.py" in f for f in frames):
        return LOGGING
    ours = [
        i
        for i, f in enumerate(frames)
        if "faultmaven_auth" in f and not any(outer in f for outer in _OUTER)
    ]
    if ours:
        innermost = ours[-1]
        if not any(path in frames[innermost] for path in _MIDDLEWARE_FILES):
            return HANDLER
        below = frames[innermost + 1 :]
        if any(any(pkg in f for pkg in _FRAMEWORK_PACKAGES) for f in below):
            return FRAMEWORK
        return MIDDLEWARE
    if frames and "asyncio/runners.py" in frames[-1]:
        return LOOP
    return FRAMEWORK


def split_samples(lines: list[str]) -> dict[str, float]:
    """Share of the event loop's samples in each part of a request (``PARTS``)."""
    counts: collections.Counter[str] = collections.Counter()
    for frames, n in _loop_stacks(lines):
        counts[part_of(frames)] += n
    total = sum(counts.values())
    return {part: counts[part] / total for part in PARTS} if total else {}


def loop_samples(lines: list[str]) -> int:
    """How many samples of the event loop's thread a recording holds."""
    return sum(n for _, n in _loop_stacks(lines))


def share_spent_in(lines: list[str], marks: tuple[str, ...]) -> float:
    """Share of the event loop's samples spent in code whose file names one of ``marks``
    (a library, say): the innermost frame that is either the project's or such code is
    such code. A project frame that only wraps the rest of the request (a middleware
    awaiting the app) does not count unless it is itself in ``marks``."""
    total = hit = 0
    for frames, n in _loop_stacks(lines):
        total += n
        for frame in reversed(frames):
            if any(mark in frame for mark in marks):
                hit += n
                break
            if "faultmaven_auth" in frame:
                break
    return hit / total if total else 0.0


def summarize_samples(lines: list[str], *, own_rows: int = 15, our_rows: int = 12) -> list[str]:
    """Markdown rows from py-spy's raw format (``frame;frame;... count`` per line)."""
    own: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, n in _loop_stacks(lines):
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


NO_PY_SPY = "(py-spy not installed: pip install py-spy)"


def record_while(pid: int, seconds: int, load: Callable[[], object]) -> list[str] | None:
    """py-spy's raw samples of ``pid`` for ``seconds`` while ``load()`` runs; None
    without py-spy (``load()`` still runs)."""
    spy = _py_spy()
    if spy is None:
        load()
        return None
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--format", "raw",
             "--output", out.name, "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        load()
        recorder.wait(timeout=seconds + 30)
        return Path(out.name).read_text().splitlines()

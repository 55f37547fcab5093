"""Driving wrk: a plain run parsed from its text summary, or a Lua workload that counts
responses by status and prints one ``BENCH_RESULT {json}`` line (benchmarks/load/lua).

wrk records a latency only up to its ``--timeout``; a slower response is counted as a
timeout and missing from the percentiles, so overload runs pass a generous timeout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parents[1] / "load" / "lua"
RESULT_PREFIX = "BENCH_RESULT "


def to_ms(text: str) -> float:
    """wrk's latency text ("812.00us", "1.20ms", "2.01s") in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk latency: {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    return {"us": value / 1000, "ms": value, "s": value * 1000, "m": value * 60_000}[unit]


@dataclass(frozen=True)
class PlainResult:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int = 0  # answers counted over the run (wrk's "N requests in")


def parse_plain_output(text: str) -> PlainResult:
    """Throughput, p50/p99 and the non-2xx count from ``wrk --latency`` text output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"\s50%\s+(\S+)", text)
    p99 = re.search(r"\s99%\s+(\S+)", text)
    if rps is None or p50 is None or p99 is None:
        raise ValueError(f"not wrk --latency output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    requests = re.search(r"(\d+) requests in ", text)
    return PlainResult(
        rps=float(rps.group(1)),
        p50_ms=to_ms(p50.group(1)),
        p99_ms=to_ms(p99.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        requests=int(requests.group(1)) if requests else 0,
    )


def run_plain(url: str, *, seconds: int, connections: int, headers: dict[str, str]) -> PlainResult:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return parse_plain_output(out)


@dataclass(frozen=True)
class Timed:
    """Latencies of the tagged answers: how many, and percentiles (None: none of the kind)."""

    admitted: int
    admitted_p50_ms: float | None
    refused: int
    refused_p50_ms: float | None
    refused_p99_ms: float | None
    # Admitted answers by the kind of request ("me", "refresh", "login"): (count, p50, p99).
    by_kind: dict[str, tuple[int, float, float]] = field(default_factory=dict)


def _ms(microseconds: int) -> float | None:
    return None if microseconds < 0 else microseconds / 1000


def _timed(data: dict[str, Any] | None) -> Timed | None:
    if not data or not (data["admitted"] or data["refused"]):
        return None
    return Timed(
        admitted=data["admitted"],
        admitted_p50_ms=_ms(data["admitted_p50_us"]),
        refused=data["refused"],
        refused_p50_ms=_ms(data["refused_p50_us"]),
        refused_p99_ms=_ms(data["refused_p99_us"]),
        by_kind={
            kind: (int(n), p50 / 1000, p99 / 1000)
            for kind, (n, p50, p99) in data.get("admitted_by_kind", {}).items()
        },
    )


@dataclass(frozen=True)
class WrkResult:
    """One Lua-scripted run: responses by status, error codes, latency percentiles."""

    counted: int  # responses the script counted (filler requests excluded)
    seconds: float
    p50_ms: float
    p99_ms: float
    p99_admitted_ms: float  # p99 of the responses that were not refused (503/429)
    max_ms: float
    status: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)  # "503 OVERLOADED" -> count
    extra: dict[str, int] = field(default_factory=dict)  # script-specific counters
    errors: dict[str, int] = field(default_factory=dict)  # socket errors, timeouts
    # Scripts that tag their requests (common.lua's tagged/timed): each answer's own
    # latency, admitted and refused apart; p99_admitted_ms is then exact, not a bound.
    timed: Timed | None = None

    @property
    def rps(self) -> float:
        return self.counted / self.seconds if self.seconds else 0.0

    def with_status(self, first_digit: str) -> int:
        return sum(n for code, n in self.status.items() if code.startswith(first_digit))

    @property
    def ok(self) -> int:
        return self.with_status("2")

    @property
    def server_errors(self) -> int:
        """Responses that are 500 (never acceptable): 5xx other than 503."""
        return sum(n for code, n in self.status.items() if code.startswith("5") and code != "503")

    @property
    def refused(self) -> int:
        return self.status.get("503", 0) + self.status.get("429", 0)

    @property
    def ok_rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def parse_result_line(text: str) -> WrkResult:
    """The ``BENCH_RESULT`` line that common.lua's done() prints, as a WrkResult."""
    for line in text.splitlines():
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX) :])
            break
    else:
        raise ValueError(f"no {RESULT_PREFIX.strip()} line in wrk output:\n{text}")
    return WrkResult(
        counted=int(data["counted"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        p99_admitted_ms=data["p99_admitted_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        status={str(k): int(v) for k, v in data["status"].items()},
        codes={str(k): int(v) for k, v in data["codes"].items()},
        extra={str(k): int(v) for k, v in data["extra"].items()},
        errors={str(k): int(v) for k, v in data["errors"].items()},
        timed=_timed(data.get("timed")),
    )


def script_for(workload: str) -> Path:
    """common.lua followed by the workload's own script, as one file for wrk -s."""
    text = (LUA_DIR / "common.lua").read_text() + "\n" + (LUA_DIR / f"{workload}.lua").read_text()
    handle, name = tempfile.mkstemp(prefix=f"fm-bench-{workload}-", suffix=".lua")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    return Path(name)


def run_script(
    workload: str,
    base_url: str,
    *,
    seconds: int,
    connections: int,
    data: dict[str, str] | None = None,
    threads: int = 1,
    timeout_seconds: int = 30,
) -> WrkResult:
    """Run benchmarks/load/lua/<workload>.lua; ``data`` are its BENCH_* variables."""
    script = script_for(workload)
    env = {**os.environ, "BENCH_THREADS": str(threads), **(data or {})}
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{max(connections, threads)}",
                f"-d{seconds}s",
                f"--timeout={timeout_seconds}s",
                "-s",
                str(script),
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
    finally:
        script.unlink()
    return parse_result_line(out)

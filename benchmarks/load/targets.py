"""The issue's targets, evaluated from a run's measurements (pure: no I/O).

Each target names its configuration, the measured value, the threshold and whether it
is met; one not measured in this run (a --quick run leaves some out) says so instead of
passing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.load.model import (
    CONFIG_BY_KEY,
    SINGLE_CONNECTIONS,
    Measurements,
    cpu_ms,
    latency,
    median,
    median_ratio,
    mixed,
    ok_rps,
)


@dataclass(frozen=True)
class Target:
    number: int  # the target number
    name: str
    config: str  # a configuration key, or "" for a cross-configuration target
    measured: str
    required: str
    met: bool | None  # None: not measured in this run
    # Which check this is ("login_rate", "health", "scaling:me", ...): how the report
    # explains it when it is not met.
    key: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


def _check(
    number: int,
    name: str,
    config: str,
    value: float | None,
    required: str,
    passes: Callable[[float], bool],
    shown: Callable[[float], str],
    key: str,
) -> Target:
    if value is None:
        return Target(number, name, config, "—", required, None, key)
    return Target(number, name, config, shown(value), required, passes(value), key)


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def evaluate(m: Measurements) -> list[Target]:
    targets: list[Target] = []
    configs = [key for key in CONFIG_BY_KEY if key in m.samples]
    for key in configs:
        login = ok_rps(m, key, "login")
        targets.append(
            _check(
                1,
                "login ≥ 90 % of the argon2id verify rate (same cores)",
                key,
                median_ratio(login, m.argon2_per_s(key)),
                "≥ 90 %",
                lambda v: v >= 0.9,
                _pct,
                "login_rate",
            )
        )
        p50, p99 = latency(m, key, "login", "p50_ms"), latency(m, key, "login", "p99_ms")
        targets.append(
            _check(
                1,
                "login p99 ≤ 3 x p50 at saturation",
                key,
                p99 / p50 if p50 and p99 is not None else None,
                "≤ 3x",
                lambda v: v <= 3,
                _ratio,
                "login_tail",
            )
        )
        probes = m.health.get(key, [])
        targets.append(
            _check(
                1,
                "/health p99 during a login storm ≤ 2 x idle",
                key,
                median_ratio([p.storm_p99_ms for p in probes], [p.idle_p99_ms for p in probes]),
                "≤ 2x",
                lambda v: v <= 2,
                _ratio,
                "health",
            )
        )
    for key in configs:
        if CONFIG_BY_KEY[key].backend == "postgres" and CONFIG_BY_KEY[key].workers == 1:
            targets.append(
                _check(
                    2,
                    "refresh ≤ 1.5 ms server CPU",
                    key,
                    cpu_ms(m, key, "refresh"),
                    "≤ 1.5 ms",
                    lambda v: v <= 1.5,
                    lambda v: f"{v:.2f} ms",
                    "refresh_cpu",
                )
            )
    for key in configs:
        if CONFIG_BY_KEY[key].workers == 1:
            targets.append(
                _check(
                    2,
                    f"refresh p99 < 100 ms at {SINGLE_CONNECTIONS} connections",
                    key,
                    latency(m, key, "refresh", "p99_ms"),
                    "< 100 ms",
                    lambda v: v < 100,
                    lambda v: f"{v:.0f} ms",
                    "refresh_p99",
                )
            )
    for key in configs:
        hello = m.hello_rps.get(CONFIG_BY_KEY[key].workers, [])
        for workload, label in (("me", "GET /me"), ("introspect", "introspection")):
            targets.append(
                _check(
                    3,
                    f"{label} ≥ 25 % of hello-world (same workers)",
                    key,
                    median_ratio(ok_rps(m, key, workload), hello),
                    "≥ 25 %",
                    lambda v: v >= 0.25,
                    _pct,
                    f"hello:{workload}",
                )
            )
    for key in configs:
        runs = m.runs(key, mixed(512))
        errors = sum(s.result.server_errors for s in runs) if runs else None
        targets.append(
            _check(
                4,
                "mixed at 512 connections: no 500",
                key,
                None if errors is None else float(errors),
                "0",
                lambda v: v == 0,
                lambda v: f"{v:.0f}",
                "no_500",
            )
        )
        targets.append(
            _check(
                4,
                "mixed at 512 connections: p99 of admitted < 1 s",
                key,
                median([s.result.p99_admitted_ms for s in runs]),
                "< 1000 ms",
                lambda v: v < 1000,
                lambda v: f"{v:.0f} ms",
                "p99_512",
            )
        )
    if "pg1" in configs and "pg2" in configs:
        for workload, label in (("me", "GET /me"), ("refresh", "refresh")):
            targets.append(
                _check(
                    5,
                    f"2 workers ≥ 1.7 x 1 worker on {label}",
                    "",
                    median_ratio(ok_rps(m, "pg2", workload), ok_rps(m, "pg1", workload)),
                    "≥ 1.7x",
                    lambda v: v >= 1.7,
                    _ratio,
                    f"scaling:{workload}",
                )
            )
    return targets

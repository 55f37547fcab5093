"""What one harness run measured, as plain data: the runner fills it, the target
evaluation and the report read it (and the tests build it by hand)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks.common.wrk import WrkResult

# Closed-loop connections for the single-endpoint workloads: saturates two cores, and is
# the "16 connections" of the refresh latency target.
SINGLE_CONNECTIONS = 16
MIXED_CONNECTIONS = (8, 32, 128, 512)
SINGLE_WORKLOADS = ("login", "refresh", "me", "introspect")


@dataclass(frozen=True)
class ServiceConfig:
    key: str
    label: str
    backend: str  # "embedded" | "postgres"
    workers: int


CONFIGS = (
    ServiceConfig("embedded", "embedded (SQLite + in-process store), 1 worker", "embedded", 1),
    ServiceConfig("pg1", "PostgreSQL + Redis, 1 worker", "postgres", 1),
    ServiceConfig("pg2", "PostgreSQL + Redis, 2 workers", "postgres", 2),
)
CONFIG_BY_KEY = {c.key: c for c in CONFIGS}


def mixed(connections: int) -> str:
    return f"mixed@{connections}"


@dataclass(frozen=True)
class CpuBudget:
    """CPU per counted response, in ms, of every process on the machine during one run.

    ``rest`` is what the machine's other processes (the harness among them) used
    meanwhile: left out of the total, since it is not the benchmark's, but shown, as a
    busy machine's noise.
    """

    server: float
    postgres: float
    redis: float
    wrk: float
    rest: float = 0.0

    @property
    def total(self) -> float:
        return self.server + self.postgres + self.redis + self.wrk

    def ceiling(self, cores: int) -> float | None:
        """The most responses/s these cores give at this cost, whatever the service does."""
        return cores * 1000 / self.total if self.total > 0 else None

    def scaled(self, factor: float) -> CpuBudget:
        return CpuBudget(
            self.server * factor,
            self.postgres * factor,
            self.redis * factor,
            self.wrk * factor,
            self.rest * factor,
        )

    @staticmethod
    def median_of(budgets: Sequence[CpuBudget]) -> CpuBudget | None:
        if not budgets:
            return None
        return CpuBudget(
            *(
                statistics.median(getattr(b, part) for b in budgets)
                for part in ("server", "postgres", "redis", "wrk", "rest")
            )
        )


@dataclass(frozen=True)
class Sample:
    """One workload in one round: what wrk saw and the CPU it cost."""

    result: WrkResult
    cpu_ms: float | None  # server CPU (all processes and threads) per counted response
    budget: CpuBudget | None = None  # every process's CPU per counted response
    # Store operations per counted response: "pg xact_commit", "redis GET", ... (PostgreSQL
    # and Redis runs only).
    ops: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    """py-spy summary of one workload: markdown rows and the share of samples by part."""

    rows: list[str]
    split: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthProbe:
    """GET /health latency with the server idle and during the login storm."""

    idle_p50_ms: float
    idle_p99_ms: float
    storm_p50_ms: float
    storm_p99_ms: float
    # How long the event loop waited for a core, ms per second (Linux schedstat).
    idle_loop_wait_ms_per_s: float | None = None
    storm_loop_wait_ms_per_s: float | None = None


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_cost_kib: int
    parallelism: int

    def __str__(self) -> str:
        return (
            f"argon2id t={self.time_cost}, m={self.memory_cost_kib} KiB "
            f"({self.memory_cost_kib / 1024:.0f} MiB), p={self.parallelism}"
        )


@dataclass(frozen=True)
class Argon2Rate:
    params: Argon2Params
    threads: int
    verify_per_s: float  # wall clock, all threads: what these cores did meanwhile
    cpu_ms: float  # CPU per verification: what one busy core does, whatever else runs

    @property
    def per_core(self) -> float:
        return 1000 / self.cpu_ms if self.cpu_ms else 0.0


@dataclass
class Measurements:
    cores: int
    argon2_params: Argon2Params
    settings: dict[str, str] = field(default_factory=dict)  # what the sizing guide quotes
    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)
    hello_rps: dict[int, list[float]] = field(default_factory=dict)  # workers -> per round
    # Configured parameters, measured just before each configuration's login storm.
    argon2_rates: dict[str, list[Argon2Rate]] = field(default_factory=dict)
    argon2_sets: list[Argon2Rate] = field(default_factory=list)
    health: dict[str, list[HealthProbe]] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)  # largest worker RSS seen
    db_connections: dict[str, int] = field(default_factory=dict)  # peak per worker
    redis_connections: dict[str, int] = field(default_factory=dict)  # peak per worker
    # (configuration, workload) -> per run, the mean (active, waiting for a lock) service
    # sessions on PostgreSQL (probes.LockWaitSampler).
    lock_waits: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    profiles: dict[tuple[str, str], Profile] = field(default_factory=dict)  # (config, workload)
    hello_budgets: dict[int, list[CpuBudget]] = field(default_factory=dict)  # workers -> rounds

    def add(self, config: str, workload: str, sample: Sample) -> None:
        self.samples.setdefault(config, {}).setdefault(workload, []).append(sample)

    def runs(self, config: str, workload: str) -> list[Sample]:
        return self.samples.get(config, {}).get(workload, [])

    def argon2_per_s(self, config: str) -> list[float]:
        return [rate.verify_per_s for rate in self.argon2_rates.get(config, [])]

    def argon2_per_core(self) -> float | None:
        """Verifications per busy core at the configured parameters, over the whole run."""
        return median([r.per_core for rates in self.argon2_rates.values() for r in rates])


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def timed_median(runs: Sequence[Sample], name: str) -> float | None:
    """Median over rounds of one field of the runs' per-answer timings (``Timed``)."""
    values = [getattr(s.result.timed, name) for s in runs if s.result.timed]
    return median([v for v in values if v is not None])


def kind_p99(runs: Sequence[Sample], kind: str) -> float | None:
    """Median over rounds of the admitted p99 of one kind of request (mixed workload)."""
    return median(
        [
            s.result.timed.by_kind[kind][2]
            for s in runs
            if s.result.timed and kind in s.result.timed.by_kind
        ]
    )


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float | None:
    """Median of per-round ratios: rounds are interleaved, so drift cancels within one."""
    pairs = [n / d for n, d in zip(numerators, denominators, strict=False) if d]
    return statistics.median(pairs) if pairs else None


def ok_rps(m: Measurements, config: str, workload: str) -> list[float]:
    return [s.result.ok_rps for s in m.runs(config, workload)]


def cpu_ms(m: Measurements, config: str, workload: str) -> float | None:
    return median([s.cpu_ms for s in m.runs(config, workload) if s.cpu_ms is not None])


def budget(m: Measurements, config: str, workload: str) -> CpuBudget | None:
    return CpuBudget.median_of([s.budget for s in m.runs(config, workload) if s.budget])


def budget_per_ok(m: Measurements, config: str, workload: str) -> CpuBudget | None:
    """CPU per successful response: refusals (503) cost little, a login's hash a lot."""
    return CpuBudget.median_of(
        [
            s.budget.scaled(s.result.counted / s.result.ok)
            for s in m.runs(config, workload)
            if s.budget and s.result.ok
        ]
    )


def ops_per_request(m: Measurements, config: str, workload: str) -> dict[str, float]:
    """Median over rounds of each store operation's count per response."""
    names = sorted({name for s in m.runs(config, workload) for name in s.ops})
    return {
        name: statistics.median(s.ops[name] for s in m.runs(config, workload) if name in s.ops)
        for name in names
    }


def latency(m: Measurements, config: str, workload: str, which: str) -> float | None:
    return median([float(getattr(s.result, which)) for s in m.runs(config, workload)])

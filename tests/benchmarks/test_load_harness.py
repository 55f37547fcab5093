"""The load harness's own logic, without a benchmark run: wrk output parsing, target
evaluation, the report, the sizing guide's generated block, and the chained refresh
script never sending a token twice (against a stub server, when wrk is installed)."""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.common.profile import (
    FRAMEWORK,
    HANDLER,
    LOGGING,
    LOOP,
    MIDDLEWARE,
    part_of,
    share_spent_in,
)
from benchmarks.common.wrk import (
    Timed,
    WrkResult,
    parse_plain_output,
    parse_result_line,
    run_script,
    to_ms,
)
from benchmarks.load.budget import CpuMeter, CpuSnapshot, StoreCounter
from benchmarks.load.explain import anchor, scaling_limit
from benchmarks.load.model import (
    CONFIG_BY_KEY,
    Argon2Params,
    Argon2Rate,
    CpuBudget,
    HealthProbe,
    Measurements,
    Profile,
    Sample,
    mixed,
)
from benchmarks.load.references import ARGON2_ALTERNATIVES
from benchmarks.load.report import (
    SIZING_BEGIN,
    SIZING_END,
    RunInfo,
    core_rates,
    cores_for_peak,
    render_report,
    render_sizing_block,
    replace_sizing_block,
)
from benchmarks.load.targets import evaluate

ROOT = Path(__file__).resolve().parents[2]

WRK_TEXT = """Running 2s test @ http://127.0.0.1:8000/api/v1/auth/me
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    41.20ms    9.10ms  98.00ms   80.00%
  Latency Distribution
     50%  812.00us
     75%   45.00ms
     90%   52.00ms
     99%    1.20s
  620 requests in 2.00s, 200.00KB read
  Non-2xx or 3xx responses: 3
Requests/sec:    310.00
Transfer/sec:    100.00KB
"""

RESULT_LINE = (
    'BENCH_RESULT {"counted":1000,"requests":1004,"duration_us":4000000,"p50_us":20500,'
    '"p99_us":180000,"p99_admitted_us":250000,"max_us":900000,'
    '"status":{"200":900,"503":95,"500":5},"codes":{"503 OVERLOADED":95},'
    '"extra":{"refresh_starved":4},"errors":{"connect":0,"read":0,"write":0,"timeout":0}}'
)
TIMED_LINE = RESULT_LINE.replace(
    '"errors"',
    '"timed":{"admitted":905,"admitted_p50_us":4100,"refused":95,"refused_p50_us":500300,'
    '"refused_p99_us":700000,"admitted_by_kind":{"me":[880,4000,90000],"login":[25,9000,'
    '800000]}},"errors"',
)


def test_wrk_latency_units_are_converted_to_milliseconds() -> None:
    """wrk prints us, ms, s and m; all come back in milliseconds."""
    assert to_ms("812.00us") == pytest.approx(0.812)
    assert to_ms("1.20ms") == pytest.approx(1.2)
    assert to_ms("2.01s") == pytest.approx(2010)
    assert to_ms("1.00m") == pytest.approx(60_000)
    with pytest.raises(ValueError, match="not a wrk latency"):
        to_ms("fast")


def test_plain_wrk_output_gives_throughput_percentiles_and_failures() -> None:
    """The text summary of `wrk --latency` yields req/s, p50, p99, the non-2xx count and
    how many answers were counted."""
    result = parse_plain_output(WRK_TEXT)
    assert (result.rps, result.p50_ms, result.p99_ms, result.non_2xx) == (310.0, 0.812, 1200, 3)
    assert result.requests == 620
    with pytest.raises(ValueError, match="not wrk --latency output"):
        parse_plain_output("wrk: connection refused")


def test_script_result_line_counts_responses_by_status_and_code() -> None:
    """The Lua done() line: statuses, refusal codes, 500s apart from 503s, admitted p99."""
    result = parse_result_line(f"Running 4s test\n{RESULT_LINE}\nRequests/sec: 251.00\n")
    assert result.rps == pytest.approx(250)
    assert result.ok == 900
    assert result.ok_rps == pytest.approx(225)
    assert result.refused == 95
    assert result.server_errors == 5
    assert result.codes == {"503 OVERLOADED": 95}
    assert result.extra == {"refresh_starved": 4}
    assert (result.p50_ms, result.p99_ms, result.p99_admitted_ms) == (20.5, 180, 250)
    with pytest.raises(ValueError, match="no BENCH_RESULT line"):
        parse_result_line("Running 4s test\n")
    assert result.timed is None  # an untagged script: p99 admitted is a bound


def test_tagged_script_result_has_admitted_and_refused_latencies_apart() -> None:
    timed = parse_result_line(TIMED_LINE).timed
    assert timed is not None
    assert (timed.admitted, timed.admitted_p50_ms) == (905, 4.1)
    assert (timed.refused, timed.refused_p50_ms, timed.refused_p99_ms) == (95, 500.3, 700)
    assert timed.by_kind == {"me": (880, 4.0, 90.0), "login": (25, 9.0, 800.0)}


def _result(
    ok: int, seconds: float = 1.0, p50: float = 10, p99: float = 20, **status: int
) -> WrkResult:
    codes = {"200": ok, **{k.removeprefix("s"): v for k, v in status.items()}}
    return WrkResult(
        counted=sum(codes.values()),
        seconds=seconds,
        p50_ms=p50,
        p99_ms=p99,
        p99_admitted_ms=p99,
        max_ms=p99,
        status=codes,
    )


REFRESH_OPS = {"pg xact_commit": 2.0, "pg tup_inserted": 1.0, "redis GET": 1.0, "redis SET": 2.0}


def _budget(
    server: float, postgres: float = 0.5, redis: float = 0.1, wrk: float = 0.4
) -> CpuBudget:
    return CpuBudget(server, postgres, redis, wrk, rest=0.05)


def _measurements(
    *,
    refresh_cpu: float = 1.2,
    pg2_me: float = 900,
    pg1_login: int = 95,
    mixed_p99: float = 800,
    login_cpu: float = 20.0,
    mixed_refresh_p99: float = 900,
    refresh_p99: float = 60,
) -> Measurements:
    """Two configurations, two rounds: built so that each target's verdict is known."""
    m = Measurements(cores=2, argon2_params=Argon2Params(2, 19456, 1))
    m.settings = {
        "DATABASE_POOL_SIZE": "5",
        "redis max_connections": "40 (REDIS_MAX_CONNECTIONS default)",
        "MAX_CONCURRENT_REQUESTS": "32",
        "REQUEST_QUEUE_TIMEOUT_SECONDS": "0.5",
        "PASSWORD_HASH_THREADS": "cores ÷ workers (default)",
        "PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS": "2",
    }
    configured = Argon2Params(2, 19456, 1)
    m.argon2_rates = {
        "pg1": [Argon2Rate(configured, 2, 100.0, 20.0)] * 2,
        "pg2": [Argon2Rate(configured, 2, 100.0, 20.0)] * 2,
    }
    m.hello_rps = {1: [2000.0, 2000.0], 2: [3800.0, 3800.0]}
    m.argon2_sets = [Argon2Rate(configured, 2, 100.0, 20.0)] + [
        Argon2Rate(params, 2, 20.0, 100.0) for params in ARGON2_ALTERNATIVES
    ]
    m.hello_budgets = {1: [_budget(0.3, 0, 0, 0.1)] * 2, 2: [_budget(0.35, 0, 0, 0.1)] * 2}
    for _ in range(2):
        login = _result(pg1_login, p50=100, p99=250)
        m.add("pg1", "login", Sample(login, login_cpu, _budget(login_cpu)))
        m.add(
            "pg1",
            "refresh",
            Sample(_result(400, p99=refresh_p99), refresh_cpu, _budget(refresh_cpu), REFRESH_OPS),
        )
        m.add("pg1", "me", Sample(_result(600), 1.5, _budget(1.5, 0.6, 0.2, 0.3)))
        m.add("pg1", "introspect", Sample(_result(400), 2.0, _budget(2.0)))
        timed = Timed(
            admitted=301,
            admitted_p50_ms=60,
            refused=40,
            refused_p50_ms=560,
            refused_p99_ms=800,
            by_kind={
                "me": (281, 50, 400),
                "refresh": (15, 300, mixed_refresh_p99),
                "login": (5, 700, mixed_p99),
            },
        )
        mixed_result = dataclasses.replace(
            _result(300, p99=mixed_p99, s503=40, s500=1), timed=timed
        )
        m.add("pg1", mixed(512), Sample(mixed_result, 3.0, _budget(3.0)))
        m.add("pg2", "login", Sample(_result(95), 20.0))
        m.add("pg2", "refresh", Sample(_result(700), 1.3, _budget(1.3)))
        m.add("pg2", "me", Sample(_result(int(pg2_me)), 1.6, _budget(1.6)))
        m.add("pg2", "introspect", Sample(_result(700), 2.0))
    m.profiles = {
        ("pg1", "me"): Profile(
            ["| 50.0 % | `app` |"],
            {HANDLER: 0.2, MIDDLEWARE: 0.3, LOGGING: 0.25, FRAMEWORK: 0.15, LOOP: 0.1},
        )
    }
    m.health = {"pg1": [HealthProbe(1.0, 2.0, 1.5, 5.0, 3.0, 240.0)] * 2}
    m.rss_mib = {"pg1": 120.0, "pg2": 118.0}
    m.db_connections = {"pg1": 10, "pg2": 9}
    m.redis_connections = {"pg1": 7, "pg2": 6}
    return m


def _verdicts(m: Measurements) -> dict[tuple[str, str], bool | None]:
    return {(t.name, t.config): t.met for t in evaluate(m)}


def test_targets_are_judged_from_medians_and_ratios() -> None:
    """Each target is met or not from the numbers; what was not run is not measured."""
    verdicts = _verdicts(_measurements())
    assert verdicts[("login ≥ 90 % of the argon2id verify rate (same cores)", "pg1")] is True
    assert verdicts[("login p99 ≤ 3 x p50 at saturation", "pg1")] is True
    assert verdicts[("/health p99 during a login storm ≤ 2 x idle", "pg1")] is False
    assert verdicts[("/health p99 during a login storm ≤ 2 x idle", "pg2")] is None
    assert verdicts[("refresh ≤ 1.5 ms server CPU", "pg1")] is True
    assert verdicts[("refresh p99 < 100 ms at 16 connections", "pg1")] is True
    assert verdicts[("GET /me ≥ 25 % of hello-world (same workers)", "pg1")] is True
    assert verdicts[("GET /me ≥ 25 % of hello-world (same workers)", "pg2")] is False
    assert verdicts[("mixed at 512 connections: no 500", "pg1")] is False
    assert verdicts[("mixed at 512 connections: p99 of admitted < 1 s", "pg1")] is True
    assert verdicts[("mixed at 512 connections: no 500", "pg2")] is None
    assert verdicts[("2 workers ≥ 1.7 x 1 worker on GET /me", "")] is False
    assert verdicts[("2 workers ≥ 1.7 x 1 worker on refresh", "")] is True


def test_targets_follow_the_measurements() -> None:
    """The same targets flip when the numbers cross their thresholds."""
    verdicts = _verdicts(_measurements(refresh_cpu=1.6, pg2_me=1100))
    assert verdicts[("refresh ≤ 1.5 ms server CPU", "pg1")] is False
    assert verdicts[("GET /me ≥ 25 % of hello-world (same workers)", "pg2")] is True
    assert verdicts[("2 workers ≥ 1.7 x 1 worker on GET /me", "")] is True


def _unmet(report: str) -> str:
    start = report.index("## Targets not met: the measured limit and why")
    return report[start : report.index("\n## ", start + 1)]


def test_a_slow_postgresql_write_is_explained_with_the_sessions_waiting_for_locks() -> None:
    m = _measurements(mixed_p99=1500, mixed_refresh_p99=1500)
    m.lock_waits = {("pg1", "mixed@512"): [(6.0, 2.0), (8.0, 4.0)]}
    unmet = _unmet(render_report(m, evaluate(m), _info()))
    assert (
        "Over 1 s, refresh: a refresh is a write transaction and each of its statements "
        "waits its turn on the busy event loop; sampled every 0.1 s, the service had 7.0 "
        "PostgreSQL sessions running a statement on average, 3.0 of them waiting for a lock"
    ) in unmet
    assert "Over 1 s, login" in unmet
    assert ".." not in unmet.replace("...", "")
    m.lock_waits = {}
    unmet = _unmet(render_report(m, evaluate(m), _info()))
    assert "PostgreSQL lock waits were not sampled" in unmet


def test_refreshes_waiting_for_a_lock_explain_their_rate_only_when_most_wait() -> None:
    """The refresh targets quote the lock waits sampled during the refresh runs, and name
    the audit chain head as the bound (and what the p99's queue waits for) only when most
    sessions in flight were waiting."""
    m = _measurements(refresh_cpu=1.6, refresh_p99=150)
    m.lock_waits = {("pg1", "refresh"): [(7.6, 7.4), (7.4, 7.0)]}
    unmet = _unmet(render_report(m, evaluate(m), _info()))
    assert (
        "During the refresh runs, sampled every 0.1 s, the service had 7.5 PostgreSQL "
        "sessions running a statement on average, 7.2 of them waiting for a lock"
    ) in unmet
    assert "not the CPU, bounds one organization's refresh rate" in unmet
    assert "16 requests queue for the organization's audit chain head" in unmet
    assert "queue for the one event loop" not in unmet
    m.lock_waits = {("pg1", "refresh"): [(4.0, 1.0)]}
    unmet = _unmet(render_report(m, evaluate(m), _info()))
    assert "4.0 PostgreSQL sessions running a statement on average, 1.0 of them" in unmet
    assert "bounds one organization's refresh rate" not in unmet
    assert "16 requests queue for the one event loop, so latency follows the CPU" in unmet


def test_cpu_budget_shows_every_process_the_ceiling_and_the_share_reached() -> None:
    """ms per response of server, PostgreSQL, Redis and wrk; ceiling = cores x 1000 / sum."""
    report = render_report(_measurements(), evaluate(_measurements()), _info())
    # 2 cores / 2.6 ms = 769 responses/s at most; 600/s measured is 78 % of it.
    assert "| pg1: me | 1.50 | 0.60 | 0.20 | 0.30 | **2.60** | 769 | 600 | 78% | 0.05 |" in report
    assert (
        "| hello-world, 1 worker(s) | 0.30 | 0.00 | 0.00 | 0.10 | **0.40** | 5,000 | 2,000 |"
        in report
    )


def test_scaling_limit_is_what_the_cpu_leaves_to_a_second_worker() -> None:
    """At 1 worker's cost per response the cores allow min(2, ceiling / rate) of its rate."""
    r1, busy, ceiling, max_ratio = scaling_limit(_measurements(), "me") or (0, 0, 0, 0)
    assert (r1, busy) == (pytest.approx(600), pytest.approx(1.56))
    assert ceiling == pytest.approx(2000 / 2.6)
    assert max_ratio == pytest.approx(2000 / 2.6 / 600)
    m = _measurements()
    report = render_report(m, evaluate(m), _info())
    assert "| GET /me | 600 | 1.56 of 2 | 769 | 1.28x | 1.50x |" in report
    unmet = _unmet(report)
    assert "1.28x the 1-worker rate (measured: 1.50x): at the 1-worker cost" in unmet
    assert "1.7x cannot be reached on this machine" in unmet


def test_every_unmet_target_and_only_those_is_explained_with_this_runs_numbers() -> None:
    """One paragraph per target not met, from the run's numbers, linking a profile that exists."""
    m = _measurements(pg1_login=50, mixed_p99=1800, login_cpu=25.0)
    targets = evaluate(m)
    report = render_report(m, targets, _info())
    unmet = _unmet(report)
    bullets = [line for line in unmet.splitlines() if line.startswith("- **")]
    expected = [
        f"- **{t.name}** ({CONFIG_BY_KEY[t.config].label if t.config else '2 vs 1 worker'}): "
        f"measured {t.measured}, required {t.required}. "
        for t in targets
        if t.met is False
    ]
    assert len(bullets) == len(expected) > 5
    for bullet, start in zip(bullets, expected, strict=True):
        assert bullet.startswith(start)
    # login: 25 ms of server CPU against 20 ms per verification: 5 ms beyond the hash;
    # 26 ms on the machine, so at most 20/26 = 77 % of the reference's rate.
    assert "spends 5.00 ms per login beyond the hash, and the machine 6.00 ms" in unmet
    assert "at most 77% of the reference's rate" in unmet
    # /me on 2 workers: 1.60 ms of server CPU against hello-world's 0.35 ms.
    assert "GET /me 1.60 ms, hello-world 0.35 ms (4.6x" in unmet
    # p99 at 512: measured per answer, by kind; the slowest kind names its cause; the
    # refusals' p50 less the queue timeout is the time spent outside the queue.
    assert (
        "p99 of admitted 1800 ms, each answer timed on its own; p99 by kind of admitted "
        "request: GET /me 400 ms, refresh 900 ms, login 1800 ms. Over 1 s, login: once "
        "admitted, a login may still wait up to PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS = 2 s"
    ) in unmet
    assert "Over 1 s, refresh" not in unmet  # 900 ms: not over the target
    assert "Refusals: p50 560 ms, p99 800 ms" in unmet
    assert "a request spends about 60 ms (p50) outside the admission queue" in unmet
    mixed_row = (
        "| 512 | 341 | 300 | 10.0 | 1800.0 | 60 / 1800 | 560 / 800 "
        "| login 1800 (n=10), me 400 (n=562), refresh 900 (n=30) | 3.00 | 2 |"
    )
    assert any(row.startswith(mixed_row) for row in report.splitlines())
    # /health: the storm's latency next to the event loop's wait for a core.
    assert "went from 1.00/2.00 ms idle to 1.50/5.00 ms during the login storm" in unmet
    assert "waited for a core 240 ms per second during the storm against 3 ms idle" in unmet
    # A profile of another configuration is named as such and its link resolves.
    assert (
        "Profile (taken on pg1): [Where the time goes: PostgreSQL + Redis, 1 worker: me]" in unmet
    )
    heading = "Where the time goes: PostgreSQL + Redis, 1 worker: me"
    assert f"\n## {heading}\n" in report
    assert anchor(heading) == "#where-the-time-goes-postgresql--redis-1-worker-me"
    assert f"({anchor(heading)})" in unmet
    # What the run did not measure is said, not guessed: no introspection profile.
    assert "Profile: not measured in this run" in unmet


def test_store_round_trips_are_counted_per_response() -> None:
    """Counter deltas divided by responses; counters that did not move are left out."""
    before = {"pg xact_commit": 10.0, "redis GET": 5.0}
    after = {"pg xact_commit": 30.0, "redis GET": 5.0, "redis SET": 10.0}
    assert StoreCounter.per_response(before, after, 10) == {"pg xact_commit": 2.0, "redis SET": 1.0}
    assert StoreCounter.per_response(before, after, 0) == {}
    report = render_report(_measurements(), evaluate(_measurements()), _info())
    assert "| pg1: refresh | 2.00 | inserted 1.00 | 3.00 (SET 2.00, GET 1.00) |" in report


def test_cpu_meter_splits_the_machines_cpu_between_processes() -> None:
    """Each part's CPU delta per response; the rest of the machine is what none of them used."""
    before = CpuSnapshot(server=1.0, postgres=2.0, redis=3.0, wrk=4.0, machine=10.0)
    after = CpuSnapshot(server=2.0, postgres=2.5, redis=3.1, wrk=4.2, machine=12.0)
    b = CpuMeter.budget(before, after, 100)
    assert b is not None
    assert (b.server, b.postgres, b.redis, b.wrk) == pytest.approx((10.0, 5.0, 1.0, 2.0))
    assert b.rest == pytest.approx(2.0)
    assert b.total == pytest.approx(18.0)
    assert b.ceiling(2) == pytest.approx(2000 / 18)
    assert CpuMeter.budget(before, after, 0) is None


def test_profile_samples_are_split_by_part_of_the_request() -> None:
    """Logging anywhere; else the innermost service frame; the framework and the loop apart."""
    root = ["<module> (faultmaven_auth/__main__.py:5)", "serve (faultmaven_auth/cli.py:78)"]
    mw = "RequestContextMiddleware.__call__ (faultmaven_auth/observability/middleware.py:150)"
    endpoint = "refresh (faultmaven_auth/tokens/endpoints.py:64)"
    assert part_of([*root, mw, "Logger.log (logging/__init__.py:1559)"]) == LOGGING
    assert part_of([*root, mw, "uuid4 (uuid.py:723)"]) == MIDDLEWARE
    assert part_of([*root, mw, "Router.__call__ (starlette/routing.py:683)"]) == FRAMEWORK
    assert part_of([*root, mw, endpoint, "execute (sqlalchemy/engine.py:1)"]) == HANDLER
    assert part_of([*root, "Runner.run (asyncio/runners.py:118)"]) == LOOP
    assert part_of([*root, "on_headers_complete (uvicorn/protocols/http/h.py:250)"]) == FRAMEWORK


def test_time_in_a_library_counts_samples_where_it_is_the_innermost_code() -> None:
    """A sample is tracing's when the innermost frame that is the service's or the
    tracing code's is tracing code; a span middleware that only awaits the rest of the
    request does not make the whole request tracing time."""
    root = "<module> (faultmaven_auth/__main__.py:5);serve (faultmaven_auth/cli.py:78)"
    span = "ServerSpanMiddleware.__call__ (faultmaven_auth/observability/spans.py:67)"
    handler = "me (faultmaven_auth/identity/endpoints.py:40)"
    lines = [
        f"{root};{span};Tracer.start_span (trace/__init__.py:1171) 3",
        f"{root};{span};{handler};execute (sqlalchemy/engine.py:1) 5",
        f"{root};{span};{handler};detach (context/__init__.py:127) 1",
        f"{root};Runner.run (asyncio/runners.py:118) 1",
        "a worker thread's stack;Thread.run (threading.py:1) 50",  # not the event loop
    ]
    marks = ("trace/__init__.py", "context/__init__.py", "observability/spans.py")
    assert share_spent_in(lines, marks) == pytest.approx(4 / 10)
    assert share_spent_in([], marks) == 0.0


def _info() -> RunInfo:
    return RunInfo(
        command="python -m benchmarks.load.run --quick",
        machine="2 cores (Test CPU)",
        date="2026-12-04 12:00 UTC",
        commit="abc1234",
        rounds=2,
        seconds=5,
        quick=True,
    )


def test_report_states_where_and_how_and_every_verdict() -> None:
    """The report carries command, machine, date, commit, the targets and the 500 count."""
    m = _measurements()
    targets = evaluate(m)
    report = render_report(m, targets, _info())
    for text in (
        "python -m benchmarks.load.run --quick",
        "2 cores (Test CPU)",
        "2026-12-04 12:00 UTC",
        "abc1234",
        "**NOT met**",
        "**met**",
        "**not measured**",
        "503: 80",
        "500: 2",
    ):
        assert text in report, text
    met = sum(1 for t in targets if t.met)
    assert f"## Targets: {met} met" in report


def test_capacity_planning_adds_up_each_workload_per_core() -> None:
    """Cores for a peak: Σ(rate ÷ per-core rate) ÷ utilisation; unknown rate: no answer."""
    rates = core_rates(_measurements())  # per core: login 50, refresh ~833, me ~667, introspect 500
    assert cores_for_peak(rates, {"login": 50, "introspect": 500}, 0.5) == pytest.approx(4.0)
    assert cores_for_peak(rates, {"login": 50}, 1.0) == pytest.approx(1.0)
    assert (
        cores_for_peak(core_rates(Measurements(2, Argon2Params(2, 19456, 1))), {"login": 1}, 1)
        is None
    )


def test_sizing_block_is_replaced_between_its_markers_only() -> None:
    """Prose around the block is kept; the old numbers are gone; no markers, an error."""
    block = render_sizing_block(_measurements(), _info())
    document = (
        f"# Sizing\n\nprose before\n\n{SIZING_BEGIN}\n| old | 1 |\n{SIZING_END}\n\nprose after\n"
    )
    rewritten = replace_sizing_block(document, block)
    assert rewritten.startswith("# Sizing\n\nprose before\n\n")
    assert rewritten.endswith("\n\nprose after\n")
    assert block in rewritten
    assert "| old | 1 |" not in rewritten
    assert replace_sizing_block(rewritten, block) == rewritten
    with pytest.raises(ValueError, match="no <!-- sizing:begin -->"):
        replace_sizing_block("# Sizing without numbers\n", block)


def _shape(block: str) -> list[str]:
    """The block's row labels and headings, numbers masked: what a rewrite keeps."""
    lines = []
    for line in block.splitlines():
        if line.startswith("<!--"):
            continue
        label = line.split("|")[1] if line.startswith("|") else line.split(":")[0]
        lines.append(re.sub(r"\d[\d.,]*", "N", label).strip())
    return lines


def test_sizing_guide_block_has_the_shape_the_harness_writes() -> None:
    """docs/sizing.md holds exactly one generated block, shaped as the harness renders it."""
    document = (ROOT / "docs" / "sizing.md").read_text()
    assert document.count(SIZING_BEGIN) == 1
    assert document.count(SIZING_END) == 1
    committed = document[
        document.index(SIZING_BEGIN) : document.index(SIZING_END) + len(SIZING_END)
    ]
    assert "generated by benchmarks/load/run.py" in committed
    assert _shape(committed) == _shape(render_sizing_block(_measurements(), _info()))


class _RefreshStub(http.server.BaseHTTPRequestHandler):
    """Rotates refresh tokens like the service, remembering every token it was sent."""

    protocol_version = "HTTP/1.1"
    sent: list[str] = []
    issued: set[str] = set()
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        token = new = f"rt_{uuid.uuid4().hex}"
        with self.lock:
            self.sent.append(body["refresh_token"])
            self.issued.add(new)
        payload = json.dumps({"access_token": "a", "refresh_token": token}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        return


class _MixedStub(http.server.BaseHTTPRequestHandler):
    """GET /me answers 200 at once; a login is refused (503 OVERLOADED) after
    ``REFUSAL_DELAY`` seconds. Every answer echoes the request's X-Request-ID."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    REFUSAL_DELAY = 0.05

    def do_GET(self) -> None:
        self._answer(200, {"id": "u"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        time.sleep(self.REFUSAL_DELAY)
        self._answer(503, {"error": {"code": "OVERLOADED"}})

    def _answer(self, status: int, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-request-id", self.headers.get("x-request-id", "none"))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        return


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def refresh_stub() -> Iterator[str]:
    _RefreshStub.sent.clear()
    _RefreshStub.issued.clear()
    yield from _serve(_RefreshStub)


@pytest.fixture
def mixed_stub() -> Iterator[str]:
    yield from _serve(_MixedStub)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is installed by `make bench`")
def test_mixed_script_times_admitted_and_refused_answers_apart(
    mixed_stub: str, tmp_path: Path
) -> None:
    """Every answer is matched to its request by the echoed request id (thousands per
    thread, past the chunks the latencies leave the threads in); the slow refusals do
    not count in the admitted percentiles."""
    (tmp_path / "users.txt").write_text("user@example.com\n")
    (tmp_path / "access.txt").write_text("token\n")
    result = run_script(
        "mixed",
        mixed_stub,
        seconds=2,
        connections=4,
        threads=2,
        data={
            "BENCH_USERS": str(tmp_path / "users.txt"),
            "BENCH_ACCESS": str(tmp_path / "access.txt"),
        },
    )
    timed = result.timed
    assert timed is not None
    assert result.refused > 0
    assert result.ok > 2 * 200  # more than one chunk of latencies per thread
    assert (timed.admitted, timed.refused) == (result.ok, result.refused)
    assert set(timed.by_kind) == {"me"}  # refresh slots without a token went as /me
    assert timed.refused_p50_ms is not None
    assert timed.refused_p50_ms >= 1000 * _MixedStub.REFUSAL_DELAY
    assert result.p99_admitted_ms == timed.by_kind["me"][2]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is installed by `make bench`")
def test_chained_refresh_never_sends_a_token_twice(refresh_stub: str, tmp_path: Path) -> None:
    """Each response's token is sent by the next request; leftovers were never sent."""
    given = [f"rt_given_{n}" for n in range(12)]
    (tmp_path / "in.txt").write_text("\n".join(given) + "\n")
    out = tmp_path / "out.txt"
    result = run_script(
        "refresh",
        refresh_stub,
        seconds=1,
        connections=4,
        threads=2,
        data={"BENCH_REFRESH": str(tmp_path / "in.txt"), "BENCH_OUT": str(out)},
    )
    sent = _RefreshStub.sent
    assert result.ok > 20
    assert len(sent) == len(set(sent)), "a refresh token was sent twice"
    assert set(sent) <= set(given) | _RefreshStub.issued, "a token nobody issued was sent"
    leftovers = out.read_text().split()
    assert leftovers, "unsent tokens are handed back"
    assert not set(leftovers) & set(sent), "a handed-back token had been sent"


def test_sizing_guide_names_only_real_settings() -> None:
    """Every SETTING_NAME the guide tells operators to change is one the service reads."""
    from faultmaven_auth.config import Settings

    document = (ROOT / "docs" / "sizing.md").read_text()
    named = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`", document))
    assert {"ARGON2_TIME_COST", "DATABASE_POOL_SIZE"} <= named
    assert {name for name in named if name.lower() not in Settings.model_fields} == set()


def test_refresh_cpu_is_also_read_against_hello_world() -> None:
    """CPU time differs between machines: the unmet refresh CPU target also gives the
    refresh's cost in hello-world requests, next to that ratio where the target was set."""
    m = _measurements(refresh_cpu=1.6)
    unmet = _unmet(render_report(m, evaluate(m), _info()))
    # hello-world's server CPU in these measurements: 0.30 ms; 1.6 / 0.3 = 5.3; 1.5 / 0.09.
    assert (
        "A refresh costs 5.3x that; the target was set where a hello-world request cost " in unmet
    )
    assert "about 0.09 ms, 16.7x" in unmet


def test_sizing_block_says_how_fast_the_measured_cores_are() -> None:
    """Per-core rates depend on the cores: the block gives the same run's hello-world CPU
    per request (0.30 ms in these measurements) to compare a reader's cores against."""
    block = render_sizing_block(_measurements(), _info())
    assert "a hello-world FastAPI request costs its server 0.30 ms of CPU" in block

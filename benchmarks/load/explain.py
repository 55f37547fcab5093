"""Why a target is or is not met: the CPU budget of every process, the store round
trips, the profiles' split, and one generated paragraph per target not met.

Pure functions of the measurements, like report.py (which places these sections). Each
paragraph is a template filled with numbers of the same run; where the run has no number
for a step of the argument, the paragraph says "not measured" instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.common.profile import PARTS
from benchmarks.load.costs import (
    PART_NAMES,
    WORKLOAD_NAMES,
    anchor,
    budget_text,
    ceiling_text,
    hello_budget,
    ms_text,
    num,
    ops_text,
    profile_heading,
    rate,
    scaling_limit,
)
from benchmarks.load.model import (
    CONFIG_BY_KEY,
    SINGLE_CONNECTIONS,
    HealthProbe,
    Measurements,
    budget,
    budget_per_ok,
    cpu_ms,
    kind_p99,
    latency,
    median,
    median_ratio,
    mixed,
    ok_rps,
    ops_per_request,
    timed_median,
)
from benchmarks.load.targets import Target

# The server CPU the issue allows a refresh (target 2) and the share of hello-world it
# asks of /me and introspection (target 3).
REFRESH_CPU_TARGET_MS = 1.5
HELLO_SHARE_TARGET = 0.25
SCALING_TARGET = 1.7


# --- the paragraphs -------------------------------------------------------------------


def _profile_ref(m: Measurements, config: str, workload: str) -> str:
    key = next(
        (
            k
            for k in ((config, workload), *((c, workload) for c in CONFIG_BY_KEY))
            if k in m.profiles
        ),
        None,
    )
    if key is None:
        return "Profile: not measured in this run (py-spy profiles are off in --quick)."
    split = m.profiles[key].split
    parts = ", ".join(f"{PART_NAMES[p]} {split[p]:.0%}" for p in PARTS) if split else "no samples"
    where = "" if key[0] == config else f" (taken on {key[0]})"
    heading = profile_heading(*key)
    return f"Profile{where}: [{heading}]({anchor(heading)}); event-loop samples: {parts}."


def _ops_sentence(m: Measurements, config: str, workload: str) -> str:
    ops = ops_per_request(m, config, workload)
    if not ops:
        return "Store round trips: not measured for this configuration."
    xacts, written, redis = ops_text(ops)
    return (
        f"Per response: {xacts} PostgreSQL transactions (each at least one round trip; "
        f"statements are not counted), rows written {written}; Redis calls {redis}."
    )


def _login_rate(m: Measurements, config: str) -> str:
    r, b = median(ok_rps(m, config, "login")), budget_per_ok(m, config, "login")
    ref = median(m.argon2_per_s(config))
    verify = median([a.cpu_ms for a in m.argon2_rates.get(config, [])])
    text = (
        f"Logins ran at {num(r)}/s against {num(ref, '{:,.1f}')} argon2id verifications/s "
        f"with the cores to the reference alone. Per successful login, "
        f"{ceiling_text(m, b, r)}."
    )
    if verify is None or b is None:
        return text + " The split between the hash and the rest: not measured."
    if verify > b.server:
        return text + (
            f" The reference's CPU per verification ({verify:.2f} ms) exceeds the server's per "
            "login: the two were not comparable in this run (a busy machine), so the CPU "
            "beyond the hash is not measured."
        )
    return text + (
        f" The hash is {verify:.2f} ms of it (the reference's CPU per verification): the server "
        f"spends {b.server - verify:.2f} ms per login beyond the hash, and the machine "
        f"{b.total - verify:.2f} ms. At that cost a fully busy machine reaches at most "
        f"{verify / b.total:.0%} of the reference's rate, whatever the service overlaps."
    )


def _login_tail(m: Measurements, config: str) -> str:
    p50, p99 = latency(m, config, "login", "p50_ms"), latency(m, config, "login", "p99_ms")
    r = rate(m, config, "login")
    mean = f"{1000 * SINGLE_CONNECTIONS / r:.0f} ms" if r else "not measured"
    return (
        f"p50 {num(p50, '{:.0f}')} ms, p99 {num(p99, '{:.0f}')} ms at {SINGLE_CONNECTIONS} "
        f"connections; by Little's law the mean is {mean} ({SINGLE_CONNECTIONS} connections ÷ "
        f"{num(r)}/s), most of it waiting for a hashing thread "
        f"(PASSWORD_HASH_THREADS={m.settings.get('PASSWORD_HASH_THREADS', '?')}). "
        "The spread of that wait is not measured."
    )


def _health(m: Measurements, config: str) -> str:
    probes = m.health.get(config, [])
    if not probes:
        return "/health latency: not measured."
    idle50, idle99 = (
        median([p.idle_p50_ms for p in probes]),
        median([p.idle_p99_ms for p in probes]),
    )
    s50, s99 = median([p.storm_p50_ms for p in probes]), median([p.storm_p99_ms for p in probes])
    b, r = budget(m, config, "login"), rate(m, config, "login")
    busy = (
        f"the measured processes kept {r * b.total / 1000:.2f} of the {m.cores} cores busy "
        f"(the machine's other processes {r * b.rest / 1000:.2f} more)"
        if b and r
        else "the cores' use during the storm was not measured"
    )
    return (
        f"/health p50/p99 went from {idle50:.2f}/{idle99:.2f} ms idle to {s50:.2f}/{s99:.2f} ms "
        f"during the login storm: {busy}, with "
        f"PASSWORD_HASH_THREADS={m.settings.get('PASSWORD_HASH_THREADS', '?')} hashing thread(s) "
        f"a worker beside the event loop that answers /health. {_loop_wait(probes)}"
    )


def _loop_wait(probes: list[HealthProbe]) -> str:
    idle = median(
        [p.idle_loop_wait_ms_per_s for p in probes if p.idle_loop_wait_ms_per_s is not None]
    )
    storm = median(
        [p.storm_loop_wait_ms_per_s for p in probes if p.storm_loop_wait_ms_per_s is not None]
    )
    if idle is None or storm is None:
        return "How long the event loop waited for a core: not measured."
    return (
        f"The event loop's thread waited for a core {storm:.0f} ms per second during the storm "
        f"against {idle:.0f} ms idle (run-queue wait, Linux schedstat): a /health request that "
        "arrives meanwhile waits too."
    )


def _refreshes_wait_for_the_chain(m: Measurements, config: str) -> bool:
    """On PostgreSQL, whether most refreshes in flight were waiting for a lock."""
    rounds = m.lock_waits.get((config, "refresh"), [])
    active = median([a for a, _ in rounds]) or 0.0
    waiting = median([w for _, w in rounds]) or 0.0
    return bool(active) and waiting / active >= 0.5


def _refresh_turns(m: Measurements, config: str) -> str:
    """On PostgreSQL, how many of the refreshes in flight were waiting for a lock."""
    if CONFIG_BY_KEY[config].backend != "postgres":
        return ""
    text = f" During the refresh runs, {_lock_text(m, config, 'refresh')}."
    if _refreshes_wait_for_the_chain(m, config):
        text += (
            " Most refreshes in flight were waiting: the benchmark's users share one "
            "organization, whose chain head stays locked from each refresh's audit append "
            "to its commit, so that turn, not the CPU, bounds one organization's refresh rate."
        )
    return text


# The hello-world request's server CPU on the machine where the refresh target (1.5 ms)
# was set: its ratio to the target is how the target reads on a faster or slower machine.
HELLO_CPU_WHEN_SET_MS = 0.09
TARGET_RATIO = REFRESH_CPU_TARGET_MS / HELLO_CPU_WHEN_SET_MS


def _refresh_cpu(m: Measurements, config: str) -> str:
    server = cpu_ms(m, config, "refresh")
    hello = hello_budget(m, CONFIG_BY_KEY[config].workers)
    over = (
        f"{server - REFRESH_CPU_TARGET_MS:.2f} ms over the {REFRESH_CPU_TARGET_MS} ms target"
        if server
        else "not measured"
    )
    relative = ""
    if server and hello and hello.server:
        ratio = server / hello.server
        relative = (
            f" A refresh costs {ratio:.1f}x that; the target was set where a hello-world "
            f"request cost about {HELLO_CPU_WHEN_SET_MS} ms, {TARGET_RATIO:.1f}x (CPU time "
            f"per request differs between machines; the ratio travels better)."
        )
    return (
        f"Server CPU per refresh {ms_text(server)} ({over}); the hello-world app's whole request "
        f"costs its server {ms_text(hello.server if hello else None)} on the same uvicorn set-up."
        f"{relative} {_ops_sentence(m, config, 'refresh')} "
        f"{ceiling_text(m, budget(m, config, 'refresh'), rate(m, config, 'refresh'))}."
        f"{_refresh_turns(m, config)}"
    )


def _refresh_p99(m: Measurements, config: str) -> str:
    p50, p99 = latency(m, config, "refresh", "p50_ms"), latency(m, config, "refresh", "p99_ms")
    r = rate(m, config, "refresh")
    mean = f"{1000 * SINGLE_CONNECTIONS / r:.0f} ms" if r else "not measured"
    return (
        f"p50 {num(p50, '{:.0f}')} ms, p99 {num(p99, '{:.0f}')} ms; by Little's law the mean is "
        f"{mean} ({SINGLE_CONNECTIONS} connections ÷ {num(r)}/s): at this throughput the "
        f"{SINGLE_CONNECTIONS} requests queue "
        + (
            "for the organization's audit chain head (below), so latency follows how long "
            "each refresh holds it"
            if _refreshes_wait_for_the_chain(m, config)
            else "for the one event loop, so latency follows the CPU per refresh"
        )
        + f". {ceiling_text(m, budget(m, config, 'refresh'), r)}. "
        f"{_ops_sentence(m, config, 'refresh')}{_refresh_turns(m, config)}"
    )


def _hello_share(m: Measurements, config: str, workload: str) -> str:
    workers = CONFIG_BY_KEY[config].workers
    hello = hello_budget(m, workers)
    b = budget(m, config, workload)
    share = median_ratio(ok_rps(m, config, workload), m.hello_rps.get(workers, []))
    cost = (
        f"Server CPU per request: {WORKLOAD_NAMES[workload]} {b.server:.2f} ms, hello-world "
        f"{hello.server:.2f} ms ({b.server / hello.server:.1f}x; "
        f"{HELLO_SHARE_TARGET:.0%} of hello-world's rate needs at most "
        f"{hello.server / HELLO_SHARE_TARGET:.2f} ms when both are CPU-bound). "
        f"Whole machine: {b.total:.2f} vs {hello.total:.2f} ms."
        if b and hello and hello.server
        else "Server CPU per request of it or of hello-world: not measured."
    )
    return (
        f"{WORKLOAD_NAMES[workload]} at {num(median(ok_rps(m, config, workload)))}/s, "
        f"{num(share, '{:.0%}')} of hello-world's {num(median(m.hello_rps.get(workers, [])))}/s. "
        f"{cost} {_ops_sentence(m, config, workload)} {_profile_ref(m, config, workload)}"
    )


def _no_500(m: Measurements, config: str) -> str:
    runs = m.runs(config, mixed(512))
    errors = sum(s.result.server_errors for s in runs)
    return (
        f"{errors} responses were 5xx other than 503 at 512 connections. Their cause is not "
        "measured by the harness: the server's log of the run has the tracebacks."
    )


KIND_NAMES = {"me": "GET /me", "refresh": "refresh", "login": "login"}


def _kind_reason(m: Measurements, config: str, kind: str) -> str:
    """Why one kind of request is slower than admission alone would make it."""
    if kind == "login":
        hash_wait = m.settings.get("PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS", "?")
        return (
            "once admitted, a login may still wait up to PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS "
            f"= {hash_wait} s for a hashing thread (the hash competes with the event loop "
            "for the same cores), then writes like a refresh"
        )
    if kind == "refresh":
        if CONFIG_BY_KEY[config].backend == "embedded":
            where = (
                "SQLite runs one writer at a time, so the refreshes and logins of all slots "
                "queue for it, each holding it across its statements' turns on the busy "
                "event loop"
            )
        else:
            where = "each of its statements waits its turn on the busy event loop; " + _lock_text(
                m, config, mixed(512)
            )
        return (
            f"a refresh is a write transaction and {where}. {_ops_sentence(m, config, 'refresh')}"
        )
    return "every await waits its turn on the busy event loop"


def _lock_text(m: Measurements, config: str, workload: str) -> str:
    rounds = m.lock_waits.get((config, workload), [])
    if not rounds:
        return "PostgreSQL lock waits were not sampled"
    active = median([a for a, _ in rounds]) or 0.0
    waiting = median([w for _, w in rounds]) or 0.0
    return (
        f"sampled every 0.1 s, the service had {active:.1f} PostgreSQL sessions running a "
        f"statement on average, {waiting:.1f} of them waiting for a lock another "
        "transaction held (writers taking turns on the same rows, such as the "
        "organization's audit chain head, which every login and refresh advances)"
    )


def _p99_512(m: Measurements, config: str) -> str:
    runs = m.runs(config, mixed(512))
    p99 = median([s.result.p99_admitted_ms for s in runs])
    if p99 is None:
        return "The p99 of admitted requests at 512 connections: not measured."
    if not any(s.result.timed for s in runs):
        return f"p99 of admitted {p99:.0f} ms, an upper bound: answers were not timed one by one."
    kinds = {k: v for k in KIND_NAMES if (v := kind_p99(runs, k)) is not None}
    by_kind = ", ".join(f"{KIND_NAMES[k]} {v:.0f} ms" for k, v in kinds.items())
    # Every kind over the target, slowest first: each with its own cause.
    slow = sorted((k for k in kinds if kinds[k] >= 1000), key=lambda k: -kinds[k])
    try:
        queue_ms = 1000 * float(m.settings["REQUEST_QUEUE_TIMEOUT_SECONDS"])
    except (KeyError, ValueError):
        queue_ms = None
    admitted_p50 = timed_median(runs, "admitted_p50_ms")
    refused_p50 = timed_median(runs, "refused_p50_ms")
    refused_p99 = timed_median(runs, "refused_p99_ms")
    outside = (
        f"Refusals: p50 {refused_p50:.0f} ms, p99 {num(refused_p99, '{:.0f}')} ms, against "
        f"REQUEST_QUEUE_TIMEOUT_SECONDS = {queue_ms:.0f} ms: a request spends about "
        f"{refused_p50 - queue_ms:.0f} ms (p50) outside the admission queue (reading, parsing "
        "and writing on the busy loop, and the timeout firing late), measured on the "
        "refusals, which all wait the full timeout."
        if refused_p50 is not None and queue_ms is not None
        else "No request was refused."
    )
    return (
        f"p99 of admitted {p99:.0f} ms, each answer timed on its own; p99 by kind of "
        f"admitted request: {by_kind}. "
        + "".join(
            f"Over 1 s, {KIND_NAMES[k]}: {_kind_reason(m, config, k).rstrip('.')}. " for k in slow
        )
        + f"Admitted p50 {num(admitted_p50, '{:.0f}')} ms: a standing admission queue is "
        f"served newest first, so an admitted request barely waits for its slot. {outside} "
        f"{ceiling_text(m, budget(m, config, mixed(512)), rate(m, config, mixed(512)))}. "
        f"{_profile_ref(m, config, mixed(512))}"
    )


def _scaling(m: Measurements, workload: str) -> str:
    measured = median_ratio(ok_rps(m, "pg2", workload), ok_rps(m, "pg1", workload))
    limit = scaling_limit(m, workload)
    if limit is None:
        return f"2 workers: {num(measured, '{:.2f}x')}; the CPU budget was not measured."
    r1, busy, ceiling, max_ratio = limit
    b1 = budget(m, "pg1", workload)
    verdict = (
        f"at the 1-worker cost per response, {SCALING_TARGET}x cannot be reached on this "
        "machine: the other processes' share of the cores is not the service's to give"
        if max_ratio < SCALING_TARGET
        else f"so the CPU would allow {SCALING_TARGET}x; what kept 2 workers below it is not measured"
    )
    b2, r2 = budget(m, "pg2", workload), rate(m, "pg2", workload)
    return (
        f"With 1 worker, {WORKLOAD_NAMES[workload]} ran at {r1:,.0f} responses/s at "
        f"{budget_text(b1) if b1 else '?'} per response: all processes together kept {busy:.2f} "
        f"of the {m.cores} cores busy. At that cost the cores give at most {ceiling:,.0f}/s, "
        f"{max_ratio:.2f}x the 1-worker rate (measured: {num(measured, '{:.2f}x')}): {verdict}. "
        f"With 2 workers: {ceiling_text(m, b2, r2)}."
        + (_refresh_turns(m, "pg2") if workload == "refresh" else "")
        + f" {_profile_ref(m, 'pg1', workload)}"
    )


PARAGRAPHS: dict[str, Callable[[Measurements, str], str]] = {
    "login_rate": _login_rate,
    "login_tail": _login_tail,
    "health": _health,
    "refresh_cpu": _refresh_cpu,
    "refresh_p99": _refresh_p99,
    "hello:me": lambda m, c: _hello_share(m, c, "me"),
    "hello:introspect": lambda m, c: _hello_share(m, c, "introspect"),
    "no_500": _no_500,
    "p99_512": _p99_512,
    "scaling:me": lambda m, c: _scaling(m, "me"),
    "scaling:refresh": lambda m, c: _scaling(m, "refresh"),
}
PROFILED_BY = {
    "login_rate": "login",
    "login_tail": "login",
    "health": "login",
    "refresh_cpu": "refresh",
    "refresh_p99": "refresh",
}


def explain(m: Measurements, target: Target) -> str:
    """One paragraph: the measured limit of a target not met, and why, from this run."""
    config = target.config or "pg1"
    paragraph = PARAGRAPHS[target.key](m, config) if target.key in PARAGRAPHS else "Not explained."
    workload = PROFILED_BY.get(target.key)
    if workload:
        paragraph += " " + _profile_ref(m, config, workload)
    return paragraph


def unmet_section(m: Measurements, targets: list[Target]) -> list[str]:
    unmet = [t for t in targets if t.met is False]
    if not unmet:
        return []
    lines = ["## Targets not met: the measured limit and why", ""]
    lines.append(
        "Generated from this run's numbers (CPU budget and store round trips below; "
        "profiles at the end). Little's law: mean latency = connections ÷ throughput."
    )
    for t in unmet:
        where = CONFIG_BY_KEY[t.config].label if t.config else "2 vs 1 worker"
        lines += [
            "",
            f"- **{t.name}** ({where}): measured {t.measured}, required {t.required}. "
            + explain(m, t),
        ]
    return lines

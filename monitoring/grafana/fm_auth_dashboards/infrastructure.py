"""Infrastructure: service processes, connection pools, PostgreSQL, Redis and hosts.

Exporter metrics (``pg_*``, ``redis_*``, ``node_*``) come from postgres_exporter,
redis_exporter and node_exporter under their own scrape jobs, so they are not filtered
by ``job="auth-service"`` or the instance variable.
"""

from __future__ import annotations

from .kit import (
    BLUE,
    GREEN,
    INSTANCE_VARIABLE,
    JSON,
    RED,
    YELLOW,
    Panel,
    Row,
    dashboard,
    datasource_variable,
    steps,
    target,
)
from .queries import (
    RATE,
    quantile,
    rate_sum,
    selector,
    standard_annotations,
)
from .shared import (
    UP_DOWN,
    dependency_panel,
)

USAGE = steps(GREEN, (0.8, YELLOW), (0.9, RED))
# Filesystems that can fill up (as in the DiskSpaceLow rule): not memory or overlays.
REAL_FILESYSTEMS = 'fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs|fuse.*"'


def usage(
    title: str, expr: str, legend: str, description: str, alert_at: float, *runbooks: str
) -> Panel:
    """A share of a host resource in use; red from the level its alert fires at."""
    return Panel(
        title,
        "timeseries",
        [target(expr, legend)],
        "percentunit",
        description,
        runbooks=runbooks,
        thresholds=steps(GREEN, (alert_at - 0.1, YELLOW), (alert_at, RED)),
        min=0,
        max=1,
        width=8,
    )


def infrastructure() -> JSON:
    return dashboard(
        uid="fm-auth-infrastructure",
        title="FaultMaven Auth — Infrastructure",
        description="Service processes, connection pools, PostgreSQL, Redis and hosts.",
        variables=[datasource_variable(), INSTANCE_VARIABLE],
        annotations=standard_annotations(),
        runbooks=(
            "ServiceDown",
            "DatabaseConnectionFailure",
            "RedisDown",
            "DiskSpaceLow",
            "HighMemoryUsage",
        ),
        panels=[
            Row("Service processes"),
            Panel(
                "Instances up",
                "stat",
                [target(f"sum(up{selector()})")],
                "short",
                "auth-service targets that answered the last scrape.",
                runbooks=("ServiceDown",),
                thresholds=steps(RED, (1, GREEN)),
            ),
            Panel(
                "Running versions",
                "table",
                [
                    target(
                        f"count by (version, commit) (build_info{selector()})",
                        instant=True,
                        fmt="table",
                    )
                ],
                "none",
                "Instances per deployed version and commit (build_info). Two rows during "
                "a rolling deployment; two rows for long means a stuck rollout.",
                width=12,
            ),
            dependency_panel(),
            Panel(
                "Process CPU",
                "timeseries",
                [target(f"rate(process_cpu_seconds_total{selector()}[{RATE}])", "{{instance}}")],
                "percentunit",
                "CPU time per second of each service process (1 = one core busy).",
                width=8,
            ),
            Panel(
                "Process resident memory",
                "timeseries",
                [target(f"process_resident_memory_bytes{selector()}", "{{instance}}")],
                "bytes",
                "Resident memory of each service process. A steady climb across "
                "deployments is a leak; compare with the container limit.",
                runbooks=("HighMemoryUsage",),
                width=8,
            ),
            Panel(
                "Open file descriptors",
                "timeseries",
                [
                    target(
                        f"process_open_fds{selector()} / process_max_fds{selector()}",
                        "{{instance}}",
                    )
                ],
                "percentunit",
                "Open descriptors as a share of the limit (sockets count: connection "
                "leaks show here first).",
                thresholds=USAGE,
                max=1,
                width=8,
            ),
            Panel(
                "Python garbage collections",
                "timeseries",
                [
                    target(
                        rate_sum("python_gc_collections_total", by="generation"),
                        "generation {{generation}}",
                    )
                ],
                "ops",
                "Collections per second by generation, summed over the workers; frequent "
                "generation-2 runs cost latency.",
            ),
            Panel(
                "Telemetry store errors",
                "timeseries",
                [target(rate_sum("telemetry_store_errors_total", by="operation"), "{{operation}}")],
                "ops",
                "Best-effort telemetry writes to the key-value store that failed: "
                "auth_success_rate is missing attempts and the store is in trouble.",
                runbooks=("AuthServiceRedisUnreachable",),
            ),
            Row("Connection pools (service side)"),
            Panel(
                "Database pool",
                "timeseries",
                [
                    target(f"sum(db_pool_size{selector()})", "size"),
                    target(f"sum(db_pool_checked_out{selector()})", "checked out"),
                    target(f"sum(db_pool_overflow{selector()})", "overflow"),
                ],
                "short",
                "SQLAlchemy pool: connections checked out against the pool size; "
                "overflow above 0 means the pool is exhausted and extra connections open.",
                runbooks=("AuthServiceDatabaseUnreachable",),
                width=8,
            ),
            Panel(
                "Database pool wait p95",
                "timeseries",
                [target(quantile(0.95, "db_pool_wait_seconds"), "p95")],
                "s",
                "Time a request waits for a database connection.",
                thresholds=steps(GREEN, (0.05, YELLOW), (0.25, RED)),
                width=8,
            ),
            Panel(
                "Redis pool",
                "timeseries",
                [
                    target(f"sum by (state) (redis_pool_connections{selector()})", "{{state}}"),
                    target(f"sum(redis_pool_max_connections{selector()})", "max"),
                ],
                "short",
                "redis-py pool connections in use and available, against the maximum.",
                runbooks=("AuthServiceRedisUnreachable",),
                width=8,
            ),
            Row("PostgreSQL (postgres_exporter)"),
            Panel(
                "PostgreSQL up",
                "stat",
                [target("min(pg_up)")],
                "none",
                "Whether postgres_exporter reaches PostgreSQL.",
                runbooks=("DatabaseConnectionFailure",),
                thresholds=steps(RED, (1, GREEN)),
                mappings=UP_DOWN,
            ),
            Panel(
                "PostgreSQL connections used",
                "stat",
                [target("sum(pg_stat_database_numbackends) / max(pg_settings_max_connections)")],
                "percentunit",
                "Backends as a share of max_connections (every replica's pool counts).",
                runbooks=("DatabaseConnectionFailure",),
                thresholds=USAGE,
            ),
            Panel(
                "PostgreSQL transactions",
                "timeseries",
                [
                    target(
                        f"sum by (datname) (rate(pg_stat_database_xact_commit[{RATE}]))",
                        "commit {{datname}}",
                    ),
                    target(
                        f"sum by (datname) (rate(pg_stat_database_xact_rollback[{RATE}]))",
                        "rollback {{datname}}",
                    ),
                ],
                "ops",
                "Commits and rollbacks per second by database.",
            ),
            Panel(
                "PostgreSQL deadlocks and conflicts",
                "timeseries",
                [
                    target(
                        f"sum by (datname) (increase(pg_stat_database_deadlocks[{RATE}]))",
                        "deadlocks {{datname}}",
                    ),
                    target(
                        f"sum by (datname) (increase(pg_stat_database_conflicts[{RATE}]))",
                        "conflicts {{datname}}",
                    ),
                ],
                "short",
                "Deadlocks and recovery conflicts per interval.",
            ),
            Row("Redis (redis_exporter)"),
            Panel(
                "Redis up",
                "stat",
                [target("min(redis_up)")],
                "none",
                "Whether redis_exporter reaches Redis.",
                runbooks=("RedisDown",),
                thresholds=steps(RED, (1, GREEN)),
                mappings=UP_DOWN,
            ),
            Panel(
                "Redis clients",
                "stat",
                [target("sum(redis_connected_clients)")],
                "short",
                "Client connections to Redis.",
                thresholds=steps(BLUE),
            ),
            Panel(
                "Redis memory",
                "timeseries",
                [
                    target("sum by (instance) (redis_memory_used_bytes)", "used {{instance}}"),
                    target("sum by (instance) (redis_memory_max_bytes)", "max {{instance}}"),
                ],
                "bytes",
                "Memory used against maxmemory (0 = unlimited). Lockout counters, "
                "revocations and rate limits live here.",
                runbooks=("RedisDown",),
            ),
            Panel(
                "Redis commands",
                "timeseries",
                [
                    target(
                        f"sum by (instance) (rate(redis_commands_processed_total[{RATE}]))",
                        "{{instance}}",
                    )
                ],
                "ops",
                "Commands per second processed by Redis.",
            ),
            Row("Hosts (node_exporter)"),
            usage(
                "Host CPU",
                f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{RATE}]))',
                "{{instance}}",
                "Share of CPU time not idle, per host.",
                0.9,
            ),
            usage(
                "Host memory",
                "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
                "{{instance}}",
                "Share of memory not available to new processes, per host; "
                "HighMemoryUsage fires above 85 %.",
                0.85,
                "HighMemoryUsage",
            ),
            usage(
                "Disk usage",
                f"1 - node_filesystem_avail_bytes{{{REAL_FILESYSTEMS}}} "
                f"/ node_filesystem_size_bytes{{{REAL_FILESYSTEMS}}}",
                "{{instance}} {{mountpoint}}",
                "Share of each filesystem in use; DiskSpaceLow fires above 80 % "
                "(less than 20 % free).",
                0.8,
                "DiskSpaceLow",
            ),
        ],
    )

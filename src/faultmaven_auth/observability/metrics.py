"""Prometheus metrics: the names and labels of DESIGN §5 are API, kept here in one place.

Each app gets its own ``Metrics`` bound to its own registry, so tests scrape exactly what
their flows produced. With several workers, prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by ``serve`` before any worker starts) writes values
to per-process files and ``/metrics`` sums them.

Label values are bounded: ``handler`` is a route template, ``status`` an exact code,
``organization_id`` one of at most ``METRICS_MAX_ORGANIZATION_LABELS`` ids (the rest are
``other``); never a user id, an email or a raw path.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from faultmaven_auth.observability.worker_metrics import GcCounters

LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
AUTH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
SESSION_BUCKETS = (60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Checking out a pooled connection: microseconds when one is idle, up to the pool's
# 30 s timeout when the pool is exhausted.
POOL_WAIT_BUCKETS = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Waiting for a password-hashing thread: nothing when one is free, up to the queue
# deadline (PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS, 2 s by default) at capacity.
HASH_QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# Why a hashing job was refused: the queue was at its hard limit, the estimated wait
# was past the deadline, or the job waited past it (the estimate was too low).
HASH_REFUSAL_REASONS = ("queue_full", "estimated_wait", "deadline")

OTHER = "other"
# Why a request was refused with a 503 before or while it ran (DESIGN §5: bounded values).
REFUSAL_REASONS = (
    "overloaded",  # the worker's request slots stayed full for the queue timeout
    "store_pool_exhausted",  # no Redis connection came free in time
    "database_pool_exhausted",  # no database connection came free in time
    "database_connection_limit",  # PostgreSQL refused a new connection (too many clients)
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def build_commit() -> str:
    """The commit the running build came from: ``BUILD_COMMIT`` or ``GIT_COMMIT``.

    Set by the image build; git is never run at runtime (there may be no git, no
    repository, or a repository that is not the one the code came from).
    """
    for name in ("BUILD_COMMIT", "GIT_COMMIT"):
        value = os.environ.get(name, "").strip()
        if value:
            return value[:64]  # a label value, bounded whatever the build passes
    return "unknown"


class BoundedLabel:
    """Keeps at most ``limit`` distinct values of a label; later ones become ``other``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        text = str(value)
        if text in self._seen:
            return text
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(text)
                return text
        return OTHER


class ComputedGauges(Collector):
    """Gauges computed from shared state (the store, the database) and cached.

    The values are refreshed asynchronously by the ``/metrics`` handler before it renders,
    then read here, so collection itself never does I/O.
    """

    def __init__(self) -> None:
        self.auth_success_rate: float | None = None
        self.active_users: dict[str, int] = {}
        self.organizations_total: int | None = None

    def collect(self) -> Iterator[Metric]:
        rate = GaugeMetricFamily(
            "auth_success_rate",
            "Share of successful authentication attempts over the last 5 minutes "
            "(1 when there were none)",
        )
        if self.auth_success_rate is not None:
            rate.add_metric([], self.auth_success_rate)
        yield rate
        active = GaugeMetricFamily(
            "active_users_total",
            "Distinct users seen in the activity window, by organization",
            labels=["organization_id"],
        )
        for org, count in sorted(self.active_users.items()):
            active.add_metric([org], count)
        yield active
        orgs = GaugeMetricFamily("organizations_total", "Organizations that are not deleted")
        if self.organizations_total is not None:
            orgs.add_metric([], self.organizations_total)
        yield orgs


class Metrics:
    """Every metric of the service, registered in ``registry``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_organization_labels: int = 100,
        version: str = "unknown",
        commit: str = "unknown",
        redis_pool: bool = False,
        security_event_types: Iterable[str] = (),
    ) -> None:
        self.registry = registry
        self.org_label = BoundedLabel(max_organization_labels)
        self.computed = ComputedGauges()

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        def histogram(
            name: str, doc: str, labels: Iterable[str], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(name, doc, list(labels), buckets=buckets, registry=registry)

        self.http_requests_total = counter(
            "http_requests_total",
            "HTTP requests by route template, method and exact status",
            ("handler", "method", "status"),
        )
        self.http_request_duration_seconds = histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            ("handler", "method"),
            LATENCY_BUCKETS,
        )
        self.http_requests_inprogress = Gauge(
            "http_requests_inprogress",
            "HTTP requests being served",
            ["handler", "method"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.auth_attempts_total = counter(
            "auth_attempts_total",
            "Authentication attempts by method and outcome",
            ("method", "status"),
        )
        self.auth_duration_seconds = histogram(
            "auth_duration_seconds", "Time to authenticate, by method", ("method",), AUTH_BUCKETS
        )
        self.tokens_generated_total = counter(
            "tokens_generated_total", "Tokens issued, by type", ("token_type",)
        )
        self.tokens_validated_total = counter(
            "tokens_validated_total", "Access token validations, by outcome", ("status",)
        )
        self.sso_attempts_total = counter(
            "sso_attempts_total",
            "SSO attempts by provider type and outcome",
            ("provider_type", "status"),
        )
        self.db_queries_total = counter(
            "db_queries_total", "Database statements by operation", ("operation",)
        )
        self.db_query_duration_seconds = histogram(
            "db_query_duration_seconds", "Database statement latency", (), DB_BUCKETS
        )
        self.new_users_total = counter(
            "new_users_total", "Users created, by organization", ("organization_id",)
        )
        self.organizations_deleted_total = counter(
            "organizations_deleted_total", "Organizations deleted"
        )
        self.session_duration_seconds = histogram(
            "session_duration_seconds",
            "Length of sessions ended by logout or revocation",
            (),
            SESSION_BUCKETS,
        )
        self.api_calls_by_endpoint = counter(
            "api_calls_by_endpoint",
            "API calls by route template and method",
            ("endpoint", "method"),
        )
        self.security_events_total = counter(
            "security_events_total", "Security events by type", ("event_type",)
        )
        self.telemetry_store_errors_total = counter(
            "telemetry_store_errors_total",
            "Best-effort telemetry writes to the key-value store that failed, by what was written",
            ("operation",),
        )
        self.siem_events_dropped_total = counter(
            "siem_events_dropped_total",
            "Security events not shipped to a SIEM destination (queue full or shut down)",
            ("destination",),
        )
        self.http_requests_rejected_total = counter(
            "http_requests_rejected_total",
            "Requests refused with 503 at capacity, by what was full",
            ("reason",),
        )
        for reason in REFUSAL_REASONS:
            self.http_requests_rejected_total.labels(reason)
        self._register_runtime_signals(registry, version=version, commit=commit)
        self._register_password_hashing(registry)
        # Redis pool series exist only when there is a Redis pool (none for the
        # in-process store).
        self.redis_pool_connections: Gauge | None = None
        self.redis_pool_max_connections: Gauge | None = None
        if redis_pool:
            self.redis_pool_connections = Gauge(
                "redis_pool_connections",
                "Redis client connections by state (in_use, available)",
                ["state"],
                registry=registry,
                multiprocess_mode="livesum",
            )
            self.redis_pool_max_connections = Gauge(
                "redis_pool_max_connections",
                "Most connections the Redis client pool may open",
                registry=registry,
                multiprocess_mode="livesum",
            )
        # Alerted-on series start at 0: `increase()` over a series whose first sample is
        # already 1 is 0, so without them an alert would miss the first event after a start.
        for event_type in security_event_types:
            self.security_events_total.labels(event_type)
        for status in ("success", "failure", "expired"):
            self.tokens_validated_total.labels(status)
        for method in ("password", "refresh", "sso_oidc", "sso_saml"):
            for outcome in ("success", "failure"):
                self.auth_attempts_total.labels(method, outcome)
        for provider_type in ("oidc", "saml"):
            for outcome in ("success", "failure"):
                self.sso_attempts_total.labels(provider_type, outcome)
        registry.register(self.computed)
        # python_gc_* with several workers: counters each worker publishes from its own
        # collector (worker_metrics.GcCounters), summed like any counter.
        self.gc_counters: GcCounters | None = None
        if multiprocess_enabled():
            self.gc_counters = GcCounters(registry)
        else:
            # Per-process collectors. With several workers /metrics is rendered from
            # another registry (see exposition.MetricsExporter), which aggregates them.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

    def _register_runtime_signals(
        self, registry: CollectorRegistry, *, version: str, commit: str
    ) -> None:
        """Build, pool and dependency signals for the runbooks.

        With several workers the pool gauges add up over live workers (the service's
        connections, as the database sees them); ``dependency_up`` is the most recent
        check made by any live worker.
        """
        self.build_info = Gauge(
            "build_info",
            "Always 1; the running version and the commit it was built from",
            ["version", "commit"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(version, commit).set(1)
        self.dependency_up = Gauge(
            "dependency_up",
            "1 when the dependency answered its last health check, else 0",
            ["dependency"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.db_pool_size = Gauge(
            "db_pool_size",
            "Configured size of the database connection pool (overflow not included)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_pool_checked_out = Gauge(
            "db_pool_checked_out",
            "Database connections checked out of the pool (in use)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_pool_overflow = Gauge(
            "db_pool_overflow",
            "Overflow database connections (beyond the pool size) in use",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_pool_wait_seconds = Histogram(
            "db_pool_wait_seconds",
            "Time spent waiting to check a connection out of the database pool",
            buckets=POOL_WAIT_BUCKETS,
            registry=registry,
        )

    def _register_password_hashing(self, registry: CollectorRegistry) -> None:
        """The hashing pool's queue and refusals (identity/hashing_pool.py)."""
        self.password_hash_rejected_total = Counter(
            "password_hash_rejected_total",
            "Password hashing jobs refused at capacity (503 LOGIN_CAPACITY_EXCEEDED), by reason",
            ["reason"],
            registry=registry,
        )
        for reason in HASH_REFUSAL_REASONS:
            self.password_hash_rejected_total.labels(reason)
        self.password_hash_queue_depth = Gauge(
            "password_hash_queue_depth",
            "Password hashing jobs waiting for a thread",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.password_hash_in_progress = Gauge(
            "password_hash_in_progress",
            "Password hashing jobs running on the pool's threads",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.password_hash_queue_wait_seconds = Histogram(
            "password_hash_queue_wait_seconds",
            "Time a password hashing job waited for a thread",
            buckets=HASH_QUEUE_BUCKETS,
            registry=registry,
        )

    # Small named helpers keep label spelling in one place.

    def auth_attempt(
        self,
        method: str,
        success: bool,
        seconds: float,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        """Count an attempt; ``exemplar`` (a trace id) links the latency to its trace."""
        self.auth_attempts_total.labels(method, "success" if success else "failure").inc()
        self.auth_duration_seconds.labels(method).observe(seconds, exemplar)

    def token_issued(self, token_type: str) -> None:
        self.tokens_generated_total.labels(token_type).inc()

    def token_validated(self, status: str) -> None:
        self.tokens_validated_total.labels(status).inc()

    def security_event(self, event_type: str) -> None:
        self.security_events_total.labels(event_type).inc()

    def telemetry_store_error(self, operation: str) -> None:
        self.telemetry_store_errors_total.labels(operation).inc()

    def siem_destination_added(self, destination: str) -> None:
        """Export the destination's drops at 0 from the start: increase() sees the first."""
        self.siem_events_dropped_total.labels(destination)

    def siem_event_dropped(self, destination: str) -> None:
        self.siem_events_dropped_total.labels(destination).inc()

    def dependency_checked(self, dependency: str, up: bool) -> None:
        self.dependency_up.labels(dependency).set(1 if up else 0)

    def user_created(self, organization_id: object) -> None:
        self.new_users_total.labels(self.org_label(organization_id)).inc()

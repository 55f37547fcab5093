"""Settings, read from the environment (and an optional ``.env``) once, at start.

Every setting has an environment variable of the same name in upper case. Secrets are
``SecretStr`` so they never print. ``Settings.startup_problems`` lists what keeps the
service from starting safely in the configured environment; ``create_app`` and
``check-config`` refuse to go on while it is not empty.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import os
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/faultmaven-auth.db"

# What production asks of SIGNING_KEY_ENCRYPTION_KEY (see ``encryption_key_problem``).
MIN_ENCRYPTION_KEY_LENGTH = 32
MIN_ENCRYPTION_KEY_DISTINCT = 8
MIN_ENCRYPTION_KEY_BITS = 80.0
# Redis connections per worker beyond the admission limit: probes (/ready is never
# queued) and background work (key refresh, activity) use the pool too.
REDIS_POOL_HEADROOM = 8
# PostgreSQL's default max_connections (100) less its superuser_reserved_connections (3).
POSTGRES_DEFAULT_CONNECTION_BUDGET = 97


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cores() -> int:
    """Cores this process may use: its CPU set, capped by a container's CPU quota.

    A pod limited to 2 CPUs on a 64-core node sees 64 cores in its CPU set; 64 workers
    would only add memory and contention there.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota = cgroup_cpu_quota(CGROUP_CPU_MAX.read_text())
    except OSError:  # no cgroup v2 CPU controller here
        quota = None
    return max(1, min(cores, quota)) if quota is not None else max(1, cores)


def cgroup_cpu_quota(cpu_max: str) -> int | None:
    """Whole CPUs allowed by a cgroup v2 ``cpu.max`` ("<quota> <period>" or "max ...")."""
    quota, _, period = cpu_max.strip().partition(" ")
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


class Environment(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class SigningAlgorithm(StrEnum):
    ES256 = "ES256"
    RS256 = "RS256"


class StoreFailurePolicy(StrEnum):
    """What login does when the store holding its brute-force counters is down."""

    FAIL_CLOSED = "fail_closed"  # refuse logins (503) rather than run unprotected
    FAIL_OPEN = "fail_open"  # let logins through without lockout or rate limits


class OtlpProtocol(StrEnum):
    HTTP_PROTOBUF = "http/protobuf"
    GRPC = "grpc"  # needs the optional opentelemetry-exporter-otlp-proto-grpc package


class SyslogProtocol(StrEnum):
    UDP = "udp"
    TCP = "tcp"


SYSLOG_FACILITIES = frozenset(
    {"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
     "authpriv", "ftp", *(f"local{n}" for n in range(8))}
)  # fmt: skip


def _host_port(value: object) -> object:
    """``host:port`` or ``[ipv6]:port`` to ``(host, port)``."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {value!r}")
    return (host, int(port))


_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate_limits(text: str) -> list[tuple[int, int]]:
    """``"10/minute;100/hour"`` -> ``[(10, 60), (100, 3600)]``; empty means no limit."""
    limits: list[tuple[int, int]] = []
    for part in text.replace(",", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        count, _, period = part.partition("/")
        seconds = _PERIODS.get(period.strip().lower().removesuffix("s"))
        if not count.strip().isdigit() or int(count) < 1 or seconds is None:
            raise ValueError(f"rate limit {part!r} is not '<count>/<second|minute|hour|day>'")
        limits.append((int(count), seconds))
    return limits


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def encryption_key_problem(secret: str) -> str | None:
    """Why ``secret`` is too weak to encrypt signing keys, or None.

    A cheap screen for placeholders and typing patterns, not a proof of randomness:
    at least 32 characters, at least 8 distinct ones, not one shorter block repeated
    (``"abcd" * 8``), and at least 80 bits by the characters' own frequencies (length x
    Shannon entropy per character; 32 random hex digits score about 95-120, 32 random
    base64 characters about 125-160, ``"a" * 25 + "bcdefghij"`` 57).
    """
    if len(secret) < MIN_ENCRYPTION_KEY_LENGTH:
        return f"is shorter than {MIN_ENCRYPTION_KEY_LENGTH} characters"
    if len(set(secret)) < MIN_ENCRYPTION_KEY_DISTINCT:
        return f"has fewer than {MIN_ENCRYPTION_KEY_DISTINCT} distinct characters"
    length = len(secret)
    for block in range(1, length // 2 + 1):
        if length % block == 0 and secret[:block] * (length // block) == secret:
            return "is one short sequence repeated"
    counts = Counter(secret).values()
    bits = -sum(c * math.log2(c / length) for c in counts)
    if bits < MIN_ENCRYPTION_KEY_BITS:
        return f"is too predictable (about {bits:.0f} bits; at least {MIN_ENCRYPTION_KEY_BITS:.0f})"
    return None


def _loopback_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Environment = Environment.DEVELOPMENT
    service_name: str = "fm-auth-service-enterprise"
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.JSON
    log_include_pii: bool = False
    # One access-log line per request ("Request completed" has every field the start
    # line has): a JSON line costs about 16 µs of CPU on its own, and up to 40 µs per
    # request side by side (benchmarks/results/telemetry_overhead.md).
    log_request_start: bool = False
    # Proxies (IPs or CIDR ranges) whose X-Forwarded-For is believed for the client IP.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Unset: one per core when the store is shared (REDIS_URL), else 1 (see worker_count).
    workers: int | None = Field(default=None, ge=1)
    # Admission control, per worker: requests running at once, and how long one more may
    # wait for a slot before 503 OVERLOADED. Pools are sized from the limit (docs/sizing).
    # 16, not more: a worker is one event loop, and every request in flight stretches each
    # turn of it, so a write transaction holding a lock (SQLite's writer, an audit chain's
    # head) holds it longer. At 512 clients, 16 instead of 32 halved the p99 of admitted
    # requests at about the same throughput (docs/deployment.md).
    max_concurrent_requests: int = Field(default=16, ge=1)
    request_queue_timeout_seconds: float = Field(default=0.5, ge=0, le=30)

    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=10, ge=1)
    # Unset: as many as the pool size (PostgreSQL connections per worker = size + overflow).
    database_max_overflow: int | None = Field(default=None, ge=0)
    database_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    redis_url: str | None = None
    # Unset: max_concurrent_requests + REDIS_POOL_HEADROOM (a ?max_connections= in
    # REDIS_URL wins). Each request holds at most one Redis connection at a time.
    redis_max_connections: int | None = Field(default=None, ge=1)
    redis_pool_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    redis_password: SecretStr | None = None
    kv_key_prefix: str = "fmauth:"

    jwt_issuer: str = "http://127.0.0.1:8000"
    jwt_audience: str = "faultmaven"
    jwt_algorithm: SigningAlgorithm = SigningAlgorithm.ES256
    access_token_ttl_seconds: int = Field(default=15 * 60, ge=60, le=24 * 3600)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    # A session (refresh family) ends this long after its login, however often it rotates.
    session_absolute_lifetime_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    signing_key_encryption_key: SecretStr | None = None
    signing_key_refresh_seconds: int = Field(default=60, ge=1)
    # A rotated-in key is published at once and signs only after this delay, so every
    # replica (refreshing every SIGNING_KEY_REFRESH_SECONDS) and every verifier's cached
    # JWKS knows it before the first token it signs. 900 s = the 60 s refresh plus JWKS
    # caches of up to 14 minutes (common defaults are 5 and 10 minutes).
    signing_key_activation_delay_seconds: int = Field(default=900, ge=0)

    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_cost_kib: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    # The hashing pool (identity/hashing_pool.py): threads (unset = the cores this process
    # may use), how long a hash may wait for one before its request gets 503
    # LOGIN_CAPACITY_EXCEEDED, and a hard limit on the jobs waiting.
    password_hash_threads: int | None = Field(default=None, ge=1, le=256)
    password_hash_queue_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    password_hash_queue_limit: int = Field(default=256, ge=1)
    # Nice steps the hashing threads run below the event loop (Linux), 0 = off. Off by
    # default: measured on a busy shared host it did not reliably shorten /health's tail,
    # and it starved hashing until logins were refused (docs/login-capacity.md).
    password_hash_thread_niceness: int = Field(default=0, ge=0, le=19)

    allow_self_signup: bool = True
    invitation_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    default_max_users: int = Field(default=100, ge=1)
    default_max_teams: int = Field(default=20, ge=0)

    metrics_enabled: bool = True
    metrics_bearer_token: SecretStr | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_max_organization_labels: int = Field(default=100, ge=1)
    metrics_cache_seconds: float = Field(default=10.0, ge=0)
    activity_window_seconds: int = Field(default=15 * 60, ge=60)
    # Per-worker caches of the hot path (docs/architecture.md, "Request authentication"):
    # verified access tokens (never past their exp) and loaded principals (invalidated
    # through the key-value store by every write that changes one). 0 turns one off.
    token_cache_size: int = Field(default=10_000, ge=0)
    principal_cache_size: int = Field(default=10_000, ge=0)
    # A bound on staleness should an invalidation ever be lost (the store failed between
    # a commit and its invalidation); invalidations themselves take effect at once.
    principal_cache_max_age_seconds: int = Field(default=300, ge=1)
    health_check_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    profiling_enabled: bool = False
    profiling_token: SecretStr | None = None

    # Tracing (docs/observability-tracing.md): on when TRACING_ENABLED=true, or when it is
    # unset and an OTLP endpoint or JAEGER_HOST is given. The standard OTEL_* names are kept;
    # OTLP headers, timeout, compression and certificates are read by the exporter itself.
    tracing_enabled: bool | None = None
    tracing_sample_ratio: float | None = Field(default=None, ge=0, le=1)  # default 0.1
    otel_sdk_disabled: bool = False
    otel_service_name: str | None = None  # default SERVICE_NAME
    otel_exporter_otlp_endpoint: str | None = None  # base URL; /v1/traces is appended
    otel_exporter_otlp_traces_endpoint: str | None = None  # full URL, used as is
    otel_exporter_otlp_protocol: OtlpProtocol | None = None
    otel_exporter_otlp_traces_protocol: OtlpProtocol | None = None
    otel_traces_sampler_arg: float | None = Field(default=None, ge=0, le=1)
    jaeger_host: str | None = None  # shorthand: OTLP/HTTP to http://JAEGER_HOST:JAEGER_PORT
    jaeger_port: int = Field(default=4318, ge=1, le=65535)

    # SIEM export of security events (docs/security-events.md); off unless a destination
    # is set. Events queue in memory (SIEM_QUEUE_SIZE per destination) and never block.
    siem_syslog_address: Annotated[tuple[str, int] | None, NoDecode] = None
    siem_syslog_protocol: SyslogProtocol = SyslogProtocol.UDP
    siem_syslog_facility: str = "authpriv"
    logstash_host: str | None = None
    logstash_port: int = Field(default=5000, ge=1, le=65535)
    siem_queue_size: int = Field(default=10_000, ge=1)
    # Also ship every committed audit event (logger "audit", not printed on stdout).
    siem_audit_events: bool = False
    # Login protection (docs/security-monitoring.md): per-account lockout, per-address
    # credential-stuffing throttle, per-address rate limits ("10/minute;100/hour").
    login_max_failures: int = Field(default=5, ge=1)
    login_failure_window_seconds: int = Field(default=15 * 60, ge=1)
    lockout_base_seconds: int = Field(default=60, ge=1)
    lockout_max_seconds: int = Field(default=15 * 60, ge=1)
    credential_stuffing_max_failures: int = Field(default=20, ge=1)
    credential_stuffing_max_accounts: int = Field(default=10, ge=1)
    credential_stuffing_window_seconds: int = Field(default=10 * 60, ge=1)
    login_protection_store_failure: StoreFailurePolicy | None = None  # by ENVIRONMENT
    rate_limit_enabled: bool = True
    rate_limit_login: str = "10/minute;100/hour"
    rate_limit_register: str = "5/minute;20/hour"
    rate_limit_refresh: str = "30/minute;600/hour"
    rate_limit_introspect: str = "600/minute"
    rate_limit_invitation: str = "10/minute;50/hour"
    rate_limit_sso: str = "30/minute;300/hour"

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # SSO (docs/sso.md). The callback the IdPs redirect to is
    # SSO_PUBLIC_BASE_URL + /api/v1/sso/oidc/callback (default base: JWT_ISSUER).
    sso_public_base_url: str | None = None
    sso_state_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    sso_code_ttl_seconds: int = Field(default=60, ge=5, le=600)
    sso_http_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    sso_jwks_cache_seconds: int = Field(default=3600, ge=0)
    # An unknown kid refetches the JWKS at most this often (forged kids cannot make us
    # hammer the provider).
    sso_jwks_min_refresh_seconds: float = Field(default=5.0, ge=0)
    sso_clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    # Leeway on SAML NotBefore / NotOnOrAfter (IdP clocks, ADFS in particular, drift).
    sso_saml_clock_skew_seconds: int = Field(default=120, ge=0, le=600)
    # Plain-http issuers (a local test IdP); refused in production.
    sso_allow_insecure_issuers: bool = False
    # DNS servers ("host" or "host:port") for domain verification; empty: the system's.
    sso_dns_nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Outbound SSO calls reach public addresses only, plus these networks (an IdP on
    # the operator's own network); SSO_ALLOW_INSECURE_ISSUERS adds loopback.
    sso_allowed_networks: Annotated[
        list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode
    ] = Field(default_factory=list)

    @field_validator(
        "cors_origins",
        "trusted_proxies",
        "sso_dns_nameservers",
        "sso_allowed_networks",
        mode="before",
    )
    @classmethod
    def _parse_lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("siem_syslog_address", mode="before")
    @classmethod
    def _parse_syslog_address(cls, value: object) -> object:
        return _host_port(value)

    @field_validator("siem_syslog_facility")
    @classmethod
    def _known_facility(cls, value: str) -> str:
        if value.lower() not in SYSLOG_FACILITIES:
            raise ValueError(f"SIEM_SYSLOG_FACILITY must be one of {sorted(SYSLOG_FACILITIES)}")
        return value.lower()

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"TRUSTED_PROXIES: {item!r} is not an IP or CIDR") from exc
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, value: list[str]) -> list[str]:
        # Credentials are allowed on CORS requests, and "*" with credentials lets any
        # site act as the logged-in user.
        if "*" in value:
            raise ValueError("CORS_ORIGINS must list origins explicitly; '*' is not allowed")
        return value

    @field_validator(
        "rate_limit_login",
        "rate_limit_register",
        "rate_limit_refresh",
        "rate_limit_introspect",
        "rate_limit_invitation",
        "rate_limit_sso",
    )
    @classmethod
    def _valid_rate_limits(cls, value: str) -> str:
        parse_rate_limits(value)  # raises ValueError naming the bad part
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def uses_in_process_store(self) -> bool:
        return not self.redis_url

    def worker_count(self, cores: int | None = None) -> int:
        """WORKERS when set; else one per core, or 1 on the in-process store (private to
        one process: revocations would not reach the other workers)."""
        if self.workers is not None:
            return self.workers
        if self.uses_in_process_store:
            return 1
        return max(1, cores if cores is not None else available_cores())

    @property
    def database_pool_overflow(self) -> int:
        if self.database_max_overflow is not None:
            return self.database_max_overflow
        return self.database_pool_size

    @property
    def redis_pool_size(self) -> int:
        if self.redis_max_connections is not None:
            return self.redis_max_connections
        return self.max_concurrent_requests + REDIS_POOL_HEADROOM

    @property
    def store_failure_policy(self) -> StoreFailurePolicy:
        """LOGIN_PROTECTION_STORE_FAILURE, else closed in production and open elsewhere."""
        if self.login_protection_store_failure is not None:
            return self.login_protection_store_failure
        if self.environment is Environment.PRODUCTION:
            return StoreFailurePolicy.FAIL_CLOSED
        return StoreFailurePolicy.FAIL_OPEN

    @property
    def tracing_active(self) -> bool:
        """Spans are recorded and exported (an explicit TRACING_ENABLED wins)."""
        if self.otel_sdk_disabled:
            return False
        if self.tracing_enabled is not None:
            return self.tracing_enabled
        return bool(
            self.otel_exporter_otlp_endpoint
            or self.otel_exporter_otlp_traces_endpoint
            or self.jaeger_host
        )

    @property
    def otlp_traces_protocol(self) -> OtlpProtocol:
        return (
            self.otel_exporter_otlp_traces_protocol
            or self.otel_exporter_otlp_protocol
            or OtlpProtocol.HTTP_PROTOBUF
        )

    def sqlite_path(self) -> Path | None:
        """The SQLite file this URL points at, or None for memory/other databases."""
        if not self.uses_sqlite:
            return None
        _, _, path = self.database_url.partition(":///")
        if not path or path.startswith(":memory:"):
            return None
        return Path(path)

    def sizing_warnings(self, cores: int | None = None) -> list[str]:
        """Pool sizes that will not fit (for ``check-config``); they do not stop a start."""
        warnings: list[str] = []
        workers = self.worker_count(cores)
        per_worker = self.database_pool_size + self.database_pool_overflow
        if not self.uses_sqlite and workers * per_worker > POSTGRES_DEFAULT_CONNECTION_BUDGET:
            warnings.append(
                f"{workers} workers x (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW = "
                f"{per_worker}) = {workers * per_worker} PostgreSQL connections for this "
                "replica alone, over the 97 a default PostgreSQL allows; every replica "
                "adds as many (docs/deployment.md, Sizing)"
            )
        if not self.uses_in_process_store and self.redis_pool_size < self.max_concurrent_requests:
            warnings.append(
                f"REDIS_MAX_CONNECTIONS ({self.redis_pool_size}) is below "
                f"MAX_CONCURRENT_REQUESTS ({self.max_concurrent_requests}): admitted "
                "requests will wait for Redis connections"
            )
        return warnings

    @property
    def sso_callback_url(self) -> str:
        """The one OIDC redirect URI to register at every identity provider."""
        base = (self.sso_public_base_url or self.jwt_issuer).rstrip("/")
        return f"{base}/api/v1/sso/oidc/callback"

    @property
    def sso_outbound_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Non-public networks outbound SSO calls may reach (sso/outbound.py)."""
        networks = list(self.sso_allowed_networks)
        if self.sso_allow_insecure_issuers:
            networks += [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
        return networks

    def startup_problems(self) -> list[str]:
        """What keeps this configuration from running safely; empty when it may start."""
        problems: list[str] = []
        if self.workers is not None and self.workers > 1 and self.uses_in_process_store:
            problems.append(
                "WORKERS > 1 needs a shared store: set REDIS_URL (the in-process store "
                "is private to one process, so revocations would not reach other workers)"
            )
        if (
            self.tracing_active
            and self.otlp_traces_protocol is OtlpProtocol.GRPC
            and importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is None
        ):
            problems.append(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the opentelemetry-exporter-otlp-proto-grpc "
                "package; install it or use http/protobuf"
            )
        if self.environment is Environment.PRODUCTION:
            if self.uses_in_process_store:
                problems.append("ENVIRONMENT=production needs REDIS_URL (no in-process store)")
            if self.uses_sqlite:
                problems.append("ENVIRONMENT=production needs a PostgreSQL DATABASE_URL")
            if self.profiling_enabled:
                problems.append("ENVIRONMENT=production refuses PROFILING_ENABLED=true")
            if self.sso_allow_insecure_issuers:
                problems.append("ENVIRONMENT=production refuses SSO_ALLOW_INSECURE_ISSUERS=true")
            problems.extend(self._production_problems())
        return problems

    def _production_problems(self) -> list[str]:
        problems: list[str] = []
        key = self.signing_key_encryption_key
        if key is None:
            problems.append(
                "ENVIRONMENT=production needs SIGNING_KEY_ENCRYPTION_KEY "
                "(at least 32 random characters) to protect signing keys at rest"
            )
        elif (weakness := encryption_key_problem(key.get_secret_value())) is not None:
            problems.append(
                f"SIGNING_KEY_ENCRYPTION_KEY {weakness}: use at least 32 random characters, "
                "e.g. `openssl rand -base64 48`"
            )
        if self.metrics_enabled and self.metrics_bearer_token is None and not self.metrics_port:
            problems.append(
                "ENVIRONMENT=production needs METRICS_BEARER_TOKEN or METRICS_PORT: /metrics "
                "on the API port would be public (or set METRICS_ENABLED=false)"
            )
        issuer = urlsplit(self.jwt_issuer)
        if issuer.scheme != "https" and not (
            issuer.scheme == "http" and _loopback_host(issuer.hostname or "")
        ):
            problems.append(
                "JWT_ISSUER must be an https:// URL in production (http:// only on loopback)"
            )
        if any(ipaddress.ip_network(p, strict=False).prefixlen == 0 for p in self.trusted_proxies):
            problems.append(
                "TRUSTED_PROXIES must not contain 0.0.0.0/0 or ::/0 in production: every "
                "client could set its own X-Forwarded-For address"
            )
        if self.log_include_pii:
            problems.append("ENVIRONMENT=production refuses LOG_INCLUDE_PII=true")
        if self.log_level == "DEBUG":
            problems.append("ENVIRONMENT=production refuses LOG_LEVEL=DEBUG")
        if self.signing_key_activation_delay_seconds < self.signing_key_refresh_seconds:
            problems.append(
                "SIGNING_KEY_ACTIVATION_DELAY_SECONDS must be at least "
                "SIGNING_KEY_REFRESH_SECONDS, or replicas sign with keys others do not know"
            )
        return problems


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (used by tests and CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]

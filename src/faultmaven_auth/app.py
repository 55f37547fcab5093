"""The app factory. The lifespan owns every connection, client and background task."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

import prometheus_client
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.trace import NoOpTracer, Tracer
from prometheus_client import CollectorRegistry, multiprocess
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

from faultmaven_auth import __version__
from faultmaven_auth.api.cache import NoStoreMiddleware
from faultmaven_auth.api.methods import install_method_handling
from faultmaven_auth.api.openapi import install_openapi
from faultmaven_auth.audit.endpoints import router as audit_router
from faultmaven_auth.config import Settings, load_settings
from faultmaven_auth.errors import install_error_handlers
from faultmaven_auth.identity.endpoints import auth_router as register_router
from faultmaven_auth.identity.endpoints import users_router
from faultmaven_auth.identity.passwords import build_password_hasher
from faultmaven_auth.observability.activity import ActivityTracker
from faultmaven_auth.observability.admission import AdmissionMiddleware, RefusalReporter
from faultmaven_auth.observability.db_metrics import PoolMetrics, instrument_engine
from faultmaven_auth.observability.exposition import MetricsExporter
from faultmaven_auth.observability.exposition import router as metrics_router
from faultmaven_auth.observability.health import router as health_router
from faultmaven_auth.observability.http_metrics import HttpMetricsMiddleware, RouteTemplates
from faultmaven_auth.observability.logging import configure_logging
from faultmaven_auth.observability.metrics import Metrics, build_commit, multiprocess_enabled
from faultmaven_auth.observability.metrics_server import MetricsServer
from faultmaven_auth.observability.middleware import (
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
)
from faultmaven_auth.observability.profiling import ProfilingMiddleware
from faultmaven_auth.observability.spans import ServerSpanMiddleware
from faultmaven_auth.observability.store_metrics import RedisPoolMetrics
from faultmaven_auth.observability.tracing import (
    build_tracing,
    current_trace_exemplar,
    current_trace_ids,
)
from faultmaven_auth.organizations.endpoints import router as organizations_router
from faultmaven_auth.rbac.endpoints import router as roles_router
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.schemas import refuse_unsafe_parameters
from faultmaven_auth.security.endpoints import router as unlock_router
from faultmaven_auth.security.events import SecurityEventType
from faultmaven_auth.security.siem import SiemExport
from faultmaven_auth.sso.config_endpoints import router as sso_config_router
from faultmaven_auth.sso.flow_endpoints import router as sso_flow_router
from faultmaven_auth.sso.oidc_http import OidcHttp
from faultmaven_auth.storage.db import Database, DatabaseAtCapacity, create_engine
from faultmaven_auth.storage.kv import StoreUnavailable, build_kv_store
from faultmaven_auth.tokens.access import AccessTokenCodec
from faultmaven_auth.tokens.client_credentials import ClientCredentials, client_change_marker
from faultmaven_auth.tokens.endpoints import router as tokens_router
from faultmaven_auth.tokens.endpoints import well_known
from faultmaven_auth.tokens.keys import (
    KeyCipher,
    KeyDecryptionError,
    KeyRing,
    encrypt_plaintext_keys,
    ensure_signing_key,
)
from faultmaven_auth.tokens.principal_cache import GenerationCache, PrincipalCache
from faultmaven_auth.tokens.service_client_endpoints import router as service_clients_router
from faultmaven_auth.tokens.tracking_db import TrackingDatabase
from faultmaven_auth.tokens.verified_tokens import VerifiedTokenCache

logger = logging.getLogger("faultmaven_auth")


class ConfigurationError(RuntimeError):
    """The configuration cannot run safely; the message names the setting to fix."""


def new_metrics(settings: Settings) -> Metrics:
    return Metrics(
        CollectorRegistry(),
        max_organization_labels=settings.metrics_max_organization_labels,
        version=__version__,
        commit=build_commit(),
        redis_pool=not settings.uses_in_process_store,
        security_event_types=[event_type.value for event_type in SecurityEventType],
    )


async def build_runtime(
    settings: Settings, metrics: Metrics | None = None, tracer: Tracer | None = None
) -> Runtime:
    metrics = metrics or new_metrics(settings)
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_overflow,
        pool_timeout=settings.database_pool_timeout_seconds,
        pool_monitor=PoolMetrics(metrics),
    )
    instrument_engine(engine.sync_engine, metrics)
    redis_password = settings.redis_password.get_secret_value() if settings.redis_password else None
    kv = build_kv_store(
        settings.redis_url,
        password=redis_password,
        prefix=settings.kv_key_prefix,
        max_connections=settings.redis_pool_size,
        pool_timeout=settings.redis_pool_timeout_seconds,
        pool_monitor=None if settings.uses_in_process_store else RedisPoolMetrics(metrics),
    )
    principals = PrincipalCache(
        max_entries=settings.principal_cache_size,
        max_age_seconds=settings.principal_cache_max_age_seconds,
    )
    client_authorities: GenerationCache[uuid.UUID, bool] = GenerationCache(
        max_entries=settings.principal_cache_size,
        max_age_seconds=settings.principal_cache_max_age_seconds,
    )

    client_credentials: ClientCredentials = ClientCredentials(
        max_entries=settings.principal_cache_size
    )

    def clear_local_caches() -> None:
        principals.clear()
        client_authorities.clear()
        client_credentials.clear()

    db = TrackingDatabase(
        engine,
        kv,
        clear_local_caches=clear_local_caches,
        retry_for_seconds=settings.principal_cache_max_age_seconds,
    )
    secret = settings.signing_key_encryption_key
    cipher = KeyCipher(secret.get_secret_value() if secret else None)
    keys = KeyRing(cipher)
    try:
        await load_signing_keys(db, keys, settings, cipher)
    except Exception as exc:
        if database_unreachable(exc):
            # Start anyway: /health stays up, /ready reports the database, and the key
            # refresher loads the keys as soon as the database answers.
            logger.error(
                "The database is unreachable at start; retrying in the background",
                extra={"reason": type(exc).__name__},
            )
        else:
            # Whatever failed, close what was opened: a failed start must not leak.
            await db.dispose()
            await kv.close()
            if isinstance(exc, OperationalError | ProgrammingError):
                raise ConfigurationError(
                    "The database is not migrated: run `faultmaven-auth migrate` "
                    f"against DATABASE_URL first ({type(exc.orig).__name__})"
                ) from exc
            if isinstance(exc, KeyDecryptionError):
                raise ConfigurationError(str(exc)) from exc
            raise
    access_tokens = AccessTokenCodec(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=timedelta(seconds=settings.access_token_ttl_seconds),
    )
    return Runtime(
        settings=settings,
        db=db,
        kv=kv,
        hasher=build_password_hasher(settings, metrics),
        cipher=cipher,
        keys=keys,
        access_tokens=access_tokens,
        verified_tokens=VerifiedTokenCache(
            access_tokens, keys, max_entries=settings.token_cache_size
        ),
        principals=principals,
        client_authorities=client_authorities,
        client_credentials=client_credentials,
        client_changes=client_change_marker(settings),
        metrics=metrics,
        activity=ActivityTracker(
            kv,
            window_seconds=settings.activity_window_seconds,
            on_store_error=partial(_auth_counters_not_written, metrics),
        ),
        tracer=tracer or NoOpTracer(),
    )


def _auth_counters_not_written(metrics: Metrics, exc: StoreUnavailable) -> None:
    metrics.telemetry_store_error("auth_counters")
    logger.warning(
        "Could not write the authentication counters to the key-value store; kept for the next try",
        extra={"event_type": "telemetry_store_error", "reason": type(exc.__cause__).__name__},
    )


def database_unreachable(exc: BaseException) -> bool:
    """A connection problem (worth retrying), as opposed to a schema or key problem."""
    if isinstance(exc, OSError | TimeoutError | InterfaceError | DatabaseAtCapacity):
        return True
    if isinstance(exc, OperationalError):
        # SQLite reports a missing table as an OperationalError too: that is a schema
        # problem, not an outage.
        return "no such table" not in str(exc.orig).lower()
    return False


async def load_signing_keys(
    db: Database, keys: KeyRing, settings: Settings, cipher: KeyCipher
) -> None:
    async with db.transaction() as session:
        await ensure_signing_key(session, algorithm=settings.jwt_algorithm.value, cipher=cipher)
        encrypted = await encrypt_plaintext_keys(session, cipher)
    if encrypted:
        # Keys created before SIGNING_KEY_ENCRYPTION_KEY was set sat in plaintext until now.
        logger.warning(
            "Encrypted signing keys that were stored in plaintext",
            extra={"event_type": "signing_keys_encrypted", "count": encrypted},
        )
    async with db.session() as session:
        await keys.refresh(session)


async def _refresh_keys_forever(runtime: Runtime) -> None:
    """Pick up keys rotated elsewhere (CLI, another replica) without a restart.

    Until the first load succeeds (the database was down at start) it retries every
    two seconds and creates the first key if there is none.
    """
    settings = runtime.settings
    while True:
        loaded = runtime.keys.loaded
        await asyncio.sleep(settings.signing_key_refresh_seconds if loaded else 2.0)
        try:
            if loaded:
                async with runtime.db.session() as session:
                    await runtime.keys.refresh(session)
            else:
                await load_signing_keys(runtime.db, runtime.keys, settings, runtime.cipher)
                logger.info("Signing keys loaded")
        except Exception as exc:
            logger.warning(
                "Signing key refresh failed; keeping the keys already loaded",
                extra={"reason": type(exc).__name__},
            )


def create_served_app() -> FastAPI:
    """The app each worker of ``faultmaven-auth serve`` builds (uvicorn's factory).

    It also freezes the worker's startup heap once the lifespan has started: the
    modules, routes, engine and caches live as long as the worker, yet every full
    collection of the cyclic garbage collector walked all of them (about 215,000
    objects, 70 ms on an idle core), stalling every request in flight every few seconds
    under load. Frozen, they are out of the collector's reach; what requests allocate is
    collected as before. Tests build many apps in one process and keep ``create_app``,
    which does not freeze.
    """
    return create_app(freeze_startup_heap=True)


def _freeze_startup_heap() -> None:
    gc.collect()  # startup's own garbage first: frozen objects are never collected
    gc.freeze()


def create_app(
    settings: Settings | None = None,
    *,
    configure_logs: bool = True,
    freeze_startup_heap: bool = False,
) -> FastAPI:
    settings = settings or load_settings()
    problems = settings.startup_problems()
    if problems:
        raise ConfigurationError("; ".join(problems))
    # `_created` samples double the series count and no dashboard reads them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics = new_metrics(settings)
    tracing = build_tracing(settings)
    if configure_logs:
        configure_logging(
            level=settings.log_level,
            service=settings.service_name,
            environment=settings.environment.value,
            log_format=settings.log_format.value,
            include_pii=settings.log_include_pii,
            trace_ids=current_trace_ids if tracing is not None else None,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await build_runtime(settings, metrics, tracing.tracer if tracing else None)
        if tracing is not None:
            tracing.start(engine=runtime.db.engine.sync_engine, kv=runtime.kv)
        app.state.runtime = runtime
        app.state.metrics_exporter = MetricsExporter(runtime)
        app.state.sso_http = OidcHttp(settings)
        siem = SiemExport.from_settings(
            settings, metrics, current_trace_ids if tracing is not None else None
        )
        siem.start()
        metrics_server = None
        refresher = asyncio.create_task(_refresh_keys_forever(runtime))
        gc_counters = metrics.gc_counters
        gc_publisher = (
            None if gc_counters is None else asyncio.create_task(gc_counters.publish_forever())
        )
        try:
            if settings.metrics_enabled and settings.metrics_port is not None:
                metrics_server = MetricsServer(app, settings.host, settings.metrics_port)
                await metrics_server.start()
            if freeze_startup_heap:
                _freeze_startup_heap()
            logger.info("Service started", extra={"version": __version__})
            yield
        finally:
            for task in (refresher, gc_publisher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if gc_counters is not None:
                gc_counters.publish()  # this worker's last collections count after it exits
            if metrics_server is not None:
                await metrics_server.stop()
            if multiprocess_enabled():
                # This worker's live gauges must not be summed after it is gone.
                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
            await asyncio.to_thread(siem.close)  # flushes queued security events
            runtime.hasher.close()
            await app.state.sso_http.aclose()
            await runtime.activity.aclose()  # pending counters, while the store is open
            await runtime.kv.close()
            await runtime.db.dispose()
            if tracing is not None:
                await tracing.shutdown()

    app = FastAPI(
        title="FaultMaven Auth Service (Enterprise Edition)",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        # FastAPI's own telemetry is off: its spans would be roots of their own next to
        # ServerSpanMiddleware's, its metrics duplicate ours, and its logs would carry
        # exception messages. Left on, it looks up the global OpenTelemetry providers
        # (environment reads) on every request even when none is set.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Query and path parameters of every route, like bodies, refuse control characters.
        dependencies=[Depends(refuse_unsafe_parameters)],
    )
    install_error_handlers(app)
    install_method_handling(app)
    install_openapi(app)
    for router in (
        health_router,
        metrics_router,
        well_known,
        register_router,
        tokens_router,
        organizations_router,
        users_router,
        roles_router,
        audit_router,
        service_clients_router,
        unlock_router,
        sso_config_router,
        sso_flow_router,
    ):
        app.include_router(router)

    # Added innermost first: the request-context middleware must wrap everything.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    # Inside CORS, metrics and the request context: a refusal carries CORS headers and a
    # request id, and is counted as a 503 like any other response.
    app.add_middleware(
        AdmissionMiddleware,
        limit=settings.max_concurrent_requests,
        queue_timeout_seconds=settings.request_queue_timeout_seconds,
        reporter=RefusalReporter(metrics),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    if settings.metrics_enabled:
        app.add_middleware(
            HttpMetricsMiddleware,
            metrics=metrics,
            templates=lambda: RouteTemplates(_route_templates(app)),
            exemplar=current_trace_exemplar if tracing is not None else None,
        )
    if settings.profiling_enabled:
        token = settings.profiling_token
        app.add_middleware(ProfilingMiddleware, token=token.get_secret_value() if token else None)
    app.add_middleware(
        RequestContextMiddleware,
        trusted_proxies=settings.trusted_proxies,
        log_request_start=settings.log_request_start,
    )
    # Outside the request context, so even its last-resort 500 is not cacheable.
    app.add_middleware(NoStoreMiddleware)
    if tracing is not None:
        # Outermost, so request logs and the metrics' exemplars see the request's span.
        app.add_middleware(ServerSpanMiddleware, tracer=tracing.tracer)
    return app


def _route_templates(app: FastAPI) -> list[str]:
    return [*app.openapi().get("paths", {}), "/docs", "/openapi.json"]

"""What a running app holds: settings and every client the lifespan opened.

Built once by ``app.create_app``'s lifespan and reached from endpoints through
``get_runtime``; nothing here is created at import time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from opentelemetry.trace import Tracer

from faultmaven_auth.api.openapi import declares_errors
from faultmaven_auth.config import Settings
from faultmaven_auth.identity.passwords import PasswordHasher
from faultmaven_auth.observability.activity import ActivityTracker
from faultmaven_auth.observability.metrics import Metrics
from faultmaven_auth.storage.db import Database
from faultmaven_auth.storage.kv import KeyValueStore
from faultmaven_auth.tokens.access import AccessTokenCodec
from faultmaven_auth.tokens.client_credentials import ClientChangeMarker, ClientCredentials
from faultmaven_auth.tokens.keys import KeyCipher, KeyRing
from faultmaven_auth.tokens.principal_cache import GenerationCache, PrincipalCache
from faultmaven_auth.tokens.verified_tokens import VerifiedTokenCache


@dataclass
class Runtime:
    settings: Settings
    db: Database
    kv: KeyValueStore
    hasher: PasswordHasher
    cipher: KeyCipher
    keys: KeyRing
    access_tokens: AccessTokenCodec
    verified_tokens: VerifiedTokenCache  # access_tokens.verify, cached per worker
    principals: PrincipalCache
    client_authorities: GenerationCache[uuid.UUID, bool]  # service clients' authority held
    client_credentials: ClientCredentials
    # In-process store on SQLite: what the CLI rewrites on a revocation (else None).
    client_changes: ClientChangeMarker | None
    metrics: Metrics
    activity: ActivityTracker
    tracer: Tracer  # the no-op tracer when tracing is off
    # Wall-clock seconds for time-based security decisions (windows, locks); tests replace it.
    clock: Callable[[], float] = time.time


# Whatever uses the runtime may reach the database or the store: 503 when they are down.
@declares_errors(503)
async def get_runtime(request: Request) -> Runtime:
    # ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
    # (about a fifth of a cached /me) for one attribute read.
    runtime: Runtime = request.app.state.runtime
    return runtime

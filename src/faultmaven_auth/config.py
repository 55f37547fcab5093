"""Settings, read from the environment (and an optional ``.env``) once, at start.

Every setting has an environment variable of the same name in upper case. Secrets are
``SecretStr`` so they never print. ``Settings.startup_problems`` lists what keeps the
service from starting safely in the configured environment; ``create_app`` and
``check-config`` refuse to go on while it is not empty.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/faultmaven-auth.db"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class SigningAlgorithm(StrEnum):
    ES256 = "ES256"
    RS256 = "RS256"


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Environment = Environment.DEVELOPMENT
    service_name: str = "fm-auth-service-enterprise"
    log_level: str = "INFO"

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)

    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=10, ge=1)
    redis_url: str | None = None
    redis_password: SecretStr | None = None
    kv_key_prefix: str = "fmauth:"

    jwt_issuer: str = "http://127.0.0.1:8000"
    jwt_audience: str = "faultmaven"
    jwt_algorithm: SigningAlgorithm = SigningAlgorithm.ES256
    access_token_ttl_seconds: int = Field(default=15 * 60, ge=60, le=24 * 3600)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    signing_key_encryption_key: SecretStr | None = None
    signing_key_refresh_seconds: int = Field(default=60, ge=1)

    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_cost_kib: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)

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
    health_check_timeout_seconds: float = Field(default=1.0, gt=0, le=30)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_cors_origins(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, value: list[str]) -> list[str]:
        # Credentials are allowed on CORS requests, and "*" with credentials lets any
        # site act as the logged-in user.
        if "*" in value:
            raise ValueError("CORS_ORIGINS must list origins explicitly; '*' is not allowed")
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

    def sqlite_path(self) -> Path | None:
        """The SQLite file this URL points at, or None for memory/other databases."""
        if not self.uses_sqlite:
            return None
        _, _, path = self.database_url.partition(":///")
        if not path or path.startswith(":memory:"):
            return None
        return Path(path)

    def startup_problems(self) -> list[str]:
        """What keeps this configuration from running safely; empty when it may start."""
        problems: list[str] = []
        if self.workers > 1 and self.uses_in_process_store:
            problems.append(
                "WORKERS > 1 needs a shared store: set REDIS_URL (the in-process store "
                "is private to one process, so revocations would not reach other workers)"
            )
        if self.environment is Environment.PRODUCTION:
            if self.uses_in_process_store:
                problems.append("ENVIRONMENT=production needs REDIS_URL (no in-process store)")
            if self.uses_sqlite:
                problems.append("ENVIRONMENT=production needs a PostgreSQL DATABASE_URL")
            key = self.signing_key_encryption_key
            if key is None or len(key.get_secret_value()) < 32:
                problems.append(
                    "ENVIRONMENT=production needs SIGNING_KEY_ENCRYPTION_KEY "
                    "(at least 32 characters) to protect signing keys at rest"
                )
        return problems


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (used by tests and CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]

"""Configuration: safe defaults, refusals that name the setting, secrets kept secret.

Settings are read from the environment; each test starts from an environment with none
of the service's variables set and a working directory without a ``.env`` file.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from faultmaven_auth.app import ConfigurationError, create_app
from faultmaven_auth.config import Environment, Settings, SigningAlgorithm, cgroup_cpu_quota
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.migrate import upgrade_async
from faultmaven_auth.storage.models import RefreshToken, SigningKey, User
from faultmaven_auth.tokens.keys import KeyDecryptionError
from tests.conftest import FAST_ARGON2, PASSWORD, client_for, login, running_app, sign_up

PG_URL = "postgresql+asyncpg://auth@db.internal:5432/auth"
REDIS = "redis://cache.internal:6379/0"
# What `openssl rand -base64 24` prints: 32 random characters.
STRONG_KEY = "q7Vh2LxN9cR4tWm0ZsKp8YdBf3GjUe6A"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'config.db'}"
    await upgrade_async(url)
    return url


def _production(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "production",
        "database_url": PG_URL,
        "redis_url": REDIS,
        "signing_key_encryption_key": STRONG_KEY,
        "jwt_issuer": "https://auth.example.com",
        "metrics_bearer_token": "a-metrics-scrape-token",
    }
    values.update(overrides)
    return Settings(**values)


def test_defaults_are_safe_and_documented() -> None:
    """Out of the box: 15-minute access, 30-day refresh, argon2id t=2 m=19456 p=1, ES256."""
    settings = Settings()
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.access_token_ttl_seconds == 900
    assert settings.refresh_token_ttl_seconds == 30 * 24 * 3600
    assert (
        settings.argon2_time_cost,
        settings.argon2_memory_cost_kib,
        settings.argon2_parallelism,
    ) == (2, 19456, 1)
    assert settings.jwt_algorithm is SigningAlgorithm.ES256
    assert settings.startup_problems() == []


async def test_a_default_app_issues_tokens_with_the_default_lifetimes(sqlite_url: str) -> None:
    """With defaults, tokens are ES256 for 900 s, refresh lives 30 days, hashes use t=2 m=19456."""
    settings = Settings(database_url=sqlite_url, jwt_issuer="http://testserver")
    async with running_app(settings) as app, client_for(app) as client:
        account = await sign_up(client)
        runtime: Runtime = app.state.runtime
        async with runtime.db.session() as session:
            user = await session.get(User, uuid.UUID(account.user_id))
            assert user is not None
            token = await session.scalar(
                select(RefreshToken).where(RefreshToken.user_id == user.id)
            )
    assert token is not None
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    lifetime = token.expires_at - token.created_at
    assert abs(lifetime - timedelta(days=30)) < timedelta(seconds=2)
    header = jwt.get_unverified_header(account.access_token)
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    assert header["alg"] == "ES256"
    assert claims["exp"] - claims["iat"] == 900


def test_production_refuses_the_embedded_defaults() -> None:
    """ENVIRONMENT=production with defaults lists REDIS_URL, DATABASE_URL and the key."""
    problems = Settings(environment="production").startup_problems()
    text = " ".join(problems)
    for setting in ("REDIS_URL", "DATABASE_URL", "SIGNING_KEY_ENCRYPTION_KEY"):
        assert setting in text


def test_a_complete_production_configuration_may_start() -> None:
    """PostgreSQL, Redis, a random 32-character encryption key, an https issuer and a
    protected /metrics satisfy production."""
    assert _production().startup_problems() == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"metrics_bearer_token": None, "metrics_port": 9100},
        {"metrics_bearer_token": None, "metrics_enabled": False},
        {"jwt_issuer": "http://127.0.0.1:8000"},
        {"jwt_issuer": "http://localhost:8000"},
        {"jwt_issuer": "http://[::1]:8000"},
        {"trusted_proxies": ["10.0.0.0/8", "192.168.0.0/16"]},
        {"log_level": "INFO", "log_include_pii": False},
        # 32 and 64 random hex digits (`openssl rand -hex 16/32`) pass the entropy screen.
        {"signing_key_encryption_key": "9f86d081884c7d659a2feaa0c55ad015"},
        {
            "signing_key_encryption_key": "2c26b46b68ffc68ff99b453c1d304134"
            "13422d706483bfa0f98a5e886266e7ae"
        },
    ],
)
def test_safe_production_variants_may_start(overrides: dict[str, Any]) -> None:
    """Other safe ways to meet the production rules are accepted."""
    assert _production(**overrides).startup_problems() == []


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"redis_url": None}, "REDIS_URL"),
        ({"database_url": "sqlite+aiosqlite:///./var/auth.db"}, "DATABASE_URL"),
        ({"signing_key_encryption_key": None}, "SIGNING_KEY_ENCRYPTION_KEY"),
        ({"signing_key_encryption_key": "k" * 31}, "SIGNING_KEY_ENCRYPTION_KEY"),
        # Low entropy: one character, a repeated block, few distinct characters, skewed.
        ({"signing_key_encryption_key": "k" * 32}, "SIGNING_KEY_ENCRYPTION_KEY"),
        ({"signing_key_encryption_key": "abcdefghij" * 4}, "SIGNING_KEY_ENCRYPTION_KEY"),
        (
            {"signing_key_encryption_key": "abcabcabcdabcabcabcdabcabcabcdxy"},
            "SIGNING_KEY_ENCRYPTION_KEY",
        ),
        ({"signing_key_encryption_key": "a" * 25 + "bcdefghij"}, "SIGNING_KEY_ENCRYPTION_KEY"),
        ({"metrics_bearer_token": None}, "METRICS_BEARER_TOKEN"),
        ({"jwt_issuer": "http://auth.example.com"}, "JWT_ISSUER"),
        ({"jwt_issuer": "http://10.0.0.5:8000"}, "JWT_ISSUER"),
        ({"trusted_proxies": ["10.0.0.0/8", "0.0.0.0/0"]}, "TRUSTED_PROXIES"),
        ({"trusted_proxies": ["::/0"]}, "TRUSTED_PROXIES"),
        ({"log_include_pii": True}, "LOG_INCLUDE_PII"),
        ({"log_level": "debug"}, "LOG_LEVEL"),
        (
            {"signing_key_activation_delay_seconds": 30, "signing_key_refresh_seconds": 60},
            "SIGNING_KEY_ACTIVATION_DELAY_SECONDS",
        ),
    ],
)
def test_each_production_requirement_is_named(overrides: dict[str, Any], setting: str) -> None:
    """Taking away one production requirement gives exactly one problem, naming it."""
    problems = _production(**overrides).startup_problems()
    assert len(problems) == 1
    assert setting in problems[0]


def test_production_messages_never_print_the_encryption_key() -> None:
    """A refused encryption key is named by its setting, its value never shown."""
    weak = "abcdefghij" * 4
    (problem,) = _production(signing_key_encryption_key=weak).startup_problems()
    assert "repeated" in problem
    assert weak not in problem
    assert "abcdefghij" not in problem


def test_development_allows_what_production_refuses() -> None:
    """Open /metrics, an http issuer, DEBUG logs and PII are fine outside production."""
    settings = Settings(
        jwt_issuer="http://dev.example.com",
        trusted_proxies=["0.0.0.0/0"],
        log_include_pii=True,
        log_level="DEBUG",
    )
    assert settings.startup_problems() == []


def test_several_workers_need_a_shared_store() -> None:
    """WORKERS > 1 on the in-process store is refused in any environment; Redis fixes it."""
    problems = Settings(workers=2).startup_problems()
    assert len(problems) == 1
    assert "WORKERS" in problems[0]
    assert "REDIS_URL" in problems[0]
    assert Settings(workers=2, redis_url=REDIS).startup_problems() == []


def test_workers_default_to_one_per_core_with_a_shared_store() -> None:
    """Unset WORKERS: one worker per core with REDIS_URL, one on the in-process store
    (private to a process); a WORKERS value always wins."""
    assert Settings(redis_url=REDIS).worker_count(cores=4) == 4
    assert Settings(redis_url=REDIS).worker_count(cores=1) == 1
    assert Settings().worker_count(cores=4) == 1
    assert Settings(workers=3, redis_url=REDIS).worker_count(cores=8) == 3
    assert Settings(workers=1, redis_url=REDIS).worker_count(cores=8) == 1
    assert Settings().startup_problems() == []


def test_a_container_cpu_quota_caps_the_cores() -> None:
    """cgroup v2 cpu.max: a quota of 1.5 CPUs allows 2 workers; "max" sets no cap."""
    assert cgroup_cpu_quota("150000 100000\n") == 2
    assert cgroup_cpu_quota("100000 100000") == 1
    assert cgroup_cpu_quota("max 100000") is None
    assert cgroup_cpu_quota("") is None


def test_pools_are_sized_from_the_admission_limit() -> None:
    """Redis connections per worker follow MAX_CONCURRENT_REQUESTS (plus headroom for
    probes and background work); database overflow follows the pool size; explicit
    values win."""
    default = Settings()
    assert default.redis_pool_size > default.max_concurrent_requests
    assert Settings(max_concurrent_requests=10).redis_pool_size == 18
    assert Settings(redis_max_connections=5).redis_pool_size == 5
    assert Settings(database_pool_size=7).database_pool_overflow == 7
    assert Settings(database_pool_size=7, database_max_overflow=0).database_pool_overflow == 0


def test_pool_sizes_that_cannot_fit_are_warned_about() -> None:
    """5 workers x 20 database connections exceed a default PostgreSQL (97 usable); a
    Redis pool smaller than the admission limit makes requests wait. Warnings only."""
    big = Settings(database_url=PG_URL, redis_url=REDIS, workers=5)
    (warning,) = big.sizing_warnings()
    assert "100 PostgreSQL connections" in warning
    assert "DATABASE_POOL_SIZE" in warning
    assert big.startup_problems() == []
    assert Settings(database_url=PG_URL, redis_url=REDIS, workers=4).sizing_warnings() == []
    small_redis = Settings(redis_url=REDIS, workers=1, redis_max_connections=4)
    assert "REDIS_MAX_CONNECTIONS" in " ".join(small_redis.sizing_warnings())


def test_create_app_refuses_an_unsafe_configuration() -> None:
    """create_app raises ConfigurationError whose message names each setting to fix."""
    with pytest.raises(ConfigurationError) as production:
        create_app(Settings(environment="production"), configure_logs=False)
    for setting in ("REDIS_URL", "DATABASE_URL", "SIGNING_KEY_ENCRYPTION_KEY"):
        assert setting in str(production.value)
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        create_app(Settings(workers=4), configure_logs=False)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each setting reads the environment variable of the same name in upper case."""
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("ACCESS_TOKEN_TTL_SECONDS", "600")
    monkeypatch.setenv("JWT_ALGORITHM", "RS256")
    settings = Settings()
    assert settings.environment is Environment.PRODUCTION
    assert settings.access_token_ttl_seconds == 600
    assert settings.jwt_algorithm is SigningAlgorithm.RS256
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        create_app(configure_logs=False)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    """A .env file in the working directory supplies settings too."""
    (tmp_path / ".env").write_text("JWT_AUDIENCE=from-dotenv\nWORKERS=3\n")
    settings = Settings()
    assert settings.jwt_audience == "from-dotenv"
    assert settings.workers == 3


def test_comma_separated_cors_origins_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """CORS_ORIGINS='a, b,,' becomes two trimmed origins."""
    monkeypatch.setenv("CORS_ORIGINS", "https://app.example.com, https://admin.example.com,,")
    assert Settings().cors_origins == ["https://app.example.com", "https://admin.example.com"]


@pytest.mark.parametrize("value", ["*", "https://app.example.com,*"])
def test_wildcard_cors_origin_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """'*' (with credentials allowed) is refused, from the environment or in code."""
    monkeypatch.setenv("CORS_ORIGINS", value)
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        Settings()
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        Settings(cors_origins=["*"])


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOG_LEVEL", "chatty"),
        ("ACCESS_TOKEN_TTL_SECONDS", "5"),
        ("PORT", "70000"),
        ("JWT_ALGORITHM", "HS256"),
        ("ENVIRONMENT", "prod"),
        ("PASSWORD_HASH_THREAD_NICENESS", "20"),
        ("PASSWORD_HASH_THREAD_NICENESS", "-1"),
    ],
)
def test_invalid_values_are_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A malformed or out-of-range value fails validation, naming the setting."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.lower()):
        Settings()


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secret settings are SecretStr: absent from repr, str and JSON dumps, readable on demand."""
    monkeypatch.setenv("REDIS_PASSWORD", "redis-pass-do-not-print")
    settings = Settings(signing_key_encryption_key="signing-secret-do-not-print-0123456789")
    assert isinstance(settings.signing_key_encryption_key, SecretStr)
    assert isinstance(settings.redis_password, SecretStr)
    for rendered in (repr(settings), str(settings), settings.model_dump_json()):
        assert "do-not-print" not in rendered
    assert settings.redis_password.get_secret_value() == "redis-pass-do-not-print"


@pytest.fixture
def encrypted_settings(sqlite_url: str) -> Settings:
    return Settings(
        database_url=sqlite_url,
        jwt_issuer="http://testserver",
        signing_key_encryption_key="an-encryption-key-of-at-least-32-chars",
        **FAST_ARGON2,
    )


async def _stored_keys(settings: Settings) -> list[SigningKey]:
    async with running_app(settings) as app:
        runtime: Runtime = app.state.runtime
        async with runtime.db.session() as session:
            return list((await session.scalars(select(SigningKey))).all())


async def test_signing_keys_are_encrypted_at_rest(encrypted_settings: Settings) -> None:
    """With an encryption key set, stored private keys are not readable PEM."""
    keys = await _stored_keys(encrypted_settings)
    assert keys
    for key in keys:
        assert key.encrypted is True
        assert b"BEGIN PRIVATE KEY" not in key.private_key
        assert b"PRIVATE" not in key.private_key


async def test_without_an_encryption_key_signing_keys_are_plain_pem(sqlite_url: str) -> None:
    """Without one (development only), the key is stored as PKCS#8 PEM and marked so."""
    keys = await _stored_keys(Settings(database_url=sqlite_url, **FAST_ARGON2))
    assert [(k.encrypted, b"BEGIN PRIVATE KEY" in k.private_key) for k in keys] == [(False, True)]


async def test_app_with_encrypted_keys_signs_verifiable_tokens(
    encrypted_settings: Settings,
) -> None:
    """The app decrypts its key and issues tokens that verify against its JWKS."""
    async with running_app(encrypted_settings) as app, client_for(app) as client:
        account = await sign_up(client)
        jwks = (await client.get("/.well-known/jwks.json")).json()
        me = await client.get("/api/v1/auth/me", headers=account.headers)
    assert me.status_code == 200
    kid = jwt.get_unverified_header(account.access_token)["kid"]
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == kid]
    claims = jwt.decode(
        account.access_token,
        jwt.PyJWK(jwk).key,
        algorithms=["ES256"],
        audience=encrypted_settings.jwt_audience,
        issuer="http://testserver",
    )
    assert claims["sub"] == account.user_id

    # A restart with the same key reads the stored key back and still accepts the token.
    async with running_app(encrypted_settings) as app, client_for(app) as client:
        again = await client.get("/api/v1/auth/me", headers=account.headers)
        assert again.status_code == 200
        assert (await login(client, account.email, PASSWORD))["access_token"]


@pytest.mark.parametrize(
    ("wrong_key", "message"),
    [
        ("a-different-key-that-is-also-32-chars-long", "cannot be decrypted"),
        (None, "SIGNING_KEY_ENCRYPTION_KEY is not set"),
    ],
)
async def test_starting_with_the_wrong_encryption_key_fails_clearly(
    encrypted_settings: Settings, wrong_key: str | None, message: str
) -> None:
    """A wrong or missing encryption key stops start-up with an error naming the setting."""
    await _stored_keys(encrypted_settings)  # first start creates the encrypted key
    wrong = encrypted_settings.model_copy(
        update={"signing_key_encryption_key": SecretStr(wrong_key) if wrong_key else None}
    )
    with pytest.raises(ConfigurationError, match=message) as failure:
        async with running_app(wrong):
            pass
    assert isinstance(failure.value.__cause__, KeyDecryptionError)
    assert "SIGNING_KEY_ENCRYPTION_KEY" in str(failure.value)
    assert "an-encryption-key" not in str(failure.value)

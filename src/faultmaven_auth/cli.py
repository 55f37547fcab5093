"""Command-line interface: serve, migrate, bootstrap, keys, service-clients, audit verify,
check-config.

Every command reads the same settings as the service (environment variables, ``.env``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import record_audit_event
from faultmaven_auth.cli_support import CLI_META, cli_settings, run_async
from faultmaven_auth.config import Settings
from faultmaven_auth.tokens.service_client_cli import service_clients

if TYPE_CHECKING:
    from faultmaven_auth.tokens.keys import KeyCipher


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="faultmaven-auth")
def main() -> None:
    """FaultMaven Auth Service (Enterprise Edition)."""


main.add_command(service_clients)


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: PORT or 8000).")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Worker processes (default: WORKERS, else one per core with REDIS_URL, else 1).",
)
@click.option("--migrate/--no-migrate", default=False, help="Apply migrations before starting.")
def serve(host: str | None, port: int | None, workers: int | None, migrate: bool) -> None:
    """Run the HTTP service with uvicorn."""
    import uvicorn

    settings = cli_settings(host=host, port=port, workers=workers)
    problems = settings.startup_problems()
    if problems:
        raise click.ClickException("refusing to start: " + "; ".join(problems))
    if migrate:
        from faultmaven_auth.storage.migrate import upgrade

        upgrade(settings.database_url)
    # Workers build their app from the environment; pass the CLI's choices along.
    os.environ["HOST"], os.environ["PORT"] = settings.host, str(settings.port)
    workers = settings.worker_count()
    os.environ["WORKERS"] = str(workers)
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # A fresh directory per start: workers write their values there and /metrics
        # sums them; nothing left over from an earlier run is counted.
        metrics_dir = tempfile.mkdtemp(prefix="fm-auth-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    click.echo(
        f"FaultMaven Auth on http://{settings.host}:{settings.port} "
        f"(API docs: http://{settings.host}:{settings.port}/docs)",
        err=True,
    )
    uvicorn.run(
        "faultmaven_auth.app:create_served_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    if metrics_dir is not None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


@main.command()
@click.option(
    "--status",
    is_flag=True,
    help='Change nothing: print {"current", "head", "up_to_date"} as JSON; exit 1 when '
    "the database is behind or cannot be read.",
)
def migrate(status: bool) -> None:
    """Apply database migrations (Alembic) up to the newest revision."""
    from faultmaven_auth.storage.migrate import migration_status, upgrade

    settings = cli_settings()
    if not status:
        upgrade(settings.database_url)
        click.echo("database schema is up to date")
        return
    try:
        result = migration_status(settings.database_url)
    except Exception as exc:
        # The URL may carry a password: name the failure, never echo the URL or the text.
        reason = type(getattr(exc, "orig", None) or exc).__name__
        raise click.ClickException(
            f"cannot read the schema version (is DATABASE_URL reachable?): {reason}"
        ) from exc
    click.echo(json.dumps(result.as_dict()))
    if not result.up_to_date:
        sys.exit(1)


@main.command()
@click.option("--organization-name", required=True, help="Name of the new organization.")
@click.option("--email", required=True, help="Email of its owner.")
@click.option("--full-name", required=True, help="Owner's full name.")
@click.option(
    "--password",
    envvar="BOOTSTRAP_PASSWORD",
    required=True,
    help="Owner's password (or the BOOTSTRAP_PASSWORD environment variable).",
)
@click.option("--max-users", type=int, default=None, help="Plan limit on active users.")
@click.option("--max-teams", type=int, default=None, help="Plan limit on teams.")
def bootstrap(
    organization_name: str,
    email: str,
    full_name: str,
    password: str,
    max_users: int | None,
    max_teams: int | None,
) -> None:
    """Create an organization and its owner, non-interactively."""
    from faultmaven_auth.app import build_runtime
    from faultmaven_auth.errors import AppError
    from faultmaven_auth.identity.service import (
        check_password_policy,
        create_organization_with_owner,
    )

    settings = cli_settings()

    async def go() -> dict[str, str]:
        runtime = await build_runtime(settings)
        try:
            check_password_policy(password)
            password_hash = await runtime.hasher.hash(password)
            async with runtime.db.transaction() as session:
                user, org = await create_organization_with_owner(
                    session,
                    runtime,
                    organization_name=organization_name,
                    email=email,
                    full_name=full_name,
                    password_hash=password_hash,
                    meta=CLI_META,
                    max_users=max_users,
                    max_teams=max_teams,
                )
            return {"organization_id": str(org.id), "user_id": str(user.id), "email": user.email}
        finally:
            await runtime.kv.close()
            await runtime.db.dispose()

    try:
        click.echo(json.dumps(run_async(go)))
    except AppError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc


@main.group()
def keys() -> None:
    """Signing keys."""


def _cipher(settings: Settings) -> KeyCipher:
    from faultmaven_auth.tokens.key_report import cipher_for

    return cipher_for(settings)


@keys.command("rotate")
@click.option(
    "--immediately",
    is_flag=True,
    help="Emergency (compromised key): sign with the new key at once and unpublish the "
    "previous keys at once; every access token they signed stops working.",
)
def keys_rotate(immediately: bool) -> None:
    """Publish a new signing key; it signs after SIGNING_KEY_ACTIVATION_DELAY_SECONDS.

    Until then the current key keeps signing, so every replica and every verifier's
    cached JWKS knows the new key before its first token. The previous keys stay in the
    JWKS until every token they signed has expired.
    """
    from faultmaven_auth.storage.db import Database, create_engine
    from faultmaven_auth.tokens.keys import retire_keys_now, rotate_signing_key

    settings = cli_settings()
    cipher = _cipher(settings)
    delay = timedelta(seconds=0 if immediately else settings.signing_key_activation_delay_seconds)
    token_lifetime = timedelta(
        seconds=settings.access_token_ttl_seconds + settings.signing_key_refresh_seconds + 60
    )

    async def go() -> dict[str, Any]:
        db = Database(create_engine(settings.database_url))
        try:
            async with db.transaction() as session:
                rotation = await rotate_signing_key(
                    session,
                    algorithm=settings.jwt_algorithm.value,
                    cipher=cipher,
                    activation_delay=delay,
                    token_lifetime=token_lifetime,
                )
                if immediately:
                    await retire_keys_now(session, rotation.previous)
                record_audit_event(
                    session,
                    AuditEventType.SIGNING_KEY_ROTATED,
                    meta=CLI_META,
                    organization_id=None,
                    actor_id=None,
                    target_type="signing_key",
                    target_id=rotation.key.kid,
                    details={"previous": rotation.previous, "immediately": immediately},
                )
            return {
                "kid": rotation.key.kid,
                "algorithm": rotation.key.algorithm,
                "activates_at": rotation.activates_at.isoformat(),
                "previous": rotation.previous,
                "previous_retire_after": (
                    rotation.activates_at if immediately else rotation.previous_retire_after
                ).isoformat(),
                "immediately": immediately,
            }
        finally:
            await db.dispose()

    click.echo(json.dumps(run_async(go)))


@keys.command("encrypt")
def keys_encrypt() -> None:
    """Encrypt signing keys stored in plaintext with SIGNING_KEY_ENCRYPTION_KEY.

    Keys created before the secret was set are stored as plain PEM; the service also
    does this at start. Safe to run while replicas are serving.
    """
    from faultmaven_auth.storage.db import Database, create_engine
    from faultmaven_auth.tokens.keys import encrypt_plaintext_keys, inventory_keys

    settings = cli_settings()
    cipher = _cipher(settings)
    if not cipher.enabled:
        raise click.ClickException("SIGNING_KEY_ENCRYPTION_KEY is not set: nothing to encrypt with")

    async def go() -> dict[str, Any]:
        db = Database(create_engine(settings.database_url))
        try:
            async with db.transaction() as session:
                encrypted = await encrypt_plaintext_keys(session, cipher)
                if encrypted:
                    record_audit_event(
                        session,
                        AuditEventType.SIGNING_KEYS_ENCRYPTED,
                        meta=CLI_META,
                        organization_id=None,
                        actor_id=None,
                        target_type="signing_key",
                        target_id=None,
                        details={"count": encrypted},
                    )
            async with db.session() as session:
                inventory = await inventory_keys(session, cipher)
            return {"newly_encrypted": encrypted, **dataclasses.asdict(inventory)}
        finally:
            await db.dispose()

    result = run_async(go)
    click.echo(json.dumps(result))
    if result["undecryptable"]:
        raise click.ClickException(
            f"{result['undecryptable']} signing key(s) cannot be decrypted with "
            "SIGNING_KEY_ENCRYPTION_KEY"
        )


@main.group()
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@click.option(
    "--organization",
    default=None,
    metavar="ID",
    help="Verify one organization's chain (`platform`: events of no organization). "
    "Default: every chain.",
)
def audit_verify(organization: str | None) -> None:
    """Recompute the audit hash chains; print a JSON report; exit 1 if a link is broken."""
    from faultmaven_auth.audit.verification import verify_audit_chains
    from faultmaven_auth.storage.audit_chain import PLATFORM_CHAIN
    from faultmaven_auth.storage.db import Database, create_engine

    if organization is not None and organization != PLATFORM_CHAIN:
        try:
            organization = str(uuid.UUID(organization))
        except ValueError:
            raise click.BadParameter(
                "an organization id (UUID) or `platform`", param_hint="--organization"
            ) from None
    settings = cli_settings()

    async def go() -> dict[str, Any]:
        db = Database(create_engine(settings.database_url))
        try:
            report = await verify_audit_chains(db, organization)
            return report.as_dict()
        finally:
            await db.dispose()

    try:
        result = run_async(go)
    except (OperationalError, ProgrammingError) as exc:
        raise click.ClickException(
            "cannot read the audit log (is the database migrated? run `faultmaven-auth "
            f"migrate`): {type(exc.orig).__name__}"
        ) from exc
    click.echo(json.dumps(result, indent=2))
    if not result["ok"]:
        sys.exit(1)


@main.command("check-config")
def check_config() -> None:
    """Validate the configuration for the configured ENVIRONMENT; exit 1 on a problem.

    When the database is reachable, the stored signing keys are checked too (plaintext
    keys are refused in production, keys the configured secret cannot decrypt always);
    when it is not, the report says so under "signing_keys" and the verdict rests on the
    settings alone.
    """
    from faultmaven_auth.tokens.key_report import signing_key_problems, signing_key_report

    settings = cli_settings()
    problems = settings.startup_problems()
    key_report = run_async(lambda: signing_key_report(settings))
    problems += signing_key_problems(settings, key_report)
    summary = {
        "environment": settings.environment.value,
        "database": "sqlite" if settings.uses_sqlite else "postgresql",
        "store": "in-process" if settings.uses_in_process_store else "redis",
        "jwt_algorithm": settings.jwt_algorithm.value,
        "tracing": settings.tracing_active,
        "metrics": settings.metrics_enabled,
        "signing_keys": key_report,
        "workers": settings.worker_count(),
        "warnings": settings.sizing_warnings(),
        "problems": problems,
    }
    click.echo(json.dumps(summary, indent=2))
    if problems:
        sys.exit(1)

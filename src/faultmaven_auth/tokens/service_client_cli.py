"""``faultmaven-auth service-clients``: create, list and revoke introspection clients."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import click

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import record_audit_event
from faultmaven_auth.cli_support import CLI_META, cli_settings, run_async

if TYPE_CHECKING:
    from faultmaven_auth.config import Settings
    from faultmaven_auth.storage.models import ServiceClient


@click.group("service-clients")
def service_clients() -> None:
    """Service clients that may call token introspection."""


@service_clients.command("create")
@click.option("--name", required=True, help="What this client is (shown in audit).")
@click.option(
    "--organization-id",
    type=click.UUID,
    default=None,
    help="Limit the client to one organization's tokens (default: platform-wide).",
)
def service_clients_create(name: str, organization_id: uuid.UUID | None) -> None:
    """Create a client; its secret is printed once and stored only as a hash."""
    from faultmaven_auth.storage.db import Database, create_engine
    from faultmaven_auth.storage.models import Organization
    from faultmaven_auth.tokens.service_clients import create_service_client

    settings = cli_settings()

    async def go() -> dict[str, Any]:
        db = Database(create_engine(settings.database_url))
        try:
            async with db.transaction() as session:
                if organization_id is not None:
                    org = await session.get(Organization, organization_id)
                    if org is None or org.is_deleted:
                        raise click.ClickException(
                            f"ORGANIZATION_NOT_FOUND: no organization {organization_id}"
                        )
                created = create_service_client(session, name=name, organization_id=organization_id)
                await session.flush()
                record_audit_event(
                    session,
                    AuditEventType.SERVICE_CLIENT_CREATED,
                    meta=CLI_META,
                    organization_id=organization_id,
                    actor_id=None,
                    target_type="service_client",
                    target_id=created.client.id,
                    details={"client_id": created.client.client_id},
                )
            return {
                "id": str(created.client.id),
                "client_id": created.client.client_id,
                "client_secret": created.client_secret,
                "organization_id": str(organization_id) if organization_id else None,
            }
        finally:
            await db.dispose()

    click.echo(json.dumps(run_async(go)))


def _service_client_json(client: ServiceClient) -> dict[str, Any]:
    """A client as the operator sees it: never the secret, nor its hash."""
    return {
        "id": str(client.id),
        "client_id": client.client_id,
        "name": client.name,
        "organization_id": str(client.organization_id) if client.organization_id else None,
        "created_by_id": str(client.created_by_id) if client.created_by_id else None,
        "created_at": client.created_at.isoformat(),
        "revoked_at": client.revoked_at.isoformat() if client.revoked_at else None,
    }


@service_clients.command("list")
@click.option(
    "--organization-id",
    type=click.UUID,
    default=None,
    help="Only this organization's clients (default: every client, platform ones included).",
)
def service_clients_list(organization_id: uuid.UUID | None) -> None:
    """List clients, revoked ones included (secrets are never shown again)."""
    from faultmaven_auth.storage.db import Database, create_engine
    from faultmaven_auth.tokens.service_clients import list_all_service_clients

    settings = cli_settings()

    async def go() -> list[dict[str, Any]]:
        db = Database(create_engine(settings.database_url))
        try:
            async with db.session() as session:
                clients = await list_all_service_clients(session, organization_id)
                return [_service_client_json(c) for c in clients]
        finally:
            await db.dispose()

    click.echo(json.dumps({"service_clients": run_async(go)}))


@service_clients.command("revoke")
@click.argument("client_id")
def service_clients_revoke(client_id: str) -> None:
    """Revoke the client CLIENT_ID (the sc_... id) at once; revoking twice is harmless."""
    from sqlalchemy import select

    from faultmaven_auth.storage.db import Database, create_engine
    from faultmaven_auth.storage.models import ServiceClient
    from faultmaven_auth.tokens.service_clients import revoke_service_client

    settings = cli_settings()

    async def go() -> dict[str, Any] | None:
        db = Database(create_engine(settings.database_url))
        try:
            async with db.transaction() as session:
                client = await session.scalar(
                    select(ServiceClient)
                    .where(ServiceClient.client_id == client_id)
                    .with_for_update()
                )
                if client is None:
                    return None
                changed = revoke_service_client(
                    session, client, meta=CLI_META, actor_id=None, reason="revoked_by_operator"
                )
                revoked = {**_service_client_json(client), "already_revoked": not changed}
            await _invalidate_servers(settings, client.organization_id)
            return revoked
        finally:
            await db.dispose()

    result = run_async(go)
    if result is None:
        raise click.ClickException(f"SERVICE_CLIENT_NOT_FOUND: no service client {client_id!r}")
    click.echo(json.dumps(result))


async def _invalidate_servers(settings: Settings, organization_id: uuid.UUID | None) -> None:
    """Running servers drop what they cached about the client at once.

    Servers sharing a store hear of it through the generations there. With the
    in-process store on SQLite the marker beside the database is replaced; on another
    database the servers read the client's row on every request (``service_client_auth``).
    """
    from faultmaven_auth.storage.kv import build_kv_store
    from faultmaven_auth.tokens.client_credentials import client_change_marker
    from faultmaven_auth.tokens.principal_cache import invalidate_principals

    marker = client_change_marker(settings)
    if marker is not None:
        try:
            marker.replace()
        except OSError as exc:
            # Committed, but a running server may keep its cached check: say so loudly.
            raise click.ClickException(
                f"SERVICE_CLIENT_MARKER_FAILED: the client is revoked, but {marker.path} "
                f"could not be replaced ({exc.strerror}); restart running servers"
            ) from exc
    if settings.uses_in_process_store:
        return
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    kv = build_kv_store(settings.redis_url, password=password, prefix=settings.kv_key_prefix)
    try:
        organizations = [] if organization_id is None else [organization_id]
        await invalidate_principals(kv, organizations, everything=organization_id is None)
    finally:
        await kv.close()

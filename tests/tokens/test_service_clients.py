"""Managing service clients, and clients that outlive the authority that made them.

An organization's clients can be listed (never with a secret) and revoked. A client made
by a member works only while that member is active and holds service_clients:manage, and
only while its organization exists; deactivation and deletion also revoke it for good.
Platform clients made by the operator's CLI answer to nobody but the operator.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from click.testing import CliRunner
from sqlalchemy import select

from faultmaven_auth.cli import main as cli_main
from faultmaven_auth.config import Settings
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.storage.models import AuditEvent
from faultmaven_auth.storage.models import ServiceClient as ServiceClientRow
from tests.conftest import (
    PASSWORD,
    SYSTEM_ROLE_IDS,
    Account,
    add_member,
    client_for,
    login,
    running_app,
    sign_up,
    unique_email,
)
from tests.tokens.conftest import cli_env, run_cli
from tests.tokens.test_introspection import (
    INTROSPECT,
    ServiceClient,
    create_service_client,
    introspect,
)


def clients_url(account: Account) -> str:
    return f"{account.org_url}/service-clients"


async def create(client: httpx.AsyncClient, creator: Account) -> tuple[ServiceClient, str]:
    """A client made by ``creator``; with its row id."""
    response = await client.post(
        clients_url(creator), headers=creator.headers, json={"name": "billing-api"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created_by_id"] == creator.user_id
    return ServiceClient(body["client_id"], body["client_secret"]), body["id"]


async def listed(client: httpx.AsyncClient, reader: Account) -> dict[str, dict[str, Any]]:
    """The organization's clients by client_id (one page is plenty here)."""
    response = await client.get(clients_url(reader), headers=reader.headers)
    assert response.status_code == 200, response.text
    return {item["client_id"]: item for item in response.json()["items"]}


async def introspection_status(
    client: httpx.AsyncClient, service: ServiceClient, token: str
) -> tuple[int, str | None]:
    response = await client.post(INTROSPECT, auth=service.auth, data={"token": token})
    code = response.json()["error"]["code"] if response.status_code != 200 else None
    return response.status_code, code


async def assert_refused(client: httpx.AsyncClient, service: ServiceClient, token: str) -> None:
    assert await introspection_status(client, service, token) == (401, "INVALID_CLIENT")


async def revocations(client: httpx.AsyncClient, reader: Account) -> list[dict[str, Any]]:
    response = await client.get(
        f"{reader.org_url}/audit-events",
        headers=reader.headers,
        params={"limit": 500, "event_type": "service_client.revoked"},
    )
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["items"]
    return [e for e in events if e["event_type"] == "service_client.revoked"]


async def member_with_custom_role(
    client: httpx.AsyncClient, owner: Account, permissions: list[str]
) -> tuple[Account, str]:
    """A member whose only role is a new custom role with ``permissions``; and the role id."""
    role = await client.post(
        f"{owner.org_url}/roles",
        headers=owner.headers,
        json={"name": f"clients-{uuid.uuid4().hex[:8]}", "permissions": permissions},
    )
    assert role.status_code == 201, role.text
    email = unique_email("custom")
    created = await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={
            "email": email,
            "password": PASSWORD,
            "full_name": "Custom Person",
            "role_ids": [role.json()["id"]],
        },
    )
    assert created.status_code == 201, created.text
    tokens = await login(client, email, PASSWORD)
    account = Account(
        email=email,
        password=PASSWORD,
        user_id=created.json()["id"],
        org_id=owner.org_id,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )
    return account, role.json()["id"]


# -- listing ------------------------------------------------------------------------------


async def test_list_shows_clients_without_their_secrets(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """GET lists id, client_id, name, creator, dates; no secret and no hash, ever."""
    service, row_id = await create(client, owner)
    response = await client.get(clients_url(owner), headers=owner.headers)
    assert response.status_code == 200, response.text
    assert service.client_secret not in response.text
    (item,) = response.json()["items"]
    assert item["id"] == row_id
    assert item["client_id"] == service.client_id
    assert item["name"] == "billing-api"
    assert item["organization_id"] == owner.org_id
    assert item["created_by_id"] == owner.user_id
    assert item["created_at"]
    assert item["revoked_at"] is None
    assert not {"client_secret", "secret_hash"} & set(item)
    assert response.json()["next_cursor"] is None


async def test_list_is_paged_with_a_cursor(client: httpx.AsyncClient, owner: Account) -> None:
    """limit=2 over three clients gives two disjoint pages covering all of them."""
    made = {(await create(client, owner))[0].client_id for _ in range(3)}
    first = (
        await client.get(clients_url(owner), headers=owner.headers, params={"limit": 2})
    ).json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    second = (
        await client.get(
            clients_url(owner),
            headers=owner.headers,
            params={"limit": 2, "cursor": first["next_cursor"]},
        )
    ).json()
    assert {i["client_id"] for i in first["items"] + second["items"]} == made
    assert second["next_cursor"] is None


async def test_listing_and_revoking_need_the_permission(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A plain member gets 403 PERMISSION_DENIED for list and revoke; nothing changes."""
    service, row_id = await create(client, owner)
    member = await add_member(client, owner, "member")
    listing = await client.get(clients_url(owner), headers=member.headers)
    assert listing.status_code == 403
    assert listing.json()["error"]["code"] == "PERMISSION_DENIED"
    revoke = await client.delete(f"{clients_url(owner)}/{row_id}", headers=member.headers)
    assert revoke.status_code == 403
    assert revoke.json()["error"]["code"] == "PERMISSION_DENIED"
    assert (await introspect(client, service, owner.access_token))["active"] is True


async def test_other_organizations_get_404(client: httpx.AsyncClient, owner: Account) -> None:
    """Another tenant can neither list nor revoke this organization's clients (404)."""
    service, row_id = await create(client, owner)
    stranger = await sign_up(client, org_name="Elsewhere")
    listing = await client.get(clients_url(owner), headers=stranger.headers)
    assert listing.status_code == 404
    # Through the stranger's own organization the id is unknown, not forbidden.
    revoke = await client.delete(f"{clients_url(stranger)}/{row_id}", headers=stranger.headers)
    assert revoke.status_code == 404
    assert revoke.json()["error"]["code"] == "SERVICE_CLIENT_NOT_FOUND"
    direct = await client.delete(f"{clients_url(owner)}/{row_id}", headers=stranger.headers)
    assert direct.status_code == 404
    assert service.client_id not in (await listed(client, stranger))
    assert (await introspect(client, service, owner.access_token))["active"] is True


# -- revocation ---------------------------------------------------------------------------


async def test_revoked_client_is_refused_at_once(client: httpx.AsyncClient, owner: Account) -> None:
    """DELETE is 204; the client gets 401 INVALID_CLIENT; the listing shows revoked_at."""
    service, row_id = await create(client, owner)
    other, _ = await create(client, owner)
    response = await client.delete(f"{clients_url(owner)}/{row_id}", headers=owner.headers)
    assert response.status_code == 204, response.text
    await assert_refused(client, service, owner.access_token)
    clients = await listed(client, owner)
    assert clients[service.client_id]["revoked_at"] is not None
    # Only that client: the organization's other one still works.
    assert clients[other.client_id]["revoked_at"] is None
    assert (await introspect(client, other, owner.access_token))["active"] is True


async def test_revoking_is_idempotent_and_audited_once(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A second DELETE is 204 too; service_client.revoked is recorded once, by the actor."""
    service, row_id = await create(client, owner)
    first = await client.delete(f"{clients_url(owner)}/{row_id}", headers=owner.headers)
    again = await client.delete(f"{clients_url(owner)}/{row_id}", headers=owner.headers)
    assert (first.status_code, again.status_code) == (204, 204)
    unknown = await client.delete(f"{clients_url(owner)}/{uuid.uuid4()}", headers=owner.headers)
    assert unknown.status_code == 404
    (event,) = [e for e in await revocations(client, owner) if e["target_id"] == row_id]
    assert event["actor_id"] == owner.user_id
    assert event["organization_id"] == owner.org_id
    assert event["target_type"] == "service_client"
    assert event["request_id"] == first.headers["x-request-id"]
    assert event["details"]["client_id"] == service.client_id
    assert service.client_secret not in str(event)


# -- stale authority ----------------------------------------------------------------------


async def test_deactivating_the_creator_revokes_their_clients(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """An admin's client is refused once the admin is deactivated, and stays revoked."""
    admin = await add_member(client, owner, "admin")
    service, row_id = await create(client, admin)
    owners_client, _ = await create(client, owner)
    assert (await introspect(client, service, owner.access_token))["active"] is True

    removed = await client.delete(f"{owner.org_url}/users/{admin.user_id}", headers=owner.headers)
    assert removed.status_code == 200, removed.text
    await assert_refused(client, service, owner.access_token)
    clients = await listed(client, owner)
    assert clients[service.client_id]["revoked_at"] is not None
    # Clients of members still in office are untouched.
    assert clients[owners_client.client_id]["revoked_at"] is None
    assert (await introspect(client, owners_client, owner.access_token))["active"] is True
    (event,) = [e for e in await revocations(client, owner) if e["target_id"] == row_id]
    assert event["actor_id"] == owner.user_id
    assert event["details"]["reason"] == "creator_deactivated"
    assert event["request_id"] == removed.headers["x-request-id"]


async def test_creator_demoted_loses_their_clients(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """An admin demoted to member: their client is refused while they lack the permission."""
    admin = await add_member(client, owner, "admin")
    service, _ = await create(client, admin)
    roles_url = f"{owner.org_url}/users/{admin.user_id}/roles"

    demoted = await client.put(
        roles_url, headers=owner.headers, json={"role_ids": [SYSTEM_ROLE_IDS["member"]]}
    )
    assert demoted.status_code == 200, demoted.text
    await assert_refused(client, service, owner.access_token)

    # The client answers to its creator's authority now: promoted again, it works again.
    promoted = await client.put(
        roles_url, headers=owner.headers, json={"role_ids": [SYSTEM_ROLE_IDS["admin"]]}
    )
    assert promoted.status_code == 200, promoted.text
    assert (await introspect(client, service, owner.access_token))["active"] is True


async def test_custom_role_losing_the_permission_stops_the_clients(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Editing the creator's custom role to drop service_clients:manage stops their client."""
    manager, role_id = await member_with_custom_role(
        client, owner, ["service_clients:manage", "users:read"]
    )
    service, _ = await create(client, manager)
    assert (await introspect(client, service, owner.access_token))["active"] is True

    edited = await client.patch(
        f"{owner.org_url}/roles/{role_id}",
        headers=owner.headers,
        json={"permissions": ["users:read"]},
    )
    assert edited.status_code == 200, edited.text
    await assert_refused(client, service, owner.access_token)


async def test_deleting_the_organization_revokes_its_clients(
    client: httpx.AsyncClient, owner: Account, runtime: Runtime
) -> None:
    """After the organization is deleted its clients are refused and revoked (audited)."""
    service, row_id = await create(client, owner)
    survivor_org = await sign_up(client, org_name="Survivor")
    survivor, _ = await create(client, survivor_org)

    deleted = await client.delete(owner.org_url, headers=owner.headers)
    assert deleted.status_code == 204, deleted.text
    await assert_refused(client, service, survivor_org.access_token)
    assert (await introspect(client, survivor, survivor_org.access_token))["active"] is True

    # The organization's API is gone with it: read what was stored.
    async with runtime.db.session() as session:
        row = await session.scalar(
            select(ServiceClientRow).where(ServiceClientRow.id == uuid.UUID(row_id))
        )
        events = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.event_type == "service_client.revoked",
                    AuditEvent.target_id == row_id,
                )
            )
        ).all()
    assert row is not None
    assert row.revoked_at is not None
    (event,) = events
    assert event.details["reason"] == "organization_deleted"
    assert event.actor_id == uuid.UUID(owner.user_id)


async def test_cli_clients_answer_to_the_operator(private_sqlite: Settings) -> None:
    """CLI clients have no creator: member changes leave them be; a platform client
    outlives any organization, an organization-bound one ends with its organization."""
    async with running_app(private_sqlite) as app, client_for(app) as client:
        bound_org = await sign_up(client, "Bound")
        other_org = await sign_up(client, "Other")
    made = [
        await run_cli(private_sqlite, "service-clients", "create", "--name", "gateway"),
        await run_cli(
            private_sqlite,
            "service-clients",
            "create",
            "--name",
            "bound",
            "--organization-id",
            bound_org.org_id,
        ),
    ]
    platform, bound = (ServiceClient(m["client_id"], m["client_secret"]) for m in made)
    async with running_app(private_sqlite) as app, client_for(app) as client:
        admin = await add_member(client, bound_org, "admin")
        removed = await client.delete(
            f"{bound_org.org_url}/users/{admin.user_id}", headers=bound_org.headers
        )
        assert removed.status_code == 200
        for service in (platform, bound):
            assert (await introspect(client, service, bound_org.access_token))["active"] is True

        deleted = await client.delete(bound_org.org_url, headers=bound_org.headers)
        assert deleted.status_code == 204
        await assert_refused(client, bound, other_org.access_token)
        assert (await introspect(client, platform, other_org.access_token))["active"] is True


# -- the operator's CLI -------------------------------------------------------------------


async def test_cli_lists_and_revokes_clients(private_sqlite: Settings) -> None:
    """`service-clients list` shows every client without secrets; `revoke` stops one, audited."""
    async with running_app(private_sqlite) as app, client_for(app) as client:
        owner = await sign_up(client, "Listed")
        made_in_api = await create_service_client(client, owner)
    platform = await run_cli(private_sqlite, "service-clients", "create", "--name", "gateway")

    everything = (await run_cli(private_sqlite, "service-clients", "list"))["service_clients"]
    by_id = {c["client_id"]: c for c in everything}
    assert set(by_id) >= {platform["client_id"], made_in_api.client_id}
    assert by_id[made_in_api.client_id]["created_by_id"] == owner.user_id
    assert by_id[platform["client_id"]]["organization_id"] is None
    text = str(everything)
    assert platform["client_secret"] not in text
    assert made_in_api.client_secret not in text
    assert "secret" not in " ".join(k for c in everything for k in c)

    one_org = await run_cli(
        private_sqlite, "service-clients", "list", "--organization-id", owner.org_id
    )
    assert [c["client_id"] for c in one_org["service_clients"]] == [made_in_api.client_id]

    revoked = await run_cli(private_sqlite, "service-clients", "revoke", made_in_api.client_id)
    assert revoked["client_id"] == made_in_api.client_id
    assert revoked["revoked_at"] is not None
    assert revoked["already_revoked"] is False
    again = await run_cli(private_sqlite, "service-clients", "revoke", made_in_api.client_id)
    assert again["already_revoked"] is True

    async with running_app(private_sqlite) as app, client_for(app) as client:
        await assert_refused(client, made_in_api, owner.access_token)
        events = await revocations(client, owner)
        # The platform client is untouched.
        gateway = ServiceClient(platform["client_id"], platform["client_secret"])
        assert (await introspect(client, gateway, owner.access_token))["active"] is True
    (event,) = events
    assert event["actor_id"] is None
    assert event["user_agent"] == "faultmaven-auth-cli"
    assert event["details"]["client_id"] == made_in_api.client_id


async def test_cli_revoke_of_an_unknown_client_fails(private_sqlite: Settings) -> None:
    """Revoking a client id that does not exist exits 1 naming SERVICE_CLIENT_NOT_FOUND."""
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli_main,
        ["service-clients", "revoke", "sc_nope"],
        env=cli_env(private_sqlite),
    )
    assert result.exit_code == 1
    assert "SERVICE_CLIENT_NOT_FOUND" in result.output


async def test_cli_revoke_says_so_when_running_servers_cannot_be_told(
    private_sqlite: Settings,
) -> None:
    """On SQLite without Redis, a marker that cannot be replaced makes the revocation
    exit 1 naming SERVICE_CLIENT_MARKER_FAILED (restart the servers); it is revoked."""
    made = await run_cli(private_sqlite, "service-clients", "create", "--name", "edge")
    marker = private_sqlite.sqlite_path()
    assert marker is not None
    marker.with_name(marker.name + ".service-clients").mkdir()  # no file can replace it
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli_main,
        ["service-clients", "revoke", made["client_id"]],
        env=cli_env(private_sqlite),
    )
    assert result.exit_code == 1
    assert "SERVICE_CLIENT_MARKER_FAILED" in result.output
    listed = await run_cli(private_sqlite, "service-clients", "list")
    (client,) = [c for c in listed["service_clients"] if c["client_id"] == made["client_id"]]
    assert client["revoked_at"] is not None


async def test_cli_create_for_an_unknown_organization_fails(private_sqlite: Settings) -> None:
    """`create --organization-id` with an unknown or deleted organization exits 1, cleanly."""
    async with running_app(private_sqlite) as app, client_for(app) as client:
        gone = await sign_up(client, "Gone")
        assert (await client.delete(gone.org_url, headers=gone.headers)).status_code == 204
    for org_id in (str(uuid.uuid4()), gone.org_id):
        result = await asyncio.to_thread(
            CliRunner().invoke,
            cli_main,
            ["service-clients", "create", "--name", "x", "--organization-id", org_id],
            env=cli_env(private_sqlite),
        )
        assert result.exit_code == 1, result.output
        assert "ORGANIZATION_NOT_FOUND" in result.output
        assert "client_secret" not in result.output

"""The hot path's caches never outlast the change they cache.

Each test warms the caches (the same request twice), makes a change through the API,
and expects the very next request to see it: a demoted admin gets 403, a deactivated
user 401, an edited custom role its new permissions, a team change the new team list.
The forged tokens carry a session id no logout or deactivation has revoked, so a 401
comes from the principal check itself, not from the revocation keys.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from sqlalchemy import event

from faultmaven_auth.cli import main as cli_main
from faultmaven_auth.config import Settings
from faultmaven_auth.runtime import Runtime
from tests.conftest import (
    SYSTEM_ROLE_IDS,
    Account,
    add_member,
    client_for,
    login,
    running_app,
    sign_up,
)
from tests.tokens.conftest import access_claims, bearer, run_cli, sign_with_current_key
from tests.tokens.test_introspection import (
    INTROSPECT,
    ServiceClient,
    create_service_client,
    introspect,
)

ME = "/api/v1/auth/me"


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get(ME, headers=headers)


async def warm(client: httpx.AsyncClient, headers: dict[str, str], url: str = ME) -> None:
    for _ in range(2):
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text


def other_session(runtime: Runtime, account: Account) -> dict[str, str]:
    """A valid token of ``account`` in a session nothing has revoked."""
    return bearer(sign_with_current_key(runtime, access_claims(runtime, account)))


async def set_roles(client: httpx.AsyncClient, owner: Account, user_id: str, *roles: str) -> None:
    response = await client.put(
        f"{owner.org_url}/users/{user_id}/roles", headers=owner.headers, json={"role_ids": roles}
    )
    assert response.status_code == 200, response.text


async def custom_role(client: httpx.AsyncClient, owner: Account, permissions: list[str]) -> str:
    response = await client.post(
        f"{owner.org_url}/roles",
        headers=owner.headers,
        json={"name": f"cached-{uuid.uuid4().hex[:8]}", "permissions": permissions},
    )
    assert response.status_code == 201, response.text
    role_id: str = response.json()["id"]
    return role_id


@pytest.fixture
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """Every SQL statement the app sends while the test runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


async def test_a_warm_me_and_introspection_read_no_database(
    client: httpx.AsyncClient, owner: Account, statements: list[str]
) -> None:
    """Once cached, /me and introspection of an access token send no SQL, on the
    embedded default too (the CLI's revocations reach it through the marker file)."""
    service = await create_service_client(client, owner)
    await warm(client, owner.headers)
    for _ in range(2):
        await introspect(client, service, owner.access_token)
    statements.clear()
    assert (await me(client, owner.headers)).status_code == 200
    assert (await introspect(client, service, owner.access_token))["active"] is True
    assert statements == []


async def test_demoted_admin_is_refused_on_the_next_request(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Admin to member: the next request lacks audit:read (403) and /me says member."""
    admin = await add_member(client, owner, "admin")
    audit = f"{owner.org_url}/audit-events"
    await warm(client, admin.headers, audit)
    await set_roles(client, owner, admin.user_id, SYSTEM_ROLE_IDS["member"])
    assert (await client.get(audit, headers=admin.headers)).status_code == 403
    assert (await me(client, admin.headers)).json()["roles"] == ["member"]


async def test_promoted_member_is_allowed_on_the_next_request(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Member to admin: the very next request may read the audit log."""
    member = await add_member(client, owner, "member")
    await warm(client, member.headers)
    await set_roles(client, owner, member.user_id, SYSTEM_ROLE_IDS["admin"])
    response = await client.get(f"{owner.org_url}/audit-events", headers=member.headers)
    assert response.status_code == 200, response.text


async def test_custom_role_edit_takes_effect_on_the_next_request(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Removing a permission from a custom role refuses its holder at once."""
    role_id = await custom_role(client, owner, ["audit:read", "users:read"])
    member = await add_member(client, owner, "member")
    await set_roles(client, owner, member.user_id, role_id)
    audit = f"{owner.org_url}/audit-events"
    await warm(client, member.headers, audit)

    edited = await client.patch(
        f"{owner.org_url}/roles/{role_id}", headers=owner.headers, json={"permissions": []}
    )
    assert edited.status_code == 200, edited.text
    assert (await client.get(audit, headers=member.headers)).status_code == 403
    assert (await me(client, member.headers)).json()["permissions"] == []


async def test_deleted_custom_role_takes_its_permissions_along(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Deleting a custom role: its holders lose its permissions on the next request."""
    role_id = await custom_role(client, owner, ["audit:read"])
    member = await add_member(client, owner, "member")
    await set_roles(client, owner, member.user_id, SYSTEM_ROLE_IDS["viewer"], role_id)
    audit = f"{owner.org_url}/audit-events"
    await warm(client, member.headers, audit)

    deleted = await client.delete(f"{owner.org_url}/roles/{role_id}", headers=owner.headers)
    assert deleted.status_code == 204, deleted.text
    assert (await client.get(audit, headers=member.headers)).status_code == 403
    assert (await me(client, member.headers)).json()["roles"] == ["viewer"]


async def test_deactivated_user_is_refused_on_the_next_request(
    client: httpx.AsyncClient, owner: Account, runtime: Runtime
) -> None:
    """Deactivation: 401 at once, even for a token of a session it did not revoke."""
    member = await add_member(client, owner, "member")
    headers = other_session(runtime, member)
    await warm(client, headers)
    removed = await client.delete(f"{owner.org_url}/users/{member.user_id}", headers=owner.headers)
    assert removed.status_code == 200, removed.text
    assert (await me(client, headers)).status_code == 401


async def test_deleted_organization_refuses_its_members_on_the_next_request(
    client: httpx.AsyncClient, owner: Account, runtime: Runtime
) -> None:
    """Organization deleted: its members' unrevoked tokens stop working at once."""
    member = await add_member(client, owner, "member")
    headers = other_session(runtime, member)
    await warm(client, headers)
    deleted = await client.delete(owner.org_url, headers=owner.headers)
    assert deleted.status_code == 204, deleted.text
    assert (await me(client, headers)).status_code == 401


async def test_team_changes_show_in_me_at_once(client: httpx.AsyncClient, owner: Account) -> None:
    """Joining, leaving and the deletion of a team are in the next /me."""
    member = await add_member(client, owner, "member")
    teams = f"{owner.org_url}/teams"
    team = await client.post(teams, headers=owner.headers, json={"name": "Cached"})
    assert team.status_code == 201, team.text
    team_id = team.json()["id"]
    await warm(client, member.headers)

    added = await client.post(
        f"{teams}/{team_id}/members", headers=owner.headers, json={"user_id": member.user_id}
    )
    assert added.status_code in (200, 201), added.text
    assert (await me(client, member.headers)).json()["team_ids"] == [team_id]

    left = await client.delete(f"{teams}/{team_id}/members/{member.user_id}", headers=owner.headers)
    assert left.status_code == 204, left.text
    assert (await me(client, member.headers)).json()["team_ids"] == []

    again = await client.post(
        f"{teams}/{team_id}/members", headers=owner.headers, json={"user_id": member.user_id}
    )
    assert again.status_code in (200, 201), again.text
    assert (await me(client, member.headers)).json()["team_ids"] == [team_id]
    gone = await client.delete(f"{teams}/{team_id}", headers=owner.headers)
    assert gone.status_code == 204, gone.text
    assert (await me(client, member.headers)).json()["team_ids"] == []


async def test_logout_revokes_a_cached_token(client: httpx.AsyncClient, owner: Account) -> None:
    """A token whose signature and principal are cached is still refused after logout."""
    await warm(client, owner.headers)
    out = await client.post("/api/v1/auth/logout", headers=owner.headers)
    assert out.status_code == 204, out.text
    assert (await me(client, owner.headers)).status_code == 401


async def test_introspection_sees_deactivation_at_once(
    client: httpx.AsyncClient, owner: Account, runtime: Runtime
) -> None:
    """A token introspected as active is inactive right after its user is deactivated."""
    service = await create_service_client(client, owner)
    member = await add_member(client, owner, "member")
    token = other_session(runtime, member)["Authorization"].removeprefix("Bearer ")
    for _ in range(2):
        assert (await introspect(client, service, token))["active"] is True
    removed = await client.delete(f"{owner.org_url}/users/{member.user_id}", headers=owner.headers)
    assert removed.status_code == 200, removed.text
    assert (await introspect(client, service, token)) == {"active": False}


# -- several app instances sharing one store -----------------------------------------------


@pytest.fixture
async def second_app(backend_settings: Settings, backend: str) -> AsyncIterator[FastAPI]:
    """Another instance (a second worker or replica) on the same database and store."""
    if backend != "postgres":
        pytest.skip("the in-process store is private to one process by design")
    async with running_app(backend_settings) as app:
        yield app


async def test_a_change_made_through_one_instance_holds_in_another(
    client: httpx.AsyncClient, owner: Account, runtime: Runtime, second_app: FastAPI
) -> None:
    """Instance B has the admin cached; a demotion and a deactivation made through
    instance A are seen by B's very next request."""
    admin = await add_member(client, owner, "admin")
    audit = f"{owner.org_url}/audit-events"
    headers = other_session(runtime, admin)
    async with client_for(second_app) as other:
        await warm(other, headers, audit)
        await set_roles(client, owner, admin.user_id, SYSTEM_ROLE_IDS["member"])
        assert (await other.get(audit, headers=headers)).status_code == 403
        await warm(other, headers)
        removed = await client.delete(
            f"{owner.org_url}/users/{admin.user_id}", headers=owner.headers
        )
        assert removed.status_code == 200, removed.text
        assert (await me(other, headers)).status_code == 401


# -- the service client's own row -----------------------------------------------------------


async def test_cli_revocation_holds_at_once_in_a_running_app(private_sqlite: Settings) -> None:
    """The operator's CLI (another process, no shared store) revokes a client that the
    running app has just authenticated: its next introspection is refused."""
    async with running_app(private_sqlite) as app, client_for(app) as client:
        owner = await sign_up(client, "Operator")
        service = await create_service_client(client, owner)
        for _ in range(2):
            assert (await introspect(client, service, owner.access_token))["active"] is True
        await run_cli(private_sqlite, "service-clients", "revoke", service.client_id)
        refused = await client.post(
            INTROSPECT, auth=service.auth, data={"token": owner.access_token}
        )
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "INVALID_CLIENT"


async def test_cli_revocation_of_a_cached_platform_client_holds_at_once(
    private_sqlite: Settings,
) -> None:
    """A platform client made by the CLI is checked from its row once, then from the
    cache; the CLI's revocation (another process) refuses its very next request."""
    async with running_app(private_sqlite) as app, client_for(app) as client:
        owner = await sign_up(client, "Operator")
        made = await run_cli(private_sqlite, "service-clients", "create", "--name", "edge")
        service = ServiceClient(made["client_id"], made["client_secret"])
        engine = app.state.runtime.db.engine.sync_engine
        seen: list[str] = []

        def record(*args: Any) -> None:
            seen.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", record)
        try:
            for _ in range(3):
                assert (await introspect(client, service, owner.access_token))["active"] is True
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert len([s for s in seen if "FROM service_clients" in s]) == 1
        await run_cli(private_sqlite, "service-clients", "revoke", service.client_id)
        refused = await client.post(
            INTROSPECT, auth=service.auth, data={"token": owner.access_token}
        )
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "INVALID_CLIENT"


# -- what does not invalidate --------------------------------------------------------------


def principal_reads(statements: list[str]) -> list[str]:
    tables = (" users", " organizations", " roles", " user_roles", " team_memberships")
    return [s for s in statements if any(t in s for t in tables)]


async def test_changes_in_one_organization_leave_others_cached(
    client: httpx.AsyncClient, owner: Account, statements: list[str]
) -> None:
    """Sign-ups, logins, new members, role and team changes in another organization do
    not make this one's principals reload."""
    await warm(client, owner.headers)
    other = await sign_up(client, "Elsewhere")
    member = await add_member(client, other, "member")
    await set_roles(client, other, member.user_id, SYSTEM_ROLE_IDS["viewer"])
    role_id = await custom_role(client, other, ["users:read"])
    edited = await client.patch(
        f"{other.org_url}/roles/{role_id}", headers=other.headers, json={"permissions": []}
    )
    assert edited.status_code == 200, edited.text
    team = await client.post(f"{other.org_url}/teams", headers=other.headers, json={"name": "T"})
    assert team.status_code == 201, team.text
    gone = await client.delete(f"{other.org_url}/teams/{team.json()['id']}", headers=other.headers)
    assert gone.status_code == 204, gone.text
    statements.clear()
    assert (await me(client, owner.headers)).status_code == 200
    assert principal_reads(statements) == []


async def test_logging_in_again_keeps_the_principal_cached(
    client: httpx.AsyncClient, owner: Account, statements: list[str]
) -> None:
    """A login writes the user's last_login_at, which no principal depends on."""
    await warm(client, owner.headers)
    await login(client, owner.email, owner.password)
    statements.clear()
    assert (await me(client, owner.headers)).status_code == 200
    assert principal_reads(statements) == []


async def test_cli_revocation_reaches_servers_through_the_shared_store(
    client: httpx.AsyncClient, owner: Account, backend_settings: Settings, second_app: FastAPI
) -> None:
    """With Redis the servers keep no row read per call: the CLI's revocation replaces
    the generation they check, in every instance, before the command returns."""
    service = await create_service_client(client, owner)
    env = {
        "DATABASE_URL": backend_settings.database_url,
        "REDIS_URL": backend_settings.redis_url,
        "KV_KEY_PREFIX": backend_settings.kv_key_prefix,
        "ENVIRONMENT": "development",
    }
    async with client_for(second_app) as other:
        for http in (client, other, client, other):
            assert (await introspect(http, service, owner.access_token))["active"] is True
        result = await asyncio.to_thread(
            CliRunner().invoke,
            cli_main,
            ["service-clients", "revoke", service.client_id],
            env=env,
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        for http in (client, other):
            refused = await http.post(
                INTROSPECT, auth=service.auth, data={"token": owner.access_token}
            )
            assert refused.status_code == 401

"""Every invariant holds when 20 requests race for it, on every backend.

The rules below are checked with a read followed by a write. Run one at a time they
are obviously right; run 20 at once they are right only if the database serializes the
check with the write (SQLite: ``BEGIN IMMEDIATE`` takes the write lock before the
read; PostgreSQL: ``SELECT … FOR UPDATE`` on the organization or the row concerned) or
a unique index decides, and the loser gets a 409 with a stable code rather than a 500.
Each test fires 20 identical or conflicting requests at one real server process
(uvicorn, as deployed) and then looks at what a user can see through the API.

- Last owner: an organization without an active owner cannot be administered or
  deleted by anyone, and nobody can repair it through the API.
- Plan limits: operators sell seats and teams; a burst of requests must not hand out
  more than the plan allows.
- Unique team and role names: names are how people pick a team or a role; two with
  the same name make every later choice ambiguous.
- Team membership and role assignment: a member is in a team once, and holds exactly
  the roles the last successful request gave them (never a union of two requests).
- Invitation acceptance: one invitation creates one account, whatever the number of
  clicks on the link.
- Refresh rotation: a refresh token is spent once; presenting it again is the signal
  that a copy leaked, so the whole session ends.

One server per backend for the module (starting it is the slow part); each test signs
up its own organization, so tests never share state.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import pytest

from tests.conftest import (
    PASSWORD,
    REDIS_URL,
    SYSTEM_ROLE_IDS,
    check_redis,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    unique_email,
)
from tests.support.server import CLI, ServerProcess, migrate, running_server, server_env

RACERS = 20
# Every racer comes from 127.0.0.1: per-address limits would refuse the race itself.
UNTHROTTLED = {
    "RATE_LIMIT_ENABLED": "false",
    "CREDENTIAL_STUFFING_MAX_FAILURES": "1000000",
    "CREDENTIAL_STUFFING_MAX_ACCOUNTS": "1000000",
}


class Api:
    """A real server and what the tests need to talk to it."""

    def __init__(self, server: ServerProcess, env: dict[str, str]) -> None:
        self.server = server
        self.env = env
        self.http = httpx.AsyncClient(
            base_url=server.base_url,
            timeout=60,
            # Idle connections are dropped after 1 s, well before uvicorn closes them
            # (5 s): with both at 5 s, a request sent on a connection the server was just
            # closing was reset (ReadError), a race of the test's client, not the service.
            limits=httpx.Limits(max_connections=RACERS * 2, keepalive_expiry=1.0),
        )


@pytest.fixture(scope="module", params=["embedded", "postgres"])
async def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    tmp_path = tmp_path_factory.mktemp(f"races-{request.param}")
    overrides = {"LOG_LEVEL": "WARNING"}
    cleanup: list[Awaitable[None]] = []
    if request.param == "postgres":
        await check_redis()
        database = await create_postgres_database()
        prefix = f"fmtest:races{secrets.token_hex(4)}:"
        cleanup += [drop_postgres_database(database.name), delete_redis_prefix(prefix)]
        overrides |= {
            "DATABASE_URL": database.async_url,
            "DATABASE_POOL_SIZE": "5",
            "REDIS_URL": REDIS_URL,
            "KV_KEY_PREFIX": prefix,
        }
    env = server_env(tmp_path, **UNTHROTTLED, **overrides)
    try:
        await asyncio.to_thread(migrate, env)
        with running_server(env, tmp_path / "server.log") as server:
            api = Api(server, env)
            async with api.http:
                yield api
    finally:
        for step in cleanup:
            await step


# -- helpers ---------------------------------------------------------------------------


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def race(api: Api, *requests: Awaitable[httpx.Response]) -> list[httpx.Response]:
    """Fire every request at once; none may be a server error."""
    responses = await asyncio.gather(*requests)
    server_errors = [(r.status_code, r.text) for r in responses if r.status_code >= 500]
    if server_errors:
        logged = [line for line in api.server.log_lines() if '"level": "ERROR"' in line]
        raise AssertionError(f"{server_errors}\nserver errors logged:\n" + "\n".join(logged[-3:]))
    return list(responses)


def outcomes(responses: list[httpx.Response]) -> Counter[tuple[int, str | None]]:
    """(status, error code) -> how many responses had it."""
    counted: Counter[tuple[int, str | None]] = Counter()
    for response in responses:
        code = response.json()["error"]["code"] if response.status_code >= 400 else None
        counted[(response.status_code, code)] += 1
    return counted


async def login(api: Api, email: str) -> dict[str, Any]:
    response = await api.http.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class Org:
    def __init__(self, org_id: str, owner_id: str, owner_email: str, token: str) -> None:
        self.id = org_id
        self.owner_id = owner_id
        self.owner_email = owner_email
        self.token = token

    @property
    def url(self) -> str:
        return f"/api/v1/organizations/{self.id}"

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)


async def sign_up(api: Api) -> Org:
    email = unique_email("owner")
    response = await api.http.post(
        "/api/v1/auth/register",
        json={
            "organization_name": "Race Co",
            "email": email,
            "password": PASSWORD,
            "full_name": "Owner",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    tokens = await login(api, email)
    return Org(body["organization"]["id"], body["user"]["id"], email, tokens["access_token"])


async def bootstrap(api: Api, **limits: int) -> Org:
    """An organization created by the operator's CLI with the given plan limits."""
    email = unique_email("boot")
    args = [f"--{name.replace('_', '-')}={value}" for name, value in limits.items()]
    result = await asyncio.to_thread(
        subprocess.run,
        [
            *CLI,
            "bootstrap",
            "--organization-name=Limited Co",
            f"--email={email}",
            "--full-name=Operator Owner",
            *args,
        ],
        env={**api.env, "BOOTSTRAP_PASSWORD": PASSWORD},
        capture_output=True,
        check=True,
        timeout=120,
    )
    created = json.loads(result.stdout)
    tokens = await login(api, email)
    return Org(created["organization_id"], created["user_id"], email, tokens["access_token"])


async def add_user(api: Api, org: Org, role: str = "member") -> tuple[str, str]:
    """A new member with a system role: (user id, email)."""
    email = unique_email(role)
    response = await api.http.post(
        f"{org.url}/users",
        headers=org.headers,
        json={
            "email": email,
            "password": PASSWORD,
            "full_name": "Member",
            "role_ids": [SYSTEM_ROLE_IDS[role]],
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], email


async def owners_of(api: Api, org: Org, token: str) -> list[tuple[str, str]]:
    """Ids of the org's *active* owners: (user id, email)."""
    response = await api.http.get(f"{org.url}/users?limit=100", headers=auth(token))
    assert response.status_code == 200, response.text
    owners = []
    for user in response.json()["items"]:
        if not user["is_active"]:
            continue
        roles = await api.http.get(f"{org.url}/users/{user['id']}/roles", headers=auth(token))
        assert roles.status_code == 200, roles.text
        if any(r["name"] == "owner" for r in roles.json()):
            owners.append((user["id"], user["email"]))
    return owners


async def twenty_owners(api: Api) -> tuple[Org, list[tuple[str, str]]]:
    """An organization with RACERS owners, each logged in: (org, [(user id, token)])."""
    org = await sign_up(api)
    extra = await asyncio.gather(*(add_user(api, org, "owner") for _ in range(RACERS - 1)))
    emails = [org.owner_email, *(email for _, email in extra)]
    ids = [org.owner_id, *(user_id for user_id, _ in extra)]
    tokens = await asyncio.gather(*(login(api, email) for email in emails))
    return org, [(i, t["access_token"]) for i, t in zip(ids, tokens, strict=True)]


# -- last owner ------------------------------------------------------------------------


async def test_twenty_owners_demoting_themselves_leave_exactly_one_owner(api: Api) -> None:
    """Every owner drops their own owner role at once: one is refused, LAST_OWNER."""
    org, owners = await twenty_owners(api)
    responses = await race(
        api,
        *(
            api.http.put(
                f"{org.url}/users/{user_id}/roles",
                headers=auth(token),
                json={"role_ids": [SYSTEM_ROLE_IDS["member"]]},
            )
            for user_id, token in owners
        ),
    )
    assert outcomes(responses) == {(200, None): RACERS - 1, (409, "LAST_OWNER"): 1}
    survivor = owners[[r.status_code for r in responses].index(409)]
    assert [user_id for user_id, _ in await owners_of(api, org, survivor[1])] == [survivor[0]]


async def test_twenty_owners_deactivating_themselves_leave_one_who_can_log_in(
    api: Api,
) -> None:
    """Every owner deactivates their own account at once: one stays, and can log in."""
    org, owners = await twenty_owners(api)
    responses = await race(
        api,
        *(
            api.http.delete(f"{org.url}/users/{user_id}", headers=auth(token))
            for user_id, token in owners
        ),
    )
    assert outcomes(responses) == {(200, None): RACERS - 1, (409, "LAST_OWNER"): 1}
    survivor_id, survivor_token = owners[[r.status_code for r in responses].index(409)]
    remaining = await owners_of(api, org, survivor_token)
    assert [user_id for user_id, _ in remaining] == [survivor_id]
    await login(api, remaining[0][1])


# -- plan limits -----------------------------------------------------------------------


async def test_twenty_team_creations_stop_at_the_team_limit(api: Api) -> None:
    """max_teams=5 and 20 creations of distinct teams: exactly five exist."""
    org = await bootstrap(api, max_teams=5)
    responses = await race(
        api,
        *(
            api.http.post(f"{org.url}/teams", headers=org.headers, json={"name": f"team-{i}"})
            for i in range(RACERS)
        ),
    )
    assert outcomes(responses) == {(201, None): 5, (409, "PLAN_LIMIT_REACHED"): RACERS - 5}
    teams = await api.http.get(f"{org.url}/teams", headers=org.headers)
    assert len(teams.json()) == 5


async def test_twenty_user_creations_stop_at_the_user_limit(api: Api) -> None:
    """max_users=3 (the owner is one) and 20 creations: exactly three active users."""
    org = await bootstrap(api, max_users=3)
    responses = await race(
        api,
        *(
            api.http.post(
                f"{org.url}/users",
                headers=org.headers,
                json={"email": unique_email("seat"), "password": PASSWORD, "full_name": "Seat"},
            )
            for _ in range(RACERS)
        ),
    )
    assert outcomes(responses) == {(201, None): 2, (409, "PLAN_LIMIT_REACHED"): RACERS - 2}
    users = await api.http.get(f"{org.url}/users", headers=org.headers)
    assert sum(1 for u in users.json()["items"] if u["is_active"]) == 3


# -- unique names ----------------------------------------------------------------------


async def test_twenty_teams_with_one_name_make_one_team(api: Api) -> None:
    """The same team name 20 times at once: one 201, the rest TEAM_NAME_TAKEN."""
    org = await sign_up(api)
    responses = await race(
        api,
        *(
            api.http.post(f"{org.url}/teams", headers=org.headers, json={"name": "Platform"})
            for _ in range(RACERS)
        ),
    )
    assert outcomes(responses) == {(201, None): 1, (409, "TEAM_NAME_TAKEN"): RACERS - 1}
    teams = await api.http.get(f"{org.url}/teams", headers=org.headers)
    assert [t["name"] for t in teams.json()] == ["Platform"]


async def test_twenty_teams_renamed_to_one_name_leave_one_with_it(api: Api) -> None:
    """20 teams renamed to the same name at once: one wins, the rest TEAM_NAME_TAKEN."""
    org = await sign_up(api)
    created = [
        await api.http.post(f"{org.url}/teams", headers=org.headers, json={"name": f"t{i}"})
        for i in range(RACERS)
    ]
    responses = await race(
        api,
        *(
            api.http.patch(
                f"{org.url}/teams/{team.json()['id']}", headers=org.headers, json={"name": "Ops"}
            )
            for team in created
        ),
    )
    assert outcomes(responses) == {(200, None): 1, (409, "TEAM_NAME_TAKEN"): RACERS - 1}
    teams = await api.http.get(f"{org.url}/teams", headers=org.headers)
    assert [t["name"] for t in teams.json()].count("Ops") == 1


async def test_twenty_roles_with_one_name_make_one_role(api: Api) -> None:
    """The same custom role name 20 times at once: one 201, the rest ROLE_NAME_TAKEN."""
    org = await sign_up(api)
    responses = await race(
        api,
        *(
            api.http.post(
                f"{org.url}/roles",
                headers=org.headers,
                json={"name": "auditor", "permissions": ["audit:read"]},
            )
            for _ in range(RACERS)
        ),
    )
    assert outcomes(responses) == {(201, None): 1, (409, "ROLE_NAME_TAKEN"): RACERS - 1}
    roles = await api.http.get(f"{org.url}/roles", headers=org.headers)
    assert [r["name"] for r in roles.json()].count("auditor") == 1


async def test_twenty_roles_renamed_to_one_name_leave_one_with_it(api: Api) -> None:
    """20 custom roles renamed to the same name at once: one wins, the rest 409."""
    org = await sign_up(api)
    created = [
        await api.http.post(
            f"{org.url}/roles",
            headers=org.headers,
            json={"name": f"r{i}", "permissions": ["audit:read"]},
        )
        for i in range(RACERS)
    ]
    responses = await race(
        api,
        *(
            api.http.patch(
                f"{org.url}/roles/{role.json()['id']}",
                headers=org.headers,
                json={"name": "reviewer"},
            )
            for role in created
        ),
    )
    assert outcomes(responses) == {(200, None): 1, (409, "ROLE_NAME_TAKEN"): RACERS - 1}
    roles = await api.http.get(f"{org.url}/roles", headers=org.headers)
    assert [r["name"] for r in roles.json()].count("reviewer") == 1


# -- membership and assignment ---------------------------------------------------------


async def test_the_same_member_added_twenty_times_is_in_the_team_once(api: Api) -> None:
    """Adding an existing member is an idempotent success; the audit records one add."""
    org = await sign_up(api)
    team = await api.http.post(f"{org.url}/teams", headers=org.headers, json={"name": "Core"})
    team_url = f"{org.url}/teams/{team.json()['id']}"
    user_id, _ = await add_user(api, org)
    responses = await race(
        api,
        *(
            api.http.post(f"{team_url}/members", headers=org.headers, json={"user_id": user_id})
            for _ in range(RACERS)
        ),
    )
    assert outcomes(responses) == {(201, None): RACERS}
    members = await api.http.get(f"{team_url}/members", headers=org.headers)
    assert [m["id"] for m in members.json()] == [user_id]
    events = await api.http.get(
        f"{org.url}/audit-events?event_type=team.member_added", headers=org.headers
    )
    assert len(events.json()["items"]) == 1


async def test_the_same_member_removed_twenty_times_is_removed_once(api: Api) -> None:
    """One removal succeeds; the others find no membership (404), and one is audited."""
    org = await sign_up(api)
    team = await api.http.post(f"{org.url}/teams", headers=org.headers, json={"name": "Core"})
    team_url = f"{org.url}/teams/{team.json()['id']}"
    user_id, _ = await add_user(api, org)
    added = await api.http.post(
        f"{team_url}/members", headers=org.headers, json={"user_id": user_id}
    )
    assert added.status_code == 201
    responses = await race(
        api,
        *(
            api.http.delete(f"{team_url}/members/{user_id}", headers=org.headers)
            for _ in range(RACERS)
        ),
    )
    assert outcomes(responses) == {
        (204, None): 1,
        (404, "TEAM_MEMBER_NOT_FOUND"): RACERS - 1,
    }
    events = await api.http.get(
        f"{org.url}/audit-events?event_type=team.member_removed", headers=org.headers
    )
    assert len(events.json()["items"]) == 1


async def test_conflicting_role_assignments_leave_exactly_one_requested_set(api: Api) -> None:
    """20 replacements of one member's roles with different sets: one set wins whole."""
    org = await sign_up(api)
    user_id, _ = await add_user(api, org)
    choices = [
        ["member"],
        ["viewer"],
        ["admin"],
        ["member", "viewer"],
    ]
    responses = await race(
        api,
        *(
            api.http.put(
                f"{org.url}/users/{user_id}/roles",
                headers=org.headers,
                json={"role_ids": [SYSTEM_ROLE_IDS[n] for n in choices[i % len(choices)]]},
            )
            for i in range(RACERS)
        ),
    )
    assert outcomes(responses) == {(200, None): RACERS}
    roles = await api.http.get(f"{org.url}/users/{user_id}/roles", headers=org.headers)
    held = sorted(r["name"] for r in roles.json())
    assert held in [sorted(c) for c in choices]


# -- invitations and sessions ----------------------------------------------------------


async def test_one_invitation_accepted_twenty_times_makes_one_account(api: Api) -> None:
    """The same token and email 20 times at once: one account, the others refused."""
    org = await sign_up(api)
    email = unique_email("invitee")
    invitation = await api.http.post(
        f"{org.url}/invitations",
        headers=org.headers,
        json={"email": email, "role_id": SYSTEM_ROLE_IDS["member"]},
    )
    assert invitation.status_code == 201, invitation.text
    token = invitation.json()["token"]
    responses = await race(
        api,
        *(
            api.http.post(
                "/api/v1/auth/register",
                json={
                    "invitation_token": token,
                    "email": email,
                    "password": PASSWORD,
                    "full_name": "Invitee",
                },
            )
            for _ in range(RACERS)
        ),
    )
    counted = outcomes(responses)
    assert counted[(201, None)] == 1
    refused = {key for key in counted if key[0] != 201}
    assert refused <= {(400, "INVALID_INVITATION"), (409, "EMAIL_TAKEN")}, counted
    users = await api.http.get(f"{org.url}/users", headers=org.headers)
    assert [u["email"] for u in users.json()["items"]].count(email) == 1


async def test_one_refresh_token_presented_twenty_times_ends_the_session(api: Api) -> None:
    """At most one rotation wins; the reuse then revokes the family, winner included."""
    org = await sign_up(api)
    tokens = await login(api, org.owner_email)
    responses = await race(
        api,
        *(
            api.http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            for _ in range(RACERS)
        ),
    )
    counted = outcomes(responses)
    assert counted[(200, None)] <= 1
    assert {key for key in counted if key[0] != 200} <= {
        (401, "INVALID_TOKEN"),
        (401, "REFRESH_TOKEN_REUSED"),
    }, counted
    assert counted[(401, "REFRESH_TOKEN_REUSED")] >= 1
    for winner in (r.json() for r in responses if r.status_code == 200):
        again = await api.http.post(
            "/api/v1/auth/refresh", json={"refresh_token": winner["refresh_token"]}
        )
        assert again.status_code == 401
        me = await api.http.get("/api/v1/auth/me", headers=auth(winner["access_token"]))
        assert me.status_code == 401


# -- deletions racing with each other and with use -------------------------------------


async def test_a_team_deleted_twenty_times_is_deleted_once(api: Api) -> None:
    """One deletion succeeds and is audited; the others find no team (404)."""
    org = await sign_up(api)
    team = await api.http.post(f"{org.url}/teams", headers=org.headers, json={"name": "Gone"})
    responses = await race(
        api,
        *(
            api.http.delete(f"{org.url}/teams/{team.json()['id']}", headers=org.headers)
            for _ in range(RACERS)
        ),
    )
    assert outcomes(responses) == {(204, None): 1, (404, "TEAM_NOT_FOUND"): RACERS - 1}
    events = await api.http.get(
        f"{org.url}/audit-events?event_type=team.deleted", headers=org.headers
    )
    assert len(events.json()["items"]) == 1


async def test_a_role_deleted_while_being_assigned_is_held_by_nobody(api: Api) -> None:
    """Assignments racing with the role's deletion: each succeeds or gets ROLE_NOT_FOUND."""
    org = await sign_up(api)
    role = await api.http.post(
        f"{org.url}/roles",
        headers=org.headers,
        json={"name": "temporary", "permissions": ["audit:read"]},
    )
    role_id = role.json()["id"]
    users = await asyncio.gather(*(add_user(api, org) for _ in range(RACERS - 1)))
    assignments = [
        api.http.put(
            f"{org.url}/users/{user_id}/roles",
            headers=org.headers,
            json={"role_ids": [SYSTEM_ROLE_IDS["member"], role_id]},
        )
        for user_id, _ in users
    ]
    deletion = api.http.delete(f"{org.url}/roles/{role_id}", headers=org.headers)
    responses = await race(api, *assignments[: RACERS // 2], deletion, *assignments[RACERS // 2 :])
    counted = outcomes(responses)
    assert counted[(204, None)] == 1
    assert set(counted) <= {(200, None), (204, None), (404, "ROLE_NOT_FOUND")}, counted
    for user_id, _ in users:
        held = await api.http.get(f"{org.url}/users/{user_id}/roles", headers=org.headers)
        assert [r["name"] for r in held.json()] == ["member"]


# -- several processes on one SQLite file ---------------------------------------------


@pytest.fixture
async def two_servers_on_sqlite(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Api, Api]]:
    """Two server processes sharing one SQLite file (and one Redis store)."""
    await check_redis()
    tmp_path = tmp_path_factory.mktemp("races-processes")
    prefix = f"fmtest:racesp{secrets.token_hex(4)}:"
    env = server_env(
        tmp_path, **UNTHROTTLED, LOG_LEVEL="WARNING", REDIS_URL=REDIS_URL, KV_KEY_PREFIX=prefix
    )
    try:
        await asyncio.to_thread(migrate, env)
        with (
            running_server(env, tmp_path / "a.log") as first,
            running_server(env, tmp_path / "b.log") as second,
        ):
            apis = Api(first, env), Api(second, env)
            async with apis[0].http, apis[1].http:
                yield apis
    finally:
        await delete_redis_prefix(prefix)


async def test_the_team_limit_holds_across_server_processes_on_sqlite(
    two_servers_on_sqlite: tuple[Api, Api],
) -> None:
    """Writers in two processes are ordered by SQLite's own lock (BEGIN IMMEDIATE)."""
    apis = two_servers_on_sqlite
    org = await bootstrap(apis[0], max_teams=5)
    responses = await race(
        apis[0],
        *(
            apis[i % 2].http.post(
                f"{org.url}/teams", headers=org.headers, json={"name": f"team-{i}"}
            )
            for i in range(RACERS)
        ),
    )
    assert outcomes(responses) == {(201, None): 5, (409, "PLAN_LIMIT_REACHED"): RACERS - 5}
    teams = await apis[1].http.get(f"{org.url}/teams", headers=org.headers)
    assert len(teams.json()) == 5

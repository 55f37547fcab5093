"""Plan limits: set by the operator, enforced on every way in, never raised by the tenant.

The organizations here are signed up on an app whose defaults allow two active users
and one team (same database as the other tests, other settings).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from faultmaven_auth.config import Settings
from tests.conftest import (
    PASSWORD,
    Account,
    add_member,
    client_for,
    running_app,
    sign_up,
    unique_email,
)
from tests.organizations.conftest import create_team, invite


@pytest.fixture
async def limited(backend_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that gives new organizations max_users=2 and max_teams=1."""
    settings = backend_settings.model_copy(update={"default_max_users": 2, "default_max_teams": 1})
    async with running_app(settings) as app, client_for(app) as http:
        yield http


@pytest.fixture
async def small_org(limited: httpx.AsyncClient) -> Account:
    return await sign_up(limited, org_name="Small Co")


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def create_user(client: httpx.AsyncClient, owner: Account) -> httpx.Response:
    return await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={"email": unique_email("u"), "password": PASSWORD, "full_name": "Someone"},
    )


async def active_user_count(client: httpx.AsyncClient, owner: Account) -> int:
    response = await client.get(f"{owner.org_url}/users", headers=owner.headers)
    assert response.status_code == 200
    return sum(1 for u in response.json()["items"] if u["is_active"])


async def test_new_organization_gets_the_configured_limits(
    limited: httpx.AsyncClient, small_org: Account
) -> None:
    """An org signed up on the limited app reports max_users=2 and max_teams=1."""
    org = await limited.get(small_org.org_url, headers=small_org.headers)
    assert org.status_code == 200
    assert org.json()["max_users"] == 2
    assert org.json()["max_teams"] == 1


async def test_third_active_user_is_refused(limited: httpx.AsyncClient, small_org: Account) -> None:
    """With the owner and one member active, creating a third user is 409 PLAN_LIMIT_REACHED."""
    assert (await create_user(limited, small_org)).status_code == 201
    assert_error(await create_user(limited, small_org), 409, "PLAN_LIMIT_REACHED")
    assert await active_user_count(limited, small_org) == 2


async def test_deactivating_a_user_frees_a_seat(
    limited: httpx.AsyncClient, small_org: Account
) -> None:
    """Only active users count: after a deactivation the next user fits again."""
    first = await create_user(limited, small_org)
    assert first.status_code == 201
    assert_error(await create_user(limited, small_org), 409, "PLAN_LIMIT_REACHED")
    deactivated = await limited.delete(
        f"{small_org.org_url}/users/{first.json()['id']}", headers=small_org.headers
    )
    assert deactivated.status_code == 200
    assert (await create_user(limited, small_org)).status_code == 201
    assert await active_user_count(limited, small_org) == 2


async def test_invitation_acceptance_respects_the_user_limit(
    limited: httpx.AsyncClient, small_org: Account
) -> None:
    """Accepting an invitation into a full organization is 409 PLAN_LIMIT_REACHED."""
    email = unique_email("invitee")
    invitation = await invite(limited, small_org, email)
    await add_member(limited, small_org, "member", login_too=False)
    join = {
        "invitation_token": invitation["token"],
        "email": email,
        "password": PASSWORD,
        "full_name": "Late Joiner",
    }
    refused = await limited.post("/api/v1/auth/register", json=join)
    assert_error(refused, 409, "PLAN_LIMIT_REACHED")
    login = await limited.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401
    assert await active_user_count(limited, small_org) == 2
    # The invitation was not used up by the refusal: with a free seat it works.
    users = await limited.get(f"{small_org.org_url}/users", headers=small_org.headers)
    other = next(u for u in users.json()["items"] if u["id"] != small_org.user_id)
    await limited.delete(f"{small_org.org_url}/users/{other['id']}", headers=small_org.headers)
    accepted = await limited.post("/api/v1/auth/register", json=join)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["organization"]["id"] == small_org.org_id


async def test_second_team_is_refused(limited: httpx.AsyncClient, small_org: Account) -> None:
    """With max_teams=1 a second team is 409 PLAN_LIMIT_REACHED; deleting one frees it."""
    team = await create_team(limited, small_org, "Only Team")
    second = await limited.post(
        f"{small_org.org_url}/teams", headers=small_org.headers, json={"name": "Second"}
    )
    assert_error(second, 409, "PLAN_LIMIT_REACHED")
    teams = await limited.get(f"{small_org.org_url}/teams", headers=small_org.headers)
    assert [t["name"] for t in teams.json()] == ["Only Team"]
    deleted = await limited.delete(
        f"{small_org.org_url}/teams/{team['id']}", headers=small_org.headers
    )
    assert deleted.status_code == 204
    assert (await create_team(limited, small_org, "Replacement"))["name"] == "Replacement"


@pytest.mark.parametrize(
    "body",
    [
        {"max_users": 1000},
        {"max_teams": 1000},
        {"name": "Bigger Co", "max_users": 1000},
        {"name": "Bigger Co", "max_teams": 50, "max_users": 50},
    ],
)
async def test_tenant_cannot_raise_its_own_limits(
    limited: httpx.AsyncClient, small_org: Account, body: dict[str, object]
) -> None:
    """PATCH of the organization with a limit field is 422 and changes nothing."""
    before = (await limited.get(small_org.org_url, headers=small_org.headers)).json()
    response = await limited.patch(small_org.org_url, headers=small_org.headers, json=body)
    assert_error(response, 422, "VALIDATION_ERROR")
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields & {"max_users", "max_teams"}
    after = (await limited.get(small_org.org_url, headers=small_org.headers)).json()
    assert after == before
    assert (after["max_users"], after["max_teams"]) == (2, 1)
    assert (await create_user(limited, small_org)).status_code == 201
    assert_error(await create_user(limited, small_org), 409, "PLAN_LIMIT_REACHED")

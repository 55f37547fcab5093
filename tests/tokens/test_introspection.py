"""RFC 7662 token introspection for service clients, and how those clients are made.

A service client authenticates with HTTP Basic (client id + secret, shown once). The
answer is ``{"active": false}`` for anything not currently valid *or* not visible to
the client: an organization-bound client learns nothing about other tenants' tokens.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from faultmaven_auth.config import Settings
from tests.conftest import Account, add_member, client_for, running_app, sign_up
from tests.tokens.conftest import run_cli

INTROSPECT = "/api/v1/auth/introspect"


@dataclass(frozen=True)
class ServiceClient:
    client_id: str
    client_secret: str

    @property
    def auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.client_id, self.client_secret)


async def create_service_client(client: httpx.AsyncClient, owner: Account) -> ServiceClient:
    response = await client.post(
        f"{owner.org_url}/service-clients", headers=owner.headers, json={"name": "billing-api"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["organization_id"] == owner.org_id
    return ServiceClient(body["client_id"], body["client_secret"])


async def introspect(
    client: httpx.AsyncClient, service: ServiceClient, token: str
) -> dict[str, Any]:
    response = await client.post(INTROSPECT, auth=service.auth, data={"token": token})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def service(client: httpx.AsyncClient, owner: Account) -> ServiceClient:
    return await create_service_client(client, owner)


async def test_service_client_secret_is_returned_once(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Creation returns a client id and secret; each client gets its own pair."""
    first = await create_service_client(client, owner)
    second = await create_service_client(client, owner)
    assert first.client_id
    assert first.client_secret
    assert first.client_id != second.client_id
    assert first.client_secret != second.client_secret


async def test_member_cannot_create_service_clients(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Creating a service client needs service_clients:manage (403 for a plain member)."""
    member = await add_member(client, owner, "member")
    response = await client.post(
        f"{owner.org_url}/service-clients", headers=member.headers, json={"name": "sneaky"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"


async def test_active_access_token_introspects_with_its_claims(
    client: httpx.AsyncClient, owner: Account, service: ServiceClient
) -> None:
    """A live access token (form body) is active, with sub, org_id, exp and token_type."""
    body = await introspect(client, service, owner.access_token)
    assert body["active"] is True
    assert body["token_type"] == "access_token"
    assert body["sub"] == owner.user_id
    assert body["org_id"] == owner.org_id
    assert body["client_id"] == service.client_id
    assert body["iss"] == "http://testserver"
    assert body["aud"] == "faultmaven"
    assert body["exp"] - body["iat"] == 900
    assert body["exp"] > time.time()
    assert body["jti"]


async def test_introspection_accepts_a_json_body(
    client: httpx.AsyncClient, owner: Account, service: ServiceClient
) -> None:
    """The token may also be sent as JSON {"token": ...}."""
    response = await client.post(INTROSPECT, auth=service.auth, json={"token": owner.access_token})
    assert response.status_code == 200
    assert response.json()["active"] is True
    assert response.json()["sub"] == owner.user_id


async def test_refresh_token_is_active_until_rotated(
    client: httpx.AsyncClient, owner: Account, service: ServiceClient
) -> None:
    """A refresh token introspects as refresh_token; once rotated it is inactive."""
    body = await introspect(client, service, owner.refresh_token)
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["sub"] == owner.user_id
    assert body["org_id"] == owner.org_id
    assert body["exp"] > time.time()

    rotated = await client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert rotated.status_code == 200
    assert await introspect(client, service, owner.refresh_token) == {"active": False}
    successor = await introspect(client, service, rotated.json()["refresh_token"])
    assert successor["active"] is True


async def test_logged_out_access_token_is_inactive(
    client: httpx.AsyncClient, owner: Account, service: ServiceClient
) -> None:
    """After logout, both tokens of the session introspect as inactive."""
    assert (await introspect(client, service, owner.access_token))["active"] is True
    logout = await client.post("/api/v1/auth/logout", headers=owner.headers)
    assert logout.status_code == 204
    assert await introspect(client, service, owner.access_token) == {"active": False}
    assert await introspect(client, service, owner.refresh_token) == {"active": False}


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "fmr_not-a-real-refresh-token", "x" * 5000])
async def test_garbage_token_is_inactive(
    client: httpx.AsyncClient, service: ServiceClient, token: str
) -> None:
    """Anything that is not a live token is just {"active": false}."""
    assert await introspect(client, service, token) == {"active": False}


async def test_deactivated_users_token_is_inactive(
    client: httpx.AsyncClient, owner: Account, service: ServiceClient
) -> None:
    """A still-unexpired token of a deactivated member is inactive."""
    member = await add_member(client, owner, "member")
    assert (await introspect(client, service, member.access_token))["active"] is True
    removed = await client.delete(f"{owner.org_url}/users/{member.user_id}", headers=owner.headers)
    assert removed.status_code == 200
    assert await introspect(client, service, member.access_token) == {"active": False}


@pytest.mark.parametrize(
    "auth",
    [
        None,
        ("sc_unknown", "fms_whatever"),
        "wrong secret",
        "bearer instead of basic",
    ],
    ids=["no auth", "unknown client", "wrong secret", "bearer scheme"],
)
async def test_unauthenticated_caller_gets_invalid_client(
    client: httpx.AsyncClient, owner: Account, service: ServiceClient, auth: Any
) -> None:
    """Without valid client credentials introspection answers 401 INVALID_CLIENT."""
    headers: dict[str, str] = {}
    basic: httpx.BasicAuth | None = None
    if auth == "wrong secret":
        basic = httpx.BasicAuth(service.client_id, service.client_secret + "x")
    elif auth == "bearer instead of basic":
        headers = owner.headers
    elif auth is not None:
        basic = httpx.BasicAuth(*auth)
    response = await client.post(
        INTROSPECT, auth=basic, headers=headers, data={"token": owner.access_token}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_CLIENT"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


async def test_org_bound_client_sees_nothing_of_other_organizations(
    client: httpx.AsyncClient, owner: Account, service: ServiceClient
) -> None:
    """Another organization's live access and refresh tokens are inactive for this client."""
    stranger = await sign_up(client, org_name="Elsewhere")
    assert await introspect(client, service, stranger.access_token) == {"active": False}
    assert await introspect(client, service, stranger.refresh_token) == {"active": False}
    # The stranger's own client sees the same token as active.
    theirs = await create_service_client(client, stranger)
    assert (await introspect(client, theirs, stranger.access_token))["active"] is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {}},
        {"data": {"token": ""}},
        {"json": {}},
        {"json": {"token": 42}},
        {"content": b"token=abc", "headers": {"Content-Type": "text/plain"}},
    ],
    ids=["empty form", "empty token", "empty json", "non-string token", "wrong content type"],
)
async def test_missing_token_parameter_is_a_bad_request(
    client: httpx.AsyncClient, service: ServiceClient, kwargs: dict[str, Any]
) -> None:
    """An authenticated call without a usable token parameter gets 400 INVALID_REQUEST."""
    response = await client.post(INTROSPECT, auth=service.auth, **kwargs)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_REQUEST"


async def test_cli_creates_a_platform_client_whose_secret_is_stored_hashed(
    private_sqlite: Settings,
) -> None:
    """`service-clients create` prints a working id + secret; the DB holds only a hash."""
    output = await run_cli(private_sqlite, "service-clients", "create", "--name", "gateway")
    client_id, secret = output["client_id"], output["client_secret"]
    assert client_id
    assert secret
    assert output["organization_id"] is None

    db_path = private_sqlite.sqlite_path()
    assert db_path is not None
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT * FROM service_clients WHERE client_id = ?", (client_id,)
        ).fetchone()
    assert row is not None
    stored = " ".join(str(value) for value in dict(row).values())
    assert secret not in stored
    assert row["secret_hash"] != secret

    # The printed secret is the real one: a platform client sees every organization.
    async with running_app(private_sqlite) as app, client_for(app) as client:
        first, second = await sign_up(client, "One"), await sign_up(client, "Two")
        gateway = ServiceClient(client_id, secret)
        for account in (first, second):
            body = await introspect(client, gateway, account.access_token)
            assert body["active"] is True
            assert body["org_id"] == account.org_id

"""Wrong methods answer 405 naming every allowed method; /api/ answers are never cached.

Both are checked over every path and operation of the OpenAPI document, so a new
route is covered without touching these tests.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import SYSTEM_ROLE_IDS, Account
from tests.test_errors import assert_error

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MEMBER_ROLE = SYSTEM_ROLE_IDS["member"]


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/openapi.json")).json()
    return body


def concrete(path: str, org_id: str | None = None) -> str:
    """The template with its ids filled in (the caller's organization when given)."""
    path = path.replace("{org_id}", org_id or str(uuid.uuid4()))
    return re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)


async def test_wrong_method_is_405_naming_every_allowed_method(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    """On every documented path, every other method is a 405 whose Allow lists them all."""
    checked = 0
    for path, item in document["paths"].items():
        documented = {method.upper() for method in item}
        expected = [m for m in METHODS if m in documented] + ["OPTIONS"]
        url = concrete(path)
        for method in METHODS:
            if method in documented:
                continue
            response = await client.request(method, url)
            assert_error(response, 405, "METHOD_NOT_ALLOWED")
            assert response.headers["allow"] == ", ".join(expected), (method, path)
            checked += 1
    assert checked > 60


async def test_patch_on_an_organization_names_get_patch_delete(
    client: httpx.AsyncClient,
) -> None:
    """The example from the issue: PUT on an organization lists GET, PATCH and DELETE."""
    response = await client.put(f"/api/v1/organizations/{uuid.uuid4()}", json={})
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET, PATCH, DELETE, OPTIONS"


async def test_options_answers_204_with_allow(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    """OPTIONS on any documented path is a 204 with the same Allow as a 405."""
    for path, item in document["paths"].items():
        response = await client.options(concrete(path))
        assert response.status_code == 204, path
        allowed = [m for m in METHODS if m.lower() in item] + ["OPTIONS"]
        assert response.headers["allow"] == ", ".join(allowed)
        assert response.content == b""


async def test_unknown_path_is_still_404(client: httpx.AsyncClient) -> None:
    """A path no route matches is a 404 for any method, OPTIONS included."""
    for method in ("GET", "DELETE", "OPTIONS"):
        response = await client.request(method, "/api/v1/no-such-thing")
        assert_error(response, 404, "NOT_FOUND")


def assert_no_store(response: httpx.Response) -> None:
    assert response.headers.get("cache-control") == "no-store", response.request.url
    assert response.headers.get("pragma") == "no-cache", response.request.url


async def test_every_api_operation_is_no_store(
    client: httpx.AsyncClient, document: dict[str, Any], owner: Account
) -> None:
    """Whatever the outcome (success, 4xx), every /api/ answer carries no-store."""
    checked = 0
    for path, item in document["paths"].items():
        for method in item:
            # Another organization's id: nothing is changed, every status path runs.
            url = concrete(path)
            body = None if method in ("get", "delete") else {}
            response = await client.request(method, url, headers=owner.headers, json=body)
            assert response.status_code < 500, (method, path, response.text)
            if path.startswith("/api/"):
                assert_no_store(response)
                checked += 1
            else:
                assert "no-store" not in response.headers.get("cache-control", "")
    assert checked >= 30


async def test_token_and_secret_bearing_answers_are_no_store(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Sign-up, login, refresh, invitation, service client and introspection successes."""
    response = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": owner.password}
    )
    assert response.status_code == 200
    assert_no_store(response)
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": response.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert_no_store(refreshed)
    invitation = await client.post(
        f"{owner.org_url}/invitations",
        headers=owner.headers,
        json={"email": f"invitee-{uuid.uuid4().hex[:8]}@example.com", "role_id": MEMBER_ROLE},
    )
    assert invitation.status_code == 201, invitation.text
    assert_no_store(invitation)
    created = await client.post(
        f"{owner.org_url}/service-clients", headers=owner.headers, json={"name": "billing"}
    )
    assert created.status_code == 201, created.text
    assert_no_store(created)
    secret = created.json()
    introspection = await client.post(
        "/api/v1/auth/introspect",
        auth=(secret["client_id"], secret["client_secret"]),
        data={"token": owner.access_token},
    )
    assert introspection.status_code == 200
    assert introspection.json()["active"] is True
    assert_no_store(introspection)


async def test_discovery_documents_stay_cacheable(client: httpx.AsyncClient) -> None:
    """JWKS and issuer metadata are public and meant to be cached: no no-store there."""
    for path in ("/.well-known/jwks.json", "/.well-known/openid-configuration", "/health"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "cache-control" not in response.headers

"""Errors are JSON with a stable code and the request id, whatever went wrong.

Malformed bodies, wrong types, unknown fields, oversized bodies, bad ids, unknown
routes, wrong methods and crashes all answer ``{"error": {"code", "message",
"request_id"}}`` with the right status; nothing echoes a submitted secret or a traceback.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from faultmaven_auth.app import create_app
from faultmaven_auth.config import Settings
from tests.conftest import PASSWORD, Account, client_for

LEAKY_SECRET = "Leaky-Secret-Value-77"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is a JSON error with this status and code, tagged with its request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


async def test_malformed_json_is_a_400_invalid_json(client: httpx.AsyncClient) -> None:
    """A body that is not JSON answers 400 INVALID_JSON."""
    response = await client.post(
        "/api/v1/auth/login",
        content=b'{"email": "a@example.com", "password": ',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "INVALID_JSON")


@pytest.mark.parametrize(
    "password", [[LEAKY_SECRET], {"value": LEAKY_SECRET}, 770077007700, LEAKY_SECRET * 60]
)
async def test_invalid_password_is_named_but_never_echoed(
    client: httpx.AsyncClient, password: object
) -> None:
    """A password of the wrong type or size is a 422 naming the field, without its value."""
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "organization_name": "Typo Corp",
            "email": "typo@example.com",
            "password": password,
            "full_name": "Ty Po",
        },
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert [d["field"] for d in error["details"]] == ["password"]
    assert LEAKY_SECRET not in response.text
    assert "770077007700" not in response.text
    assert all("input" not in detail for detail in error["details"])


async def test_wrong_types_name_every_bad_field(client: httpx.AsyncClient) -> None:
    """Several wrongly typed fields are all listed in details, each with a reason."""
    response = await client.post("/api/v1/auth/login", json={"email": 42, "password": None})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert sorted(d["field"] for d in error["details"]) == ["email", "password"]
    assert all(d["type"] and d["message"] for d in error["details"])


async def test_missing_fields_are_named(client: httpx.AsyncClient) -> None:
    """An empty object is a 422 that names each required field."""
    response = await client.post("/api/v1/auth/login", json={})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert {(d["field"], d["type"]) for d in error["details"]} == {
        ("email", "missing"),
        ("password", "missing"),
    }


async def test_unknown_fields_are_rejected(client: httpx.AsyncClient) -> None:
    """A field the API does not know is a 422, not silently ignored."""
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": "a@example.com", "password": PASSWORD, "is_admin": True},
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert [(d["field"], d["type"]) for d in error["details"]] == [("is_admin", "extra_forbidden")]


async def test_declared_oversized_body_is_a_413(
    client: httpx.AsyncClient, backend_settings: Settings
) -> None:
    """A Content-Length above max_request_body_bytes answers 413 PAYLOAD_TOO_LARGE."""
    body = b"x" * (backend_settings.max_request_body_bytes + 1)
    response = await client.post(
        "/api/v1/auth/login", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_streamed_oversized_body_is_a_413(app: FastAPI, backend_settings: Settings) -> None:
    """A chunked body with no Content-Length is cut off at the limit with a 413."""
    chunk = b"x" * 65536
    chunks_needed = backend_settings.max_request_body_bytes // len(chunk) + 2

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(chunks_needed):
            yield chunk

    # A plain client: the shared one's hooks read each request body, and a stream has none.
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
        response = await raw.post(
            "/api/v1/auth/login", content=stream(), headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_body_just_under_the_limit_is_processed(
    client: httpx.AsyncClient, backend_settings: Settings
) -> None:
    """A body at the limit reaches the route (here: a 422 for an overlong field, not a 413)."""
    overhead = len(b'{"email": "a@example.com", "password": ""}')
    filler = "p" * (backend_settings.max_request_body_bytes - overhead)
    response = await client.post(
        "/api/v1/auth/login", json={"email": "a@example.com", "password": filler}
    )
    assert len(response.request.content) <= backend_settings.max_request_body_bytes
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert [d["field"] for d in error["details"]] == ["password"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/organizations/not-a-uuid",
        "/api/v1/organizations/not-a-uuid/users",
        "/api/v1/organizations/{org_id}/users/12345",
        "/api/v1/organizations/{org_id}/teams/not-a-uuid",
        "/api/v1/organizations/{org_id}/roles/%00",
    ],
)
async def test_malformed_ids_are_a_422_never_a_500(
    client: httpx.AsyncClient, owner: Account, path: str
) -> None:
    """An id that is not a UUID answers 422 VALIDATION_ERROR naming the path parameter."""
    response = await client.get(path.format(org_id=owner.org_id), headers=owner.headers)
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert len(error["details"]) == 1
    assert error["details"][0]["field"].startswith("path.")


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    """A path no route matches answers 404 NOT_FOUND as JSON."""
    response = await client.get("/api/v1/does-not-exist")
    assert_error(response, 404, "NOT_FOUND")


async def test_wrong_method_is_a_405(client: httpx.AsyncClient) -> None:
    """A known path with an unsupported method answers 405 METHOD_NOT_ALLOWED and Allow."""
    response = await client.delete("/api/v1/auth/login")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["allow"]


async def test_every_error_carries_the_request_id_it_was_sent_with(
    client: httpx.AsyncClient,
) -> None:
    """A caller's safe X-Request-ID comes back in the header and in the error body."""
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v1/auth/login", {"content": b"{", "status": 400}),
        ("POST", "/api/v1/auth/login", {"json": {}, "status": 422}),
        ("GET", "/api/v1/auth/me", {"status": 401}),
        ("GET", "/nowhere", {"status": 404}),
        ("PUT", "/api/v1/auth/login", {"status": 405}),
        ("POST", "/api/v1/auth/login", {"content": b"x" * (2 << 20), "status": 413}),
    ]
    for i, (method, url, options) in enumerate(requests):
        request_id = f"client-trace.{i}_ABC-def"
        status = options.pop("status")
        headers = {"X-Request-ID": request_id, "Content-Type": "application/json"}
        response = await client.request(method, url, headers=headers, **options)
        assert response.status_code == status, (method, url, response.text)
        assert response.headers["x-request-id"] == request_id
        assert response.json()["error"]["request_id"] == request_id


@pytest.mark.parametrize("incoming", ["abc-123", "A.b_C-9", "r" * 128])
async def test_safe_incoming_request_id_is_kept(client: httpx.AsyncClient, incoming: str) -> None:
    """A short id of letters, digits, dot, dash and underscore is echoed unchanged."""
    response = await client.get("/health", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming


@pytest.mark.parametrize(
    "incoming", ["has spaces in it", "r" * 129, "semi;colon", "new\\nline", 'quote"d', "ünï"]
)
async def test_unsafe_incoming_request_id_is_replaced_by_a_uuid4(
    client: httpx.AsyncClient, incoming: str
) -> None:
    """Anything else is replaced by a fresh UUID4, in the header and in error bodies."""
    response = await client.get("/nowhere", headers={"X-Request-ID": incoming.encode()})
    request_id = response.headers["x-request-id"]
    assert request_id != incoming
    assert str(uuid.UUID(request_id)) == request_id
    assert uuid.UUID(request_id).version == 4
    assert response.json()["error"]["request_id"] == request_id


async def test_without_incoming_id_each_response_gets_a_fresh_uuid4(
    client: httpx.AsyncClient,
) -> None:
    """Requests without X-Request-ID get distinct UUID4 ids."""
    ids = {(await client.get("/health")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(uuid.UUID(i).version == 4 for i in ids)


async def test_unexpected_exception_is_a_generic_500_and_is_logged(
    backend_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash in a route answers 500 INTERNAL_ERROR with no detail; the traceback is logged."""

    async def explode() -> None:
        raise RuntimeError("kaboom: internal detail /etc/secret-path")

    app = create_app(backend_settings, configure_logs=False)
    app.add_api_route("/test-only/explode", explode, methods=["GET"])
    caplog.set_level(logging.ERROR)
    async with app.router.lifespan_context(app), client_for(app) as client:
        response = await client.get("/test-only/explode")
        still_serving = await client.get("/health")

    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert error["message"] == "Internal server error"
    assert set(response.json()) == {"error"}
    assert set(error) == {"code", "message", "request_id"}
    assert "kaboom" not in response.text
    assert "Traceback" not in response.text
    assert "secret-path" not in response.text
    assert still_serving.status_code == 200

    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert "kaboom" in str(logged[0].exc_info[1])  # type: ignore[index]
    assert logged[0].exc_info[2] is not None  # type: ignore[index]

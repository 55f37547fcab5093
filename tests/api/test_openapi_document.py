"""The OpenAPI document tells clients every error they can get, and how to authenticate.

The statuses are derived from each route (body, parameters, security, permission
checks, storage), so these tests walk every operation rather than a list of routes.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

ERROR_REF = "#/components/schemas/ErrorResponse"
BODY_METHODS = {"post", "put", "patch", "delete"}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def error_statuses(operation: dict[str, Any]) -> set[int]:
    return {int(status) for status in operation["responses"] if int(status) >= 400}


async def test_every_error_response_uses_the_error_schema(document: dict[str, Any]) -> None:
    """Every 4xx/5xx of every operation is our {"error": {...}} body (except /ready's 503)."""
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or path == "/ready":
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, (method, path, status)
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"code", "message", "request_id"}


async def test_fastapi_validation_error_shape_is_gone(document: dict[str, Any]) -> None:
    """422s are documented in our shape; FastAPI's HTTPValidationError is not in the document."""
    text = json.dumps(document)
    assert "HTTPValidationError" not in text
    assert "ValidationError" not in document["components"]["schemas"]


async def test_operations_with_a_body_document_400_413_422(document: dict[str, Any]) -> None:
    """A body can be malformed JSON (400), too large (413) or invalid (422)."""
    with_body = [op for _, _, op in operations(document) if "requestBody" in op]
    assert len(with_body) >= 15
    for operation in with_body:
        assert {400, 413, 422} <= error_statuses(operation), operation["operationId"]


async def test_bearer_operations_document_401(document: dict[str, Any]) -> None:
    """Every operation that takes a bearer token says so, and documents 401."""
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["serviceClientBasic"]["scheme"] == "basic"
    assert schemes["metricsBearer"]["scheme"] == "bearer"
    for method, path, operation in operations(document):
        tenant_or_session = path.startswith("/api/v1/organizations/") or path in (
            "/api/v1/auth/me",
            "/api/v1/auth/logout",
        )
        if tenant_or_session:
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
        if "security" in operation:
            assert 401 in error_statuses(operation), (method, path)


async def test_introspection_and_metrics_name_their_schemes(document: dict[str, Any]) -> None:
    """Introspection takes HTTP Basic; /metrics takes an optional bearer token."""
    introspect = document["paths"]["/api/v1/auth/introspect"]["post"]
    assert introspect["security"] == [{"serviceClientBasic": []}]
    assert set(introspect["requestBody"]["content"]) == {
        "application/x-www-form-urlencoded",
        "application/json",
    }
    metrics = document["paths"]["/metrics"]["get"]
    assert {} in metrics["security"]
    assert {"metricsBearer": []} in metrics["security"]
    for public in ("/health", "/.well-known/jwks.json", "/api/v1/auth/login"):
        assert "security" not in next(iter(document["paths"][public].values()))


async def test_tenant_operations_document_403_404_and_503(document: dict[str, Any]) -> None:
    """Organization routes can refuse (403), hide another tenant (404) or lose the DB (503)."""
    tenant = [
        (method, path, op)
        for method, path, op in operations(document)
        if path.startswith("/api/v1/organizations/{org_id}")
    ]
    assert len(tenant) >= 25
    for method, path, operation in tenant:
        assert {401, 403, 404, 422, 503} <= error_statuses(operation), (method, path)


async def test_conflicts_are_documented_where_they_happen(document: dict[str, Any]) -> None:
    """Routes that can conflict (email taken, last owner, names taken) document 409."""
    paths = document["paths"]
    org = "/api/v1/organizations/{org_id}"
    for method, path in [
        ("post", "/api/v1/auth/register"),
        ("post", f"{org}/users"),
        ("delete", f"{org}/users/{{user_id}}"),
        ("put", f"{org}/users/{{user_id}}/roles"),
        ("post", f"{org}/roles"),
        ("post", f"{org}/teams"),
        ("post", f"{org}/invitations"),
    ]:
        assert 409 in error_statuses(paths[path][method]), (method, path)
    assert 409 not in error_statuses(paths[f"{org}/teams"]["get"])
    assert 401 in error_statuses(paths["/api/v1/auth/login"]["post"])


async def test_no_undocumented_success_content_types(document: dict[str, Any]) -> None:
    """The NDJSON export and /metrics document the content types they really send."""
    export = document["paths"]["/api/v1/organizations/{org_id}/audit-events/export"]["get"]
    assert set(export["responses"]["200"]["content"]) == {"application/x-ndjson"}
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain", "application/openmetrics-text"}

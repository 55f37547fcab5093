"""The OpenAPI document lists every error an operation can answer, in our error shape.

FastAPI documents the success response and a 422 in its own validation-error shape.
``install_openapi`` post-processes the generated document so that each operation also
lists the errors it can really return, all as ``#/components/schemas/ErrorResponse``
(``{"error": {"code", "message", "request_id"}}``). The statuses are derived from the
route, never from a per-route table, so new routes get them automatically:

    what the route has                                  statuses
    a request body (model or ``openapi_extra``)         400 (INVALID_JSON), 422
    POST, PUT, PATCH or DELETE                          413 (the body size limit)
    path parameters                                     404, 422
    query, header or cookie parameters                  400 (e.g. INVALID_CURSOR), 422
    a security scheme anywhere in its dependencies      401
    a dependency marked ``@declares_errors(...)``        those statuses

``require(permission)`` is marked 403 + 404 (another tenant's id is a 404), and
``get_runtime`` 503 (the database or the store is down). What no rule can know (a
409 conflict, a 401 from a login) the route declares with
``responses=error_responses(409)``. A rate limiter becomes documented by marking its
dependency ``@declares_errors(429)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field

from faultmaven_auth.api.security import DeclaredScheme

F = TypeVar("F", bound=Callable[..., Any])

_DECLARED = "__faultmaven_error_statuses__"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ERROR_REF = "#/components/schemas/ErrorResponse"
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


class ErrorDetail(BaseModel):
    """One invalid field of a 422 (the rejected value is never echoed)."""

    field: str
    type: str
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. EMAIL_TAKEN")
    message: str = Field(description="Human-readable explanation")
    request_id: str = Field(description="The X-Request-ID of this request")
    details: list[ErrorDetail] | None = Field(
        default=None, description="Per-field problems (validation errors only)"
    )


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer of the service."""

    error: ErrorBody


def declares_errors(*statuses: int) -> Callable[[F], F]:
    """Mark a dependency (or endpoint) as able to answer these error statuses."""

    def mark(function: F) -> F:
        existing: frozenset[int] = getattr(function, _DECLARED, frozenset())
        setattr(function, _DECLARED, existing | frozenset(statuses))
        return function

    return mark


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: these statuses answer with our error body."""
    return {
        status: {"model": ErrorResponse, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` by FastAPI's document plus our errors and schemes."""
    generate = app.openapi
    processed: list[int] = []

    def openapi() -> dict[str, Any]:
        # FastAPI caches the document (and rebuilds it when routes change); the
        # post-processing runs once per document it builds.
        schema = generate()
        if not processed or processed[-1] != id(schema):
            document_errors(app, schema)
            processed[:] = [id(schema)]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook


def _dependants(root: Dependant) -> Iterator[Dependant]:
    pending = [root]
    while pending:
        dependant = pending.pop()
        yield dependant
        pending.extend(dependant.dependencies)


def _error_schema() -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": _ERROR_REF}}}}


def _add_components(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    generated = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in generated.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault("ErrorResponse", generated)


def route_error_statuses(dependant: Dependant, method: str, has_body: bool) -> set[int]:
    """The error statuses a route can answer, from its shape and its dependencies."""
    statuses: set[int] = set()
    if has_body:
        statuses |= {400, 422}
    if method in _BODY_METHODS:
        statuses.add(413)
    for each in _dependants(dependant):
        if each.path_params:
            statuses |= {404, 422}
        if each.query_params or each.header_params or each.cookie_params:
            statuses |= {400, 422}
        if isinstance(each.call, DeclaredScheme):
            statuses.add(401)
        statuses |= getattr(each.call, _DECLARED, frozenset())
    return statuses


def document_errors(app: FastAPI, schema: dict[str, Any]) -> None:
    """Add every operation's error responses and optional security to ``schema``."""
    _add_components(schema)
    paths: dict[str, dict[str, Any]] = schema.get("paths", {})
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if not isinstance(dependant, Dependant) or not route.methods or not route.path_format:
            continue
        for method in route.methods:
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            has_body = getattr(route, "body_field", None) is not None or (
                "requestBody" in operation
            )
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for status in sorted(route_error_statuses(dependant, method, has_body)):
                if str(status) not in responses:
                    responses[str(status)] = {
                        "description": HTTPStatus(status).phrase,
                        **_error_schema(),
                    }
            if any(
                isinstance(each.call, DeclaredScheme) and each.call.optional
                for each in _dependants(dependant)
            ):
                security = operation.setdefault("security", [])
                if {} not in security:
                    security.append({})
    _drop_unused_validation_schemas(schema)


def _drop_unused_validation_schemas(schema: dict[str, Any]) -> None:
    """FastAPI's validation-error shape is never sent: point every use at ours."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if "HTTPValidationError" in json.dumps(response):
                    operation["responses"][status] = {
                        "description": response.get("description", "Validation Error"),
                        **_error_schema(),
                    }
    components = schema.get("components", {}).get("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        components.pop(name, None)

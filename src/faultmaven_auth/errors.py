"""One error base for the whole service, and the handlers that render it.

Domain code raises ``AppError`` subclasses and never imports HTTP types; the handlers
installed by ``install_error_handlers`` turn them (and framework errors) into
``{"error": {"code", "message", "request_id"}}`` with the status the class carries.

    AppError                      status  code
    ├── BadRequest                400     BAD_REQUEST / INVALID_JSON
    ├── ValidationFailed          422     VALIDATION_ERROR / WEAK_PASSWORD
    ├── Unauthorized              401     UNAUTHORIZED
    │   ├── InvalidCredentials    401     INVALID_CREDENTIALS
    │   └── InvalidToken          401     INVALID_TOKEN
    ├── Forbidden                 403     FORBIDDEN
    │   └── PermissionDenied      403     PERMISSION_DENIED
    │       └── PrivilegeEscalationDenied   (also a security event)
    ├── NotFound                  404     NOT_FOUND (and <THING>_NOT_FOUND)
    ├── Conflict                  409     CONFLICT (and specific codes)
    │   └── LastOwnerRemoval      409     LAST_OWNER (also a security event)
    ├── PayloadTooLarge           413     PAYLOAD_TOO_LARGE
    ├── TooManyRequests           429     RATE_LIMITED (with Retry-After)
    │   └── AccountLocked         429     ACCOUNT_LOCKED (with Retry-After)
    └── ServiceUnavailable        503     SERVICE_UNAVAILABLE
        ├── Overloaded            503     OVERLOADED / LOGIN_CAPACITY_EXCEEDED
        │                                 (with Retry-After)
        └── DependencyAtCapacity  503     STORE_UNAVAILABLE / DATABASE_UNAVAILABLE
                                          (with Retry-After; storage/kv.py, storage/db.py)

An error with a ``refusal_reason`` is a refusal at capacity: its handler marks the
request (``REFUSAL_STATE_KEY`` in the ASGI scope's state) and the admission middleware
counts and logs it (``observability/admission.py``), once per interval, not per request.

Third-party exceptions are translated here, at the boundary:

    sqlalchemy OperationalError, InterfaceError,
      ConnectionError, TimeoutError        503     DATABASE_UNAVAILABLE
    any DBAPIError whose driver error is a
      data exception (SQLSTATE class 22:
      value too long, NUL or bad encoding,
      out of range; asyncpg's client-side
      conversion errors), DataError,
      UnicodeEncodeError (lone surrogate)  422     INVALID_DATA
    sqlalchemy IntegrityError not handled
      by a service (a lost race)           409     CONFLICT

asyncpg's data exceptions reach us as a plain ``DBAPIError`` (SQLAlchemy maps only
integrity and syntax errors to their own classes), hence the SQLSTATE test. Their text
is never logged or returned: a driver message can quote the value or the row ("invalid
input for query argument $1: 'ann@example.com'", "Key (email)=(...) already exists");
the log line names the error type and SQLSTATE only.

Other database errors, and every unexpected exception, go on to the request
middleware: it logs them (scrubbed like every line) and answers 500 ``INTERNAL_ERROR``;
a traceback never reaches the client.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from faultmaven_auth.observability.context import current_request_id
from faultmaven_auth.security.access import report_refused_access
from faultmaven_auth.security.events import SecurityEventType

logger = logging.getLogger("faultmaven_auth.errors")


class AppError(Exception):
    status_code = 500
    code = "INTERNAL_ERROR"
    message = "Internal server error"
    # When set, rendering this error emits that security event (security/access.py).
    security_event: str | None = None
    security_reason = "refused"
    # When set, the request was refused at capacity for this reason (counted, not logged
    # per request): a value of observability.metrics.REFUSAL_REASONS.
    refusal_reason: str | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.details = details
        self.headers = headers
        super().__init__(self.message)


class BadRequest(AppError):
    status_code = 400
    code = "BAD_REQUEST"
    message = "Bad request"


class ValidationFailed(AppError):
    status_code = 422
    code = "VALIDATION_ERROR"
    message = "The request is not valid"


class Unauthorized(AppError):
    status_code = 401
    code = "UNAUTHORIZED"
    message = "Authentication required"

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class InvalidCredentials(Unauthorized):
    code = "INVALID_CREDENTIALS"
    message = "Invalid email or password"


class InvalidToken(Unauthorized):
    code = "INVALID_TOKEN"
    message = "The token is invalid, expired or revoked"


class Forbidden(AppError):
    status_code = 403
    code = "FORBIDDEN"
    message = "Forbidden"


class PermissionDenied(Forbidden):
    code = "PERMISSION_DENIED"
    message = "You do not have permission to do this"


class PrivilegeEscalationDenied(PermissionDenied):
    """An attempt to grant, revoke or act beyond one's own permissions."""

    security_event = "privilege_escalation_attempt"
    security_reason = "beyond_own_permissions"


class NotFound(AppError):
    status_code = 404
    code = "NOT_FOUND"
    message = "Not found"


class Conflict(AppError):
    status_code = 409
    code = "CONFLICT"
    message = "Conflict"


class LastOwnerRemoval(Conflict):
    """Demoting or deactivating the organization's last active owner."""

    code = "LAST_OWNER"
    message = "The organization must keep at least one active owner"
    security_event = "privilege_escalation_attempt"
    security_reason = "last_owner"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    message = "The request body is too large"


class TooManyRequests(AppError):
    """A limit was reached; ``Retry-After`` says in how many seconds to try again."""

    status_code = 429
    code = "RATE_LIMITED"
    message = "Too many requests; try again later"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, headers={"Retry-After": str(self.retry_after)})


class AccountLocked(TooManyRequests):
    code = "ACCOUNT_LOCKED"
    message = "Too many failed login attempts; the account is temporarily locked"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"
    message = "Service unavailable"


class Overloaded(ServiceUnavailable):
    """Refused early because the work would wait too long; retry after ``retry_after``.

    Raised before any state changes, so a retry is always safe. Subclasses name what
    was full (the worker's request slots, the password-hashing queue).
    """

    code = "OVERLOADED"
    message = "The service is at capacity; try again shortly"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, headers={"Retry-After": str(self.retry_after)})


class LoginCapacityExceeded(Overloaded):
    code = "LOGIN_CAPACITY_EXCEEDED"
    message = "Too many logins are being checked right now; try again shortly"


class DependencyAtCapacity(ServiceUnavailable):
    """A pool stayed exhausted past its short wait, or the dependency refused a connection.

    Unlike ``Overloaded`` this can happen mid-request, after a write, so the code names
    the dependency (as for an outage) and a retry is as safe as the endpoint makes it.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


REFUSAL_STATE_KEY = "refusal_reason"


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": current_request_id(),
    }
    if details:
        error["details"] = details
    return {"error": error}


_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)  # noqa: S101 - registered for AppError only
    if exc.security_event is not None:
        report_refused_access(
            request,
            SecurityEventType(exc.security_event),
            reason=exc.security_reason,
            detail=exc.message,
        )
    if exc.refusal_reason is not None:
        request.scope.setdefault("state", {})[REFUSAL_STATE_KEY] = exc.refusal_reason
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    if exc.status_code == 404:
        message = "Not found"
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


# Tags of request bodies that are one of several shapes (a tagged union, such as an SSO
# provider's type): pydantic puts the tag in each error's location, but the client
# sent no such field, so it is left out of ``field``.
BODY_SHAPE_TAGS: set[str] = set()


def _field(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts[:1] == ["body"]:
        parts = parts[1:]
        if parts and parts[0] in BODY_SHAPE_TAGS:
            parts = parts[1:]
    return ".".join(str(part) for part in parts)


def _describe_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The rejected input is deliberately left out: it may be a password or a token.
    return [
        {
            "field": _field(tuple(err.get("loc", ()))),
            "type": err.get("type", "invalid"),
            "message": err.get("msg", "invalid"),
        }
        for err in exc.errors()
    ]


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    details = _describe_validation_errors(exc)
    if any(d["type"] == "json_invalid" for d in details):
        return JSONResponse(
            error_body("INVALID_JSON", "The request body is not valid JSON"), status_code=400
        )
    return JSONResponse(
        error_body("VALIDATION_ERROR", "The request is not valid", details), status_code=422
    )


async def _dependency_down(_: Request, exc: Exception) -> JSONResponse:
    # The database driver's connection failures (asyncpg raises plain OSErrors) mean a
    # dependency is down: 503 tells clients and load balancers to retry elsewhere.
    logger.error("Database unavailable", extra={"reason": type(exc).__name__})
    return JSONResponse(
        error_body("DATABASE_UNAVAILABLE", "The database is unavailable"), status_code=503
    )


def _driver_errors(exc: BaseException) -> list[BaseException]:
    """The exception, the DBAPI error it wraps, and their causes (the driver's own)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return chain


def _sqlstate(exc: BaseException) -> str | None:
    for error in _driver_errors(exc):
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def is_data_error(exc: BaseException) -> bool:
    """A value the database (or its driver) cannot store or compare: the request's fault."""
    if isinstance(exc, DataError | UnicodeEncodeError):
        return True
    state = _sqlstate(exc)
    if state is not None and state.startswith("22"):  # SQL standard: data exception
        return True
    return any(isinstance(e, UnicodeEncodeError) for e in _driver_errors(exc))


def _driver_error_fields(exc: BaseException) -> dict[str, Any]:
    """What may be logged about a driver error: its type and SQLSTATE, never its text."""
    chain = _driver_errors(exc)
    fields: dict[str, Any] = {"reason": type(chain[-1]).__name__}
    state = _sqlstate(exc)
    if state is not None:
        fields["sqlstate"] = state
    return fields


async def _database_error(_: Request, exc: Exception) -> JSONResponse:
    # Input validation should have refused the value first; when it did not (a value
    # too long for its column, text the database cannot encode), it is still the
    # request's data at fault: a 4xx the client can act on, never a 500.
    if not is_data_error(exc):
        raise exc
    logger.warning("The database refused a value", extra=_driver_error_fields(exc))
    return JSONResponse(
        error_body("INVALID_DATA", "The request contains a value that cannot be stored"),
        status_code=422,
    )


async def _integrity_conflict(_: Request, exc: Exception) -> JSONResponse:
    # Services check uniqueness and references first; reaching here means a concurrent
    # request won the race. The constraint text (with row values) stays out of the log.
    logger.warning("A database constraint refused a change", extra=_driver_error_fields(exc))
    return JSONResponse(
        error_body("CONFLICT", "The change conflicts with the current state; retry"),
        status_code=409,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    for data_error in (DBAPIError, UnicodeEncodeError):
        app.add_exception_handler(data_error, _database_error)
    app.add_exception_handler(IntegrityError, _integrity_conflict)
    for exc_type in (OperationalError, InterfaceError, ConnectionError, TimeoutError):
        app.add_exception_handler(exc_type, _dependency_down)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

"""Per-request context carried in contextvars, so every log line can read it.

The request middleware binds the request id once; the authentication dependency binds
the user and organization. Nothing has to pass them through call sites.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_fields: ContextVar[dict[str, Any] | None] = ContextVar("log_context", default=None)
# The caller's address and user agent: the access log and security events carry them,
# other lines do not (they would repeat them on every line of a request).
_client: ContextVar[tuple[str | None, str | None]] = ContextVar("client", default=(None, None))


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(request_id: str | None) -> None:
    _request_id.set(request_id)


def bind_client(ip: str | None, user_agent: str | None) -> None:
    _client.set((ip, user_agent))


def current_client() -> tuple[str | None, str | None]:
    """``(client_ip, user_agent)`` of the current request, when known."""
    return _client.get()


def bind_context(**fields: Any) -> None:
    """Add fields (user_id, organization_id, ...) to every later log line of this request."""
    merged = dict(_fields.get() or {})
    merged.update({k: v for k, v in fields.items() if v is not None})
    _fields.set(merged)


def context_fields() -> dict[str, Any]:
    fields = dict(_fields.get() or {})
    request_id = _request_id.get()
    if request_id:
        fields["request_id"] = request_id
    return fields


def clear_context() -> None:
    _request_id.set(None)
    _fields.set(None)
    _client.set((None, None))

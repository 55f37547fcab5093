"""Shared pydantic bases: unknown fields are an error, not silently dropped."""

from __future__ import annotations

import uuid
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from faultmaven_auth.errors import BadRequest

T = TypeVar("T")


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(ResponseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(last_id: uuid.UUID) -> str:
    return last_id.hex


def decode_cursor(cursor: str | None) -> uuid.UUID | None:
    """Cursors are opaque to clients; a malformed one is a 400, not a 500."""
    if cursor is None:
        return None
    try:
        return uuid.UUID(hex=cursor)
    except ValueError as exc:
        raise BadRequest("The cursor is not valid", code="INVALID_CURSOR") from exc

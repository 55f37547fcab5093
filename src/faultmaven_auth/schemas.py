"""Shared pydantic bases: unknown fields are an error, not silently dropped.

Every ``RequestModel`` field, including fields added later, goes through one check
before its own validation: a string anywhere in the value (nested ones and dict keys
too) with a control character or a lone surrogate is refused with 422 and the detail
type ``control_character`` or ``lone_surrogate`` (see ``hostile_input``). Fields marked
``FreeText`` may also contain tab, line feed and carriage return.

Surrounding whitespace is trimmed from string fields, except from secrets: a field
marked ``Verbatim`` (``Password``), or whose name contains "password" or "secret", is
used exactly as sent, so a password is never silently shortened.

``refuse_unsafe_parameters``, installed on the app, applies the same character rule to
the query and path parameters of every route.
"""

from __future__ import annotations

import typing
import uuid
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, EmailStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from faultmaven_auth.errors import BadRequest, ValidationFailed
from faultmaven_auth.hostile_input import MESSAGES, unsafe_text, unsafe_value

T = TypeVar("T")


class Verbatim:
    """Field marker: the string is used exactly as sent, never trimmed."""


class AllowsLineBreaks:
    """Field marker: free text that may contain tab, line feed and carriage return."""


Password = Annotated[str, Verbatim()]
FreeText = Annotated[str, AllowsLineBreaks()]

_SECRET_NAME_PARTS = ("password", "secret")


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_hostile_text_and_trim(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        rules = _field_rules(cls, name)
        reason = unsafe_value(value, allow_line_breaks=rules.allows_line_breaks)
        if reason is not None:
            raise PydanticCustomError(reason, MESSAGES[reason])
        if rules.trimmed and isinstance(value, str):
            return value.strip()
        return value


class _Rules(typing.NamedTuple):
    trimmed: bool
    allows_line_breaks: bool


@cache
def _field_rules(model: type[BaseModel], name: str) -> _Rules:
    field = model.model_fields.get(name)
    if field is None:
        return _Rules(trimmed=False, allows_line_breaks=False)
    markers = list(field.metadata)
    kinds = []
    # `FreeText | None` keeps its markers inside the union: look there too.
    for arg in _union_members(field.annotation):
        if typing.get_origin(arg) is Annotated:
            base, *extra = typing.get_args(arg)
            markers.extend(extra)
            kinds.append(base)
        elif arg is not NoneType:
            kinds.append(arg)
    verbatim = any(isinstance(m, Verbatim) for m in markers) or any(
        part in name.lower() for part in _SECRET_NAME_PARTS
    )
    # Only `str` and email fields were ever trimmed; a UUID with spaces stays invalid.
    is_text = bool(kinds) and all(k is str or k is EmailStr for k in kinds)
    return _Rules(
        trimmed=is_text and not verbatim,
        allows_line_breaks=any(isinstance(m, AllowsLineBreaks) for m in markers),
    )


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


async def refuse_unsafe_parameters(request: Request) -> None:
    """App-wide dependency: query and path parameters follow the same rule as bodies.

    Installed on the app, it covers every route, including ones added later, before
    any parameter reaches a query.
    """
    details = []
    for location, items in (
        ("query", request.query_params.multi_items()),
        ("path", list(request.path_params.items())),
    ):
        for name, value in items:
            # A hostile parameter name is not echoed back: the location alone names it.
            bad_name = unsafe_text(str(name))
            reason = bad_name or unsafe_text(str(value))
            if reason is not None:
                field = location if bad_name else f"{location}.{name}"
                details.append({"field": field, "type": reason, "message": MESSAGES[reason]})
    if details:
        raise ValidationFailed(details=details)


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

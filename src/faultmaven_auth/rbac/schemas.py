from __future__ import annotations

import uuid

from pydantic import Field, field_validator

from faultmaven_auth.rbac.permissions import SYSTEM_ROLE_PERMISSIONS, Permission
from faultmaven_auth.schemas import FreeText, RequestModel, ResponseModel

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$"


def _not_a_system_name(name: str) -> str:
    if name.lower() in SYSTEM_ROLE_PERMISSIONS:
        raise ValueError("this name is reserved for a system role")
    return name


class RoleCreate(RequestModel):
    name: str = Field(min_length=1, max_length=80, pattern=_NAME_PATTERN)
    description: FreeText = Field(default="", max_length=500)
    permissions: list[Permission] = Field(max_length=len(Permission))

    @field_validator("name")
    @classmethod
    def _reserved(cls, name: str) -> str:
        return _not_a_system_name(name)


class RoleUpdate(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=80, pattern=_NAME_PATTERN)
    description: FreeText | None = Field(default=None, max_length=500)
    permissions: list[Permission] | None = Field(default=None, max_length=len(Permission))

    @field_validator("name")
    @classmethod
    def _reserved(cls, name: str | None) -> str | None:
        return None if name is None else _not_a_system_name(name)


class RoleOut(ResponseModel):
    id: uuid.UUID
    name: str
    description: str
    is_system: bool
    permissions: list[str]


class UserRolesUpdate(RequestModel):
    role_ids: list[uuid.UUID] = Field(max_length=50)

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import EmailStr, Field, model_validator

from faultmaven_auth.organizations.schemas import OrganizationOut
from faultmaven_auth.schemas import RequestModel, ResponseModel

# Long enough for any policy-conforming password; bounds the work argon2 is given.
PasswordField = Field(min_length=1, max_length=1024)


class RegisterRequest(RequestModel):
    """New organization (``organization_name``) or joining one (``invitation_token``)."""

    email: EmailStr
    password: str = PasswordField
    full_name: str = Field(min_length=1, max_length=200)
    organization_name: str | None = Field(default=None, min_length=1, max_length=200)
    invitation_token: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _exactly_one_way_in(self) -> RegisterRequest:
        if (self.organization_name is None) == (self.invitation_token is None):
            raise ValueError("give exactly one of organization_name or invitation_token")
        return self


class UserCreate(RequestModel):
    email: EmailStr
    password: str = PasswordField
    full_name: str = Field(min_length=1, max_length=200)
    role_ids: list[uuid.UUID] = Field(default_factory=list, max_length=50)


class UserUpdate(RequestModel):
    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    password: str | None = Field(default=None, min_length=1, max_length=1024)


class PasswordChange(RequestModel):
    """A user's own password change: the current password proves it is them."""

    current_password: str = PasswordField
    new_password: str = PasswordField


class UserOut(ResponseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    full_name: str
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class RegisterResponse(ResponseModel):
    user: UserOut
    organization: OrganizationOut

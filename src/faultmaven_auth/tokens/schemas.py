from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from faultmaven_auth.schemas import RequestModel, ResponseModel


class LoginRequest(RequestModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    # An address may have an account in several organizations; this names the one meant.
    # Without it the service picks one (an active account in a live organization first,
    # then the oldest).
    organization_id: uuid.UUID | None = None


class RefreshRequest(RequestModel):
    # Generous bound: a wrong token (an access JWT, say) must get 401 INVALID_TOKEN, not 422.
    refresh_token: str = Field(min_length=1, max_length=8192)


class TokenResponse(ResponseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class MeResponse(ResponseModel):
    id: uuid.UUID
    email: str
    full_name: str
    organization_id: uuid.UUID
    team_ids: list[uuid.UUID]
    roles: list[str]
    permissions: list[str]


class ServiceClientCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)


class ServiceClientCreated(ResponseModel):
    id: uuid.UUID
    client_id: str
    # Shown once; only its hash is stored.
    client_secret: str
    name: str
    organization_id: uuid.UUID | None
    created_by_id: uuid.UUID | None
    created_at: datetime


class ServiceClientOut(ResponseModel):
    """A client as listed: never its secret, nor the secret's hash."""

    id: uuid.UUID
    client_id: str
    name: str
    organization_id: uuid.UUID | None
    created_by_id: uuid.UUID | None
    created_at: datetime
    revoked_at: datetime | None

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import EmailStr, Field

from faultmaven_auth.schemas import FreeText, RequestModel, ResponseModel


class OrganizationOut(ResponseModel):
    id: uuid.UUID
    name: str
    slug: str
    max_users: int
    max_teams: int
    created_at: datetime
    updated_at: datetime


class OrganizationUpdate(RequestModel):
    # Plan limits (max_users, max_teams) are deliberately absent: tenants cannot raise them.
    name: str = Field(min_length=1, max_length=200)


class InvitationCreate(RequestModel):
    email: EmailStr
    role_id: uuid.UUID


class InvitationOut(ResponseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    role_id: uuid.UUID
    # The member who issued it; the invitation is honoured only while they can still
    # grant its role.
    invited_by_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


class InvitationCreated(InvitationOut):
    # Shown once: only its hash is stored. Deliver it to the invitee out of band.
    token: str


class TeamCreate(RequestModel):
    name: str = Field(min_length=1, max_length=120)
    description: FreeText = Field(default="", max_length=1000)


class TeamUpdate(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: FreeText | None = Field(default=None, max_length=1000)


class TeamOut(ResponseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    description: str
    created_at: datetime
    updated_at: datetime


class TeamMemberAdd(RequestModel):
    user_id: uuid.UUID

"""Sign-up, and the members of an organization."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query, Request, status

from faultmaven_auth.api.openapi import error_responses
from faultmaven_auth.identity import service
from faultmaven_auth.identity.password_change import change_own_password
from faultmaven_auth.identity.schemas import (
    PasswordChange,
    RegisterRequest,
    RegisterResponse,
    UserCreate,
    UserOut,
    UserUpdate,
)
from faultmaven_auth.organizations.schemas import OrganizationOut
from faultmaven_auth.rbac.dependencies import OrgAccess, request_meta, require
from faultmaven_auth.rbac.permissions import Permission
from faultmaven_auth.runtime import Runtime, get_runtime
from faultmaven_auth.schemas import Page, decode_cursor, encode_cursor
from faultmaven_auth.security.rate_limit import RateLimitScope, enforce_rate_limit
from faultmaven_auth.tokens.authentication import current_principal
from faultmaven_auth.tokens.principal import Principal

auth_router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
users_router = APIRouter(prefix="/api/v1/organizations/{org_id}/users", tags=["users"])


@auth_router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=RegisterResponse,
    # sign-up turned off; email taken; over the per-address rate limit
    responses=error_responses(403, 409, 429),
)
async def register(
    body: RegisterRequest, request: Request, runtime: Runtime = Depends(get_runtime)
) -> RegisterResponse:
    meta = request_meta(request)
    invited = body.invitation_token is not None
    scope = RateLimitScope.INVITATION if invited else RateLimitScope.REGISTER
    await enforce_rate_limit(runtime, scope, meta)
    user, org = await service.register(runtime, body, meta)
    return RegisterResponse(
        user=UserOut.model_validate(user), organization=OrganizationOut.model_validate(org)
    )


@auth_router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    # wrong current password; a concurrent change won; account locked or address limited
    responses=error_responses(403, 409, 429),
)
async def change_password(
    body: PasswordChange,
    request: Request,
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
) -> None:
    """Change your own password with the current one.

    Your other sessions end (refresh and access tokens); this one keeps working.
    """
    await change_own_password(runtime, principal, body, request_meta(request))


@users_router.get("", response_model=Page[UserOut])
async def list_users(
    cursor: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=50, ge=1, le=200),
    access: OrgAccess = Depends(require(Permission.USERS_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> Page[UserOut]:
    async with runtime.db.session() as session:
        users = await service.list_users(
            session, access.org_id, after=decode_cursor(cursor), limit=limit + 1
        )
    more = len(users) > limit
    users = users[:limit]
    return Page[UserOut](
        items=[UserOut.model_validate(u) for u in users],
        next_cursor=encode_cursor(users[-1].id) if more else None,
    )


@users_router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=UserOut, responses=error_responses(409)
)
async def create_user(
    body: UserCreate,
    access: OrgAccess = Depends(require(Permission.USERS_CREATE)),
    runtime: Runtime = Depends(get_runtime),
) -> UserOut:
    return UserOut.model_validate(await service.create_user(runtime, access, body))


@users_router.get("/{user_id}", response_model=UserOut)
async def get_user(
    user_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.USERS_READ)),
    runtime: Runtime = Depends(get_runtime),
) -> UserOut:
    async with runtime.db.session() as session:
        return UserOut.model_validate(await service.get_user(session, access.org_id, user_id))


@users_router.patch("/{user_id}", response_model=UserOut)
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    access: OrgAccess = Depends(require(Permission.USERS_UPDATE)),
    runtime: Runtime = Depends(get_runtime),
) -> UserOut:
    return UserOut.model_validate(await service.update_user(runtime, access, user_id, body))


@users_router.delete("/{user_id}", response_model=UserOut, responses=error_responses(409))
async def deactivate_user(
    user_id: uuid.UUID,
    access: OrgAccess = Depends(require(Permission.USERS_DELETE)),
    runtime: Runtime = Depends(get_runtime),
) -> UserOut:
    """Deactivates the member (their sessions end); the row stays for the audit trail."""
    return UserOut.model_validate(await service.deactivate_user(runtime, access, user_id))

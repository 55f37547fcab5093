"""Request and response bodies of the SSO routes. Secrets are write-only: the client
secret goes in, and only ``client_secret_set`` ever comes out."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from faultmaven_auth.schemas import Password, RequestModel, ResponseModel

_DOMAIN = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$")
TokenAuthMethod = Literal["client_secret_basic", "client_secret_post"]
# Plain strings (compared exactly, never normalized) that the OpenAPI document still
# describes by format, for clients and schema-driven tests.
Url = Annotated[str, Field(min_length=1, max_length=2000, json_schema_extra={"format": "uri"})]
Domain = Annotated[
    str, Field(min_length=1, max_length=253, json_schema_extra={"format": "hostname"})
]


def normalize_domain(value: str) -> str:
    domain = value.strip().lower().rstrip(".")
    if len(domain) > 253 or not _DOMAIN.match(domain):
        raise ValueError("not a valid domain name")
    return domain


def _domains(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return list(dict.fromkeys(normalize_domain(v) for v in values))


def _scopes(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    if "openid" not in values or not all(_SCOPE.match(v) for v in values):
        raise ValueError("scopes must include 'openid' and be OAuth scope tokens")
    return list(dict.fromkeys(values))


class ClaimMapping(RequestModel):
    """Which ID token / userinfo claims carry the email, the name and the groups."""

    email: str = Field(default="email", min_length=1, max_length=100)
    name: str = Field(default="name", min_length=1, max_length=100)
    groups: str = Field(default="groups", min_length=1, max_length=100)


class OidcProviderCreate(RequestModel):
    # The type selects the configuration shape; "saml" joins this union later.
    provider_type: Literal["oidc"] = "oidc"
    name: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    issuer: Url
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: Password = Field(min_length=1, max_length=1024)
    token_endpoint_auth_method: TokenAuthMethod = "client_secret_basic"
    scopes: list[str] = Field(default=["openid", "email", "profile"], max_length=20)
    claim_mapping: ClaimMapping = Field(default_factory=ClaimMapping)
    use_userinfo: bool = False
    allowed_domains: list[Domain] = Field(min_length=1, max_length=50)
    jit_enabled: bool = False
    # None: the system role "member".
    default_role_id: uuid.UUID | None = None
    group_role_map: dict[str, uuid.UUID] = Field(default_factory=dict, max_length=100)
    sso_required: bool = False

    _check_domains = field_validator("allowed_domains")(_domains)
    _check_scopes = field_validator("scopes")(_scopes)


class OidcProviderUpdate(RequestModel):
    """Only the fields sent change; a new issuer is discovered again before it is kept."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool | None = None
    issuer: Url | None = None
    client_id: str | None = Field(default=None, min_length=1, max_length=255)
    client_secret: Password | None = Field(default=None, min_length=1, max_length=1024)
    token_endpoint_auth_method: TokenAuthMethod | None = None
    scopes: list[str] | None = Field(default=None, max_length=20)
    claim_mapping: ClaimMapping | None = None
    use_userinfo: bool | None = None
    allowed_domains: list[Domain] | None = Field(default=None, min_length=1, max_length=50)
    jit_enabled: bool | None = None
    default_role_id: uuid.UUID | None = None
    group_role_map: dict[str, uuid.UUID] | None = Field(default=None, max_length=100)
    sso_required: bool | None = None

    _check_domains = field_validator("allowed_domains")(_domains)
    _check_scopes = field_validator("scopes")(_scopes)


class SsoProviderOut(ResponseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    provider_type: str
    name: str
    enabled: bool
    issuer: str
    client_id: str
    client_secret_set: bool
    token_endpoint_auth_method: str
    scopes: list[str]
    claim_mapping: ClaimMapping
    use_userinfo: bool
    allowed_domains: list[str]
    jit_enabled: bool
    default_role_id: uuid.UUID
    group_role_map: dict[str, uuid.UUID]
    sso_required: bool
    # Where the application sends the browser to start a login with this provider.
    login_url: str
    # The redirect URI to register at the identity provider.
    callback_url: str
    created_at: datetime
    updated_at: datetime


class RedirectUriCreate(RequestModel):
    uri: Url


class RedirectUriOut(ResponseModel):
    id: uuid.UUID
    uri: str
    created_at: datetime


class DomainClaim(RequestModel):
    domain: Domain

    _check_domain = field_validator("domain")(normalize_domain)


class DomainVerification(ResponseModel):
    """Publish this TXT record, then call the verify route."""

    type: Literal["dns_txt"] = "dns_txt"
    name: str
    value: str


class DomainOut(ResponseModel):
    id: uuid.UUID
    domain: str
    verified: bool
    verified_at: datetime | None
    verification: DomainVerification
    created_at: datetime


class DiscoverRequest(RequestModel):
    email: str = Field(min_length=3, max_length=320)


class DiscoverResponse(ResponseModel):
    """``sso`` false says only that no provider handles the address's domain."""

    sso: bool
    organization_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    provider_type: str | None = None
    login_url: str | None = None


class SsoTokenRequest(RequestModel):
    code: str = Field(min_length=1, max_length=256)

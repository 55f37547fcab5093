"""Request and response bodies of the SSO routes. Secrets are write-only: the client
secret goes in, and only ``client_secret_set`` ever comes out.

A provider's create and update bodies are a union on ``provider_type`` (``oidc`` when
absent, for clients written before SAML; an update names it or is told apart by its
SAML-only fields). One response shape serves both; the other type's fields are null.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from faultmaven_auth.errors import BODY_SHAPE_TAGS
from faultmaven_auth.schemas import FreeText, Password, RequestModel, ResponseModel

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


class _ProviderCreate(RequestModel):
    """What every provider type has: the settings kept in ``sso_providers`` columns."""

    name: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    allowed_domains: list[Domain] = Field(min_length=1, max_length=50)
    jit_enabled: bool = False
    # None: the system role "member".
    default_role_id: uuid.UUID | None = None
    group_role_map: dict[str, uuid.UUID] = Field(default_factory=dict, max_length=100)
    sso_required: bool = False
    sync_roles: bool = False

    _check_domains = field_validator("allowed_domains")(_domains)


class _ProviderUpdate(RequestModel):
    """The shared settings of a PATCH: only the fields sent change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool | None = None
    allowed_domains: list[Domain] | None = Field(default=None, min_length=1, max_length=50)
    jit_enabled: bool | None = None
    default_role_id: uuid.UUID | None = None
    group_role_map: dict[str, uuid.UUID] | None = Field(default=None, max_length=100)
    sso_required: bool | None = None
    sync_roles: bool | None = None

    _check_domains = field_validator("allowed_domains")(_domains)


class OidcProviderCreate(_ProviderCreate):
    provider_type: Literal["oidc"] = "oidc"
    issuer: Url
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: Password = Field(min_length=1, max_length=1024)
    token_endpoint_auth_method: TokenAuthMethod = "client_secret_basic"
    scopes: list[str] = Field(default=["openid", "email", "profile"], max_length=20)
    claim_mapping: ClaimMapping = Field(default_factory=ClaimMapping)
    use_userinfo: bool = False
    # False only for providers that never send ``email_verified`` (Entra ID): the email
    # is then trusted like a SAML assertion's, on the organization's verified domains.
    require_email_verified: bool = True

    _check_scopes = field_validator("scopes")(_scopes)


class OidcProviderUpdate(_ProviderUpdate):
    """A new issuer is discovered again before it is kept."""

    provider_type: Literal["oidc"] | None = None
    issuer: Url | None = None
    client_id: str | None = Field(default=None, min_length=1, max_length=255)
    client_secret: Password | None = Field(default=None, min_length=1, max_length=1024)
    token_endpoint_auth_method: TokenAuthMethod | None = None
    scopes: list[str] | None = Field(default=None, max_length=20)
    claim_mapping: ClaimMapping | None = None
    use_userinfo: bool | None = None
    require_email_verified: bool | None = None

    _check_scopes = field_validator("scopes")(_scopes)


class AttributeMapping(RequestModel):
    """Which SAML attribute Names carry the email, the name and the groups. Without the
    email attribute, a NameID of format emailAddress is the email."""

    email: str = Field(default="email", min_length=1, max_length=255)
    name: str = Field(default="name", min_length=1, max_length=255)
    groups: str = Field(default="groups", min_length=1, max_length=255)


# Uploaded metadata stays well inside the request body limit (MAX_REQUEST_BODY_BYTES,
# 1 MiB by default), so an over-long document is a 422 naming this field, not a 413.
MetadataXml = Annotated[FreeText, Field(min_length=1, max_length=512 * 1024)]
EntityId = Annotated[str, Field(min_length=1, max_length=1024)]


class SamlProviderCreate(_ProviderCreate):
    provider_type: Literal["saml"]
    # Exactly one: the IdP's metadata document, or an https URL it is fetched from
    # (once, now; send it again to refresh).
    idp_metadata_xml: MetadataXml | None = None
    idp_metadata_url: Url | None = None
    # Needed only when the metadata describes several IdPs.
    idp_entity_id: EntityId | None = None
    attribute_mapping: AttributeMapping = Field(default_factory=AttributeMapping)
    allow_idp_initiated: bool = False

    @model_validator(mode="after")
    def _one_metadata_source(self) -> SamlProviderCreate:
        if (self.idp_metadata_xml is None) == (self.idp_metadata_url is None):
            raise ValueError("send exactly one of idp_metadata_xml and idp_metadata_url")
        return self


class SamlProviderUpdate(_ProviderUpdate):
    """New metadata (or a new idp_entity_id) is checked again before it is kept."""

    provider_type: Literal["saml"] | None = None
    idp_metadata_xml: MetadataXml | None = None
    idp_metadata_url: Url | None = None
    idp_entity_id: EntityId | None = None
    attribute_mapping: AttributeMapping | None = None
    allow_idp_initiated: bool | None = None

    @model_validator(mode="after")
    def _one_metadata_source(self) -> SamlProviderUpdate:
        if self.idp_metadata_xml is not None and self.idp_metadata_url is not None:
            raise ValueError("send at most one of idp_metadata_xml and idp_metadata_url")
        return self


_SAML_ONLY = frozenset(SamlProviderUpdate.model_fields) - frozenset(OidcProviderUpdate.model_fields)


def _create_type(value: Any) -> str:
    # Anything but an object (an array body, say) is checked as the default shape,
    # which refuses it with a 422 like any other body.
    found = value.get("provider_type") if isinstance(value, dict) else None
    if isinstance(value, SamlProviderCreate):
        found = "saml"
    return "saml" if found == "saml" else "oidc"


def _update_type(value: Any) -> str:
    if not isinstance(value, dict):
        return "saml" if isinstance(value, SamlProviderUpdate) else "oidc"
    if value.get("provider_type") == "saml" or _SAML_ONLY.intersection(value):
        return "saml"
    return "oidc"


BODY_SHAPE_TAGS.update({"oidc", "saml"})
SsoProviderCreate = Annotated[
    Annotated[OidcProviderCreate, Tag("oidc")] | Annotated[SamlProviderCreate, Tag("saml")],
    Discriminator(_create_type),
]
SsoProviderUpdate = Annotated[
    Annotated[OidcProviderUpdate, Tag("oidc")] | Annotated[SamlProviderUpdate, Tag("saml")],
    Discriminator(_update_type),
]


class SsoProviderOut(ResponseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    provider_type: str
    name: str
    enabled: bool
    # OIDC (null for SAML).
    issuer: str | None
    client_id: str | None
    client_secret_set: bool
    token_endpoint_auth_method: str | None
    scopes: list[str] | None
    claim_mapping: ClaimMapping | None
    use_userinfo: bool | None
    require_email_verified: bool | None
    # The redirect URI to register at an OpenID provider.
    callback_url: str | None
    # SAML (null for OIDC).
    idp_entity_id: str | None = None
    idp_sso_url: str | None = None
    idp_metadata_url: str | None = None
    # Our entity ID, which is also the URL of our metadata; the ACS URL.
    sp_entity_id: str | None = None
    metadata_url: str | None = None
    acs_url: str | None = None
    allow_idp_initiated: bool | None = None
    attribute_mapping: AttributeMapping | None = None
    # Shared.
    allowed_domains: list[str]
    jit_enabled: bool
    default_role_id: uuid.UUID
    group_role_map: dict[str, uuid.UUID]
    sso_required: bool
    sync_roles: bool
    # Where the application sends the browser to start a login with this provider.
    login_url: str
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

"""The authentication schemes the OpenAPI document declares.

Verification itself stays where it was (``rbac.dependencies.bearer_token``,
``tokens.service_client_auth.parse_basic_auth``, ``observability.exposition``), because
their error codes and ``WWW-Authenticate`` headers are part of the API; these
dependencies only name the scheme, so FastAPI lists it under ``securitySchemes`` and on
every operation that depends on it, however deep in the dependency tree.
"""

from __future__ import annotations

from fastapi.openapi.models import HTTPBase, HTTPBearer
from fastapi.openapi.models import SecurityBase as SecuritySchemeModel
from fastapi.security.base import SecurityBase


class DeclaredScheme(SecurityBase):
    """A security scheme for the document; as a dependency it does nothing.

    ``optional`` schemes (``/metrics`` without ``METRICS_BEARER_TOKEN``) are listed
    next to an empty requirement, meaning "or no credentials at all".
    """

    def __init__(
        self, scheme_name: str, model: SecuritySchemeModel, *, optional: bool = False
    ) -> None:
        self.scheme_name = scheme_name
        self.model = model
        self.optional = optional

    async def __call__(self) -> None:
        return None


access_token = DeclaredScheme(
    "bearerAuth",
    HTTPBearer(
        bearerFormat="JWT",
        description="An access token from `POST /api/v1/auth/login` or `/refresh`.",
    ),
)
service_client = DeclaredScheme(
    "serviceClientBasic",
    HTTPBase(
        scheme="basic",
        description="A service client's `client_id` and `client_secret` (introspection).",
    ),
)
metrics_token = DeclaredScheme(
    "metricsBearer",
    HTTPBearer(description="`METRICS_BEARER_TOKEN`, when the operator sets one."),
    optional=True,
)

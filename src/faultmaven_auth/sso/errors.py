"""SSO errors: what the browser or the admin sees (status + stable code).

    AppError
    ├── SsoConfigurationInvalid   422  SSO_ROLE_NOT_ALLOWED, SSO_INVALID_REDIRECT_URI, ...
    └── SsoLoginRefused           400/401/403/404/413/503, code from the failure ``reason``
        └── SamlLoginRefused      same table; an assertion check is SSO_ASSERTION_INVALID

A refused login carries a ``reason`` (state_mismatch, nonce_mismatch, expired, ...):
logged, counted in ``sso_attempts_total`` and written to the audit log, but folded
into a handful of codes for the client, so a probe learns no more than it must.
"""

from __future__ import annotations

from faultmaven_auth.errors import AppError, ValidationFailed

# reason -> (status, code); any reason not listed is a 401 SSO_ID_TOKEN_INVALID (OIDC)
# or SSO_ASSERTION_INVALID (SAML).
_REASON_CODES: dict[str, tuple[int, str]] = {
    "provider_not_found": (404, "SSO_PROVIDER_NOT_FOUND"),
    "redirect_uri_not_registered": (400, "SSO_REDIRECT_URI_NOT_REGISTERED"),
    "state_mismatch": (400, "SSO_STATE_INVALID"),
    "replayed": (400, "SSO_STATE_INVALID"),
    "browser_mismatch": (400, "SSO_STATE_INVALID"),
    "provider_error": (400, "SSO_PROVIDER_ERROR"),
    "code_rejected": (400, "SSO_CODE_REJECTED"),
    "provider_unavailable": (503, "SSO_PROVIDER_UNAVAILABLE"),
    "email_missing": (403, "SSO_EMAIL_NOT_ALLOWED"),
    "email_not_verified": (403, "SSO_EMAIL_NOT_ALLOWED"),
    "domain_not_allowed": (403, "SSO_DOMAIN_NOT_ALLOWED"),
    "user_not_provisioned": (403, "SSO_USER_NOT_ALLOWED"),
    "user_inactive": (403, "SSO_USER_NOT_ALLOWED"),
    "organization_deleted": (403, "SSO_USER_NOT_ALLOWED"),
    "user_limit_reached": (403, "SSO_USER_NOT_ALLOWED"),
    "response_too_large": (413, "SSO_RESPONSE_TOO_LARGE"),
}
_MESSAGES = {
    "SSO_PROVIDER_NOT_FOUND": "SSO provider not found",
    "SSO_REDIRECT_URI_NOT_REGISTERED": "The redirect URI is not registered for this organization",
    "SSO_STATE_INVALID": "The SSO login is unknown, expired or already used; start again",
    "SSO_PROVIDER_ERROR": "The identity provider refused the login",
    "SSO_CODE_REJECTED": "The identity provider refused the authorization code",
    "SSO_PROVIDER_UNAVAILABLE": "The identity provider cannot be reached; try again later",
    "SSO_EMAIL_NOT_ALLOWED": "The identity provider did not assert a verified email address",
    "SSO_DOMAIN_NOT_ALLOWED": "This email domain may not sign in through this provider",
    "SSO_USER_NOT_ALLOWED": "This user may not sign in to the organization",
    "SSO_ID_TOKEN_INVALID": "The identity provider's ID token is not valid",
    "SSO_ASSERTION_INVALID": "The identity provider's SAML assertion is not valid",
    "SSO_RESPONSE_TOO_LARGE": "The SAML response is too large",
}


class SsoLoginRefused(AppError):
    """A step of an SSO login failed; nothing was created."""

    default_code = "SSO_ID_TOKEN_INVALID"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.status_code, code = _REASON_CODES.get(reason, (401, self.default_code))
        super().__init__(_MESSAGES[code], code=code)


class SamlLoginRefused(SsoLoginRefused):
    """A SAML response failed a check (signature, audience, lifetime, ...)."""

    default_code = "SSO_ASSERTION_INVALID"


class SsoConfigurationInvalid(ValidationFailed):
    code = "SSO_INVALID_CONFIGURATION"
    message = "The SSO configuration is not valid"

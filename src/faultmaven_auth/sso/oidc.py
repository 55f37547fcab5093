"""The OpenID Connect authorization-code flow with PKCE (S256), start to token pair.

1. ``start_login``: the application sends the browser to ``/api/v1/sso/{id}/login``
   with a registered ``redirect_uri``. A pending login (state, nonce, PKCE verifier)
   goes into the key-value store and the browser gets a binding cookie, so a callback
   URL carried to another browser (login CSRF) is refused.
2. ``finish_login``: the provider sends the browser to our one callback. The state is
   consumed (single use), the code exchanged, the ID token verified (``id_token``),
   userinfo read if configured, the email's domain checked (allowed by the provider,
   verified by the organization), the user found, linked or JIT-provisioned
   (``provisioning``). The browser goes to the application's redirect URI with a
   one-time code: tokens never travel in a URL.
3. ``redeem_login_code``: the application trades the code for the usual token pair.

Every refusal is logged with its ``reason``, counted (``sso_attempts_total``,
``auth_attempts_total{method="sso_oidc"}``), audited (``auth.sso.failed``), and leaves
nothing behind.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select

from faultmaven_auth.audit.events import AuditEventType
from faultmaven_auth.audit.recorder import RequestMeta, record_audit_event
from faultmaven_auth.errors import BadRequest
from faultmaven_auth.hostile_input import printable, unsafe_text
from faultmaven_auth.observability.tracing import traced
from faultmaven_auth.runtime import Runtime
from faultmaven_auth.sso.errors import SsoLoginRefused
from faultmaven_auth.sso.id_token import verify_id_token
from faultmaven_auth.sso.login import Protocol, complete_login, enabled_provider, refuse
from faultmaven_auth.sso.oidc_http import OidcHttp
from faultmaven_auth.sso.providers import open_client_secret
from faultmaven_auth.sso.provisioning import AssertedIdentity
from faultmaven_auth.sso.redirect_uris import redirect_uri_registered
from faultmaven_auth.sso.state import (
    PendingLogin,
    browser_hash,
    save_pending_login,
    take_login_code,
    take_pending_login,
)
from faultmaven_auth.storage.models import Organization, SsoProvider, User
from faultmaven_auth.storage.tenancy import OrgId
from faultmaven_auth.tokens.service import TokenPair, issue_token_pair

logger = logging.getLogger("faultmaven_auth.sso")

PROTOCOL = Protocol(provider_type="oidc", auth_method="sso_oidc")


@dataclass(frozen=True)
class StartedLogin:
    authorization_url: str
    cookie_name: str
    cookie_value: str


def binding_cookie_name(state: str) -> str:
    """One cookie per pending login, so two tabs logging in at once do not collide."""
    return "fm_sso_" + hashlib.sha256(state.encode()).hexdigest()[:16]


def _pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def _enabled_provider(runtime: Runtime, provider_id: uuid.UUID) -> SsoProvider:
    return await enabled_provider(runtime, provider_id, PROTOCOL.provider_type)


async def start_login(
    runtime: Runtime,
    provider_id: uuid.UUID,
    *,
    redirect_uri: str,
    app_state: str | None,
    login_hint: str | None,
    meta: RequestMeta,
) -> StartedLogin:
    started = time.perf_counter()
    org_id: uuid.UUID | None = None
    try:
        provider = await _enabled_provider(runtime, provider_id)
        org_id = provider.organization_id
        async with runtime.db.session() as session:
            registered = await redirect_uri_registered(session, OrgId(org_id), redirect_uri)
        if not registered:
            raise SsoLoginRefused("redirect_uri_not_registered")
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, binding = secrets.token_urlsafe(48), secrets.token_urlsafe(32)
        settings = runtime.settings
        await save_pending_login(
            runtime.kv,
            state,
            PendingLogin(
                provider_id=str(provider.id),
                organization_id=str(org_id),
                nonce=nonce,
                code_verifier=verifier,
                redirect_uri=redirect_uri,
                app_state=app_state,
                browser_hash=browser_hash(binding),
            ),
            settings.sso_state_ttl_seconds,
        )
        config = provider.config
        params = {
            "response_type": "code",
            "client_id": config["client_id"],
            "redirect_uri": settings.sso_callback_url,
            "scope": " ".join(config["scopes"]),
            "state": state,
            "nonce": nonce,
            "code_challenge": _pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if login_hint:
            params["login_hint"] = login_hint
        endpoint = config["authorization_endpoint"]
        separator = "&" if "?" in endpoint else "?"
    except SsoLoginRefused as exc:
        await refuse(runtime, PROTOCOL, exc.reason, org_id, provider_id, meta, started)
        raise
    return StartedLogin(
        endpoint + separator + urlencode(params), binding_cookie_name(state), binding
    )


def _asserted_identity(provider: SsoProvider, claims: dict[str, Any]) -> AssertedIdentity:
    mapping = provider.config["claim_mapping"]
    email = claims.get(mapping["email"])
    # The IdP is trusted for who the user is, not for well-formed text.
    if not isinstance(email, str) or "@" not in email or len(email) > 320 or unsafe_text(email):
        raise SsoLoginRefused("email_missing")
    # Some providers send the boolean as a string. A provider configured not to require
    # the claim (it never sends it) still may not say the address is unverified.
    verified = claims.get("email_verified")
    required = provider.config.get("require_email_verified", True)
    if verified in (False, "false") or (required and verified not in (True, "true")):
        raise SsoLoginRefused("email_not_verified")
    email = email.strip().lower()
    if email.rsplit("@", 1)[1] not in provider.allowed_domains:
        raise SsoLoginRefused("domain_not_allowed")
    name = claims.get(mapping["name"])
    groups = claims.get(mapping["groups"])
    return AssertedIdentity(
        subject=claims["sub"],
        email=email,
        full_name=printable(name).strip()[:200] if isinstance(name, str) else "",
        groups=[g for g in groups if isinstance(g, str)] if isinstance(groups, list) else [],
    )


async def _verified_claims(
    runtime: Runtime, http: OidcHttp, provider: SsoProvider, pending: PendingLogin, code: str
) -> dict[str, Any]:
    config = provider.config
    tokens = await http.exchange_code(
        config["token_endpoint"],
        client_id=config["client_id"],
        client_secret=open_client_secret(runtime.cipher, provider),
        auth_method=config["token_endpoint_auth_method"],
        code=code,
        code_verifier=pending.code_verifier,
        redirect_uri=runtime.settings.sso_callback_url,
    )
    claims = await verify_id_token(
        http,
        tokens["id_token"],
        issuer=config["issuer"],
        client_id=config["client_id"],
        jwks_uri=config["jwks_uri"],
        nonce=pending.nonce,
        leeway_seconds=runtime.settings.sso_clock_skew_seconds,
    )
    access_token = tokens.get("access_token")
    if config["use_userinfo"] and config.get("userinfo_endpoint") and isinstance(access_token, str):
        info = await http.userinfo(config["userinfo_endpoint"], access_token)
        if info.get("sub") != claims["sub"]:
            raise SsoLoginRefused("userinfo_mismatch")
        claims = {**info, **{k: claims[k] for k in ("sub", "iss", "aud")}}
    return claims


async def finish_login(
    runtime: Runtime,
    http: OidcHttp,
    *,
    state: str | None,
    code: str | None,
    error: str | None,
    cookies: dict[str, str],
    meta: RequestMeta,
) -> str:
    """The URL to send the browser to: the registered redirect URI with a one-time code."""
    started = time.perf_counter()
    org_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    try:
        if not state:
            raise SsoLoginRefused("state_mismatch")
        settings = runtime.settings
        pending = await take_pending_login(runtime.kv, state, settings.sso_state_ttl_seconds)
        org_id, provider_id = uuid.UUID(pending.organization_id), uuid.UUID(pending.provider_id)
        binding = cookies.get(binding_cookie_name(state), "")
        if not hmac.compare_digest(browser_hash(binding).encode(), pending.browser_hash.encode()):
            raise SsoLoginRefused("browser_mismatch")
        if error or not code:
            raise SsoLoginRefused("provider_error")
        provider = await _enabled_provider(runtime, provider_id)
        with traced(runtime.tracer, "sso_code_exchange"):
            claims = await _verified_claims(runtime, http, provider, pending, code)
        identity = _asserted_identity(provider, claims)
        return await complete_login(
            runtime,
            PROTOCOL,
            provider,
            identity,
            redirect_uri=pending.redirect_uri,
            app_state=pending.app_state,
            meta=meta,
            started=started,
        )
    except SsoLoginRefused as exc:
        await refuse(runtime, PROTOCOL, exc.reason, org_id, provider_id, meta, started)
        raise


async def redeem_login_code(runtime: Runtime, code: str, meta: RequestMeta) -> TokenPair:
    """The one-time code to a token pair; a second use, or an expired code, is refused."""
    grant = await take_login_code(runtime.kv, code)
    if grant is None:
        raise BadRequest(
            "The SSO code is unknown, expired or already used", code="SSO_CODE_INVALID"
        )
    async with runtime.db.transaction() as session:
        row = (
            await session.execute(
                select(User, Organization)
                .join(Organization, Organization.id == User.organization_id)
                .where(
                    User.id == uuid.UUID(grant.user_id),
                    User.organization_id == uuid.UUID(grant.organization_id),
                )
            )
        ).first()
        if row is None or not row[0].is_active or row[1].is_deleted:
            raise BadRequest("The SSO code is no longer valid", code="SSO_CODE_INVALID")
        user = row[0]
        pair = await issue_token_pair(
            session, runtime, user_id=user.id, organization_id=user.organization_id
        )
        record_audit_event(
            session,
            AuditEventType.LOGIN_SUCCEEDED,
            meta=meta,
            organization_id=user.organization_id,
            actor_id=user.id,
            target_type="user",
            target_id=user.id,
            details={"method": grant.method, "provider_id": grant.provider_id},
        )
    return pair

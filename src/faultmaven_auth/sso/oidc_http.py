"""Everything the service asks of an OpenID provider over HTTP: discovery, the token
endpoint, userinfo and the JWKS (cached, refreshed when an unknown ``kid`` shows up).

httpx errors stop here. At configuration time they become 400 ``SSO_DISCOVERY_FAILED``
(nothing is stored); during a login they become
``SsoLoginRefused`` (``provider_unavailable`` 503, ``code_rejected`` 400). Responses are
parsed as JSON objects of bounded size; nothing the provider sends is logged.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jwt

from faultmaven_auth.config import Settings
from faultmaven_auth.errors import BadRequest
from faultmaven_auth.sso.errors import SsoLoginRefused
from faultmaven_auth.sso.outbound import AddressNotAllowed, GuardedTransport

MAX_DOCUMENT_BYTES = 256 * 1024
_REQUIRED_METADATA = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


def discovery_failed(message: str) -> BadRequest:
    # 400, not 422: the request was well formed; the issuer is what failed.
    return BadRequest(message, code="SSO_DISCOVERY_FAILED")


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    if len(response.content) > MAX_DOCUMENT_BYTES:
        return None
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


class OidcHttp:
    """One HTTP client (opened by the app's lifespan) and the JWKS cache it fills."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self._settings = settings
        self._http = httpx.AsyncClient(
            timeout=settings.sso_http_timeout_seconds,
            follow_redirects=False,
            trust_env=False,
            # Public addresses only (plus SSO_ALLOWED_NETWORKS): see sso/outbound.py.
            transport=GuardedTransport(settings.sso_outbound_networks, inner=transport),
        )
        # jwks_uri -> (fetched at, {kid: jwk})
        self._jwks: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    def check_url(self, url: str) -> bool:
        """https, or http when insecure issuers are allowed (local test providers)."""
        parts = urlsplit(url)
        allowed = ("https", "http") if self._settings.sso_allow_insecure_issuers else ("https",)
        return parts.scheme in allowed and bool(parts.hostname) and not parts.fragment

    async def discover(self, issuer: str) -> dict[str, Any]:
        """The provider's metadata, checked; raises 400 SSO_DISCOVERY_FAILED otherwise."""
        if not self.check_url(issuer):
            raise discovery_failed("The issuer must be an https URL")
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except AddressNotAllowed as exc:
            raise discovery_failed(
                "The issuer resolves to a non-public address (see SSO_ALLOWED_NETWORKS)"
            ) from exc
        except httpx.HTTPError as exc:
            raise discovery_failed(
                f"The issuer's discovery document cannot be fetched ({type(exc).__name__})"
            ) from exc
        document = _json_object(response) if response.status_code == 200 else None
        if document is None:
            raise discovery_failed(
                f"The issuer did not answer with a discovery document (HTTP {response.status_code})"
            )
        missing = [k for k in _REQUIRED_METADATA if not isinstance(document.get(k), str)]
        if missing:
            raise discovery_failed(f"The discovery document lacks {', '.join(missing)}")
        if document["issuer"] != issuer:
            raise discovery_failed("The discovery document names another issuer")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
            value = document.get(key)
            if value is not None and (not isinstance(value, str) or not self.check_url(value)):
                raise discovery_failed(f"The discovery document's {key} is not an https URL")
        if "code" not in document.get("response_types_supported", ["code"]):
            raise discovery_failed("The provider does not support the authorization-code flow")
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise discovery_failed("The provider does not support PKCE with S256")
        return document

    async def exchange_code(
        self,
        token_endpoint: str,
        *,
        client_id: str,
        client_secret: str,
        auth_method: str,
        code: str,
        code_verifier: str,
        redirect_uri: str,
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        if auth_method == "client_secret_post":
            form.update(client_id=client_id, client_secret=client_secret)
        else:
            # RFC 6749 2.3.1: both parts form-encoded before Basic.
            basic = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        try:
            response = await self._http.post(token_endpoint, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise SsoLoginRefused("provider_unavailable") from exc
        if response.status_code >= 500:
            raise SsoLoginRefused("provider_unavailable")
        body = _json_object(response)
        if response.status_code != 200 or body is None or not isinstance(body.get("id_token"), str):
            raise SsoLoginRefused("code_rejected")
        return body

    async def userinfo(self, endpoint: str, access_token: str) -> dict[str, Any]:
        try:
            response = await self._http.get(
                endpoint, headers={"Authorization": f"Bearer {access_token}"}
            )
        except httpx.HTTPError as exc:
            raise SsoLoginRefused("provider_unavailable") from exc
        body = _json_object(response) if response.status_code == 200 else None
        if body is None:
            raise SsoLoginRefused("userinfo_failed")
        return body

    async def signing_key(self, jwks_uri: str, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        """The provider's key for ``kid``: from the cache, else after one refetch."""
        now = time.monotonic()
        cached = self._jwks.get(jwks_uri)
        fresh = cached is not None and now - cached[0] < self._settings.sso_jwks_cache_seconds
        key = _pick(cached[1], kid, algorithm) if cached and fresh else None
        if key is None and (
            cached is None or now - cached[0] >= self._settings.sso_jwks_min_refresh_seconds
        ):
            keys = await self._fetch_jwks(jwks_uri)
            self._jwks[jwks_uri] = (now, keys)
            key = _pick(keys, kid, algorithm)
        return key

    async def _fetch_jwks(self, jwks_uri: str) -> list[dict[str, Any]]:
        try:
            response = await self._http.get(jwks_uri)
        except httpx.HTTPError as exc:
            raise SsoLoginRefused("provider_unavailable") from exc
        body = _json_object(response) if response.status_code == 200 else None
        keys = body.get("keys") if body else None
        if not isinstance(keys, list):
            raise SsoLoginRefused("provider_unavailable")
        return [k for k in keys if isinstance(k, dict)]


def _pick(keys: list[dict[str, Any]], kid: str | None, algorithm: str) -> jwt.PyJWK | None:
    """The signing key with this ``kid`` usable with ``algorithm``; without a kid, the
    only candidate (a provider with one key may omit kids)."""
    candidates = [
        k
        for k in keys
        if k.get("use", "sig") == "sig"
        and k.get("alg", algorithm) == algorithm
        and (kid is None or k.get("kid") == kid)
    ]
    if len(candidates) != 1:
        return None
    try:
        return jwt.PyJWK(candidates[0], algorithm=algorithm)
    except jwt.PyJWTError:
        return None

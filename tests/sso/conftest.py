"""SSO fixtures: the app with SSO settings on each backend, a real OpenID provider
(node ``oidc-provider``), a forging provider for crafted ID tokens, a real SAML IdP
(pysaml2, ``saml_idp``), a real DNS server for domain verification, and a browser that
follows redirects and submits forms.

Each test builds its own organization (``sso_tenant``) with its own random domain,
verified through the DNS server, a registered redirect URI and a provider.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from faultmaven_auth.config import Settings
from faultmaven_auth.storage.models import AuditEvent
from tests.conftest import (
    SEEN_SECRETS,
    Account,
    client_for,
    running_app,
    sign_up,
    unavailable,
)
from tests.sso.dns_server import TxtZone, running_dns
from tests.sso.fake_idp import FakeIdp, running_fake_idp
from tests.sso.idp_server import RealIdp, idp_missing, running_idp
from tests.sso.saml_idp import SamlIdp, running_saml_idp, saml_idp_missing

CALLBACK = "http://testserver/api/v1/sso/oidc/callback"
APP_REDIRECT = "http://127.0.0.1/app/callback"
IDP_CLIENT_ID = "faultmaven"
IDP_CLIENT_SECRET = "idp-client-secret-0123456789"
IDP_POST_CLIENT_ID = "faultmaven-post"


@pytest.fixture(scope="session")
def dns() -> Iterator[tuple[TxtZone, str]]:
    with running_dns() as server:
        yield server


@pytest.fixture(scope="session")
def real_idp() -> Iterator[RealIdp]:
    missing = idp_missing()
    if missing is not None:
        unavailable("The test OpenID provider", RuntimeError(missing))
    clients = [
        {
            "client_id": client_id,
            "client_secret": IDP_CLIENT_SECRET,
            "redirect_uris": [CALLBACK],
            "token_endpoint_auth_method": method,
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }
        for client_id, method in (
            (IDP_CLIENT_ID, "client_secret_basic"),
            (IDP_POST_CLIENT_ID, "client_secret_post"),
        )
    ]
    with running_idp(clients) as idp:
        yield idp


@pytest.fixture(scope="session")
def fake_idp() -> Iterator[FakeIdp]:
    with running_fake_idp() as idp:
        yield idp


@pytest.fixture(scope="session")
def saml_idp() -> Iterator[SamlIdp]:
    missing = saml_idp_missing()
    if missing is not None:
        unavailable("The test SAML IdP", RuntimeError(missing))
    with running_saml_idp() as idp:
        yield idp


@pytest.fixture(scope="session")
async def sso_app(backend_settings: Settings, dns: tuple[TxtZone, str]) -> AsyncIterator[FastAPI]:
    settings = backend_settings.model_copy(
        update={
            "sso_allow_insecure_issuers": True,
            "sso_dns_nameservers": [dns[1]],
            "database_pool_size": 2,
            # Key rotation is tested without waiting out the refetch interval.
            "sso_jwks_min_refresh_seconds": 0,
        }
    )
    async with running_app(settings) as app:
        yield app


@pytest.fixture
async def client(sso_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sso_app) as http:
        yield http


@dataclass
class SsoTenant:
    owner: Account
    domain: str
    provider_id: str
    provider: dict[str, Any]

    def email(self, label: str = "user") -> str:
        return f"{label}-{uuid.uuid4().hex[:8]}@{self.domain}"

    def login_url(self, redirect_uri: str = APP_REDIRECT, **params: str) -> str:
        query = httpx.QueryParams({"redirect_uri": redirect_uri, **params})
        return f"/api/v1/sso/{self.provider_id}/login?{query}"


async def saml_tenant(
    client: httpx.AsyncClient, zone: TxtZone, idp: SamlIdp, **fields: Any
) -> SsoTenant:
    """An organization with a verified domain, the app's redirect URI and a SAML
    provider configured from the IdP's metadata XML (unless ``fields`` say otherwise)."""
    owner = await sign_up(client, "SAML Org")
    domain = await verified_domain(client, owner, zone)
    added = await client.post(
        f"{owner.org_url}/sso-redirect-uris", headers=owner.headers, json={"uri": APP_REDIRECT}
    )
    assert added.status_code == 201, added.text
    body: dict[str, Any] = {
        "provider_type": "saml",
        "name": "Corporate SAML IdP",
        "allowed_domains": [domain],
        "jit_enabled": True,
        **fields,
    }
    if "idp_metadata_url" not in body:
        body.setdefault("idp_metadata_xml", idp.metadata_xml())
    created = await client.post(f"{owner.org_url}/sso-providers", headers=owner.headers, json=body)
    assert created.status_code == 201, created.text
    return SsoTenant(owner, domain, created.json()["id"], created.json())


async def verified_domain(
    client: httpx.AsyncClient, owner: Account, zone: TxtZone, domain: str | None = None
) -> str:
    domain = domain or f"{secrets.token_hex(5)}.example.com"
    claimed = await client.post(
        f"{owner.org_url}/sso-domains", headers=owner.headers, json={"domain": domain}
    )
    assert claimed.status_code == 201, claimed.text
    record = claimed.json()["verification"]
    zone.records[record["name"]] = [record["value"]]
    verified = await client.post(
        f"{owner.org_url}/sso-domains/{claimed.json()['id']}/verify", headers=owner.headers
    )
    assert verified.status_code == 200, verified.text
    return domain


async def sso_tenant(
    client: httpx.AsyncClient,
    zone: TxtZone,
    issuer: str,
    *,
    client_id: str = IDP_CLIENT_ID,
    **fields: Any,
) -> SsoTenant:
    """An organization with a verified domain, the app's redirect URI and a provider."""
    owner = await sign_up(client, "SSO Org")
    domain = await verified_domain(client, owner, zone)
    added = await client.post(
        f"{owner.org_url}/sso-redirect-uris", headers=owner.headers, json={"uri": APP_REDIRECT}
    )
    assert added.status_code == 201, added.text
    body = {
        "name": "Corporate IdP",
        "issuer": issuer,
        "client_id": client_id,
        "client_secret": IDP_CLIENT_SECRET,
        "allowed_domains": [domain],
        "jit_enabled": True,
        **fields,
    }
    created = await client.post(f"{owner.org_url}/sso-providers", headers=owner.headers, json=body)
    assert created.status_code == 201, created.text
    return SsoTenant(owner, domain, created.json()["id"], created.json())


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = values.get("action")
        elif tag == "input" and values.get("name"):
            self.fields[str(values["name"])] = values.get("value") or ""


@asynccontextmanager
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Our app at http://testserver (in process), anything else over the network.

    httpx logs every URL this browser opens, and those carry the state and the one-time
    codes the secret guard watches for in the *service's* logs; the test browser's own
    request lines are kept out of the capture while it runs.
    """
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    httpx_logger.setLevel(logging.WARNING)
    try:
        async with httpx.AsyncClient(
            mounts={"http://testserver": transport}, trust_env=False
        ) as http:
            yield http
    finally:
        httpx_logger.setLevel(level)


async def browse(
    http: httpx.AsyncClient, url: str, *, login: str, stop_at: str = APP_REDIRECT
) -> httpx.Response:
    """Follow redirects and submit the provider's login and consent forms until the
    browser is sent to ``stop_at`` (that redirect is returned, not followed) or a page
    that is neither a redirect nor a form (returned as is)."""
    response = await http.get(url if "://" in url else f"http://testserver{url}")
    for _ in range(20):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            for name in ("code", "state"):  # one-time values: the secret guard watches them
                SEEN_SECRETS.update(httpx.URL(target).params.get_list(name))
            if target.startswith(stop_at):
                return response
            response = await http.get(target)
            continue
        form = _Form()
        form.feed(response.text)
        if response.status_code != 200 or form.action is None:
            return response
        fields = dict(form.fields)
        if "login" in fields:
            fields.update(login=login, password="any password")
        response = await http.post(urljoin(str(response.url), form.action), data=fields)
    raise AssertionError("too many redirects")


def query_of(response: httpx.Response) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def sso_failures(client: httpx.AsyncClient) -> float:
    return await metric(client, 'sso_attempts_total{provider_type="oidc",status="failure"}')


async def metric(client: httpx.AsyncClient, series: str) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


async def audit_events(app: FastAPI, request_id: str) -> list[AuditEvent]:
    """The audit events one request wrote (whatever the organization, or none)."""
    runtime = app.state.runtime
    async with runtime.db.session() as session:
        rows = await session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id))
        return list(rows.all())


def refusal_logged(request_id: str, reason: str) -> bool:
    from tests.conftest import CAPTURED_LOG_LINES

    for line in CAPTURED_LOG_LINES:
        if request_id in line:
            entry = json.loads(line)
            if entry.get("event_type") == "sso_login_failed" and entry.get("reason") == reason:
                return True
    return False

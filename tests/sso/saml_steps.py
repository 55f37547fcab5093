"""Steps of a SAML login shared by the flow and attack tests: start the login in a
browser and hand the redirect to the IdP, post a response to the ACS, and check that a
refusal is visible everywhere it must be (status + code, log line, metrics, audit event)
and left nothing behind (no user, no SSO identity, no session)."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from faultmaven_auth.storage.models import RefreshToken, SsoIdentity
from tests.conftest import SEEN_SECRETS
from tests.sso.conftest import APP_REDIRECT, SsoTenant, audit_events, metric, refusal_logged
from tests.sso.saml_idp import AuthnRequestSeen, SamlIdp, encode

SAML_FAILURES = 'sso_attempts_total{provider_type="saml",status="failure"}'
SAML_SUCCESSES = 'sso_attempts_total{provider_type="saml",status="success"}'
AUTH_FAILURES = 'auth_attempts_total{method="sso_saml",status="failure"}'
AUTH_SUCCESSES = 'auth_attempts_total{method="sso_saml",status="success"}'

# The refusal a reason folds into: every check of the posted response (unreadable and
# unsolicited included) is a 401; the login state (unknown, spent, replayed) a 400.
ASSERTION_INVALID = (401, "SSO_ASSERTION_INVALID")
STATE_INVALID = (400, "SSO_STATE_INVALID")
PROVIDER_ERROR = (400, "SSO_PROVIDER_ERROR")


async def start_login(
    http: httpx.AsyncClient,
    idp: SamlIdp,
    tenant: SsoTenant,
    redirect_uri: str = APP_REDIRECT,
    **params: str,
) -> AuthnRequestSeen:
    """Open our login URL; the service redirects to the IdP, which reads the request."""
    started = await http.get(f"http://testserver{tenant.login_url(redirect_uri, **params)}")
    assert started.status_code == 302, started.text
    request = idp.read_login(started.headers["location"])
    SEEN_SECRETS.add(request.relay_state)  # keys the pending login: never in telemetry
    return request


def acs_url(tenant: SsoTenant) -> str:
    url: str = tenant.provider["acs_url"]
    return url


def form(xml: str, relay_state: str | None) -> dict[str, str]:
    """The IdP's auto-submitted form. A signed response is a bearer credential until it
    expires: the secret guard makes sure the service never logs it."""
    fields = {"SAMLResponse": encode(xml)}
    SEEN_SECRETS.add(fields["SAMLResponse"])
    if relay_state is not None:
        fields["RelayState"] = relay_state
    return fields


async def post_response(
    http: httpx.AsyncClient,
    tenant: SsoTenant,
    xml: str,
    relay_state: str | None,
    *,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """What the IdP's auto-submitting form does: POST SAMLResponse (+ RelayState) to
    the tenant's ACS; the answer as the browser gets it (redirects not followed)."""
    return await http.post(acs_url(tenant), data=form(xml, relay_state), headers=headers)


async def _footprint(app: FastAPI, client: httpx.AsyncClient, tenant: SsoTenant) -> object:
    """What a login would leave in the tenant: member emails, SSO identities, sessions."""
    users = await client.get(f"{tenant.owner.org_url}/users", headers=tenant.owner.headers)
    org_id = uuid.UUID(tenant.owner.org_id)
    async with app.state.runtime.db.session() as session:
        identities = await session.scalar(
            select(func.count())
            .select_from(SsoIdentity)
            .where(SsoIdentity.organization_id == org_id)
        )
        sessions = await session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.organization_id == org_id)
        )
    return (sorted(u["email"] for u in users.json()["items"]), identities, sessions)


async def assert_refused(
    client: httpx.AsyncClient,
    app: FastAPI,
    http: httpx.AsyncClient,
    tenant: SsoTenant,
    fields: dict[str, str],
    *,
    refusal: tuple[int, str],
    reason: str,
    to: str | None = None,
) -> None:
    """POST ``fields`` to the ACS (of ``tenant`` unless ``to``): refused with ``refusal``,
    the reason logged and audited (provider type saml), both failure counters +1, and
    the tenant's users, SSO identities and sessions unchanged."""
    status, code = refusal
    request_id = f"saml-{uuid.uuid4().hex}"
    sso_before = await metric(client, SAML_FAILURES)
    auth_before = await metric(client, AUTH_FAILURES)
    before = await _footprint(app, client, tenant)
    response = await http.post(
        to or acs_url(tenant), data=fields, headers={"X-Request-ID": request_id}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    assert "location" not in response.headers
    assert await metric(client, SAML_FAILURES) == sso_before + 1
    assert await metric(client, AUTH_FAILURES) == auth_before + 1
    events = [
        (e.event_type, e.details["reason"], e.details["provider_type"], str(e.organization_id))
        for e in await audit_events(app, request_id)
    ]
    assert events == [("auth.sso.failed", reason, "saml", tenant.owner.org_id)], events
    assert refusal_logged(request_id, reason)
    after = await _footprint(app, client, tenant)
    assert after == before, (before, after)


async def exchange(client: httpx.AsyncClient, response: httpx.Response) -> dict[str, str]:
    """The ACS redirected to the app with a one-time code; trade it for the token pair."""
    assert response.status_code == 302, response.text
    location = httpx.URL(response.headers["location"])
    assert str(location).startswith(APP_REDIRECT + "?")
    SEEN_SECRETS.add(location.params["code"])
    exchanged = await client.post("/api/v1/sso/token", json={"code": location.params["code"]})
    assert exchanged.status_code == 200, exchanged.text
    tokens: dict[str, str] = exchanged.json()
    return tokens


async def me(client: httpx.AsyncClient, tokens: dict[str, str]) -> dict[str, object]:
    answer = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body

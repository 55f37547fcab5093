"""What an operator sees of an SSO login: the spans of the redirect, the code exchange
and the provisioning (under their request spans, nothing secret in them), and the
attempt counters."""

from __future__ import annotations

import httpx
import pytest

from faultmaven_auth.config import Settings
from tests.conftest import CAPTURED_SPAN_TEXT, client_for, running_app
from tests.observability.otlp_receiver import OtlpReceiver, children, one
from tests.sso.conftest import metric, sso_tenant
from tests.sso.dns_server import TxtZone
from tests.sso.fake_idp import CLIENT_ID, FakeIdp

pytestmark = pytest.mark.backends


async def test_sso_login_spans_and_counters(
    backend_settings: Settings, fake_idp: FakeIdp, dns: tuple[TxtZone, str]
) -> None:
    receiver = OtlpReceiver().start()
    settings = backend_settings.model_copy(
        update={
            "sso_allow_insecure_issuers": True,
            "sso_dns_nameservers": [dns[1]],
            "database_pool_size": 2,
            "otel_exporter_otlp_endpoint": receiver.endpoint,
            "tracing_sample_ratio": 1.0,
        }
    )
    try:
        async with running_app(settings) as app, client_for(app) as client:
            tenant = await sso_tenant(client, dns[0], fake_idp.issuer, client_id=CLIENT_ID)
            started = await client.get(tenant.login_url())
            authorize = httpx.URL(started.headers["location"])
            email = tenant.email()
            fake_idp.id_token = fake_idp.sign(fake_idp.claims(authorize.params["nonce"], email))
            done = await client.get(
                "/api/v1/sso/oidc/callback",
                params={"state": authorize.params["state"], "code": "c0de"},
            )
            assert done.status_code == 302
            refused = await client.get(
                "/api/v1/sso/oidc/callback",
                params={"state": authorize.params["state"], "code": "c0de"},
            )
            assert refused.status_code == 400
            series = 'sso_attempts_total{provider_type="oidc",status="%s"}'
            assert await metric(client, series % "success") == 1
            assert await metric(client, series % "failure") == 1
            auth = 'auth_attempts_total{method="sso_oidc",status="%s"}'
            assert await metric(client, auth % "success") == 1
            assert await metric(client, auth % "failure") == 1
    finally:
        receiver.stop()
    spans = receiver.spans()
    CAPTURED_SPAN_TEXT.extend(span.text() for span in spans)

    start = one(spans, "GET /api/v1/sso/{provider_id}/login")
    assert [s.name for s in children(spans, start)][:1] == ["sso_redirect"]
    callbacks = [s for s in spans if s.name == "GET /api/v1/sso/oidc/callback"]
    succeeded = next(s for s in callbacks if s.attributes["http.response.status_code"] == 302)
    names = [s.name for s in children(spans, succeeded)]
    assert "sso_code_exchange" in names
    assert "sso_provisioning" in names
    provisioning = one(spans, "sso_provisioning")
    assert provisioning.attributes["sso.user_created"] is True
    everything = "\n".join(span.text() for span in spans)
    assert email not in everything
    assert authorize.params["state"] not in everything
    assert fake_idp.id_token not in everything

"""Outbound SSO calls reach public addresses only (sso/outbound.py): an organization
admin cannot make the service fetch from its own network through an issuer URL."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from faultmaven_auth.config import Settings
from faultmaven_auth.sso.outbound import AddressNotAllowed, GuardedTransport, address_allowed
from faultmaven_auth.storage.migrate import upgrade_async
from tests.conftest import FAST_ARGON2, client_for, running_app, sign_up


def _settings(tmp_path: Path, **fields: Any) -> Settings:
    return Settings(
        **FAST_ARGON2,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        redis_url=None,
        environment="development",
        jwt_issuer="http://testserver",
        sso_http_timeout_seconds=2,
        **fields,
    )


@pytest.fixture
async def admin_client(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    settings = _settings(tmp_path, **getattr(request, "param", {}))
    await upgrade_async(settings.database_url)
    async with running_app(settings) as app, client_for(app) as http:
        yield http


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _create(http: httpx.AsyncClient, issuer: str) -> httpx.Response:
    owner = await sign_up(http)
    return await http.post(
        f"{owner.org_url}/sso-providers",
        headers=owner.headers,
        json={
            "name": "Internal",
            "issuer": issuer,
            "client_id": "c",
            "client_secret": "s-" + secrets.token_hex(8),
            "allowed_domains": ["corp.example.com"],
        },
    )


@pytest.mark.parametrize(
    "issuer",
    [
        "https://127.0.0.1",
        "https://localhost",
        "https://169.254.169.254",  # cloud instance metadata
        "https://10.1.2.3",
        "https://192.168.0.1",
        "https://100.64.0.1",  # carrier-grade NAT
        "https://[::1]",
        "https://[::ffff:127.0.0.1]",  # IPv4-mapped loopback
        "https://[fd00::1]",
        "https://0.0.0.0",
    ],
)
async def test_issuers_on_internal_addresses_are_refused_before_any_connection(
    admin_client: httpx.AsyncClient, issuer: str
) -> None:
    refused = await _create(admin_client, issuer)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "SSO_DISCOVERY_FAILED"
    assert "non-public address" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    "admin_client", [{"sso_allowed_networks": "127.0.0.0/8, fd00::/8"}], indirect=True
)
async def test_an_allowed_network_is_reached(admin_client: httpx.AsyncClient) -> None:
    # Allowed, so the service really connects: the port is closed and the failure is a
    # connection error, not the address refusal.
    refused = await _create(admin_client, f"https://127.0.0.2:{_closed_port()}")
    assert refused.status_code == 400, refused.text
    message = refused.json()["error"]["message"]
    assert "cannot be fetched" in message
    assert "non-public" not in message


def test_allowed_networks_are_parsed_and_checked() -> None:
    settings = Settings(sso_allowed_networks="10.0.0.0/8, fd00::/8")
    assert settings.sso_allowed_networks == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    ]
    assert ipaddress.ip_network("127.0.0.0/8") not in settings.sso_outbound_networks
    with pytest.raises(ValidationError):
        Settings(sso_allowed_networks="10.0.0.1/8")  # host bits set: a typo, not a network
    with pytest.raises(ValidationError):
        Settings(sso_allowed_networks="not-a-network")


def test_only_global_unicast_addresses_pass_by_default() -> None:
    for text in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"):
        assert address_allowed(ipaddress.ip_address(text), [])
    for text in ("224.0.0.1", "255.255.255.255", "::", "fe80::1", "::ffff:10.0.0.1"):
        assert not address_allowed(ipaddress.ip_address(text), [])


class _Recorder(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return httpx.Response(200, json={})


async def test_the_connection_goes_to_the_checked_address_with_the_original_name() -> None:
    """No second DNS lookup after the check (rebinding): the request leaves with the
    resolved address, while Host and TLS still name the original host."""
    recorder = _Recorder()
    transport = GuardedTransport([ipaddress.ip_network("127.0.0.0/8")], inner=recorder)
    async with httpx.AsyncClient(transport=transport) as http:
        await http.get("https://localhost:8443/.well-known/openid-configuration")
    (sent,) = recorder.seen
    assert sent.url.host == "127.0.0.1"
    assert sent.url.port == 8443
    assert sent.headers["host"] == "localhost:8443"
    assert sent.extensions["sni_hostname"] == "localhost"


async def test_refused_addresses_never_reach_the_network() -> None:
    recorder = _Recorder()
    async with httpx.AsyncClient(transport=GuardedTransport([], inner=recorder)) as http:
        with pytest.raises(AddressNotAllowed):
            await http.get("http://localhost/")
        with pytest.raises(AddressNotAllowed):
            await http.get("http://169.254.169.254/latest/meta-data/")
    assert recorder.seen == []


async def test_a_resolver_that_never_answers_counts_against_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lookup before the check is bounded like the connection itself."""
    loop = asyncio.get_running_loop()

    async def never(*_args: object, **_kwargs: object) -> list[object]:
        await asyncio.Event().wait()
        return []

    monkeypatch.setattr(loop, "getaddrinfo", never)
    recorder = _Recorder()
    async with httpx.AsyncClient(
        transport=GuardedTransport([], inner=recorder), timeout=0.2
    ) as http:
        with pytest.raises(httpx.ConnectTimeout):
            await http.get("https://idp.example.com/.well-known/openid-configuration")
    assert recorder.seen == []

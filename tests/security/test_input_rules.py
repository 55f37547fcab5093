"""The input rules a client can rely on, one behaviour per test.

Passwords are used exactly as typed (NFC-normalized, never trimmed); descriptions may
contain line breaks, names may not; audit times need an offset; introspection refuses
control characters in credentials and tokens without touching the database; the audit
log never keeps control characters from a User-Agent header.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.conftest import Account, login, unique_email
from tests.test_errors import assert_error

SPACED_PASSWORD = "  Spaced-Passphrase-2026  "
NFD_PASSWORD = unicodedata.normalize("NFD", "Crème-brûlée-Passphrase-9")


async def register(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/register",
        json={
            "organization_name": "  Rules Corp  ",
            "email": email,
            "password": password,
            "full_name": "Rule Tester",
        },
    )


async def test_passwords_are_not_trimmed(client: httpx.AsyncClient) -> None:
    """Spaces around a password are part of it: only the exact password logs in."""
    email = unique_email("spaces")
    response = await register(client, email, SPACED_PASSWORD)
    assert response.status_code == 201, response.text
    assert response.json()["organization"]["name"] == "Rules Corp"  # names are trimmed
    trimmed = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": SPACED_PASSWORD.strip()}
    )
    assert_error(trimmed, 401, "INVALID_CREDENTIALS")
    await login(client, email, SPACED_PASSWORD)


async def test_passwords_are_compared_after_nfc_normalization(client: httpx.AsyncClient) -> None:
    """A password typed with combining accents logs in when typed precomposed, and back."""
    email = unique_email("nfc")
    nfc = unicodedata.normalize("NFC", NFD_PASSWORD)
    assert nfc != NFD_PASSWORD
    assert (await register(client, email, NFD_PASSWORD)).status_code == 201
    await login(client, email, nfc)
    await login(client, email, NFD_PASSWORD)


async def test_descriptions_keep_line_breaks_but_names_refuse_them(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Tab, LF and CR are allowed in a description only; elsewhere they are a 422."""
    description = "First line\nSecond line\r\n\tindented"
    created = await client.post(
        f"{owner.org_url}/teams",
        headers=owner.headers,
        json={"name": "Line Breaks", "description": description},
    )
    assert created.status_code == 201, created.text
    assert created.json()["description"] == description.strip()
    refused = await client.post(
        f"{owner.org_url}/teams", headers=owner.headers, json={"name": "Two\nLines"}
    )
    error = assert_error(refused, 422, "VALIDATION_ERROR")
    assert [(d["field"], d["type"]) for d in error["details"]] == [("name", "control_character")]


@pytest.mark.parametrize(
    ("query", "detail_type"),
    [
        ("since=2026-01-01T00:00:00", "timezone_aware"),
        ("until=2026-01-01T00:00:00", "timezone_aware"),
        ("since=0001-01-01T00:00:00%2B14:00", "datetime_out_of_range"),
        ("until=9999-12-31T23:59:59-14:00", "datetime_out_of_range"),
        ("event_type=user.created%00", "control_character"),
    ],
)
async def test_audit_filters_refuse_ambiguous_times_and_control_characters(
    client: httpx.AsyncClient, owner: Account, query: str, detail_type: str
) -> None:
    """A time without an offset, one outside years 1-9999, or a NUL: 422, never a 500."""
    for path in ("audit-events", "audit-events/export"):
        response = await client.get(f"{owner.org_url}/{path}?{query}", headers=owner.headers)
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert [d["type"] for d in error["details"]] == [detail_type]
        assert error["details"][0]["field"] == "query." + query.split("=")[0]


async def test_audit_times_with_an_offset_filter_by_instant(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """`since` in another offset means the same instant as in UTC (on both backends)."""
    events = (await client.get(f"{owner.org_url}/audit-events", headers=owner.headers)).json()
    newest = events["items"][0]["occurred_at"]  # e.g. 2026-05-01T10:00:00.123456Z
    # The same instant written at UTC+05:30 still includes the newest event.
    instant = datetime.fromisoformat(newest.replace("Z", "+00:00"))
    shifted = instant.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    response = await client.get(
        f"{owner.org_url}/audit-events", headers=owner.headers, params={"since": shifted}
    )
    assert response.status_code == 200, response.text
    assert [e["id"] for e in response.json()["items"]][-1] == events["items"][0]["id"]


@pytest.fixture
async def service_client(client: httpx.AsyncClient, owner: Account) -> tuple[str, str]:
    response = await client.post(
        f"{owner.org_url}/service-clients", headers=owner.headers, json={"name": "Rules API"}
    )
    assert response.status_code == 201, response.text
    return response.json()["client_id"], response.json()["client_secret"]


def basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.mark.parametrize(
    "credentials",
    [b"sc_\x00:secret", b"sc_abc:se\x00cret", b"sc_\x1b[2J:x", b"sc_\xc2\x85:x", b"\xff\xfe:x"],
    ids=["nul-in-id", "nul-in-secret", "escape-in-id", "c1-in-id", "invalid-utf8"],
)
async def test_control_characters_in_basic_credentials_are_a_401(
    client: httpx.AsyncClient, credentials: bytes
) -> None:
    """Hostile HTTP Basic credentials fail like wrong ones: 401 INVALID_CLIENT, no 500."""
    response = await client.post(
        "/api/v1/auth/introspect", data={"token": "anything"}, headers=basic(credentials)
    )
    assert_error(response, 401, "INVALID_CLIENT")
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"token": "fmr_\\ud800abc"}'),
        ("application/json", b'{"token": "fmr_abc\\u0000def"}'),
        ("application/json", b'{"token": "eyJ\\u001b[2J"}'),
        ("application/x-www-form-urlencoded", b"token=fmr_abc%00def"),
        ("application/x-www-form-urlencoded", b"token=fmr_%C2%85"),
    ],
    ids=["json-surrogate", "json-nul", "json-escape", "form-nul", "form-c1"],
)
async def test_hostile_introspection_tokens_are_a_400(
    client: httpx.AsyncClient,
    service_client: tuple[str, str],
    content_type: str,
    body: bytes,
) -> None:
    """A token with control characters or a lone surrogate: 400 INVALID_REQUEST."""
    client_id, secret = service_client
    response = await client.post(
        "/api/v1/auth/introspect",
        content=body,
        headers={"Content-Type": content_type, **basic(f"{client_id}:{secret}".encode())},
    )
    assert_error(response, 400, "INVALID_REQUEST")


async def test_absurdly_nested_introspection_json_is_a_400(
    client: httpx.AsyncClient, service_client: tuple[str, str]
) -> None:
    """100 000 nested arrays are malformed JSON (400 INVALID_JSON), not a RecursionError."""
    client_id, secret = service_client
    response = await client.post(
        "/api/v1/auth/introspect",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={"Content-Type": "application/json", **basic(f"{client_id}:{secret}".encode())},
    )
    assert_error(response, 400, "INVALID_JSON")


async def test_audit_log_keeps_no_control_characters_from_the_user_agent(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A User-Agent with C1 controls (they pass HTTP parsers as Latin-1) is stored cleaned."""
    response = await client.post(
        f"{owner.org_url}/teams",
        headers={**owner.headers, "User-Agent": b"curl/8\x85\x9b31m fake-line"},
        json={"name": "Agent Check"},
    )
    assert response.status_code == 201, response.text
    events = await client.get(
        f"{owner.org_url}/audit-events",
        headers=owner.headers,
        params={"event_type": "team.created"},
    )
    agent = events.json()["items"][0]["user_agent"]
    assert agent == "curl/8\ufffd\ufffd31m fake-line"
    assert json.dumps(agent).isascii()

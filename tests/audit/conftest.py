"""Helpers for audit tests: read the log over the API, find the events a request caused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Account

TEST_CLIENT_IP = "203.0.113.7"
USER_AGENT = "audit-tests/1.0 (+https://example.com)"


@pytest.fixture(autouse=True)
def identified_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Every request of these tests carries a recognisable User-Agent."""
    client.headers["User-Agent"] = USER_AGENT
    return client


async def audit_events(
    client: httpx.AsyncClient, reader: Account, **params: Any
) -> list[dict[str, Any]]:
    """One page (up to 500) of the reader's organization's audit log, newest first."""
    response = await client.get(
        f"{reader.org_url}/audit-events",
        headers=reader.headers,
        params={"limit": 500, **params},
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def events_caused_by(
    client: httpx.AsyncClient, reader: Account, response: httpx.Response
) -> list[dict[str, Any]]:
    """The audit events written while serving ``response`` (matched on its X-Request-ID)."""
    request_id = response.headers["x-request-id"]
    return [e for e in await audit_events(client, reader) if e["request_id"] == request_id]


async def single_event(
    client: httpx.AsyncClient, reader: Account, response: httpx.Response, event_type: str
) -> dict[str, Any]:
    """The one event of ``event_type`` that ``response``'s request caused."""
    matching = [
        e for e in await events_caused_by(client, reader, response) if e["event_type"] == event_type
    ]
    assert len(matching) == 1, (event_type, matching)
    return matching[0]


def assert_recorded(
    event: dict[str, Any],
    *,
    org_id: str,
    actor_id: str | None,
    target_type: str | None,
    target_id: str | None,
    outcome: str = "success",
) -> None:
    """Who, on what, with which outcome, and from where (the test client's address)."""
    assert event["organization_id"] == org_id
    assert event["actor_id"] == actor_id
    assert event["target_type"] == target_type
    assert event["target_id"] == target_id
    assert event["outcome"] == outcome
    assert event["ip_address"] == TEST_CLIENT_IP
    assert event["user_agent"] == USER_AGENT

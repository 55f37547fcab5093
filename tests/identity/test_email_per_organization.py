"""Email addresses are unique per organization, so no tenant can probe another's members.

An address that has an account in another organization gets exactly the answer an
unknown address gets (status, body shape, audit) from sign-up, create-user, invite and
invitation acceptance. Only an address already in *this* organization is EMAIL_TAKEN.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.audit.conftest import events_caused_by
from tests.conftest import PASSWORD, SYSTEM_ROLE_IDS, Account, login, sign_up, unique_email

REGISTER = "/api/v1/auth/register"


def shape(value: Any) -> Any:
    """The structure of a JSON body: keys and value types, not the values themselves."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def audit_view(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What an audit reader learns from events, minus the ids and times that always differ."""
    return sorted(
        (e["event_type"], e["outcome"], e["target_type"], sorted(e["details"].items()))
        for e in events
    )


async def stranger_elsewhere(client: httpx.AsyncClient) -> Account:
    """An account in another organization, whose address the tests then reuse."""
    return await sign_up(client, org_name="Elsewhere")


async def assert_same_answer(
    reader: Account,
    client: httpx.AsyncClient,
    unknown: httpx.Response,
    known_elsewhere: httpx.Response,
) -> None:
    assert known_elsewhere.status_code == unknown.status_code, known_elsewhere.text
    assert shape(known_elsewhere.json()) == shape(unknown.json())
    assert audit_view(await events_caused_by(client, reader, known_elsewhere)) == audit_view(
        await events_caused_by(client, reader, unknown)
    )


async def assert_nothing_recorded_in(
    client: httpx.AsyncClient, other: Account, response: httpx.Response
) -> None:
    """The organization that really holds the address hears nothing of the request."""
    assert await events_caused_by(client, other, response) == []


def register_body(email: str) -> dict[str, Any]:
    return {
        "organization_name": "Probe Co",
        "email": email,
        "password": PASSWORD,
        "full_name": "Pat Probe",
    }


async def owner_of(client: httpx.AsyncClient, response: httpx.Response, email: str) -> Account:
    """Log in the owner that a sign-up ``response`` created (its organization named)."""
    org_id = response.json()["organization"]["id"]
    logged_in = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": PASSWORD, "organization_id": org_id},
    )
    assert logged_in.status_code == 200, logged_in.text
    tokens = logged_in.json()
    return Account(
        email,
        PASSWORD,
        response.json()["user"]["id"],
        org_id,
        tokens["access_token"],
        tokens["refresh_token"],
    )


async def test_sign_up_with_an_address_used_elsewhere(client: httpx.AsyncClient) -> None:
    """Signing up a new organization answers alike for unknown and elsewhere-used addresses."""
    other = await stranger_elsewhere(client)
    unknown_email = unique_email("fresh")
    unknown = await client.post(REGISTER, json=register_body(unknown_email))
    known = await client.post(REGISTER, json=register_body(other.email))
    assert unknown.status_code == known.status_code == 201, known.text
    assert shape(known.json()) == shape(unknown.json())
    assert known.json()["user"]["email"] == other.email
    assert known.json()["organization"]["id"] != other.org_id

    fresh_owner = await owner_of(client, unknown, unknown_email)
    second_owner = await owner_of(client, known, other.email)
    assert audit_view(await events_caused_by(client, second_owner, known)) == audit_view(
        await events_caused_by(client, fresh_owner, unknown)
    )
    await assert_nothing_recorded_in(client, other, known)


async def test_create_user_with_an_address_used_elsewhere(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """create-user answers alike for unknown and elsewhere-used addresses."""
    other = await stranger_elsewhere(client)

    async def create(email: str) -> httpx.Response:
        return await client.post(
            f"{owner.org_url}/users",
            headers=owner.headers,
            json={"email": email, "password": PASSWORD, "full_name": "Pat Doe"},
        )

    unknown = await create(unique_email("fresh"))
    known = await create(other.email)
    assert known.status_code == 201
    assert known.json()["organization_id"] == owner.org_id
    await assert_same_answer(owner, client, unknown, known)
    await assert_nothing_recorded_in(client, other, known)
    # Each organization keeps its own, separate account for the address.
    theirs = await client.get(f"{other.org_url}/users/{other.user_id}", headers=other.headers)
    assert theirs.status_code == 200
    assert theirs.json()["id"] != known.json()["id"]


async def test_invite_and_accept_with_an_address_used_elsewhere(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Invitation and acceptance answer alike for unknown and elsewhere-used addresses."""
    other = await stranger_elsewhere(client)

    async def invite(email: str) -> httpx.Response:
        return await client.post(
            f"{owner.org_url}/invitations",
            headers=owner.headers,
            json={"email": email, "role_id": SYSTEM_ROLE_IDS["member"]},
        )

    async def accept(invitation: httpx.Response, email: str) -> httpx.Response:
        return await client.post(
            REGISTER,
            json={
                "invitation_token": invitation.json()["token"],
                "email": email,
                "password": PASSWORD,
                "full_name": "New Joiner",
            },
        )

    unknown_email = unique_email("fresh")
    unknown = await invite(unknown_email)
    known = await invite(other.email)
    assert known.status_code == 201
    await assert_same_answer(owner, client, unknown, known)
    await assert_nothing_recorded_in(client, other, known)

    joined_unknown = await accept(unknown, unknown_email)
    joined_known = await accept(known, other.email)
    assert joined_known.status_code == 201, joined_known.text
    assert joined_known.json()["user"]["organization_id"] == owner.org_id
    await assert_same_answer(owner, client, joined_unknown, joined_known)
    await assert_nothing_recorded_in(client, other, joined_known)


async def test_address_taken_in_this_organization_is_still_a_conflict(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Inside one organization an address stays unique, also under concurrent creation."""
    email = unique_email("twice")

    async def create() -> httpx.Response:
        return await client.post(
            f"{owner.org_url}/users",
            headers=owner.headers,
            json={"email": email, "password": PASSWORD, "full_name": "Pat Doe"},
        )

    first, second = await asyncio.gather(create(), create())
    statuses = sorted([first.status_code, second.status_code])
    assert statuses == [201, 409], (first.text, second.text)
    loser = first if first.status_code == 409 else second
    assert loser.json()["error"]["code"] == "EMAIL_TAKEN"
    users = await client.get(f"{owner.org_url}/users?limit=200", headers=owner.headers)
    assert [u["email"] for u in users.json()["items"]].count(email) == 1
    assert (await login(client, email, PASSWORD))["access_token"]

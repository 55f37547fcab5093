"""Login when one address has accounts in several organizations.

The account is chosen before any password is checked: the one in the organization the
request names, or else an active account in a live organization first, then the oldest.
Exactly one password verification runs whatever the number of accounts, and every
refusal is the same 401.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from faultmaven_auth.identity.passwords import VerifyResult
from faultmaven_auth.runtime import Runtime
from tests.conftest import PASSWORD, SYSTEM_ROLE_IDS, Account, sign_up, unique_email

LOGIN = "/api/v1/auth/login"
OTHER_PASSWORD = "Another-Strong-Pass-77"


async def second_account(
    client: httpx.AsyncClient, owner: Account, email: str, password: str
) -> str:
    """Create ``email`` as a member of ``owner``'s organization; its user id."""
    response = await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={"email": email, "password": password, "full_name": "Second Account"},
    )
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


async def me_of(client: httpx.AsyncClient, tokens: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_without_request_id(response: httpx.Response) -> dict[str, Any]:
    return {k: v for k, v in response.json()["error"].items() if k != "request_id"}


@pytest.fixture
def verifications(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The stored hashes each password verification of the test ran against."""
    calls: list[str | None] = []
    original = runtime.hasher.verify

    async def spy(password_hash: str | None, password: str) -> VerifyResult:
        calls.append(password_hash)
        return await original(password_hash, password)

    monkeypatch.setattr(runtime.hasher, "verify", spy)
    return calls


async def test_organization_id_picks_the_account(client: httpx.AsyncClient) -> None:
    """With organization_id, that organization's account (and its password) is used."""
    first = await sign_up(client, org_name="First")
    second = await sign_up(client, org_name="Second")
    user_id = await second_account(client, second, first.email, OTHER_PASSWORD)

    chosen = await client.post(
        LOGIN,
        json={"email": first.email, "password": OTHER_PASSWORD, "organization_id": second.org_id},
    )
    assert chosen.status_code == 200, chosen.text
    profile = await me_of(client, chosen.json())
    assert (profile["id"], profile["organization_id"]) == (user_id, second.org_id)

    own = await client.post(
        LOGIN, json={"email": first.email, "password": PASSWORD, "organization_id": first.org_id}
    )
    assert own.status_code == 200, own.text
    assert (await me_of(client, own.json()))["organization_id"] == first.org_id


async def test_without_organization_id_the_oldest_account_is_used(
    client: httpx.AsyncClient, verifications: list[str | None]
) -> None:
    """No organization_id: the oldest active account; the other's password is a plain 401."""
    first = await sign_up(client, org_name="First")
    second = await sign_up(client, org_name="Second")
    third = await sign_up(client, org_name="Third")
    for owner in (second, third):
        await second_account(client, owner, first.email, OTHER_PASSWORD)

    verifications.clear()
    picked = await client.post(LOGIN, json={"email": first.email, "password": PASSWORD})
    assert picked.status_code == 200, picked.text
    assert (await me_of(client, picked.json()))["organization_id"] == first.org_id
    assert len(verifications) == 1

    verifications.clear()
    other = await client.post(LOGIN, json={"email": first.email, "password": OTHER_PASSWORD})
    wrong = await client.post(LOGIN, json={"email": first.email, "password": "Wrong-Pass-123"})
    assert other.status_code == wrong.status_code == 401
    assert error_without_request_id(other) == error_without_request_id(wrong)
    # One verification per attempt, however many accounts share the address.
    assert len(verifications) == 2
    assert verifications[0] == verifications[1] is not None


async def test_inactive_accounts_are_passed_over(client: httpx.AsyncClient, owner: Account) -> None:
    """An older deactivated account does not shadow the address's active one."""
    elsewhere = await sign_up(client, org_name="Elsewhere")
    user_id = await second_account(client, elsewhere, owner.email, OTHER_PASSWORD)
    # Deactivate the older account (the owner's) by making another owner first.
    helper = await second_account(client, owner, unique_email("helper"), PASSWORD)
    promoted = await client.put(
        f"{owner.org_url}/users/{helper}/roles",
        headers=owner.headers,
        json={"role_ids": [SYSTEM_ROLE_IDS["owner"]]},
    )
    assert promoted.status_code == 200, promoted.text
    gone = await client.delete(f"{owner.org_url}/users/{owner.user_id}", headers=owner.headers)
    assert gone.status_code == 200, gone.text

    response = await client.post(LOGIN, json={"email": owner.email, "password": OTHER_PASSWORD})
    assert response.status_code == 200, response.text
    assert (await me_of(client, response.json()))["id"] == user_id


async def test_organization_without_that_account_is_a_plain_401(
    client: httpx.AsyncClient, owner: Account, verifications: list[str | None]
) -> None:
    """Naming an organization where the address has no account: same 401, one dummy check."""
    stranger = await sign_up(client, org_name="Stranger")
    attempts = {
        "other org": {"organization_id": stranger.org_id, "password": PASSWORD},
        "no such org": {"organization_id": str(uuid.uuid4()), "password": PASSWORD},
        "wrong password": {"organization_id": owner.org_id, "password": "Wrong-Pass-123"},
    }
    answers = {}
    for name, extra in attempts.items():
        verifications.clear()
        response = await client.post(LOGIN, json={"email": owner.email, **extra})
        assert response.status_code == 401, (name, response.text)
        answers[name] = error_without_request_id(response)
        assert len(verifications) == 1, name
        assert (verifications[0] is None) == (name != "wrong password"), name
    assert answers["other org"] == answers["no such org"] == answers["wrong password"]
    assert answers["other org"]["code"] == "INVALID_CREDENTIALS"


async def test_malformed_organization_id_is_a_validation_error(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """organization_id must be a UUID: anything else is 422, before any lookup."""
    response = await client.post(
        LOGIN,
        json={"email": owner.email, "password": PASSWORD, "organization_id": "acme"},
    )
    assert response.status_code == 422, response.text

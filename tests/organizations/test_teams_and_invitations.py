"""Teams and their members, invitations and joining by token, and the organization itself."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import (
    PASSWORD,
    SYSTEM_ROLE_IDS,
    Account,
    add_member,
    login,
    sign_up,
    unique_email,
)
from tests.organizations.conftest import create_team, invite

REGISTER = "/api/v1/auth/register"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def join_body(token: str, email: str) -> dict[str, Any]:
    return {
        "invitation_token": token,
        "email": email,
        "password": PASSWORD,
        "full_name": "New Joiner",
    }


async def me(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    response = await client.get("/api/v1/auth/me", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- teams --------------------------------------------------------------------------


async def test_team_create_read_update_delete(client: httpx.AsyncClient, owner: Account) -> None:
    """A team can be created, read, listed, renamed and deleted."""
    created = await client.post(
        f"{owner.org_url}/teams",
        headers=owner.headers,
        json={"name": "Platform", "description": "Runs the platform"},
    )
    assert created.status_code == 201, created.text
    team = created.json()
    assert team["organization_id"] == owner.org_id
    assert (team["name"], team["description"]) == ("Platform", "Runs the platform")
    url = f"{owner.org_url}/teams/{team['id']}"
    assert (await client.get(url, headers=owner.headers)).json() == team
    listed = await client.get(f"{owner.org_url}/teams", headers=owner.headers)
    assert listed.json() == [team]

    renamed = await client.patch(url, headers=owner.headers, json={"name": "Infrastructure"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Infrastructure"
    assert renamed.json()["description"] == "Runs the platform"
    assert (await client.get(url, headers=owner.headers)).json()["name"] == "Infrastructure"

    assert (await client.delete(url, headers=owner.headers)).status_code == 204
    assert_error(await client.get(url, headers=owner.headers), 404, "TEAM_NOT_FOUND")
    assert (await client.get(f"{owner.org_url}/teams", headers=owner.headers)).json() == []


async def test_team_members_add_list_remove(client: httpx.AsyncClient, owner: Account) -> None:
    """Members are added, listed, shown in /auth/me team_ids, and removed."""
    member = await add_member(client, owner, "member")
    team = await create_team(client, owner, "Support")
    members_url = f"{owner.org_url}/teams/{team['id']}/members"
    added = await client.post(members_url, headers=owner.headers, json={"user_id": member.user_id})
    assert added.status_code == 201, added.text
    assert added.json()["id"] == member.user_id
    # Adding again is harmless: still one membership.
    again = await client.post(members_url, headers=owner.headers, json={"user_id": member.user_id})
    assert again.status_code == 201
    listed = await client.get(members_url, headers=owner.headers)
    assert [u["id"] for u in listed.json()] == [member.user_id]
    assert (await me(client, member))["team_ids"] == [team["id"]]
    assert (await me(client, owner))["team_ids"] == []

    removed = await client.delete(f"{members_url}/{member.user_id}", headers=owner.headers)
    assert removed.status_code == 204
    assert (await client.get(members_url, headers=owner.headers)).json() == []
    assert (await me(client, member))["team_ids"] == []
    assert_error(
        await client.delete(f"{members_url}/{member.user_id}", headers=owner.headers),
        404,
        "TEAM_MEMBER_NOT_FOUND",
    )


async def test_deleting_a_team_ends_its_memberships(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """After a team is deleted its former members no longer list it."""
    member = await add_member(client, owner, "member")
    team = await create_team(client, owner, "Temporary")
    await client.post(
        f"{owner.org_url}/teams/{team['id']}/members",
        headers=owner.headers,
        json={"user_id": member.user_id},
    )
    assert (await me(client, member))["team_ids"] == [team["id"]]
    deleted = await client.delete(f"{owner.org_url}/teams/{team['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    assert (await me(client, member))["team_ids"] == []


async def test_team_names_are_unique(client: httpx.AsyncClient, owner: Account) -> None:
    """Creating or renaming a team to a taken name is 409 TEAM_NAME_TAKEN."""
    await create_team(client, owner, "Alpha")
    beta = await create_team(client, owner, "Beta")
    duplicate = await client.post(
        f"{owner.org_url}/teams", headers=owner.headers, json={"name": "Alpha"}
    )
    assert_error(duplicate, 409, "TEAM_NAME_TAKEN")
    rename = await client.patch(
        f"{owner.org_url}/teams/{beta['id']}", headers=owner.headers, json={"name": "Alpha"}
    )
    assert_error(rename, 409, "TEAM_NAME_TAKEN")
    teams = await client.get(f"{owner.org_url}/teams", headers=owner.headers)
    assert [t["name"] for t in teams.json()] == ["Alpha", "Beta"]


async def test_same_team_name_in_two_organizations(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Team names are unique per organization, not globally."""
    await create_team(client, owner, "Platform")
    other = await sign_up(client, org_name="Other")
    assert (await create_team(client, other, "Platform"))["organization_id"] == other.org_id


# -- invitations --------------------------------------------------------------------


async def test_invitation_token_is_shown_once(client: httpx.AsyncClient, owner: Account) -> None:
    """Creation returns the token; the invitation listing never includes it."""
    email = unique_email("Invitee").upper()
    invitation = await invite(client, owner, email, role="viewer")
    assert invitation["token"].startswith("fmi_")
    assert invitation["email"] == email.lower()
    assert invitation["accepted_at"] is None
    assert invitation["revoked_at"] is None
    listed = await client.get(f"{owner.org_url}/invitations", headers=owner.headers)
    assert listed.status_code == 200
    expected = {k: v for k, v in invitation.items() if k != "token"}
    assert listed.json() == [expected]
    assert invitation["token"] not in listed.text


async def test_joining_by_invitation_gives_the_invited_role(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Registering with the token creates the user in the inviting org with the invited role."""
    email = unique_email("joiner")
    invitation = await invite(client, owner, email, role="admin")
    joined = await client.post(REGISTER, json=join_body(invitation["token"], email))
    assert joined.status_code == 201, joined.text
    body = joined.json()
    assert body["organization"]["id"] == owner.org_id
    assert body["user"]["organization_id"] == owner.org_id
    assert body["user"]["email"] == email

    tokens = await login(client, email, PASSWORD)
    joiner = Account(email, PASSWORD, body["user"]["id"], owner.org_id, tokens["access_token"], "")
    profile = await me(client, joiner)
    assert profile["organization_id"] == owner.org_id
    assert profile["roles"] == ["admin"]
    listed = await client.get(f"{owner.org_url}/invitations", headers=owner.headers)
    assert listed.json()[0]["accepted_at"] is not None
    users = await client.get(f"{owner.org_url}/users", headers=owner.headers)
    assert body["user"]["id"] in {u["id"] for u in users.json()["items"]}


async def test_invitation_token_cannot_be_reused(client: httpx.AsyncClient, owner: Account) -> None:
    """A second registration with an accepted token is 400 INVALID_INVITATION."""
    email = unique_email("joiner")
    invitation = await invite(client, owner, email)
    assert (
        await client.post(REGISTER, json=join_body(invitation["token"], email))
    ).status_code == 201
    reuse = await client.post(REGISTER, json=join_body(invitation["token"], unique_email("other")))
    assert_error(reuse, 400, "INVALID_INVITATION")
    same = await client.post(REGISTER, json=join_body(invitation["token"], email))
    assert_error(same, 400, "INVALID_INVITATION")


async def test_invitation_is_bound_to_its_email(client: httpx.AsyncClient, owner: Account) -> None:
    """Registering with the token under another email is 400 and creates nobody."""
    email = unique_email("invitee")
    invitation = await invite(client, owner, email)
    wrong_email = unique_email("thief")
    wrong = await client.post(REGISTER, json=join_body(invitation["token"], wrong_email))
    assert_error(wrong, 400, "INVALID_INVITATION")
    login_attempt = await client.post(
        "/api/v1/auth/login", json={"email": wrong_email, "password": PASSWORD}
    )
    assert login_attempt.status_code == 401
    # The rightful invitee can still use it.
    assert (
        await client.post(REGISTER, json=join_body(invitation["token"], email))
    ).status_code == 201


async def test_unknown_invitation_token_is_refused(client: httpx.AsyncClient) -> None:
    """A made-up token is 400 INVALID_INVITATION."""
    response = await client.post(REGISTER, json=join_body("fmi_made-up", unique_email("x")))
    assert_error(response, 400, "INVALID_INVITATION")


async def test_revoked_invitation_cannot_be_used(client: httpx.AsyncClient, owner: Account) -> None:
    """After revocation the token is 400 INVALID_INVITATION; the listing shows revoked_at."""
    email = unique_email("invitee")
    invitation = await invite(client, owner, email)
    revoked = await client.delete(
        f"{owner.org_url}/invitations/{invitation['id']}", headers=owner.headers
    )
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    response = await client.post(REGISTER, json=join_body(invitation["token"], email))
    assert_error(response, 400, "INVALID_INVITATION")
    listed = await client.get(f"{owner.org_url}/invitations", headers=owner.headers)
    assert listed.json()[0]["revoked_at"] is not None


async def test_accepted_invitation_cannot_be_revoked(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Revoking an accepted invitation is 409 INVITATION_ACCEPTED."""
    email = unique_email("invitee")
    invitation = await invite(client, owner, email)
    assert (
        await client.post(REGISTER, json=join_body(invitation["token"], email))
    ).status_code == 201
    response = await client.delete(
        f"{owner.org_url}/invitations/{invitation['id']}", headers=owner.headers
    )
    assert_error(response, 409, "INVITATION_ACCEPTED")


async def test_inviting_a_member_of_this_organization_is_a_conflict(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """An invitation to an address that is already a member here is 409 EMAIL_TAKEN."""
    member = await add_member(client, owner, "member", login_too=False)
    for email in (member.email, member.email.upper(), owner.email):
        response = await client.post(
            f"{owner.org_url}/invitations",
            headers=owner.headers,
            json={"email": email, "role_id": SYSTEM_ROLE_IDS["member"]},
        )
        assert_error(response, 409, "EMAIL_TAKEN")
    assert (await client.get(f"{owner.org_url}/invitations", headers=owner.headers)).json() == []


async def test_invitee_who_became_a_member_meanwhile_cannot_join_twice(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """If an admin adds the invited address as a member first, accepting is 409 EMAIL_TAKEN."""
    email = unique_email("invitee")
    invitation = await invite(client, owner, email)
    created = await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={"email": email, "password": PASSWORD, "full_name": "Added Directly"},
    )
    assert created.status_code == 201, created.text
    response = await client.post(REGISTER, json=join_body(invitation["token"], email))
    assert_error(response, 409, "EMAIL_TAKEN")


async def test_invitee_who_registered_elsewhere_can_still_join(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Signing up an own organization first does not block the invitation (per-org emails)."""
    email = unique_email("invitee")
    invitation = await invite(client, owner, email)
    own = await client.post(
        REGISTER,
        json={
            "organization_name": "Own Org",
            "email": email,
            "password": PASSWORD,
            "full_name": "Early Bird",
        },
    )
    assert own.status_code == 201
    response = await client.post(REGISTER, json=join_body(invitation["token"], email))
    assert response.status_code == 201, response.text
    assert response.json()["user"]["organization_id"] == owner.org_id
    assert response.json()["user"]["id"] != own.json()["user"]["id"]


# -- the organization ---------------------------------------------------------------


async def test_organization_can_be_renamed(client: httpx.AsyncClient, owner: Account) -> None:
    """PATCH name renames the organization; the slug stays."""
    before = (await client.get(owner.org_url, headers=owner.headers)).json()
    assert before["name"] == "Acme"
    response = await client.patch(owner.org_url, headers=owner.headers, json={"name": "Acme Two"})
    assert response.status_code == 200
    assert response.json()["name"] == "Acme Two"
    after = (await client.get(owner.org_url, headers=owner.headers)).json()
    assert after["name"] == "Acme Two"
    assert after["slug"] == before["slug"]


async def test_deleted_organization_stops_working(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """DELETE is 204; afterwards the members' tokens, refresh tokens and logins all fail."""
    member = await add_member(client, owner, "member")
    response = await client.delete(owner.org_url, headers=owner.headers)
    assert response.status_code == 204
    for account in (owner, member):
        for url in ("/api/v1/auth/me", owner.org_url, f"{owner.org_url}/users"):
            after = await client.get(url, headers=account.headers)
            assert_error(after, 401, "INVALID_TOKEN")
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        assert refreshed.status_code == 401
        relogin = await client.post(
            "/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}
        )
        assert_error(relogin, 401, "INVALID_CREDENTIALS")


async def test_invitation_to_a_deleted_organization_is_dead(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A pending invitation cannot be accepted once its organization is deleted."""
    email = unique_email("invitee")
    invitation = await invite(client, owner, email)
    assert (await client.delete(owner.org_url, headers=owner.headers)).status_code == 204
    response = await client.post(REGISTER, json=join_body(invitation["token"], email))
    assert_error(response, 400, "INVALID_INVITATION")

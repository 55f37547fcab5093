"""Every security-relevant change lands in the audit log, with who, what, and from where.

Each test makes a change over the API, then finds the event it caused through
GET /audit-events by the request id the response carried in ``X-Request-ID``.
"""

from __future__ import annotations

import httpx

from tests.audit.conftest import assert_recorded, events_caused_by, single_event
from tests.conftest import (
    PASSWORD,
    SYSTEM_ROLE_IDS,
    Account,
    add_member,
    login,
    unique_email,
)


async def test_registration_is_audited(client: httpx.AsyncClient) -> None:
    """Sign-up records auth.registered by the new owner, about the new user."""
    email = unique_email("registrant")
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "organization_name": "Audited Inc",
            "email": email,
            "password": PASSWORD,
            "full_name": "Reg Istrant",
        },
    )
    assert response.status_code == 201, response.text
    user_id = response.json()["user"]["id"]
    org_id = response.json()["organization"]["id"]
    tokens = await login(client, email, PASSWORD)
    reader = Account(email, PASSWORD, user_id, org_id, tokens["access_token"], "")

    event = await single_event(client, reader, response, "auth.registered")
    assert_recorded(event, org_id=org_id, actor_id=user_id, target_type="user", target_id=user_id)


async def test_login_success_and_failure_are_audited(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A wrong password records auth.login.failed (failure); a good one auth.login.succeeded."""
    failed = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": "Wrong-Password-99"}
    )
    assert failed.status_code == 401
    succeeded = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    )
    assert succeeded.status_code == 200

    failure = await single_event(client, owner, failed, "auth.login.failed")
    assert_recorded(
        failure,
        org_id=owner.org_id,
        actor_id=owner.user_id,
        target_type="user",
        target_id=owner.user_id,
        outcome="failure",
    )
    success = await single_event(client, owner, succeeded, "auth.login.succeeded")
    assert_recorded(
        success,
        org_id=owner.org_id,
        actor_id=owner.user_id,
        target_type="user",
        target_id=owner.user_id,
    )
    # Nothing secret is kept in the record.
    assert "Wrong-Password-99" not in str(failure)
    assert PASSWORD not in str(success)


async def test_refresh_and_logout_are_audited(client: httpx.AsyncClient, owner: Account) -> None:
    """Refreshing records auth.token.refreshed and logging out auth.logout, on the session."""
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
    )
    assert refreshed.status_code == 200
    new_access = refreshed.json()["access_token"]
    logged_out = await client.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {new_access}"}
    )
    assert logged_out.status_code == 204
    # The logged-out session cannot read the log any more; a fresh one can.
    reader = Account(
        owner.email,
        PASSWORD,
        owner.user_id,
        owner.org_id,
        (await login(client, owner.email, PASSWORD))["access_token"],
        "",
    )

    refresh_event = await single_event(client, reader, refreshed, "auth.token.refreshed")
    logout_event = await single_event(client, reader, logged_out, "auth.logout")
    for event in (refresh_event, logout_event):
        assert_recorded(
            event,
            org_id=owner.org_id,
            actor_id=owner.user_id,
            target_type="session",
            target_id=event["target_id"],
        )
    # Both name the same session (refresh keeps the family; logout ends it).
    assert refresh_event["target_id"] == logout_event["target_id"]
    assert refresh_event["target_id"]
    assert PASSWORD not in str(refresh_event)
    assert owner.refresh_token not in str(refresh_event)


async def test_user_created_updated_and_deactivated_are_audited(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Creating, renaming and deactivating a member each record one event about that member."""
    created = await client.post(
        f"{owner.org_url}/users",
        headers=owner.headers,
        json={"email": unique_email("audited"), "password": PASSWORD, "full_name": "A Member"},
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    updated = await client.patch(
        f"{owner.org_url}/users/{user_id}", headers=owner.headers, json={"full_name": "Renamed"}
    )
    assert updated.status_code == 200
    deactivated = await client.delete(f"{owner.org_url}/users/{user_id}", headers=owner.headers)
    assert deactivated.status_code == 200

    for response, event_type in (
        (created, "user.created"),
        (updated, "user.updated"),
        (deactivated, "user.deactivated"),
    ):
        event = await single_event(client, owner, response, event_type)
        assert_recorded(
            event,
            org_id=owner.org_id,
            actor_id=owner.user_id,
            target_type="user",
            target_id=user_id,
        )
    update_event = await single_event(client, owner, updated, "user.updated")
    assert update_event["details"] == {"changed": ["full_name"]}


async def test_role_changes_are_audited(client: httpx.AsyncClient, owner: Account) -> None:
    """Replacing member by viewer records role.assigned (viewer) and role.removed (member)."""
    member = await add_member(client, owner, "member", login_too=False)
    response = await client.put(
        f"{owner.org_url}/users/{member.user_id}/roles",
        headers=owner.headers,
        json={"role_ids": [SYSTEM_ROLE_IDS["viewer"]]},
    )
    assert response.status_code == 200, response.text

    assigned = await single_event(client, owner, response, "role.assigned")
    removed = await single_event(client, owner, response, "role.removed")
    for event in (assigned, removed):
        assert_recorded(
            event,
            org_id=owner.org_id,
            actor_id=owner.user_id,
            target_type="user",
            target_id=member.user_id,
        )
    assert assigned["details"]["role_id"] == SYSTEM_ROLE_IDS["viewer"]
    assert removed["details"]["role_id"] == SYSTEM_ROLE_IDS["member"]


async def test_team_changes_are_audited(client: httpx.AsyncClient, owner: Account) -> None:
    """Team create, update, member add/remove and delete each record an event on the team."""
    member = await add_member(client, owner, "member", login_too=False)
    created = await client.post(
        f"{owner.org_url}/teams", headers=owner.headers, json={"name": "SRE"}
    )
    assert created.status_code == 201, created.text
    team_url = f"{owner.org_url}/teams/{created.json()['id']}"
    responses = {"team.created": created}
    responses["team.updated"] = await client.patch(
        team_url, headers=owner.headers, json={"description": "on call"}
    )
    responses["team.member_added"] = await client.post(
        f"{team_url}/members", headers=owner.headers, json={"user_id": member.user_id}
    )
    responses["team.member_removed"] = await client.delete(
        f"{team_url}/members/{member.user_id}", headers=owner.headers
    )
    responses["team.deleted"] = await client.delete(team_url, headers=owner.headers)
    assert [r.status_code for r in responses.values()] == [201, 200, 201, 204, 204]

    for event_type, response in responses.items():
        event = await single_event(client, owner, response, event_type)
        assert_recorded(
            event,
            org_id=owner.org_id,
            actor_id=owner.user_id,
            target_type="team",
            target_id=created.json()["id"],
        )


async def test_invitation_changes_are_audited(client: httpx.AsyncClient, owner: Account) -> None:
    """Inviting, revoking and accepting invitations are recorded; acceptance by the invitee."""
    invitee = unique_email("invitee")
    invited = await client.post(
        f"{owner.org_url}/invitations",
        headers=owner.headers,
        json={"email": invitee, "role_id": SYSTEM_ROLE_IDS["member"]},
    )
    assert invited.status_code == 201, invited.text
    spare = await client.post(
        f"{owner.org_url}/invitations",
        headers=owner.headers,
        json={"email": unique_email("spare"), "role_id": SYSTEM_ROLE_IDS["viewer"]},
    )
    assert spare.status_code == 201
    revoked = await client.delete(
        f"{owner.org_url}/invitations/{spare.json()['id']}", headers=owner.headers
    )
    assert revoked.status_code == 200
    accepted = await client.post(
        "/api/v1/auth/register",
        json={
            "invitation_token": invited.json()["token"],
            "email": invitee,
            "password": PASSWORD,
            "full_name": "In Vitee",
        },
    )
    assert accepted.status_code == 201, accepted.text
    new_user_id = accepted.json()["user"]["id"]

    for response, event_type, invitation_id in (
        (invited, "invitation.created", invited.json()["id"]),
        (revoked, "invitation.revoked", spare.json()["id"]),
    ):
        event = await single_event(client, owner, response, event_type)
        assert_recorded(
            event,
            org_id=owner.org_id,
            actor_id=owner.user_id,
            target_type="invitation",
            target_id=invitation_id,
        )
    acceptance = await single_event(client, owner, accepted, "invitation.accepted")
    assert_recorded(
        acceptance,
        org_id=owner.org_id,
        actor_id=new_user_id,
        target_type="invitation",
        target_id=invited.json()["id"],
    )
    joined = await single_event(client, owner, accepted, "auth.registered")
    assert joined["actor_id"] == joined["target_id"] == new_user_id
    assert invited.json()["token"] not in str(await events_caused_by(client, owner, invited))


async def test_organization_update_is_audited(client: httpx.AsyncClient, owner: Account) -> None:
    """Renaming the organization records organization.updated with the old and new name."""
    response = await client.patch(owner.org_url, headers=owner.headers, json={"name": "Renamed"})
    assert response.status_code == 200

    event = await single_event(client, owner, response, "organization.updated")
    assert_recorded(
        event,
        org_id=owner.org_id,
        actor_id=owner.user_id,
        target_type="organization",
        target_id=owner.org_id,
    )
    assert event["details"] == {"name": {"from": "Acme", "to": "Renamed"}}


async def test_refused_action_is_audited_as_denied(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A member creating a team gets 403, and the refusal is recorded with outcome denied."""
    member = await add_member(client, owner, "member")
    refused = await client.post(
        f"{owner.org_url}/teams", headers=member.headers, json={"name": "Not Allowed"}
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "PERMISSION_DENIED"

    event = await single_event(client, owner, refused, "authz.permission_denied")
    assert_recorded(
        event,
        org_id=owner.org_id,
        actor_id=member.user_id,
        target_type=None,
        target_id=None,
        outcome="denied",
    )
    assert event["details"]["permission"] == "teams:create"
    assert await events_caused_by(client, owner, refused) == [event]

"""Brute-force detection and lockout, as a client, an operator and an auditor see them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from faultmaven_auth.identity.passwords import VerifyResult
from tests.conftest import PASSWORD, add_member, sign_up, unique_email
from tests.security.conftest import LogLines, StartProtected, audit_types, metric, new_ip, scrape

WRONG = "Wrong-Password-123"


async def try_login(
    client: httpx.AsyncClient, email: str, password: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password, **extra}
    )


def count_verifications(protected: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = protected.runtime.hasher.verify

    async def spy(password_hash: str | None, password: str) -> VerifyResult:
        calls.append(password)
        return await original(password_hash, password)

    monkeypatch.setattr(protected.runtime.hasher, "verify", spy)
    return calls


async def test_login_outcomes_are_logged_and_counted(
    protected: StartProtected, logs: LogLines
) -> None:
    """Success: INFO 'User logged in'; failure: WARNING on `security`, masked email, reason."""
    async with protected() as p, p.client("198.51.100.23") as client:
        account = await sign_up(client)
        failed = await try_login(client, account.email, WRONG)
        assert failed.status_code == 401
        assert failed.json()["error"]["code"] == "INVALID_CREDENTIALS"
        samples = await scrape(client)
    (line,) = logs.records("Failed login attempt")
    assert line["level"] == "WARNING"
    assert line["logger"] == "security"
    assert line["reason"] == "invalid_credentials"
    assert line["ip_address"] == "198.51.100.23"
    assert line["user_agent"] == "attack-tool/1.0"
    assert line["email"] == account.email[0] + "***@example.com"
    assert account.email not in logs.text()
    (success,) = logs.records("User logged in")
    assert success["level"] == "INFO"
    assert success["user_id"] == account.user_id
    assert success["organization_id"] == account.org_id
    assert success["ip_address"] == "198.51.100.23"
    assert metric(samples, "auth_attempts_total", method="password", status="failure") == 1


async def test_inactive_account_reason_is_logged_not_revealed(
    protected: StartProtected, logs: LogLines
) -> None:
    """A deactivated member's right password: the client sees 401; the log says why."""
    async with protected() as p, p.client() as client:
        owner = await sign_up(client)
        member = await add_member(client, owner, "member")
        await client.delete(f"{owner.org_url}/users/{member.user_id}", headers=owner.headers)
        response = await try_login(client, member.email, PASSWORD)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"
    assert [r["reason"] for r in logs.records("Failed login attempt")] == ["account_inactive"]


@pytest.mark.parametrize("known", [True, False], ids=["known email", "unknown email"])
async def test_fifth_failure_locks_the_account(
    protected: StartProtected, logs: LogLines, monkeypatch: pytest.MonkeyPatch, known: bool
) -> None:
    """5 failures -> CRITICAL once, locked 60 s (429 + Retry-After), no password checks."""
    async with protected() as p, p.client() as client:
        owner = await sign_up(client)
        email = owner.email if known else unique_email("ghost")
        for _ in range(5):
            assert (await try_login(client, email, WRONG)).status_code == 401
        verified = count_verifications(p, monkeypatch)
        locked = await try_login(client, email, PASSWORD)
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "ACCOUNT_LOCKED"
        assert locked.headers["retry-after"] == "60"
        assert verified == []  # a locked account costs the attacker no hashing
        p.clock.advance(30)
        assert (await try_login(client, email, PASSWORD)).headers["retry-after"] == "30"
        samples = await scrape(client)
        p.clock.advance(30)
        after = await try_login(client, email, PASSWORD)
        assert after.status_code == (200 if known else 401)
        events = await audit_types(client, owner.org_url, owner.headers)
    assert metric(samples, "security_events_total", event_type="brute_force_detected") == 1
    assert metric(samples, "security_events_total", event_type="account_locked") == 1
    (alert,) = logs.records("Potential brute force attack")
    assert alert["level"] == "CRITICAL"
    assert alert["logger"] == "security"
    assert alert["event_type"] == "brute_force_detected"
    assert alert["failed_attempts"] == 5
    assert alert["email"].endswith("***@example.com")
    assert [r["reason"] for r in logs.records("Failed login attempt")].count("account_locked") == 2
    if known:
        assert "security.brute_force_detected" in events
        assert "auth.account.locked" in events
        assert events.count("auth.login.failed") == 5


async def test_lockout_doubles_up_to_the_maximum_and_alerts_once_per_window(
    protected: StartProtected, logs: LogLines
) -> None:
    """Each further lock in the episode doubles (60 -> 100 capped); one brute-force alert."""
    async with protected(lockout_max_seconds=100) as p, p.client() as client:
        email = unique_email("target")
        waits = []
        for _ in range(3):
            for _ in range(5):
                assert (await try_login(client, email, WRONG)).status_code == 401
            refused = await try_login(client, email, WRONG)
            waits.append(refused.headers["retry-after"])
            p.clock.advance(int(refused.headers["retry-after"]))
        samples = await scrape(client)
    assert waits == ["60", "100", "100"]
    assert len(logs.records("Potential brute force attack")) == 1
    assert metric(samples, "security_events_total", event_type="account_locked") == 3


async def test_success_resets_the_count(protected: StartProtected) -> None:
    """4 failures, a success, 4 failures: never locked; the 5th after the success locks."""
    async with protected() as p, p.client() as client:
        account = await sign_up(client)
        for _ in range(4):
            await try_login(client, account.email, WRONG)
        assert (await try_login(client, account.email, PASSWORD)).status_code == 200
        for _ in range(4):
            assert (await try_login(client, account.email, WRONG)).status_code == 401
        assert (await try_login(client, account.email, PASSWORD)).status_code == 200
        for _ in range(5):
            await try_login(client, account.email, WRONG)
        assert (await try_login(client, account.email, PASSWORD)).status_code == 429


async def test_failures_outside_the_window_are_forgotten(protected: StartProtected) -> None:
    """4 failures, 15 minutes pass, 4 more: the account is not locked."""
    async with protected() as p, p.client() as client:
        account = await sign_up(client)
        for _ in range(4):
            await try_login(client, account.email, WRONG)
        p.clock.advance(15 * 60)
        for _ in range(4):
            assert (await try_login(client, account.email, WRONG)).status_code == 401
        assert (await try_login(client, account.email, PASSWORD)).status_code == 200


async def test_parallel_wrong_passwords_cannot_race_past_the_limit(
    protected: StartProtected, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 parallel wrong passwords: at most 5 verifications; a right one in the burst fails."""
    # The burst is over the admission limit (16 at a time): the rest must wait their turn,
    # not be refused with 503 after the default 0.5 s when the machine is busy.
    async with protected(request_queue_timeout_seconds=30) as p, p.client() as client:
        account = await sign_up(client)
        verified = count_verifications(p, monkeypatch)
        burst = [asyncio.ensure_future(try_login(client, account.email, WRONG)) for _ in range(50)]
        # The right password goes out, within the burst, once the limit is taken (the
        # first refusal); gathering it with the others would let it overtake them.
        for done in asyncio.as_completed(burst):
            if (await done).status_code == 429:
                break
        right = await try_login(client, account.email, PASSWORD)
        responses = [*await asyncio.gather(*burst), right]
        statuses = [r.status_code for r in responses]
    assert len(verified) <= 5
    assert statuses.count(401) == len([v for v in verified if v == WRONG])
    assert statuses.count(429) >= 46
    assert right.status_code == 429
    assert all("access_token" not in r.text for r in responses)


async def test_admin_unlock(protected: StartProtected) -> None:
    """users:update lifts a lock (204, audited); another tenant gets 404, a member 403."""
    async with protected() as p, p.client() as client:
        owner = await sign_up(client)
        member = await add_member(client, owner, "member")
        for _ in range(5):
            await try_login(client, member.email, WRONG)
        assert (await try_login(client, member.email, PASSWORD)).status_code == 429
        unlock_url = f"{owner.org_url}/users/{member.user_id}/unlock"

        stranger = await sign_up(client, org_name="Other")
        other = await client.post(
            f"{stranger.org_url}/users/{member.user_id}/unlock", headers=stranger.headers
        )
        assert other.status_code == 404
        cross = await client.post(unlock_url, headers=stranger.headers)
        assert cross.status_code == 404
        colleague = await add_member(client, owner, "member")
        assert (await client.post(unlock_url, headers=colleague.headers)).status_code == 403
        assert (await try_login(client, member.email, PASSWORD)).status_code == 429

        unlocked = await client.post(unlock_url, headers=owner.headers)
        assert unlocked.status_code == 204
        assert (await try_login(client, member.email, PASSWORD)).status_code == 200
        events = await audit_types(client, owner.org_url, owner.headers)
    assert "auth.account.unlocked" in events


async def test_organization_scoped_login_is_counted_on_its_own(
    protected: StartProtected,
) -> None:
    """A lock on the email alone does not lock login naming the organization, and back."""
    async with protected() as p, p.client() as client:
        account = await sign_up(client)
        for _ in range(5):
            await try_login(client, account.email, WRONG)
        assert (await try_login(client, account.email, PASSWORD)).status_code == 429
        scoped = await try_login(client, account.email, PASSWORD, organization_id=account.org_id)
        assert scoped.status_code == 200


async def test_unknown_email_failures_are_aggregated_in_the_audit_log(
    protected: StartProtected,
) -> None:
    """Failures for unknown emails write audit rows at 1, 10, 100 ... per address and window."""
    from sqlalchemy import select

    from faultmaven_auth.storage.models import AuditEvent

    ip = new_ip()
    async with protected() as p, p.client(ip) as client:
        for _ in range(12):
            await try_login(client, unique_email("ghost"), WRONG)
        async with p.runtime.db.session() as session:
            rows = (
                await session.scalars(
                    select(AuditEvent).where(
                        AuditEvent.ip_address == ip, AuditEvent.event_type == "auth.login.failed"
                    )
                )
            ).all()
    assert sorted(r.details["failures_in_window"] for r in rows) == [1, 10]


async def test_guessing_the_current_password_locks_like_a_login(
    protected: StartProtected, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /auth/password with a stolen access token: 5 wrong current passwords lock the
    account (named with its organization) for password changes and logins alike; the
    right one is then refused unchecked; brute_force_detected is emitted."""
    async with protected() as p, p.client() as client:
        account = await sign_up(client)

        async def change(current: str) -> httpx.Response:
            body = {"current_password": current, "new_password": "An-Entirely-New-Pass-9"}
            return await client.post("/api/v1/auth/password", json=body, headers=account.headers)

        statuses = [(await change(WRONG)).status_code for _ in range(5)]
        assert statuses == [403] * 5
        verified = count_verifications(p, monkeypatch)
        locked = await change(PASSWORD)
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "ACCOUNT_LOCKED"
        assert int(locked.headers["retry-after"]) > 0
        assert verified == []
        scoped = await try_login(client, account.email, PASSWORD, organization_id=account.org_id)
        assert scoped.status_code == 429
        samples = await scrape(client)
        document = (await client.get("/openapi.json")).json()
    assert metric(samples, "security_events_total", event_type="brute_force_detected") == 1
    assert "429" in document["paths"]["/api/v1/auth/password"]["post"]["responses"]


async def test_the_right_current_password_clears_the_count(protected: StartProtected) -> None:
    """4 wrong, then a successful change: the count starts again (4 more stay unlocked)."""
    async with protected() as p, p.client() as client:
        account = await sign_up(client)
        new = "An-Entirely-New-Pass-9"

        async def change(current: str, to: str = new) -> int:
            body = {"current_password": current, "new_password": to}
            response = await client.post(
                "/api/v1/auth/password", json=body, headers=account.headers
            )
            return response.status_code

        assert [await change(WRONG) for _ in range(4)] == [403] * 4
        assert await change(PASSWORD) == 204
        assert [await change(WRONG, PASSWORD) for _ in range(4)] == [403] * 4
        assert await change(new, PASSWORD) == 204

"""At password-hashing capacity, logins get an early 503 that costs the account nothing.

Through the real app on both backends: the pool's only thread is held by a fake job the
test releases, so the queue is full by construction, not by timing. A refused login
answers 503 LOGIN_CAPACITY_EXCEEDED with Retry-After, is counted in
``password_hash_rejected_total``, is logged once for many, and never counts toward the
account's lockout (nor as a failed authentication).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from faultmaven_auth.runtime import Runtime
from tests.conftest import PASSWORD, sign_up, unique_email
from tests.security.conftest import LogLines, StartProtected, metric, scrape
from tests.security.test_lockout import count_verifications

WRONG = "Wrong-Password-123"
LOGIN = "/api/v1/auth/login"
REFUSAL_LINE = "Password hashing at capacity: requests refused"
# Any estimate is past this deadline: a login finding the thread busy is refused at once.
NO_WAITING = 1e-6


@asynccontextmanager
async def hashing_thread_held(runtime: Runtime) -> AsyncIterator[None]:
    """Occupy the pool's (single) thread until the block ends."""
    release = threading.Event()
    holder = asyncio.create_task(runtime.hasher.pool.run(lambda: release.wait(30)))
    await asyncio.sleep(0)  # the holder takes the free thread
    try:
        yield
    finally:
        release.set()
        await holder


async def try_login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


def assert_capacity_refusal(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "LOGIN_CAPACITY_EXCEEDED"
    assert int(response.headers["Retry-After"]) >= 1


async def test_logins_past_the_deadline_are_refused_early_counted_and_logged_once(
    protected: StartProtected, logs: LogLines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 logins while the hashing thread is busy: 20 x 503 + Retry-After, 20 counted,
    one log line for the burst, no failed-login lines or auth failures, and no lock:
    the right password works right after, even with a lockout limit of two."""
    async with (
        protected(
            password_hash_threads=1,
            password_hash_queue_timeout_seconds=NO_WAITING,
            login_max_failures=2,
        ) as p,
        p.client() as client,
    ):
        account = await sign_up(client)
        before = await scrape(client)
        verified = count_verifications(p, monkeypatch)
        async with hashing_thread_held(p.runtime):
            refused = [await try_login(client, account.email, WRONG) for _ in range(20)]
        samples = await scrape(client)
        during = logs.records(REFUSAL_LINE)
        checked_while_refusing = list(verified)
        after = await try_login(client, account.email, PASSWORD)
    for response in refused:
        assert_capacity_refusal(response)
    assert refused[0].headers["Retry-After"] == "1"  # one ~ms hash ahead, rounded up
    # Refused before the account lookup and the password check.
    assert checked_while_refusing == []
    assert metric(samples, "password_hash_rejected_total", reason="estimated_wait") == 20
    failures = ("auth_attempts_total", {"method": "password", "status": "failure"})
    assert metric(samples, failures[0], **failures[1]) == metric(before, failures[0], **failures[1])
    assert after.status_code == 200, after.text
    (line,) = during  # the first refusal; the next 19 wait for the interval's end
    assert line["level"] == "WARNING"
    assert line["event_type"] == "login_capacity_exceeded"
    assert line["count"] == 1
    # ... or for the shutdown, which writes what is still pending: nothing is lost.
    assert [r["count"] for r in logs.records(REFUSAL_LINE)] == [1, 19]
    assert logs.records("Failed login attempt") == []


async def test_a_login_refused_after_waiting_gives_its_attempt_back(
    protected: StartProtected,
) -> None:
    """A login admitted to the queue but still waiting at its deadline gets 503; the
    attempt reserved for it is released, so the account is not locked by it."""
    async with (
        protected(
            password_hash_threads=1,
            password_hash_queue_timeout_seconds=0.2,
            login_max_failures=2,
        ) as p,
        p.client() as client,
    ):
        account = await sign_up(client)
        assert (await try_login(client, account.email, WRONG)).status_code == 401  # 1 of 2
        async with hashing_thread_held(p.runtime):
            waiting = asyncio.create_task(try_login(client, account.email, PASSWORD))
            for _ in range(1000):  # until a collector would see it queued
                if metric(await scrape(client), "password_hash_queue_depth") == 1:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the login never queued")
            await asyncio.sleep(0.3)  # past its 0.2 s deadline while the thread is held
        late = await waiting
        samples = await scrape(client)
        # Had the refused attempt counted, this would be attempt 3 of 2: 429 ACCOUNT_LOCKED.
        after = await try_login(client, account.email, PASSWORD)
    assert_capacity_refusal(late)
    assert metric(samples, "password_hash_rejected_total", reason="deadline") == 1
    assert after.status_code == 200, after.text


async def test_registration_at_capacity_is_refused_and_creates_nothing(
    protected: StartProtected,
) -> None:
    """Sign-up hashes too: at capacity it is 503, and the same sign-up succeeds later."""
    body = {
        "organization_name": "Busy",
        "email": unique_email("busy"),
        "password": PASSWORD,
        "full_name": "Busy Person",
    }
    async with (
        protected(password_hash_threads=1, password_hash_queue_timeout_seconds=NO_WAITING) as p,
        p.client() as client,
    ):
        async with hashing_thread_held(p.runtime):
            refused = await client.post("/api/v1/auth/register", json=body)
        again = await client.post("/api/v1/auth/register", json=body)
    assert_capacity_refusal(refused)
    assert again.status_code == 201, again.text


async def test_password_change_at_capacity_is_refused_without_counting(
    protected: StartProtected,
) -> None:
    """Changing one's password at capacity: 503, and the current password still works."""
    async with (
        protected(
            password_hash_threads=1,
            password_hash_queue_timeout_seconds=NO_WAITING,
            login_max_failures=1,
        ) as p,
        p.client() as client,
    ):
        account = await sign_up(client)
        change = {"current_password": WRONG, "new_password": "Another-Horse-Battery-43"}
        async with hashing_thread_held(p.runtime):
            refused = [
                await client.post("/api/v1/auth/password", json=change, headers=account.headers)
                for _ in range(3)
            ]
        after = await try_login(client, account.email, PASSWORD)
    for response in refused:
        assert_capacity_refusal(response)
    assert after.status_code == 200, after.text

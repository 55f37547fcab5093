"""SIEM export: what a syslog receiver or Logstash on 127.0.0.1 actually receives.

Each test starts real listeners, runs an app whose settings point at them, provokes
security events over HTTP, and parses the bytes as the receiver would (RFC 5424 header,
RFC 6587 octet counting, json_lines). Whatever arrives also goes to the suite's secret
guard. A closed Logstash port must not fail or slow requests; drops are counted.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faultmaven_auth.config import Settings, SyslogProtocol
from tests.conftest import (
    CAPTURED_LOG_LINES,
    PASSWORD,
    SYSTEM_ROLE_IDS,
    Account,
    add_member,
    sign_up,
)
from tests.security.conftest import FreshApp, LogLines, sample, scrape
from tests.security.receivers import (
    RFC5424,
    TcpReceiver,
    UdpReceiver,
    octet_counted_frames,
    wait_until,
)
from tests.support.server import free_port, migrate, running_server, server_env

AUTHPRIV_WARNING = 10 * 8 + 4
CROSS_TENANT = "cross_tenant_access"


def syslog_of_type(messages: list[bytes], msgid: str) -> list[bytes]:
    """The syslog messages whose MSGID is ``msgid`` (login outcome lines ship too)."""
    return [m for m in messages if (match := RFC5424.match(m.decode())) and match["msgid"] == msgid]


def json_of_type(lines: list[bytes], event_type: str) -> list[bytes]:
    return [line for line in lines if json.loads(line)["event_type"] == event_type]


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def udp_receiver() -> Iterator[UdpReceiver]:
    receiver = UdpReceiver()
    yield receiver
    receiver.stop()
    CAPTURED_LOG_LINES.extend(d.decode(errors="replace") for d in receiver.datagrams)


@pytest.fixture
def tcp_receiver() -> Iterator[TcpReceiver]:
    receiver = TcpReceiver()
    yield receiver
    receiver.stop()
    CAPTURED_LOG_LINES.append(receiver.data().decode(errors="replace"))


async def probe_other_tenant(http: httpx.AsyncClient) -> tuple[Account, Account]:
    """Mallory reads Victim's users: one cross_tenant_access event."""
    mallory = await sign_up(http, "Mallory Corp")
    victim = await sign_up(http, "Victim Inc")
    response = await http.get(
        f"{victim.org_url}/users",
        headers={**mallory.headers, "X-Request-ID": "siem-probe-1"},
    )
    assert response.status_code == 404
    return mallory, victim


def assert_syslog_message(raw: bytes, msgid: str) -> dict[str, Any]:
    """The RFC 5424 header is right; return the JSON event carried as MSG."""
    match = RFC5424.match(raw.decode("ascii"))
    assert match, raw[:120]
    assert int(match["pri"]) == AUTHPRIV_WARNING
    assert match["version"] == "1"
    assert TIMESTAMP.fullmatch(match["timestamp"])
    assert match["hostname"] == socket.gethostname()
    assert match["app_name"] == "fm-auth-service-enterprise"
    assert match["procid"] == str(os.getpid())
    assert match["msgid"] == msgid
    assert match["sd"] == "-"
    event: dict[str, Any] = json.loads(match["msg"])
    assert event["timestamp"] == match["timestamp"]
    return event


def assert_cross_tenant_event(event: dict[str, Any], mallory: Account, victim: Account) -> None:
    assert event["event_type"] == "cross_tenant_access"
    assert event["schema_version"] == 1
    assert event["logger"] == "security"
    assert event["level"] == "WARNING"
    assert event["message"] == "Unauthorized access attempt"
    assert event["service"] == "fm-auth-service-enterprise"
    assert event["request_id"] == "siem-probe-1"
    assert event["user_id"] == mallory.user_id
    assert event["organization_id"] == mallory.org_id
    assert event["target_organization_id"] == victim.org_id
    assert event["attempted_resource"] == "GET /api/v1/organizations/{org_id}/users"
    assert event["client_ip"] == "203.0.113.7"
    assert mallory.email not in json.dumps(event)


async def test_udp_syslog_receiver_gets_an_rfc5424_message(
    fresh_app: FreshApp, udp_receiver: UdpReceiver
) -> None:
    """One datagram per event: authpriv.warning, msgid = event type, the JSON event as MSG."""
    address = ("127.0.0.1", udp_receiver.port)
    async with fresh_app(siem_syslog_address=address) as http:
        mallory, victim = await probe_other_tenant(http)
        [datagram] = wait_until(lambda: syslog_of_type(udp_receiver.datagrams, CROSS_TENANT))
    event = assert_syslog_message(datagram, "cross_tenant_access")
    assert_cross_tenant_event(event, mallory, victim)


async def test_tcp_syslog_receiver_gets_octet_counted_messages(
    fresh_app: FreshApp, tcp_receiver: TcpReceiver
) -> None:
    """Over TCP each message is framed as ``LEN SP MSG`` (RFC 6587) on one connection."""
    settings = {
        "siem_syslog_address": ("127.0.0.1", tcp_receiver.port),
        "siem_syslog_protocol": SyslogProtocol.TCP,
    }
    async with fresh_app(**settings) as http:
        mallory, victim = await probe_other_tenant(http)
        owner = await sign_up(http)
        viewer = await add_member(http, owner, "viewer")
        assert (await http.delete(owner.org_url, headers=viewer.headers)).status_code == 403

        def two_frames() -> list[bytes] | None:
            frames = [
                frame
                for msgid in (CROSS_TENANT, "privilege_escalation_attempt")
                for frame in syslog_of_type(octet_counted_frames(tcp_receiver.data()), msgid)
            ]
            return frames if len(frames) == 2 else None

        frames = wait_until(two_frames)
    assert len(tcp_receiver.connections) == 1
    assert_cross_tenant_event(
        assert_syslog_message(frames[0], "cross_tenant_access"), mallory, victim
    )
    escalation = assert_syslog_message(frames[1], "privilege_escalation_attempt")
    assert escalation["user_id"] == viewer.user_id
    assert escalation["required_permission"] == "organization:delete"


async def test_logstash_receives_json_lines(fresh_app: FreshApp, tcp_receiver: TcpReceiver) -> None:
    """LOGSTASH_HOST/PORT: each event is one JSON object and a newline."""
    async with fresh_app(logstash_host="127.0.0.1", logstash_port=tcp_receiver.port) as http:
        mallory, victim = await probe_other_tenant(http)
        [line] = wait_until(lambda: json_of_type(tcp_receiver.lines(), CROSS_TENANT))
    assert_cross_tenant_event(json.loads(line), mallory, victim)


async def test_login_protection_events_reach_logstash(
    fresh_app: FreshApp, tcp_receiver: TcpReceiver
) -> None:
    """Password guessing ships its failed logins, the brute-force detection and the lock,
    each with the event schema, the masked email and the caller's address."""
    settings = {"logstash_host": "127.0.0.1", "logstash_port": tcp_receiver.port}
    async with fresh_app(**settings) as http:
        owner = await sign_up(http)
        email = owner.email
        for _ in range(5):
            wrong = {"email": email, "password": "not-the-password-1"}
            assert (await http.post("/api/v1/auth/login", json=wrong)).status_code == 401
        right = {"email": email, "password": PASSWORD}
        locked = await http.post("/api/v1/auth/login", json=right)
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "ACCOUNT_LOCKED"

        def shipped() -> list[dict[str, Any]] | None:
            events = [json.loads(line) for line in tcp_receiver.lines()]
            types = [e["event_type"] for e in events]
            return (
                events if types.count("login_failed") == 6 and "account_locked" in types else None
            )

        events = wait_until(shipped)
    by_type = {e["event_type"]: e for e in events}
    brute, lock = by_type["brute_force_detected"], by_type["account_locked"]
    assert brute["level"] == "CRITICAL"
    assert lock["level"] == "WARNING"
    for event in (brute, lock, by_type["login_failed"]):
        assert event["schema_version"] == 1
        assert event["logger"] == "security"
        assert event["email"] == "o***@example.com"
        assert event["client_ip"] == event["ip_address"]
    assert brute["reason"] == lock["reason"] == "failed_login_limit"
    assert brute["failed_attempts"] == 5
    assert by_type["login_succeeded"]["user_id"] == owner.user_id
    assert email not in tcp_receiver.data().decode()


async def test_a_syslog_receiver_gets_the_brute_force_event(
    fresh_app: FreshApp, udp_receiver: UdpReceiver
) -> None:
    """authpriv.crit, MSGID brute_force_detected, the documented fields in the JSON MSG."""
    address = ("127.0.0.1", udp_receiver.port)
    async with fresh_app(siem_syslog_address=address) as http:
        owner = await sign_up(http)
        for _ in range(5):
            wrong = {"email": owner.email, "password": "not-the-password-1"}
            assert (await http.post("/api/v1/auth/login", json=wrong)).status_code == 401
        [datagram] = wait_until(
            lambda: syslog_of_type(udp_receiver.datagrams, "brute_force_detected")
        )
    match = RFC5424.match(datagram.decode("ascii"))
    assert match
    assert int(match["pri"]) == 10 * 8 + 2  # authpriv.crit
    event = json.loads(match["msg"])
    assert event["event_type"] == "brute_force_detected"
    assert event["message"] == "Potential brute force attack"
    assert event["schema_version"] == 1
    assert event["email"] == "o***@example.com"
    assert event["failed_attempts"] == 5
    assert event["reason"] == "failed_login_limit"
    assert event["ip_address"] == event["client_ip"]
    assert owner.email not in datagram.decode()


async def test_committed_audit_events_ship_when_asked_and_only_to_the_siem(
    fresh_app: FreshApp, tcp_receiver: TcpReceiver, logs: LogLines
) -> None:
    """SIEM_AUDIT_EVENTS=true: each committed audit event arrives once, as the audit API
    returns it (hash chain included), the hot paths' events too; a refused change ships
    only its refusal; nothing of it is printed on stdout."""
    settings = {
        "logstash_host": "127.0.0.1",
        "logstash_port": tcp_receiver.port,
        "siem_audit_events": True,
    }
    async with fresh_app(**settings) as http:
        owner = await sign_up(http)
        admin = await add_member(http, owner, "admin")
        member = await add_member(http, owner, "member", login_too=False)
        # Refused inside its transaction: the role change rolls back, the denial stays.
        refused = await http.put(
            f"{owner.org_url}/users/{member.user_id}/roles",
            headers=admin.headers,
            json={"role_ids": [SYSTEM_ROLE_IDS["owner"]]},
        )
        assert refused.status_code == 403
        # A refresh writes its event inside the one statement that commits it (PostgreSQL).
        refreshed = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
        )
        assert refreshed.status_code == 200
        listed = await http.get(f"{owner.org_url}/audit-events?limit=200", headers=owner.headers)
        kept = {item["id"]: item for item in listed.json()["items"]}

        def shipped() -> dict[str, dict[str, Any]] | None:
            audits = [
                json.loads(line)["audit"]
                for line in json_of_type(tcp_receiver.lines(), "audit_event")
            ]
            mine = {a["id"]: a for a in audits if a["organization_id"] == owner.org_id}
            return mine if len(mine) >= len(kept) else None

        arrived = wait_until(shipped)
    assert arrived == kept
    assert "role.assigned" not in {a["event_type"] for a in arrived.values()}
    assert "authz.permission_denied" in {a["event_type"] for a in arrived.values()}
    assert "auth.token.refreshed" in {a["event_type"] for a in arrived.values()}
    assert all(a["hash"] for a in arrived.values())
    lines = [json.loads(line) for line in json_of_type(tcp_receiver.lines(), "audit_event")]
    assert {line["logger"] for line in lines} == {"audit"}
    assert {line["schema_version"] for line in lines} == {1}
    assert not logs.records("Audit event")


async def test_audit_events_are_not_shipped_by_default(
    fresh_app: FreshApp, tcp_receiver: TcpReceiver
) -> None:
    async with fresh_app(logstash_host="127.0.0.1", logstash_port=tcp_receiver.port) as http:
        await probe_other_tenant(http)
        wait_until(lambda: json_of_type(tcp_receiver.lines(), CROSS_TENANT))
    assert not json_of_type(tcp_receiver.lines(), "audit_event")


async def test_a_down_logstash_neither_fails_nor_slows_requests(fresh_app: FreshApp) -> None:
    """Port closed: every request succeeds quickly; events beyond the buffer are dropped
    and counted in siem_events_dropped_total."""
    closed_port = free_port()
    settings = {"logstash_host": "127.0.0.1", "logstash_port": closed_port, "siem_queue_size": 5}
    async with fresh_app(**settings) as http:
        mallory = await sign_up(http, "Mallory Corp")
        victim = await sign_up(http, "Victim Inc")
        durations = []
        for _ in range(30):
            started = time.perf_counter()
            response = await http.get(f"{victim.org_url}/users", headers=mallory.headers)
            durations.append(time.perf_counter() - started)
            assert response.status_code == 404
        samples = await scrape(http)
    # Generous: the sender's connect attempts and backoff happen off the request path.
    assert max(durations) < 2.0, durations
    assert sample(samples, "security_events_total", event_type="cross_tenant_access") == 30
    # Two sign-in lines and 30 events; one held by the sender while it backs off, five
    # queued, the rest dropped.
    assert sample(samples, "siem_events_dropped_total", destination="logstash") == 2 + 30 - 6


async def test_events_buffered_while_logstash_is_down_arrive_when_it_is_back(
    fresh_app: FreshApp,
) -> None:
    """The sender retries with backoff; Logstash starting later gets the queued events."""
    port = free_port()
    async with fresh_app(logstash_host="127.0.0.1", logstash_port=port) as http:
        mallory = await sign_up(http, "Mallory Corp")
        victim = await sign_up(http, "Victim Inc")
        for _ in range(3):
            response = await http.get(f"{victim.org_url}/users", headers=mallory.headers)
            assert response.status_code == 404
        receiver = TcpReceiver(port)
        try:
            lines = wait_until(lambda: len(receiver.lines()) == 5 and receiver.lines())
        finally:
            receiver.stop()
            CAPTURED_LOG_LINES.append(receiver.data().decode(errors="replace"))
        samples = await scrape(http)
    shipped = [json.loads(line)["event_type"] for line in lines]
    assert shipped == ["login_succeeded"] * 2 + [CROSS_TENANT] * 3
    assert sample(samples, "siem_events_dropped_total", destination="logstash") == 0


def test_settings_read_the_syslog_address_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIEM_SYSLOG_ADDRESS=host:port (IPv6 in brackets); a malformed one is refused."""
    monkeypatch.setenv("SIEM_SYSLOG_ADDRESS", "siem.internal:6514")
    monkeypatch.setenv("SIEM_SYSLOG_PROTOCOL", "tcp")
    settings = Settings()
    assert settings.siem_syslog_address == ("siem.internal", 6514)
    assert settings.siem_syslog_protocol is SyslogProtocol.TCP
    monkeypatch.setenv("SIEM_SYSLOG_ADDRESS", "[::1]:514")
    assert Settings().siem_syslog_address == ("::1", 514)
    monkeypatch.setenv("SIEM_SYSLOG_ADDRESS", "siem.internal")
    with pytest.raises(ValueError, match="host:port"):
        Settings()


def test_a_real_server_ships_to_syslog_and_logstash_from_environment_settings(
    tmp_path: Path, udp_receiver: UdpReceiver, tcp_receiver: TcpReceiver
) -> None:
    """`faultmaven-auth serve` with SIEM_* and LOGSTASH_* set: stdout, syslog and Logstash
    carry the same event; the syslog PROCID is the server's pid."""
    env = server_env(
        tmp_path,
        SIEM_SYSLOG_ADDRESS=f"127.0.0.1:{udp_receiver.port}",
        LOGSTASH_HOST="127.0.0.1",
        LOGSTASH_PORT=str(tcp_receiver.port),
    )
    migrate(env)
    with (
        running_server(env, tmp_path / "stdout.log") as server,
        httpx.Client(base_url=server.base_url) as http,
    ):
        owner_email = f"owner-{os.getpid()}-{time.monotonic_ns()}@example.com"
        body = {
            "organization_name": "Acme",
            "email": owner_email,
            "password": PASSWORD,
            "full_name": "Ann Owner",
        }
        registered = http.post("/api/v1/auth/register", json=body)
        assert registered.status_code == 201
        login = http.post("/api/v1/auth/login", json={"email": owner_email, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        other = "00000000-0000-7000-8000-000000000000"
        assert http.get(f"/api/v1/organizations/{other}", headers=headers).status_code == 404
        [datagram] = wait_until(lambda: syslog_of_type(udp_receiver.datagrams, CROSS_TENANT))
        [line] = wait_until(lambda: json_of_type(tcp_receiver.lines(), CROSS_TENANT))
        pid = server.process.pid
        stdout = [json.loads(x) for x in server.log_lines()]
    match = RFC5424.match(datagram.decode("ascii"))
    assert match
    assert match["procid"] == str(pid)
    assert match["msgid"] == "cross_tenant_access"
    shipped_syslog, shipped_logstash = json.loads(match["msg"]), json.loads(line)
    [printed] = [r for r in stdout if r.get("event_type") == CROSS_TENANT]
    assert shipped_syslog == shipped_logstash == printed
    assert printed["target_organization_id"] == other
    assert printed["user_id"] == registered.json()["user"]["id"]
    assert owner_email not in datagram.decode() + line.decode()


async def test_configured_destinations_export_their_drops_at_zero_from_the_start(
    fresh_app: FreshApp, udp_receiver: UdpReceiver
) -> None:
    """Each configured destination has siem_events_dropped_total at 0 before any drop, so
    increase() sees the first one; an unconfigured destination has no series."""
    settings = {
        "siem_syslog_address": ("127.0.0.1", udp_receiver.port),
        "logstash_host": "127.0.0.1",
        "logstash_port": free_port(),
    }
    async with fresh_app(**settings) as http:
        samples = await scrape(http)
    dropped = {
        dict(labels)["destination"]: value
        for (name, labels), value in samples.items()
        if name == "siem_events_dropped_total"
    }
    assert dropped == {"syslog": 0, "logstash": 0}
    async with fresh_app() as http:
        samples = await scrape(http)
    assert not [name for name, _ in samples if name == "siem_events_dropped_total"]

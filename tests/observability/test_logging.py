"""What a log shipper sees: the stdout of a real server, one JSON object per line."""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path

import httpx
import pytest

from faultmaven_auth.config import Settings
from faultmaven_auth.observability.logging import ConsoleFormatter, JsonFormatter, _Fields
from faultmaven_auth.observability.middleware import client_ip
from tests.conftest import client_for, running_app
from tests.support.server import migrate, running_server, server_env

REQUIRED = ("timestamp", "level", "logger", "message", "service", "environment")
PASSWORD = "Log-Test-Passphrase-77"


def parse(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Drive a real server through a few flows; hand back its log and what was sent."""
    tmp = tmp_path_factory.mktemp("logging")
    env = server_env(tmp, LOG_LEVEL="INFO", ENVIRONMENT="staging")
    migrate(env)
    email = f"logger-{uuid.uuid4().hex[:8]}@example.com"
    with (
        running_server(env, tmp / "stdout.log") as server,
        httpx.Client(base_url=server.base_url) as http,
    ):
        register = http.post(
            "/api/v1/auth/register",
            headers={"X-Request-ID": "reg-0001"},
            json={
                "organization_name": "Logs Inc",
                "email": email,
                "password": PASSWORD,
                "full_name": "Log Owner",
            },
        )
        assert register.status_code == 201
        login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        tokens = login.json()
        failed = http.post(
            "/api/v1/auth/login",
            headers={"X-Request-ID": "bad-login-1"},
            json={"email": email, "password": "Wrong-Password-1"},
        )
        me = http.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        unsafe = http.get("/api/v1/auth/me", headers={"X-Request-ID": "bad id with spaces"})
        http.get("/health")
        http.get("/ready")
    return {
        "lines": server.log_lines(),
        "email": email,
        "tokens": tokens,
        "register": register,
        "failed": failed,
        "me": me,
        "unsafe": unsafe,
    }


def test_every_line_is_json_with_the_required_fields(server_log: dict) -> None:
    """Each stdout line parses as JSON and carries the contract's fields."""
    records = parse(server_log["lines"])
    assert records, "the server wrote no log lines"
    for record in records:
        for field in REQUIRED:
            assert field in record, (field, record)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(record["timestamp"]))
        assert record["service"] == "fm-auth-service-enterprise"
        assert record["environment"] == "staging"


def test_request_lines_carry_the_request_id(server_log: dict) -> None:
    """The completion line and lines written inside the request share its id; by
    default there is no start line (one access-log line per request)."""
    records = [r for r in parse(server_log["lines"]) if r.get("request_id") == "bad-login-1"]
    messages = [r["message"] for r in records]
    assert "Request started" not in messages
    assert "Failed login attempt" in messages
    assert messages[-1] == "Request completed"
    completed = records[-1]
    assert completed["status_code"] == 401
    assert completed["endpoint"] == "/api/v1/auth/login"
    assert completed["method"] == "POST"
    assert completed["client_ip"] == "127.0.0.1"
    assert "python-httpx" in str(completed["user_agent"])
    assert isinstance(completed["duration_ms"], int | float)
    login_failed = next(r for r in records if r["message"] == "Failed login attempt")
    assert login_failed["reason"] == "invalid_credentials"
    assert login_failed["logger"] == "security"
    assert login_failed["level"] == "WARNING"


def test_request_ids_are_echoed_or_generated(server_log: dict) -> None:
    """A safe incoming X-Request-ID is kept; an unsafe one is replaced by a UUID4."""
    assert server_log["register"].headers["x-request-id"] == "reg-0001"
    generated = server_log["unsafe"].headers["x-request-id"]
    assert uuid.UUID(generated).version == 4
    assert server_log["unsafe"].json()["error"]["request_id"] == generated


def test_authenticated_lines_carry_user_and_organization(server_log: dict) -> None:
    """Inside an authenticated request the log knows the user and organization."""
    request_id = server_log["me"].headers["x-request-id"]
    completed = [
        r
        for r in parse(server_log["lines"])
        if r.get("request_id") == request_id and r["message"] == "Request completed"
    ]
    assert len(completed) == 1
    assert completed[0]["user_id"]
    assert completed[0]["organization_id"]


def test_probes_are_not_logged_at_info(server_log: dict) -> None:
    """/health and /ready stay out of the INFO access log."""
    endpoints = {r.get("endpoint") for r in parse(server_log["lines"])}
    assert "/health" not in endpoints
    assert "/ready" not in endpoints


def test_no_secrets_or_raw_emails_in_the_log(server_log: dict) -> None:
    """Passwords and tokens never appear; the email is masked."""
    text = "\n".join(server_log["lines"])
    assert PASSWORD not in text
    assert "Wrong-Password-1" not in text
    assert server_log["tokens"]["access_token"] not in text
    assert server_log["tokens"]["refresh_token"] not in text
    assert server_log["email"] not in text


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": message})
    record.__dict__.update(extra)
    return record


def test_redaction_and_masking_rules() -> None:
    """Secret keys are replaced at any depth; emails masked unless PII is allowed."""
    masked = JsonFormatter(_Fields("svc", "dev", include_pii=False, trace_ids=lambda: None))
    line = json.loads(
        masked.format(
            _record(
                "invited jane.doe@example.com",
                payload={"password": "p@ss", "nested": {"client_secret": "s", "ok": 1}},
                authorization="Bearer abc",
                contact="jane.doe@example.com",
            )
        )
    )
    assert line["message"] == "invited j***@example.com"
    assert line["payload"] == {
        "password": "[REDACTED]",
        "nested": {"client_secret": "[REDACTED]", "ok": 1},
    }
    assert line["authorization"] == "[REDACTED]"
    assert line["contact"] == "j***@example.com"

    allowed = JsonFormatter(_Fields("svc", "dev", include_pii=True, trace_ids=lambda: None))
    line = json.loads(allowed.format(_record("invited jane.doe@example.com", token="t")))
    assert line["message"] == "invited jane.doe@example.com"
    assert line["token"] == "[REDACTED]"


def test_exceptions_are_serialized() -> None:
    """exception{type,message,traceback} on lines logged with an exception."""
    formatter = JsonFormatter(_Fields("svc", "dev", include_pii=False, trace_ids=lambda: None))
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = json.loads(formatter.format(record))
    assert line["exception"]["type"] == "ValueError"
    assert line["exception"]["message"] == "boom"
    assert "Traceback" in line["exception"]["traceback"]


def test_console_format_is_for_people() -> None:
    """LOG_FORMAT=console gives one readable line with key=value context."""
    formatter = ConsoleFormatter(_Fields("svc", "dev", include_pii=False, trace_ids=lambda: None))
    text = formatter.format(_record("Request completed", status_code=200))
    assert "INFO" in text
    assert "Request completed" in text
    assert "status_code=200" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.9", None, (), "203.0.113.9"),
        # An untrusted peer's X-Forwarded-For is ignored (it could be forged).
        ("203.0.113.9", "198.51.100.1", (), "203.0.113.9"),
        ("203.0.113.9", "198.51.100.1", ("10.0.0.0/8",), "203.0.113.9"),
        # From a trusted proxy, the last hop the proxies did not add is the client.
        ("10.0.0.5", "198.51.100.1", ("10.0.0.0/8",), "198.51.100.1"),
        ("10.0.0.5", "6.6.6.6, 198.51.100.1, 10.0.0.7", ("10.0.0.0/8",), "198.51.100.1"),
        ("10.0.0.5", "not-an-ip", ("10.0.0.0/8",), "10.0.0.5"),
    ],
)
def test_client_ip_honours_only_trusted_proxies(
    peer: str, forwarded: str | None, trusted: tuple[str, ...], expected: str
) -> None:
    """X-Forwarded-For is believed only when the peer is a configured proxy."""
    import ipaddress

    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"type": "http", "client": (peer, 1234), "headers": headers}
    networks = tuple(ipaddress.ip_network(t) for t in trusted)
    assert client_ip(scope, networks) == expected


def test_console_server_writes_readable_lines(tmp_path: Path) -> None:
    """A server with LOG_FORMAT=console writes lines a person can read (not JSON)."""
    env = server_env(tmp_path, LOG_FORMAT="console", LOG_LEVEL="INFO")
    migrate(env)
    with running_server(env, tmp_path / "out.log") as server:
        httpx.get(f"{server.base_url}/api/v1/auth/me")
    lines = server.log_lines()
    completed = [line for line in lines if "Request completed" in line]
    assert completed
    assert "status_code=401" in completed[0]
    assert not completed[0].lstrip().startswith("{")


@pytest.mark.parametrize("start_line", [False, True])
async def test_the_start_line_is_written_only_when_asked_for(
    backend_settings: Settings, caplog: pytest.LogCaptureFixture, start_line: bool
) -> None:
    """``LOG_REQUEST_START=true`` adds a ``Request started`` line before the request
    runs, with the same endpoint, method and client; the completion line is written
    either way, and probes stay out of the INFO log."""
    caplog.set_level(logging.INFO, logger="faultmaven_auth.request")
    settings = backend_settings.model_copy(update={"log_request_start": start_line})
    async with running_app(settings) as app, client_for(app) as http:
        response = await http.get("/api/v1/auth/me", headers={"X-Request-ID": "start-1"})
        await http.get("/health")
    assert response.status_code == 401
    mine = [r for r in caplog.records if getattr(r, "endpoint", None) == "/api/v1/auth/me"]
    messages = [r.getMessage() for r in mine]
    expected = ["Request started", "Request completed"] if start_line else ["Request completed"]
    assert messages == expected
    for record in mine:
        assert record.endpoint == "/api/v1/auth/me"  # type: ignore[attr-defined]
        assert record.method == "GET"  # type: ignore[attr-defined]
        assert record.client_ip == "203.0.113.7"  # type: ignore[attr-defined]
    assert mine[-1].status_code == 401  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if getattr(r, "endpoint", None) == "/health"]

"""Security events: one function, one logger, one counter, one fixed vocabulary.

Every security event goes through ``emit_security_event``. It writes one line on the
logger named ``security`` (so operators can route, keep or ship that logger alone) and
counts ``security_events_total{event_type}``. The ``event_type`` strings are the ones of
the metrics contract; logs, metrics, audit and the SIEM export use the same strings.

A line carries, besides the fields of every log line (request id, trace id, user and
organization ids from ``observability.context``): ``event_type``, ``schema_version``,
the caller's ``client_ip`` and ``user_agent`` when known, and the event's own fields.
Secrets are redacted and emails masked by the log formatter, as on every other line.
The schema is documented in ``docs/security-events.md``; a change to it that is not an
addition bumps ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any, Protocol

from faultmaven_auth.observability.context import current_client
from faultmaven_auth.observability.logging import mask_emails

SCHEMA_VERSION = 1
LOGGER_NAME = "security"

security_logger = logging.getLogger(LOGGER_NAME)

# Attributes of a LogRecord (and the formatter's own keys) an event field must not shadow.
_RESERVED_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "timestamp",
    "level",
    "logger",
    "service",
    "environment",
}


class SecurityEventType(StrEnum):
    BRUTE_FORCE_DETECTED = "brute_force_detected"
    ACCOUNT_LOCKED = "account_locked"
    CREDENTIAL_STUFFING_DETECTED = "credential_stuffing_detected"
    RATE_LIMITED = "rate_limited"
    PRIVILEGE_ESCALATION_ATTEMPT = "privilege_escalation_attempt"
    CROSS_TENANT_ACCESS = "cross_tenant_access"
    REFRESH_TOKEN_REUSE = "refresh_token_reuse"


class SecurityEventCounter(Protocol):
    """What the event API needs from ``observability.metrics.Metrics``."""

    def security_event(self, event_type: str) -> None: ...


def emit_security_event(
    event_type: SecurityEventType,
    message: str,
    *,
    metrics: SecurityEventCounter | None,
    level: int = logging.WARNING,
    **fields: Any,
) -> None:
    """Log ``message`` on the ``security`` logger and count the event.

    ``fields`` are the event's own facts (``user_id``, ``attempted_resource``, ...); they
    win over the request context of the same name. ``metrics`` may be None only where no
    app is running (a CLI command), and then nothing is counted.
    """
    _check_fields(fields)
    if metrics is not None:
        metrics.security_event(event_type.value)
    _write(event_type.value, message, level, fields)


def log_security_line(event_type: str, message: str, *, level: int, **fields: Any) -> None:
    """A line on the ``security`` logger that is not a counted security event.

    Login outcomes (``login_succeeded``, ``login_failed``) and login-protection outages
    (``login_protection_unavailable``) share the event schema, so a SIEM receives them
    alike, but they are counted elsewhere (``auth_attempts_total``) or not at all.
    """
    if event_type in _COUNTED:
        raise ValueError(f"{event_type!r} is a counted security event: use emit_security_event")
    _check_fields(fields)
    _write(event_type, message, level, fields)


def masked_email(email: str) -> str:
    """``j***@example.com``: enough to correlate, not enough to enumerate."""
    return mask_emails(email) if "@" in email else "***"


_COUNTED = frozenset(t.value for t in SecurityEventType)


def _check_fields(fields: dict[str, Any]) -> None:
    reserved = _RESERVED_FIELDS.intersection(fields)
    if reserved:
        raise ValueError(f"security event fields shadow log fields: {sorted(reserved)}")


def _write(event_type: str, message: str, level: int, fields: dict[str, Any]) -> None:
    client_ip, user_agent = current_client()
    extra: dict[str, Any] = {
        "event_type": event_type,
        "schema_version": SCHEMA_VERSION,
    }
    if client_ip is not None:
        extra["client_ip"] = client_ip
    if user_agent is not None:
        extra["user_agent"] = user_agent
    extra.update({k: v for k, v in fields.items() if v is not None})
    security_logger.log(level, message, extra=extra)

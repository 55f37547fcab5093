"""Logging configured once: one JSON object per line on stdout (or readable console lines).

Every line carries ``timestamp``, ``level``, ``logger``, ``message``, ``service`` and
``environment``; context fields (``request_id``, ``user_id``, ``organization_id``) come
from ``observability.context`` and ``trace_id``/``span_id`` from the active span, so
lines written by libraries inside a request carry them too.

Before a line is written, values under secret-looking keys are replaced and email
addresses are masked (``j***@example.com``) unless ``LOG_INCLUDE_PII=true``. The same
scrubbing applies to free text - the message, string fields, and the exception's
message and traceback (where a database driver may quote a row): argon2 hashes, JWTs,
our opaque tokens, ``Bearer``/``Basic`` credentials, ``password=...``-style pairs, SQL
parameter lists and quoted rows are replaced by ``[REDACTED]``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from faultmaven_auth.observability.context import context_fields

_SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "password_hash",
        "token",
        "access_token",
        "refresh_token",
        "invitation_token",
        "id_token",
        "secret",
        "client_secret",
        "authorization",
        "cookie",
        "set-cookie",
        "api_key",
    }
)
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")

_REDACTED = "[REDACTED]"
_SECRET_KEY_ALTERNATIVES = "|".join(
    sorted((re.escape(k) for k in _SECRET_KEYS | {"password_hash", "secret_hash"}), key=len)[::-1]
)
# (pattern, replacement, cheap substring that must be present for the pattern to match)
_SECRET_VALUES: tuple[tuple[re.Pattern[str], str, str | None], ...] = (
    (re.compile(r"\$argon2(?:id|i|d)\$[A-Za-z0-9+/=$,.-]*"), _REDACTED, "$argon2"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), _REDACTED, "eyJ"),
    (re.compile(r"\b(fm[rsi]_)[A-Za-z0-9_-]{8,}"), r"\1" + _REDACTED, "fm"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + _REDACTED, None),
    (
        re.compile(
            rf"(?i)([\"']?\b(?:{_SECRET_KEY_ALTERNATIVES})\b[\"']?\s*[:=]\s*)"
            r"(\"[^\"]*\"|'[^']*'|[^\s,;&)}\]]+)"
        ),
        r"\1" + _REDACTED,
        None,
    ),
    # SQLAlchemy's "[parameters: (...)]" (in case an engine lacks hide_parameters) and
    # PostgreSQL's DETAIL lines, which quote the row or the key that failed.
    (re.compile(r"\[parameters: [^\n]*"), "[parameters: " + _REDACTED + "]", "[parameters"),
    (re.compile(r"Failing row contains \([^\n]*"), "Failing row contains " + _REDACTED, "Failing"),
    (re.compile(r"(Key \([^)\n]*\))=\([^\n]*?\)( |$)"), r"\1=(" + _REDACTED + r")\2", "Key ("),
)

TraceIds = Callable[[], tuple[str, str] | None]


def mask_emails(text: str) -> str:
    return _EMAIL.sub(r"\1***@\2", text)


def scrub_text(text: str, *, mask: bool = True) -> str:
    """Free text as it may be logged: secret-looking values removed, emails masked."""
    for pattern, replacement, needle in _SECRET_VALUES:
        if needle is None or needle in text:
            text = pattern.sub(replacement, text)
    if mask and "@" in text:
        text = mask_emails(text)
    return text


def redact(value: Any, *, mask: bool = True) -> Any:
    """Replace values under secret-looking keys, recursively; mask emails in strings."""
    if isinstance(value, dict):
        return {
            k: "[REDACTED]" if str(k).lower() in _SECRET_KEYS else redact(v, mask=mask)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, mask=mask) for v in value]
    if isinstance(value, str):
        return scrub_text(value, mask=mask)
    return value


def _no_trace() -> tuple[str, str] | None:
    return None


class _Fields:
    """Builds the dict of one line; shared by the JSON and console formatters."""

    def __init__(
        self, service: str, environment: str, include_pii: bool, trace_ids: TraceIds
    ) -> None:
        self.service = service
        self.environment = environment
        self.mask = not include_pii
        self.trace_ids = trace_ids

    def build(self, record: logging.LogRecord) -> dict[str, Any]:
        message = record.getMessage()
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub_text(message, mask=self.mask),
            "service": self.service,
            "environment": self.environment,
        }
        line.update(context_fields())
        ids = self.trace_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        extra = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        if extra:
            line.update(redact(extra, mask=self.mask))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            # Exception text is free text too: a driver error can quote a row, and a
            # chained exception's message appears again in the traceback.
            line["exception"] = {
                "type": type(exc).__name__,
                "message": scrub_text(str(exc), mask=self.mask),
                "traceback": scrub_text(
                    "".join(traceback.format_exception(*record.exc_info)), mask=self.mask
                ),
            }
        return line


def line_fields(
    *, service: str, environment: str, include_pii: bool = False, trace_ids: TraceIds | None = None
) -> _Fields:
    """What every formatter of this service puts on a line (shared by stdout and SIEM)."""
    return _Fields(service, environment, include_pii, trace_ids or _no_trace)


class JsonFormatter(logging.Formatter):
    def __init__(self, fields: _Fields) -> None:
        super().__init__()
        self._fields = fields

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self._fields.build(record), default=str)


class ConsoleFormatter(logging.Formatter):
    """For people at a terminal in development: time, level, message, then key=value."""

    _HEAD = ("timestamp", "level", "logger", "message", "service", "environment", "exception")

    def __init__(self, fields: _Fields) -> None:
        super().__init__()
        self._fields = fields

    def format(self, record: logging.LogRecord) -> str:
        line = self._fields.build(record)
        rest = " ".join(f"{k}={v}" for k, v in line.items() if k not in self._HEAD)
        text = f"{line['timestamp']} {line['level']:<8} {line['logger']}: {line['message']}"
        if rest:
            text += f"  {rest}"
        if "exception" in line:
            text += "\n" + line["exception"]["traceback"]
        return text


def configure_logging(
    *,
    level: str,
    service: str,
    environment: str,
    log_format: str = "json",
    include_pii: bool = False,
    trace_ids: TraceIds | None = None,
) -> None:
    fields = _Fields(service, environment, include_pii, trace_ids or _no_trace)
    handler = logging.StreamHandler(sys.stdout)
    formatter = ConsoleFormatter(fields) if log_format == "console" else JsonFormatter(fields)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Our request middleware writes the access log; libraries speak only when it matters.
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "aiosqlite",
                  "asyncio", "httpx", "httpcore"):  # fmt: skip
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True
    # Security events are written (and shipped) whatever LOG_LEVEL says.
    logging.getLogger("security").setLevel(min(root.level, logging.INFO))

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
import time
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
# (pattern, replacement, substrings of which one must be present for the pattern to
# match: a ``str.__contains__`` is far cheaper than a regex search, and most log text -
# paths, methods, addresses, messages - holds none of them). Case-insensitive patterns
# list lower-case needles, tested against ``text.lower()`` only for ASCII text (Unicode
# case folding, e.g. the long s, would make a lower-case test miss a match).
_SECRET_VALUES: tuple[tuple[re.Pattern[str], str, tuple[str, ...], bool], ...] = (
    (re.compile(r"\$argon2(?:id|i|d)\$[A-Za-z0-9+/=$,.-]*"), _REDACTED, ("$argon2",), False),
    (
        re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        _REDACTED,
        ("eyJ",),
        False,
    ),
    (re.compile(r"\b(fm[rsi]_)[A-Za-z0-9_-]{8,}"), r"\1" + _REDACTED, ("fm",), False),
    (
        re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
        r"\1 " + _REDACTED,
        ("bearer", "basic"),
        True,
    ),
    (
        re.compile(
            rf"(?i)([\"']?\b(?:{_SECRET_KEY_ALTERNATIVES})\b[\"']?\s*[:=]\s*)"
            r"(\"[^\"]*\"|'[^']*'|[^\s,;&)}\]]+)"
        ),
        r"\1" + _REDACTED,
        (":", "="),
        False,
    ),
    # SQLAlchemy's "[parameters: (...)]" (in case an engine lacks hide_parameters) and
    # PostgreSQL's DETAIL lines, which quote the row or the key that failed.
    (
        re.compile(r"\[parameters: [^\n]*"),
        "[parameters: " + _REDACTED + "]",
        ("[parameters",),
        False,
    ),
    (
        re.compile(r"Failing row contains \([^\n]*"),
        "Failing row contains " + _REDACTED,
        ("Failing",),
        False,
    ),
    (
        re.compile(r"(Key \([^)\n]*\))=\([^\n]*?\)( |$)"),
        r"\1=(" + _REDACTED + r")\2",
        ("Key (",),
        False,
    ),
)

TraceIds = Callable[[], tuple[str, str] | None]
# ``json.dumps(line, default=str)`` builds this encoder anew on every call.
_JSON = json.JSONEncoder(default=str)


def mask_emails(text: str) -> str:
    return _EMAIL.sub(r"\1***@\2", text)


# Short texts known to come out of ``scrub_text(mask=True)`` unchanged (so they hold no
# secret and no email): paths, methods, addresses, user agents and messages repeat on
# every request, and a set probe is far cheaper than the patterns. Bounded: emptied
# when full, so varied input (a user agent per request) costs only the patterns.
_CLEAN_TEXTS: set[str] = set()
_CLEAN_TEXTS_MAX = 4096
_CLEAN_TEXT_MAX_LENGTH = 256


def scrub_text(text: str, *, mask: bool = True) -> str:
    """Free text as it may be logged: secret-looking values removed, emails masked."""
    if text in _CLEAN_TEXTS:
        return text  # unchanged with masking, so unchanged without it too
    scrubbed = _scrub_text(text, mask=mask)
    if mask and scrubbed == text and len(text) <= _CLEAN_TEXT_MAX_LENGTH:
        if len(_CLEAN_TEXTS) >= _CLEAN_TEXTS_MAX:
            _CLEAN_TEXTS.clear()
        _CLEAN_TEXTS.add(text)
    return scrubbed


def _scrub_text(text: str, *, mask: bool) -> str:
    lowered: str | None = None  # made when a case-insensitive pattern first needs it
    for pattern, replacement, needles, any_case in _SECRET_VALUES:
        if not any_case:
            present = any(needle in text for needle in needles)
        elif not text.isascii():
            present = True
        else:
            if lowered is None:
                lowered = text.lower()
            present = any(needle in lowered for needle in needles)
        if present:
            scrubbed = pattern.sub(replacement, text)
            if scrubbed != text:
                text, lowered = scrubbed, None
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
        extra = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        line = self.line(record.created, record.levelname, record.name, record.getMessage(), extra)
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

    def line(
        self, created: float, level: str, logger: str, message: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        """The line's fields, exception aside (``build`` adds it)."""
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": level,
            "logger": logger,
            "message": scrub_text(message, mask=self.mask),
            "service": self.service,
            "environment": self.environment,
        }
        line.update(context_fields())
        ids = self.trace_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if extra:
            mask = self.mask
            for key, value in extra.items():  # ``redact(extra)``, one level unrolled
                if str(key).lower() in _SECRET_KEYS:
                    line[key] = _REDACTED
                elif isinstance(value, str):
                    line[key] = scrub_text(value, mask=mask)
                else:
                    line[key] = redact(value, mask=mask)
        return line


def line_fields(
    *, service: str, environment: str, include_pii: bool = False, trace_ids: TraceIds | None = None
) -> _Fields:
    """What every formatter of this service puts on a line (shared by stdout and SIEM)."""
    return _Fields(service, environment, include_pii, trace_ids or _no_trace)


class JsonFormatter(logging.Formatter):
    def __init__(self, fields: _Fields) -> None:
        super().__init__()
        self.fields = fields

    def format(self, record: logging.LogRecord) -> str:
        return _JSON.encode(self.fields.build(record))


class DirectLog:
    """One logger's plain lines (no arguments, no exception) written straight to the
    JSON handler when it is the only place they would go: the same line as
    ``logger.log(level, message, extra=fields)``, without the ``LogRecord``, the caller
    lookup and the handler chain (about half a line's cost; the access log writes one or
    two lines per request).

    Whenever anything else listens - a filter, another handler (pytest's capture, a
    console format), a parent that does not propagate - it is ``logger.log`` itself.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def log(self, level: int, message: str, fields: dict[str, Any]) -> None:
        if not self.logger.isEnabledFor(level):
            return
        sole = self._sole_json_handler(level)
        if sole is None:
            self.logger.log(level, message, extra=fields)
            return
        handler, formatter = sole
        line = formatter.fields.line(
            time.time(), logging.getLevelName(level), self.logger.name, message, fields
        )
        try:
            text = _JSON.encode(line) + handler.terminator
            handler.acquire()
            try:
                handler.stream.write(text)
                handler.flush()
            finally:
                handler.release()
        except RecursionError:
            raise
        except Exception:
            handler.handleError(logging.makeLogRecord({"msg": message, "levelno": level}))

    def _sole_json_handler(
        self, level: int
    ) -> tuple[logging.StreamHandler[Any], JsonFormatter] | None:
        logger: logging.Logger | None = self.logger
        if self.logger.disabled or self.logger.filters:
            return None
        found: list[logging.Handler] = []
        while logger is not None:
            found.extend(logger.handlers)
            logger = logger.parent if logger.propagate else None
        if len(found) != 1:
            return None
        handler, formatter = found[0], found[0].formatter
        if (
            type(handler) is not logging.StreamHandler
            or type(formatter) is not JsonFormatter
            or handler.filters
            or level < handler.level
        ):
            return None
        return handler, formatter


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

"""The access log's shortcuts write the very line ``logger.log`` would.

``DirectLog`` skips the ``LogRecord`` when the JSON handler is the only listener; a
reader of the log must not be able to tell which path wrote a line.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultmaven_auth.observability import logging as logging_module
from faultmaven_auth.observability.context import (
    bind_client,
    bind_context,
    bind_request_id,
    clear_context,
)
from faultmaven_auth.observability.logging import DirectLog, JsonFormatter, line_fields

FIELDS = {
    "endpoint": "/api/v1/auth/me",
    "method": "GET",
    "client_ip": "203.0.113.7",
    "user_agent": "curl/8.5 jane.doe@example.com",
    "status_code": 200,
    "duration_ms": 1.25,
}


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose only listener is a JSON stdout-style handler."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter(
            line_fields(service="svc", environment="test", trace_ids=lambda: ("t" * 32, "s" * 16))
        )
    )
    log = logging.getLogger(f"faultmaven_auth.request.test-{uuid.uuid4().hex[:8]}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    bind_request_id("req-1")
    bind_client("203.0.113.7", "curl/8.5")
    bind_context(user_id="u-1", organization_id="o-1")
    yield log, stream
    clear_context()
    log.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _pass(_record: logging.LogRecord) -> bool:
    return True


def test_direct_line_equals_the_logging_line(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    """Same keys in the same order, same values (the timestamp aside), email masked."""
    log, stream = logger
    DirectLog(log).log(logging.INFO, "Request completed", dict(FIELDS))
    log.addFilter(_pass)  # another listener: the direct path steps aside
    DirectLog(log).log(logging.INFO, "Request completed", dict(FIELDS))
    direct, classic = lines(stream)
    assert list(direct) == list(classic)
    direct.pop("timestamp")
    stamp = classic.pop("timestamp")
    assert direct == classic
    assert stamp.endswith("Z")
    assert len(stamp) == len("2026-01-01T00:00:00.000Z")
    assert classic["user_agent"] == "curl/8.5 j***@example.com"
    assert classic["request_id"] == "req-1"
    assert classic["trace_id"] == "t" * 32


def test_other_listeners_get_a_record(
    logger: tuple[logging.Logger, io.StringIO], caplog: pytest.LogCaptureFixture
) -> None:
    """With a second handler on the way, the line goes through logging as before."""
    log, stream = logger
    log.propagate = True
    with caplog.at_level(logging.INFO, logger=log.name):
        DirectLog(log).log(logging.INFO, "Request started", dict(FIELDS))
    records = [r for r in caplog.records if r.name == log.name]
    assert {r.getMessage() for r in records} == {"Request started"}
    assert records[0].endpoint == "/api/v1/auth/me"
    assert lines(stream)[0]["message"] == "Request started"


def test_a_disabled_level_writes_nothing(logger: tuple[logging.Logger, io.StringIO]) -> None:
    """DEBUG lines (probes, scrapes) stay out of an INFO log on the direct path too."""
    log, stream = logger
    DirectLog(log).log(logging.DEBUG, "Request completed", dict(FIELDS))
    assert stream.getvalue() == ""


# -- scrubbing: the shortcuts change nothing ------------------------------------------------

# Pieces of text the patterns look for, so generated strings often hold a secret.
_PIECES = [
    "Bearer abcdefgh12345678",
    "BASIC QWxhZGRpbjpvcGVu",
    "ba\u017fic abcdefghijk",  # the long s folds to "s" for the case-insensitive pattern
    "password=hunter2",
    "'client_secret': 'x'",
    "TOKEN : abc",
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
    "eyJhbGciOi.eyJzdWIiOi.c2ln",
    "fmr_abcdefgh1234",
    "[parameters: ('a@b.io',)]",
    "Failing row contains (1, x)",
    "Key (email)=(a@b.io) ",
    "jane@example.com",
    "/api/v1/auth/me",
    " ",
    ":",
    "=",
]


def _every_pattern(text: str, mask: bool) -> str:
    """The scrubbing rule itself: every pattern, in order, then the email mask."""
    for pattern, replacement, _needles, _any_case in logging_module._SECRET_VALUES:
        text = pattern.sub(replacement, text)
    return logging_module.mask_emails(text) if mask and "@" in text else text


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=12)), max_size=6),
    mask=st.booleans(),
)
def test_scrub_text_equals_every_pattern_applied(parts: list[str], mask: bool) -> None:
    """Needle checks and the clean-text cache are shortcuts: the result is the same as
    running every pattern, for text with or without secrets, ASCII or not."""
    text = "".join(parts)
    for _ in range(2):  # the second call may come from the clean-text cache
        assert logging_module.scrub_text(text, mask=mask) == _every_pattern(text, mask)

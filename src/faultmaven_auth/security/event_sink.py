"""Where login protection reports security events: one log line and one counter each.

The line goes to the ``security`` logger (which SIEM export forwards) with ``event_type``
set to the same string as ``security_events_total{event_type}``. Kept as one small
function so a shared security-event module can replace it without touching callers.
"""

from __future__ import annotations

import logging
from typing import Any

from faultmaven_auth.observability.logging import mask_emails
from faultmaven_auth.observability.metrics import Metrics

security_logger = logging.getLogger("security")


def masked_email(email: str) -> str:
    """``j***@example.com``: enough to correlate, not enough to enumerate."""
    return mask_emails(email) if "@" in email else "***"


def emit_security_event(
    metrics: Metrics, event_type: str, message: str, *, level: int, **fields: Any
) -> None:
    security_logger.log(level, message, extra={"event_type": event_type, **fields})
    metrics.security_event(event_type)

"""Committed audit events to the SIEM destinations (``SIEM_AUDIT_EVENTS=true``).

The audit log is the database table; this ships a copy of each event once its
transaction commits, so a SIEM sees exactly what was kept (a rolled-back change ships
nothing). Events are collected after each flush, when their ids and hash-chain fields
are set, and written after the commit on the logger named ``audit``. That logger does
not propagate: its only handlers are the SIEM destinations, so stdout does not repeat
the audit table. Each line carries ``event_type="audit_event"`` and the event, exactly
as ``GET .../audit-events`` returns it, under ``audit``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction

from faultmaven_auth.audit.schemas import AuditEventOut
from faultmaven_auth.security.events import SCHEMA_VERSION
from faultmaven_auth.storage.models import AuditEvent

# isort: split
# After the models, which import audit_chain first (see audit.recorder).
from faultmaven_auth.storage.audit_chain import APPENDED_EVENTS

AUDIT_LOGGER_NAME = "audit"
AUDIT_EVENT_TYPE = "audit_event"
_PENDING = "faultmaven_audit_export"

audit_logger = logging.getLogger(AUDIT_LOGGER_NAME)
audit_logger.propagate = False
audit_logger.setLevel(logging.INFO)


def _collect(session: Session, _context: UOWTransaction) -> None:
    # After a flush the "new" list still names what was just inserted.
    flushed = [_as_exported(obj) for obj in session.new if isinstance(obj, AuditEvent)]
    if flushed:
        session.info.setdefault(_PENDING, []).extend(flushed)


def _as_exported(audit_event: AuditEvent) -> dict[str, Any]:
    exported: dict[str, Any] = AuditEventOut.model_validate(audit_event).model_dump(mode="json")
    return exported


def _ship(session: Session) -> None:
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    # Events written with Core statements (``audit_chain.append_event``) skip the flush.
    appended = [_as_exported(obj) for obj in session.info.pop(APPENDED_EVENTS, [])]
    if appended:
        # Ids are UUIDv7 taken in chain order: sorting restores the order they were written.
        pending = sorted(pending + appended, key=lambda audit: str(audit["id"]))
    for audit in pending:
        audit_logger.info(
            "Audit event",
            extra={
                "event_type": AUDIT_EVENT_TYPE,
                "schema_version": SCHEMA_VERSION,
                "audit": audit,
            },
        )


def _discard(session: Session, *_: Any) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(APPENDED_EVENTS, None)


_LISTENERS = (("after_flush", _collect), ("after_commit", _ship), ("after_rollback", _discard))


_installed = [0]  # apps in this process that ship audit events (listeners are global)


def install_audit_export() -> None:
    """Start shipping committed audit events (process-wide, as logging is)."""
    _installed[0] += 1
    if _installed[0] == 1:
        for name, listener in _LISTENERS:
            event.listen(Session, name, listener)


def uninstall_audit_export() -> None:
    """Stop, once the last app that started it stops."""
    _installed[0] -= 1
    if _installed[0] == 0:
        for name, listener in _LISTENERS:
            event.remove(Session, name, listener)

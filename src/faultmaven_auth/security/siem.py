"""SIEM export of the ``security`` logger: RFC 5424 syslog and Logstash json_lines.

Each event is the same JSON object the service writes on stdout (same fields, same
redaction), formatted in the request's thread and shipped by ``shipping.ShippingHandler``
(bounded queue, sender thread, drops counted in ``siem_events_dropped_total``).

Syslog (``SIEM_SYSLOG_ADDRESS``, ``SIEM_SYSLOG_PROTOCOL``): one RFC 5424 message per event,

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - JSON

with ``MSGID`` the event type, over UDP (one datagram, RFC 5426) or TCP with
octet-counting framing (``LEN SP MSG``, RFC 6587). Logstash (``LOGSTASH_HOST``,
``LOGSTASH_PORT``): the JSON object and a newline over TCP, for the ``json_lines`` codec.

``SiemExport.start`` attaches the handlers (from the app lifespan, never at import time)
and ``close`` detaches them and flushes what is queued.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from faultmaven_auth.config import Settings, SyslogProtocol
from faultmaven_auth.observability.logging import JsonFormatter, TraceIds, line_fields
from faultmaven_auth.security.audit_export import (
    audit_logger,
    install_audit_export,
    uninstall_audit_export,
)
from faultmaven_auth.security.events import LOGGER_NAME
from faultmaven_auth.security.shipping import (
    ShippingHandler,
    TcpTransport,
    Transport,
    UdpTransport,
)

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip


def syslog_severity(levelno: int) -> int:
    """RFC 5424 severity of a Python level: 2 critical, 3 error, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def header_field(value: object, max_length: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, or the NILVALUE ``-``."""
    text = "" if value is None else str(value)
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:max_length]
    return cleaned or "-"


class SyslogEncoder:
    """Frames a formatted event as an RFC 5424 message (octet-counted for TCP)."""

    def __init__(
        self, *, facility: int, app_name: str, octet_counting: bool, hostname: str | None = None
    ) -> None:
        self.facility = facility
        self.hostname = header_field(hostname or socket.gethostname(), 255)
        self.app_name = header_field(app_name, 48)
        self.octet_counting = octet_counting

    def __call__(self, record: logging.LogRecord, text: str) -> bytes:
        pri = self.facility * 8 + syslog_severity(record.levelno)
        timestamp = (
            datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        procid = header_field(record.process or os.getpid(), 128)
        msgid = header_field(getattr(record, "event_type", None), 32)
        # JSON is written with ASCII escapes, so MSG needs no UTF-8 BOM.
        message = (
            f"<{pri}>1 {timestamp} {self.hostname} {self.app_name} {procid} {msgid} - {text}"
        ).encode("ascii", "backslashreplace")
        if self.octet_counting:
            return b"%d %s" % (len(message), message)
        return message


def json_lines(_: logging.LogRecord, text: str) -> bytes:
    return text.encode() + b"\n"


class DropCounter(Protocol):
    def siem_destination_added(self, destination: str) -> None: ...

    def siem_event_dropped(self, destination: str) -> None: ...


class SiemExport:
    """The configured SIEM handlers on the ``security`` logger."""

    def __init__(self, handlers: list[ShippingHandler], *, audit_events: bool = False) -> None:
        self.handlers = handlers
        # Committed audit events too (SIEM_AUDIT_EVENTS), on the non-propagating
        # ``audit`` logger whose only handlers are these.
        self.audit_events = audit_events and bool(handlers)

    @classmethod
    def from_settings(
        cls, settings: Settings, metrics: DropCounter, trace_ids: TraceIds | None = None
    ) -> SiemExport:
        """Handlers for every destination ``settings`` names (none: an empty export)."""
        formatter = JsonFormatter(
            line_fields(
                service=settings.service_name,
                environment=settings.environment.value,
                include_pii=settings.log_include_pii,
                trace_ids=trace_ids,
            )
        )

        def handler(
            destination: str, transport: Transport, encode: Callable[..., bytes]
        ) -> ShippingHandler:
            metrics.siem_destination_added(destination)
            shipping = ShippingHandler(
                destination,
                transport,
                encode,
                capacity=settings.siem_queue_size,
                on_drop=lambda: metrics.siem_event_dropped(destination),
            )
            shipping.setFormatter(formatter)
            return shipping

        handlers = []
        if settings.siem_syslog_address is not None:
            host, port = settings.siem_syslog_address
            tcp = settings.siem_syslog_protocol is SyslogProtocol.TCP
            transport: Transport = TcpTransport(host, port) if tcp else UdpTransport(host, port)
            encoder = SyslogEncoder(
                facility=FACILITIES[settings.siem_syslog_facility],
                app_name=settings.service_name,
                octet_counting=tcp,
            )
            handlers.append(handler("syslog", transport, encoder))
        if settings.logstash_host:
            transport = TcpTransport(settings.logstash_host, settings.logstash_port)
            handlers.append(handler("logstash", transport, json_lines))
        return cls(handlers, audit_events=settings.siem_audit_events)

    def start(self) -> None:
        loggers = [logging.getLogger(LOGGER_NAME)]
        if self.audit_events:
            loggers.append(audit_logger)
            install_audit_export()
        for logger in loggers:
            for handler in self.handlers:
                logger.addHandler(handler)

    def close(self) -> None:
        """Detach the handlers, then flush and close them (blocks up to a few seconds)."""
        if self.audit_events:
            uninstall_audit_export()
        for logger in (logging.getLogger(LOGGER_NAME), audit_logger):
            for handler in self.handlers:
                logger.removeHandler(handler)
        for handler in self.handlers:
            handler.close()

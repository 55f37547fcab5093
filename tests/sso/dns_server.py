"""A tiny real DNS server (dnslib) on 127.0.0.1 answering TXT records the test sets,
so domain verification runs through a real resolver and a real UDP exchange."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class TxtZone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        values = self.records.get(name)
        if values is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in values:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(value), ttl=1))
        return reply


@contextmanager
def running_dns() -> Iterator[tuple[TxtZone, str]]:
    """The zone to fill and the server's "127.0.0.1:port"."""
    zone = TxtZone()
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=DNSLogger("-request,-reply"))
    server.start_thread()
    try:
        yield zone, f"127.0.0.1:{server.server.server_address[1]}"
    finally:
        server.stop()
        server.server.server_close()

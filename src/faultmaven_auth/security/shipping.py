"""Ship log records to a network destination without ever blocking the caller.

``ShippingHandler.emit`` runs in the thread that logged (inside a request, so the
formatter still sees the request's context): it formats the record, frames it and puts
the bytes on a bounded queue. It never waits: when the queue is full the event is
dropped and counted. One daemon thread per destination takes events off the queue and
sends them; when the destination is down it keeps the current event, retries with
exponential backoff and lets the queue absorb what arrives meanwhile, so a short outage
loses nothing and a long one loses only what does not fit.

    Transport (Protocol)         send(bytes) raises OSError when the destination is down
    ├── UdpTransport             one datagram per event; never "down" (no feedback)
    └── TcpTransport             connects lazily, reconnects after any error
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import threading
from collections.abc import Callable
from typing import Protocol

# Diagnostics about shipping go to the service's own logger, never to the shipped one.
logger = logging.getLogger("faultmaven_auth.siem")

Encoder = Callable[[logging.LogRecord, str], bytes]


class Transport(Protocol):
    def send(self, payload: bytes) -> None: ...

    def close(self) -> None: ...


class UdpTransport:
    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)

    def send(self, payload: bytes) -> None:
        self._sock.sendto(payload, self._address)

    def close(self) -> None:
        self._sock.close()


class TcpTransport:
    """A stream connection, opened on first use and again after any failure."""

    def __init__(self, host: str, port: int, *, timeout: float = 2.0) -> None:
        self._address = (host, port)
        self._timeout = timeout
        self._sock: socket.socket | None = None

    def send(self, payload: bytes) -> None:
        if self._sock is not None and self._peer_closed(self._sock):
            self.close()
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=self._timeout)
        try:
            self._sock.sendall(payload)
        except OSError:
            self.close()
            raise

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        # Receivers never write back; a readable socket means the peer closed it (or
        # reset it), and a send would vanish into a dead connection.
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


_STOP = object()


class ShippingHandler(logging.Handler):
    """A logging handler that hands formatted events to a sender thread."""

    def __init__(
        self,
        destination: str,
        transport: Transport,
        encode: Encoder,
        *,
        capacity: int,
        on_drop: Callable[[], None],
        first_retry: float = 0.5,
        max_retry: float = 30.0,
    ) -> None:
        super().__init__()
        self.destination = destination
        self._transport = transport
        self._encode = encode
        self._on_drop = on_drop
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._stopping = threading.Event()
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._down = False  # the destination refused the last attempt
        self._thread = threading.Thread(target=self._run, name=f"siem-{destination}", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = self._encode(record, self.format(record))
        except Exception:
            self.handleError(record)
            return
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self._on_drop()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            if item is _STOP:
                return
            assert isinstance(item, bytes)  # noqa: S101 - only emit() and close() enqueue
            self._deliver(item)

    def _deliver(self, payload: bytes) -> None:
        delay = self._first_retry
        down = False
        while True:
            try:
                self._transport.send(payload)
            except OSError as exc:
                if not down:
                    down = self._down = True
                    logger.warning(
                        "SIEM destination unreachable; buffering and retrying",
                        extra={"destination": self.destination, "reason": type(exc).__name__},
                    )
                if self._stopping.wait(delay):
                    self._on_drop()
                    return
                delay = min(delay * 2, self._max_retry)
                continue
            self._down = False
            if down:
                logger.info(
                    "SIEM destination reachable again", extra={"destination": self.destination}
                )
            return

    def close(self, flush_seconds: float = 2.0) -> None:
        """Send what is queued (for at most ``flush_seconds``), then stop the thread.

        Events still queued after that, or while the destination is down, are counted
        as dropped: shutdown does not wait for a destination that is not there.
        """
        with contextlib.suppress(queue.Full):  # when full, _stopping ends the thread
            self._queue.put_nowait(_STOP)
        self._thread.join(0 if self._down else flush_seconds)
        self._stopping.set()
        self._thread.join(1.0)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._on_drop()
        self._transport.close()
        super().close()

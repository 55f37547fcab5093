"""Real network receivers on 127.0.0.1 for the SIEM tests: a UDP syslog socket and a TCP
listener (syslog over TCP or Logstash json_lines). They record raw bytes; the tests parse
them the way a receiver would."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>(?P<version>1) (?P<timestamp>\S+) (?P<hostname>\S+) "
    r"(?P<app_name>\S+) (?P<procid>\S+) (?P<msgid>\S+) (?P<sd>-|\[.*?\]) (?P<msg>.*)$",
    re.DOTALL,
)


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not received within {timeout} s")
        time.sleep(0.02)


def octet_counted_frames(data: bytes) -> list[bytes]:
    """Split an RFC 6587 octet-counted stream (``LEN SP MSG`` ...); a partial tail is kept out."""
    frames = []
    while data:
        length, sep, rest = data.partition(b" ")
        assert sep, f"not octet-counting framing: {data[:40]!r}"
        assert length.isdigit(), f"not octet-counting framing: {data[:40]!r}"
        if len(rest) < int(length):
            break
        frames.append(rest[: int(length)])
        data = rest[int(length) :]
    return frames


class UdpReceiver:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.datagrams: list[bytes] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                data, _ = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.datagrams.append(data)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(2)
        self._sock.close()


class TcpReceiver:
    """Accepts any number of connections and keeps the bytes of each."""

    def __init__(self, port: int = 0) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", port))
        self._server.listen()
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self.connections: list[bytearray] = []
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            buffer = bytearray()
            self.connections.append(buffer)
            reader = threading.Thread(target=self._read, args=(conn, buffer), daemon=True)
            self._threads.append(reader)
            reader.start()

    def _read(self, conn: socket.socket, buffer: bytearray) -> None:
        conn.settimeout(0.1)
        with conn:
            while not self._stopped.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer.extend(chunk)

    def data(self) -> bytes:
        return b"".join(bytes(c) for c in self.connections)

    def lines(self) -> list[bytes]:
        return [line for c in self.connections for line in bytes(c).split(b"\n")[:-1]]

    def stop(self) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join(2)
        self._server.close()

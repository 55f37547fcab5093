"""Pure ASGI middleware: request ids, the access log, the last-resort 500, body limits.

Starlette's ``BaseHTTPMiddleware`` costs about four times the throughput of a plain
ASGI callable, so these wrap ``receive``/``send`` directly.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faultmaven_auth.errors import error_body
from faultmaven_auth.observability.context import bind_client, bind_request_id, clear_context
from faultmaven_auth.observability.logging import DirectLog
from faultmaven_auth.observability.request_ids import new_request_id

logger = logging.getLogger("faultmaven_auth.request")
access_log = DirectLog(logger)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# Probes and scrapes are logged at DEBUG: at INFO they would drown real traffic.
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_ip(scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    """The peer address; behind trusted proxies, the last untrusted X-Forwarded-For hop.

    Walking from the right means a client cannot forge its address by sending its own
    X-Forwarded-For: only hops appended by our proxies are skipped.
    """
    peer = scope.get("client")
    address: str | None = str(peer[0]) if peer else None
    if address is None or not trusted or not _is_trusted(address, trusted):
        return address
    forwarded = _header(scope, b"x-forwarded-for")
    if not forwarded:
        return address
    hops = [hop.strip() for hop in forwarded.decode("latin-1").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return address
    return hops[0] if hops else address


def choose_request_id(incoming: bytes | None) -> str:
    """Keep a caller's request id when it is short and plain; otherwise make a UUID4."""
    if incoming:
        candidate = incoming.decode("latin-1")
        if _SAFE_REQUEST_ID.match(candidate):
            return candidate
    return new_request_id()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


async def _send_json(send: Send, status: int, body: dict[str, object], request_id: str) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestContextMiddleware:
    """Binds the request id, echoes it in ``X-Request-ID``, logs the request, and turns
    crashes into a generic 500 (the traceback goes to the log, never to the client)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: Iterable[str] = (),
        log_request_start: bool = False,
    ) -> None:
        self.app = app
        self.trusted = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        self.log_request_start = log_request_start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = choose_request_id(_header(scope, b"x-request-id"))
        ip = client_ip(scope, self.trusted)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_ip"] = ip
        clear_context()
        bind_request_id(request_id)
        raw_agent = _header(scope, b"user-agent")
        agent = raw_agent.decode("latin-1")[:256] if raw_agent else None
        bind_client(ip, agent)
        level = logging.DEBUG if scope["path"] in QUIET_PATHS else logging.INFO
        log = logger.isEnabledFor(level)
        fields: dict[str, object] = {}
        if log:
            fields = {
                "endpoint": scope["path"],
                "method": scope["method"],
                "client_ip": ip,
                "user_agent": agent,
            }
            if self.log_request_start:
                access_log.log(level, "Request started", fields)
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal response_started, status
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            logger.exception("Unhandled exception", extra=fields)
            if not response_started:
                await _send_json(
                    send,
                    500,
                    error_body("INTERNAL_ERROR", "Internal server error"),
                    request_id,
                )
        finally:
            if log:
                duration_ms = round((time.perf_counter() - started) * 1000, 2)
                access_log.log(
                    level,
                    "Request completed",
                    {**fields, "status_code": status, "duration_ms": duration_ms},
                )
            clear_context()


class BodySizeLimitMiddleware:
    """Answers 413 when a body is larger than the limit, declared or streamed.

    The body is read here (up to the limit) before the app runs, because FastAPI turns
    any error raised while it reads a body into a generic 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        request_id = str(scope.get("state", {}).get("request_id", ""))
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, _too_large(), request_id)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_json(send, 413, _too_large(), request_id)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], then=receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def replay_receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return replay_receive


def _too_large() -> dict[str, object]:
    return error_body("PAYLOAD_TOO_LARGE", "The request body is too large")

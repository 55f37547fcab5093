"""An optional second listener that serves only ``/metrics`` (``METRICS_PORT``).

Keeping the scrape endpoint off the public port lets operators expose the API without
exposing metrics. The socket is opened with ``SO_REUSEPORT`` so every worker process can
serve it; in multiprocess mode each of them answers with the aggregated values.
"""

from __future__ import annotations

import asyncio
import json
import socket

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from faultmaven_auth.errors import error_body


def metrics_only(app: ASGIApp) -> ASGIApp:
    """Forward ``/metrics`` to the main app, marked as coming from this listener."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics":
            await app({**scope, "server_role": "metrics"}, receive, send)
            return
        if scope["type"] == "http":
            body = json.dumps(error_body("NOT_FOUND", "Only /metrics is served here")).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})

    return asgi


class MetricsServer:
    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self._sock = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
        )
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._sock.bind((host, port))
        config = uvicorn.Config(
            metrics_only(app), lifespan="off", log_config=None, access_log=False
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        # uvicorn offers a flag, not an event, for "started".
        while not self._server.started and not self._task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()

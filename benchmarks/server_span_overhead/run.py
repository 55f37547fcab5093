"""Per-request cost of the server span: off, unsampled and sampled, ours and the stock one.

Drives a small FastAPI app (one templated route, JSON response) through raw ASGI calls,
so the numbers are the middleware's and the framework's, not an HTTP client's. Sampled
spans go to a BatchSpanProcessor whose exporter drops them (export runs in its thread).

    .venv/bin/python benchmarks/server_span_overhead/run.py [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from faultmaven_auth.observability.spans import ServerSpanMiddleware


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider(ratio: float) -> TracerProvider:
    tracer_provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(ratio)), shutdown_on_exit=False
    )
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    return tracer_provider


def base_app(telemetry: TelemetryConfig | None = None) -> FastAPI:
    app = FastAPI(telemetry=telemetry or {"tracing": False})

    @app.get("/api/v1/organizations/{org_id}")
    async def organization(org_id: str) -> dict[str, str]:
        return {"id": org_id, "name": "Acme"}

    return app


def off() -> FastAPI:
    return base_app()


def lean(ratio: float) -> Callable[[], FastAPI]:
    def build() -> FastAPI:
        app = base_app()
        app.add_middleware(ServerSpanMiddleware, tracer=provider(ratio).get_tracer("bench"))
        return app

    return build


def stock(ratio: float) -> Callable[[], FastAPI]:
    def build() -> FastAPI:
        app = base_app()
        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider(ratio))
        return app

    return build


def native(ratio: float) -> Callable[[], FastAPI]:
    """FastAPI's own OpenTelemetry support, given a provider (no metrics, logs or sub-spans)."""

    def build() -> FastAPI:
        return base_app(
            {
                "tracing": True,
                "tracer_provider": provider(ratio),
                "metrics": False,
                "logs": False,
                "operation_spans": False,
            }
        )

    return build


SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/api/v1/organizations/0190c3a1-7d2e-7c4b-9a55-3f2d8e1b6a77",
    "raw_path": b"/api/v1/organizations/0190c3a1-7d2e-7c4b-9a55-3f2d8e1b6a77",
    "query_string": b"",
    "root_path": "",
    "headers": [
        (b"host", b"auth.example.com"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"application/json"),
        (b"authorization", b"Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"),
    ],
    "client": ("203.0.113.7", 50000),
    "server": ("127.0.0.1", 8000),
}


async def one_request(app: FastAPI) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    await app(dict(SCOPE), receive, send)


async def per_request_us(app: FastAPI, requests: int) -> float:
    for _ in range(500):  # warm up: middleware stack built, caches filled
        await one_request(app)
    start = time.perf_counter()
    for _ in range(requests):
        await one_request(app)
    return (time.perf_counter() - start) / requests * 1e6


async def main(requests: int, rounds: int) -> None:
    variants: dict[str, Callable[[], FastAPI]] = {
        "tracing off (no middleware)": off,
        "ServerSpanMiddleware, unsampled (ratio 0)": lean(0.0),
        "FastAPI native telemetry, unsampled (ratio 0)": native(0.0),
        "FastAPIInstrumentor, unsampled (ratio 0)": stock(0.0),
        "ServerSpanMiddleware, sampled (ratio 1)": lean(1.0),
        "FastAPI native telemetry, sampled (ratio 1)": native(1.0),
        "FastAPIInstrumentor, sampled (ratio 1)": stock(1.0),
    }
    apps = {name: build() for name, build in variants.items()}
    results: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):  # interleaved, so drift hits every variant alike
        for name, app in apps.items():
            results[name].append(await per_request_us(app, requests))
    # The fastest round is the least disturbed by other load on the machine.
    base_min = min(results["tracing off (no middleware)"])
    base_median = statistics.median(results["tracing off (no middleware)"])
    print(f"{requests} requests x {rounds} rounds; µs per request, and added vs tracing off")
    print(f"  {'':46s} {'fastest':>16s} {'median':>18s}")
    for name, samples in results.items():
        fastest, median = min(samples), statistics.median(samples)
        print(
            f"  {name:46s} {fastest:6.1f} (+{fastest - base_min:5.1f})"
            f"   {median:6.1f} (+{median - base_median:5.1f})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.rounds))

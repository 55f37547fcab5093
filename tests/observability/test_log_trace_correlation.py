"""Logs and traces join up: a real server's log lines carry the exported span's ids."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx

from tests.observability.otlp_receiver import OtlpReceiver
from tests.support.server import migrate, running_server, server_env


def test_log_trace_id_equals_the_exported_span(tmp_path: Path, otlp_receiver: OtlpReceiver) -> None:
    """`trace_id`/`span_id` in a request's log lines are those of its exported server span."""
    env = server_env(
        tmp_path,
        LOG_LEVEL="INFO",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
        TRACING_SAMPLE_RATIO="1.0",
    )
    migrate(env)
    request_id = f"corr-{uuid.uuid4().hex[:8]}"
    with running_server(env, tmp_path / "out.log") as server:
        response = httpx.post(
            f"{server.base_url}/api/v1/auth/login",
            headers={"X-Request-ID": request_id},
            json={"email": "nobody@example.com", "password": "Not-A-Real-Password-1"},
        )
        assert response.status_code == 401
    # Stopping the server flushed its spans to the receiver.
    lines = [json.loads(line) for line in server.log_lines()]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert {line["message"] for line in mine} >= {
        "Failed login attempt",
        "Request completed",
    }
    trace_ids = {line.get("trace_id") for line in mine}
    assert len(trace_ids) == 1
    (trace_id,) = trace_ids
    assert trace_id is not None
    spans = [span for span in otlp_receiver.spans() if span.trace_id == trace_id]
    assert spans, "no exported span has the logged trace id"
    server_span = next(span for span in spans if not span.parent_span_id)
    completed = next(line for line in mine if line["message"] == "Request completed")
    assert completed["span_id"] == server_span.span_id
    login_failed = next(line for line in mine if line["message"] == "Failed login attempt")
    assert login_failed["span_id"] in {span.span_id for span in spans}

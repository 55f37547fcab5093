"""Cost of one access-log line through our logging set-up, written to /dev/null.

.venv/bin/python benchmarks/telemetry_overhead/log_line_cost.py
"""

from __future__ import annotations

import logging
import time

from faultmaven_auth.observability.logging import configure_logging

LINES = 20_000


def main() -> None:
    configure_logging(level="INFO", service="bench", environment="bench")
    handler = logging.getLogger().handlers[0]
    handler.setStream(open("/dev/null", "w"))  # noqa: SIM115 - lives as long as the process
    log = logging.getLogger("faultmaven_auth.request")
    fields = {
        "endpoint": "/api/v1/auth/me",
        "method": "GET",
        "client_ip": "127.0.0.1",
        "user_agent": "wrk",
        "status_code": 200,
        "duration_ms": 1.23,
    }
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(LINES):
            log.info("Request completed", extra=fields)
        best = min(best, (time.perf_counter() - start) / LINES)
    print(f"one JSON access-log line: {best * 1e6:.1f} µs (best of 5 x {LINES})")


if __name__ == "__main__":
    main()

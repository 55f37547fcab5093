"""Fixtures for the tracing tests: real OTLP/HTTP receivers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conftest import CAPTURED_SPAN_TEXT
from tests.observability.otlp_receiver import OtlpReceiver


@pytest.fixture
def start_otlp_receiver() -> Iterator[Callable[[], OtlpReceiver]]:
    """Starts receivers on free ports; each is stopped after the test.

    What they received also goes to the suite's secret guard (``tests/conftest.py``).
    """
    started: list[OtlpReceiver] = []

    def start() -> OtlpReceiver:
        receiver = OtlpReceiver().start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()
        CAPTURED_SPAN_TEXT.extend(span.text() for span in receiver.spans())


@pytest.fixture
def otlp_receiver(start_otlp_receiver: Callable[[], OtlpReceiver]) -> OtlpReceiver:
    return start_otlp_receiver()

"""The remembered-prefix renderer writes exactly what prometheus_client writes.

Scrapers parse ``/metrics`` with the library's grammar, so the faster renderer must be
indistinguishable: each test renders the same registry with both and compares bytes,
over every kind of metric, label values that need escaping, exemplars, timestamps and
the text format's separate ``_created``/``_gsum``/``_gcount`` sections; again after the
values change (the prefixes are remembered, the values must not be).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector

from faultmaven_auth.observability.rendering import ExpositionRenderer


class _Custom(Collector):
    """Families only a custom collector makes: timestamps, created, gauge histograms."""

    def __init__(self) -> None:
        self.value = 1.0

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily("jobs", "Jobs run", labels=["queue"])
        counter.add_metric(["default"], self.value, created=1_700_000_000.5)
        yield counter
        gauge = GaugeMetricFamily("queue_depth", "Depth\nwith a newline", labels=["q"], unit="")
        gauge.add_metric(["a"], self.value * 3, timestamp=1_700_000_001.25)
        yield gauge
        histogram = GaugeHistogramMetricFamily("pending_age", "Ages", labels=["q"])
        histogram.add_metric(["a"], [("1.0", 2.0), ("+Inf", self.value + 2)], 7.5)
        yield histogram


def _registry() -> tuple[CollectorRegistry, _Custom, Counter]:
    registry = CollectorRegistry()
    requests = Counter("requests", "Requests", ["handler", "status"], registry=registry)
    requests.labels('/a/{id}"q"', "200").inc(3)
    requests.labels("back\\slash\nnewline é", "503").inc(exemplar={"trace_id": 'a"b'})
    latency = Histogram("latency_seconds", "Latency", ["handler"], registry=registry)
    latency.labels("/a").observe(0.2, {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
    latency.labels("/b").observe(12345678.0)
    Gauge("temperature", "Temperature \\ in C", registry=registry).set(-1.5e-7)
    Summary("sizes", "Sizes", registry=registry).observe(1024)
    Info("build", "Build", registry=registry).info({"version": "1.2.3"})
    Enum("state", "State", states=["up", "down"], registry=registry).state("down")
    custom = _Custom()
    registry.register(custom)
    return registry, custom, requests


@pytest.mark.parametrize("fmt", ["text", "openmetrics"])
def test_renders_what_the_library_renders(fmt: str) -> None:
    """Same bytes as prometheus_client, on the first scrape and after values change."""
    registry, custom, requests = _registry()
    renderer = ExpositionRenderer()
    render = renderer.text if fmt == "text" else renderer.openmetrics
    library = generate_latest if fmt == "text" else openmetrics_latest
    assert render(registry) == library(registry)
    custom.value = 42.0
    requests.labels('/a/{id}"q"', "200").inc()
    requests.labels("/new", "404").inc()
    assert render(registry) == library(registry)


def test_a_series_that_goes_away_is_not_rendered_again() -> None:
    """Remembered prefixes never bring back a series the registry no longer has."""
    registry = CollectorRegistry()
    gauge = Gauge("workers", "Workers", ["pool"], registry=registry)
    gauge.labels("hashing").set(2)
    renderer = ExpositionRenderer()
    assert b'pool="hashing"' in renderer.text(registry)
    gauge.remove("hashing")
    assert b"hashing" not in renderer.text(registry)
    assert renderer.text(registry) == generate_latest(registry)


def test_names_the_library_would_escape_are_left_to_it() -> None:
    """A name outside the legacy character set is rendered by the library, unchanged."""
    registry = CollectorRegistry()
    Gauge("job:rate", "A recording-rule style name", registry=registry).set(1)
    renderer = ExpositionRenderer()
    assert renderer.text(registry) == generate_latest(registry)
    assert renderer.openmetrics(registry) == openmetrics_latest(registry)

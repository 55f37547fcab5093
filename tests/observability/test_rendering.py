"""The service's renderer writes exactly what prometheus_client writes.

Scrapers parse ``/metrics`` with the library's grammar, so the faster renderer must be
indistinguishable: each test renders the same registry with both and compares bytes,
over every kind of metric, label values that need escaping, exemplars, timestamps and
the text format's separate ``_created``/``_gsum``/``_gcount`` sections; again after the
values change (the prefixes are remembered, the values must not be). The library's own
counters, gauges and histograms are read directly rather than through ``collect()``:
random sequences of updates, removals and scrapes, both settings of the ``_created``
switch, the cases that must fall back to ``collect()``, and scrapes under 20 updating
threads check that reading.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Iterator

import prometheus_client
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.values import MutexValue

from faultmaven_auth.observability import rendering
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


# -- the direct reading of the library's counters, gauges and histograms

_LABELS = st.sampled_from(["a", "b", 'q"uote', "back\\slash", "new\nline", "é", ""])
_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 999_999.9, 1e6, 1234567.0, 1e16, 1e-5, -1e20]),
)
_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("inc"), _LABELS, st.floats(min_value=0, max_value=1e9)),
        st.tuples(st.just("set"), _LABELS, _VALUES),
        st.tuples(st.just("observe"), _LABELS, st.floats(min_value=-10, max_value=1e7)),
        st.tuples(st.just("remove"), _LABELS, st.just(0.0)),
        st.tuples(st.just("clear"), _LABELS, st.just(0.0)),
        st.tuples(st.just("scrape"), _LABELS, st.just(0.0)),
    ),
    max_size=40,
)


class _Service:
    """One of each metric the direct reading handles, labelled and not."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.counter = Counter("calls", "Calls", ["route"], registry=registry)
        self.total = Counter("ticks", "Ticks", registry=registry)
        self.gauge = Gauge("depth", "Depth", ["route"], registry=registry)
        self.level = Gauge("level", "Level", registry=registry)
        self.histogram = Histogram("wait_seconds", "Wait", ["route"], registry=registry)
        # A first bound below zero: the library writes no _sum for it.
        self.signed = Histogram("delta", "Delta", ["route"], buckets=(-1, 0, 5), registry=registry)
        self.plain = Histogram("size_bytes", "Size", buckets=(10, 1e6), registry=registry)

    def apply(self, operation: str, label: str, value: float) -> None:
        labelled = (self.counter, self.gauge, self.histogram, self.signed)
        if operation == "inc":
            self.counter.labels(label).inc(value, exemplar={"trace_id": label or "t"})
            self.total.inc(value)
        elif operation == "set":
            self.gauge.labels(label).set(value)
            self.level.set(value)
        elif operation == "observe":
            self.histogram.labels(label).observe(value, {"trace_id": "4bf9"})
            self.signed.labels(label).observe(value)
            self.plain.observe(value)
        elif operation == "remove":
            for metric in labelled:
                if (label,) in metric._metrics:
                    metric.remove(label)
        elif operation == "clear":
            for metric in labelled:
                metric.clear()


def _same_as_library(renderer: ExpositionRenderer, registry: CollectorRegistry) -> None:
    assert renderer.text(registry) == generate_latest(registry)
    assert renderer.openmetrics(registry) == openmetrics_latest(registry)


@pytest.fixture(params=[True, False], ids=["created", "no-created"])
def created_series(request: pytest.FixtureRequest) -> Iterator[None]:
    """Both settings of the library's global ``_created`` switch, restored afterwards."""
    before = prometheus_metrics._use_created
    if request.param:
        prometheus_client.enable_created_metrics()  # type: ignore[no-untyped-call]
    else:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    yield
    prometheus_metrics._use_created = before


@pytest.mark.usefixtures("created_series")
@settings(max_examples=150, deadline=None)
@given(operations=_OPERATIONS)
def test_any_sequence_of_updates_renders_what_the_library_renders(
    operations: list[tuple[str, str, float]],
) -> None:
    """Increments, sets (NaN, infinities, large and tiny values), observations with
    exemplars, removed and cleared children: every scrape is the library's bytes."""
    service = _Service()
    renderer = ExpositionRenderer()
    _same_as_library(renderer, service.registry)
    for operation, label, value in operations:
        service.apply(operation, label, value)
        if operation == "scrape":
            _same_as_library(renderer, service.registry)
    _same_as_library(renderer, service.registry)


def test_a_function_gauge_is_read_through_the_library() -> None:
    """``set_function`` replaces how a gauge is read, before or after the first scrape."""
    registry = CollectorRegistry()
    calls = Gauge("calls_seen", "Calls", registry=registry)
    queue = Gauge("queue_len", "Queue", ["name"], registry=registry)
    queue.labels("a").set(1)
    renderer = ExpositionRenderer()
    _same_as_library(renderer, registry)
    calls.set_function(lambda: 7)
    queue.labels("b").set_function(lambda: 9)
    _same_as_library(renderer, registry)
    assert b'queue_len{name="b"} 9.0' in renderer.text(registry)


def test_values_held_elsewhere_and_subclasses_go_through_the_library() -> None:
    """A value holder other than the in-process one (as in multiprocess mode), a
    subclass of a library metric and a registry with target info are collected by
    the library's own code, and still render the same bytes."""

    class Holder(MutexValue):
        def get(self) -> float:
            return 41.0

    class Requests(Counter):
        pass

    registry = CollectorRegistry(target_info={"service": "auth"})
    odd = Counter("odd", "Odd", ["k"], registry=registry)
    odd.labels("x").inc()
    odd.labels("x")._value = Holder("counter", "odd", "odd", (), (), "")  # type: ignore[no-untyped-call]
    Requests("sub", "Subclass", registry=registry).inc(2)
    renderer = ExpositionRenderer()
    _same_as_library(renderer, registry)
    assert b'odd_total{k="x"} 41.0' in renderer.text(registry)
    registry.set_target_info(None)
    _same_as_library(renderer, registry)


def test_rendering_while_twenty_threads_update() -> None:
    """Scrapes taken while 20 threads update every series parse, never go backwards,
    and once the updates stop render exactly what the library renders."""
    service = _Service()
    renderer = ExpositionRenderer()
    stop = threading.Event()

    def update(k: int) -> None:
        label = f"t{k % 5}"
        while not stop.is_set():
            service.counter.labels(label).inc()
            service.histogram.labels(label).observe(0.01 * k)
            service.gauge.labels(label).set(k)

    threads = [threading.Thread(target=update, args=(k,)) for k in range(20)]
    for thread in threads:
        thread.start()
    try:
        last: dict[str, float] = {}
        for _ in range(30):
            families = text_string_to_metric_families(renderer.text(service.registry).decode())
            for family in families:
                for sample in family.samples:
                    if sample.name in ("calls_total", "wait_seconds_count"):
                        key = sample.name + repr(sorted(sample.labels.items()))
                        assert sample.value >= last.get(key, 0.0)
                        last[key] = sample.value
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert last, "no counter was scraped"
    _same_as_library(renderer, service.registry)


@pytest.mark.usefixtures("created_series")
def test_internals_that_moved_leave_the_metric_to_the_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The direct reading relies on prometheus_client's internals; when a version moves
    them (an attribute gone, the created-series switch gone), the metric or the whole
    registry goes through collect() and the scrape is still the library's bytes."""
    service = _Service()
    service.apply("inc", "a", 2.0)
    service.apply("observe", "b", 0.3)
    renderer = ExpositionRenderer()
    children = service.histogram._metrics
    monkeypatch.setattr(service.histogram, "_metrics", None)  # no .items(): moved
    monkeypatch.setattr(service.histogram, "collect", lambda: [])
    assert renderer.text(service.registry) == generate_latest(service.registry)
    monkeypatch.setattr(service.histogram, "_metrics", children)
    monkeypatch.delattr(service.histogram, "collect")
    # The renderer's view of the library's module, without the switch (the library's
    # own code keeps its module as it is).
    monkeypatch.setattr(rendering, "library_metrics", types.SimpleNamespace())
    _same_as_library(renderer, service.registry)

"""The ``/metrics`` exposition: prometheus_client's bytes, without most of its cost.

prometheus_client's ``generate_latest`` collects every metric into ``Sample`` tuples
(three per sample, with a fresh label dict each time) and then re-validates and
re-escapes every metric and label name and every label value on every scrape. With the
organization-label cap reached and every route's series present that is thousands of
lines, and the collection alone is most of the scrape's cost.

The names and labels of a series never change, only its value, so this renderer keeps
each series' rendered ``name{labels}`` prefix from one scrape to the next, and for the
library's own counters, gauges and histograms (the service's metrics) it reads the values
straight from each labelled child instead of going through ``collect()``: a lock, a float,
a cached prefix. Every other collector (process, platform, GC, the computed gauges, any
custom one) goes through ``collect()`` as before. Nothing is stale: every scrape reads
every value afresh, and the memo holds only the series seen in the last scrape, so a
series that goes away is forgotten.

The output is byte for byte the library's (Prometheus text 0.0.4 and OpenMetrics 1.0.0;
the tests compare them over every kind of metric and over random sequences of updates).
A metric the direct reading does not know exactly (a subclass, a ``set_function`` gauge,
multiprocess values) is left to ``collect()``; a name outside the legacy character set
(which the library would escape) leaves the whole scrape to the library.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as library_text
from prometheus_client import metrics as library_metrics
from prometheus_client.openmetrics.exposition import generate_latest as library_openmetrics
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString
from prometheus_client.values import MutexValue

# No colon: the library escapes it in OpenMetrics sample names (it checks them as
# label names), so such names are left to it.
_LEGACY_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram"}
_TEXT_SECTIONS = ("_created", "_gsum", "_gcount")  # moved to gauges of their own in text
_INF = float("inf")
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
Memo = tuple[dict[SeriesKey, str], dict[int, tuple[Any, Any]]]
# The library's number format (Go's: +Inf, NaN, exponents), typed.
_number = cast(Callable[[float], str], floatToGoString)


def _fast_number(value: float) -> str:
    """``floatToGoString`` for a float: Python's repr except for infinities, NaN and ≥ 1e6."""
    if -_INF < value < 1e6:  # False for NaN
        return repr(value)
    return _number(value)


class MetricFamily(Protocol):
    name: str
    documentation: str
    type: str
    unit: str
    samples: list[Sample]


class Registry(Protocol):
    def collect(self) -> Iterable[MetricFamily]: ...


# One sample as the writers see it: the rendered ``name{labels}``, the value, the
# timestamp, the exemplar, and the section the text format moves it to ("" for none).
Row = tuple[str, float | None, Any, Exemplar | None, str]


class Family:
    __slots__ = ("documentation", "name", "rows", "type", "unit")

    def __init__(self, name: str, documentation: str, kind: str, unit: str, rows: list[Row]):
        self.name, self.documentation, self.type, self.unit = name, documentation, kind, unit
        self.rows = rows


class _NotLegacy(Exception):
    """A name the library would escape: leave this scrape to the library."""


class _NotDirect(Exception):
    """A metric the direct reading does not know exactly: collect it the library's way."""


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _checked(name: str) -> str:
    if not _LEGACY_NAME.match(name):
        raise _NotLegacy(name)
    return name


def _series_prefix(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return _checked(name)
    pairs = ",".join(f'{_checked(k)}="{_escape_value(v)}"' for k, v in sorted(labels.items()))
    return f"{_checked(name)}{{{pairs}}}"


def _exemplar_text(exemplar: Exemplar) -> str:
    pairs = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(exemplar.labels.items()))
    text = f" # {{{pairs}}} {_number(exemplar.value)}"
    return text if exemplar.timestamp is None else f"{text} {exemplar.timestamp}"


def _plain_value(child: Any) -> Any:
    """The child's in-process value holder; anything else is not read directly."""
    value = child.__dict__.get("_value")
    if type(value) is not MutexValue or "_child_samples" in child.__dict__:
        raise _NotDirect  # multiprocess values, or a gauge with set_function
    return value


class _Reader:
    """Turns a registry into families of rows, remembering each series' prefix."""

    def __init__(self, memo: Memo, *, openmetrics: bool) -> None:
        # Library samples by (name, labels); directly read children by the child.
        self._samples, self._children = memo
        self.seen: Memo = ({}, {})
        self._openmetrics = openmetrics
        # None: a library version without the switch, whose series the direct reading
        # cannot know; everything then goes through collect().
        self._created: bool | None = getattr(library_metrics, "_use_created", None)

    def families(self, registry: Registry) -> Iterator[Family]:
        collectors = _collectors(registry) if self._created is not None else None
        if collectors is None:
            for metric in registry.collect():
                yield self._from_library(metric)
            return
        for collector in collectors:
            family = self._direct(collector) if type(collector) in _DIRECT else None
            if family is not None:
                yield family
                continue
            for metric in cast(Iterable[MetricFamily], collector.collect()):
                yield self._from_library(metric)

    # -- the library's own counters, gauges and histograms, read directly

    def _direct(self, metric: Any) -> Family | None:
        rows: list[Row] = []
        try:
            labelnames: tuple[str, ...] = metric._labelnames
            if labelnames and metric._labelvalues:
                return None  # a child registered on its own: unusual, leave it to collect()
            if labelnames:
                with metric._lock:
                    children = list(metric._metrics.items())
            else:
                children = [((), metric)]
            kind: str = metric._type
            read = _READ[kind]
            for labelvalues, child in children:
                read(self, metric, labelvalues, child, rows)
            return Family(metric._name, metric._documentation, kind, metric._unit, rows)
        except (_NotDirect, AttributeError, KeyError, TypeError):
            # Not the library's metric as this reading knows it (_NotDirect), or a
            # library version whose internals moved: its own collect() is always right.
            return None

    def _prefixes(self, metric: Any, labelvalues: tuple[str, ...], child: Any) -> Any:
        # Keyed by the child object: a dict lookup on an int. The memo holds the child,
        # so its id cannot be reused by another object while the entry exists.
        entry = self._children.get(id(child))
        if entry is None or entry[0] is not child:
            labels = dict(zip(metric._labelnames, labelvalues, strict=True))
            entry = (child, _PREFIXES[metric._type](metric._name, labels, child))
        self.seen[1][id(child)] = entry
        return entry[1]

    def _exemplar(self, value: Any) -> Exemplar | None:
        return cast(Exemplar | None, value.get_exemplar()) if self._openmetrics else None

    def _counter(
        self, metric: Any, labelvalues: tuple[str, ...], child: Any, rows: list[Row]
    ) -> None:
        total, created = self._prefixes(metric, labelvalues, child)
        value = _plain_value(child)
        rows.append((total, value.get(), None, self._exemplar(value), ""))
        if self._created:
            rows.append((created, child._created, None, None, "_created"))

    def _gauge(
        self, metric: Any, labelvalues: tuple[str, ...], child: Any, rows: list[Row]
    ) -> None:
        prefix = self._prefixes(metric, labelvalues, child)
        rows.append((prefix, _plain_value(child).get(), None, None, ""))

    def _histogram(
        self, metric: Any, labelvalues: tuple[str, ...], child: Any, rows: list[Row]
    ) -> None:
        per_bucket, count, total, created = self._prefixes(metric, labelvalues, child)
        if "_child_samples" in child.__dict__:
            raise _NotDirect
        cumulative = 0.0
        for prefix, bucket in zip(per_bucket, child._buckets, strict=True):
            cumulative += bucket.get()
            rows.append((prefix, cumulative, None, self._exemplar(bucket), ""))
        rows.append((count, cumulative, None, None, ""))
        if child._upper_bounds[0] >= 0:
            rows.append((total, child._sum.get(), None, None, ""))
        if self._created:
            rows.append((created, child._created, None, None, "_created"))

    # -- everything else, through the library's collect()

    def _from_library(self, metric: MetricFamily) -> Family:
        rows: list[Row] = []
        for sample in metric.samples:
            if self._openmetrics and sample.native_histogram:
                continue  # not part of OpenMetrics 1.0.0; the library skips them too
            key = (sample.name, tuple(sample.labels.items()))
            prefix = self._samples.get(key)
            if prefix is None:
                prefix = _series_prefix(sample.name, sample.labels)
            self.seen[0][key] = prefix
            suffix = sample.name[len(metric.name) :]
            section = (
                suffix if sample.name.startswith(metric.name) and suffix in _TEXT_SECTIONS else ""
            )
            rows.append((prefix, sample.value, sample.timestamp, sample.exemplar, section))
        return Family(metric.name, metric.documentation, metric.type, metric.unit, rows)


def _counter_prefixes(name: str, labels: dict[str, str], child: Any) -> tuple[str, str]:
    return _series_prefix(name + "_total", labels), _series_prefix(name + "_created", labels)


def _gauge_prefixes(name: str, labels: dict[str, str], child: Any) -> str:
    return _series_prefix(name, labels)


def _histogram_prefixes(
    name: str, labels: dict[str, str], child: Any
) -> tuple[list[str], str, str, str]:
    if any(type(bucket) is not MutexValue for bucket in [*child._buckets, child._sum]):
        raise _NotDirect  # multiprocess values
    bounds: list[float] = child._upper_bounds
    return (
        [_series_prefix(name + "_bucket", {**labels, "le": _number(le)}) for le in bounds],
        _series_prefix(name + "_count", labels),
        _series_prefix(name + "_sum", labels),
        _series_prefix(name + "_created", labels),
    )


_DIRECT = (Counter, Gauge, Histogram)
_PREFIXES: dict[str, Callable[[str, dict[str, str], Any], Any]] = {
    "counter": _counter_prefixes,
    "gauge": _gauge_prefixes,
    "histogram": _histogram_prefixes,
}
_READ: dict[str, Callable[..., None]] = {
    "counter": _Reader._counter,
    "gauge": _Reader._gauge,
    "histogram": _Reader._histogram,
}


def _collectors(registry: Registry) -> list[Any] | None:
    """The registry's collectors in ``collect()``'s order, or None to call ``collect()``."""
    if type(registry) is not CollectorRegistry:
        return None  # a restricted registry or another implementation: its own collect()
    lock = getattr(registry, "_lock", None)
    collectors = getattr(registry, "_collector_to_names", None)
    if lock is None or collectors is None:
        return None  # a library version whose internals moved
    with lock:
        if getattr(registry, "_target_info", None):
            return None
        return list(collectors)


class ExpositionRenderer:
    """Renders a registry like ``generate_latest``, remembering series prefixes."""

    def __init__(self) -> None:
        self._memo: Memo = ({}, {})

    def text(self, registry: Registry) -> bytes:
        """The Prometheus text format (0.0.4), as ``prometheus_client.generate_latest``."""
        reader = _Reader(self._memo, openmetrics=False)
        try:
            body = "".join(_text_lines(reader.families(registry)))
        except _NotLegacy:
            return library_text(registry)  # type: ignore[arg-type]
        self._memo = reader.seen
        return body.encode()

    def openmetrics(self, registry: Registry) -> bytes:
        """OpenMetrics 1.0.0 with exemplars, as the library's OpenMetrics ``generate_latest``."""
        reader = _Reader(self._memo, openmetrics=True)
        try:
            body = "".join(_openmetrics_lines(reader.families(registry)))
        except _NotLegacy:
            return cast(bytes, library_openmetrics(registry))  # type: ignore[no-untyped-call]
        self._memo = reader.seen
        return body.encode()


def _text_lines(families: Iterable[Family]) -> Iterator[str]:
    for metric in families:
        name, kind = metric.name, metric.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name += "_info"
        kind = "untyped" if kind == "unknown" else _TEXT_TYPES.get(kind, kind)
        help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        yield f"# HELP {_checked(name)} {help_text}\n# TYPE {name} {kind}\n"
        sections: dict[str, list[str]] = {}
        for prefix, value, timestamp, _exemplar, section in metric.rows:
            number = _fast_number(value) if type(value) is float else _number(cast(float, value))
            line = f"{prefix} {number}"
            if timestamp is not None:
                line += f" {int(float(timestamp) * 1000):d}"
            if section:
                sections.setdefault(section, []).append(line + "\n")
            else:
                yield line + "\n"
        for suffix, lines in sorted(sections.items()):
            section_name = _checked(metric.name + suffix)
            yield f"# HELP {section_name} {help_text}\n# TYPE {section_name} gauge\n"
            yield from lines


def _openmetrics_lines(families: Iterable[Family]) -> Iterator[str]:
    for metric in families:
        name = _checked(metric.name)
        yield f"# HELP {name} {_escape_value(metric.documentation)}\n"
        yield f"# TYPE {name} {metric.type}\n"
        if metric.unit:
            yield f"# UNIT {name} {metric.unit}\n"
        for prefix, value, timestamp, exemplar, _section in metric.rows:
            if value is None:
                number = ""
            else:
                number = _fast_number(value) if type(value) is float else _number(value)
            line = f"{prefix} {number}"
            if timestamp is not None:
                line += f" {timestamp}"
            if exemplar:
                line += _exemplar_text(exemplar)
            yield line + "\n"
    yield "# EOF\n"

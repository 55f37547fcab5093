"""The ``/metrics`` exposition, rendered with each series' name and labels remembered.

prometheus_client's ``generate_latest`` re-validates and re-escapes every metric and
label name and every label value on every scrape: with the organization-label cap
reached and every route's series present that is over a thousand lines and most of the
scrape's cost. The names and labels of a series never change, only its value, so this
renderer keeps each series' rendered ``name{labels}`` prefix from one scrape to the next
and formats only values, timestamps and exemplars. The output is byte for byte the
library's (Prometheus text 0.0.4 and OpenMetrics 1.0.0; a test compares them over every
kind of metric), and nothing is stale: every scrape collects every value afresh.

The memo holds only the series seen in the last scrape, so a series that goes away is
forgotten. Names outside the legacy character set (which the library would escape) are
left to the library: the whole scrape is rendered by it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Protocol, cast

from prometheus_client import generate_latest as library_text
from prometheus_client.openmetrics.exposition import generate_latest as library_openmetrics
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

# No colon: the library escapes it in OpenMetrics sample names (it checks them as
# label names), so such names are left to it.
_LEGACY_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram"}
_TEXT_SECTIONS = ("_created", "_gsum", "_gcount")  # moved to gauges of their own in text
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
# The library's number format (Go's: +Inf, NaN, exponents), typed.
_number = cast(Callable[[float], str], floatToGoString)


class MetricFamily(Protocol):
    name: str
    documentation: str
    type: str
    unit: str
    samples: list[Sample]


class Registry(Protocol):
    def collect(self) -> Iterable[MetricFamily]: ...


class _NotLegacy(Exception):
    """A name the library would escape: leave this scrape to the library."""


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


class ExpositionRenderer:
    """Renders a registry like ``generate_latest``, remembering series prefixes."""

    def __init__(self) -> None:
        self._prefixes: dict[SeriesKey, str] = {}

    def _prefix(self, seen: dict[SeriesKey, str], sample: Sample) -> str:
        key = (sample.name, tuple(sample.labels.items()))
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = _series_prefix(sample.name, sample.labels)
        seen[key] = prefix
        return prefix

    def text(self, registry: Registry) -> bytes:
        """The Prometheus text format (0.0.4), as ``prometheus_client.generate_latest``."""
        seen: dict[SeriesKey, str] = {}
        try:
            body = "".join(self._text_lines(registry, seen))
        except _NotLegacy:
            return library_text(registry)  # type: ignore[arg-type]
        self._prefixes = seen
        return body.encode()

    def _text_lines(self, registry: Registry, seen: dict[SeriesKey, str]) -> Iterable[str]:
        for metric in registry.collect():
            name, kind = metric.name, metric.type
            if kind == "counter":
                name += "_total"
            elif kind == "info":
                name += "_info"
            kind = "untyped" if kind == "unknown" else _TEXT_TYPES.get(kind, kind)
            help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            yield f"# HELP {_checked(name)} {help_text}\n# TYPE {name} {kind}\n"
            sections: dict[str, list[str]] = {}
            for sample in metric.samples:
                line = f"{self._prefix(seen, sample)} {_number(sample.value)}"
                if sample.timestamp is not None:
                    line += f" {int(float(sample.timestamp) * 1000):d}"
                suffix = sample.name[len(metric.name) :]
                if sample.name.startswith(metric.name) and suffix in _TEXT_SECTIONS:
                    sections.setdefault(suffix, []).append(line + "\n")
                else:
                    yield line + "\n"
            for suffix, lines in sorted(sections.items()):
                section = _checked(metric.name + suffix)
                yield f"# HELP {section} {help_text}\n# TYPE {section} gauge\n"
                yield from lines

    def openmetrics(self, registry: Registry) -> bytes:
        """OpenMetrics 1.0.0 with exemplars, as the library's OpenMetrics ``generate_latest``."""
        seen: dict[SeriesKey, str] = {}
        try:
            body = "".join(self._openmetrics_lines(registry, seen))
        except _NotLegacy:
            return cast(bytes, library_openmetrics(registry))  # type: ignore[no-untyped-call]
        self._prefixes = seen
        return body.encode()

    def _openmetrics_lines(self, registry: Registry, seen: dict[SeriesKey, str]) -> Iterable[str]:
        for metric in registry.collect():
            name = _checked(metric.name)
            yield f"# HELP {name} {_escape_value(metric.documentation)}\n"
            yield f"# TYPE {name} {metric.type}\n"
            if metric.unit:
                yield f"# UNIT {name} {metric.unit}\n"
            for sample in metric.samples:
                if sample.native_histogram:
                    continue  # not part of OpenMetrics 1.0.0; the library skips them too
                value = "" if sample.value is None else _number(sample.value)
                line = f"{self._prefix(seen, sample)} {value}"
                if sample.timestamp is not None:
                    line += f" {sample.timestamp}"
                if sample.exemplar:
                    line += _exemplar_text(sample.exemplar)
                yield line + "\n"
        yield "# EOF\n"

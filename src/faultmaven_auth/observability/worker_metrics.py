"""What a multi-worker ``/metrics`` needs to export the same families as one worker.

prometheus_client's ``MultiProcessCollector`` builds families from the values the
workers wrote to ``PROMETHEUS_MULTIPROC_DIR``, so a family no worker has written is
missing: a labelled counter before its first increment (``sso_attempts_total``,
``siem_events_dropped_total``, ``http_requests_total`` before the first request), where
one worker exports its ``# HELP``/``# TYPE`` lines. ``WorkerFilesCollector`` adds those
families back, empty, so dashboards and rule checks see the same names whatever the
worker count. (Label sets made at start with ``.labels()`` are written at 0 by every
worker, so the multiprocess files already carry them.)

``python_gc_*`` is read by the stock ``GCCollector`` from ``gc.get_stats()``, which only
the process itself can see. ``GcCounters`` gives it the multiprocess form: each worker
adds what its collector did since the last publication to counters of the same names
and labels, written to its files like any counter, so the scrape shows the service's
collections summed over its workers (as ``process_cpu_seconds_total`` is). A worker
publishes every ``GC_PUBLISH_SECONDS`` and before answering a scrape, so another
worker's share may lag by that much. Publishing never runs inside a ``gc`` callback:
the multiprocess values take a process-wide lock that a collection triggered while it
is held would wait on forever.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

GC_PUBLISH_SECONDS = 5.0
# gc.get_stats() key -> (family name, help), as prometheus_client's GCCollector has them.
_GC_FAMILIES = {
    "collected": ("python_gc_objects_collected", "Objects collected during gc"),
    "uncollectable": ("python_gc_objects_uncollectable", "Uncollectable objects found during GC"),
    "collections": ("python_gc_collections", "Number of times this generation was collected"),
}


class WorkerFilesCollector(Collector):
    """Every worker's values, plus the declared families that no worker has written yet."""

    def __init__(self, directory: Path, declared: Iterable[Metric]) -> None:
        self._files = MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]
        # Name, help and type only: the values come from the files.
        self._declared = [
            Metric(family.name, family.documentation, family.type, family.unit)
            for family in declared
        ]

    def collect(self) -> Iterator[Metric]:
        written: set[str] = set()
        for family in self._files.collect():  # type: ignore[no-untyped-call]
            written.add(family.name)
            yield family
        for family in self._declared:
            if family.name not in written:
                yield family


class GcCounters:
    """This worker's garbage-collector activity as counters summed over the workers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        generations = [str(index) for index in range(len(gc.get_stats()))]
        self._counters: dict[str, Counter] = {}
        for key, (name, documentation) in _GC_FAMILIES.items():
            counter = Counter(name, documentation, ["generation"], registry=registry)
            for generation in generations:
                counter.labels(generation)  # at 0 from the start, like GCCollector's
            self._counters[key] = counter
        self._published = [dict.fromkeys(_GC_FAMILIES, 0) for _ in generations]

    def publish(self) -> None:
        """Add what the collector did since the last call (event loop thread only)."""
        for generation, stats in enumerate(gc.get_stats()):
            last = self._published[generation]
            for key, counter in self._counters.items():
                grown = stats[key] - last[key]
                if grown > 0:
                    counter.labels(str(generation)).inc(grown)
                    last[key] = stats[key]

    async def publish_forever(self, interval: float = GC_PUBLISH_SECONDS) -> None:
        while True:
            self.publish()
            await asyncio.sleep(interval)

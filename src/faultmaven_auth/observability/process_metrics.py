"""``process_*`` for the whole service when several workers share one ``/metrics``.

With ``serve --workers N`` any worker may answer a scrape, so the stock
``ProcessCollector`` would report whichever process answered: memory and CPU would jump
between workers from one scrape to the next, and ``rate(process_cpu_seconds_total)``
would see a counter reset at every switch. Here the answering worker reads
``/proc/<pid>`` of every live worker and reports the service as one: CPU, memory and
open descriptors are summed; ``process_max_fds`` is the per-process limit and
``process_start_time_seconds`` the start of the oldest live worker. (A worker that
exits takes its CPU seconds with it: Prometheus sees that as a counter reset.)

Live workers are the processes that own a ``gauge_livesum_<pid>.db`` file in
``PROMETHEUS_MULTIPROC_DIR`` (every worker has one from its start, removed when it
stops) and are children of the same supervisor: a worker killed before it could remove
its file is dropped, even if its pid has been reused by some other process.

``python_gc_*`` cannot be read from ``/proc``: each worker publishes its own collector's
counts instead (``worker_metrics.GcCounters``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_LOWEST = {"process_max_fds", "process_start_time_seconds"}


def _parent_pid(pid: int, proc: Path) -> int | None:
    try:
        # The command name (2nd field) may hold spaces or ')': split after the last ')'.
        fields = (proc / str(pid) / "stat").read_bytes().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1])


def live_worker_pids(directory: Path, proc: Path = Path("/proc")) -> list[int]:
    """This process and its live sibling workers, as recorded in the multiprocess dir."""
    me, supervisor = os.getpid(), os.getppid()
    pids = {me}
    for path in directory.glob("gauge_livesum_*.db"):
        try:
            pid = int(path.stem.rsplit("_", 1)[1])
        except ValueError:
            continue
        if pid != me and _parent_pid(pid, proc) == supervisor:
            pids.add(pid)
    return sorted(pids)


class WorkersProcessCollector(Collector):
    """The service's ``process_*`` metrics, aggregated over its live workers."""

    def __init__(self, directory: Path, proc: Path = Path("/proc")) -> None:
        self._directory = directory
        self._proc = proc
        self._pid = 0
        self._lock = threading.Lock()  # scrapes render in threads; _pid is shared
        self._reader = ProcessCollector(pid=lambda: self._pid, proc=str(proc), registry=None)

    def collect(self) -> Iterator[Metric]:
        totals: dict[str, float] = {}
        docs: dict[str, tuple[str, str]] = {}
        with self._lock:
            for pid in live_worker_pids(self._directory, self._proc):
                self._pid = pid
                for family in self._reader.collect():
                    for sample in family.samples:
                        docs[family.name] = (family.documentation, family.type)
                        if family.name in _LOWEST and family.name in totals:
                            totals[family.name] = min(totals[family.name], sample.value)
                        else:
                            totals[family.name] = totals.get(family.name, 0.0) + sample.value
        for name, total in totals.items():
            documentation, kind = docs[name]
            if kind == "counter":
                yield CounterMetricFamily(name, documentation, value=total)
            else:
                yield GaugeMetricFamily(name, documentation, value=total)

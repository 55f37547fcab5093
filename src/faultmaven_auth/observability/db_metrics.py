"""Database metrics: statements by operation and latency (SQLAlchemy engine events), and
the connection pool's usage and checkout waits (``storage.db.PoolMonitor``)."""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from faultmaven_auth.observability.metrics import Metrics
from faultmaven_auth.storage.db import PoolUsage

_OPERATIONS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
_START = "fm_query_start"


# A data-modifying WITH (PostgreSQL's one-statement refresh and login) is a write.
_WRITE_KEYWORD = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


def statement_operation(statement: str) -> str:
    """The statement's first keyword, upper-case ("" for none); for a ``WITH``, what it
    does: its first ``INSERT``, ``UPDATE`` or ``DELETE``, else ``SELECT``. Values are
    bound parameters, never in the text, so a keyword found is the statement's own."""
    head = statement.lstrip().split(None, 1)
    word = head[0].upper() if head else ""
    if word == "WITH":
        found = _WRITE_KEYWORD.search(statement)
        return found.group(1).upper() if found else "SELECT"
    return word


def operation_of(statement: str) -> str:
    """``db_queries_total``'s ``operation`` label."""
    operation = statement_operation(statement)
    return operation if operation in _OPERATIONS else "OTHER"


def instrument_engine(engine: Engine, metrics: Metrics) -> None:
    """Count and time every statement this engine runs (sync engine of an async one)."""

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info.setdefault(_START, []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        starts = conn.info.get(_START)
        if starts:
            metrics.db_query_duration_seconds.observe(time.perf_counter() - starts.pop())
        metrics.db_queries_total.labels(operation_of(statement)).inc()

    def on_error(context: Any) -> None:
        starts = context.connection.info.get(_START) if context.connection is not None else None
        if starts:
            starts.pop()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", on_error)


class PoolMetrics:
    """``db_pool_*``, set on every checkout and return: current in every worker's files
    (multiprocess mode), not only in the one that answers the scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._size: int | None = None

    def checked_out(self, usage: PoolUsage, waited_seconds: float) -> None:
        self._metrics.db_pool_wait_seconds.observe(waited_seconds)
        self.returned(usage)

    def returned(self, usage: PoolUsage) -> None:
        if usage.size != self._size:  # set once; a write per checkout is not needed
            self._size = usage.size
            self._metrics.db_pool_size.set(usage.size)
        self._metrics.db_pool_checked_out.set(usage.checked_out)
        self._metrics.db_pool_overflow.set(usage.overflow)

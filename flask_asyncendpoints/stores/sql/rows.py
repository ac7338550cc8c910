"""Where a job sits in the indexes for each status, and the counter rows that follow it: the bookkeeping
every operation shares, as pure functions and one small class that batches counter changes.

A job's index columns (see :mod:`.schema`) are always set together, by one of :func:`queued`,
:func:`scheduled`, :func:`running` or :func:`finished`, so that no operation can leave a job in a
status with the index position of another.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text

from ...jobs import JobStatus
from .engines import POSTGRESQL
from .schema import Tables
from .txn import Tx

#: ``sort_rank`` of a ``Scheduled`` job moved into the ready set because it came due.
PROMOTED = -1

#: Widths of the throughput buckets (seconds), and how long each is kept.
MINUTE, HOUR = 60, 3600
KEEP = {MINUTE: 61 * MINUTE, HOUR: 25 * HOUR}


def queued(queue: str, rank: int, due: float) -> dict[str, Any]:
    """A job waiting in the ready set of ``queue``, due since ``due``."""
    return {"ready_queue": queue, "sort_rank": rank, "sort_time": due, "deadline": None}


def scheduled(queue: str, due: float, now: float) -> dict[str, Any]:
    """A ``Scheduled`` job due at ``due``: in the ready set already if that is not later than ``now``."""
    if due <= now:
        return {"ready_queue": queue, "sort_rank": PROMOTED, "sort_time": due, "deadline": None}
    return {"ready_queue": None, "sort_rank": 0, "sort_time": due, "deadline": None}


def running(started: float, lease_until: float) -> dict[str, Any]:
    """A job in progress since ``started``, leased until ``lease_until``."""
    return {"ready_queue": None, "sort_rank": 0, "sort_time": -started, "deadline": lease_until}


def finished(completed: float, result_ttl: float | None) -> dict[str, Any]:
    """A job that finished at ``completed``, purged ``result_ttl`` seconds later (``None``: kept)."""
    expires = None if result_ttl is None else completed + result_ttl
    return {"ready_queue": None, "sort_rank": 0, "sort_time": -completed, "deadline": expires}


def rank_of(priority: int) -> int:
    """The claim index's rank of a priority: minus the priority, so the highest comes first in
    ascending order on every database (descending index columns are not honoured everywhere)."""
    return -priority


def check_time(value: float, what: str) -> float:
    """``value`` if it is a finite number of seconds, else ``ValueError`` (a NaN would sort anywhere)."""
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of seconds, not {value!r}")
    return float(value)


def statuses(values: Iterable[JobStatus]) -> list[str]:
    return [status.value for status in values]


class Tally:
    """Counter changes of one transaction, written when it ends: one statement per table, or one in
    all on PostgreSQL."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.completed = 0
        self.failed = 0

    def move(self, queue: str, name: str, old: JobStatus | None, new: JobStatus | None) -> None:
        """One job of ``queue`` and ``name`` went from ``old`` to ``new`` (``None``: created, deleted)."""
        if old is new:
            return
        if old is not None:
            self.counts[(queue, name, old.value)] -= 1
        if new is not None:
            self.counts[(queue, name, new.value)] += 1
        if new is JobStatus.COMPLETED:
            self.completed += 1
        elif new is JobStatus.FAILED:
            self.failed += 1

    def rows(self, shard: int) -> list[dict[str, Any]]:
        """The counter changes as rows of ``shard``, in key order (the order they are locked in)."""
        return [
            {"queue": q, "name": n, "status": s, "shard": shard, "n": delta}
            for (q, n, s), delta in sorted(self.counts.items())
            if delta
        ]

    def write(self, tx: Tx, tables: Tables) -> None:
        """Add the changes to the counter rows of this connection's shard."""
        shard = tx.shard
        rows = self.rows(shard)
        if rows and tx.dialect.family == POSTGRESQL:
            self._write_postgresql(tx, tables, rows)
            return
        if rows:
            tx.execute(tx.dialect.add_to(tables.counts, ("queue", "name", "status", "shard"), ("n",)), rows)
        if self.completed or self.failed:
            now = int(tx.now)
            buckets = [
                {
                    "width": width,
                    "start": now - now % width,
                    "shard": shard,
                    "completed": self.completed,
                    "failed": self.failed,
                }
                for width in (MINUTE, HOUR)
            ]
            tx.execute(
                tx.dialect.add_to(tables.throughput, ("width", "start", "shard"), ("completed", "failed")), buckets
            )
        self.counts.clear()
        self.completed = self.failed = 0

    def _write_postgresql(self, tx: Tx, tables: Tables, rows: list[dict[str, Any]]) -> None:
        """PostgreSQL: the counters and the throughput buckets in one statement (arrays unnested in
        the order given, so rows are still locked in key order)."""
        now = int(tx.now)
        widths = [width for width in (MINUTE, HOUR) if self.completed or self.failed]
        tx.execute(
            _pg_tally(tables),
            {
                "c_queue": [row["queue"] for row in rows],
                "c_name": [row["name"] for row in rows],
                "c_status": [row["status"] for row in rows],
                "c_shard": [row["shard"] for row in rows],
                "c_n": [row["n"] for row in rows],
                "t_width": widths,
                "t_start": [now - now % width for width in widths],
                "t_shard": [tx.shard] * len(widths),
                "t_completed": [self.completed] * len(widths),
                "t_failed": [self.failed] * len(widths),
            },
        )
        self.counts.clear()
        self.completed = self.failed = 0


@functools.lru_cache(maxsize=64)
def _pg_tally(tables: Tables) -> Any:
    counts, throughput = tables.counts.name, tables.throughput.name
    return text(
        f"""
        WITH buckets AS (
            INSERT INTO {throughput} (width, start, shard, completed, failed)
            SELECT * FROM unnest(CAST(:t_width AS integer[]), CAST(:t_start AS bigint[]),
                                 CAST(:t_shard AS smallint[]), CAST(:t_completed AS bigint[]),
                                 CAST(:t_failed AS bigint[]))
            ON CONFLICT (width, start, shard) DO UPDATE
                SET completed = {throughput}.completed + excluded.completed,
                    failed = {throughput}.failed + excluded.failed
            RETURNING 1
        )
        INSERT INTO {counts} (queue, name, status, shard, n)
        SELECT * FROM unnest(CAST(:c_queue AS varchar[]), CAST(:c_name AS varchar[]),
                             CAST(:c_status AS varchar[]), CAST(:c_shard AS smallint[]), CAST(:c_n AS bigint[]))
        ON CONFLICT (queue, name, status, shard) DO UPDATE SET n = {counts}.n + excluded.n
        """
    )

"""The monitoring reads of the SQL store, its worker registry and its recurring-job occurrences.

Counts come from the counter rows (a few rows per queue, job name and status, never the jobs table).
Lists walk the ``(status, sort_rank, sort_time, seq)`` index from a cursor that is the last row's
position, so a page costs O(log n + page) and paging never shows a job twice nor skips one that
stayed where it was.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, delete, func, select, update

from ...jobs import JobStatus
from .. import jsontext
from ..monitoring import (
    MAX_PAGE_SIZE,
    THROUGHPUT_HOURS,
    THROUGHPUT_MINUTES,
    JobPage,
    QueueStats,
    RunningJob,
    Throughput,
    ThroughputPoint,
    WorkerInfo,
)
from . import codec, rows
from .codec import job_from_row
from .lifecycle import Lifecycle
from .schema import Tables
from .txn import Retry, Tx


def _zeros() -> dict[JobStatus, int]:
    return dict.fromkeys(JobStatus, 0)


def encode_cursor(status: JobStatus, row: Mapping[str, Any]) -> str:
    position = [status.value, int(row["sort_rank"]), float(row["sort_time"]), int(row["seq"])]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(status: JobStatus, cursor: str) -> tuple[int, float, int]:
    """The position a cursor of :func:`encode_cursor` stands for; ``ValueError`` for any other text."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        listed, rank, time, seq = raw
        if listed != status.value:
            raise ValueError(f"the cursor is for the {listed} list, not {status.value}")
        return int(rank), float(time), int(seq)
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a cursor of this store's {status.value} list: {cursor!r}") from exc


class Reads:
    """Monitoring reads, worker registrations and occurrences.

    :param lifecycle: the store's creating and claiming half (its tables and columns).
    """

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.tables: Tables = lifecycle.tables
        self.job_columns = lifecycle.job_columns

    # -- counts --------------------------------------------------------------------------------------

    def counts(self, tx: Tx, queue: str | None) -> dict[JobStatus, int]:
        c = self.tables.counts.c
        query = select(c.status, func.sum(c.n)).group_by(c.status)
        if queue is not None:
            query = query.where(c.queue == queue)
        answer = _zeros()
        for status, n in tx.execute(query):
            answer[JobStatus(status)] = int(n)
        return answer

    def counts_by_name(self, tx: Tx) -> dict[str, dict[JobStatus, int]]:
        c = self.tables.counts.c
        answer: dict[str, dict[JobStatus, int]] = {}
        for name, status, n in tx.execute(select(c.name, c.status, func.sum(c.n)).group_by(c.name, c.status)):
            answer.setdefault(name, _zeros())[JobStatus(status)] = int(n)
        return answer

    def queue_stats(self, tx: Tx) -> list[QueueStats]:
        now = tx.now
        counts: dict[str, dict[JobStatus, int]] = {}
        q = self.tables.queues.c
        for (name,) in tx.execute(select(q.name).order_by(q.name)):
            counts[name] = _zeros()
        c = self.tables.counts.c
        for queue, status, n in tx.execute(select(c.queue, c.status, func.sum(c.n)).group_by(c.queue, c.status)):
            counts.setdefault(queue, _zeros())[JobStatus(status)] = int(n)
        # Scheduled jobs that have come due: a range of the list index (those not yet claimed).
        j = self.tables.jobs.c
        due_scheduled = (
            select(j.queue, func.count(), func.min(j.sort_time))
            .where(j.status == JobStatus.SCHEDULED.value, j.sort_rank.in_([rows.PROMOTED, 0]), j.sort_time <= now)
            .group_by(j.queue)
        )
        due_scheduled = tx.dialect.walk(due_scheduled, self.tables.jobs, self.tables.list_index)
        scheduled = {queue: (int(n), float(first)) for queue, n, first in tx.execute(due_scheduled)}
        stats = []
        for name in sorted(counts):
            due_count, oldest = scheduled.get(name, (0, None))
            oldest_queued = self._oldest_ready(tx, name) if counts[name][JobStatus.QUEUED] else None
            candidates = [t for t in (oldest, oldest_queued) if t is not None]
            stats.append(
                QueueStats(
                    name=name,
                    counts=counts[name],
                    due=counts[name][JobStatus.QUEUED] + due_count,
                    oldest_due_at=codec.stamp(min(candidates)) if candidates else None,
                )
            )
        return stats

    def _oldest_ready(self, tx: Tx, queue: str) -> float | None:
        """The earliest due time in the queue's ready set: the first row of each priority (one index
        probe per priority in use, not a scan of the set)."""
        c = self.tables.jobs.c
        oldest: float | None = None
        rank: int | None = None
        while True:
            query = select(c.rank, c.sort_time).where(c.ready_queue == queue)
            if rank is not None:
                query = query.where(c.rank > rank)
            query = query.order_by(c.rank, c.sort_time, c.seq).limit(1)
            first = tx.execute(tx.dialect.walk(query, self.tables.jobs, self.tables.ready_index)).first()
            if first is None:
                return oldest
            rank = int(first[0])
            oldest = float(first[1]) if oldest is None else min(oldest, float(first[1]))

    # -- lists ---------------------------------------------------------------------------------------

    def list_jobs(
        self, tx: Tx, status: JobStatus, queue: str | None, name: str | None, cursor: str | None, limit: int
    ) -> JobPage:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number, 1 or more, not {limit!r}")
        limit = min(limit, MAX_PAGE_SIZE)
        c = self.tables.jobs.c
        base = select(c.seq, c.sort_rank, c.sort_time, *self.job_columns).where(c.status == status.value)
        if queue is not None:
            base = base.where(c.queue == queue)
        if name is not None:
            base = base.where(c.name == name)
        found: list[Any] = []
        if cursor is None:
            found = self._page(tx, base, limit + 1)
        else:
            rank, time, seq = decode_cursor(status, cursor)
            # Two ranges, each a plain index range on every database (a row-value comparison is not):
            # the rest of the cursor's rank, then the ranks after it.
            same = base.where(c.sort_rank == rank, c.sort_time >= time).where((c.sort_time > time) | (c.seq > seq))
            found = self._page(tx, same, limit + 1)
            if len(found) <= limit:
                found += self._page(tx, base.where(c.sort_rank > rank), limit + 1 - len(found))
        more = len(found) > limit
        page = found[:limit]
        return JobPage(
            jobs=[job_from_row(row) for row in page],
            cursor=encode_cursor(status, page[-1]) if more else None,
        )

    def _page(self, tx: Tx, query: Select[Any], limit: int) -> list[Any]:
        c = self.tables.jobs.c
        query = query.order_by(c.sort_rank, c.sort_time, c.seq).limit(limit)
        return list(tx.execute(tx.dialect.walk(query, self.tables.jobs, self.tables.list_index)).mappings())

    def running_jobs(self, tx: Tx, limit: int) -> list[RunningJob]:
        c = self.tables.jobs.c
        query = (
            select(c.worker_id, c.deadline, *self.job_columns)
            .where(c.status == JobStatus.IN_PROGRESS.value)
            .order_by(c.sort_rank, c.sort_time, c.seq)
            .limit(max(0, limit))
        )
        query = tx.dialect.walk(query, self.tables.jobs, self.tables.list_index)
        return [
            RunningJob(
                job=job_from_row(row), worker_id=row["worker_id"] or "", lease_until=codec.stamp(row["deadline"])
            )
            for row in tx.execute(query).mappings()
        ]

    def throughput(self, tx: Tx) -> Throughput:
        now = int(tx.now)
        t = self.tables.throughput.c
        series = []
        for width, points in ((rows.MINUTE, THROUGHPUT_MINUTES), (rows.HOUR, THROUGHPUT_HOURS)):
            last = now - now % width
            first = last - (points - 1) * width
            query = (
                select(t.start, func.sum(t.completed), func.sum(t.failed))
                .where(t.width == width, t.start >= first, t.start <= last)
                .group_by(t.start)
            )
            buckets = {int(start): (int(done), int(failed)) for start, done, failed in tx.execute(query)}
            series.append(
                [
                    ThroughputPoint(codec.stamp(float(start)), *buckets.get(start, (0, 0)))
                    for start in range(first, last + 1, width)
                ]
            )
        return Throughput(minutes=series[0], hours=series[1])

    # -- workers -------------------------------------------------------------------------------------

    def register_worker(self, tx: Tx, info: WorkerInfo, ttl: float) -> None:
        now = tx.now
        row = {
            "id": info.id,
            "host": info.host,
            "pid": int(info.pid),
            "queues": jsontext.compact_json(list(info.queues)),
            "concurrency": int(info.concurrency),
            "started_at": info.started_at.timestamp(),
            "heartbeat_at": now,
            "expires_at": now + rows.check_time(float(ttl), "ttl"),
        }
        tx.execute(tx.dialect.replace(self.tables.workers, row, ("id",)))

    def unregister_worker(self, tx: Tx, worker_id: str) -> None:
        workers = self.tables.workers
        tx.execute(delete(workers).where(workers.c.id == worker_id))

    def workers(self, tx: Tx) -> list[WorkerInfo]:
        w = self.tables.workers.c
        query = select(self.tables.workers).where(w.expires_at >= tx.now).order_by(w.id)
        return [
            WorkerInfo(
                id=row["id"],
                host=row["host"],
                pid=int(row["pid"]),
                queues=tuple(json.loads(row["queues"])),
                concurrency=int(row["concurrency"]),
                started_at=codec.stamp(row["started_at"]),
                heartbeat_at=codec.stamp(row["heartbeat_at"]),
            )
            for row in tx.execute(query).mappings()
        ]

    # -- recurring jobs ------------------------------------------------------------------------------

    def claim_occurrence(self, tx: Tx, schedule: str, at: float) -> bool:
        table = self.tables.occurrences
        o = table.c
        at = rows.check_time(float(at), "at")
        for _ in range(2):
            moved = tx.execute(update(table).where(o.schedule == schedule, o.at < at).values(at=at))
            if moved.rowcount:
                return True
            if tx.dialect.insert_new(tx.execute, table, "schedule", {"schedule": schedule, "at": at}):
                return True
            # The row exists: either its occurrence is not before ``at`` (the update above found it),
            # or another transaction inserted it just now, and the update must look again.
            current = tx.execute(select(o.at).where(o.schedule == schedule)).scalar()
            if current is not None and current >= at:
                return False
        raise Retry()

    def occurrences(self, tx: Tx) -> dict[str, float]:
        o = self.tables.occurrences.c
        return {schedule: float(at) for schedule, at in tx.execute(select(o.schedule, o.at))}

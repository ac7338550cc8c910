"""The memory store's counts and monitoring reads, its throughput counters and its worker registry.

Every read takes the store's lock once and walks only what it answers: counts are kept as jobs
change, and a page of :meth:`~MemoryMonitoring.list_jobs` seeks its cursor in the indexes of
:mod:`.entries` and merges the queues' indexes from there.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import heapq
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ...jobs import AttemptOutcome, AttemptRecord, Job, JobStatus, LogRecord, from_timestamp
from ..monitoring import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    JobPage,
    Monitoring,
    QueueStats,
    RunningJob,
    Throughput,
    WorkerInfo,
)
from .entries import QueueState, zero_counts
from .index import Key
from .state import MemoryState


def _queued(queue: QueueState, after: Key | None) -> Iterator[Key]:
    """A queue's ``Queued`` jobs in claim order as ``(-priority, due, seq, id)``, after ``after``."""
    for priority in queue.priorities:
        start = None
        if after is not None:
            if priority > -after[0]:
                continue
            if priority == -after[0]:
                start = after[1:]
        for key in queue.buckets[priority].ready.after(start):
            yield (-priority, *key)


def encode_cursor(status: JobStatus, key: Key) -> str:
    """Opaque cursor text for the page after ``key`` in the list of ``status``."""
    text = json.dumps([status.value, *key], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(status: JobStatus, cursor: str) -> Key:
    """The key a cursor from :func:`encode_cursor` names.

    :raises ValueError: for text that is not such a cursor for ``status``.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError(f"{cursor!r} is not a cursor of this store's job lists") from exc
    # Queued keys lead with the negated priority: (-priority, due, seq, id); the others are (time, seq, id).
    shape: tuple[type, ...] = (int, float, int, str) if status is JobStatus.QUEUED else (float, int, str)
    if (
        not isinstance(data, list)
        or len(data) != len(shape) + 1
        or data[0] != status.value
        or not all(_is_a(part, kind) for part, kind in zip(data[1:], shape, strict=True))
    ):
        raise ValueError(f"{cursor!r} is not a cursor of the {status.value} jobs list; start again without one")
    return tuple(float(part) if kind is float else part for part, kind in zip(data[1:], shape, strict=True))


def _is_a(value: object, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


class MemoryMonitoring(MemoryState, Monitoring):
    """The monitoring half of :class:`~flask_asyncendpoints.stores.MemoryStore`, with its counts and the history and
    logs reads."""

    def counts(self, *, queue: str | None = None) -> Mapping[JobStatus, int]:
        with self._lock:
            if queue is not None:
                state = self._queues.get(queue)
                return dict(state.counts) if state is not None else zero_counts()
            totals = zero_counts()
            for state in self._queues.values():
                for status, count in state.counts.items():
                    totals[status] += count
            return totals

    def queue_stats(self, *, now: float | None = None) -> list[QueueStats]:
        stats = []
        with self._lock:
            now = self._now(now)
            due_bound = (now, float("inf"))
            for name in sorted(self._queues):
                queue = self._queues[name]
                due = queue.counts[JobStatus.QUEUED]
                oldest: float | None = None
                for bucket in queue.buckets.values():
                    if bucket.ready:
                        first = bucket.ready.first()[0]
                        oldest = first if oldest is None else min(oldest, first)
                    if bucket.scheduled and bucket.scheduled.first()[0] <= now:
                        due += bucket.scheduled.count_below(due_bound)
                        first = bucket.scheduled.first()[0]
                        oldest = first if oldest is None else min(oldest, first)
                stats.append(QueueStats(name, dict(queue.counts), due, from_timestamp(oldest)))
        return stats

    def counts_by_name(self) -> Mapping[str, Mapping[JobStatus, int]]:
        with self._lock:
            for name in [name for name, counts in self._names.items() if not any(counts.values())]:
                del self._names[name]  # no job of that name is stored; a new one makes a new count
            return {name: dict(counts) for name, counts in self._names.items()}

    def list_jobs(
        self,
        status: JobStatus,
        *,
        queue: str | None = None,
        name: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> JobPage:
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, not {limit!r}")
        limit = min(limit, MAX_PAGE_SIZE)
        status = JobStatus(status)
        after = decode_cursor(status, cursor) if cursor is not None else None
        jobs: list[Job] = []
        more = False
        last: Key | None = None
        with self._lock:
            if queue is None:
                queues = list(self._queues.values())
            else:
                queues = [self._queues[queue]] if queue in self._queues else []
            for key in self._keys(status, queues, after):
                job = self._jobs[key[-1]].job
                if name is not None and job.name != name:
                    continue
                if len(jobs) == limit:
                    more = True
                    break
                jobs.append(job)
                last = key
        return JobPage(jobs=jobs, cursor=encode_cursor(status, last) if more and last is not None else None)

    def _keys(self, status: JobStatus, queues: list[QueueState], after: Key | None) -> Iterator[Key]:
        """The keys of the jobs in ``status`` over ``queues``, in the list's order, after ``after``."""
        if status is JobStatus.QUEUED:
            # Claim order: the highest priority first, each priority by due time; keys (-priority, due, seq, id).
            return heapq.merge(*(_queued(queue, after) for queue in queues))
        if status is JobStatus.SCHEDULED:
            return heapq.merge(
                *(bucket.scheduled.after(after) for queue in queues for bucket in queue.buckets.values())
            )
        if status is JobStatus.IN_PROGRESS:
            indexes: Iterable[Any] = (queue.running for queue in queues)
        else:
            indexes = (queue.finished[status] for queue in queues)
        return heapq.merge(*(index.after(after, reverse=True) for index in indexes), reverse=True)

    def running_jobs(self, *, limit: int = 100) -> list[RunningJob]:
        running: list[RunningJob] = []
        with self._lock:
            keys = heapq.merge(
                *(queue.running.after(None, reverse=True) for queue in self._queues.values()), reverse=True
            )
            for key in keys:
                if len(running) >= limit:
                    break
                entry = self._jobs[key[-1]]
                lease_until = from_timestamp(entry.lease_until)
                assert lease_until is not None
                running.append(RunningJob(job=entry.job, worker_id=entry.worker_id, lease_until=lease_until))
        return running

    def throughput(self, *, now: float | None = None) -> Throughput:
        with self._lock:
            return self._throughput.read(self._now(now))

    def register_worker(self, info: WorkerInfo, *, ttl: float, now: float | None = None) -> None:
        with self._lock:
            now = self._now(now)
            stamp = from_timestamp(now)
            assert stamp is not None
            self._workers[info.id] = (dataclasses.replace(info, heartbeat_at=stamp), now + ttl)

    def unregister_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def workers(self, *, now: float | None = None) -> list[WorkerInfo]:
        with self._lock:
            now = self._now(now)
            for gone in [worker_id for worker_id, (_, until) in self._workers.items() if until < now]:
                del self._workers[gone]
            return [self._workers[worker_id][0] for worker_id in sorted(self._workers)]

    # -- history and logs ----------------------------------------------------------------------------

    def attempts(self, job_id: str) -> list[AttemptRecord]:
        with self._lock:
            entry = self._jobs.get(job_id)
            rows = list(entry.history or ()) if entry is not None else []
        records = []
        for number, started, finished, worker_id, outcome, code, message in rows:
            started_at, finished_at = from_timestamp(started), from_timestamp(finished)
            assert started_at is not None and finished_at is not None
            records.append(
                AttemptRecord(number, started_at, finished_at, worker_id, AttemptOutcome(outcome), code, message)
            )
        return records

    def logs(self, job_id: str) -> list[LogRecord]:
        with self._lock:
            entry = self._jobs.get(job_id)
            return [record for record, _ in entry.logs or ()] if entry is not None else []

"""The monitoring reads of the Redis store, and its registry of worker processes.

Counts are the sizes of the indexes (``ZCARD``) and the per-name counts of ``T:names``; pages are
read from the status indexes after a position (``lua/page.lua``), so a page costs O(log n + page)
whatever the number of jobs; throughput is kept per minute in one hash per queue and hour.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...jobs import Job, JobStatus, from_timestamp
from ..jsontext import compact_json
from ..monitoring import (
    MAX_PAGE_SIZE,
    THROUGHPUT_HOURS,
    THROUGHPUT_MINUTES,
    JobPage,
    Monitoring,
    QueueStats,
    RunningJob,
    Throughput,
    ThroughputPoint,
    WorkerInfo,
)
from .codec import as_text, hash_fields, job_name, parse_time, split_record
from .core import RedisCore
from .keys import DONE, DUE, NAMES, READY, RUNNING, SCHEDULED, QueueKeys, member_id

#: The most index entries one page looks at in each queue (more only with a name filter).
PAGE_BUDGET = 5000

#: The statuses of the per-name counts in ``T:names`` (``InProgress`` is read from ``T:run``).
_NAME_CHARS = {
    "Q": JobStatus.QUEUED,
    "S": JobStatus.SCHEDULED,
    "C": JobStatus.COMPLETED,
    "F": JobStatus.FAILED,
    "X": JobStatus.CANCELED,
}

#: A position in a list: ``(score, member)`` as the index holds them, and the queue.
Position = tuple[float, str, str]


class RedisMonitoring(RedisCore, Monitoring):
    """:class:`~flask_asyncendpoints.stores.monitoring.Monitoring` on the Redis store's keys, and the
    store's ``counts``: a part of :class:`~.store.RedisStore`."""

    def _index_sizes(self, queues: Sequence[QueueKeys]) -> list[dict[JobStatus, int]]:
        """Each queue's counts, from the sizes of its indexes, in one round trip."""
        suffixes = (READY, DUE, SCHEDULED, RUNNING, DONE["Completed"], DONE["Failed"], DONE["Canceled"])
        with self._errors("counting jobs"):
            sizes = self._call_many([("ZCARD", keys.key(suffix)) for keys in queues for suffix in suffixes])
        counts = []
        for first in range(0, len(sizes), len(suffixes)):
            ready, moved, scheduled, running, completed, failed, canceled = (int(n) for n in sizes[first : first + 7])
            counts.append(_counts(ready, moved, scheduled, running, completed, failed, canceled))
        return counts

    def counts(self, *, queue: str | None = None) -> Mapping[JobStatus, int]:
        """See :meth:`Store.counts <flask_asyncendpoints.stores.base.Store.counts>`.

        Read from the sizes of each queue's indexes: seven ``ZCARD`` per queue, in one round trip.
        """
        queues = [queue] if queue is not None else self._all_queues()
        totals = dict.fromkeys(JobStatus, 0)
        for queue_counts in self._index_sizes([self._keys(name) for name in queues]):
            for status, n in queue_counts.items():
                totals[status] += n
        return totals

    def queue_stats(self, *, now: float | None = None) -> list[QueueStats]:
        """See :meth:`Monitoring.queue_stats <flask_asyncendpoints.stores.monitoring.Monitoring.queue_stats>`."""
        at = self._now(now)
        with self._errors("listing the queues"):
            names = sorted(as_text(name) for name in self._call("SMEMBERS", self.layout.queues))
        replies = self._many("stats", [([self._keys(name).base], [at]) for name in names])
        stats = []
        for name, reply in zip(names, replies, strict=True):
            ready, moved, scheduled, running, completed, failed, canceled, due = (int(n) for n in reply[:8])
            oldest = as_text(reply[8])
            stats.append(
                QueueStats(
                    name=name,
                    counts=_counts(ready, moved, scheduled, running, completed, failed, canceled),
                    due=due,
                    oldest_due_at=parse_time(oldest) if oldest else None,
                )
            )
        return stats

    def counts_by_name(self) -> Mapping[str, Mapping[JobStatus, int]]:
        """See :meth:`Monitoring.counts_by_name <flask_asyncendpoints.stores.monitoring.Monitoring.counts_by_name>`.

        Jobs in progress are counted from the in-progress sets (as large as the jobs running at
        once), the others from each queue's per-name counts.
        """
        totals: dict[str, dict[JobStatus, int]] = {}

        def add(name: str, status: JobStatus, n: int) -> None:
            totals.setdefault(name, dict.fromkeys(JobStatus, 0))[status] += n

        queues = [self._keys(name) for name in self._all_queues()]
        with self._errors("counting jobs by name"):
            replies = self._call_many([("HGETALL", keys.key(NAMES)) for keys in queues])
        for raw in replies:
            for field, value in hash_fields(raw).items():
                status = _NAME_CHARS.get(field[:1])
                if status is not None:
                    add(job_name(field[1:]), status, int(value))
        for keys, entries in zip(queues, self._running(queues), strict=True):
            for name in self._names(keys, [job_id for _, job_id, _ in entries]):
                if name is not None:
                    add(name, JobStatus.IN_PROGRESS, 1)
        return totals

    def _running(self, queues: Sequence[QueueKeys]) -> list[list[tuple[str, str, float]]]:
        """Each queue's running attempts: ``(member, job id, lease expiry score)``."""
        with self._errors("listing running jobs"):
            replies = self._call_many([("ZRANGE", keys.key(RUNNING), 0, -1, "WITHSCORES") for keys in queues])
        out = []
        for reply in replies:
            entries = []
            for member, score in _pairs(reply):
                text = as_text(member)
                entries.append((text, text.partition(":")[2], float(score)))
            out.append(entries)
        return out

    def _names(self, keys: QueueKeys, ids: Sequence[str]) -> list[str | None]:
        """The job names of ``ids`` (``None`` for a job that is gone), from their records."""
        if not ids:
            return []
        with self._errors("reading job names"):
            records = self._call_many([("GET", keys.record(job_id)) for job_id in ids])
        names: list[str | None] = []
        for record in records:
            try:
                names.append(None if record is None else job_name(split_record(as_text(record))[3]))
            except ValueError:
                names.append(None)
        return names

    def list_jobs(
        self,
        status: JobStatus,
        *,
        queue: str | None = None,
        name: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """See :meth:`Monitoring.list_jobs <flask_asyncendpoints.stores.monitoring.Monitoring.list_jobs>`.

        Each queue's part comes from its status index after the cursor's position; the queues' parts
        are merged in the list's order. A name filter walks the index past other names, looking at
        up to 5,000 entries per queue and page (a page may then come back short, with a cursor).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number, 1 or more, not {limit!r}")
        limit = min(limit, MAX_PAGE_SIZE)
        after = _read_cursor(cursor, status)
        queues = [self._keys(queue)] if queue is not None else [self._keys(q) for q in self._all_queues()]
        if status is JobStatus.IN_PROGRESS:
            return self._in_progress_page(queues, name, after, limit)
        descending = status.is_final
        name_json = compact_json(name) if name is not None else ""
        args = [status.value, "" if after is None else repr(after[0]), "" if after is None else after[1]]
        replies = self._many("page", [([keys.base], [*args, limit, name_json, PAGE_BUDGET]) for keys in queues])
        items: list[Position] = []
        bounds: list[Position] = []
        for keys, reply in zip(queues, replies, strict=True):
            state = as_text(reply[0])
            found = [(float(score), as_text(member), keys.queue) for score, member in _pairs(reply[3:])]
            items += found
            if state == "more" and found:
                bounds.append(found[-1])
            elif state == "frontier":
                bounds.append((float(reply[1]), as_text(reply[2]), keys.queue))
        return self._page(items, bounds, limit, status, descending, queued=not descending)

    def _page(
        self,
        items: list[Position],
        bounds: list[Position],
        limit: int,
        status: JobStatus,
        descending: bool,
        *,
        queued: bool,
    ) -> JobPage:
        """The page made of the queues' parts: the first ``limit`` items up to the nearest bound."""
        items.sort(key=_order, reverse=descending)
        bound = (max if descending else min)(bounds, key=_order) if bounds else None
        if bound is not None:
            edge = _order(bound)
            items = [item for item in items if (_order(item) >= edge if descending else _order(item) <= edge)]
        taken = items[:limit]
        next_position: Position | None = None
        if len(taken) == limit and (len(items) > limit or bound is not None):
            next_position = taken[-1]
        elif len(taken) < limit and bound is not None:
            next_position = bound
        jobs = self._jobs([(queue, member_id(member) if queued else member) for _, member, queue in taken])
        return JobPage(jobs=jobs, cursor=_write_cursor(status, next_position))

    def _jobs(self, wanted: Sequence[tuple[str, str]]) -> list[Job]:
        """The jobs ``(queue, id)`` as they are now, in order; those gone meanwhile are left out."""
        if not wanted:
            return []
        commands: list[tuple[Any, ...]] = []
        for queue, job_id in wanted:
            keys = self._keys(queue)
            commands += [("GET", keys.record(job_id)), ("HGETALL", keys.state(job_id))]
        with self._errors("reading jobs"):
            replies = self._call_many(commands)
        jobs = []
        for index, (queue, job_id) in enumerate(wanted):
            record, fields = replies[2 * index], replies[2 * index + 1]
            if record is not None:
                jobs.append(self._job(job_id, queue, record, fields))
        return jobs

    def _in_progress_page(
        self, queues: Sequence[QueueKeys], name: str | None, after: tuple[float, str] | None, limit: int
    ) -> JobPage:
        """InProgress jobs by start, newest first: read from the in-progress sets, which hold the
        jobs running at once."""
        items: list[Position] = []
        for keys, entries in zip(queues, self._running(queues), strict=True):
            ids = [job_id for _, job_id, _ in entries]
            if not ids:
                continue
            with self._errors("listing running jobs"):
                starts = self._call_many([("HGET", keys.state(job_id), "sa") for job_id in ids])
            names: Sequence[str | None] = self._names(keys, ids) if name is not None else [None] * len(ids)
            for job_id, start, found_name in zip(ids, starts, names, strict=True):
                if start is not None and (name is None or found_name == name):
                    items.append((float(as_text(start)), job_id, keys.queue))
        if after is not None:
            items = [item for item in items if _order(item) < (after[0], after[1])]
        return self._page(items, [], limit, JobStatus.IN_PROGRESS, True, queued=False)

    def running_jobs(self, *, limit: int = 100) -> list[RunningJob]:
        """See :meth:`Monitoring.running_jobs <flask_asyncendpoints.stores.monitoring.Monitoring.running_jobs>`."""
        queues = [self._keys(name) for name in self._all_queues()]
        leases: dict[tuple[str, str], float] = {}
        for keys, entries in zip(queues, self._running(queues), strict=True):
            for _, job_id, score in entries:
                leases[(keys.queue, job_id)] = abs(score)
        jobs = self._jobs(list(leases))
        with self._errors("listing running jobs"):
            workers = self._call_many([("HGET", self._keys(job.queue).state(job.id), "w") for job in jobs])
        running = [
            RunningJob(
                job=job,
                worker_id=str(json.loads(as_text(worker))) if worker is not None else "",
                lease_until=parse_time(repr(leases[(job.queue, job.id)])),
            )
            for job, worker in zip(jobs, workers, strict=True)
            if job.status is JobStatus.IN_PROGRESS
        ]
        running.sort(key=lambda r: (r.job.started_at or r.job.created_at, r.job.id), reverse=True)
        return running[: max(limit, 0)]

    def throughput(self, *, now: float | None = None) -> Throughput:
        """See :meth:`Monitoring.throughput <flask_asyncendpoints.stores.monitoring.Monitoring.throughput>`."""
        at = self._now(now)
        hour = math.floor(at / 3600)
        minute = math.floor(at / 60)
        hours = list(range(hour - THROUGHPUT_HOURS + 1, hour + 1))
        queues = [self._keys(name) for name in self._all_queues()]
        with self._errors("reading the throughput"):
            replies = self._call_many([("HGETALL", keys.throughput(h)) for keys in queues for h in hours])
        per_minute: dict[tuple[str, int], int] = {}
        per_hour: dict[tuple[str, int], int] = {}
        for index, raw in enumerate(replies):
            h = hours[index % len(hours)]
            for field, value in hash_fields(raw).items():
                kind, n = field[:1], int(value)
                per_minute[(kind, h * 60 + int(field[1:]))] = per_minute.get((kind, h * 60 + int(field[1:])), 0) + n
                per_hour[(kind, h)] = per_hour.get((kind, h), 0) + n
        minutes = [
            _point(m * 60, per_minute.get(("c", m), 0), per_minute.get(("f", m), 0))
            for m in range(minute - THROUGHPUT_MINUTES + 1, minute + 1)
        ]
        return Throughput(
            minutes=minutes,
            hours=[_point(h * 3600, per_hour.get(("c", h), 0), per_hour.get(("f", h), 0)) for h in hours],
        )

    # -- workers -------------------------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, *, ttl: float, now: float | None = None) -> None:
        """See :meth:`Monitoring.register_worker <flask_asyncendpoints.stores.monitoring.Monitoring.register_worker>`.

        The registration is a key with a time to live (``ttl`` and a minute), so a worker that stops
        without unregistering leaves nothing behind for long; whether it counts as alive is judged
        by its heartbeat and ``ttl`` on the store's clock.
        """
        at = self._now(now)
        data = {
            "id": info.id,
            "host": info.host,
            "pid": info.pid,
            "queues": list(info.queues),
            "concurrency": info.concurrency,
            "startedAt": info.started_at.timestamp(),
            "heartbeatAt": at,
        }
        self._run(
            "register_worker",
            [self.layout.shared],
            [at, info.id, compact_json(data), float(ttl), int((max(ttl, 0) + 60) * 1000)],
        )

    def unregister_worker(self, worker_id: str) -> None:
        """See :meth:`Monitoring.unregister_worker
        <flask_asyncendpoints.stores.monitoring.Monitoring.unregister_worker>`."""
        with self._errors("unregistering a worker"):
            self._call_many([("ZREM", self.layout.workers, worker_id), ("DEL", self.layout.worker(worker_id))])

    def workers(self, *, now: float | None = None) -> list[WorkerInfo]:
        """See :meth:`Monitoring.workers <flask_asyncendpoints.stores.monitoring.Monitoring.workers>`."""
        at = self._now(now)
        with self._errors("listing workers"):
            ids = [as_text(raw) for raw in self._call("ZRANGEBYSCORE", self.layout.workers, repr(at), "+inf")]
            raw = self._call("MGET", *[self.layout.worker(worker_id) for worker_id in ids]) if ids else []
        found = []
        for value in raw:
            if value is None:
                continue
            data = json.loads(as_text(value))
            found.append(
                WorkerInfo(
                    id=str(data["id"]),
                    host=str(data["host"]),
                    pid=int(data["pid"]),
                    queues=tuple(str(queue) for queue in data["queues"]),
                    concurrency=int(data["concurrency"]),
                    started_at=parse_time(repr(float(data["startedAt"]))),
                    heartbeat_at=parse_time(repr(float(data["heartbeatAt"]))),
                )
            )
        return sorted(found, key=lambda worker: worker.id)


def _counts(
    ready: int, moved: int, scheduled: int, running: int, completed: int, failed: int, canceled: int
) -> dict[JobStatus, int]:
    return {
        JobStatus.QUEUED: ready - moved,
        JobStatus.SCHEDULED: scheduled + moved,
        JobStatus.IN_PROGRESS: running,
        JobStatus.COMPLETED: completed,
        JobStatus.FAILED: failed,
        JobStatus.CANCELED: canceled,
    }


def _pairs(reply: Iterable[Any]) -> list[tuple[Any, Any]]:
    """``(member, score)`` pairs of a ``WITHSCORES`` reply, flat or already paired."""
    items = list(reply)
    if items and isinstance(items[0], (list, tuple)):
        return [(member, score) for member, score in items]
    return list(zip(items[::2], items[1::2], strict=True))


def _order(position: Position) -> tuple[float, str]:
    return position[0], position[1]


def _point(start: float, completed: int, failed: int) -> ThroughputPoint:
    stamp = from_timestamp(start)
    assert stamp is not None
    return ThroughputPoint(start=stamp, completed=completed, failed=failed)


def _write_cursor(status: JobStatus, position: Position | None) -> str | None:
    if position is None:
        return None
    return compact_json([status.value, position[0], position[1]])


def _read_cursor(cursor: str | None, status: JobStatus) -> tuple[float, str] | None:
    if cursor is None:
        return None
    try:
        kind, score, member = json.loads(cursor)
        if kind != status.value or not isinstance(member, str) or isinstance(score, bool):
            raise ValueError(cursor)
        return float(score), member
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{cursor!r} is not a cursor of a {status.value} list of this store") from exc

"""The memory store's state under its one lock, and the bookkeeping every change goes through.

:class:`MemoryState` holds the jobs, the queues' indexes (:mod:`.entries`), the counts, the expiry
heap, the throughput counters, the waiting workers and the cancel watchers, and keeps them in step:
a job changes status only through its helpers, which move it between indexes, count it, record the
attempt that ended, expire and evict finished jobs, and wake the workers of its queue.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from ...errors import ConfigurationError
from ...jobs import AttemptOutcome, Job, JobError, JobStatus, from_timestamp
from ..base import DEFAULT_HISTORY_LIMIT
from ..monitoring import THROUGHPUT_HOURS, THROUGHPUT_MINUTES, Throughput, ThroughputPoint, WorkerInfo
from .entries import Counts, Entry, QueueState

#: The memory store's bounds unless told otherwise: pending jobs, and finished jobs kept.
DEFAULT_MAX_PENDING = 10_000
DEFAULT_MAX_FINISHED = 10_000

_COMPLETED, _FAILED = 0, 1  # ThroughputCounter columns


class ThroughputCounter:
    """Completed and failed jobs per minute and per hour; buckets older than an hour (a day) go.

    Called under the store's lock as each job finishes, so it keeps the current buckets at hand.
    """

    def __init__(self) -> None:
        self._minutes: dict[int, list[int]] = {}
        self._hours: dict[int, list[int]] = {}
        self._minute = -1
        self._minute_counts = [0, 0]
        self._hour = -1
        self._hour_counts = [0, 0]

    def count(self, now: float, column: int) -> None:
        """Count one job that ended now: ``column`` 0 for completed, 1 for failed."""
        minute = int(now // 60)
        if minute != self._minute:
            self._minute = minute
            self._minute_counts = _bucket(self._minutes, minute, THROUGHPUT_MINUTES)
            hour = minute // 60
            if hour != self._hour:
                self._hour = hour
                self._hour_counts = _bucket(self._hours, hour, THROUGHPUT_HOURS)
        self._minute_counts[column] += 1
        self._hour_counts[column] += 1

    def read(self, now: float) -> Throughput:
        minute = int(now // 60)
        hour = minute // 60
        return Throughput(
            minutes=_points(self._minutes, minute, THROUGHPUT_MINUTES, 60),
            hours=_points(self._hours, hour, THROUGHPUT_HOURS, 3600),
        )


def _bucket(buckets: dict[int, list[int]], number: int, kept: int) -> list[int]:
    """The counts of bucket ``number``, made when new; buckets more than ``kept`` before the newest go."""
    counts = buckets.get(number)
    if counts is None:
        counts = buckets[number] = [0, 0]
        newest = max(buckets)
        for old in [n for n in buckets if n <= newest - kept]:
            del buckets[old]
    return counts


def _points(buckets: dict[int, list[int]], last: int, count: int, seconds: int) -> list[ThroughputPoint]:
    points = []
    for number in range(last - count + 1, last + 1):
        completed, failed = buckets.get(number, (0, 0))
        start = from_timestamp(number * seconds)
        assert start is not None
        points.append(ThroughputPoint(start=start, completed=completed, failed=failed))
    return points


class Waiter:
    """One caller blocked in :meth:`~flask_asyncendpoints.stores.MemoryStore.wait_for_work`."""

    __slots__ = ("cond", "queues", "ready")

    def __init__(self, cond: threading.Condition, queues: Sequence[str]) -> None:
        self.cond = cond
        self.queues = queues
        #: Set when a job of its queues became due, or at ``wake()``: it returns.
        self.ready = False


class MemoryState:
    """What a :class:`~flask_asyncendpoints.stores.MemoryStore` keeps, and the changes all its operations share.

    Its helpers (``_set``, ``_finish`` …) run under ``_lock``, held by the caller.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        max_pending: int | None = DEFAULT_MAX_PENDING,
        max_finished: int | None = DEFAULT_MAX_FINISHED,
    ) -> None:
        for name, value in (
            ("history_limit", history_limit),
            ("max_pending", max_pending),
            ("max_finished", max_finished),
        ):
            if value is not None and value < 0:
                raise ConfigurationError(f"MemoryStore({name}={value!r}): use 0 or more, or None for no bound.")
        self._clock = clock
        self.history_limit = history_limit
        self.max_pending = max_pending
        self.max_finished = max_finished
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        #: Threads waiting on ``_finished`` (long polls): a job that finishes with none skips the notify.
        self._finish_waiters = 0
        self._jobs: dict[str, Entry] = {}
        self._queues: dict[str, QueueState] = {}
        self._names: dict[str, Counts] = {}
        self._pending = 0
        #: Finished job ids, the one that finished first first: what max_finished evicts.
        self._finished_order: OrderedDict[str, None] = OrderedDict()
        #: (when, job id) of finished jobs with a result ttl, for purge.
        self._expiring: list[tuple[float, str]] = []
        self._seq = itertools.count(1)
        #: Attempt tokens: unique within this store, which is all a lease needs.
        self._tokens = itertools.count(1)
        self._waiters: dict[str, dict[Waiter, None]] = {}
        #: A wake() that found no waiter is kept for the next wait, so it is never lost.
        self._woken = False
        self._watchers: dict[int, Callable[[str], None]] = {}
        self._watcher_ids = itertools.count(1)
        self._throughput = ThroughputCounter()
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}
        self._occurrences: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<MemoryStore: {len(self._jobs)} jobs in this process>"

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _set(self, entry: Entry, job: Job) -> None:
        old, new = entry.job.status, job.status
        if old is not new:
            counts = entry.queue.counts
            counts[old] -= 1
            counts[new] += 1
            counts = entry.names
            counts[old] -= 1
            counts[new] += 1
        entry.job = job

    def _held(self, job_id: str, token: str) -> Entry | None:
        entry = self._jobs.get(job_id)
        if entry is None or not token or entry.token != token or entry.job.status is not JobStatus.IN_PROGRESS:
            return None
        return entry

    def _queue(self, name: str) -> QueueState:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = QueueState(name)
        return queue

    def _make_ready(self, entry: Entry, job: Job, now: float) -> None:
        """``job`` (``Queued``) joins the back of its priority, due now, and a waiter of its queue wakes."""
        self._set(entry, job)
        entry.key = key = (now, next(self._seq), job.id)
        entry.queue.bucket(job.priority).ready.add(key)
        self._notify(job.queue, ready=True)

    def _make_scheduled(self, entry: Entry, job: Job, due: float) -> None:
        self._set(entry, job)
        entry.key = key = (due, next(self._seq), job.id)
        entry.queue.bucket(job.priority).scheduled.add(key)
        self._notify(job.queue, ready=False)

    def _notify(self, queue: str, *, ready: bool) -> None:
        """Tell the waiters of ``queue``: one returns when a job is ready; otherwise all look again at how
        long to wait (a scheduled job may now be due sooner)."""
        waiters = self._waiters.get(queue)
        if not waiters:
            return
        if ready:
            waiter = next(iter(waiters))
            waiter.ready = True
            self._forget_waiter(waiter)
            waiter.cond.notify()
        else:
            for waiter in waiters:
                waiter.cond.notify()

    def _forget_waiter(self, waiter: Waiter) -> None:
        for queue in waiter.queues:
            waiters = self._waiters.get(queue)
            if waiters is not None:
                waiters.pop(waiter, None)

    def _record(self, entry: Entry, outcome: AttemptOutcome, now: float, error: JobError | None = None) -> None:
        """Add the running attempt that ends now to the job's history and let go of its lease."""
        if self.history_limit:
            row = (
                entry.job.retry_count + 1,
                entry.started,
                now,
                entry.worker_id,
                outcome._value_,  # the plain str: Enum's ``value`` is a descriptor call
                error.code if error is not None else None,
                error.message if error is not None else None,
            )
            history = entry.history
            if history is None:
                entry.history = (row,)
            else:
                entry.history = (*history, row)[-self.history_limit :]
        entry.token = ""
        entry.queue.running.remove(entry.key)

    def _finish(self, entry: Entry, job: Job, result_ttl: float | None, now: float) -> Job:
        """``job`` is final: index it, count it, expire it after ``result_ttl``, evict past max_finished."""
        self._set(entry, job)
        entry.key = key = (now, next(self._seq), job.id)
        entry.queue.finished[job.status].add(key)
        self._pending -= 1
        self._finished_order[job.id] = None
        if result_ttl is not None:
            entry.expires_at = now + result_ttl
            heapq.heappush(self._expiring, (entry.expires_at, job.id))
        if job.status is JobStatus.COMPLETED:
            self._throughput.count(now, _COMPLETED)
        elif job.status is JobStatus.FAILED:
            self._throughput.count(now, _FAILED)
        if self.max_finished is not None:
            while len(self._finished_order) > self.max_finished:
                self._remove(self._jobs[next(iter(self._finished_order))])
        if self._finish_waiters:
            self._finished.notify_all()
        return job

    def _cancel_ends(self, entry: Entry, now: float, result_ttl: float | None, error: JobError | None) -> Job:
        """The cancel rule: the running attempt of a job with a cancel requested ends it ``Canceled``."""
        self._record(entry, AttemptOutcome.CANCELED, now, error)
        stamp = from_timestamp(now)
        job = entry.job.replace(status=JobStatus.CANCELED, completed_at=stamp, last_updated_at=stamp)
        return self._finish(entry, job, result_ttl, now)

    def _remove(self, entry: Entry) -> None:
        """Delete a finished job with everything kept beside it."""
        job = entry.job
        entry.queue.finished[job.status].remove(entry.key)
        entry.queue.counts[job.status] -= 1
        entry.names[job.status] -= 1
        del self._jobs[job.id]
        del self._finished_order[job.id]
        if entry.expires_at is not None and len(self._expiring) > 2 * len(self._finished_order) + 64:
            # Entries of deleted jobs would stay until their time came: at most about as many as live ones.
            self._expiring = [(when, job_id) for when, job_id in self._expiring if self._expires(job_id, when)]
            heapq.heapify(self._expiring)

    def _expires(self, job_id: str, when: float) -> bool:
        entry = self._jobs.get(job_id)
        return entry is not None and entry.job.status.is_final and entry.expires_at == when

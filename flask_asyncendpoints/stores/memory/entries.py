"""What the memory store keeps per job and per queue.

Every job is in exactly one index, the one of its status, under the key kept in its
:class:`Entry`: ``Queued`` in its queue's ready index of its priority, ``Scheduled`` in the scheduled
index of its priority, ``InProgress`` in the queue's running index, finished in the queue's index of
that status. The queues claim from those indexes and the monitoring lists page through them, so
neither ever walks the jobs it does not answer.

Keys (each ends in a sequence number unique in the store, and the job id):

- ready and scheduled: ``(due, seq, id)``: FIFO by the time the job became due;
- running: ``(started, seq, id)``; finished: ``(completed, seq, id)``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ...jobs import FINAL_STATUSES, Job, JobStatus, LogRecord
from .index import Key, SortedIndex

#: One attempt of the history: number, started, finished (epoch seconds), worker id, outcome (its
#: value), error code, error message. Kept as a tuple (cheap to make on the hot path), read as an
#: AttemptRecord. Only numbers, strings and ``None`` in it, and the history a tuple of such rows: the
#: garbage collector stops tracking tuples that hold nothing else, so a finished job's history costs
#: it nothing, where a list or an enum member in each row would be walked by every full collection.
HistoryRow = tuple[int, float, float, str, str, str | None, str | None]

Counts = dict[JobStatus, int]


def zero_counts() -> Counts:
    """Every status at 0."""
    return dict.fromkeys(JobStatus, 0)


class Bucket:
    """The waiting jobs of one priority in one queue."""

    __slots__ = ("priority", "ready", "scheduled")

    def __init__(self, priority: int) -> None:
        self.priority = priority
        #: ``Queued`` jobs, due now.
        self.ready = SortedIndex()
        #: ``Scheduled`` jobs (retries and delayed jobs), by due time; claimable once due.
        self.scheduled = SortedIndex()


class QueueState:
    """One queue: its waiting jobs by priority, its running and finished jobs, and its counts."""

    __slots__ = ("buckets", "counts", "finished", "name", "priorities", "running")

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts = zero_counts()
        self.buckets: dict[int, Bucket] = {}
        #: The priorities that have a bucket, highest first.
        self.priorities: list[int] = []
        self.running = SortedIndex()
        self.finished = {status: SortedIndex() for status in FINAL_STATUSES}

    def pending(self) -> int:
        counts = self.counts
        return counts[JobStatus.QUEUED] + counts[JobStatus.SCHEDULED] + counts[JobStatus.IN_PROGRESS]

    def bucket(self, priority: int) -> Bucket:
        """The bucket of ``priority``, made when it has none."""
        bucket = self.buckets.get(priority)
        if bucket is None:
            bucket = self.buckets[priority] = Bucket(priority)
            self.priorities.append(priority)
            self.priorities.sort(reverse=True)
        return bucket

    def drop_if_empty(self, bucket: Bucket) -> None:
        """Forget a bucket that holds no job, so claims do not look at it again."""
        if not bucket.ready and not bucket.scheduled and self.buckets.get(bucket.priority) is bucket:
            del self.buckets[bucket.priority]
            self.priorities.remove(bucket.priority)

    def index_of(self, job: Job) -> SortedIndex:
        """The index that holds a job of this queue in its status."""
        status = job.status
        if status is JobStatus.QUEUED:
            return self.buckets[job.priority].ready
        if status is JobStatus.SCHEDULED:
            return self.buckets[job.priority].scheduled
        if status is JobStatus.IN_PROGRESS:
            return self.running
        return self.finished[status]

    def earliest_scheduled(self) -> float | None:
        """When the first of its scheduled jobs is due, if it has any."""
        dues = [bucket.scheduled.first()[0] for bucket in self.buckets.values() if bucket.scheduled]
        return min(dues) if dues else None


@dataclass(eq=False)
class Entry:
    """One stored job and what the store keeps beside it."""

    __slots__ = (
        "cancel_ttl",
        "expires_at",
        "history",
        "job",
        "key",
        "lease_until",
        "log_bytes",
        "logs",
        "names",
        "queue",
        "started",
        "token",
        "worker_id",
    )

    job: Job
    queue: QueueState
    #: The counts of the job's name (shared by every job of that name).
    names: Counts
    #: Its key in the index of its status.
    key: Key
    #: The lease token of the running attempt ("" when not running).
    token: str
    lease_until: float
    #: When the running attempt was claimed, and by whom.
    started: float
    worker_id: str
    #: When purge may delete the finished job; matched against the expiry heap's entries, so an
    #: entry left behind by an earlier finish (before a requeue) never deletes the job early.
    expires_at: float | None
    #: The result ttl of the cancel requested while it runs: a release at shutdown ends it with that.
    cancel_ttl: float | None
    history: tuple[HistoryRow, ...] | None
    #: Log lines with the UTF-8 size of each message.
    logs: deque[tuple[LogRecord, int]] | None
    log_bytes: int

    @classmethod
    def new(cls, job: Job, queue: QueueState, names: Counts, key: Key) -> Entry:
        return cls(job, queue, names, key, "", 0.0, 0.0, "", None, None, None, None, 0)

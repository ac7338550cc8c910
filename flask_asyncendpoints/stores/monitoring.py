"""The monitoring surface of the store interface: reads for dashboards, the CLI and metrics.

:class:`Monitoring` is the part of :class:`~flask_asyncendpoints.stores.Store` that answers what is
queued, running and finished, how fast jobs finish, and which worker processes are alive. None of it
is on the hot path of a job, but none of it scans every stored job either: counts are kept as jobs
change, and lists are read from an index per status, so a page costs O(log n + page).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..jobs import Job, JobStatus

#: The default and the largest page of :meth:`Monitoring.list_jobs`.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

#: How many per-minute and per-hour buckets :meth:`Monitoring.throughput` answers.
THROUGHPUT_MINUTES = 60
THROUGHPUT_HOURS = 24


@dataclass(frozen=True)
class QueueStats:
    """One queue at a glance.

    :ivar name: the queue's name.
    :ivar counts: its jobs per status; every status is present.
    :ivar due: how many of its jobs could start now (``Queued`` ones, and ``Scheduled`` ones whose
        time has come).
    :ivar oldest_due_at: when the due job that has waited longest became due, or ``None`` when no job
        is due. How far behind the workers of this queue are.
    """

    name: str
    counts: Mapping[JobStatus, int]
    due: int
    oldest_due_at: datetime | None


@dataclass(frozen=True)
class JobPage:
    """One page of :meth:`Monitoring.list_jobs`.

    :ivar jobs: the jobs of the page, in the list's order.
    :ivar cursor: opaque text to pass back as ``cursor`` for the next page; ``None`` when there is none.
    """

    jobs: list[Job]
    cursor: str | None


@dataclass(frozen=True)
class RunningJob:
    """A job in progress, with who runs it.

    :ivar job: the job.
    :ivar worker_id: the worker whose claim it is (``""`` when the claim named none).
    :ivar lease_until: when the lease runs out unless the worker renews it.
    """

    job: Job
    worker_id: str
    lease_until: datetime


@dataclass(frozen=True)
class ThroughputPoint:
    """Jobs that ended in one minute or one hour.

    :ivar start: the start of the bucket (a whole minute or hour, UTC).
    :ivar completed: jobs that ended ``Completed`` in it.
    :ivar failed: jobs that ended ``Failed`` in it (not retries, not cancels).
    """

    start: datetime
    completed: int
    failed: int


@dataclass(frozen=True)
class Throughput:
    """Finished jobs over time.

    :ivar minutes: the last 60 minutes, oldest first, the current minute last, empty minutes included.
    :ivar hours: the last 24 hours, the same way.
    """

    minutes: list[ThroughputPoint]
    hours: list[ThroughputPoint]


@dataclass(frozen=True)
class WorkerInfo:
    """A worker process, as it registers itself.

    :ivar id: unique among the workers sharing the store.
    :ivar host: the machine it runs on.
    :ivar pid: its process id there.
    :ivar queues: the queues it serves, in the order it serves them.
    :ivar concurrency: how many jobs it runs at once.
    :ivar started_at: when it started.
    :ivar heartbeat_at: when it last said it is alive. The store sets this from its own clock
        (or the ``now`` given) on each :meth:`~Monitoring.register_worker`.
    """

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime


def not_implemented(store: object, method: str) -> NotImplementedError:
    return NotImplementedError(
        f"{type(store).__name__} does not implement Store.{method}() of the store contract yet; "
        "every built-in store will, and a custom store must to pass the contract suite "
        "(flask_asyncendpoints.testing.contract)."
    )


class Monitoring:
    """Reads for monitoring, and the registry of worker processes. Mixed into the store interface."""

    def queue_stats(self, *, now: float | None = None) -> list[QueueStats]:
        """Every queue that has or had jobs, sorted by name.

        :param now: the current time (epoch seconds) for telling which scheduled jobs are due.
        """
        raise not_implemented(self, "queue_stats")

    def counts_by_name(self) -> Mapping[str, Mapping[JobStatus, int]]:
        """How many stored jobs of each job name are in each status (every status present per name).

        Names with no stored jobs left may be present with zeros.
        """
        raise not_implemented(self, "counts_by_name")

    def list_jobs(
        self,
        status: JobStatus,
        *,
        queue: str | None = None,
        name: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> JobPage:
        """A page of the jobs in one status.

        The order: finished jobs newest first (by ``completedAt``); ``Scheduled`` ones soonest due
        first; ``Queued`` ones in the order they will be claimed (highest priority first, then by
        the time they became due; over all queues when ``queue`` is ``None``); ``InProgress`` ones
        by start, newest first. Paging is by position: a job added or changed between two pages
        never shows twice, and a job that stays where it was is never skipped.

        :param status: the status to list.
        :param queue: only jobs of this queue (``None``: every queue).
        :param name: only jobs of this job name. Read by walking the status's index past the
            jobs of other names, so a rare name in a long list costs more than a page.
        :param cursor: the ``cursor`` of the previous page; ``None`` for the first page.
        :param limit: the most jobs on the page, at least 1; more than :data:`MAX_PAGE_SIZE` is
            read as :data:`MAX_PAGE_SIZE`.
        :raises ValueError: for a cursor this store did not hand out for this status, or a
            ``limit`` below 1.
        """
        raise not_implemented(self, "list_jobs")

    def running_jobs(self, *, limit: int = 100) -> list[RunningJob]:
        """Jobs in progress, with their worker and lease, newest start first.

        :param limit: the most jobs answered.
        """
        raise not_implemented(self, "running_jobs")

    def throughput(self, *, now: float | None = None) -> Throughput:
        """Jobs that ended ``Completed`` and ``Failed``, per minute over the last hour and per hour
        over the last day. Counted as jobs finish; older buckets expire.

        :param now: the current time (epoch seconds): its minute is the last point.
        """
        raise not_implemented(self, "throughput")

    def register_worker(self, info: WorkerInfo, *, ttl: float, now: float | None = None) -> None:
        """Register a worker process, or renew its registration (its heartbeat): call again before
        ``ttl`` runs out. The store stamps ``heartbeat_at`` with ``now`` (its clock when ``None``).

        :param info: the worker; registering the same ``id`` again replaces what was stored.
        :param ttl: seconds after this heartbeat until the worker counts as gone.
        """
        raise not_implemented(self, "register_worker")

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker at once (it stops). Nothing happens for an unknown id."""
        raise not_implemented(self, "unregister_worker")

    def workers(self, *, now: float | None = None) -> list[WorkerInfo]:
        """The workers whose last heartbeat is at most their ``ttl`` ago, sorted by id.

        :param now: the current time (epoch seconds).
        """
        raise not_implemented(self, "workers")

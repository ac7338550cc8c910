"""The store interface: every operation the extension and the worker need from a job store.

Each method is one atomic step of the job lifecycle. Methods that take ``now`` (epoch seconds) use it
as the current time; ``None`` means the store's own clock, which for a shared store is the one clock
all processes agree on (the Redis server's). Tests pass ``now`` to drive time without sleeping.

A store never raises for a missing job or a lost lease: it answers ``None``/``False`` so the caller
can tell what happened. It raises :class:`~flask_asyncendpoints.errors.StoreError` when it cannot be
reached, and :class:`PendingLimitReached` from :meth:`Store.create` at the pending-jobs limit.

Jobs wait in named queues (``"default"`` unless a job names another). Within a queue, among the jobs
that are due, a higher ``priority`` is claimed first, and jobs of one priority in the order they
became due; a retry or a delayed job keeps its priority and lines up by its due time.

**The cancel rule.** A cancel of a running job (:attr:`CancelResult.REQUESTED`) always ends the job
``Canceled``, whatever its attempt does next: :meth:`~Store.complete` (and :meth:`~Store.complete_many`),
:meth:`~Store.fail` (with or without a retry left), :meth:`~Store.finish_canceled`,
:meth:`~Store.release` and :meth:`~Store.recover` of a job with a cancel requested all make it
``Canceled``, with ``completedAt`` set, no result stored and the job's ``error`` left as it was (the
attempt's own error, if it failed, is kept in its :class:`~flask_asyncendpoints.jobs.AttemptRecord`
only). Those calls answer the canceled job while the caller's token still held the lease. ``Queued``
and ``Scheduled`` jobs are canceled at once; finished jobs are left as they are.
"""

from __future__ import annotations

import abc
import enum
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import AsyncEndpointsError
from ..jobs import DEFAULT_QUEUE, AttemptRecord, ClaimedJob, Job, JobError, JobPayload, JobStatus, LogRecord
from .monitoring import Monitoring

#: Error code written on a job whose worker stopped renewing its lease and that has no retries left.
LEASE_EXPIRED_CODE = "LEASEEXPIRED"
LEASE_EXPIRED_MESSAGE = "The worker running this job stopped renewing its lease (it probably died)."

#: How many attempts each job's history keeps unless the store is told otherwise.
DEFAULT_HISTORY_LIMIT = 10


@dataclass(frozen=True)
class NewJob:
    """One job for :meth:`Store.create_many`; the fields are the arguments of :meth:`Store.create`.

    :ivar id: the new job's id (a UUID string).
    :ivar name: the handler's job name.
    :ivar payload: what the handler will be called with.
    :ivar max_retries: how many times a failed attempt is retried.
    :ivar queue: the queue it waits in.
    :ivar priority: higher is claimed first among the due jobs of its queue.
    :ivar due: when it becomes due (epoch seconds); ``None`` for at once.
    """

    id: str
    name: str
    payload: JobPayload
    max_retries: int
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    due: float | None = None


class PendingLimitReached(AsyncEndpointsError):
    """:meth:`Store.create` refused a job: as many jobs are pending as the limit allows."""


class CancelResult(str, enum.Enum):
    """What :meth:`Store.cancel` did."""

    #: The job was queued or scheduled and is now ``Canceled``.
    CANCELED = "canceled"
    #: The job is running; cancellation was requested and the handler will see it.
    REQUESTED = "requested"
    #: The job had already finished; nothing changed.
    FINISHED = "finished"
    #: No such job.
    NOT_FOUND = "not_found"


class LeaseState(str, enum.Enum):
    """The state of one lease after :meth:`Store.renew`."""

    #: Renewed; the attempt still owns the job.
    HELD = "held"
    #: Renewed, and a cancel has been requested: the handler should stop.
    CANCEL_REQUESTED = "cancel_requested"
    #: The attempt no longer owns the job (lease expired and recovered, canceled, finished).
    LOST = "lost"


class Store(Monitoring, abc.ABC):
    """Where jobs live. One instance is shared by every thread of a process.

    Besides the lifecycle below, a store keeps each job's attempt history (its last
    ``history_limit`` attempts, a constructor keyword of every built-in store) and, when the worker
    sends them, its log lines; both go when the job goes. The monitoring reads
    (:meth:`queue_stats`, :meth:`list_jobs`, :meth:`throughput`, the worker registry, ...) are part
    of it too, defined in :mod:`flask_asyncendpoints.stores.monitoring`.
    """

    #: Whether :meth:`complete_many` saves enough (round trips) that the worker should hand its
    #: results to one thread that writes them in batches, rather than write each where it ran.
    batches_completions = False

    #: Whether several threads of a process may block in :meth:`wait_and_claim` at once, each woken
    #: by a job of its own: each job that becomes due wakes one waiter rather than all of them. The
    #: worker then keeps every idle pool thread waiting, so a job starts in a thread that was
    #: waiting already while the next wait is under way; otherwise one thread at a time waits.
    concurrent_waits = False

    # -- creating and reading ------------------------------------------------------------------------

    @abc.abstractmethod
    def create(
        self,
        job_id: str,
        name: str,
        payload: JobPayload,
        *,
        max_retries: int,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        due: float | None = None,
        max_pending: int | None = None,
        now: float | None = None,
    ) -> tuple[Job, bool]:
        """Store a new job and, when it is due at once, wake an idle worker of its queue.

        A job due at once is ``Queued``. One with a ``due`` later than now is a delayed job:
        ``Scheduled``, with ``retryDelayUntil`` at ``due`` and ``retryCount`` 0, and no worker is woken
        before it is due.

        Creating is idempotent on ``job_id``, whatever the queue: when a job with that id exists,
        nothing changes and the existing job is returned.

        :param job_id: the new job's id (a UUID string).
        :param name: the handler's job name.
        :param payload: what the handler will be called with.
        :param max_retries: how many times a failed attempt is retried.
        :param queue: the queue the job waits in.
        :param priority: higher is claimed first among the due jobs of the queue.
        :param due: when the job becomes due (epoch seconds); ``None``, or a time not later than
            now, for at once.
        :param max_pending: refuse the job when this many jobs of its queue are ``Queued``,
            ``Scheduled`` or ``InProgress`` (``None``: no limit).
        :returns: the job and ``True`` if it was created, ``False`` if it already existed.
        :raises PendingLimitReached: at ``max_pending``; nothing is stored.
        """

    def create_many(
        self,
        jobs: Sequence[NewJob],
        *,
        max_pending: int | None = None,
        now: float | None = None,
    ) -> list[tuple[Job, bool] | None]:
        """:meth:`create` for several jobs at once (bulk submits); each is created on its own.

        :param jobs: the jobs, in order.
        :param max_pending: as for :meth:`create`, judged for each job in turn.
        :returns: for each job in order, what :meth:`create` returns, or ``None`` when the job was
            refused at ``max_pending`` (nothing is stored for it).
        """
        created: list[tuple[Job, bool] | None] = []
        for new in jobs:
            try:
                created.append(
                    self.create(
                        new.id,
                        new.name,
                        new.payload,
                        max_retries=new.max_retries,
                        queue=new.queue,
                        priority=new.priority,
                        due=new.due,
                        max_pending=max_pending,
                        now=now,
                    )
                )
            except PendingLimitReached:
                created.append(None)
        return created

    @abc.abstractmethod
    def get(self, job_id: str) -> Job | None:
        """The job with this id, whatever its queue, or ``None``.

        One lookup: no scan, and no round trip per queue.
        """

    def confirm_stored(self, job: Job) -> None:
        """Return once ``job``, found by :meth:`get`, is stored as durably as :meth:`create` stores a job.

        A submit that repeats an accepted request (the same ``X-Async-Request-Id``) is answered with
        the job :meth:`get` found, after this. A store that acknowledges a job before it is durable
        unless asked to wait (the Redis store with ``wait_replicas``) waits here as it does in
        :meth:`create`: the first submit may have been refused for want of that wait, with its job
        written all the same. This default does nothing.

        :raises ~flask_asyncendpoints.errors.StoreError: when the job cannot be made as durable.
        """

    # -- running -------------------------------------------------------------------------------------

    @abc.abstractmethod
    def claim(
        self,
        limit: int,
        lease_seconds: float,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        worker_id: str = "",
        now: float | None = None,
    ) -> list[ClaimedJob]:
        """Take up to ``limit`` due jobs and lease them to the caller.

        The queues are served in the order given: all that can be taken from the first, then from
        the next, and so on. Within a queue, the highest priority first, and within a priority the
        job that became due first. Each job becomes ``InProgress`` with ``startedAt`` set and a lease
        that expires after ``lease_seconds`` unless renewed. A claimed job is handed to exactly one
        caller. O(log n) per job claimed.

        :param limit: the most jobs to take.
        :param lease_seconds: how long the lease lasts unless renewed.
        :param queues: the queues to take from, in order.
        :param worker_id: who claims (see :class:`~flask_asyncendpoints.stores.monitoring.WorkerInfo`);
            recorded for :meth:`running_jobs` and the attempt history.
        """

    @abc.abstractmethod
    def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, *, now: float | None = None
    ) -> dict[str, LeaseState]:
        """Extend the leases of running attempts.

        :param leases: ``(job_id, token)`` pairs of the attempts to renew.
        :returns: for each job id, whether the lease is still held (and whether a cancel is wanted).
        """

    @abc.abstractmethod
    def complete(
        self, job_id: str, token: str, result_json: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        """Finish an attempt with a result: the job becomes ``Completed`` and its error is cleared.

        A job with a cancel requested becomes ``Canceled`` instead, and the result is not stored
        (the cancel rule, see :class:`~flask_asyncendpoints.stores.Store`).

        :param result_json: the result, already serialized as JSON text.
        :param result_ttl: seconds until the finished job is purged (``None``: keep it).
        :returns: the finished job, or ``None`` when ``token`` no longer holds the lease (the
            result is discarded).
        """

    def complete_many(
        self,
        completions: Sequence[tuple[ClaimedJob, str]],
        *,
        result_ttl: float | None,
        now: float | None = None,
    ) -> list[Job | None]:
        """:meth:`complete` for several attempts at once (the worker batches its completions).

        Each completion is checked and applied on its own, exactly as by :meth:`complete` (a job
        with a cancel requested becomes ``Canceled``); stores that can send them together (one Redis
        script) override this to save round trips. They are given the claimed jobs so that they can
        tell the completed jobs without reading them back.

        :param completions: ``(claimed job, result_json)`` of each attempt.
        :returns: for each completion in order, the finished job or ``None`` (lease not held).
        """
        return [
            self.complete(claimed.job.id, claimed.token, result_json, result_ttl=result_ttl, now=now)
            for claimed, result_json in completions
        ]

    @abc.abstractmethod
    def fail(
        self,
        job_id: str,
        token: str,
        error: JobError,
        *,
        retry_delay: float | None,
        result_ttl: float | None,
        now: float | None = None,
    ) -> Job | None:
        """Fail an attempt.

        With retries left (``retryCount < maxRetries``) and a ``retry_delay``, the job becomes
        ``Scheduled``, ``retryCount`` goes up by one and it is due ``retry_delay`` seconds from now,
        keeping its queue and priority; otherwise it becomes ``Failed``. The error is recorded
        either way. A job with a cancel requested becomes ``Canceled`` instead, its error kept in
        the attempt's record only (the cancel rule).

        :param retry_delay: seconds until the retry is due; ``None`` fails the job for good.
        :returns: the updated job, or ``None`` when ``token`` no longer holds the lease.
        """

    @abc.abstractmethod
    def finish_canceled(
        self, job_id: str, token: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        """End a running attempt that stopped because a cancel was requested: ``Canceled``.

        :returns: the canceled job, or ``None`` when ``token`` no longer holds the lease.
        """

    @abc.abstractmethod
    def release(self, job_id: str, token: str, *, now: float | None = None) -> bool:
        """Give a claimed job back untouched (at shutdown): ``Queued`` again, due at once, no retry counted.

        A job with a cancel requested becomes ``Canceled`` instead (the cancel rule); it expires
        after the ``result_ttl`` given to the :meth:`cancel` that asked for it.

        :returns: ``False`` when ``token`` no longer holds the lease.
        """

    @abc.abstractmethod
    def cancel(
        self, job_id: str, *, result_ttl: float | None, now: float | None = None
    ) -> tuple[CancelResult, Job | None]:
        """Cancel a job: ``Queued``/``Scheduled`` ones at once, running ones by request.

        A running job's cancel is a request: the job will end ``Canceled`` however its attempt
        ends (the cancel rule), and :meth:`~flask_asyncendpoints.stores.Store.watch_cancels` callbacks hear of it.

        :param result_ttl: seconds until the canceled job is purged (``None``: keep it); for a
            running job, when it ends.
        :returns: what was done, and the job as it is now (``None`` when there is no such job).
        """

    def watch_cancels(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Have ``callback(job_id)`` called when a cancel is requested for a running job.

        It is called from any thread, within milliseconds of the :meth:`cancel`, in every process
        sharing the store where the store can tell them (each store says whether it can), and never
        while the store holds a lock of its own. A callback must be quick and must not raise.
        This default never calls: a worker then hears of a cancel at its next lease renewal.

        :returns: a function that stops the watching.
        """
        return _stop_nothing

    @abc.abstractmethod
    def set_progress(
        self, job_id: str, token: str, fraction: float, message: str | None, *, now: float | None = None
    ) -> bool:
        """Record a running attempt's progress. ``False`` when ``token`` no longer holds the lease."""

    @abc.abstractmethod
    def recover(self, *, result_ttl: float | None, limit: int = 100, now: float | None = None) -> list[Job]:
        """Take back up to ``limit`` jobs whose lease expired (their worker died or hung), in every queue.

        A job with retries left is ``Queued`` again at once with ``retryCount`` up by one; one without
        becomes ``Failed`` with the error code ``LEASEEXPIRED``; one with a cancel requested becomes
        ``Canceled`` (the cancel rule). Safe to run from many processes at once.

        :returns: the recovered jobs, as they are now.
        """

    # -- history and logs ----------------------------------------------------------------------------

    @abc.abstractmethod
    def attempts(self, job_id: str) -> list[AttemptRecord]:
        """The job's last attempts, oldest first: one record per attempt that ended (completed,
        failed, canceled, released or recovered), at most the store's ``history_limit``.

        :returns: the records; ``[]`` for an unknown job or one that never ran.
        """

    @abc.abstractmethod
    def append_logs(
        self, job_id: str, token: str, records: Sequence[LogRecord], *, max_lines: int, max_bytes: int
    ) -> bool:
        """Add lines to the job's execution log while ``token`` holds the lease.

        The log keeps at most ``max_lines`` lines and ``max_bytes`` bytes of messages (UTF-8) in
        all, the oldest lines dropped first; a line whose message alone is longer than ``max_bytes``
        is not kept, so cap long messages before appending. The log goes when the job goes.

        :param records: the lines, oldest first.
        :returns: ``False`` when ``token`` no longer holds the lease; nothing is stored then.
        """

    @abc.abstractmethod
    def logs(self, job_id: str) -> list[LogRecord]:
        """The job's execution log, oldest first; ``[]`` for an unknown job."""

    # -- recurring jobs ------------------------------------------------------------------------------

    @abc.abstractmethod
    def claim_occurrence(self, schedule: str, at: float, *, now: float | None = None) -> bool:
        """Claim one occurrence of a recurring schedule, so that it is enqueued once across every process.

        Atomically: when the schedule's last claimed occurrence is before ``at`` (or there is
        none), ``at`` becomes the last claimed one and the answer is ``True``. Exactly one caller
        gets ``True`` for each ``(schedule, at)``; every other caller, and any ``at`` not after the
        last claimed one, gets ``False``.

        :param schedule: the schedule's name.
        :param at: the occurrence (epoch seconds).
        :param now: the current time (epoch seconds).
        """

    @abc.abstractmethod
    def occurrences(self) -> Mapping[str, float]:
        """The last claimed occurrence of each schedule (epoch seconds)."""

    # -- upkeep and operators ------------------------------------------------------------------------

    @abc.abstractmethod
    def purge(self, *, limit: int = 1000, now: float | None = None) -> int:
        """Delete up to ``limit`` finished jobs whose ``result_ttl`` has run out, with their history
        and logs, in every queue; the number deleted."""

    @abc.abstractmethod
    def requeue(self, job_id: str, *, now: float | None = None) -> Job | None:
        """Put a ``Failed`` job back in its queue, due at once, with ``retryCount`` back to 0.

        For operators (``flask asyncendpoints requeue``). The last error stays until an attempt
        succeeds.

        :returns: the queued job, or ``None`` when there is no such job or it is not ``Failed``.
        """

    @abc.abstractmethod
    def delete(self, job_id: str, *, now: float | None = None) -> bool:
        """Delete a finished job, with its history and logs, at once (for operators).

        :returns: ``True`` when it was deleted; ``False`` when there is no such job or it is not
            finished (nothing changes).
        """

    @abc.abstractmethod
    def purge_finished(self, older_than: float, *, now: float | None = None) -> int:
        """Delete every finished job that finished more than ``older_than`` seconds ago; the number deleted.

        For operators (``flask asyncendpoints purge``): it may look at every stored job, so it is
        not for the hot path. :meth:`purge` is what expires jobs as they age.
        """

    @abc.abstractmethod
    def counts(self, *, queue: str | None = None) -> Mapping[JobStatus, int]:
        """How many stored jobs are in each status (every status is present), without a scan.

        :param queue: count this queue's jobs only (``None``: every queue).
        """

    @abc.abstractmethod
    def wait_for_work(self, timeout: float, *, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> None:
        """Block until a job of ``queues`` may be due (a create, a release, :meth:`wake`) or
        ``timeout`` seconds pass. A wake-up may come early; the caller claims and waits again."""

    def wait_and_claim(
        self,
        timeout: float,
        limit: int,
        lease_seconds: float,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        worker_id: str = "",
        now: float | None = None,
    ) -> list[ClaimedJob]:
        """:meth:`wait_for_work`, then :meth:`claim`: what an idle worker does, as one operation.

        Returns the jobs claimed once the wait ends (``[]`` when nothing was due by then); the
        arguments after ``timeout`` are :meth:`claim`'s. Like a wait, it may end early with nothing.
        This default waits, then claims; a store that can hand a woken worker its jobs with the
        wake-up itself (the Redis store: one round trip) overrides it.

        :param timeout: the longest wait, in seconds.
        :param now: the time of the claim; ``None`` for the store's clock when the wait ends.
        """
        self.wait_for_work(timeout, queues=queues)
        return self.claim(limit, lease_seconds, queues=queues, worker_id=worker_id, now=now)

    @abc.abstractmethod
    def wake(self) -> None:
        """Wake the callers blocked in :meth:`wait_for_work` and :meth:`wait_and_claim` (used at shutdown)."""

    def wait_for_finish(self, job_id: str, timeout: float) -> Job | None:
        """Block until the job is finished (or gone) or ``timeout`` seconds pass; the job as it is then.

        Backs the long-poll of job details. This default polls :meth:`get` with a growing
        interval; stores that can be told when a job finishes override it to answer at once.
        """
        deadline = time.monotonic() + timeout
        interval = 0.01
        gate = threading.Event()
        while True:
            job = self.get(job_id)
            remaining = deadline - time.monotonic()
            if job is None or job.status.is_final or remaining <= 0:
                return job
            gate.wait(min(interval, remaining))
            interval = min(interval * 2, 0.5)

    def ping(self) -> None:
        """Raise :class:`~flask_asyncendpoints.errors.StoreError` if the store cannot be reached."""

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""


def _stop_nothing() -> None:
    """What :meth:`Store.watch_cancels` answers when it watches nothing."""

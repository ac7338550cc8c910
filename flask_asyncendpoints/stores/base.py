"""The store interface: every operation the extension and the worker need from a job store.

Each method is one atomic step of the job lifecycle. Methods that take ``now`` (epoch seconds) use it
as the current time; ``None`` means the store's own clock, which for a shared store is the one clock
all processes agree on (the Redis server's). Tests pass ``now`` to drive time without sleeping.

A store never raises for a missing job or a lost lease: it answers ``None``/``False`` so the caller
can tell what happened. It raises :class:`~flask_asyncendpoints.errors.StoreError` when it cannot be
reached, and :class:`PendingLimitReached` from :meth:`Store.create` at the pending-jobs limit.
"""

from __future__ import annotations

import abc
import enum
import threading
import time
from collections.abc import Mapping, Sequence

from ..errors import AsyncEndpointsError
from ..jobs import ClaimedJob, Job, JobError, JobPayload, JobStatus

#: Error code written on a job whose worker stopped renewing its lease and that has no retries left.
LEASE_EXPIRED_CODE = "LEASEEXPIRED"
LEASE_EXPIRED_MESSAGE = "The worker running this job stopped renewing its lease (it probably died)."


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


class Store(abc.ABC):
    """Where jobs live. One instance is shared by every thread of a process."""

    #: Whether :meth:`complete_many` saves enough (round trips) that the worker should hand its
    #: results to one thread that writes them in batches, rather than write each where it ran.
    batches_completions = False

    @abc.abstractmethod
    def create(
        self,
        job_id: str,
        name: str,
        payload: JobPayload,
        *,
        max_retries: int,
        max_pending: int | None = None,
        now: float | None = None,
    ) -> tuple[Job, bool]:
        """Store a new ``Queued`` job, due at once, and wake an idle worker.

        Creating is idempotent on ``job_id``: when a job with that id exists, nothing changes and
        the existing job is returned.

        :param job_id: the new job's id (a UUID string).
        :param name: the handler's job name.
        :param payload: what the handler will be called with.
        :param max_retries: how many times a failed attempt is retried.
        :param max_pending: refuse the job when this many jobs are ``Queued``, ``Scheduled`` or
            ``InProgress`` (``None``: no limit).
        :returns: the job and ``True`` if it was created, ``False`` if it already existed.
        :raises PendingLimitReached: at ``max_pending``; nothing is stored.
        """

    def create_many(
        self,
        jobs: Sequence[tuple[str, str, JobPayload, int]],
        *,
        max_pending: int | None = None,
        now: float | None = None,
    ) -> list[tuple[Job, bool] | None]:
        """:meth:`create` for several jobs at once (bulk submits); each is created on its own.

        :param jobs: ``(job_id, name, payload, max_retries)`` of each job.
        :returns: for each job in order, what :meth:`create` returns, or ``None`` when the job was
            refused at ``max_pending`` (nothing is stored for it).
        """
        created: list[tuple[Job, bool] | None] = []
        for job_id, name, payload, max_retries in jobs:
            try:
                created.append(
                    self.create(job_id, name, payload, max_retries=max_retries, max_pending=max_pending, now=now)
                )
            except PendingLimitReached:
                created.append(None)
        return created

    @abc.abstractmethod
    def get(self, job_id: str) -> Job | None:
        """The job with this id, or ``None``."""

    @abc.abstractmethod
    def claim(self, limit: int, lease_seconds: float, *, now: float | None = None) -> list[ClaimedJob]:
        """Take up to ``limit`` due jobs, oldest due first, and lease them to the caller.

        Each job becomes ``InProgress`` with ``startedAt`` set and a lease that expires after
        ``lease_seconds`` unless renewed. A claimed job is handed to exactly one caller.
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

        :param result_json: the result, already serialized as JSON text.
        :param result_ttl: seconds until the finished job is purged (``None``: keep it).
        :returns: the completed job, or ``None`` when ``token`` no longer holds the lease (the
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

        Each completion is checked and applied on its own, exactly as by :meth:`complete`; stores
        that can send them together (one Redis script) override this to save round trips. They are
        given the claimed jobs so that they can tell the completed jobs without reading them back.

        :param completions: ``(claimed job, result_json)`` of each attempt.
        :returns: for each completion in order, the completed job or ``None`` (lease not held).
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
        ``Scheduled``, ``retryCount`` goes up by one and it is due ``retry_delay`` seconds from now;
        otherwise it becomes ``Failed``. The error is recorded either way.

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

        :returns: ``False`` when ``token`` no longer holds the lease.
        """

    @abc.abstractmethod
    def cancel(
        self, job_id: str, *, result_ttl: float | None, now: float | None = None
    ) -> tuple[CancelResult, Job | None]:
        """Cancel a job: ``Queued``/``Scheduled`` ones at once, running ones by request."""

    @abc.abstractmethod
    def set_progress(
        self, job_id: str, token: str, fraction: float, message: str | None, *, now: float | None = None
    ) -> bool:
        """Record a running attempt's progress. ``False`` when ``token`` no longer holds the lease."""

    @abc.abstractmethod
    def recover(self, *, result_ttl: float | None, limit: int = 100, now: float | None = None) -> list[Job]:
        """Take back up to ``limit`` jobs whose lease expired (their worker died or hung).

        A job with retries left is ``Queued`` again at once with ``retryCount`` up by one; one without
        becomes ``Failed`` with the error code ``LEASEEXPIRED``. Safe to run from many processes at once.

        :returns: the recovered jobs, as they are now.
        """

    @abc.abstractmethod
    def purge(self, *, limit: int = 1000, now: float | None = None) -> int:
        """Delete up to ``limit`` finished jobs whose ``result_ttl`` has run out; the number deleted."""

    @abc.abstractmethod
    def requeue(self, job_id: str, *, now: float | None = None) -> Job | None:
        """Put a ``Failed`` job back in the queue, due at once, with ``retryCount`` back to 0.

        For operators (``flask asyncendpoints requeue``). The last error stays until an attempt
        succeeds.

        :returns: the queued job, or ``None`` when there is no such job or it is not ``Failed``.
        """

    @abc.abstractmethod
    def purge_finished(self, older_than: float, *, now: float | None = None) -> int:
        """Delete every finished job that finished more than ``older_than`` seconds ago; the number deleted.

        For operators (``flask asyncendpoints purge``): it looks at every stored job, so it is not
        for the hot path. :meth:`purge` is what expires jobs as they age.
        """

    @abc.abstractmethod
    def counts(self) -> Mapping[JobStatus, int]:
        """How many stored jobs are in each status (every status is present)."""

    @abc.abstractmethod
    def wait_for_work(self, timeout: float) -> None:
        """Block until a job may be due (a create, a release, :meth:`wake`) or ``timeout`` seconds pass."""

    @abc.abstractmethod
    def wake(self) -> None:
        """Wake the callers blocked in :meth:`wait_for_work` (used at shutdown)."""

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

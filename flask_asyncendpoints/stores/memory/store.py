"""The in-memory store: for development, tests and single-process apps. Creating jobs and running them, one
operation per method; :class:`MemoryStore` mixes in its waits (:mod:`.waiting`), its upkeep and operator calls
(:mod:`.upkeep`) and its monitoring reads (:mod:`.monitoring`).

A dict of jobs and, per queue, ordered indexes (:mod:`.entries`) under one lock (:mod:`.state`): claims take the
first due job of the highest priority in O(log n), cancels take a job out of the middle, and the
monitoring lists page through the same indexes. Idle workers wait on conditions of that lock and are
woken the moment a job of their queues is due. Jobs live only as long as the process: under several
gunicorn workers each process has its own store, so use Redis there.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Sequence
from datetime import datetime

from ...jobs import (
    DEFAULT_QUEUE,
    AttemptOutcome,
    ClaimedJob,
    Job,
    JobError,
    JobPayload,
    JobStatus,
    LogRecord,
    Progress,
    from_timestamp,
)
from ..base import CancelResult, LeaseState, PendingLimitReached, Store
from .entries import Bucket, Entry, QueueState, zero_counts
from .monitoring import MemoryMonitoring
from .upkeep import MemoryUpkeep
from .waiting import MemoryWaiting

logger = logging.getLogger(__package__)


class MemoryStore(MemoryWaiting, MemoryUpkeep, MemoryMonitoring, Store):
    """Jobs in this process's memory, bounded.

    :param clock: returns the current time in epoch seconds; tests inject a fake one.
    :param history_limit: how many attempts each job's history keeps.
    :param max_pending: the most jobs ``Queued``, ``Scheduled`` or ``InProgress`` at once, in
        every queue together; a submit beyond it is refused (``503``) as at
        ``ASYNCENDPOINTS_MAX_PENDING_JOBS``, whichever is lower. ``None``: no bound.
    :param max_finished: the most finished jobs kept; past it the job that finished first is
        deleted at once, before its ``result_ttl`` runs out. ``None``: no bound.
    :raises ConfigurationError: for a negative bound or history limit.
    """

    #: Each job that becomes due wakes one waiter of its queue.
    concurrent_waits = True

    # -- creating and reading ------------------------------------------------------------------------

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
        with self._lock:
            existing = self._jobs.get(job_id)
            if existing is not None:
                return existing.job, False
            state = self._queues.get(queue)
            if max_pending is not None and (state.pending() if state is not None else 0) >= max_pending:
                raise PendingLimitReached(f"{max_pending} jobs of the queue {queue!r} are already pending")
            if self.max_pending is not None and self._pending >= self.max_pending:
                raise PendingLimitReached(
                    f"the memory store holds its most pending jobs, {self.max_pending}; to allow more, "
                    "give AsyncEndpoints a MemoryStore(max_pending=...) as its store"
                )
            now = self._now(now)
            stamp = from_timestamp(now)
            assert stamp is not None
            delayed = due is not None and due > now
            job = Job.new(
                job_id,
                name,
                max_retries=max_retries,
                payload=payload,
                created_at=stamp,
                queue=queue,
                priority=priority,
                due_at=from_timestamp(due) if delayed else None,
            )
            if state is None:
                state = self._queue(queue)
            names = self._names.get(name)
            if names is None:
                names = self._names[name] = zero_counts()
            entry = self._jobs[job_id] = Entry.new(job, state, names, ())
            state.counts[job.status] += 1
            names[job.status] += 1
            self._pending += 1
            bucket = state.bucket(priority)
            if delayed:
                assert due is not None
                entry.key = key = (due, next(self._seq), job_id)
                bucket.scheduled.add(key)
                self._notify(queue, ready=False)
            else:
                entry.key = key = (now, next(self._seq), job_id)
                bucket.ready.add(key)
                self._notify(queue, ready=True)
            return job, True

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            entry = self._jobs.get(job_id)
            return entry.job if entry is not None else None

    # -- running -------------------------------------------------------------------------------------

    def claim(
        self,
        limit: int,
        lease_seconds: float,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        worker_id: str = "",
        now: float | None = None,
    ) -> list[ClaimedJob]:
        claimed: list[ClaimedJob] = []
        with self._lock:
            now = self._now(now)
            stamp = from_timestamp(now)
            for name in queues:
                state = self._queues.get(name)
                if state is None or not state.priorities:
                    continue
                for priority in list(state.priorities):
                    bucket = state.buckets[priority]
                    self._claim_from(bucket, state, limit, lease_seconds, worker_id, now, stamp, claimed)
                    state.drop_if_empty(bucket)
                    if len(claimed) >= limit:
                        return claimed
        return claimed

    def _claim_from(
        self,
        bucket: Bucket,
        state: QueueState,
        limit: int,
        lease_seconds: float,
        worker_id: str,
        now: float,
        stamp: datetime | None,
        claimed: list[ClaimedJob],
    ) -> None:
        """Claim from one priority of one queue: of its ready and its due scheduled jobs, the one due first."""
        ready, scheduled = bucket.ready, bucket.scheduled
        jobs, running = self._jobs, state.running
        while len(claimed) < limit:
            if scheduled.size and scheduled.first()[0] <= now and (not ready.size or scheduled.first() < ready.first()):
                key = scheduled.pop_first()
            elif ready.size:
                key = ready.pop_first()
            else:
                return
            entry = jobs[key[2]]
            job = entry.job.replace(
                status=JobStatus.IN_PROGRESS,
                started_at=stamp,
                last_updated_at=stamp,
                retry_delay_until=None,
                progress=None,
                cancel_requested=False,
            )
            self._set(entry, job)
            entry.token = token = f"{next(self._tokens):x}"
            entry.lease_until = now + lease_seconds
            entry.started = now
            entry.worker_id = worker_id
            entry.key = key = (now, next(self._seq), job.id)
            running.add(key)
            claimed.append(ClaimedJob(job, token))

    def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, *, now: float | None = None
    ) -> dict[str, LeaseState]:
        states: dict[str, LeaseState] = {}
        with self._lock:
            now = self._now(now)
            for job_id, token in leases:
                entry = self._held(job_id, token)
                if entry is None or entry.lease_until < now:
                    states[job_id] = LeaseState.LOST
                    continue
                entry.lease_until = now + lease_seconds
                states[job_id] = LeaseState.CANCEL_REQUESTED if entry.job.cancel_requested else LeaseState.HELD
        return states

    def complete(
        self, job_id: str, token: str, result_json: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        # Parse outside the lock: the stored copy must be plain JSON data, whatever the caller holds.
        result = None if result_json == "null" else json.loads(result_json)
        with self._lock:
            entry = self._held(job_id, token)
            if entry is None:
                return None
            now = self._now(now)
            if entry.job.cancel_requested:
                return self._cancel_ends(entry, now, result_ttl, None)
            self._record(entry, AttemptOutcome.COMPLETED, now)
            stamp = from_timestamp(now)
            job = entry.job.replace(
                status=JobStatus.COMPLETED, result=result, error=None, completed_at=stamp, last_updated_at=stamp
            )
            return self._finish(entry, job, result_ttl, now)

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
        with self._lock:
            entry = self._held(job_id, token)
            if entry is None:
                return None
            now = self._now(now)
            job = entry.job
            if job.cancel_requested:
                return self._cancel_ends(entry, now, result_ttl, error)
            stamp = from_timestamp(now)
            if retry_delay is not None and job.retry_count < job.max_retries:
                self._record(entry, AttemptOutcome.RETRYING, now, error)
                due = now + retry_delay
                scheduled = job.replace(
                    status=JobStatus.SCHEDULED,
                    retry_count=job.retry_count + 1,
                    error=error,
                    retry_delay_until=from_timestamp(due),
                    last_updated_at=stamp,
                )
                self._make_scheduled(entry, scheduled, due)
                return scheduled
            self._record(entry, AttemptOutcome.FAILED, now, error)
            failed = job.replace(status=JobStatus.FAILED, error=error, completed_at=stamp, last_updated_at=stamp)
            return self._finish(entry, failed, result_ttl, now)

    def finish_canceled(
        self, job_id: str, token: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        with self._lock:
            entry = self._held(job_id, token)
            if entry is None:
                return None
            return self._cancel_ends(entry, self._now(now), result_ttl, None)

    def release(self, job_id: str, token: str, *, now: float | None = None) -> bool:
        with self._lock:
            entry = self._held(job_id, token)
            if entry is None:
                return False
            now = self._now(now)
            if entry.job.cancel_requested:
                self._cancel_ends(entry, now, entry.cancel_ttl, None)
                return True
            self._record(entry, AttemptOutcome.RELEASED, now)
            self._make_ready(
                entry, entry.job.replace(status=JobStatus.QUEUED, last_updated_at=from_timestamp(now)), now
            )
            return True

    def cancel(
        self, job_id: str, *, result_ttl: float | None, now: float | None = None
    ) -> tuple[CancelResult, Job | None]:
        with self._lock:
            entry = self._jobs.get(job_id)
            if entry is None:
                return CancelResult.NOT_FOUND, None
            job = entry.job
            if job.status.is_final:
                return CancelResult.FINISHED, job
            now = self._now(now)
            stamp = from_timestamp(now)
            if job.status is not JobStatus.IN_PROGRESS:
                bucket = entry.queue.buckets[job.priority]
                entry.queue.index_of(job).remove(entry.key)
                entry.queue.drop_if_empty(bucket)
                canceled = job.replace(
                    status=JobStatus.CANCELED, completed_at=stamp, last_updated_at=stamp, retry_delay_until=None
                )
                return CancelResult.CANCELED, self._finish(entry, canceled, result_ttl, now)
            job = entry.job = job.replace(cancel_requested=True, last_updated_at=stamp)
            entry.cancel_ttl = result_ttl
            watchers = list(self._watchers.values())
        # Outside the lock: a watcher may call the store (a worker sets the attempt's event and may finish it).
        for watcher in watchers:
            try:
                watcher(job_id)
            except Exception:
                logger.exception("a cancel watcher failed for job %s", job_id)
        return CancelResult.REQUESTED, job

    def set_progress(
        self, job_id: str, token: str, fraction: float, message: str | None, *, now: float | None = None
    ) -> bool:
        with self._lock:
            entry = self._held(job_id, token)
            if entry is None:
                return False
            stamp = from_timestamp(self._now(now))
            assert stamp is not None
            progress = Progress(fraction=fraction, message=message, updated_at=stamp)
            entry.job = entry.job.replace(progress=progress, last_updated_at=stamp)
            return True

    # -- logs ----------------------------------------------------------------------------------------

    def append_logs(
        self, job_id: str, token: str, records: Sequence[LogRecord], *, max_lines: int, max_bytes: int
    ) -> bool:
        sized = [(record, len(record.message.encode("utf-8", "surrogatepass"))) for record in records]
        with self._lock:
            entry = self._held(job_id, token)
            if entry is None:
                return False
            lines = entry.logs
            if lines is None:
                lines = entry.logs = deque()
            lines.extend(sized)
            entry.log_bytes += sum(size for _, size in sized)
            while lines and (len(lines) > max_lines or entry.log_bytes > max_bytes):
                entry.log_bytes -= lines.popleft()[1]
            return True

"""The in-memory store: for development, tests and single-process apps. Its operations, one per method.

A dict of jobs and, per queue, ordered indexes (:mod:`.entries`) under one lock (:mod:`.state`): claims take the
first due job of the highest priority in O(log n), cancels take a job out of the middle, and the
monitoring lists page through the same indexes. Idle workers wait on conditions of that lock and are
woken the moment a job of their queues is due. Jobs live only as long as the process: under several
gunicorn workers each process has its own store, so use Redis there.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
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
from ..base import (
    LEASE_EXPIRED_CODE,
    LEASE_EXPIRED_MESSAGE,
    CancelResult,
    LeaseState,
    PendingLimitReached,
    Store,
)
from .entries import Bucket, Entry, QueueState, zero_counts
from .monitoring import MemoryMonitoring
from .state import Waiter

logger = logging.getLogger(__package__)

_LEASE_EXPIRED_ERROR = JobError(code=LEASE_EXPIRED_CODE, message=LEASE_EXPIRED_MESSAGE)


class MemoryStore(MemoryMonitoring, Store):
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
        result = json.loads(result_json)
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

    def watch_cancels(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """See :meth:`Store.watch_cancels <flask_asyncendpoints.stores.base.Store.watch_cancels>`.

        The memory store calls ``callback`` in the thread that asked for the cancel, right after
        the request is stored and outside the store's lock.
        """
        with self._lock:
            watcher_id = next(self._watcher_ids)
            self._watchers[watcher_id] = callback

        def stop() -> None:
            with self._lock:
                self._watchers.pop(watcher_id, None)

        return stop

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

    def recover(self, *, result_ttl: float | None, limit: int = 100, now: float | None = None) -> list[Job]:
        recovered: list[Job] = []
        with self._lock:
            now = self._now(now)
            expired: list[Entry] = []
            for state in self._queues.values():
                for key in state.running.after(None):
                    if len(expired) >= limit:
                        break
                    entry = self._jobs[key[2]]
                    if entry.lease_until < now:
                        expired.append(entry)
            stamp = from_timestamp(now)
            for entry in expired:
                job = entry.job
                if job.cancel_requested:
                    recovered.append(self._cancel_ends(entry, now, result_ttl, _LEASE_EXPIRED_ERROR))
                    continue
                self._record(entry, AttemptOutcome.LEASE_EXPIRED, now, _LEASE_EXPIRED_ERROR)
                if job.retry_count < job.max_retries:
                    job = job.replace(status=JobStatus.QUEUED, retry_count=job.retry_count + 1, last_updated_at=stamp)
                    self._make_ready(entry, job, now)
                else:
                    job = job.replace(
                        status=JobStatus.FAILED, error=_LEASE_EXPIRED_ERROR, completed_at=stamp, last_updated_at=stamp
                    )
                    self._finish(entry, job, result_ttl, now)
                recovered.append(job)
        return recovered

    # -- history and logs ----------------------------------------------------------------------------

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

    # -- recurring jobs ------------------------------------------------------------------------------

    def claim_occurrence(self, schedule: str, at: float, *, now: float | None = None) -> bool:
        with self._lock:
            last = self._occurrences.get(schedule)
            if last is not None and at <= last:
                return False
            self._occurrences[schedule] = at
            return True

    def occurrences(self) -> Mapping[str, float]:
        with self._lock:
            return dict(self._occurrences)

    # -- upkeep and operators ------------------------------------------------------------------------

    def purge(self, *, limit: int = 1000, now: float | None = None) -> int:
        purged = 0
        with self._lock:
            now = self._now(now)
            while self._expiring and self._expiring[0][0] <= now and purged < limit:
                when, job_id = heapq.heappop(self._expiring)
                if self._expires(job_id, when):
                    self._remove(self._jobs[job_id])
                    purged += 1
        return purged

    def requeue(self, job_id: str, *, now: float | None = None) -> Job | None:
        with self._lock:
            entry = self._jobs.get(job_id)
            if entry is None or entry.job.status is not JobStatus.FAILED:
                return None
            now = self._now(now)
            entry.queue.finished[JobStatus.FAILED].remove(entry.key)
            del self._finished_order[job_id]
            entry.expires_at = None
            self._pending += 1
            job = entry.job.replace(
                status=JobStatus.QUEUED,
                retry_count=0,
                completed_at=None,
                retry_delay_until=None,
                progress=None,
                cancel_requested=False,
                last_updated_at=from_timestamp(now),
            )
            self._make_ready(entry, job, now)
            return job

    def delete(self, job_id: str, *, now: float | None = None) -> bool:
        with self._lock:
            entry = self._jobs.get(job_id)
            if entry is None or not entry.job.status.is_final:
                return False
            self._remove(entry)
            return True

    def purge_finished(self, older_than: float, *, now: float | None = None) -> int:
        with self._lock:
            cutoff = self._now(now) - older_than
            old = [
                entry
                for entry in (self._jobs[job_id] for job_id in self._finished_order)
                if entry.job.completed_at is not None and entry.job.completed_at.timestamp() <= cutoff
            ]
            for entry in old:
                self._remove(entry)
            return len(old)

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

    def wait_for_work(self, timeout: float, *, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            waiter: Waiter | None = None
            try:
                while True:
                    if self._woken or (waiter is not None and waiter.ready):
                        self._woken = False
                        return
                    wait = deadline - time.monotonic()
                    for name in queues:
                        state = self._queues.get(name)
                        if state is None:
                            continue
                        if state.counts[JobStatus.QUEUED]:
                            return
                        due = state.earliest_scheduled()
                        if due is not None:
                            wait = min(wait, due - self._clock())
                    if wait <= 0:
                        return
                    if waiter is None:
                        waiter = Waiter(threading.Condition(self._lock), tuple(queues))
                    for name in queues:
                        self._waiters.setdefault(name, {})[waiter] = None
                    waiter.cond.wait(wait)
            finally:
                if waiter is not None:
                    self._forget_waiter(waiter)

    def wait_for_finish(self, job_id: str, timeout: float) -> Job | None:
        deadline = time.monotonic() + timeout
        with self._finished:
            while True:
                entry = self._jobs.get(job_id)
                remaining = deadline - time.monotonic()
                if entry is None or entry.job.status.is_final or remaining <= 0:
                    return entry.job if entry is not None else None
                self._finished.wait(remaining)

    def wake(self) -> None:
        with self._lock:
            self._woken = True
            for waiters in self._waiters.values():
                for waiter in list(waiters):
                    waiter.ready = True
                    waiter.cond.notify()

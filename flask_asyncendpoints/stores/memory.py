"""The in-memory store: for development, tests and single-process apps.

A dict of jobs, a deque of ready job ids and two heaps (scheduled retries by due time, finished jobs
by expiry), all under one lock. A condition on that lock wakes an idle worker the moment a job is
created. Jobs live only as long as the process: under several gunicorn workers each process has
its own store, so use Redis there.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..jobs import DEFAULT_QUEUE, ClaimedJob, Job, JobError, JobPayload, JobStatus, Progress, from_timestamp
from .base import (
    DEFAULT_HISTORY_LIMIT,
    LEASE_EXPIRED_CODE,
    LEASE_EXPIRED_MESSAGE,
    CancelResult,
    LeaseState,
    PendingLimitReached,
    Store,
)


@dataclass
class _Entry:
    job: Job
    #: The lease token of the running attempt ("" when not running).
    token: str = ""
    lease_until: float = 0.0
    #: When purge may delete the finished job; matched against the expiry heap's entries, so an
    #: entry left behind by an earlier finish (before a requeue) never deletes the job early.
    expires_at: float | None = None


class MemoryStore(Store):
    """Jobs in this process's memory.

    :param clock: returns the current time in epoch seconds; tests inject a fake one.
    :param history_limit: how many attempts each job's history keeps.
    """

    def __init__(self, clock: Callable[[], float] = time.time, *, history_limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        self._clock = clock
        self.history_limit = history_limit
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._finished = threading.Condition(self._lock)
        self._jobs: dict[str, _Entry] = {}
        #: (due, job id) of jobs due now, in due order; scheduled retries wait in the heap until due.
        self._ready: deque[tuple[float, str]] = deque()
        self._scheduled: list[tuple[float, int, str]] = []
        self._expiring: list[tuple[float, str]] = []
        self._running: dict[str, float] = {}
        self._counts: Counter[JobStatus] = Counter()
        self._seq = 0
        #: Attempt tokens: unique within this store, which is all a lease needs.
        self._tokens = itertools.count(1)
        #: A wake() that found no waiter is kept for the next wait, so it is never lost.
        self._woken = False

    def __repr__(self) -> str:
        return f"<MemoryStore: {len(self._jobs)} jobs in this process>"

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _set(self, entry: _Entry, job: Job) -> None:
        self._counts[entry.job.status] -= 1
        self._counts[job.status] += 1
        entry.job = job

    def _held(self, job_id: str, token: str) -> _Entry | None:
        entry = self._jobs.get(job_id)
        if entry is None or not token or entry.token != token or entry.job.status is not JobStatus.IN_PROGRESS:
            return None
        return entry

    def _end_attempt(self, entry: _Entry) -> None:
        entry.token = ""
        self._running.pop(entry.job.id, None)

    def _finish(self, entry: _Entry, job: Job, result_ttl: float | None, now: float) -> Job:
        self._end_attempt(entry)
        self._set(entry, job)
        if result_ttl is not None:
            entry.expires_at = now + result_ttl
            heapq.heappush(self._expiring, (entry.expires_at, job.id))
        self._finished.notify_all()
        return job

    def _schedule(self, entry: _Entry, job: Job, due: float) -> None:
        self._set(entry, job)
        self._seq += 1
        heapq.heappush(self._scheduled, (due, self._seq, job.id))

    def _enqueue(self, entry: _Entry, job: Job, now: float) -> None:
        self._set(entry, job)
        self._ready.append((now, job.id))
        self._work.notify()

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
        if queue != DEFAULT_QUEUE or priority or due is not None:
            raise NotImplementedError("named queues, priorities and delayed jobs")
        with self._lock:
            existing = self._jobs.get(job_id)
            if existing is not None:
                return existing.job, False
            if max_pending is not None and self._pending() >= max_pending:
                raise PendingLimitReached(f"{max_pending} jobs are already pending")
            now = self._now(now)
            stamp = from_timestamp(now)
            assert stamp is not None
            job = Job.new(job_id, name, max_retries=max_retries, payload=payload, created_at=stamp)
            self._jobs[job_id] = _Entry(job)
            self._counts[JobStatus.QUEUED] += 1
            self._ready.append((now, job_id))
            self._work.notify()
            return job, True

    def _pending(self) -> int:
        return self._counts[JobStatus.QUEUED] + self._counts[JobStatus.SCHEDULED] + self._counts[JobStatus.IN_PROGRESS]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            entry = self._jobs.get(job_id)
            return entry.job if entry is not None else None

    def _next_due(self, now: float) -> str | None:
        """Pop the id of the job due first (ready or scheduled) if any is due by ``now``."""
        scheduled, ready = self._scheduled, self._ready
        if scheduled and scheduled[0][0] <= now and (not ready or scheduled[0][0] < ready[0][0]):
            return heapq.heappop(scheduled)[2]
        if ready:
            return ready.popleft()[1]
        return None

    def claim(
        self,
        limit: int,
        lease_seconds: float,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        worker_id: str = "",
        now: float | None = None,
    ) -> list[ClaimedJob]:
        if DEFAULT_QUEUE not in queues:
            return []
        claimed: list[ClaimedJob] = []
        with self._lock:
            now = self._now(now)
            stamp = from_timestamp(now)
            while len(claimed) < limit:
                job_id = self._next_due(now)
                if job_id is None:
                    break
                entry = self._jobs.get(job_id)
                # A canceled or purged job leaves its queue entry behind; skip it here.
                if entry is None or entry.job.status not in (JobStatus.QUEUED, JobStatus.SCHEDULED):
                    continue
                job = entry.job.replace(
                    status=JobStatus.IN_PROGRESS,
                    started_at=stamp,
                    last_updated_at=stamp,
                    retry_delay_until=None,
                    progress=None,
                    cancel_requested=False,
                )
                self._set(entry, job)
                entry.token = f"{next(self._tokens):x}"
                entry.lease_until = now + lease_seconds
                self._running[job_id] = entry.lease_until
                claimed.append(ClaimedJob(job, entry.token))
        return claimed

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
                self._running[job_id] = entry.lease_until
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
            stamp = from_timestamp(now)
            job = entry.job
            if retry_delay is not None and job.retry_count < job.max_retries:
                due = now + retry_delay
                self._end_attempt(entry)
                scheduled = job.replace(
                    status=JobStatus.SCHEDULED,
                    retry_count=job.retry_count + 1,
                    error=error,
                    retry_delay_until=from_timestamp(due),
                    last_updated_at=stamp,
                )
                self._schedule(entry, scheduled, due)
                return scheduled
            failed = job.replace(status=JobStatus.FAILED, error=error, completed_at=stamp, last_updated_at=stamp)
            return self._finish(entry, failed, result_ttl, now)

    def finish_canceled(
        self, job_id: str, token: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        with self._lock:
            entry = self._held(job_id, token)
            if entry is None:
                return None
            now = self._now(now)
            stamp = from_timestamp(now)
            job = entry.job.replace(status=JobStatus.CANCELED, completed_at=stamp, last_updated_at=stamp)
            return self._finish(entry, job, result_ttl, now)

    def release(self, job_id: str, token: str, *, now: float | None = None) -> bool:
        with self._lock:
            entry = self._held(job_id, token)
            if entry is None:
                return False
            self._end_attempt(entry)
            now = self._now(now)
            stamp = from_timestamp(now)
            self._enqueue(entry, entry.job.replace(status=JobStatus.QUEUED, last_updated_at=stamp), now)
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
            if job.status is JobStatus.IN_PROGRESS:
                job = job.replace(cancel_requested=True, last_updated_at=stamp)
                entry.job = job
                return CancelResult.REQUESTED, job
            canceled = job.replace(
                status=JobStatus.CANCELED, completed_at=stamp, last_updated_at=stamp, retry_delay_until=None
            )
            return CancelResult.CANCELED, self._finish(entry, canceled, result_ttl, now)

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
            expired = [job_id for job_id, until in self._running.items() if until < now][:limit]
            stamp = from_timestamp(now)
            for job_id in expired:
                entry = self._jobs[job_id]
                self._end_attempt(entry)
                job = entry.job
                if job.retry_count < job.max_retries:
                    job = job.replace(status=JobStatus.QUEUED, retry_count=job.retry_count + 1, last_updated_at=stamp)
                    self._enqueue(entry, job, now)
                else:
                    error = JobError(code=LEASE_EXPIRED_CODE, message=LEASE_EXPIRED_MESSAGE)
                    job = job.replace(status=JobStatus.FAILED, error=error, completed_at=stamp, last_updated_at=stamp)
                    self._finish(entry, job, result_ttl, now)
                recovered.append(job)
        return recovered

    def purge(self, *, limit: int = 1000, now: float | None = None) -> int:
        purged = 0
        with self._lock:
            now = self._now(now)
            while self._expiring and self._expiring[0][0] <= now and purged < limit:
                when, job_id = heapq.heappop(self._expiring)
                entry = self._jobs.get(job_id)
                if entry is not None and entry.job.status.is_final and entry.expires_at == when:
                    del self._jobs[job_id]
                    self._counts[entry.job.status] -= 1
                    purged += 1
        return purged

    def requeue(self, job_id: str, *, now: float | None = None) -> Job | None:
        with self._lock:
            entry = self._jobs.get(job_id)
            if entry is None or entry.job.status is not JobStatus.FAILED:
                return None
            now = self._now(now)
            job = entry.job.replace(
                status=JobStatus.QUEUED,
                retry_count=0,
                completed_at=None,
                retry_delay_until=None,
                progress=None,
                cancel_requested=False,
                last_updated_at=from_timestamp(now),
            )
            entry.expires_at = None
            self._enqueue(entry, job, now)
            return job

    def purge_finished(self, older_than: float, *, now: float | None = None) -> int:
        with self._lock:
            cutoff = self._now(now) - older_than
            old = [
                job_id
                for job_id, entry in self._jobs.items()
                if entry.job.status.is_final
                and entry.job.completed_at is not None
                and entry.job.completed_at.timestamp() <= cutoff
            ]
            for job_id in old:
                self._counts[self._jobs.pop(job_id).job.status] -= 1
            return len(old)

    def counts(self, *, queue: str | None = None) -> Mapping[JobStatus, int]:
        if queue not in (None, DEFAULT_QUEUE):
            return dict.fromkeys(JobStatus, 0)
        with self._lock:
            return {status: self._counts[status] for status in JobStatus}

    def wait_for_work(self, timeout: float, *, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> None:
        with self._work:
            if self._ready or self._woken:
                self._woken = False
                return
            if self._scheduled:
                timeout = max(0.0, min(timeout, self._scheduled[0][0] - self._clock()))
            self._work.wait(timeout)
            self._woken = False

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
        with self._work:
            self._woken = True
            self._work.notify_all()

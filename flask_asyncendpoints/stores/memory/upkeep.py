"""The memory store's upkeep and operator calls: recovering expired leases, purging, requeue and
delete, and the occurrences of recurring jobs.

Each takes the store's lock once and changes jobs only through the bookkeeping of :mod:`.state`.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from ...jobs import AttemptOutcome, Job, JobError, JobStatus, from_timestamp
from ..base import LEASE_EXPIRED_CODE, LEASE_EXPIRED_MESSAGE
from .entries import Entry
from .state import MemoryState

#: Written on jobs whose lease ran out with no retries left: the same structured error as every store.
_LEASE_EXPIRED_ERROR = JobError(code=LEASE_EXPIRED_CODE, message=LEASE_EXPIRED_MESSAGE)


class MemoryUpkeep(MemoryState):
    """Upkeep, operator calls and recurring occurrences: a part of :class:`~.store.MemoryStore`."""

    # -- upkeep --------------------------------------------------------------------------------------

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

    # -- operators -----------------------------------------------------------------------------------

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
            job = entry.job.requeued(from_timestamp(now))
            self._make_ready(entry, job, now)
            return job

    def delete(self, job_id: str, *, now: float | None = None) -> bool:
        with self._lock:
            entry = self._jobs.get(job_id)
            if entry is None or not entry.job.status.is_final:
                return False
            self._remove(entry)
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

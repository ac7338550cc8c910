"""The transactions that end attempts and jobs: complete, fail, cancel, release, recover, requeue,
delete and purge, and the history and log each job keeps.

Every ending reads the job's row with a lock (``FOR UPDATE``; SQLite's write transaction locks it all),
checks the attempt's token, applies the cancel rule, appends the attempt to the history, and writes
the row back with its index columns, its counters and the throughput buckets, in one transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update

from ...jobs import FINAL_STATUSES, AttemptOutcome, AttemptRecord, Job, JobError, JobStatus, LogRecord
from ..base import LEASE_EXPIRED_CODE, LEASE_EXPIRED_MESSAGE, CancelResult
from . import codec, rows
from .codec import job_from_row
from .lifecycle import Lifecycle
from .rows import Tally
from .txn import Tx

_LEASE_EXPIRED = JobError(code=LEASE_EXPIRED_CODE, message=LEASE_EXPIRED_MESSAGE)

#: Columns every ending writes (one executemany statement for a batch of them).
_WRITTEN = (
    "status",
    "retry_count",
    "last_updated_at",
    "completed_at",
    "retry_delay_until",
    "result",
    "error",
    "token",
    "attempts",
    "ready_queue",
    "sort_rank",
    "sort_time",
    "deadline",
)


#: Job ids one notification announces at most: a payload must stay under 8,000 bytes.
NOTIFY_BATCH = 200


class End(enum.Enum):
    """How an attempt ends, before the cancel rule."""

    COMPLETE = "complete"
    FAIL = "fail"
    CANCELED = "canceled"
    RELEASE = "release"
    EXPIRED = "expired"


class Endings:
    """Ending attempts and jobs.

    :param lifecycle: the store's creating and claiming half (its tables and columns).
    :param history_limit: how many attempts each job's history keeps.
    :param finished_channel: PostgreSQL's channel for finished jobs (``None`` elsewhere).
    """

    def __init__(self, lifecycle: Lifecycle, history_limit: int, finished_channel: str | None = None) -> None:
        self.finished_channel = finished_channel
        self.lifecycle = lifecycle
        self.tables = lifecycle.tables
        self.history_limit = history_limit
        c = self.tables.jobs.c
        self._locked_columns = [c.seq, c.token, c.worker_id, c.cancel_ttl, c.attempts, *lifecycle.job_columns]
        self._lockers: dict[tuple[bool, bool, bool], Any] = {}
        self._write = (
            update(self.tables.jobs)
            .where(c.seq == bindparam("b_seq"))
            .values({name: bindparam(f"b_{name}") for name in _WRITTEN})
        )

    def _locked(
        self, tx: Tx, job_ids: Sequence[str], *, skip_locked: bool = False, announce: bool = False
    ) -> dict[str, Any]:
        """The rows of these jobs, locked, with the server's clock read along when it is not known yet.

        With ``announce`` (PostgreSQL, a batch of completions), the same statement also sends the
        "finished" notification for every job in it, saving the round trip that would send it at the
        end; one that did not finish after all (its lease was lost) costs a long-poll one more look.
        """
        with_clock = not tx.knows_now
        notify = announce and self.finished_channel is not None and len(job_ids) <= NOTIFY_BATCH
        key = (with_clock, skip_locked, notify)
        query = self._lockers.get(key)
        if query is None:  # built once per kind: building a statement costs more than running it
            c = self.tables.jobs.c
            columns: list[Any] = list(self._locked_columns)
            if with_clock:
                columns.append(tx.dialect.clock_column())
            if notify:
                columns.append(func.pg_notify(bindparam("channel"), bindparam("announced")).label("notified"))
            query = select(*columns).where(c.id.in_(bindparam("ids", expanding=True)))
            query = self._lockers[key] = tx.dialect.lock(query, skip_locked=skip_locked)
        params: dict[str, Any] = {"ids": list(job_ids)}
        if notify:
            params.update(channel=self.finished_channel, announced=",".join(job_ids))
        found = {row["id"]: row for row in tx.execute(query, params).mappings()}
        if with_clock and found:
            tx.learn_now(next(iter(found.values()))["db_now"])
        if notify and found:
            tx.finished_announced = True
        return found

    @staticmethod
    def _held(row: Any, token: str) -> bool:
        return row is not None and bool(token) and row["token"] == token and row["status"] == "InProgress"

    # -- ending attempts -----------------------------------------------------------------------------

    def end(
        self,
        tx: Tx,
        items: Sequence[tuple[str, str, End, Any]],
        *,
        result_ttl: float | None,
        skip_locked: bool = False,
    ) -> list[Job | None]:
        """End attempts: ``(job_id, token, how, detail)`` each, where ``detail`` is the result as JSON
        text and as data (complete), ``(error, retry_delay)`` (fail) or ``None``. ``None`` for each attempt whose
        token does not hold its job's lease."""
        announce = all(how is End.COMPLETE for _, _, how, _ in items)
        locked = self._locked(tx, [job_id for job_id, *_ in items], skip_locked=skip_locked, announce=announce)
        tally = Tally()
        writes: list[dict[str, Any]] = []
        answers: list[Job | None] = []
        for job_id, token, how, detail in items:
            row = locked.get(job_id)
            if row is None or not self._held(row, token):
                answers.append(None)
                continue
            values, job, record = self._ending(tx, row, how, detail, result_ttl)
            values["attempts"] = codec.append_attempt(row["attempts"], record, self.history_limit)
            writes.append({"b_seq": row["seq"], **{f"b_{name}": values[name] for name in _WRITTEN}})
            tally.move(job.queue, job.name, JobStatus.IN_PROGRESS, job.status)
            self._announce(tx, job)
            answers.append(job)
            locked[job_id] = None  # a second ending of the same attempt in one batch finds it gone
        if writes:
            tx.execute(self._write, writes)
            tally.write(tx, self.tables)
        return answers

    def _ending(
        self, tx: Tx, row: Any, how: End, detail: Any, result_ttl: float | None
    ) -> tuple[dict[str, Any], Job, AttemptRecord]:
        now = tx.now
        at = codec.stamp(now)
        before = job_from_row(row)
        error: JobError | None = detail[0] if how is End.FAIL else (_LEASE_EXPIRED if how is End.EXPIRED else None)
        values: dict[str, Any] = {
            "retry_count": before.retry_count,
            "last_updated_at": now,
            "completed_at": None,
            "retry_delay_until": None,
            "result": None,
            "error": row["error"],
            "token": None,
        }
        status, outcome, ttl = self._outcome(before, how, detail, result_ttl, row["cancel_ttl"])
        if status is JobStatus.COMPLETED:
            values.update(result=detail[0], error=None)
        elif status is JobStatus.SCHEDULED:
            due = now + rows.check_time(float(detail[1]), "retry_delay")
            values.update(retry_count=before.retry_count + 1, retry_delay_until=due, error=codec.encode_error(error))
            values.update(rows.scheduled(before.queue, due, now))
        elif status is JobStatus.FAILED:
            values["error"] = codec.encode_error(error)
        elif status is JobStatus.QUEUED and how is End.EXPIRED:
            values["retry_count"] = before.retry_count + 1
        if status is JobStatus.QUEUED:
            values.update(rows.queued(before.queue, rows.rank_of(before.priority), now))
        elif status.is_final:
            values["completed_at"] = now
            values.update(rows.finished(now, ttl))
        values["status"] = status.value
        job = before.replace(
            status=status,
            retry_count=values["retry_count"],
            last_updated_at=at,
            completed_at=at if status.is_final else None,
            retry_delay_until=codec.optional_stamp(values["retry_delay_until"]),
            result=detail[1] if status is JobStatus.COMPLETED else None,
            error=codec.decode_error(values["error"]),
        )
        record = AttemptRecord(
            number=before.retry_count + 1,
            started_at=codec.stamp(row["started_at"]) if row["started_at"] is not None else at,
            finished_at=at,
            worker_id=row["worker_id"] or "",
            outcome=outcome,
            error_code=error.code if error is not None else None,
            error_message=error.message if error is not None else None,
        )
        return values, job, record

    @staticmethod
    def _outcome(
        before: Job, how: End, detail: Any, result_ttl: float | None, cancel_ttl: float | None
    ) -> tuple[JobStatus, AttemptOutcome, float | None]:
        """The job's new status, the attempt's outcome, and the finished job's time to live."""
        if before.cancel_requested:
            # The cancel rule. A release has no result_ttl of its own: the cancel's applies.
            return JobStatus.CANCELED, AttemptOutcome.CANCELED, cancel_ttl if how is End.RELEASE else result_ttl
        if how is End.COMPLETE:
            return JobStatus.COMPLETED, AttemptOutcome.COMPLETED, result_ttl
        if how is End.CANCELED:
            return JobStatus.CANCELED, AttemptOutcome.CANCELED, result_ttl
        if how is End.RELEASE:
            return JobStatus.QUEUED, AttemptOutcome.RELEASED, None
        retries_left = before.retry_count < before.max_retries
        if how is End.EXPIRED:
            return (JobStatus.QUEUED if retries_left else JobStatus.FAILED), AttemptOutcome.LEASE_EXPIRED, result_ttl
        if retries_left and detail[1] is not None:
            return JobStatus.SCHEDULED, AttemptOutcome.RETRYING, None
        return JobStatus.FAILED, AttemptOutcome.FAILED, result_ttl

    def _announce(self, tx: Tx, job: Job) -> None:
        if job.status.is_final:
            tx.finished.append(job.id)
        elif job.status is JobStatus.QUEUED:
            tx.woken.add(job.queue)

    def recover(self, tx: Tx, result_ttl: float | None, limit: int) -> list[Job]:
        c = self.tables.jobs.c
        expired = (
            select(c.id, c.token)
            .where(c.status == JobStatus.IN_PROGRESS.value, c.deadline < tx.now)
            .order_by(c.deadline)
            .limit(limit)
        )
        expired = tx.dialect.walk(expired, self.tables.jobs, self.tables.deadline_index)
        found = list(tx.execute(tx.dialect.lock(expired, skip_locked=True)))
        ended = self.end(tx, [(job_id, token, End.EXPIRED, None) for job_id, token in found], result_ttl=result_ttl)
        return [job for job in ended if job is not None]

    # -- operators' and clients' changes -------------------------------------------------------------

    def cancel(self, tx: Tx, job_id: str, result_ttl: float | None) -> tuple[CancelResult, Job | None]:
        row = self._locked(tx, [job_id]).get(job_id)
        if row is None:
            return CancelResult.NOT_FOUND, None
        job = job_from_row(row)
        if job.status.is_final:
            return CancelResult.FINISHED, job
        now = tx.now
        at = codec.stamp(now)
        c = self.tables.jobs.c
        if job.status is JobStatus.IN_PROGRESS:
            tx.execute(
                update(self.tables.jobs)
                .where(c.seq == row["seq"])
                .values(cancel_requested=True, cancel_ttl=result_ttl, last_updated_at=now)
            )
            tx.canceled.append(job_id)
            return CancelResult.REQUESTED, job.replace(cancel_requested=True, last_updated_at=at)
        tx.execute(
            update(self.tables.jobs)
            .where(c.seq == row["seq"])
            .values(
                status=JobStatus.CANCELED.value,
                completed_at=now,
                last_updated_at=now,
                retry_delay_until=None,
                **rows.finished(now, result_ttl),
            )
        )
        tally = Tally()
        tally.move(job.queue, job.name, job.status, JobStatus.CANCELED)
        tally.write(tx, self.tables)
        canceled = job.replace(status=JobStatus.CANCELED, completed_at=at, last_updated_at=at, retry_delay_until=None)
        self._announce(tx, canceled)
        return CancelResult.CANCELED, canceled

    def requeue(self, tx: Tx, job_id: str) -> Job | None:
        row = self._locked(tx, [job_id]).get(job_id)
        if row is None or row["status"] != JobStatus.FAILED.value:
            return None
        job = job_from_row(row)
        now = tx.now
        at = codec.stamp(now)
        tx.execute(
            update(self.tables.jobs)
            .where(self.tables.jobs.c.seq == row["seq"])
            .values(
                status=JobStatus.QUEUED.value,
                retry_count=0,
                completed_at=None,
                retry_delay_until=None,
                progress=None,
                cancel_requested=False,
                cancel_ttl=None,
                last_updated_at=now,
                **rows.queued(job.queue, rows.rank_of(job.priority), now),
            )
        )
        tally = Tally()
        tally.move(job.queue, job.name, JobStatus.FAILED, JobStatus.QUEUED)
        tally.write(tx, self.tables)
        queued = job.requeued(at)
        self._announce(tx, queued)
        return queued

    def delete(self, tx: Tx, job_id: str) -> bool:
        row = self._locked(tx, [job_id]).get(job_id)
        if row is None or JobStatus(row["status"]) not in FINAL_STATUSES:
            return False
        self._delete(tx, [row])
        return True

    def _delete(self, tx: Tx, found: Sequence[Any]) -> None:
        jobs = self.tables.jobs
        tx.execute(delete(jobs).where(jobs.c.seq.in_([row["seq"] for row in found])))
        tally = Tally()
        for row in found:
            tally.move(row["queue"], row["name"], JobStatus(row["status"]), None)
        tally.write(tx, self.tables)

    def purge(self, tx: Tx, limit: int) -> int:
        """Delete finished jobs whose purge time has come, and expired throughput buckets and workers."""
        c = self.tables.jobs.c
        now = tx.now
        expired = (
            select(c.seq, c.queue, c.name, c.status)
            .where(c.status.in_(rows.statuses(FINAL_STATUSES)), c.deadline <= now)
            .limit(limit)
        )
        expired = tx.dialect.walk(expired, self.tables.jobs, self.tables.deadline_index)
        found = list(tx.execute(tx.dialect.lock(expired, skip_locked=True)).mappings())
        if found:
            self._delete(tx, found)
        throughput = self.tables.throughput
        for width, keep in rows.KEEP.items():
            tx.execute(delete(throughput).where(throughput.c.width == width, throughput.c.start < now - keep))
        workers = self.tables.workers
        tx.execute(delete(workers).where(workers.c.expires_at < now - rows.KEEP[rows.HOUR]))
        return len(found)

    def purge_finished(self, tx: Tx, older_than: float, limit: int) -> int:
        """Delete up to ``limit`` jobs of those finished more than ``older_than`` seconds ago."""
        c = self.tables.jobs.c
        cutoff = tx.now - older_than
        found: list[Any] = []
        for status in FINAL_STATUSES:
            old = (
                select(c.seq, c.queue, c.name, c.status)
                .where(c.status == status.value, c.sort_rank == 0, c.sort_time >= -cutoff)
                .order_by(c.sort_rank, c.sort_time, c.seq)
                .limit(limit - len(found))
            )
            old = tx.dialect.walk(old, self.tables.jobs, self.tables.list_index)
            found.extend(tx.execute(tx.dialect.lock(old, skip_locked=True)).mappings())
            if len(found) >= limit:
                break
        if found:
            self._delete(tx, found)
        return len(found)

    # -- history and logs ----------------------------------------------------------------------------

    def append_logs(
        self, tx: Tx, job_id: str, token: str, records: Sequence[LogRecord], max_lines: int, max_bytes: int
    ) -> bool:
        c = self.tables.jobs.c
        query = select(c.seq, c.token, c.status, c.logs).where(c.id == job_id)
        row = tx.execute(tx.dialect.lock(query)).mappings().first()
        if not self._held(row, token):
            return False
        assert row is not None
        logs = codec.append_logs(row["logs"], records, max_lines, max_bytes)
        tx.execute(update(self.tables.jobs).where(c.seq == row["seq"]).values(logs=logs))
        return True

"""The transactions that create jobs and hand them to workers: create, claim, renew, progress.

Each public method runs inside one :class:`~.txn.Tx` and returns what the store answers. How
attempts end lives in :mod:`.endings`.

A claim takes from each queue's ready set in claim order with ``FOR UPDATE SKIP LOCKED``:
concurrent claims pass each other by instead of queueing, and each row goes to one of them. Its first
take also reads the next scheduled due time; when a ``Scheduled`` job has come due, the claim moves
such jobs into the ready set first (at most :data:`PROMOTE_BATCH`, skipping rows other transactions
hold) and takes again, so a due retry lines up by its due time. Every step walks an index from its
start, so a claim costs the same with a thousand jobs queued or a million.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, Select, bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError

from ...jobs import PENDING_STATUSES, ClaimedJob, Job, JobPayload, JobStatus
from .. import jsontext
from ..base import LeaseState, NewJob
from . import codec, rows
from .codec import job_columns, job_from_row
from .dialects import INSERT_CHUNK, Dialect
from .engines import POSTGRESQL
from .rows import Tally
from .schema import NAME_LENGTH, Tables
from .txn import Retry, Tx

#: Due ``Scheduled`` jobs one claim moves into the ready set at most; the next claim takes the rest.
PROMOTE_BATCH = 500


def _check_name(value: str, what: str, longest: int = NAME_LENGTH) -> str:
    if not isinstance(value, str) or not value or len(value) > longest:
        raise ValueError(f"a {what} must be text of 1 to {longest} characters, not {value!r}")
    return value


class Lifecycle:
    """Creating, claiming and renewing jobs.

    :param tables: the store's tables.
    :param dialect: the SQL of the database family.
    """

    def __init__(self, tables: Tables, dialect: Dialect) -> None:
        self.tables = tables
        self.dialect = dialect
        self._create_statement: Any = None
        self._statements: dict[str, Any] = {}
        self.job_columns = job_columns(tables)
        #: Queues known to have their row in the queues table (rows are never deleted).
        self.known_queues: set[str] = set()

    # -- creating ------------------------------------------------------------------------------------

    def new_row(self, new: NewJob, now: float) -> dict[str, Any]:
        """The row of a job about to be created."""
        due = now if new.due is None else rows.check_time(float(new.due), "due")
        status = JobStatus.QUEUED if due <= now else JobStatus.SCHEDULED
        rank = rows.rank_of(int(new.priority))
        place = rows.queued(new.queue, rank, now) if status is JobStatus.QUEUED else rows.scheduled(new.queue, due, now)
        return {
            "id": _check_name(new.id, "job id", 64),
            "name": _check_name(new.name, "job name"),
            "queue": _check_name(new.queue, "queue name"),
            "priority": int(new.priority),
            "rank": rank,
            "status": status.value,
            "retry_count": 0,
            "max_retries": int(new.max_retries),
            "created_at": now,
            "last_updated_at": now,
            "retry_delay_until": due if status is JobStatus.SCHEDULED else None,
            "cancel_requested": False,
            "payload": jsontext.encode_payload(new.payload),
            **place,
        }

    def _new_job(self, row: dict[str, Any], payload: JobPayload) -> Job:
        """The job just inserted as ``row``, ``payload`` being what its payload JSON was written from."""
        created = codec.stamp(row["created_at"])
        return Job.new(
            row["id"],
            row["name"],
            max_retries=row["max_retries"],
            # As it reads back: JSON turns tuples into lists, and so on.
            payload=jsontext.read_back(payload, row["payload"]),
            created_at=created,
            queue=row["queue"],
            priority=row["priority"],
            due_at=codec.optional_stamp(row["retry_delay_until"]),
        )

    def get(self, tx: Tx, job_id: str) -> Job | None:
        found = tx.execute(select(*self.job_columns).where(self.tables.jobs.c.id == job_id)).mappings().first()
        return None if found is None else job_from_row(found)

    def create(self, tx: Tx, new: NewJob, max_pending: int | None) -> tuple[Job, bool] | None:
        """Create one job; ``None`` when refused at ``max_pending``."""
        if max_pending is not None:
            existing = self.get(tx, new.id)
            if existing is not None:
                return existing, False
            if self._pending(tx, new.queue) >= max_pending:
                return None
        row = self.new_row(new, tx.now)
        if not tx.dialect.insert_new(tx.execute, self.tables.jobs, "id", row):
            existing = self.get(tx, new.id)
            if existing is None:  # deleted again in between: start over
                raise Retry()
            return existing, False
        self._created(tx, [row])
        return self._new_job(row, new.payload), True

    def create_many(self, tx: Tx, jobs: Sequence[NewJob], max_pending: int | None) -> list[tuple[Job, bool] | None]:
        """Create several jobs, judging ``max_pending`` for each in turn."""
        table = self.tables.jobs
        ids = list(dict.fromkeys(new.id for new in jobs))
        existing: dict[str, Job] = {}
        for start in range(0, len(ids), INSERT_CHUNK):
            query = select(*self.job_columns).where(table.c.id.in_(ids[start : start + INSERT_CHUNK]))
            existing.update((row["id"], job_from_row(row)) for row in tx.execute(query).mappings())
        pending: dict[str, int] = {}
        answers: list[tuple[Job, bool] | None] = []
        fresh: list[dict[str, Any]] = []
        now = tx.now
        for new in jobs:
            if new.id in existing:
                answers.append((existing[new.id], False))
                continue
            if max_pending is not None:
                if new.queue not in pending:
                    pending[new.queue] = self._pending(tx, new.queue)
                if pending[new.queue] >= max_pending:
                    answers.append(None)
                    continue
                pending[new.queue] += 1
            row = self.new_row(new, now)
            job = self._new_job(row, new.payload)
            existing[new.id] = job
            fresh.append(row)
            answers.append((job, True))
        if fresh:
            try:
                for start in range(0, len(fresh), INSERT_CHUNK):
                    tx.execute(table.insert(), fresh[start : start + INSERT_CHUNK])
            except IntegrityError:
                raise Retry() from None  # another transaction created one of these ids meanwhile
            self._created(tx, fresh)
        return answers

    def create_in_one_statement(self, tx: Tx, new: NewJob, channel: str) -> tuple[Job, bool] | None:
        """PostgreSQL: create a job due at once in a queue whose row exists, in one statement (the
        insert, its counter and the notification together), or ``None`` when the id exists.

        The path of most submits: one round trip where the general one takes six.
        """
        row = self.new_row(new, 0.0)
        now = tx.given_now
        params = {**row, "shard": tx.shard, "channel": channel, "now": now}
        created = tx.execute(self._one_statement_create(), params).scalar()
        if created is None:
            return None
        tx.woken.add(new.queue)
        tx.announced = True
        job = self._new_job({**row, "created_at": float(created), "retry_delay_until": None}, new.payload)
        return job, True

    def _one_statement_create(self) -> Any:
        if self._create_statement is None:
            jobs, counts = self.tables.jobs.name, self.tables.counts.name
            self._create_statement = text(
                f"""
                WITH clock AS (
                    SELECT COALESCE(CAST(:now AS DOUBLE PRECISION),
                                    CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)) AS t
                ), job AS (
                    INSERT INTO {jobs} (id, name, queue, priority, rank, status, retry_count, max_retries,
                        created_at, last_updated_at, cancel_requested, payload, ready_queue, sort_rank, sort_time)
                    SELECT :id, :name, :queue, :priority, :rank, :status, 0, :max_retries,
                        clock.t, clock.t, false, :payload, :queue, :rank, clock.t
                    FROM clock
                    ON CONFLICT (id) DO NOTHING
                    RETURNING queue, name, created_at
                ), counted AS (
                    INSERT INTO {counts} (queue, name, status, shard, n)
                    SELECT queue, name, :status, :shard, 1 FROM job
                    ON CONFLICT (queue, name, status, shard) DO UPDATE SET n = {counts}.n + excluded.n
                    RETURNING 1
                )
                SELECT job.created_at, pg_notify(:channel, job.queue) FROM job
                """
            )
        return self._create_statement

    def _created(self, tx: Tx, new_rows: list[dict[str, Any]]) -> None:
        tally = Tally()
        for row in new_rows:
            tally.move(row["queue"], row["name"], None, JobStatus(row["status"]))
            if row["ready_queue"] is not None:
                tx.woken.add(row["queue"])
        tally.write(tx, self.tables)
        self._ensure_queues(tx, {row["queue"] for row in new_rows})

    def _ensure_queues(self, tx: Tx, queues: set[str]) -> None:
        missing = sorted(queues - self.known_queues)
        if missing:
            tx.execute(tx.dialect.insert_missing(self.tables.queues), [{"name": name} for name in missing])
            # Known for good once committed (queue rows are never deleted).
            tx.on_commit(lambda: self.known_queues.update(missing))

    def _pending(self, tx: Tx, queue: str) -> int:
        """The queue's pending jobs, with the queue's row locked: two creates at the limit cannot both
        see the last free place."""
        self._ensure_queues(tx, {queue})
        queues = self.tables.queues
        tx.execute(tx.dialect.lock(select(queues.c.name).where(queues.c.name == queue)))
        counts = self.tables.counts
        query = select(func.coalesce(func.sum(counts.c.n), 0)).where(
            counts.c.queue == queue, counts.c.status.in_(rows.statuses(PENDING_STATUSES))
        )
        return int(tx.execute(query).scalar_one())

    # -- claiming ------------------------------------------------------------------------------------

    def _prepared(self) -> dict[str, Any]:
        """The claim's statements, built once (building a SQLAlchemy statement costs more than
        running a cached one): parameters are bound at each run."""
        if self._statements:
            return self._statements
        jobs, dialect = self.tables.jobs, self.dialect
        c = jobs.c
        next_due = (
            select(func.min(c.sort_time))
            .where(c.status == JobStatus.SCHEDULED.value, c.sort_rank == 0)
            .correlate(None)  # over the whole table, also inside the take below
            .scalar_subquery()
        )
        clock = dialect.clock_column()
        due = (
            select(c.seq)
            .where(c.status == JobStatus.SCHEDULED.value, c.sort_rank == 0, c.sort_time <= bindparam("now"))
            .order_by(c.sort_rank, c.sort_time, c.seq)
            .limit(PROMOTE_BATCH)
        )
        claimed = (
            update(jobs)
            .where(c.seq.in_(bindparam("seqs", expanding=True)))
            .values(
                status=JobStatus.IN_PROGRESS.value,
                started_at=bindparam("now"),
                last_updated_at=bindparam("now"),
                retry_delay_until=None,
                progress=None,
                cancel_requested=False,
                cancel_ttl=None,
                token=bindparam("token"),
                worker_id=bindparam("worker_id"),
                ready_queue=None,
                sort_rank=0,
                sort_time=bindparam("sort_time"),
                deadline=bindparam("lease_until"),
            )
        )
        self._statements.update(
            next_due=select(next_due),
            next_due_and_clock=None if clock is None else select(next_due, clock),
            due=dialect.lock(dialect.walk(due, jobs, self.tables.list_index), skip_locked=True),
            promote=update(jobs)
            .where(c.seq.in_(bindparam("seqs", expanding=True)))
            .values(ready_queue=c.queue, sort_rank=rows.PROMOTED),
            take=dialect.lock(self.claim_query(None, None), skip_locked=True),
            take_and_due=dialect.lock(
                self.claim_query(None, None).add_columns(next_due.label("next_due")), skip_locked=True
            ),
            take_and_probe=dialect.lock(
                self.claim_query(None, None).add_columns(
                    next_due.label("next_due"), *([] if clock is None else [clock])
                ),
                skip_locked=True,
            ),
            claimed=claimed,
        )
        return self._statements

    def promote(self, tx: Tx) -> None:
        """Move ``Scheduled`` jobs that have come due (in any queue) into the ready set.

        The first statement reads the server's clock and the next due time together: most claims
        find nothing to move, and pay one round trip for both.
        """
        prepared = self._prepared()
        with_clock = not tx.knows_now
        first = tx.execute(prepared["next_due_and_clock" if with_clock else "next_due"]).one()
        if with_clock:
            tx.learn_now(first[1])
        if first[0] is None or first[0] > tx.now:
            return
        seqs = list(tx.execute(prepared["due"], {"now": tx.now}).scalars())
        if seqs:
            tx.execute(prepared["promote"], {"seqs": seqs})

    def claim_query(self, queue: str | None, limit: int | None) -> Select[Any]:
        """The first ``limit`` jobs of the queue's ready set in claim order (without the lock clause):
        a walk of the ready index from its start. ``None`` leaves the queue, or the limit, as the
        bound parameter ``queue`` (``limit``)."""
        c = self.tables.jobs.c
        query = (
            select(c.seq, *self.job_columns)
            .where(c.ready_queue == (bindparam("queue") if queue is None else queue))
            .order_by(c.rank, c.sort_time, c.seq)
            .limit(bindparam("limit", type_=Integer) if limit is None else limit)
        )
        return self.dialect.walk(query, self.tables.jobs, self.tables.ready_index)

    def _pg_claim(self) -> Any:
        """PostgreSQL: the claim's update of the jobs taken, with their counters in a CTE."""
        statement = self._statements.get("pg_claim")
        if statement is None:
            jobs, counts = self.tables.jobs.name, self.tables.counts.name
            statement = self._statements["pg_claim"] = text(
                f"""
                WITH counted AS (
                    INSERT INTO {counts} (queue, name, status, shard, n)
                    SELECT * FROM unnest(CAST(:c_queue AS varchar[]), CAST(:c_name AS varchar[]),
                                         CAST(:c_status AS varchar[]), CAST(:c_shard AS smallint[]),
                                         CAST(:c_n AS bigint[]))
                    ON CONFLICT (queue, name, status, shard) DO UPDATE SET n = {counts}.n + excluded.n
                    RETURNING 1
                )
                UPDATE {jobs} SET status = 'InProgress', started_at = :now, last_updated_at = :now,
                    retry_delay_until = NULL, progress = NULL, cancel_requested = false, cancel_ttl = NULL,
                    token = :token, worker_id = :worker_id, ready_queue = NULL, sort_rank = 0,
                    sort_time = :sort_time, deadline = :lease_until
                WHERE seq = ANY(CAST(:seqs AS bigint[]))
                """
            )
        return statement

    def claim(
        self, tx: Tx, limit: int, lease_seconds: float, queues: Sequence[str], worker_id: str
    ) -> list[ClaimedJob]:
        prepared = self._prepared()
        order = list(dict.fromkeys(queues))
        # The first queue's take also answers the clock and the next scheduled due time: when no
        # scheduled job has come due (most claims), nothing more is asked before the update.
        probe = "take_and_probe" if not tx.knows_now else "take_and_due"
        taken: list[Any] = list(tx.execute(prepared[probe], {"queue": order[0], "limit": limit}).mappings())
        if taken:
            tx.learn_now(taken[0].get("db_now"))
            due = taken[0]["next_due"]
            if due is not None and due <= tx.now:
                self.promote(tx)  # a due job may go before these: take again after moving it
                taken = list(tx.execute(prepared["take"], {"queue": order[0], "limit": limit}).mappings())
        else:
            self.promote(tx)
            taken = list(tx.execute(prepared["take"], {"queue": order[0], "limit": limit}).mappings())
        now = tx.now
        for queue in order[1:]:
            need = limit - len(taken)
            if need <= 0:
                break
            taken.extend(tx.execute(prepared["take"], {"queue": queue, "limit": need}).mappings())
        if not taken:
            return []
        token = uuid.uuid4().hex
        tally = Tally()
        for row in taken:
            tally.move(row["queue"], row["name"], JobStatus(row["status"]), JobStatus.IN_PROGRESS)
        claim = {
            "seqs": [row["seq"] for row in taken],
            "now": now,
            "token": token,
            "worker_id": _check_name(worker_id, "worker id") if worker_id else None,
            "sort_time": rows.running(now, now)["sort_time"],
            "lease_until": now + lease_seconds,
        }
        if tx.dialect.family == POSTGRESQL:
            # The update and its counters in one statement: a claim is three round trips in all.
            counted = tally.rows(tx.shard)
            arrays = {f"c_{key}": [row[key] for row in counted] for key in ("queue", "name", "status", "shard", "n")}
            tx.execute(self._pg_claim(), {**claim, **arrays})
        else:
            tx.execute(prepared["claimed"], claim)
            tally.write(tx, self.tables)
        started = codec.stamp(now)
        claimed = []
        for row in taken:
            job = job_from_row(row).replace(
                status=JobStatus.IN_PROGRESS,
                started_at=started,
                last_updated_at=started,
                retry_delay_until=None,
                progress=None,
                cancel_requested=False,
            )
            claimed.append(ClaimedJob(job, token))
        return claimed

    def next_due(self, tx: Tx, queues: Sequence[str]) -> float | None:
        """Seconds (by the database's clock) until a job of ``queues`` may be due: 0 when one is
        ready, ``None`` when no job is waiting at all."""
        c = self.tables.jobs.c
        ready = select(c.seq).where(c.ready_queue.in_(list(queues))).limit(1)
        ready = tx.dialect.walk(ready, self.tables.jobs, self.tables.ready_index)
        if tx.execute(ready).first() is not None:
            return 0.0
        # Any queue's: waking early for another queue's job costs a claim that finds nothing.
        first = select(func.min(c.sort_time)).where(c.status == JobStatus.SCHEDULED.value, c.sort_rank == 0)
        first = tx.dialect.walk(first, self.tables.jobs, self.tables.list_index)
        due = tx.execute(first).scalar()
        return None if due is None else max(0.0, float(due) - tx.now)

    # -- running -------------------------------------------------------------------------------------

    def renew(self, tx: Tx, leases: Sequence[tuple[str, str]], lease_seconds: float) -> dict[str, LeaseState]:
        jobs = self.tables.jobs
        c = jobs.c
        wanted = dict(leases)
        now = tx.now
        query = select(c.seq, c.id, c.token, c.status, c.deadline, c.cancel_requested).where(c.id.in_(list(wanted)))
        states = dict.fromkeys(wanted, LeaseState.LOST)
        renewed = []
        for row in tx.execute(tx.dialect.lock(query)).mappings():
            held = row["status"] == JobStatus.IN_PROGRESS.value and row["token"] == wanted[row["id"]]
            if held and row["deadline"] is not None and row["deadline"] >= now:
                renewed.append(row["seq"])
                states[row["id"]] = LeaseState.CANCEL_REQUESTED if row["cancel_requested"] else LeaseState.HELD
        if renewed:
            tx.execute(update(jobs).where(c.seq.in_(renewed)).values(deadline=now + lease_seconds))
        return states

    def set_progress(self, tx: Tx, job_id: str, token: str, fraction: float, message: str | None) -> bool:
        c = self.tables.jobs.c
        now = tx.now
        changed = tx.execute(
            update(self.tables.jobs)
            .where(c.id == job_id, c.token == token, c.status == JobStatus.IN_PROGRESS.value)
            .values(progress=codec.encode_progress(fraction, message, now), last_updated_at=now)
        )
        return bool(changed.rowcount)

"""The SQL store: jobs in PostgreSQL, MySQL/MariaDB or SQLite, shared by every process using the database.

Each store operation is one transaction (:mod:`.txn`): claims lock the rows they take with
``FOR UPDATE SKIP LOCKED`` (PostgreSQL, MySQL 8+, MariaDB 10.6+) or take SQLite's write lock with
``BEGIN IMMEDIATE``; every write to a running job checks its attempt's token under that lock; leases
and due times are judged on the database server's clock (SQLite's server is this machine). Counts
are counter rows written in the same transactions as the jobs they count.
"""

from __future__ import annotations

import json
import logging
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import select, text

from ...jobs import DEFAULT_QUEUE, AttemptRecord, ClaimedJob, Job, JobError, JobPayload, JobStatus, LogRecord
from ..base import DEFAULT_HISTORY_LIMIT, CancelResult, LeaseState, NewJob, PendingLimitReached, Store
from . import codec
from .dialects import Dialect
from .endings import End, Endings
from .engines import POSTGRESQL, SQLITE, adapt_engine, create_engine_for, describe, family_of, import_sqlalchemy
from .lifecycle import Lifecycle
from .monitoring import SQLMonitoring
from .notify import Listener, Signals
from .reads import Reads
from .schema import Tables
from .setup import SchemaManager
from .txn import Runner, Tx

logger = logging.getLogger(__package__)

T = TypeVar("T")

#: SQLite: how often a waiting worker looks whether another process committed (seconds).
SQLITE_WATCH = 0.025

#: Finished jobs :meth:`SQLStore.purge_finished` deletes per transaction.
PURGE_CHUNK = 1000


class SQLStore(SQLMonitoring, Store):
    """Jobs in a SQL database, shared by every process and machine using it with the same key prefix.

    :param engine: a SQLAlchemy :class:`~sqlalchemy.engine.Engine` (Flask-SQLAlchemy's ``db.engine``
        will do) for PostgreSQL, MySQL/MariaDB or SQLite. The store shares its pool (on SQLite it
        opens the same file with an engine of its own) and does not dispose of it.
    :param key_prefix: the first part of every table name (``ae`` -> ``ae_jobs``, ``ae_counts``, …).
    :param history_limit: how many attempts each job's history keeps.
    :param create_tables: create the tables on first use when they are missing (``False``: they
        must exist, made by ``flask asyncendpoints init-db`` or a migration).
    :raises ConfigurationError: for a database the store does not support, or a prefix that cannot
        start table names.
    """

    batches_completions = True

    def __init__(
        self,
        engine: Any,
        *,
        key_prefix: str = "ae",
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        create_tables: bool = True,
    ) -> None:
        import_sqlalchemy()
        self.family = family_of(engine.dialect.name)
        self.engine = adapt_engine(engine)
        # PostgreSQL and MySQL share the app's pool; SQLite gets an engine of the store's own.
        self._own_engine = self.engine is not engine and self.family == SQLITE
        self.key_prefix = key_prefix
        self.history_limit = history_limit
        self.tables = Tables(key_prefix)
        self.dialect = Dialect(self.family)
        self.where = describe(self.engine)
        self._channels = {kind: f"{key_prefix}_{kind}" for kind in ("work", "finished", "cancel")}
        self._lifecycle = Lifecycle(self.tables, self.dialect)
        finished_channel = self._channels["finished"] if self.family == POSTGRESQL else None
        self._endings = Endings(self._lifecycle, history_limit, finished_channel)
        self._reads = Reads(self._lifecycle)
        self._setup(create_tables)
        weak = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(weak))

    def _setup(self, create_tables: bool) -> None:
        """Everything a new process needs afresh (see :func:`_after_fork`)."""
        self._signals = Signals()
        notify = self._channels if self.family == POSTGRESQL else None
        self._runner = Runner(self.engine, self.dialect, self.where, self._after_commit, notify)
        self._schema = SchemaManager(self.engine, self.tables, self.dialect, self.where, create=create_tables)
        self._listener: Listener | None = None
        #: PostgreSQL creates most jobs in one statement (see Lifecycle.create_in_one_statement).
        self._one_statement_creates = self.family == POSTGRESQL
        if self.family == POSTGRESQL and self.engine.dialect.driver == "psycopg":
            self._listener = Listener(self._notification_connection, self._channels, self._signals, self.where)

    @classmethod
    def from_url(
        cls, url: str, *, key_prefix: str = "ae", history_limit: int = DEFAULT_HISTORY_LIMIT, **engine_options: Any
    ) -> SQLStore:
        """A store on a new engine for ``url``, disposed of by ``close()``.

        :param url: ``postgresql://user[:password]@host[:port]/database``, ``mysql://…`` or
            ``mariadb://…`` (same form), ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``;
            any SQLAlchemy URL of these databases with a driver (``postgresql+psycopg2://…``) works too.
        :param key_prefix: the first part of every table name.
        :param history_limit: how many attempts each job's history keeps.
        :param engine_options: more :func:`sqlalchemy.create_engine` options (``pool_size=…``).
        :raises ConfigurationError: when the URL cannot be used or a package is missing.
        """
        store = cls(create_engine_for(url, **engine_options), key_prefix=key_prefix, history_limit=history_limit)
        store._own_engine = True
        return store

    def __repr__(self) -> str:
        return f"<SQLStore: {self.where}, tables {self.key_prefix}_*>"

    # -- plumbing ------------------------------------------------------------------------------------

    def _write(self, what: str, operation: Callable[[Tx], T], now: float | None) -> T:
        self._schema.ensure()
        return self._runner.write(what, operation, now=now)

    def _read(self, what: str, operation: Callable[[Tx], T], now: float | None = None) -> T:
        self._schema.ensure()
        return self._runner.read(what, operation, now=now)

    def _after_commit(self, tx: Tx) -> None:
        if tx.woken:
            self._signals.work()
        if tx.finished:
            self._signals.finished(tx.finished)
        # A listening PostgreSQL listener hears this process's cancels too: told once, not twice.
        listener = self._listener
        if tx.canceled and (listener is None or not listener.listening.is_set()):
            self._signals.canceled(tx.canceled)

    def _notification_connection(self) -> Any:
        raw = self.engine.raw_connection()
        connection = raw.driver_connection
        raw.detach()  # the listener keeps it for good: it must not count against the pool
        return connection

    def _listening(self) -> bool:
        listener = self._listener
        if listener is None:
            return False
        listener.start()
        return listener.listening.is_set()

    def init_db(self) -> int:
        """Create the store's tables if they are missing, and migrate them to this release's schema.

        :returns: the schema version the tables are at now.
        :raises StoreError: when the database cannot be reached.
        :raises ConfigurationError: when a newer release made the tables.
        """
        return self._schema.ensure(force=True)

    def ddl(self) -> str:
        """The ``CREATE TABLE`` and ``CREATE INDEX`` statements of the store's tables for this database,
        as ``init_db`` runs them (for teams that manage the schema with migrations)."""
        return self._schema.ddl()

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
        """See :meth:`Store.create <flask_asyncendpoints.stores.Store.create>`."""
        new = NewJob(job_id, name, payload, max_retries, queue, priority, due)
        if (
            self._one_statement_creates
            and max_pending is None
            and due is None
            and queue in self._lifecycle.known_queues
        ):
            channel = self._channels["work"]
            fast = self._runner.statement(
                "creating a job", lambda tx: self._lifecycle.create_in_one_statement(tx, new, channel), now=now
            )
            if fast is not None:
                return fast
            existing = self.get(job_id)
            if existing is not None:
                return existing, False
        created = self._write("creating a job", lambda tx: self._lifecycle.create(tx, new, max_pending), now)
        if created is None:
            raise PendingLimitReached(f"{max_pending} jobs are already pending in the queue {queue!r}")
        return created

    def create_many(
        self, jobs: Sequence[NewJob], *, max_pending: int | None = None, now: float | None = None
    ) -> list[tuple[Job, bool] | None]:
        """See :meth:`Store.create_many <flask_asyncendpoints.stores.Store.create_many>`: one transaction."""
        if not jobs:
            return []
        return self._write("creating jobs", lambda tx: self._lifecycle.create_many(tx, jobs, max_pending), now)

    def get(self, job_id: str) -> Job | None:
        """See :meth:`Store.get <flask_asyncendpoints.stores.Store.get>`."""
        return self._read("reading a job", lambda tx: self._lifecycle.get(tx, job_id))

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
        """See :meth:`Store.claim <flask_asyncendpoints.stores.Store.claim>`."""
        if limit <= 0 or not queues:
            return []
        lease = float(lease_seconds)
        claim = self._lifecycle.claim
        return self._write("claiming jobs", lambda tx: claim(tx, int(limit), lease, list(queues), worker_id), now)

    def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, *, now: float | None = None
    ) -> dict[str, LeaseState]:
        """See :meth:`Store.renew <flask_asyncendpoints.stores.Store.renew>`."""
        if not leases:
            return {}
        lease = float(lease_seconds)
        return self._write("renewing leases", lambda tx: self._lifecycle.renew(tx, leases, lease), now)

    def set_progress(
        self, job_id: str, token: str, fraction: float, message: str | None, *, now: float | None = None
    ) -> bool:
        """See :meth:`Store.set_progress <flask_asyncendpoints.stores.Store.set_progress>`."""
        progress = self._lifecycle.set_progress
        return self._write("recording progress", lambda tx: progress(tx, job_id, token, fraction, message), now)

    def _end(
        self, what: str, items: list[tuple[str, str, End, Any]], result_ttl: float | None, now: float | None
    ) -> list[Job | None]:
        return self._write(what, lambda tx: self._endings.end(tx, items, result_ttl=result_ttl), now)

    def complete(
        self, job_id: str, token: str, result_json: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        """See :meth:`Store.complete <flask_asyncendpoints.stores.Store.complete>`."""
        # Parsed first: text that is not JSON is refused before anything is stored.
        detail = (result_json, json.loads(result_json))
        return self._end("completing a job", [(job_id, token, End.COMPLETE, detail)], result_ttl, now)[0]

    def complete_many(
        self, completions: Sequence[tuple[ClaimedJob, str]], *, result_ttl: float | None, now: float | None = None
    ) -> list[Job | None]:
        """See :meth:`Store.complete_many <flask_asyncendpoints.stores.Store.complete_many>`: one transaction."""
        if not completions:
            return []
        items = [(c.job.id, c.token, End.COMPLETE, (r, json.loads(r))) for c, r in completions]
        return self._end("completing jobs", items, result_ttl, now)

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
        """See :meth:`Store.fail <flask_asyncendpoints.stores.Store.fail>`."""
        return self._end("failing a job", [(job_id, token, End.FAIL, (error, retry_delay))], result_ttl, now)[0]

    def finish_canceled(
        self, job_id: str, token: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        """See :meth:`Store.finish_canceled <flask_asyncendpoints.stores.Store.finish_canceled>`."""
        return self._end("canceling a job", [(job_id, token, End.CANCELED, None)], result_ttl, now)[0]

    def release(self, job_id: str, token: str, *, now: float | None = None) -> bool:
        """See :meth:`Store.release <flask_asyncendpoints.stores.Store.release>`."""
        return self._end("releasing a job", [(job_id, token, End.RELEASE, None)], None, now)[0] is not None

    def cancel(
        self, job_id: str, *, result_ttl: float | None, now: float | None = None
    ) -> tuple[CancelResult, Job | None]:
        """See :meth:`Store.cancel <flask_asyncendpoints.stores.Store.cancel>`."""
        return self._write("canceling a job", lambda tx: self._endings.cancel(tx, job_id, result_ttl), now)

    def watch_cancels(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """See :meth:`Store.watch_cancels <flask_asyncendpoints.stores.Store.watch_cancels>`.

        PostgreSQL: cancels requested by any process, through ``LISTEN``. MySQL and SQLite: cancels
        requested through this process's store; the others are heard at the next lease renewal.
        """
        stop = self._signals.watch_cancels(callback)
        self._listening()
        return stop

    def recover(self, *, result_ttl: float | None, limit: int = 100, now: float | None = None) -> list[Job]:
        """See :meth:`Store.recover <flask_asyncendpoints.stores.Store.recover>`."""
        if limit <= 0:
            return []
        return self._write("recovering jobs", lambda tx: self._endings.recover(tx, result_ttl, int(limit)), now)

    # -- history and logs ----------------------------------------------------------------------------

    def _column(self, job_id: str, column: str) -> str | None:
        c = self.tables.jobs.c

        def read(tx: Tx) -> str | None:
            value: str | None = tx.execute(select(c[column]).where(c.id == job_id)).scalar()
            return value

        return self._read(f"reading a job's {column}", read)

    def attempts(self, job_id: str) -> list[AttemptRecord]:
        """See :meth:`Store.attempts <flask_asyncendpoints.stores.Store.attempts>`."""
        return codec.decode_attempts(self._column(job_id, "attempts"))

    def append_logs(
        self, job_id: str, token: str, records: Sequence[LogRecord], *, max_lines: int, max_bytes: int
    ) -> bool:
        """See :meth:`Store.append_logs <flask_asyncendpoints.stores.Store.append_logs>`."""
        append = self._endings.append_logs
        return self._write(
            "appending to a job's log", lambda tx: append(tx, job_id, token, records, max_lines, max_bytes), None
        )

    def logs(self, job_id: str) -> list[LogRecord]:
        """See :meth:`Store.logs <flask_asyncendpoints.stores.Store.logs>`."""
        return codec.decode_logs(self._column(job_id, "logs"))

    # -- recurring jobs ------------------------------------------------------------------------------

    def claim_occurrence(self, schedule: str, at: float, *, now: float | None = None) -> bool:
        """See :meth:`Store.claim_occurrence <flask_asyncendpoints.stores.Store.claim_occurrence>`."""
        claim = self._reads.claim_occurrence
        return self._write("claiming an occurrence", lambda tx: claim(tx, schedule, at), now)

    def occurrences(self) -> Mapping[str, float]:
        """See :meth:`Store.occurrences <flask_asyncendpoints.stores.Store.occurrences>`."""
        return self._read("reading occurrences", self._reads.occurrences)

    # -- upkeep and operators ------------------------------------------------------------------------

    def purge(self, *, limit: int = 1000, now: float | None = None) -> int:
        """See :meth:`Store.purge <flask_asyncendpoints.stores.Store.purge>`. Also drops throughput
        buckets past their keeping time and workers gone for a day."""
        if limit <= 0:
            return 0
        return self._write("purging jobs", lambda tx: self._endings.purge(tx, int(limit)), now)

    def requeue(self, job_id: str, *, now: float | None = None) -> Job | None:
        """See :meth:`Store.requeue <flask_asyncendpoints.stores.Store.requeue>`."""
        return self._write("requeueing a job", lambda tx: self._endings.requeue(tx, job_id), now)

    def delete(self, job_id: str, *, now: float | None = None) -> bool:
        """See :meth:`Store.delete <flask_asyncendpoints.stores.Store.delete>`."""
        return self._write("deleting a job", lambda tx: self._endings.delete(tx, job_id), now)

    def purge_finished(self, older_than: float, *, now: float | None = None) -> int:
        """See :meth:`Store.purge_finished <flask_asyncendpoints.stores.Store.purge_finished>`.

        Walks the finished jobs' list index from the oldest, :data:`PURGE_CHUNK` per transaction.
        """
        if now is None:
            now = self._read("reading the clock", lambda tx: tx.now)
        total = 0
        while True:
            deleted = self._write(
                "purging finished jobs",
                lambda tx: self._endings.purge_finished(tx, older_than, PURGE_CHUNK),
                now,
            )
            total += deleted
            if deleted < PURGE_CHUNK:
                return total

    def counts(self, *, queue: str | None = None) -> Mapping[JobStatus, int]:
        """See :meth:`Store.counts <flask_asyncendpoints.stores.Store.counts>`."""
        return self._read("counting jobs", lambda tx: self._reads.counts(tx, queue))

    def wait_for_work(self, timeout: float, *, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> None:
        """See :meth:`Store.wait_for_work <flask_asyncendpoints.stores.Store.wait_for_work>`.

        Returns at once when a job of ``queues`` is ready, waits no longer than until the next
        scheduled job is due (by the database's clock), and is woken by this process's creates and
        releases; on PostgreSQL by any process's (``NOTIFY``); on SQLite by any process's commit
        that makes a job ready (the wait looks at the database's ``data_version`` every
        ``SQLITE_WATCH`` seconds, which costs no disk read, and for work only when it changed).
        MySQL finds other processes' jobs when the wait times out (the worker's poll interval).
        """
        self._listening()
        generation = self._signals.generation()
        if self._signals.take_wake():
            return
        due_in = self._read("waiting for work", lambda tx: self._lifecycle.next_due(tx, queues))
        if due_in is not None:
            timeout = min(timeout, due_in)
        if timeout <= 0:
            return
        if self.family != SQLITE:
            self._signals.wait_for_work(generation, timeout)
            return
        deadline = time.monotonic() + timeout
        with self.engine.connect() as conn:  # data_version is per connection: one for the whole wait
            version = conn.exec_driver_sql("PRAGMA data_version").scalar()
            while (remaining := deadline - time.monotonic()) > 0:
                if self._signals.wait_for_work(generation, min(remaining, SQLITE_WATCH)):
                    return
                seen = conn.exec_driver_sql("PRAGMA data_version").scalar()
                if seen != version:
                    version = seen
                    due_in = self._read("waiting for work", lambda tx: self._lifecycle.next_due(tx, queues))
                    if due_in is not None:
                        if due_in <= 0:
                            return
                        deadline = min(deadline, time.monotonic() + due_in)

    def wake(self) -> None:
        """See :meth:`Store.wake <flask_asyncendpoints.stores.Store.wake>` (this process's waiters)."""
        self._signals.wake()

    def wait_for_finish(self, job_id: str, timeout: float) -> Job | None:
        """See :meth:`Store.wait_for_finish <flask_asyncendpoints.stores.Store.wait_for_finish>`.

        Woken as soon as the job finishes in this process, and on PostgreSQL in any process (the job
        is read again at least every second, in case a notification was lost); elsewhere the job is
        read again at a growing interval, up to every half second.
        """
        deadline = time.monotonic() + timeout
        interval = 0.01
        with self._signals.watching(job_id) as finished:
            while True:
                job = self.get(job_id)
                remaining = deadline - time.monotonic()
                if job is None or job.status.is_final or remaining <= 0:
                    return job
                wait = 1.0 if self._listening() else interval
                finished.wait(min(remaining, wait))
                finished.clear()
                interval = min(interval * 2, 0.5)

    # -- connection ----------------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise :class:`~flask_asyncendpoints.errors.StoreError` if the database cannot be reached."""
        clock = self.dialect.clock()
        self._runner.read("pinging", lambda tx: tx.execute(_select_one() if clock is None else clock).scalar())

    def close(self) -> None:
        """Stop the listener; dispose of the engine if the store created it (:meth:`from_url`, SQLite)."""
        if self._listener is not None:
            self._listener.close()
        if self._own_engine:
            self.engine.dispose()


def _select_one() -> Any:
    return text("SELECT 1")


def _after_fork(ref: weakref.ReferenceType[SQLStore]) -> None:
    """In a forked child (gunicorn's workers): connections of the parent's pool must not be shared,
    and the parent's threads and locks are not the child's."""
    store = ref()
    if store is None:
        return
    store.engine.dispose(close=False)
    store._setup(store._schema.create)

"""Transactions: one store operation is one function run in one transaction, retried when the database
asks for it, with database errors turned into :class:`~flask_asyncendpoints.errors.StoreError`.

A transaction is retried (from the start, with a fresh connection) when the database broke it off to
end a deadlock or a serialization conflict, and when a pooled connection turns out to be dead at the
transaction's first statement: nothing can have been committed then, and this is how the store
notices a restarted database without a ``SELECT 1`` before every transaction (the pool's
``pre_ping``), which would cost a round trip each time.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from ...errors import StoreError
from .dialects import Dialect
from .engines import MYSQL, POSTGRESQL, SQLITE

T = TypeVar("T")

logger = logging.getLogger(__package__)

#: Tries of a transaction the database broke off (deadlock, serialization failure, dead connection).
ATTEMPTS = 4

#: Shards of each counter row (see ``schema``): enough that connections rarely share one.
SHARDS = 8

#: Error codes that mean "run the transaction again": PostgreSQL SQLSTATEs and MySQL error numbers.
_PG_RETRY = frozenset({"40001", "40P01", "55P03"})  # serialization failure, deadlock, lock not available
_MYSQL_RETRY = frozenset({1213, 1205})  # deadlock, lock wait timeout


#: PostgreSQL: send the notifications of one transaction in one statement, whatever their number.
_NOTIFY = text(
    "SELECT pg_notify(n.channel, n.payload) "
    "FROM unnest(CAST(:channels AS text[]), CAST(:payloads AS text[])) AS n(channel, payload)"
)


class Retry(Exception):
    """Raised by an operation to be run again from the start (e.g. it lost a race to insert a key)."""


class Tx:
    """One transaction: the connection, the clock, and what to announce once it commits.

    :param conn: the connection, in a transaction.
    :param dialect: the SQL of its database family.
    :param now: the time the caller gave (epoch seconds), or ``None`` for the database's clock.
    """

    def __init__(self, conn: Connection, dialect: Dialect, now: float | None) -> None:
        self.conn = conn
        self.dialect = dialect
        self._now = now
        self._clock_read = False
        #: Statements sent so far (a dead connection at the first one makes the transaction safe to retry).
        self.sent = 0
        #: Queues that got due work, jobs that finished, cancels requested of running jobs: told to
        #: this process's waiters once the transaction commits, and to other processes by PostgreSQL
        #: notifications sent in it.
        self.woken: set[str] = set()
        self.finished: list[str] = []
        self.canceled: list[str] = []
        self._on_commit: list[Callable[[], None]] = []
        #: Set by an operation whose statements sent their own notifications (all of them, or the
        #: finished jobs' only).
        self.announced = False
        self.finished_announced = False

    @property
    def now(self) -> float:
        """The transaction's time: the caller's ``now``, else the database server's clock, read once."""
        if self._now is None:
            clock = self.dialect.clock()
            self._now = time.time() if clock is None else float(self.execute(clock).scalar_one())
            self._clock_read = True
        return self._now

    @property
    def given_now(self) -> float | None:
        """The time the caller gave, or ``None`` (the server's clock is then read in SQL)."""
        return self._now if not self._clock_read else None

    @property
    def knows_now(self) -> bool:
        """Whether :attr:`now` is known without asking the server."""
        return self._now is not None or self.dialect.clock_column() is None

    def learn_now(self, value: Any) -> None:
        """Take the server's clock as read along with another query (a ``db_now`` column)."""
        if self._now is None and value is not None:
            self._now = float(value)
            self._clock_read = True

    @property
    def shard(self) -> int:
        """This connection's shard of the counter rows (SQLite has one writer at a time: always 0)."""
        if self.dialect.family == SQLITE:
            return 0
        info = self.conn.info
        shard = info.get("asyncendpoints_shard")
        if shard is None:
            shard = info["asyncendpoints_shard"] = random.randrange(SHARDS)
        return int(shard)

    def execute(self, statement: Any, parameters: Any = None) -> Any:
        """Run one statement in the transaction; its result."""
        self.sent += 1
        return self.conn.execute(statement, parameters)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transaction has committed (never if it does not)."""
        self._on_commit.append(callback)

    def committed(self) -> None:
        """Run the :meth:`on_commit` callbacks (the transaction has committed)."""
        for callback in self._on_commit:
            callback()


class Runner:
    """Runs store operations in transactions on one engine.

    :param engine: the store's engine (see :mod:`.engines`).
    :param dialect: the SQL of its database family.
    :param where: the database, as error messages name it (without a password).
    :param after_commit: called with each committed :class:`Tx`, to wake this process's waiters.
    :param channels: PostgreSQL's notification channels by what they carry (``work``: a queue name,
        ``finished``: job ids, ``cancel``: a job id); ``None`` sends none.
    """

    def __init__(
        self,
        engine: Engine,
        dialect: Dialect,
        where: str,
        after_commit: Callable[[Tx], None],
        channels: dict[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.dialect = dialect
        self.where = where
        self._after_commit = after_commit
        self._channels = channels

    def write(self, what: str, operation: Callable[[Tx], T], *, now: float | None = None) -> T:
        """Run ``operation`` in a write transaction and commit it.

        :param what: what it does, for error messages ("claiming jobs").
        :raises StoreError: when the database cannot be reached or refuses the transaction.
        """
        return self._run(what, operation, now, write=True)

    def read(self, what: str, operation: Callable[[Tx], T], *, now: float | None = None) -> T:
        """Run ``operation``, which only reads, outside any write lock (its statements may each see
        a newer state on PostgreSQL and SQLite, which read without a transaction)."""
        return self._run(what, operation, now, write=False)

    def statement(self, what: str, operation: Callable[[Tx], T], *, now: float | None = None) -> T:
        """Run ``operation``, which sends one statement that changes data, on its own: atomic by
        itself, with no ``BEGIN`` and ``COMMIT`` round trips (PostgreSQL's autocommit). It sends its
        own notifications."""
        return self._run(what, operation, now, write=False)

    def _run(self, what: str, operation: Callable[[Tx], T], now: float | None, *, write: bool) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            tx: Tx | None = None
            try:
                with self._connect(write) as conn:
                    tx = Tx(conn, self.dialect, now)
                    if write and self.dialect.family == SQLITE:
                        tx.sent += 1
                        conn.exec_driver_sql("BEGIN IMMEDIATE")
                    result = operation(tx)
                    unsent = tx.woken or tx.canceled or (tx.finished and not tx.finished_announced)
                    if self._channels is not None and not tx.announced and unsent:
                        self._send_notifications(tx, self._channels)
                    conn.commit()
            except Retry:
                if attempt == ATTEMPTS:
                    raise StoreError(
                        f"{what.capitalize()} kept conflicting with other writers on {self.where}; try again."
                    ) from None
                continue
            except sa_exc.DBAPIError as exc:
                if attempt < ATTEMPTS and self._retryable(exc, tx):
                    logger.debug("retrying %s on %s after %r", what, self.where, exc.orig)
                    continue
                raise self._store_error(what, exc) from exc
            except sa_exc.SQLAlchemyError as exc:  # the pool timed out, and the like
                raise StoreError(f"The job store ({self.where}) failed while {what}: {exc}") from exc
            tx.committed()
            self._after_commit(tx)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self, write: bool) -> Connection:
        if write or self.dialect.family != POSTGRESQL:
            # SQLite's driver begins nothing on its own here (see .engines), so its reads need no
            # more; on MySQL, turning autocommit on and off again would cost two round trips.
            return self.engine.connect()
        # A PostgreSQL read needs no transaction: no BEGIN and ROLLBACK round trips.
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    @staticmethod
    def _send_notifications(tx: Tx, channels: dict[str, str]) -> None:
        """One statement for all of them; PostgreSQL delivers them when the transaction commits."""
        sent = [(channels["work"], queue) for queue in sorted(tx.woken)]
        # Job ids 200 at a time: a payload must stay under 8,000 bytes.
        if not tx.finished_announced:
            finished = tx.finished
            sent += [(channels["finished"], ",".join(finished[i : i + 200])) for i in range(0, len(finished), 200)]
        sent += [(channels["cancel"], job_id) for job_id in tx.canceled]
        if not sent:
            return
        names, payloads = zip(*sent, strict=True)
        tx.execute(_NOTIFY, {"channels": list(names), "payloads": list(payloads)})

    def _retryable(self, exc: sa_exc.DBAPIError, tx: Tx | None) -> bool:
        if exc.connection_invalidated:
            # Dead before anything reached the server: a fresh connection can do the whole of it.
            return tx is None or tx.sent <= 1
        orig = exc.orig
        if self.dialect.family == POSTGRESQL:
            return getattr(orig, "sqlstate", None) in _PG_RETRY
        if self.dialect.family == MYSQL:
            args: tuple[Any, ...] = getattr(orig, "args", ())
            return bool(args) and args[0] in _MYSQL_RETRY
        return False

    def _store_error(self, what: str, exc: sa_exc.DBAPIError) -> StoreError:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        if self.dialect.family == SQLITE and "locked" in reason:
            advice = (
                "Another process held the database's write lock for longer than the busy timeout; "
                "raise it with ?busy_timeout=<seconds> in the URL if this repeats."
            )
        elif isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            advice = "Check that the database server is running and reachable; the worker retries on its own."
        else:
            advice = (
                "Check that the store's tables are as this release creates them "
                "(flask asyncendpoints init-db --sql prints them)."
            )
        return StoreError(f"The job store ({self.where}) failed while {what}: {reason}. {advice}")

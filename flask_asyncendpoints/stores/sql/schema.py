"""The tables of the SQL store, their indexes, and the schema version that lets later releases migrate.

Every table is named after the key prefix (``ae_jobs`` for the default ``ae``). Times are epoch
seconds in double-precision columns; JSON is kept as text, never as a database JSON type, so the
three families store exactly the same bytes.

The jobs table carries a few columns that exist only for its indexes:

``ready_queue``
    The job's queue while a worker may claim it (``Queued``, or a ``Scheduled`` job that has come
    due and been moved to the ready set); ``NULL`` otherwise. With ``rank`` (minus the priority) and
    ``sort_time`` (the time the job became due) it orders the claim index: highest priority first,
    then by due time, then by ``seq``.
``sort_rank``, ``sort_time``
    The order of each status's list: ``Queued`` by claim order (``rank``, due time); ``Scheduled``
    by due time (``sort_rank`` -1 once moved to the ready set, 0 before); ``InProgress`` by minus
    the start time; finished jobs by minus the completion time. One ``(status, sort_rank,
    sort_time, seq)`` index serves every status's list, and finds the scheduled jobs that have
    come due.
``deadline``
    The lease expiry of an ``InProgress`` job, the purge time of a finished one, ``NULL`` otherwise:
    recovery and purge both walk one ``(status, deadline)`` index.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.dialects import mysql

from ...errors import ConfigurationError

#: The schema this release writes. A database at a lower version is migrated on first use; one at
#: a higher version was written by a newer release, which this one refuses to touch.
SCHEMA_VERSION = 1

#: Longest job name, queue name, worker id and schedule name (characters).
NAME_LENGTH = 200

#: What a key prefix may be: the start of SQL identifiers that need no quoting in any family.
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,29}")

# utf8mb4 with a binary collation: MySQL's default collations compare case- and accent-insensitively,
# which would make "Work" and "work" one job name (and one unique key).
_MYSQL_TEXT = {"collation": "utf8mb4_bin"}
_TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

#: JSON text: up to 4 GiB on MySQL (its ``TEXT`` stops at 64 KiB); ``TEXT`` elsewhere.
JSONText = Text().with_variant(mysql.LONGTEXT(**_MYSQL_TEXT), "mysql", "mariadb")
#: Auto-increment key: ``INTEGER PRIMARY KEY`` is SQLite's rowid, ``BIGINT`` elsewhere.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


def check_prefix(key_prefix: str) -> str:
    """``key_prefix`` if it can start table names, else :class:`ConfigurationError`.

    :param key_prefix: ``ASYNCENDPOINTS_KEY_PREFIX``.
    :raises ConfigurationError: for anything but a letter followed by up to 29 letters, digits and ``_``.
    """
    if not _PREFIX.fullmatch(key_prefix):
        raise ConfigurationError(
            f"ASYNCENDPOINTS_KEY_PREFIX={key_prefix!r} cannot start SQL table names: use a letter followed by "
            "up to 29 letters, digits or underscores, such as 'ae' (tables ae_jobs, ae_counts, ...)."
        )
    return key_prefix


def _name(length: int = NAME_LENGTH) -> String:
    return String(length).with_variant(mysql.VARCHAR(length, **_MYSQL_TEXT), "mysql", "mariadb")


class Tables:
    """The store's tables for one key prefix, in a :class:`~sqlalchemy.MetaData` of their own.

    :param key_prefix: the first part of every table and index name (checked by :func:`check_prefix`).
    """

    def __init__(self, key_prefix: str) -> None:
        p = check_prefix(key_prefix)
        self.prefix = p
        self.metadata = metadata = MetaData()
        jobs = self.jobs = Table(
            f"{p}_jobs",
            metadata,
            Column("seq", SeqType, primary_key=True, autoincrement=True),
            Column("id", _name(64), nullable=False),
            Column("name", _name(), nullable=False),
            Column("queue", _name(), nullable=False),
            Column("priority", Integer, nullable=False),
            Column("rank", Integer, nullable=False),
            Column("status", _name(12), nullable=False),
            Column("retry_count", Integer, nullable=False),
            Column("max_retries", Integer, nullable=False),
            Column("created_at", Double, nullable=False),
            Column("last_updated_at", Double, nullable=False),
            Column("started_at", Double),
            Column("completed_at", Double),
            Column("retry_delay_until", Double),
            Column("ready_queue", _name()),
            Column("sort_rank", Integer, nullable=False),
            Column("sort_time", Double, nullable=False),
            Column("deadline", Double),
            Column("token", _name(64)),
            Column("worker_id", _name()),
            Column("cancel_requested", Boolean, nullable=False, server_default=false()),
            Column("cancel_ttl", Double),
            Column("payload", JSONText, nullable=False),
            Column("result", JSONText),
            Column("error", JSONText),
            Column("progress", JSONText),
            Column("attempts", JSONText),
            Column("logs", JSONText),
            **_TABLE_OPTIONS,
        )
        c = jobs.c
        #: The jobs table's index names, for the queries that must walk them (see Dialect.walk).
        self.ready_index, self.list_index, self.deadline_index = (
            f"{p}_jobs_ready",
            f"{p}_jobs_list",
            f"{p}_jobs_deadline",
        )
        Index(f"{p}_jobs_id", c.id, unique=True)
        # Partial where the database has partial indexes; MySQL keeps the NULL rows in one corner of it.
        ready = c.ready_queue.is_not(None)
        Index(f"{p}_jobs_ready", c.ready_queue, c.rank, c.sort_time, c.seq, postgresql_where=ready, sqlite_where=ready)
        timed = c.deadline.is_not(None)
        Index(f"{p}_jobs_deadline", c.status, c.deadline, postgresql_where=timed, sqlite_where=timed)
        Index(f"{p}_jobs_list", c.status, c.sort_rank, c.sort_time, c.seq)

        # Jobs per (queue, name, status), in shards: each connection adds its changes to its own shard,
        # so concurrent transactions do not queue on one hot row. A count is the sum over the shards.
        self.counts = Table(
            f"{p}_counts",
            metadata,
            Column("queue", _name(), primary_key=True),
            Column("name", _name(), primary_key=True),
            Column("status", _name(12), primary_key=True),
            Column("shard", SmallInteger, primary_key=True, autoincrement=False),
            Column("n", BigInteger, nullable=False),
            **_TABLE_OPTIONS,
        )
        # Jobs that ended Completed / Failed per bucket (width 60 or 3600 seconds), sharded as the counts.
        self.throughput = Table(
            f"{p}_throughput",
            metadata,
            Column("width", Integer, primary_key=True, autoincrement=False),
            Column("start", BigInteger, primary_key=True, autoincrement=False),
            Column("shard", SmallInteger, primary_key=True, autoincrement=False),
            Column("completed", BigInteger, nullable=False),
            Column("failed", BigInteger, nullable=False),
            **_TABLE_OPTIONS,
        )
        # One row per queue that ever had a job: queue_stats lists them, and a create with a pending
        # limit locks its queue's row so that two creates cannot both take the last place.
        self.queues = Table(
            f"{p}_queues",
            metadata,
            Column("name", _name(), primary_key=True),
            **_TABLE_OPTIONS,
        )
        self.workers = Table(
            f"{p}_workers",
            metadata,
            Column("id", _name(), primary_key=True),
            Column("host", _name(), nullable=False),
            Column("pid", BigInteger, nullable=False),
            Column("queues", JSONText, nullable=False),
            Column("concurrency", Integer, nullable=False),
            Column("started_at", Double, nullable=False),
            Column("heartbeat_at", Double, nullable=False),
            Column("expires_at", Double, nullable=False),
            **_TABLE_OPTIONS,
        )
        self.occurrences = Table(
            f"{p}_occurrences",
            metadata,
            Column("schedule", _name(), primary_key=True),
            Column("at", Double, nullable=False),
            **_TABLE_OPTIONS,
        )
        # One row per schema version applied, so a later release knows what to migrate from.
        self.schema = Table(
            f"{p}_schema",
            metadata,
            Column("version", Integer, primary_key=True, autoincrement=False),
            Column("applied_at", Double, nullable=False),
            **_TABLE_OPTIONS,
        )

    @property
    def all(self) -> list[Table]:
        """Every table, in the order they are created (the schema version last)."""
        return [self.jobs, self.counts, self.throughput, self.queues, self.workers, self.occurrences, self.schema]

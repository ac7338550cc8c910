"""What differs between PostgreSQL, MySQL/MariaDB and SQLite, in one place: the clock, row locks,
inserts that keep an existing row, and counters added to in place.

Everything else the store says is portable SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Double, Select, Table, literal_column, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from .engines import MYSQL, POSTGRESQL, SQLITE

# The database server's clock in epoch seconds. PostgreSQL's clock_timestamp() is the time of the
# call, not of the transaction's start; MySQL's UTC_TIMESTAMP is read in UTC whatever the session's
# time zone, so no daylight-saving hour is ever ambiguous.
_CLOCKS = {
    POSTGRESQL: "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
    MYSQL: "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) / 1000000.0",
}

#: A SELECT statement, whatever its columns (a lock or a hint keeps them).
Q = TypeVar("Q", bound="Select[Any]")

#: MySQL's error number for a duplicate key.
_MYSQL_DUPLICATE_KEY = 1062

#: Rows per multi-row ``INSERT``: below every family's limit on bound parameters (SQLite: 32,766).
INSERT_CHUNK = 500


class Dialect:
    """The SQL of one database family.

    :param family: ``postgresql``, ``mysql`` or ``sqlite`` (see :func:`~.engines.family_of`).
    """

    def __init__(self, family: str) -> None:
        self.family = family
        #: ``FOR UPDATE SKIP LOCKED``: PostgreSQL 9.5+, MySQL 8.0+, MariaDB 10.6+. SQLite has no row
        #: locks: its ``BEGIN IMMEDIATE`` transaction holds the one write lock of the whole database.
        self.row_locks = family != SQLITE
        #: ``INSERT … ON CONFLICT DO NOTHING RETURNING``; MySQL has neither clause.
        self.returning = family != MYSQL
        self._insert: Any = {POSTGRESQL: postgresql.insert, MYSQL: mysql.insert, SQLITE: sqlite.insert}[family]
        self._adders: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Any] = {}

    def clock(self) -> Any:
        """The statement that reads the server's clock (epoch seconds), or ``None`` on SQLite, whose
        server is this machine: its clock is :func:`time.time`."""
        column = self.clock_column()
        return None if column is None else select(column)

    def clock_column(self) -> Any:
        """The server's clock as a column to add to a query (it saves a round trip), or ``None`` on SQLite."""
        expression = _CLOCKS.get(self.family)
        return None if expression is None else literal_column(expression, Double()).label("db_now")

    def lock(self, query: Q, *, skip_locked: bool = False) -> Q:
        """``query … FOR UPDATE`` (``SKIP LOCKED`` when asked) where rows can be locked."""
        if not self.row_locks:
            return query
        return query.with_for_update(skip_locked=skip_locked)

    def walk(self, query: Q, table: Table, index: str) -> Q:
        """``query`` made to read ``table`` through ``index``.

        MariaDB and MySQL often read a whole table and sort it rather than walk an index to the
        ``LIMIT`` when most rows match the ``WHERE`` (a queue that is all ready, say), which would make
        a claim cost O(n log n); the others choose the index on their own.
        """
        if self.family != MYSQL:
            return query
        hint = f"FORCE INDEX ({index})"
        return query.with_hint(table, hint, dialect_name="mysql").with_hint(table, hint, dialect_name="mariadb")

    def insert_new(self, tx_execute: Any, table: Table, key: str, row: Mapping[str, Any]) -> bool:
        """Insert ``row`` unless a row with the same ``key`` exists; whether it was inserted.

        PostgreSQL and SQLite: ``ON CONFLICT DO NOTHING RETURNING`` (the row count of an insert is
        not reported through SQLAlchemy). MySQL's only such statement, ``INSERT IGNORE``, also turns
        other errors (a value too long) into warnings, so there it is a plain ``INSERT`` whose
        duplicate key is caught; InnoDB undoes only that statement, not the transaction.
        """
        if self.family == MYSQL:
            try:
                tx_execute(table.insert(), dict(row))
            except IntegrityError as exc:
                if getattr(exc.orig, "args", (None,))[0] != _MYSQL_DUPLICATE_KEY:
                    raise
                return False
            return True
        statement: Any = self._insert(table).on_conflict_do_nothing(index_elements=[key])
        return tx_execute(statement.returning(table.c[key]), dict(row)).first() is not None

    def insert_missing(self, table: Table) -> Any:
        """An ``INSERT`` of rows that may exist already (keyed by the primary key), kept as they are.

        Its row count is not reported on PostgreSQL: use it where that does not matter.
        """
        statement: Any = self._insert(table)
        if self.family == MYSQL:
            return statement.prefix_with("IGNORE")
        return statement.on_conflict_do_nothing()

    def add_to(self, table: Table, keys: tuple[str, ...], added: tuple[str, ...]) -> Any:
        """A statement, run with one parameter set per row, that adds each row's ``added`` columns to
        the stored row with the same ``keys``, inserting the rows that are not there yet (counters).

        Rows are locked in the order given: callers sort them, so two transactions never wait for
        each other the other way round. Built once per table: it is on every job's path.
        """
        cache_key = (table.name, keys, added)
        statement = self._adders.get(cache_key)
        if statement is None:
            statement = self._insert(table)
            if self.family == MYSQL:
                statement = statement.on_duplicate_key_update(
                    {name: table.c[name] + statement.inserted[name] for name in added}
                )
            else:
                statement = statement.on_conflict_do_update(
                    index_elements=list(keys), set_={name: table.c[name] + statement.excluded[name] for name in added}
                )
            self._adders[cache_key] = statement
        return statement

    def replace(self, table: Table, row: Mapping[str, Any], keys: Sequence[str]) -> Any:
        """One statement that writes ``row`` over the stored row with the same ``keys``, or inserts it."""
        statement: Any = self._insert(table).values(dict(row))
        changed = {name: value for name, value in row.items() if name not in keys}
        if self.family == MYSQL:
            return statement.on_duplicate_key_update(changed)
        return statement.on_conflict_do_update(index_elements=list(keys), set_=changed)

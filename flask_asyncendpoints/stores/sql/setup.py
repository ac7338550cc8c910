"""Creating the store's tables, recording their schema version, and migrating them.

The tables are created on the store's first use (or by ``flask asyncendpoints init-db``) under a
lock, so that processes starting together create them once: PostgreSQL's advisory lock, MySQL's
``GET_LOCK``, SQLite's write lock. The ``{prefix}_schema`` table holds one row per version applied;
a later release that changes the tables adds a migration step here, from each older version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.schema import CreateIndex, CreateTable

from ...errors import ConfigurationError, StoreError
from .dialects import Dialect
from .engines import MYSQL, POSTGRESQL, SQLITE
from .schema import SCHEMA_VERSION, Tables

#: Seconds MySQL waits for another process creating the tables.
LOCK_TIMEOUT = 60

#: Steps from each older schema version to the next one: none yet (version 1 is the first).
MIGRATIONS: dict[int, Callable[[Any, Tables], None]] = {}


class SchemaManager:
    """Makes sure the store's tables exist at this release's schema version, once per process.

    :param engine: the store's engine.
    :param tables: the store's tables.
    :param dialect: the SQL of the database family.
    :param where: the database, as messages name it.
    :param create: create missing tables on first use (else only :meth:`ensure` with ``force``).
    """

    def __init__(self, engine: Any, tables: Tables, dialect: Dialect, where: str, *, create: bool) -> None:
        self.engine = engine
        self.tables = tables
        self.dialect = dialect
        self.where = where
        self.create = create
        self._lock = threading.Lock()
        self._version: int | None = None

    def ensure(self, *, force: bool = False) -> int:
        """The schema version of the tables, after creating or migrating them when needed.

        :param force: check again and create the tables even if this store does not create them
            on first use (``init-db``).
        :raises ConfigurationError: when the tables are missing and may not be created here, or a
            newer release made them.
        :raises StoreError: when the database cannot be reached.
        """
        if self._version is not None and not force:
            return self._version
        with self._lock:
            if self._version is None or force:
                try:
                    self._version = self._ensure(create=self.create or force)
                except sa_exc.SQLAlchemyError as exc:
                    reason = getattr(exc, "orig", None) or exc
                    raise StoreError(
                        f"The job store ({self.where}) could not check or create its tables: {reason}. "
                        "Check that the database server is running and that its user may create tables."
                    ) from exc
            return self._version

    def _ensure(self, *, create: bool) -> int:
        family = self.dialect.family
        with self.engine.connect() as conn:
            if family == SQLITE:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif family == POSTGRESQL:
                conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(self.tables.schema.name))))
            else:
                got = conn.execute(
                    text("SELECT GET_LOCK(:name, :timeout)"), {"name": self.tables.schema.name, "timeout": LOCK_TIMEOUT}
                )
                if got.scalar() != 1:
                    raise StoreError(f"Timed out waiting for another process creating the tables on {self.where}.")
            try:
                version = self._current(conn)
                if version is None:
                    if not create:
                        raise ConfigurationError(
                            f"The job store's tables ({self.tables.prefix}_jobs, ...) do not exist on {self.where}. "
                            "Create them with 'flask asyncendpoints init-db' (or from its --sql output)."
                        )
                    self.tables.metadata.create_all(conn, checkfirst=True)
                    self._record(conn, SCHEMA_VERSION)
                    version = SCHEMA_VERSION
                elif version > SCHEMA_VERSION:
                    raise ConfigurationError(
                        f"The job store's tables on {self.where} are at schema version {version}, made by a newer "
                        f"release of flask-asyncendpoints; this one knows up to version {SCHEMA_VERSION}. Upgrade it."
                    )
                while version < SCHEMA_VERSION:
                    MIGRATIONS[version](conn, self.tables)
                    version += 1
                    self._record(conn, version)
                conn.commit()
            finally:
                if family == MYSQL:
                    conn.execute(text("DO RELEASE_LOCK(:name)"), {"name": self.tables.schema.name})
            return version

    def _current(self, conn: Any) -> int | None:
        if not inspect(conn).has_table(self.tables.schema.name):
            return None
        version = conn.execute(select(func.max(self.tables.schema.c.version))).scalar()
        return None if version is None else int(version)

    def _record(self, conn: Any, version: int) -> None:
        conn.execute(insert(self.tables.schema).values(version=version, applied_at=time.time()))

    def ddl(self) -> str:
        """The statements that create the tables on this database, and the row that records their version."""
        dialect = self.engine.dialect
        statements = []
        for table in self.tables.all:
            statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
            for index in sorted(table.indexes, key=lambda index: str(index.name)):
                statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
        schema = self.tables.schema.name
        statements.append(f"INSERT INTO {schema} (version, applied_at) VALUES ({SCHEMA_VERSION}, 0)")
        return ";\n\n".join(statements) + ";\n"

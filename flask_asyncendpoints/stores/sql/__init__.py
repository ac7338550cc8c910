"""The SQL store, :class:`SQLStore`: PostgreSQL, MySQL/MariaDB and SQLite through SQLAlchemy Core.

The modules, each importing only those listed after it:

- ``store``: :class:`SQLStore`, one method per store operation, each one transaction.
- ``reads``: monitoring reads, the worker registry, recurring-job occurrences.
- ``endings``: the transactions that end attempts and jobs (complete, fail, cancel, recover, purge…).
- ``lifecycle``: the transactions that create, claim and renew jobs.
- ``rows``: where a job sits in the indexes for each status, and the counter rows that follow it.
- ``codec``: rows to :class:`~flask_asyncendpoints.jobs.Job` and back.
- ``setup``: creating the tables, the schema version, migrations, the DDL.
- ``notify``: this process's waiters, and PostgreSQL's ``LISTEN`` thread.
- ``txn``: one operation, one transaction: retries, the database's clock, errors as ``StoreError``.
- ``dialects``: what differs between the three database families.
- ``engines``: URLs, drivers and engine options.
- ``schema``: the tables and their indexes.
"""

from __future__ import annotations

from .engines import SCHEMES, create_engine_for
from .schema import SCHEMA_VERSION, Tables
from .store import SQLStore

__all__ = ["SCHEMA_VERSION", "SCHEMES", "SQLStore", "Tables", "create_engine_for"]

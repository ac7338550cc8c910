"""The DDL shown in the docs is the DDL the store runs."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")

from flask_asyncendpoints.stores.sql import SQLStore

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_documented_postgresql_ddl_is_the_stores() -> None:
    # No connection is made: the DDL is compiled for the URL's database.
    store = SQLStore.from_url("postgresql://user@localhost/app")
    try:
        assert (DOCS / "sql" / "postgresql.sql").read_text() == store.ddl(), (
            "docs/sql/postgresql.sql is out of date: write SQLStore.from_url('postgresql://…').ddl() to it"
        )
    finally:
        store.close()

"""Part of the store contract suite over a store of "our own", as a third-party store's tests run it.

docs/writing-a-store.rst shows this module as it is: keep it short and self-contained.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flask_asyncendpoints.stores import Store
from flask_asyncendpoints.testing.contract import CancelContract, ClaimContract, CreateContract, HistoryContract

pytest.importorskip("sqlalchemy")

from flask_asyncendpoints.stores.sql import SQLStore  # stands for "your store" here


class TestMyStore(CreateContract, ClaimContract, CancelContract, HistoryContract):
    """The rules of creating, claiming, canceling and the history, over a fresh store per test."""

    @pytest.fixture
    def history_limit(self) -> int:
        return 5  # the store below keeps 5 attempts, not the default 10

    @pytest.fixture
    def store(self, tmp_path: Path, history_limit: int) -> Iterator[Store]:
        store = SQLStore.from_url(f"sqlite:///{tmp_path / 'jobs.db'}", history_limit=history_limit)
        yield store
        store.close()

"""The store contract suite: every rule of :class:`~flask_asyncendpoints.stores.Store`, as tests.

Every built-in store passes it (memory, Redis, fakeredis). To test a store of your own, subclass
:class:`StoreContract` in your tests and give it a ``store`` fixture that answers a fresh, empty store
for each test::

    import pytest

    from flask_asyncendpoints.testing.contract import StoreContract


    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = MyStore("…")
            yield store
            store.close()

Or subclass only some of the classes that :class:`StoreContract` is made of (``CancelContract``,
``MonitoringContract`` …), each of which needs the same fixture.

Time: every call passes ``now`` (epoch seconds) explicitly, as offsets from :data:`T0`
(2026-01-01T00:00:00Z), so no test sleeps or reads a clock. A few tests check that the store's own
clock is used when ``now`` is ``None``: they need that clock to read :data:`T0` or later (any real
clock does; the memory store takes a ``clock`` that starts there). Tests of blocking calls
(:meth:`~flask_asyncendpoints.stores.Store.wait_for_work`, :meth:`~flask_asyncendpoints.stores.Store.wait_and_claim`,
long-polls) wait on threads and events,
with timeouts far above what they need.

Two fixtures may be overridden: ``history_limit`` (the ``history_limit`` the ``store`` fixture's store
was made with; :data:`~flask_asyncendpoints.stores.DEFAULT_HISTORY_LIMIT` unless changed) and
``watches_cancels`` (``False`` for a store that keeps the default
:meth:`~flask_asyncendpoints.stores.Store.watch_cancels`, which never calls).

This package imports pytest; the library does not need it otherwise.
"""

from __future__ import annotations

from .cancel import CancelContract
from .history import HistoryContract, LogsContract
from .leases import LeaseContract
from .lifecycle import ClaimContract, CompleteContract, CreateContract, CreateManyContract, FailContract
from .monitoring import MonitoringContract, WorkersContract
from .queues import OccurrenceContract, QueuesContract, WaitAndClaimContract, WaitContract
from .support import LEASE, T0, TTL, an_error, assert_claimed_exactly_once, claim_ids, claim_one, new_id, submit
from .upkeep import OperatorContract, PurgeAndCountsContract

__all__ = [
    "LEASE",
    "T0",
    "TTL",
    "CancelContract",
    "ClaimContract",
    "CompleteContract",
    "CreateContract",
    "CreateManyContract",
    "FailContract",
    "HistoryContract",
    "LeaseContract",
    "LogsContract",
    "MonitoringContract",
    "OccurrenceContract",
    "OperatorContract",
    "PurgeAndCountsContract",
    "QueuesContract",
    "StoreContract",
    "WaitAndClaimContract",
    "WaitContract",
    "WorkersContract",
    "an_error",
    "assert_claimed_exactly_once",
    "claim_ids",
    "claim_one",
    "contract_classes",
    "new_id",
    "submit",
]


class StoreContract(
    CreateContract,
    CreateManyContract,
    ClaimContract,
    QueuesContract,
    CompleteContract,
    FailContract,
    LeaseContract,
    CancelContract,
    HistoryContract,
    LogsContract,
    PurgeAndCountsContract,
    OperatorContract,
    WaitContract,
    WaitAndClaimContract,
    MonitoringContract,
    WorkersContract,
    OccurrenceContract,
):
    """The whole contract. Subclass it in a test module and give it a ``store`` fixture."""


def contract_classes() -> list[type]:
    """The classes :class:`StoreContract` is made of."""
    return [cls for cls in StoreContract.__mro__[1:] if cls.__name__.endswith("Contract")]

"""The store contract, written once in :mod:`flask_asyncendpoints.testing.contract`, run against every
store of the ``store`` fixture (memory, fakeredis, real Redis)."""

from __future__ import annotations

from flask_asyncendpoints.testing import contract
from flask_asyncendpoints.testing.contract import (
    LEASE,
    TTL,
    StoreContract,
    an_error,
    assert_claimed_exactly_once,
    claim_one,
    new_id,
    submit,
)

from ..conftest import T0

# The store-specific tests build on these.
__all__ = ["LEASE", "TTL", "an_error", "assert_claimed_exactly_once", "claim_one", "new_id", "submit"]


class TestStoreContract(StoreContract):
    """Every rule of the store contract, on each store of the ``store`` fixture."""


def test_no_contract_test_hides_another() -> None:
    names = [name for cls in contract.contract_classes() for name in vars(cls) if name.startswith("test_")]
    assert len(names) == len(set(names)), "two contract classes have a test of one name: only one would run"
    assert len(names) > 100


def test_the_contract_starts_where_the_fixtures_clock_does() -> None:
    assert contract.T0 == T0

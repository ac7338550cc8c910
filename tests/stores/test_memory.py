"""Memory-store behaviour beyond the shared contract."""

from __future__ import annotations

from flask_asyncendpoints.stores import MemoryStore

from ..conftest import FakeClock
from .test_contract import assert_claimed_exactly_once


def test_eight_threads_claim_ten_thousand_jobs_each_exactly_once(clock: FakeClock) -> None:
    assert_claimed_exactly_once(MemoryStore(clock=clock), total=10_000)

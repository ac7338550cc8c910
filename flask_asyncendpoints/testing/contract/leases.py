"""Leases: renewal, recovery of the expired, release, and progress while a lease is held."""

from __future__ import annotations

from ...jobs import JobStatus, from_timestamp
from ...stores import LeaseState, Store
from ...stores.base import LEASE_EXPIRED_CODE
from .support import LEASE, T0, TTL, _stored, claim_one, submit


class LeaseContract:
    def test_renew_keeps_the_lease(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)

        assert store.renew([(job_id, claimed.token)], LEASE, now=T0 + 20) == {job_id: LeaseState.HELD}
        assert store.recover(result_ttl=TTL, now=T0 + 40) == []
        assert store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 45) is not None

    def test_expired_lease_is_recovered_with_a_retry_counted(self, store: Store) -> None:
        job_id = submit(store, max_retries=2)
        claimed = claim_one(store, T0)

        assert store.recover(result_ttl=TTL, now=T0 + LEASE) == []
        recovered = store.recover(result_ttl=TTL, now=T0 + LEASE + 1)

        assert [job.id for job in recovered] == [job_id]
        job = _stored(store, job_id)
        assert job.status is JobStatus.QUEUED and job.retry_count == 1
        assert store.renew([(job_id, claimed.token)], LEASE, now=T0 + 32) == {job_id: LeaseState.LOST}
        assert store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 32) is None
        again = claim_one(store, T0 + 33)
        assert again.job.id == job_id

    def test_expired_lease_without_retries_fails_with_a_structured_error(self, store: Store) -> None:
        job_id = submit(store, max_retries=0)
        claim_one(store, T0)

        (recovered,) = store.recover(result_ttl=TTL, now=T0 + 100)

        job = _stored(store, job_id)
        assert job == recovered
        assert job.status is JobStatus.FAILED
        assert job.error is not None and job.error.code == LEASE_EXPIRED_CODE and job.error.message
        assert job.completed_at == from_timestamp(T0 + 100)

    def test_recover_takes_at_most_the_limit(self, store: Store) -> None:
        for _ in range(5):
            submit(store)
        store.claim(5, LEASE, now=T0)
        assert len(store.recover(result_ttl=TTL, limit=3, now=T0 + 100)) == 3
        assert len(store.recover(result_ttl=TTL, limit=3, now=T0 + 100)) == 2

    def test_release_requeues_without_counting_a_retry(self, store: Store) -> None:
        first = submit(store, now=T0)
        claimed = claim_one(store, T0)
        second = submit(store, now=T0 + 1)

        assert store.release(first, claimed.token, now=T0 + 2)

        job = _stored(store, first)
        assert job.status is JobStatus.QUEUED and job.retry_count == 0
        assert store.complete(first, claimed.token, "1", result_ttl=TTL, now=T0 + 3) is None
        assert {c.job.id for c in store.claim(5, LEASE, now=T0 + 3)} == {first, second}

    def test_progress_is_visible_and_cleared_on_the_next_attempt(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)

        assert store.set_progress(job_id, claimed.token, 0.25, "a quarter", now=T0 + 1)

        job = _stored(store, job_id)
        assert job.progress is not None
        assert (job.progress.fraction, job.progress.message) == (0.25, "a quarter")
        assert job.progress.updated_at == from_timestamp(T0 + 1)
        store.release(job_id, claimed.token, now=T0 + 2)
        again = claim_one(store, T0 + 2)
        assert again.job.progress is None

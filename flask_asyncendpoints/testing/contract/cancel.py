"""Cancel: of queued, scheduled, running and finished jobs, and how a running job asked to cancel ends."""

from __future__ import annotations

import threading

import pytest

from ...jobs import AttemptOutcome, AttemptRecord, ClaimedJob, Job, JobError, JobStatus, from_timestamp
from ...stores import CancelResult, LeaseState, Store
from ...stores.base import LEASE_EXPIRED_CODE
from .support import LEASE, T0, TTL, an_error, claim_one, submit


def _running_with_a_cancel_requested(store: Store, *, max_retries: int = 3, now: float = T0) -> ClaimedJob:
    submit(store, max_retries=max_retries, now=now)
    claimed = claim_one(store, now, worker_id="worker-1")
    outcome, job = store.cancel(claimed.job.id, result_ttl=TTL, now=now + 1)
    assert outcome is CancelResult.REQUESTED
    assert job is not None and job.cancel_requested
    return claimed


class CancelContract:
    """Queued and scheduled jobs are canceled at once; finished ones stay; running ones follow the cancel rule."""

    @pytest.fixture
    def watches_cancels(self) -> bool:
        """Whether the store calls :meth:`~flask_asyncendpoints.stores.Store.watch_cancels` callbacks."""
        return True

    def test_cancel_a_queued_job(self, store: Store) -> None:
        job_id = submit(store)

        outcome, job = store.cancel(job_id, result_ttl=TTL, now=T0 + 1)

        assert outcome is CancelResult.CANCELED
        assert job is not None and job == store.get(job_id)
        assert job.status is JobStatus.CANCELED and job.completed_at == from_timestamp(T0 + 1)
        assert store.claim(5, LEASE, now=T0 + 2) == []

    def test_cancel_a_scheduled_job(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        store.fail(job_id, claimed.token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0)

        outcome, job = store.cancel(job_id, result_ttl=TTL, now=T0 + 0.5)

        assert outcome is CancelResult.CANCELED
        assert job is not None and job.status is JobStatus.CANCELED and job.retry_delay_until is None
        assert store.claim(5, LEASE, now=T0 + 5) == []

    def test_cancel_a_running_job_is_a_request_the_worker_sees(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)

        outcome, job = store.cancel(job_id, result_ttl=TTL, now=T0 + 1)

        assert outcome is CancelResult.REQUESTED
        assert job is not None and job.status is JobStatus.IN_PROGRESS and job.cancel_requested
        assert store.renew([(job_id, claimed.token)], LEASE, now=T0 + 2) == {job_id: LeaseState.CANCEL_REQUESTED}
        finished = store.finish_canceled(job_id, claimed.token, result_ttl=TTL, now=T0 + 3)
        assert finished is not None and finished.status is JobStatus.CANCELED
        assert finished.completed_at == from_timestamp(T0 + 3)

    def test_cancel_a_finished_job_changes_nothing(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        done = store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0)

        assert store.cancel(job_id, result_ttl=TTL, now=T0 + 1) == (CancelResult.FINISHED, done)

    def test_a_second_cancel_of_a_running_job_is_still_a_request(self, store: Store) -> None:
        claimed = _running_with_a_cancel_requested(store)

        outcome, job = store.cancel(claimed.job.id, result_ttl=TTL, now=T0 + 2)

        assert outcome is CancelResult.REQUESTED
        assert job is not None and job.status is JobStatus.IN_PROGRESS and job.cancel_requested

    def _assert_canceled(self, store: Store, job: Job | None, job_id: str, now: float) -> Job:
        """The cancel rule's outcome: ``Canceled`` with ``completedAt``, no result, the stored job answered."""
        assert job is not None, "the attempt held the lease: the canceled job is answered"
        assert job == store.get(job_id)
        assert job.status is JobStatus.CANCELED
        assert job.completed_at == job.last_updated_at == from_timestamp(now)
        assert job.result is None
        assert store.counts()[JobStatus.CANCELED] == 1
        assert store.counts()[JobStatus.IN_PROGRESS] == 0
        assert store.claim(5, LEASE, now=now + 3600) == []
        return job

    def _last_attempt(self, store: Store, job_id: str) -> AttemptRecord:
        records = store.attempts(job_id)
        assert records, "every attempt that ends is in the history"
        return records[-1]

    def test_a_completion_after_a_cancel_request_cancels(self, store: Store) -> None:
        claimed = _running_with_a_cancel_requested(store)
        job_id = claimed.job.id

        job = store.complete(job_id, claimed.token, '{"ignored": true}', result_ttl=TTL, now=T0 + 2)

        self._assert_canceled(store, job, job_id, T0 + 2)
        record = self._last_attempt(store, job_id)
        assert record.outcome is AttemptOutcome.CANCELED and record.error_code is None
        assert store.counts()[JobStatus.COMPLETED] == 0
        assert store.throughput(now=T0 + 2).minutes[-1].completed == 0

    def test_a_batched_completion_after_a_cancel_request_cancels(self, store: Store) -> None:
        claimed = _running_with_a_cancel_requested(store)
        other = submit(store)
        (other_claimed,) = store.claim(1, LEASE, now=T0)

        canceled, completed = store.complete_many(
            [(claimed, '{"ignored": true}'), (other_claimed, '"kept"')], result_ttl=TTL, now=T0 + 2
        )

        self._assert_canceled(store, canceled, claimed.job.id, T0 + 2)
        assert completed is not None and completed.status is JobStatus.COMPLETED and completed.result == "kept"
        assert completed == store.get(other)

    @pytest.mark.parametrize("retry_delay", [1.0, None], ids=["with a retry left", "failing for good"])
    def test_a_failure_after_a_cancel_request_cancels(self, store: Store, retry_delay: float | None) -> None:
        earlier = JobError(code="EARLIER", message="the first attempt failed")
        job_id = submit(store, max_retries=3)
        first = claim_one(store, T0)
        store.fail(job_id, first.token, earlier, retry_delay=0.0, result_ttl=TTL, now=T0)
        claimed = claim_one(store, T0, worker_id="worker-2")
        assert store.cancel(job_id, result_ttl=TTL, now=T0 + 1)[0] is CancelResult.REQUESTED

        job = store.fail(job_id, claimed.token, an_error(), retry_delay=retry_delay, result_ttl=TTL, now=T0 + 2)

        job = self._assert_canceled(store, job, job_id, T0 + 2)
        assert job.error == earlier, "the canceled attempt's error is kept in its record only"
        assert job.retry_count == 1
        assert job.retry_delay_until is None
        record = self._last_attempt(store, job_id)
        assert record.outcome is AttemptOutcome.CANCELED
        assert (record.error_code, record.error_message) == ("VALUEERROR", "bad value")
        assert (record.number, record.worker_id) == (2, "worker-2")
        assert store.throughput(now=T0 + 2).minutes[-1].failed == 0

    def test_finish_canceled_after_a_cancel_request(self, store: Store) -> None:
        claimed = _running_with_a_cancel_requested(store)

        job = store.finish_canceled(claimed.job.id, claimed.token, result_ttl=TTL, now=T0 + 2)

        self._assert_canceled(store, job, claimed.job.id, T0 + 2)
        assert self._last_attempt(store, claimed.job.id).outcome is AttemptOutcome.CANCELED

    def test_a_release_after_a_cancel_request_cancels(self, store: Store) -> None:
        claimed = _running_with_a_cancel_requested(store)  # the cancel gave result_ttl=TTL

        assert store.release(claimed.job.id, claimed.token, now=T0 + 2) is True

        self._assert_canceled(store, store.get(claimed.job.id), claimed.job.id, T0 + 2)
        assert self._last_attempt(store, claimed.job.id).outcome is AttemptOutcome.CANCELED
        assert store.purge(now=T0 + 2 + TTL - 1) == 0
        assert store.purge(now=T0 + 2 + TTL) == 1, "it expires after the result_ttl its cancel gave"
        assert store.get(claimed.job.id) is None

    @pytest.mark.parametrize("max_retries", [3, 0], ids=["with a retry left", "no retry left"])
    def test_a_recovery_after_a_cancel_request_cancels(self, store: Store, max_retries: int) -> None:
        claimed = _running_with_a_cancel_requested(store, max_retries=max_retries)

        (recovered,) = store.recover(result_ttl=TTL, now=T0 + LEASE + 1)

        job = self._assert_canceled(store, recovered, claimed.job.id, T0 + LEASE + 1)
        assert job.error is None and job.retry_count == 0
        record = self._last_attempt(store, claimed.job.id)
        assert record.outcome is AttemptOutcome.CANCELED and record.error_code == LEASE_EXPIRED_CODE
        assert store.complete(claimed.job.id, claimed.token, "1", result_ttl=TTL, now=T0 + LEASE + 2) is None

    def test_a_lost_lease_answers_none_after_a_cancel_request(self, store: Store) -> None:
        claimed = _running_with_a_cancel_requested(store)
        store.recover(result_ttl=TTL, now=T0 + LEASE + 1)
        before = store.get(claimed.job.id)

        assert store.complete(claimed.job.id, claimed.token, "1", result_ttl=TTL, now=T0 + 40) is None
        assert (
            store.fail(claimed.job.id, claimed.token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0 + 40) is None
        )
        assert store.finish_canceled(claimed.job.id, claimed.token, result_ttl=TTL, now=T0 + 40) is None
        assert store.release(claimed.job.id, claimed.token, now=T0 + 40) is False
        assert store.get(claimed.job.id) == before

    def test_watchers_hear_a_cancel_of_a_running_job(self, store: Store, watches_cancels: bool) -> None:
        if not watches_cancels:
            pytest.skip("this store keeps the default watch_cancels, which never calls")
        queued = submit(store)
        running = submit(store)
        store.cancel(queued, result_ttl=TTL, now=T0)  # canceled at once: nothing to hear
        claimed = claim_one(store, T0)
        assert claimed.job.id == running
        heard: list[tuple[str, bool]] = []
        got_it = threading.Event()

        def watcher(job_id: str) -> None:
            # Called outside the store's locks, once the request is stored: the store can be read.
            job = store.get(job_id)
            heard.append((job_id, job is not None and job.cancel_requested))
            got_it.set()

        stop = store.watch_cancels(watcher)
        try:
            canceling = threading.Thread(
                target=store.cancel, args=(running,), kwargs={"result_ttl": TTL, "now": T0 + 1}
            )
            canceling.start()
            canceling.join(10)
            assert not canceling.is_alive(), "cancel must not wait for the watchers"
            assert got_it.wait(10), "a watcher hears of the cancel of a running job"
            assert heard == [(running, True)]
        finally:
            stop()

    def test_a_watcher_stopped_hears_no_more(self, store: Store, watches_cancels: bool) -> None:
        if not watches_cancels:
            pytest.skip("this store keeps the default watch_cancels, which never calls")
        first, second = (submit(store) for _ in range(2))
        store.claim(2, LEASE, now=T0)
        stopped: list[str] = []
        still: list[str] = []
        heard_second = threading.Event()

        def keep(job_id: str) -> None:
            still.append(job_id)
            if job_id == second:
                heard_second.set()

        stop = store.watch_cancels(stopped.append)
        stop_still = store.watch_cancels(keep)
        try:
            stop()
            store.cancel(first, result_ttl=TTL, now=T0 + 1)
            store.cancel(second, result_ttl=TTL, now=T0 + 1)
            assert heard_second.wait(10)
        finally:
            stop_still()
        assert still == [first, second]
        assert stopped == []

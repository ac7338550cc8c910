"""The store contract: written once, run against every store (memory, fakeredis, real Redis).

Every call passes ``now`` explicitly, so time is driven by the test and never read from a clock.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from flask_asyncendpoints import JobFailure
from flask_asyncendpoints.jobs import ClaimedJob, JobError, JobPayload, JobStatus, from_timestamp
from flask_asyncendpoints.stores import CancelResult, LeaseState, NewJob, PendingLimitReached, Store

from ..conftest import T0

LEASE = 30.0
TTL = 3600.0


def new_id() -> str:
    return str(uuid.uuid4())


def submit(store: Store, *, now: float = T0, max_retries: int = 3, name: str = "Work", body: object = None) -> str:
    job_id = new_id()
    store.create(job_id, name, JobPayload(body=body), max_retries=max_retries, now=now)
    return job_id


def claim_one(store: Store, now: float):
    claimed = store.claim(1, LEASE, now=now)
    assert len(claimed) == 1
    return claimed[0]


def an_error() -> JobError:
    try:
        try:
            raise KeyError("missing")
        except KeyError as inner:
            raise ValueError("bad value") from inner
    except ValueError as exc:
        return JobError.from_exception(exc)


class TestCreateAndGet:
    def test_new_job_is_queued_with_its_fields(self, store: Store) -> None:
        payload = JobPayload(
            body={"data": "héllo", "n": [1, 2.5, None, True]},
            headers=(("Content-Type", "application/json"), ("X-Trace", "abc")),
            route_params={"item_id": 7},
            query_params={"q": ["a", "b"]},
        )
        job_id = new_id()
        job, created = store.create(job_id, "ProcessData", payload, max_retries=2, now=T0 + 1.5)

        assert created
        assert job == store.get(job_id)
        assert job.id == job_id
        assert job.name == "ProcessData"
        assert job.status is JobStatus.QUEUED
        assert (job.retry_count, job.max_retries) == (0, 2)
        assert job.created_at == job.last_updated_at == from_timestamp(T0 + 1.5)
        assert job.started_at is job.completed_at is job.retry_delay_until is None
        assert job.result is job.error is job.progress is None
        assert job.payload == payload

    def test_unknown_id_is_none(self, store: Store) -> None:
        assert store.get(new_id()) is None

    def test_create_is_idempotent_on_the_id(self, store: Store) -> None:
        job_id = new_id()
        first, created = store.create(job_id, "Work", JobPayload(body=1), max_retries=3, now=T0)
        again, created_again = store.create(job_id, "Other", JobPayload(body=2), max_retries=9, now=T0 + 5)

        assert created and not created_again
        assert again == first
        assert store.counts()[JobStatus.QUEUED] == 1
        assert len(store.claim(10, LEASE, now=T0 + 6)) == 1

    def test_pending_limit_refuses_and_stores_nothing(self, store: Store) -> None:
        for _ in range(2):
            store.create(new_id(), "Work", JobPayload(), max_retries=0, max_pending=2, now=T0)
        refused = new_id()
        with pytest.raises(PendingLimitReached):
            store.create(refused, "Work", JobPayload(), max_retries=0, max_pending=2, now=T0)

        assert store.get(refused) is None
        assert store.counts()[JobStatus.QUEUED] == 2

    def test_pending_limit_counts_running_and_frees_on_finish(self, store: Store) -> None:
        submit(store)
        claimed = claim_one(store, T0)
        with pytest.raises(PendingLimitReached):
            store.create(new_id(), "Work", JobPayload(), max_retries=0, max_pending=1, now=T0)

        store.complete(claimed.job.id, claimed.token, "null", result_ttl=TTL, now=T0 + 1)
        _, created = store.create(new_id(), "Work", JobPayload(), max_retries=0, max_pending=1, now=T0 + 1)
        assert created


class TestClaim:
    def test_claims_oldest_first_up_to_the_limit(self, store: Store) -> None:
        ids = [submit(store, now=T0 + i) for i in range(5)]

        first = store.claim(3, LEASE, now=T0 + 10)
        second = store.claim(3, LEASE, now=T0 + 10)

        assert [c.job.id for c in first] == ids[:3]
        assert [c.job.id for c in second] == ids[3:]
        assert store.claim(3, LEASE, now=T0 + 10) == []

    def test_claimed_job_is_in_progress_and_started(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0 + 2)

        assert claimed.token
        for job in (claimed.job, store.get(job_id)):
            assert job is not None
            assert job.status is JobStatus.IN_PROGRESS
            assert job.started_at == job.last_updated_at == from_timestamp(T0 + 2)

    @pytest.mark.parametrize("now", [T0 + 2, None], ids=["given time", "store clock"])
    def test_the_claimed_job_is_the_stored_one(self, store: Store, now: float | None) -> None:
        payload = JobPayload(body={"n": [1, "two"]}, headers=(("X-Trace", "t"),), query_params={"q": ["a"]})
        job_id = store.create(new_id(), "Work", payload, max_retries=2, now=T0)[0].id
        first = claim_one(store, T0)
        assert store.set_progress(job_id, first.token, 0.5, "half", now=T0)
        assert store.cancel(job_id, result_ttl=TTL, now=T0)[0] is CancelResult.REQUESTED
        error = JobError(code="BOOM", message="the first attempt failed")
        store.fail(job_id, first.token, error, retry_delay=0.0, result_ttl=TTL, now=T0)

        (claimed,) = store.claim(1, LEASE, now=now)

        assert claimed.job == store.get(job_id)
        assert claimed.job.error == error  # kept until an attempt succeeds
        assert claimed.job.progress is None and not claimed.job.cancel_requested  # the last attempt's
        assert claimed.job.retry_count == 1
        assert claimed.job.payload == payload

    def test_tokens_differ_per_attempt(self, store: Store) -> None:
        submit(store)
        first = claim_one(store, T0)
        store.release(first.job.id, first.token, now=T0 + 1)
        second = claim_one(store, T0 + 1)
        assert first.token != second.token

    def test_each_job_is_claimed_by_exactly_one_of_many_threads(self, store: Store) -> None:
        assert_claimed_exactly_once(store, total=300)


def assert_claimed_exactly_once(store: Store, total: int) -> None:
    """Eight threads race to claim ``total`` jobs; every job must reach exactly one of them."""
    ids = {submit(store) for _ in range(total)}
    seen: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claimer() -> None:
        start.wait()
        while True:
            batch = store.claim(5, LEASE, now=T0 + 1)
            if not batch:
                return
            with lock:
                seen.extend(c.job.id for c in batch)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == len(ids)
    assert set(seen) == ids


class TestComplete:
    def test_complete_stores_the_result_as_json(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        result = {"processedData": "Processed: HI", "n": [1, 2.5, None], "ok": True, "s": "ünï"}

        job = store.complete(job_id, claimed.token, json.dumps(result), result_ttl=TTL, now=T0 + 3)

        assert job is not None and job == store.get(job_id)
        assert job.status is JobStatus.COMPLETED
        assert job.result == result
        assert job.completed_at == job.last_updated_at == from_timestamp(T0 + 3)
        assert job.error is None

    def test_scalar_results_survive(self, store: Store) -> None:
        for value in (None, 0, "text", [1, "two"], 2.5, False):
            job_id = submit(store)
            claimed = claim_one(store, T0)
            store.complete(job_id, claimed.token, json.dumps(value), result_ttl=TTL, now=T0)
            job = store.get(job_id)
            assert job is not None and job.result == value

    def test_a_stale_token_is_rejected_and_changes_nothing(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        before = store.get(job_id)

        assert store.complete(job_id, "not-the-token", "1", result_ttl=TTL, now=T0 + 1) is None
        assert store.fail(job_id, "not-the-token", an_error(), retry_delay=1.0, result_ttl=TTL, now=T0 + 1) is None
        assert store.set_progress(job_id, "not-the-token", 0.5, "x", now=T0 + 1) is False
        assert store.release(job_id, "not-the-token", now=T0 + 1) is False
        assert store.finish_canceled(job_id, "not-the-token", result_ttl=TTL, now=T0 + 1) is None
        assert store.get(job_id) == before
        assert store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 1) is not None

    def test_a_finished_attempt_cannot_write_twice(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 1)

        assert store.complete(job_id, claimed.token, "2", result_ttl=TTL, now=T0 + 2) is None
        assert store.fail(job_id, claimed.token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0 + 2) is None
        job = store.get(job_id)
        assert job is not None and job.result == 1 and job.status is JobStatus.COMPLETED

    def test_unknown_job_operations_answer_not_found(self, store: Store) -> None:
        missing = new_id()
        assert store.complete(missing, "t", "1", result_ttl=TTL, now=T0) is None
        assert store.renew([(missing, "t")], LEASE, now=T0) == {missing: LeaseState.LOST}
        assert store.cancel(missing, result_ttl=TTL, now=T0) == (CancelResult.NOT_FOUND, None)


class TestFailAndRetry:
    def test_failure_with_retries_left_schedules_a_retry(self, store: Store) -> None:
        job_id = submit(store, max_retries=2)
        claimed = claim_one(store, T0)
        error = an_error()

        job = store.fail(job_id, claimed.token, error, retry_delay=4.0, result_ttl=TTL, now=T0 + 1)

        assert job is not None and job == store.get(job_id)
        assert job.status is JobStatus.SCHEDULED
        assert job.retry_count == 1
        assert job.retry_delay_until == from_timestamp(T0 + 5)
        assert job.error == error
        assert job.completed_at is None

    def test_a_scheduled_job_is_claimed_only_when_due(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        store.fail(job_id, claimed.token, an_error(), retry_delay=4.0, result_ttl=TTL, now=T0 + 1)

        assert store.claim(1, LEASE, now=T0 + 4.5) == []
        retried = claim_one(store, T0 + 5)
        assert retried.job.id == job_id
        assert retried.job.status is JobStatus.IN_PROGRESS
        assert retried.job.retry_count == 1
        assert retried.job.retry_delay_until is None

    def test_due_retries_and_new_jobs_are_claimed_in_due_order(self, store: Store) -> None:
        retried = submit(store, now=T0)
        claimed = claim_one(store, T0)
        store.fail(retried, claimed.token, an_error(), retry_delay=2.0, result_ttl=TTL, now=T0)
        later = submit(store, now=T0 + 5)

        assert [c.job.id for c in store.claim(5, LEASE, now=T0 + 6)] == [retried, later]

    def test_out_of_retries_fails_for_good(self, store: Store) -> None:
        job_id = submit(store, max_retries=1)
        first = claim_one(store, T0)
        store.fail(job_id, first.token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0)
        second = claim_one(store, T0 + 1)

        job = store.fail(job_id, second.token, an_error(), retry_delay=2.0, result_ttl=TTL, now=T0 + 2)

        assert job is not None and job == store.get(job_id)
        assert job.status is JobStatus.FAILED
        assert job.retry_count == 1
        assert job.completed_at == from_timestamp(T0 + 2)
        assert store.claim(1, LEASE, now=T0 + 100) == []

    def test_no_retry_delay_fails_at_once(self, store: Store) -> None:
        job_id = submit(store, max_retries=5)
        claimed = claim_one(store, T0)
        job = store.fail(job_id, claimed.token, an_error(), retry_delay=None, result_ttl=TTL, now=T0)
        assert job is not None and job.status is JobStatus.FAILED and job.retry_count == 0

    def test_the_error_round_trips_with_its_chain(self, store: Store) -> None:
        job_id = submit(store, max_retries=0)
        claimed = claim_one(store, T0)
        error = an_error()
        store.fail(job_id, claimed.token, error, retry_delay=1.0, result_ttl=TTL, now=T0)

        job = store.get(job_id)
        assert job is not None and job.error == error
        assert job.error.code == "VALUEERROR"
        assert job.error.exception is not None
        assert job.error.exception.type == "ValueError"
        assert job.error.exception.stack_trace and "bad value" in job.error.exception.stack_trace
        inner = job.error.exception.inner_exception
        assert inner is not None and inner.type == "KeyError" and inner.message == "'missing'"

    def test_a_chosen_message_stays_chosen(self, store: Store) -> None:
        job_id = submit(store, max_retries=0)
        claimed = claim_one(store, T0)
        error = JobError.from_exception(JobFailure("shown to clients", code="SHOWN"))
        assert error.chosen
        store.fail(job_id, claimed.token, error, retry_delay=None, result_ttl=TTL, now=T0)
        job = store.get(job_id)
        assert job is not None
        assert job.error == error

    def test_a_later_success_clears_the_error(self, store: Store) -> None:
        job_id = submit(store)
        first = claim_one(store, T0)
        store.fail(job_id, first.token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0)
        second = claim_one(store, T0 + 1)

        job = store.complete(job_id, second.token, '"ok"', result_ttl=TTL, now=T0 + 2)

        assert job is not None and job.error is None and job.result == "ok" and job.retry_count == 1


class TestLeases:
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
        job = store.get(job_id)
        assert job is not None and job.status is JobStatus.QUEUED and job.retry_count == 1
        assert store.renew([(job_id, claimed.token)], LEASE, now=T0 + 32) == {job_id: LeaseState.LOST}
        assert store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 32) is None
        again = claim_one(store, T0 + 33)
        assert again.job.id == job_id

    def test_expired_lease_without_retries_fails_with_a_structured_error(self, store: Store) -> None:
        job_id = submit(store, max_retries=0)
        claim_one(store, T0)

        (recovered,) = store.recover(result_ttl=TTL, now=T0 + 100)

        job = store.get(job_id)
        assert job is not None and job == recovered
        assert job.status is JobStatus.FAILED
        assert job.error is not None and job.error.code == "LEASEEXPIRED" and job.error.message
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

        job = store.get(first)
        assert job is not None and job.status is JobStatus.QUEUED and job.retry_count == 0
        assert store.complete(first, claimed.token, "1", result_ttl=TTL, now=T0 + 3) is None
        assert {c.job.id for c in store.claim(5, LEASE, now=T0 + 3)} == {first, second}


class TestCancel:
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


class TestProgress:
    def test_progress_is_visible_and_cleared_on_the_next_attempt(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)

        assert store.set_progress(job_id, claimed.token, 0.25, "a quarter", now=T0 + 1)

        job = store.get(job_id)
        assert job is not None and job.progress is not None
        assert (job.progress.fraction, job.progress.message) == (0.25, "a quarter")
        assert job.progress.updated_at == from_timestamp(T0 + 1)
        store.release(job_id, claimed.token, now=T0 + 2)
        again = claim_one(store, T0 + 2)
        assert again.job.progress is None


class TestPurgeAndCounts:
    def test_finished_jobs_are_purged_after_their_ttl(self, store: Store) -> None:
        done = submit(store)
        claimed = claim_one(store, T0)
        store.complete(done, claimed.token, "1", result_ttl=10.0, now=T0)
        canceled = submit(store)
        store.cancel(canceled, result_ttl=20.0, now=T0)
        kept = submit(store, max_retries=0)
        claimed = claim_one(store, T0)
        store.fail(kept, claimed.token, an_error(), retry_delay=None, result_ttl=None, now=T0)

        assert store.purge(now=T0 + 9) == 0
        assert store.purge(now=T0 + 10) == 1
        assert store.get(done) is None and store.get(canceled) is not None
        assert store.purge(now=T0 + 1_000_000) == 1
        assert store.get(canceled) is None
        assert store.get(kept) is not None
        assert store.counts()[JobStatus.COMPLETED] == store.counts()[JobStatus.CANCELED] == 0
        assert store.counts()[JobStatus.FAILED] == 1

    def test_purge_respects_its_limit(self, store: Store) -> None:
        for _ in range(3):
            store.cancel(submit(store), result_ttl=1.0, now=T0)
        assert store.purge(limit=2, now=T0 + 5) == 2
        assert store.purge(limit=2, now=T0 + 5) == 1

    def test_counts_follow_every_transition(self, store: Store) -> None:
        ids = [submit(store, max_retries=1) for _ in range(6)]
        claimed = {c.job.id: c for c in store.claim(4, LEASE, now=T0)}
        store.complete(ids[0], claimed[ids[0]].token, "1", result_ttl=TTL, now=T0)
        store.fail(ids[1], claimed[ids[1]].token, an_error(), retry_delay=5.0, result_ttl=TTL, now=T0)
        store.fail(ids[2], claimed[ids[2]].token, an_error(), retry_delay=None, result_ttl=TTL, now=T0)
        store.cancel(ids[4], result_ttl=TTL, now=T0)

        assert dict(store.counts()) == {
            JobStatus.QUEUED: 1,
            JobStatus.SCHEDULED: 1,
            JobStatus.IN_PROGRESS: 1,
            JobStatus.COMPLETED: 1,
            JobStatus.FAILED: 1,
            JobStatus.CANCELED: 1,
        }


class TestWakeUp:
    def test_a_waiting_worker_wakes_when_a_job_is_created(self, store: Store) -> None:
        waiting = threading.Event()
        woke = threading.Event()

        def waiter() -> None:
            waiting.set()
            store.wait_for_work(timeout=30.0)
            woke.set()

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert waiting.wait(5)
        submit(store)
        # Far below the 30 s wait: the create itself woke the waiter.
        assert woke.wait(10)

    def test_wake_releases_a_waiter_and_is_never_lost(self, store: Store) -> None:
        woke = threading.Event()
        started = threading.Event()

        def waiter() -> None:
            started.set()
            store.wait_for_work(timeout=30.0)
            woke.set()

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert started.wait(5)
        # The waiter may or may not be blocked yet: a wake that comes first must still count.
        store.wake()
        assert woke.wait(10)


class TestWaitForFinish:
    def test_a_waiter_sees_the_job_finish(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        waiting = threading.Event()
        seen: list[object] = []

        def waiter() -> None:
            waiting.set()
            seen.append(store.wait_for_finish(job_id, timeout=30.0))

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert waiting.wait(5)
        store.complete(job_id, claimed.token, '"done"', result_ttl=TTL, now=T0 + 1)
        thread.join(10)

        assert not thread.is_alive()
        (job,) = seen
        assert job is not None
        assert job.status is JobStatus.COMPLETED  # type: ignore[attr-defined]

    def test_at_the_timeout_it_answers_the_job_as_it_is(self, store: Store) -> None:
        job_id = submit(store)
        job = store.wait_for_finish(job_id, timeout=0.01)
        assert job is not None
        assert job.status is JobStatus.QUEUED
        assert store.wait_for_finish(new_id(), timeout=0.01) is None


class TestOperatorTools:
    def test_requeue_a_failed_job(self, store: Store) -> None:
        job_id = submit(store, max_retries=0)
        claimed = claim_one(store, T0)
        error = an_error()
        store.fail(job_id, claimed.token, error, retry_delay=None, result_ttl=10.0, now=T0)

        job = store.requeue(job_id, now=T0 + 5)

        assert job is not None
        assert job == store.get(job_id)
        assert job.status is JobStatus.QUEUED
        assert job.retry_count == 0
        assert job.completed_at is None
        assert job.error == error
        assert store.counts()[JobStatus.FAILED] == 0
        again = claim_one(store, T0 + 5)
        # The requeued job's old expiry must not purge it once it finishes again.
        store.complete(job_id, again.token, "1", result_ttl=100.0, now=T0 + 6)
        assert store.purge(now=T0 + 50) == 0
        assert store.get(job_id) is not None
        assert store.purge(now=T0 + 106) == 1

    def test_only_failed_jobs_are_requeued(self, store: Store) -> None:
        queued = submit(store)
        assert store.requeue(queued, now=T0) is None
        assert store.requeue(new_id(), now=T0) is None
        job = store.get(queued)
        assert job is not None
        assert job.status is JobStatus.QUEUED

    def test_purge_finished_deletes_old_finished_jobs_only(self, store: Store) -> None:
        old = submit(store)
        claimed = claim_one(store, T0)
        store.complete(old, claimed.token, "1", result_ttl=None, now=T0)
        recent = submit(store, now=T0 + 50)
        store.cancel(recent, result_ttl=None, now=T0 + 50)
        waiting = submit(store, now=T0)

        assert store.purge_finished(60.0, now=T0 + 100) == 1

        assert store.get(old) is None
        assert store.get(recent) is not None
        assert store.get(waiting) is not None
        assert store.counts()[JobStatus.COMPLETED] == 0
        assert store.counts()[JobStatus.CANCELED] == 1


class TestCompleteMany:
    def test_each_completion_is_checked_on_its_own(self, store: Store) -> None:
        ids = [submit(store) for _ in range(3)]
        claimed = {c.job.id: c for c in store.claim(3, LEASE, now=T0)}
        completions = [
            (claimed[ids[0]], '{"n":0}'),
            (ClaimedJob(claimed[ids[1]].job, "stale-token"), '{"n":1}'),
            (claimed[ids[2]], "[2]"),
        ]

        first, stale, third = store.complete_many(completions, result_ttl=TTL, now=T0 + 1)

        assert stale is None
        assert first is not None
        assert first == store.get(ids[0])
        assert first.result == {"n": 0}
        assert third is not None
        assert third.result == [2]
        assert third.completed_at == from_timestamp(T0 + 1)
        assert third == store.get(ids[2])
        job = store.get(ids[1])
        assert job is not None
        assert job.status is JobStatus.IN_PROGRESS
        assert store.complete_many([], result_ttl=TTL, now=T0) == []

    def test_the_completed_job_is_the_stored_one_after_progress_and_a_cancel_request(self, store: Store) -> None:
        previous_error = JobError(code="BOOM", message="first attempt failed")
        job_id = submit(store)
        (first,) = store.claim(1, LEASE, now=T0)
        store.fail(job_id, first.token, previous_error, retry_delay=1.0, result_ttl=TTL, now=T0)
        (claimed,) = store.claim(1, LEASE, now=T0 + 2)
        assert store.set_progress(job_id, claimed.token, 0.5, "half way", now=T0 + 3)
        assert store.cancel(job_id, result_ttl=TTL, now=T0 + 4)[0] is CancelResult.REQUESTED

        (done,) = store.complete_many([(claimed, '{"ok":true}')], result_ttl=TTL, now=T0 + 5)

        assert done is not None
        assert done == store.get(job_id)
        assert done.error is None
        assert done.progress is not None and done.progress.message == "half way"
        assert done.cancel_requested
        assert done.retry_count == 1


class TestCreateMany:
    def test_creates_each_and_refuses_past_the_pending_limit(self, store: Store) -> None:
        existing = submit(store)
        fresh = [new_id() for _ in range(3)]
        jobs = [NewJob(job_id, "Work", JobPayload(body={"i": i}), 2) for i, job_id in enumerate(fresh)]

        outcomes = store.create_many([*jobs, NewJob(existing, "Work", JobPayload(), 0)], max_pending=3, now=T0 + 1)

        first, second, refused, again = outcomes
        assert first is not None
        assert second is not None
        assert first[1]
        assert first[0] == store.get(fresh[0])
        assert first[0].payload.body == {"i": 0}
        assert first[0].max_retries == 2
        assert refused is None
        assert store.get(fresh[2]) is None
        assert again is not None
        assert again[1] is False
        assert again[0].id == existing
        assert store.counts()[JobStatus.QUEUED] == 3
        assert [c.job.id for c in store.claim(5, LEASE, now=T0 + 2)] == [existing, fresh[0], fresh[1]]
        assert store.create_many([], now=T0) == []

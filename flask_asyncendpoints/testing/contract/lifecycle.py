"""Creating, claiming and finishing jobs: the contract of a job's way from submit to its end."""

from __future__ import annotations

import json

import pytest

from ...errors import JobFailure
from ...jobs import DEFAULT_QUEUE, ClaimedJob, JobError, JobPayload, JobStatus, from_timestamp
from ...stores import CancelResult, LeaseState, NewJob, PendingLimitReached, Store
from .support import (
    LEASE,
    T0,
    TTL,
    _stored,
    an_error,
    assert_claimed_exactly_once,
    claim_ids,
    claim_one,
    new_id,
    submit,
)

# -- creating and reading --------------------------------------------------------------------------


class CreateContract:
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
        assert job.result is None and job.error is None and job.progress is None
        assert job.payload == payload
        assert (job.queue, job.priority) == (DEFAULT_QUEUE, 0)

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

    def test_a_job_keeps_its_queue_and_priority(self, store: Store) -> None:
        job_id = new_id()
        job, _ = store.create(job_id, "Work", JobPayload(), max_retries=1, queue="reports", priority=7, now=T0)

        assert (job.queue, job.priority) == ("reports", 7)
        assert store.get(job_id) == job
        claimed = claim_one(store, T0, queues=("reports",))
        assert (claimed.job.queue, claimed.job.priority) == ("reports", 7)

    def test_create_is_idempotent_across_queues(self, store: Store) -> None:
        job_id = new_id()
        first, _ = store.create(job_id, "Work", JobPayload(body=1), max_retries=3, queue="a", now=T0)
        again, created = store.create(job_id, "Work", JobPayload(body=2), max_retries=3, queue="b", now=T0)

        assert not created
        assert again == first and again.queue == "a"
        assert store.counts(queue="b")[JobStatus.QUEUED] == 0
        assert claim_ids(store, T0, queues=("b",)) == []

    def test_the_pending_limit_counts_the_jobs_of_the_queue(self, store: Store) -> None:
        for _ in range(2):
            submit(store, queue="a")
        with pytest.raises(PendingLimitReached):
            store.create(new_id(), "Work", JobPayload(), max_retries=0, queue="a", max_pending=2, now=T0)
        _, created = store.create(new_id(), "Work", JobPayload(), max_retries=0, queue="b", max_pending=2, now=T0)

        assert created
        assert store.counts(queue="a")[JobStatus.QUEUED] == 2
        assert store.counts(queue="b")[JobStatus.QUEUED] == 1

    def test_a_delayed_job_is_scheduled_until_it_is_due(self, store: Store) -> None:
        job_id = new_id()
        job, created = store.create(job_id, "Work", JobPayload(), max_retries=2, due=T0 + 60, now=T0)

        assert created and job == store.get(job_id)
        assert job.status is JobStatus.SCHEDULED
        assert job.retry_delay_until == from_timestamp(T0 + 60)
        assert job.retry_count == 0
        assert store.counts()[JobStatus.SCHEDULED] == 1
        assert store.claim(5, LEASE, now=T0 + 59.9) == []
        claimed = claim_one(store, T0 + 60)
        assert claimed.job.id == job_id
        assert claimed.job.retry_delay_until is None and claimed.job.retry_count == 0

    def test_a_due_time_not_later_than_now_is_due_at_once(self, store: Store) -> None:
        past = store.create(new_id(), "Work", JobPayload(), max_retries=0, due=T0 - 10, now=T0)[0]
        present = store.create(new_id(), "Work", JobPayload(), max_retries=0, due=T0, now=T0)[0]

        for job in (past, present):
            assert job.status is JobStatus.QUEUED
            assert job.retry_delay_until is None
        assert claim_ids(store, T0) == [past.id, present.id]

    def test_a_delayed_job_counts_as_pending(self, store: Store) -> None:
        submit(store, due=T0 + 60)
        with pytest.raises(PendingLimitReached):
            store.create(new_id(), "Work", JobPayload(), max_retries=0, max_pending=1, now=T0)


class CreateManyContract:
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

    def test_each_new_job_keeps_its_queue_priority_and_due_time(self, store: Store) -> None:
        low, high, later, other = (new_id() for _ in range(4))
        outcomes = store.create_many(
            [
                NewJob(low, "Work", JobPayload(), 0),
                NewJob(high, "Work", JobPayload(), 0, priority=5),
                NewJob(later, "Work", JobPayload(), 0, due=T0 + 30),
                NewJob(other, "Work", JobPayload(), 0, queue="other"),
            ],
            now=T0,
        )

        assert all(outcome is not None and outcome[1] for outcome in outcomes)
        assert _stored(store, later).status is JobStatus.SCHEDULED
        assert _stored(store, later).retry_delay_until == from_timestamp(T0 + 30)
        assert _stored(store, other).queue == "other"
        assert claim_ids(store, T0) == [high, low]
        assert claim_ids(store, T0 + 30) == [later]
        assert claim_ids(store, T0 + 30, queues=("other",)) == [other]


# -- claiming --------------------------------------------------------------------------------------


class ClaimContract:
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
        error = JobError(code="BOOM", message="the first attempt failed")
        store.fail(job_id, first.token, error, retry_delay=0.0, result_ttl=TTL, now=T0)

        (claimed,) = store.claim(1, LEASE, now=now)

        assert claimed.job == store.get(job_id)
        assert claimed.job.error == error  # kept until an attempt succeeds
        assert claimed.job.progress is None  # the last attempt's
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

    def test_a_limit_of_zero_claims_nothing(self, store: Store) -> None:
        submit(store)
        assert store.claim(0, LEASE, now=T0) == []
        assert store.counts()[JobStatus.QUEUED] == 1


# -- finishing -------------------------------------------------------------------------------------


class CompleteContract:
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
            assert _stored(store, job_id).result == value

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
        job = _stored(store, job_id)
        assert job.result == 1 and job.status is JobStatus.COMPLETED

    def test_unknown_job_operations_answer_not_found(self, store: Store) -> None:
        missing = new_id()
        assert store.complete(missing, "t", "1", result_ttl=TTL, now=T0) is None
        assert store.renew([(missing, "t")], LEASE, now=T0) == {missing: LeaseState.LOST}
        assert store.cancel(missing, result_ttl=TTL, now=T0) == (CancelResult.NOT_FOUND, None)

    def test_complete_many_checks_each_completion_on_its_own(self, store: Store) -> None:
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
        assert _stored(store, ids[1]).status is JobStatus.IN_PROGRESS
        assert store.complete_many([], result_ttl=TTL, now=T0) == []

    def test_the_completed_job_is_the_stored_one_after_progress_and_a_retry(self, store: Store) -> None:
        previous_error = JobError(code="BOOM", message="first attempt failed")
        job_id = submit(store)
        (first,) = store.claim(1, LEASE, now=T0)
        store.fail(job_id, first.token, previous_error, retry_delay=1.0, result_ttl=TTL, now=T0)
        (claimed,) = store.claim(1, LEASE, now=T0 + 2)
        assert store.set_progress(job_id, claimed.token, 0.5, "half way", now=T0 + 3)

        (done,) = store.complete_many([(claimed, '{"ok":true}')], result_ttl=TTL, now=T0 + 5)

        assert done is not None
        assert done == store.get(job_id)
        assert done.error is None
        assert done.progress is not None and done.progress.message == "half way"
        assert done.retry_count == 1


class FailContract:
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

        job = _stored(store, job_id)
        assert job.error == error
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
        assert _stored(store, job_id).error == error

    def test_a_later_success_clears_the_error(self, store: Store) -> None:
        job_id = submit(store)
        first = claim_one(store, T0)
        store.fail(job_id, first.token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0)
        second = claim_one(store, T0 + 1)

        job = store.complete(job_id, second.token, '"ok"', result_ttl=TTL, now=T0 + 2)

        assert job is not None and job.error is None and job.result == "ok" and job.retry_count == 1

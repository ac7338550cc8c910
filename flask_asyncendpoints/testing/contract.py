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
(:meth:`~flask_asyncendpoints.stores.Store.wait_for_work`, long-polls) wait on threads and events,
with timeouts far above what they need.

Two fixtures may be overridden: ``history_limit`` (the ``history_limit`` the ``store`` fixture's store
was made with; :data:`~flask_asyncendpoints.stores.DEFAULT_HISTORY_LIMIT` unless changed) and
``watches_cancels`` (``False`` for a store that keeps the default
:meth:`~flask_asyncendpoints.stores.Store.watch_cancels`, which never calls).

This module imports pytest; the library does not need it otherwise.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import pytest

from ..errors import JobFailure
from ..jobs import (
    DEFAULT_QUEUE,
    AttemptOutcome,
    AttemptRecord,
    ClaimedJob,
    Job,
    JobError,
    JobPayload,
    JobStatus,
    LogRecord,
    from_timestamp,
)
from ..stores import (
    DEFAULT_HISTORY_LIMIT,
    CancelResult,
    LeaseState,
    MemoryStore,
    NewJob,
    PendingLimitReached,
    Store,
    WorkerInfo,
)
from ..stores.base import LEASE_EXPIRED_CODE

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
    "WaitContract",
    "WorkersContract",
    "an_error",
    "assert_claimed_exactly_once",
    "claim_ids",
    "claim_one",
    "contract_classes",
    "new_id",
    "requires_v2",
    "submit",
]

#: The time every test starts from: 2026-01-01T00:00:00Z, a whole hour.
T0 = 1_767_225_600.0
#: The lease of every claim, and the result ttl of every finish, in seconds.
LEASE = 30.0
TTL = 3600.0
#: A due time later than any clock a test runs under (2036).
FAR = T0 + 10 * 365 * 86400.0

Test = TypeVar("Test", bound=Callable[..., None])


def requires_v2(test: Test) -> Test:
    """Mark a test of what store contract v2 added (queues, priorities, due times, the cancel rule,
    history, logs, monitoring, occurrences).

    A store other than the memory store that does not implement v2 yet — a call raises
    ``NotImplementedError``, or :meth:`~flask_asyncendpoints.stores.Store.attempts` does — skips
    the test rather than failing it. This goes away once every built-in store implements v2.
    """

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        store = kwargs.get("store")
        strict = isinstance(store, MemoryStore)  # the memory store implements all of v2: never skip it
        try:
            if isinstance(store, Store) and not strict:
                store.attempts(new_id())
            test(*args, **kwargs)
        except NotImplementedError as exc:
            if strict:
                raise
            pytest.skip(f"{type(store).__name__} does not implement store contract v2 yet: {exc}")

    return run  # type: ignore[return-value]


# -- helpers ---------------------------------------------------------------------------------------


def new_id() -> str:
    """A fresh job id."""
    return str(uuid.uuid4())


def submit(
    store: Store,
    *,
    now: float = T0,
    max_retries: int = 3,
    name: str = "Work",
    body: object = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    due: float | None = None,
) -> str:
    """Create a job; its id."""
    job_id = new_id()
    store.create(
        job_id, name, JobPayload(body=body), max_retries=max_retries, queue=queue, priority=priority, due=due, now=now
    )
    return job_id


def claim_one(store: Store, now: float, **options: Any) -> ClaimedJob:
    """Claim exactly one job (failing the test otherwise)."""
    claimed = store.claim(1, LEASE, now=now, **options)
    assert len(claimed) == 1, f"expected one job to claim, got {len(claimed)}"
    return claimed[0]


def claim_ids(store: Store, now: float, limit: int = 100, **options: Any) -> list[str]:
    """Claim up to ``limit`` jobs; their ids in claim order."""
    return [claimed.job.id for claimed in store.claim(limit, LEASE, now=now, **options)]


def an_error() -> JobError:
    """A failure with a chained exception, as a handler's would be."""
    try:
        try:
            raise KeyError("missing")
        except KeyError as inner:
            raise ValueError("bad value") from inner
    except ValueError as exc:
        return JobError.from_exception(exc)


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


def _at(seconds: float) -> datetime:
    stamp = from_timestamp(seconds)
    assert stamp is not None
    return stamp


def _stored(store: Store, job_id: str) -> Job:
    job = store.get(job_id)
    assert job is not None, f"job {job_id} is not stored"
    return job


def _page_ids(store: Store, status: JobStatus, limit: int, **options: Any) -> list[list[str]]:
    """Every page of ``list_jobs``, as the ids on each page."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = store.list_jobs(status, cursor=cursor, limit=limit, **options)
        pages.append([job.id for job in page.jobs])
        assert len(pages) < 10_000, "list_jobs never ends"
        if page.cursor is None:
            return pages
        assert page.jobs, "a page with a cursor after it has jobs"
        cursor = page.cursor


def _listed(store: Store, status: JobStatus, **options: Any) -> list[str]:
    return [job_id for page in _page_ids(store, status, limit=1000, **options) for job_id in page]


def _running_with_a_cancel_requested(store: Store, *, max_retries: int = 3, now: float = T0) -> ClaimedJob:
    submit(store, max_retries=max_retries, now=now)
    claimed = claim_one(store, now, worker_id="worker-1")
    outcome, job = store.cancel(claimed.job.id, result_ttl=TTL, now=now + 1)
    assert outcome is CancelResult.REQUESTED
    assert job is not None and job.cancel_requested
    return claimed


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

    @requires_v2
    def test_a_job_keeps_its_queue_and_priority(self, store: Store) -> None:
        job_id = new_id()
        job, _ = store.create(job_id, "Work", JobPayload(), max_retries=1, queue="reports", priority=7, now=T0)

        assert (job.queue, job.priority) == ("reports", 7)
        assert store.get(job_id) == job
        claimed = claim_one(store, T0, queues=("reports",))
        assert (claimed.job.queue, claimed.job.priority) == ("reports", 7)

    @requires_v2
    def test_create_is_idempotent_across_queues(self, store: Store) -> None:
        job_id = new_id()
        first, _ = store.create(job_id, "Work", JobPayload(body=1), max_retries=3, queue="a", now=T0)
        again, created = store.create(job_id, "Work", JobPayload(body=2), max_retries=3, queue="b", now=T0)

        assert not created
        assert again == first and again.queue == "a"
        assert store.counts(queue="b")[JobStatus.QUEUED] == 0
        assert claim_ids(store, T0, queues=("b",)) == []

    @requires_v2
    def test_the_pending_limit_counts_the_jobs_of_the_queue(self, store: Store) -> None:
        for _ in range(2):
            submit(store, queue="a")
        with pytest.raises(PendingLimitReached):
            store.create(new_id(), "Work", JobPayload(), max_retries=0, queue="a", max_pending=2, now=T0)
        _, created = store.create(new_id(), "Work", JobPayload(), max_retries=0, queue="b", max_pending=2, now=T0)

        assert created
        assert store.counts(queue="a")[JobStatus.QUEUED] == 2
        assert store.counts(queue="b")[JobStatus.QUEUED] == 1

    @requires_v2
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

    @requires_v2
    def test_a_due_time_not_later_than_now_is_due_at_once(self, store: Store) -> None:
        past = store.create(new_id(), "Work", JobPayload(), max_retries=0, due=T0 - 10, now=T0)[0]
        present = store.create(new_id(), "Work", JobPayload(), max_retries=0, due=T0, now=T0)[0]

        for job in (past, present):
            assert job.status is JobStatus.QUEUED
            assert job.retry_delay_until is None
        assert claim_ids(store, T0) == [past.id, present.id]

    @requires_v2
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

    @requires_v2
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


class QueuesContract:
    """Named queues, priorities and delayed jobs."""

    @requires_v2
    def test_queues_are_served_in_the_order_given(self, store: Store) -> None:
        low = [submit(store, queue="low", now=T0 + i) for i in range(2)]
        high = [submit(store, queue="high", now=T0 + 2 + i) for i in range(2)]

        assert claim_ids(store, T0 + 5, limit=3, queues=("high", "low")) == [*high, low[0]]
        assert claim_ids(store, T0 + 5, queues=("high", "low")) == [low[1]]

    @requires_v2
    def test_a_claim_takes_only_from_its_queues(self, store: Store) -> None:
        default = submit(store)
        other = submit(store, queue="other")

        assert claim_ids(store, T0, queues=("third",)) == []
        assert claim_ids(store, T0) == [default]
        assert claim_ids(store, T0) == []
        assert claim_ids(store, T0, queues=("other", DEFAULT_QUEUE)) == [other]

    @requires_v2
    def test_higher_priorities_first_and_fifo_within_a_priority(self, store: Store) -> None:
        a = submit(store, priority=0, now=T0)
        b = submit(store, priority=5, now=T0 + 1)
        c = submit(store, priority=0, now=T0 + 2)
        d = submit(store, priority=5, now=T0 + 3)
        e = submit(store, priority=-1, now=T0 + 4)

        assert claim_ids(store, T0 + 10, limit=2) == [b, d]
        assert claim_ids(store, T0 + 10) == [a, c, e]

    @requires_v2
    def test_jobs_of_one_priority_line_up_by_the_time_they_became_due(self, store: Store) -> None:
        retried = submit(store, priority=5, now=T0)
        first = claim_one(store, T0)
        store.fail(retried, first.token, an_error(), retry_delay=2.0, result_ttl=TTL, now=T0)  # due at T0 + 2
        delayed = submit(store, priority=5, due=T0 + 3, now=T0)
        fresh = submit(store, priority=5, now=T0 + 5)
        lower = submit(store, priority=1, now=T0 - 100)

        assert claim_ids(store, T0 + 6) == [retried, delayed, fresh, lower]

    @requires_v2
    def test_a_retry_keeps_its_queue_and_priority(self, store: Store) -> None:
        job_id = submit(store, queue="q", priority=3, now=T0)
        first = claim_one(store, T0, queues=("q",))
        store.fail(job_id, first.token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0)
        earlier = submit(store, queue="q", priority=1, now=T0 - 50)

        scheduled = _stored(store, job_id)
        assert (scheduled.queue, scheduled.priority, scheduled.status) == ("q", 3, JobStatus.SCHEDULED)
        assert claim_ids(store, T0 + 1, queues=("q",)) == [job_id, earlier]

    @requires_v2
    def test_released_and_recovered_jobs_keep_their_queue_and_priority(self, store: Store) -> None:
        released = submit(store, queue="q", priority=2, now=T0)
        recovered = submit(store, queue="q", priority=2, now=T0 + 1)
        first, _ = store.claim(2, LEASE, queues=("q",), now=T0 + 1)
        assert first.job.id == released
        assert store.release(released, first.token, now=T0 + 2)
        assert [job.id for job in store.recover(result_ttl=TTL, now=T0 + 1 + LEASE + 1)] == [recovered]
        plain = submit(store, queue="q", now=T0 - 100)

        for job_id in (released, recovered):
            job = _stored(store, job_id)
            assert (job.status, job.queue, job.priority) == (JobStatus.QUEUED, "q", 2)
        assert claim_ids(store, T0 + 40, queues=("q",)) == [released, recovered, plain]

    @requires_v2
    def test_counts_per_queue_and_in_all(self, store: Store) -> None:
        submit(store, queue="a")
        submit(store, queue="a", due=T0 + 60)
        submit(store, queue="b")
        claim_one(store, T0, queues=("b",))

        assert dict(store.counts(queue="a")) == {
            **dict.fromkeys(JobStatus, 0),
            JobStatus.QUEUED: 1,
            JobStatus.SCHEDULED: 1,
        }
        assert dict(store.counts(queue="b")) == {**dict.fromkeys(JobStatus, 0), JobStatus.IN_PROGRESS: 1}
        assert dict(store.counts(queue="never")) == dict.fromkeys(JobStatus, 0)
        assert dict(store.counts()) == {
            **dict.fromkeys(JobStatus, 0),
            JobStatus.QUEUED: 1,
            JobStatus.SCHEDULED: 1,
            JobStatus.IN_PROGRESS: 1,
        }

    @requires_v2
    def test_get_finds_a_job_in_any_queue(self, store: Store) -> None:
        ids = {queue: submit(store, queue=queue) for queue in ("a", "b", "c")}
        for queue, job_id in ids.items():
            assert _stored(store, job_id).queue == queue

    @requires_v2
    def test_recover_and_purge_cover_every_queue(self, store: Store) -> None:
        ids = [submit(store, queue=queue, max_retries=0) for queue in ("a", "b")]
        store.claim(5, LEASE, queues=("a", "b"), now=T0)

        assert {job.id for job in store.recover(result_ttl=1.0, now=T0 + LEASE + 1)} == set(ids)
        assert store.purge(now=T0 + LEASE + 3) == 2
        assert all(store.get(job_id) is None for job_id in ids)

    @requires_v2
    def test_a_delayed_job_canceled_before_it_is_due(self, store: Store) -> None:
        job_id = submit(store, due=T0 + 60)

        outcome, job = store.cancel(job_id, result_ttl=TTL, now=T0 + 1)

        assert outcome is CancelResult.CANCELED
        assert job is not None and job.status is JobStatus.CANCELED and job.retry_delay_until is None
        assert store.claim(5, LEASE, now=T0 + 100) == []


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


# -- cancel ----------------------------------------------------------------------------------------


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

    @requires_v2
    def test_a_completion_after_a_cancel_request_cancels(self, store: Store) -> None:
        claimed = _running_with_a_cancel_requested(store)
        job_id = claimed.job.id

        job = store.complete(job_id, claimed.token, '{"ignored": true}', result_ttl=TTL, now=T0 + 2)

        self._assert_canceled(store, job, job_id, T0 + 2)
        record = self._last_attempt(store, job_id)
        assert record.outcome is AttemptOutcome.CANCELED and record.error_code is None
        assert store.counts()[JobStatus.COMPLETED] == 0
        assert store.throughput(now=T0 + 2).minutes[-1].completed == 0

    @requires_v2
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
    @requires_v2
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

    @requires_v2
    def test_finish_canceled_after_a_cancel_request(self, store: Store) -> None:
        claimed = _running_with_a_cancel_requested(store)

        job = store.finish_canceled(claimed.job.id, claimed.token, result_ttl=TTL, now=T0 + 2)

        self._assert_canceled(store, job, claimed.job.id, T0 + 2)
        assert self._last_attempt(store, claimed.job.id).outcome is AttemptOutcome.CANCELED

    @requires_v2
    def test_a_release_after_a_cancel_request_cancels(self, store: Store) -> None:
        claimed = _running_with_a_cancel_requested(store)  # the cancel gave result_ttl=TTL

        assert store.release(claimed.job.id, claimed.token, now=T0 + 2) is True

        self._assert_canceled(store, store.get(claimed.job.id), claimed.job.id, T0 + 2)
        assert self._last_attempt(store, claimed.job.id).outcome is AttemptOutcome.CANCELED
        assert store.purge(now=T0 + 2 + TTL - 1) == 0
        assert store.purge(now=T0 + 2 + TTL) == 1, "it expires after the result_ttl its cancel gave"
        assert store.get(claimed.job.id) is None

    @pytest.mark.parametrize("max_retries", [3, 0], ids=["with a retry left", "no retry left"])
    @requires_v2
    def test_a_recovery_after_a_cancel_request_cancels(self, store: Store, max_retries: int) -> None:
        claimed = _running_with_a_cancel_requested(store, max_retries=max_retries)

        (recovered,) = store.recover(result_ttl=TTL, now=T0 + LEASE + 1)

        job = self._assert_canceled(store, recovered, claimed.job.id, T0 + LEASE + 1)
        assert job.error is None and job.retry_count == 0
        record = self._last_attempt(store, claimed.job.id)
        assert record.outcome is AttemptOutcome.CANCELED and record.error_code == LEASE_EXPIRED_CODE
        assert store.complete(claimed.job.id, claimed.token, "1", result_ttl=TTL, now=T0 + LEASE + 2) is None

    @requires_v2
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

    @requires_v2
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

    @requires_v2
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


# -- history and logs ------------------------------------------------------------------------------


class HistoryContract:
    @pytest.fixture
    def history_limit(self) -> int:
        """The ``history_limit`` of the ``store`` fixture's store."""
        return DEFAULT_HISTORY_LIMIT

    @requires_v2
    def test_a_completed_attempt_is_recorded(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0 + 1, worker_id="host-1:42")
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 3.5)

        assert store.attempts(job_id) == [
            AttemptRecord(
                number=1,
                started_at=_at(T0 + 1),
                finished_at=_at(T0 + 3.5),
                worker_id="host-1:42",
                outcome=AttemptOutcome.COMPLETED,
                error_code=None,
                error_message=None,
            )
        ]
        assert store.attempts(job_id)[0].duration == 2.5

    @requires_v2
    def test_every_way_an_attempt_ends_is_recorded_in_order(self, store: Store) -> None:
        job_id = submit(store, max_retries=2)
        first = claim_one(store, T0, worker_id="a")
        store.fail(job_id, first.token, an_error(), retry_delay=0.0, result_ttl=TTL, now=T0 + 1)
        second = claim_one(store, T0 + 1, worker_id="b")
        store.release(job_id, second.token, now=T0 + 2)
        claim_one(store, T0 + 2, worker_id="c")
        store.recover(result_ttl=TTL, now=T0 + 2 + LEASE + 1)  # retry 2 of 2
        last = claim_one(store, T0 + 40, worker_id="d")
        error = JobError(code="BOOM", message="out of retries")
        store.fail(job_id, last.token, error, retry_delay=1.0, result_ttl=TTL, now=T0 + 41)

        records = store.attempts(job_id)

        assert [(r.number, r.worker_id, r.outcome) for r in records] == [
            (1, "a", AttemptOutcome.RETRYING),
            (2, "b", AttemptOutcome.RELEASED),
            (2, "c", AttemptOutcome.LEASE_EXPIRED),
            (3, "d", AttemptOutcome.FAILED),
        ]
        assert [(r.error_code, r.error_message) for r in records] == [
            ("VALUEERROR", "bad value"),
            (None, None),
            (LEASE_EXPIRED_CODE, records[2].error_message),
            ("BOOM", "out of retries"),
        ]
        assert records[2].error_message
        assert [r.started_at for r in records] == [from_timestamp(t) for t in (T0, T0 + 1, T0 + 2, T0 + 40)]
        assert [r.finished_at for r in records] == [
            from_timestamp(t) for t in (T0 + 1, T0 + 2, T0 + 2 + LEASE + 1, T0 + 41)
        ]

    @requires_v2
    def test_a_lease_lost_for_good_is_recorded(self, store: Store) -> None:
        job_id = submit(store, max_retries=0)
        claim_one(store, T0, worker_id="gone")
        store.recover(result_ttl=TTL, now=T0 + LEASE + 1)

        (record,) = store.attempts(job_id)
        assert (record.outcome, record.error_code, record.worker_id) == (
            AttemptOutcome.LEASE_EXPIRED,
            LEASE_EXPIRED_CODE,
            "gone",
        )
        assert _stored(store, job_id).status is JobStatus.FAILED

    @requires_v2
    def test_a_job_that_never_ran_has_no_history(self, store: Store) -> None:
        job_id = submit(store)
        store.cancel(job_id, result_ttl=TTL, now=T0)

        assert store.attempts(job_id) == []
        assert store.attempts(new_id()) == []
        assert store.attempts(submit(store)) == []

    @requires_v2
    def test_only_the_last_attempts_are_kept(self, store: Store, history_limit: int) -> None:
        runs = history_limit + 3
        job_id = submit(store, max_retries=runs)
        for number in range(1, runs + 1):
            claimed = claim_one(store, T0 + number)
            store.fail(
                job_id, claimed.token, JobError("E", f"run {number}"), retry_delay=0.0, result_ttl=TTL, now=T0 + number
            )
        claimed = claim_one(store, T0 + 100)
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 100)

        records = store.attempts(job_id)

        assert len(records) == history_limit
        assert [r.number for r in records] == list(range(runs + 2 - history_limit, runs + 2))
        assert records[-1].outcome is AttemptOutcome.COMPLETED
        assert records[0].error_message == f"run {runs + 2 - history_limit}"

    @requires_v2
    def test_the_history_goes_with_the_job(self, store: Store) -> None:
        purged, deleted = submit(store), submit(store)
        for job_id in (purged, deleted):
            claimed = claim_one(store, T0)
            store.complete(job_id, claimed.token, "1", result_ttl=10.0, now=T0)
            assert len(store.attempts(job_id)) == 1

        assert store.delete(deleted, now=T0 + 1)
        assert store.purge(now=T0 + 10) == 1

        assert store.attempts(purged) == store.attempts(deleted) == []


class LogsContract:
    @staticmethod
    def _line(message: str, *, attempt: int = 1, at: float = T0, level: str = "INFO") -> LogRecord:
        return LogRecord(attempt=attempt, at=_at(at), level=level, logger="app.jobs", message=message)

    @requires_v2
    def test_lines_are_kept_in_order_while_the_lease_is_held(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        lines = [self._line("starting"), self._line("héllo wörld", at=T0 + 1, level="WARNING")]

        assert store.append_logs(job_id, claimed.token, lines[:1], max_lines=100, max_bytes=10_000)
        assert store.append_logs(job_id, claimed.token, lines[1:], max_lines=100, max_bytes=10_000)
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 2)

        assert store.logs(job_id) == lines

    @requires_v2
    def test_a_token_without_the_lease_stores_nothing(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)

        assert store.append_logs(job_id, "not-the-token", [self._line("x")], max_lines=10, max_bytes=1000) is False
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 1)
        assert store.append_logs(job_id, claimed.token, [self._line("late")], max_lines=10, max_bytes=1000) is False
        assert store.append_logs(new_id(), "t", [self._line("x")], max_lines=10, max_bytes=1000) is False
        assert store.logs(job_id) == []
        assert store.logs(new_id()) == []

    @requires_v2
    def test_the_log_spans_attempts(self, store: Store) -> None:
        job_id = submit(store)
        first = claim_one(store, T0)
        store.append_logs(job_id, first.token, [self._line("one", attempt=1)], max_lines=10, max_bytes=1000)
        store.fail(job_id, first.token, an_error(), retry_delay=0.0, result_ttl=TTL, now=T0)
        second = claim_one(store, T0)
        store.append_logs(job_id, second.token, [self._line("two", attempt=2)], max_lines=10, max_bytes=1000)

        assert [(line.attempt, line.message) for line in store.logs(job_id)] == [(1, "one"), (2, "two")]

    @requires_v2
    def test_the_oldest_lines_go_past_max_lines(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        for batch in (["1", "2"], ["3", "4", "5"]):
            lines = [self._line(text) for text in batch]
            assert store.append_logs(job_id, claimed.token, lines, max_lines=3, max_bytes=1000)

        assert [line.message for line in store.logs(job_id)] == ["3", "4", "5"]

    @requires_v2
    def test_the_oldest_lines_go_past_max_bytes_counted_in_utf8(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        lines = [self._line(text) for text in ("aaaa", "éé", "bbbb", "€")]  # 4, 4, 4 and 3 bytes

        assert store.append_logs(job_id, claimed.token, lines, max_lines=100, max_bytes=11)

        assert [line.message for line in store.logs(job_id)] == ["éé", "bbbb", "€"]
        assert store.append_logs(job_id, claimed.token, [self._line("x" * 12)], max_lines=100, max_bytes=11)
        assert store.logs(job_id) == [], "a line longer than max_bytes on its own is not kept"

    @requires_v2
    def test_the_log_goes_with_the_job(self, store: Store) -> None:
        purged, deleted = submit(store), submit(store)
        for job_id in (purged, deleted):
            claimed = claim_one(store, T0)
            store.append_logs(job_id, claimed.token, [self._line("x")], max_lines=10, max_bytes=100)
            store.complete(job_id, claimed.token, "1", result_ttl=10.0, now=T0)

        assert store.delete(deleted, now=T0 + 1)
        assert store.purge(now=T0 + 10) == 1

        assert store.logs(purged) == store.logs(deleted) == []


# -- upkeep, operators, counts ---------------------------------------------------------------------


class PurgeAndCountsContract:
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


class OperatorContract:
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
        assert _stored(store, queued).status is JobStatus.QUEUED

    @requires_v2
    def test_requeue_keeps_the_queue_and_priority(self, store: Store) -> None:
        job_id = submit(store, max_retries=0, queue="q", priority=4)
        claimed = claim_one(store, T0, queues=("q",))
        store.fail(job_id, claimed.token, an_error(), retry_delay=None, result_ttl=TTL, now=T0)
        plain = submit(store, queue="q", now=T0 - 10)

        job = store.requeue(job_id, now=T0 + 1)

        assert job is not None and (job.queue, job.priority) == ("q", 4)
        assert claim_ids(store, T0 + 2, queues=("q",)) == [job_id, plain]

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

    @requires_v2
    def test_delete_a_finished_job(self, store: Store) -> None:
        done, failed, canceled = submit(store), submit(store, max_retries=0), submit(store)
        first, second = store.claim(2, LEASE, now=T0)
        store.complete(done, first.token, "1", result_ttl=None, now=T0)
        store.fail(failed, second.token, an_error(), retry_delay=None, result_ttl=None, now=T0)
        store.cancel(canceled, result_ttl=None, now=T0)

        assert [store.delete(job_id, now=T0 + 1) for job_id in (done, failed, canceled)] == [True, True, True]

        assert [store.get(job_id) for job_id in (done, failed, canceled)] == [None, None, None]
        assert dict(store.counts()) == dict.fromkeys(JobStatus, 0)
        assert store.delete(done, now=T0 + 2) is False
        assert _listed(store, JobStatus.COMPLETED) == []

    @requires_v2
    def test_delete_leaves_unfinished_and_unknown_jobs_alone(self, store: Store) -> None:
        first = submit(store)
        scheduled = submit(store, due=T0 + 60)
        second = submit(store)
        store.claim(5, LEASE, now=T0)  # takes the first and the second, not the one due later
        queued = submit(store)

        for job_id in (first, scheduled, second, queued, new_id()):
            before = store.get(job_id)
            assert store.delete(job_id, now=T0 + 1) is False
            assert store.get(job_id) == before
        assert sum(store.counts().values()) == 4


# -- waiting ---------------------------------------------------------------------------------------


def _waiting(store: Store, **options: Any) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """A thread blocked in ``wait_for_work(30, **options)``; events set when it started and when it returned."""
    started = threading.Event()
    woke = threading.Event()

    def waiter() -> None:
        started.set()
        store.wait_for_work(30.0, **options)
        woke.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert started.wait(5)
    return thread, started, woke


class WaitContract:
    def test_a_waiting_worker_wakes_when_a_job_is_created(self, store: Store) -> None:
        _, _, woke = _waiting(store)
        submit(store)
        # Far below the 30 s wait: the create itself woke the waiter.
        assert woke.wait(10)

    def test_wake_releases_a_waiter_and_is_never_lost(self, store: Store) -> None:
        # The waiter may or may not be blocked yet: a wake that comes first must still count.
        _, _, woke = _waiting(store)
        store.wake()
        assert woke.wait(10)

    @requires_v2
    def test_a_waiter_wakes_for_a_job_of_its_queues(self, store: Store) -> None:
        _, _, woke_a = _waiting(store, queues=("a",))
        _, _, woke_b = _waiting(store, queues=("c", "b"))

        submit(store, queue="b")
        assert woke_b.wait(10)
        submit(store, queue="a")
        assert woke_a.wait(10)

    @requires_v2
    def test_a_delayed_job_wakes_no_one_before_it_is_due(self, store: Store) -> None:
        # A delayed job (due in 2036) must not end a wait: the wait lasts its whole timeout.
        # The timeouts are short and the check is that the waits did not return at once.
        returned: list[float] = []

        def waiter() -> None:
            store.wait_for_work(0.4)
            returned.append(1.0)

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        submit(store, due=FAR)
        thread.join(0.25)  # allow-sleep: that a wait did not end early can only be seen by waiting
        assert thread.is_alive() and returned == [], "the delayed job woke a waiter"
        thread.join(10)
        assert returned == [1.0]

    def test_a_waiter_sees_the_job_finish(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        waiting = threading.Event()
        seen: list[Job | None] = []

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
        assert job is not None and job.status is JobStatus.COMPLETED

    def test_at_the_timeout_it_answers_the_job_as_it_is(self, store: Store) -> None:
        job_id = submit(store)
        job = store.wait_for_finish(job_id, timeout=0.01)
        assert job is not None
        assert job.status is JobStatus.QUEUED
        assert store.wait_for_finish(new_id(), timeout=0.01) is None


# -- monitoring ------------------------------------------------------------------------------------


def _finished_at(
    store: Store, times: list[float], *, status: JobStatus = JobStatus.COMPLETED, **options: Any
) -> list[str]:
    """Jobs that finished in ``status`` at each of ``times``; their ids."""
    ids = []
    for at in times:
        job_id = submit(store, max_retries=0, now=at, **options)
        claimed = claim_one(store, at, queues=(options.get("queue", DEFAULT_QUEUE),))
        assert claimed.job.id == job_id, "_finished_at needs its queue free of other waiting jobs"
        if status is JobStatus.COMPLETED:
            store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=at)
        elif status is JobStatus.FAILED:
            store.fail(job_id, claimed.token, an_error(), retry_delay=None, result_ttl=TTL, now=at)
        else:
            store.finish_canceled(job_id, claimed.token, result_ttl=TTL, now=at)
        ids.append(job_id)
    return ids


class MonitoringContract:
    @requires_v2
    def test_queue_stats_of_every_queue_by_name(self, store: Store) -> None:
        submit(store, queue="b", now=T0 + 5)
        retried = submit(store, queue="b", now=T0)
        first = claim_one(store, T0, queues=("b",))
        assert first.job.id == retried
        store.fail(retried, first.token, an_error(), retry_delay=2.0, result_ttl=TTL, now=T0)  # due at T0 + 2
        submit(store, queue="b", due=T0 + 100)
        submit(store, queue="a")
        claim_one(store, T0, queues=("a",))

        stats = store.queue_stats(now=T0 + 10)

        assert [s.name for s in stats] == ["a", "b"]
        a, b = stats
        assert dict(a.counts) == {**dict.fromkeys(JobStatus, 0), JobStatus.IN_PROGRESS: 1}
        assert (a.due, a.oldest_due_at) == (0, None)
        assert dict(b.counts) == {**dict.fromkeys(JobStatus, 0), JobStatus.QUEUED: 1, JobStatus.SCHEDULED: 2}
        assert b.due == 2  # the queued job and the retry now due; not the job due at T0 + 100
        assert b.oldest_due_at == from_timestamp(T0 + 2)
        (early,) = [s for s in store.queue_stats(now=T0 + 1) if s.name == "b"]
        assert (early.due, early.oldest_due_at) == (1, from_timestamp(T0 + 5))

    @requires_v2
    def test_counts_by_name(self, store: Store) -> None:
        _finished_at(store, [T0], status=JobStatus.FAILED)
        submit(store, name="Resize")
        submit(store, name="Resize")
        submit(store, name="Email", queue="mail")

        counts = store.counts_by_name()

        assert dict(counts["Resize"]) == {**dict.fromkeys(JobStatus, 0), JobStatus.QUEUED: 2}
        assert dict(counts["Work"]) == {**dict.fromkeys(JobStatus, 0), JobStatus.FAILED: 1}
        assert dict(counts["Email"]) == {**dict.fromkeys(JobStatus, 0), JobStatus.QUEUED: 1}

    @requires_v2
    @pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED])
    def test_finished_jobs_are_listed_newest_first(self, store: Store, status: JobStatus) -> None:
        ids = _finished_at(store, [T0 + 3, T0 + 1, T0 + 2], status=status)
        _finished_at(
            store, [T0 + 4], status=JobStatus.COMPLETED if status is not JobStatus.COMPLETED else JobStatus.FAILED
        )

        page = store.list_jobs(status)

        assert [job.id for job in page.jobs] == [ids[0], ids[2], ids[1]]
        assert all(job.status is status for job in page.jobs)
        assert page.jobs[0] == store.get(ids[0])
        assert page.cursor is None

    @requires_v2
    def test_scheduled_jobs_are_listed_soonest_due_first_over_all_queues(self, store: Store) -> None:
        later = submit(store, due=T0 + 30, queue="a")
        soon = submit(store, due=T0 + 10, queue="b", priority=9)
        retried = submit(store, queue="a")
        claimed = claim_one(store, T0, queues=("a",))
        store.fail(retried, claimed.token, an_error(), retry_delay=20.0, result_ttl=TTL, now=T0)  # due at T0 + 20

        assert _listed(store, JobStatus.SCHEDULED) == [soon, retried, later]
        assert _listed(store, JobStatus.SCHEDULED, queue="a") == [retried, later]

    @requires_v2
    def test_queued_jobs_are_listed_in_claim_order(self, store: Store) -> None:
        a = submit(store, queue="q", now=T0)
        b = submit(store, queue="q", priority=2, now=T0 + 1)
        c = submit(store, queue="q", now=T0 + 2)
        d = submit(store, queue="q", priority=2, now=T0 + 3)
        other = submit(store, queue="other", now=T0 + 4)

        listed = _listed(store, JobStatus.QUEUED, queue="q")
        everywhere = _listed(store, JobStatus.QUEUED)

        assert listed == [b, d, a, c]
        assert sorted(everywhere) == sorted([a, b, c, d, other])
        assert [job_id for job_id in everywhere if job_id != other] == listed, "each queue's jobs in its order"
        assert listed == claim_ids(store, T0 + 10, queues=("q",))

    @requires_v2
    def test_running_jobs_are_listed_newest_start_first(self, store: Store) -> None:
        ids = [submit(store) for _ in range(3)]
        for i in (0, 2, 1):
            store.claim(1, LEASE, now=T0 + 1 + i)  # claims ids[0], ids[1], ids[2] at T0 + 1, T0 + 3, T0 + 2

        assert _listed(store, JobStatus.IN_PROGRESS) == [ids[1], ids[2], ids[0]]

    @requires_v2
    def test_a_list_filtered_by_name_and_queue(self, store: Store) -> None:
        resize = _finished_at(store, [T0 + 1, T0 + 3], name="Resize", queue="img")
        _finished_at(store, [T0 + 2], name="Email", queue="img")
        elsewhere = _finished_at(store, [T0 + 4], name="Resize", queue="other")

        assert _listed(store, JobStatus.COMPLETED, name="Resize") == [elsewhere[0], resize[1], resize[0]]
        assert _listed(store, JobStatus.COMPLETED, name="Resize", queue="img") == [resize[1], resize[0]]
        assert _listed(store, JobStatus.COMPLETED, queue="none") == []
        assert _listed(store, JobStatus.COMPLETED, name="None") == []
        assert _page_ids(store, JobStatus.COMPLETED, 1, name="Resize") == [[elsewhere[0]], [resize[1]], [resize[0]]]

    @requires_v2
    @pytest.mark.parametrize(
        "status", [JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.IN_PROGRESS, JobStatus.COMPLETED]
    )
    def test_pages_cover_the_list_exactly_once(self, store: Store, status: JobStatus) -> None:
        ids: list[str] = []
        for i in range(7):
            now = T0 + (i % 3)  # equal times too: the order among them is the store's, but fixed
            if status is JobStatus.COMPLETED:
                ids += _finished_at(store, [now])
            elif status is JobStatus.SCHEDULED:
                ids.append(submit(store, due=T0 + 100 + (i % 3), now=now))
            else:
                ids.append(submit(store, now=now))
        if status is JobStatus.IN_PROGRESS:
            store.claim(3, LEASE, now=T0 + 5)
            store.claim(4, LEASE, now=T0 + 5)

        whole = _listed(store, status)
        pages = _page_ids(store, status, limit=3)

        assert sorted(whole) == sorted(ids)
        assert [len(page) for page in pages] == [3, 3, 1]
        assert [job_id for page in pages for job_id in page] == whole
        assert _page_ids(store, status, limit=7) == [whole], "no cursor after a last page that is full"

    @requires_v2
    def test_paging_while_jobs_arrive_has_no_duplicates_or_gaps(self, store: Store) -> None:
        done = _finished_at(store, [T0 + i for i in range(10)])
        queued = [submit(store, queue="q", now=T0 + i) for i in range(10)]

        seen_done: list[str] = []
        seen_queued: list[str] = []
        jumped: list[str] = []
        done_cursor: str | None = None
        queued_cursor: str | None = None
        done_left = queued_left = True
        for round_ in range(30):
            if done_left:
                done_page = store.list_jobs(JobStatus.COMPLETED, cursor=done_cursor, limit=3)
                seen_done += [job.id for job in done_page.jobs]
                done_cursor, done_left = done_page.cursor, done_page.cursor is not None
            if queued_left:
                queued_page = store.list_jobs(JobStatus.QUEUED, queue="q", cursor=queued_cursor, limit=3)
                seen_queued += [job.id for job in queued_page.jobs]
                queued_cursor, queued_left = queued_page.cursor, queued_page.cursor is not None
            if not done_left and not queued_left:
                break
            # Between pages: newer finished jobs, later queued jobs, and queued jobs that jump the line.
            _finished_at(store, [T0 + 100 + round_])
            submit(store, queue="q", now=T0 + 100 + round_)
            jumped.append(submit(store, queue="q", priority=9, now=T0 + 100 + round_))

        assert not done_left and not queued_left
        assert seen_done == list(reversed(done)), "newer jobs come before the cursor, so none shows"
        assert len(seen_queued) == len(set(seen_queued)), "no job shows twice"
        assert seen_queued[:10] == queued, "every job that stayed is seen once, in order"
        assert len(seen_queued) > 10, "jobs queued behind the cursor show on later pages"
        assert not set(jumped) & set(seen_queued), "jobs that jumped ahead of the cursor do not show"

    @requires_v2
    def test_paging_while_another_thread_finishes_jobs(self, store: Store) -> None:
        done = _finished_at(store, [T0 + i for i in range(30)])
        for _ in range(30):
            submit(store, now=T0 + 50)
        writing = threading.Event()

        def writer() -> None:
            writing.set()
            for i, claimed in enumerate(store.claim(30, LEASE, now=T0 + 50)):
                store.complete(claimed.job.id, claimed.token, "1", result_ttl=TTL, now=T0 + 60 + i)

        thread = threading.Thread(target=writer)
        thread.start()
        assert writing.wait(5)
        seen = [job_id for page in _page_ids(store, JobStatus.COMPLETED, limit=4) for job_id in page]
        thread.join(30)

        assert len(seen) == len(set(seen)), "no job shows twice"
        assert set(done) <= set(seen), "no job that was there throughout is skipped"

    @requires_v2
    def test_a_bad_cursor_or_limit_is_a_value_error(self, store: Store) -> None:
        _finished_at(store, [T0, T0 + 1])
        with pytest.raises(ValueError, match="cursor"):
            store.list_jobs(JobStatus.COMPLETED, cursor="not a cursor")
        with pytest.raises(ValueError, match="limit"):
            store.list_jobs(JobStatus.COMPLETED, limit=0)

    @requires_v2
    def test_running_jobs_name_their_worker_and_lease(self, store: Store) -> None:
        first, second = submit(store), submit(store)
        one = claim_one(store, T0 + 1, worker_id="w-1")
        claim_one(store, T0 + 2, worker_id="w-2")
        store.renew([(one.job.id, one.token)], LEASE, now=T0 + 10)

        running = store.running_jobs()

        assert [(r.job.id, r.worker_id) for r in running] == [(second, "w-2"), (first, "w-1")]
        assert [r.lease_until for r in running] == [from_timestamp(T0 + 2 + LEASE), from_timestamp(T0 + 10 + LEASE)]
        assert running[0].job == store.get(second)
        assert [r.job.id for r in store.running_jobs(limit=1)] == [second]

    @requires_v2
    def test_throughput_per_minute_and_per_hour(self, store: Store) -> None:
        now = T0 + 3 * 3600 + 30 * 60 + 15  # 03:30:15
        _finished_at(store, [now - 10, now - 5, now])  # this minute
        _finished_at(store, [now - 5 * 60], status=JobStatus.FAILED)  # five minutes ago
        _finished_at(store, [now - 2 * 3600], status=JobStatus.COMPLETED)  # two hours ago
        _finished_at(store, [now - 60], status=JobStatus.CANCELED)  # not counted
        retried = submit(store, now=now)
        claimed = claim_one(store, now)
        store.fail(retried, claimed.token, an_error(), retry_delay=5.0, result_ttl=TTL, now=now)  # a retry: not counted

        throughput = store.throughput(now=now)

        assert len(throughput.minutes) == 60 and len(throughput.hours) == 24
        minute = (now // 60) * 60
        assert [p.start for p in throughput.minutes] == [from_timestamp(minute - 60 * (59 - i)) for i in range(60)]
        assert [(p.completed, p.failed) for p in throughput.minutes[-6:]] == [
            (0, 1),
            (0, 0),
            (0, 0),
            (0, 0),
            (0, 0),
            (3, 0),
        ]
        assert sum(p.completed + p.failed for p in throughput.minutes) == 4
        hour = (now // 3600) * 3600
        assert [p.start for p in throughput.hours] == [from_timestamp(hour - 3600 * (23 - i)) for i in range(24)]
        assert [(p.completed, p.failed) for p in throughput.hours[-3:]] == [(1, 0), (0, 0), (3, 1)]
        assert sum(p.completed + p.failed for p in throughput.hours) == 5

    @requires_v2
    def test_throughput_buckets_age_out(self, store: Store) -> None:
        _finished_at(store, [T0 + 30])

        assert store.throughput(now=T0 + 59 * 60).minutes[0].completed == 1
        assert sum(p.completed for p in store.throughput(now=T0 + 60 * 60).minutes) == 0
        assert store.throughput(now=T0 + 60 * 60).hours[-2].completed == 1
        later = store.throughput(now=T0 + 24 * 3600)
        assert sum(p.completed for p in later.hours) == 0 and sum(p.completed for p in later.minutes) == 0


class WorkersContract:
    @staticmethod
    def _info(worker_id: str, **changes: Any) -> WorkerInfo:
        started = _at(T0)
        info = WorkerInfo(
            id=worker_id,
            host="web-1",
            pid=4242,
            queues=("high", DEFAULT_QUEUE),
            concurrency=8,
            started_at=started,
            heartbeat_at=started,
        )
        return replace(info, **changes)

    @requires_v2
    def test_registered_workers_by_id_with_their_last_heartbeat(self, store: Store) -> None:
        store.register_worker(self._info("w-b"), ttl=30.0, now=T0)
        store.register_worker(self._info("w-a", pid=1, queues=("only",)), ttl=30.0, now=T0 + 5)
        store.register_worker(self._info("w-b"), ttl=30.0, now=T0 + 20)

        assert store.workers(now=T0 + 21) == [
            self._info("w-a", pid=1, queues=("only",), heartbeat_at=from_timestamp(T0 + 5)),
            self._info("w-b", heartbeat_at=from_timestamp(T0 + 20)),
        ]

    @requires_v2
    def test_a_worker_without_a_heartbeat_within_its_ttl_is_gone(self, store: Store) -> None:
        store.register_worker(self._info("short"), ttl=10.0, now=T0)
        store.register_worker(self._info("long"), ttl=60.0, now=T0)

        assert [w.id for w in store.workers(now=T0 + 10)] == ["long", "short"]
        assert [w.id for w in store.workers(now=T0 + 11)] == ["long"]
        assert store.workers(now=T0 + 61) == []

    @requires_v2
    def test_an_unregistered_worker_is_gone_at_once(self, store: Store) -> None:
        store.register_worker(self._info("w-1"), ttl=30.0, now=T0)
        store.register_worker(self._info("w-2"), ttl=30.0, now=T0)

        store.unregister_worker("w-1")
        store.unregister_worker("never-registered")

        assert [w.id for w in store.workers(now=T0 + 1)] == ["w-2"]


class OccurrenceContract:
    @requires_v2
    def test_exactly_one_of_many_threads_claims_an_occurrence(self, store: Store) -> None:
        start = threading.Barrier(8)
        answers: list[bool] = []
        lock = threading.Lock()

        def claimer() -> None:
            start.wait()
            won = store.claim_occurrence("nightly", T0 + 3600, now=T0 + 3600)
            with lock:
                answers.append(won)

        threads = [threading.Thread(target=claimer) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(answers) == [False] * 7 + [True]
        assert store.occurrences() == {"nightly": T0 + 3600}

    @requires_v2
    def test_only_a_later_occurrence_can_be_claimed(self, store: Store) -> None:
        assert store.claim_occurrence("hourly", T0 + 3600, now=T0 + 3600)
        assert not store.claim_occurrence("hourly", T0 + 3600, now=T0 + 3601)
        assert not store.claim_occurrence("hourly", T0, now=T0 + 3601)
        assert store.claim_occurrence("hourly", T0 + 7200, now=T0 + 7200)
        assert store.claim_occurrence("daily", T0, now=T0 + 7200)

        assert store.occurrences() == {"hourly": T0 + 7200, "daily": T0}


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
    MonitoringContract,
    WorkersContract,
    OccurrenceContract,
):
    """The whole contract. Subclass it in a test module and give it a ``store`` fixture."""


def contract_classes() -> list[type]:
    """The classes :class:`StoreContract` is made of."""
    return [cls for cls in StoreContract.__mro__[1:] if cls.__name__.endswith("Contract")]

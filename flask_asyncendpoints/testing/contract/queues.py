"""Queues and priorities, waiting for work and for a job to finish, and recurring occurrences."""

from __future__ import annotations

import threading
import time
from typing import Any

from ...jobs import DEFAULT_QUEUE, ClaimedJob, Job, JobStatus
from ...stores import CancelResult, LeaseState, Store
from .support import FAR, LEASE, T0, TTL, _stored, an_error, claim_ids, claim_one, new_id, submit


class QueuesContract:
    """Named queues, priorities and delayed jobs."""

    def test_queues_are_served_in_the_order_given(self, store: Store) -> None:
        low = [submit(store, queue="low", now=T0 + i) for i in range(2)]
        high = [submit(store, queue="high", now=T0 + 2 + i) for i in range(2)]

        assert claim_ids(store, T0 + 5, limit=3, queues=("high", "low")) == [*high, low[0]]
        assert claim_ids(store, T0 + 5, queues=("high", "low")) == [low[1]]

    def test_a_claim_takes_only_from_its_queues(self, store: Store) -> None:
        default = submit(store)
        other = submit(store, queue="other")

        assert claim_ids(store, T0, queues=("third",)) == []
        assert claim_ids(store, T0) == [default]
        assert claim_ids(store, T0) == []
        assert claim_ids(store, T0, queues=("other", DEFAULT_QUEUE)) == [other]

    def test_higher_priorities_first_and_fifo_within_a_priority(self, store: Store) -> None:
        a = submit(store, priority=0, now=T0)
        b = submit(store, priority=5, now=T0 + 1)
        c = submit(store, priority=0, now=T0 + 2)
        d = submit(store, priority=5, now=T0 + 3)
        e = submit(store, priority=-1, now=T0 + 4)

        assert claim_ids(store, T0 + 10, limit=2) == [b, d]
        assert claim_ids(store, T0 + 10) == [a, c, e]

    def test_jobs_of_one_priority_line_up_by_the_time_they_became_due(self, store: Store) -> None:
        retried = submit(store, priority=5, now=T0)
        first = claim_one(store, T0)
        store.fail(retried, first.token, an_error(), retry_delay=2.0, result_ttl=TTL, now=T0)  # due at T0 + 2
        delayed = submit(store, priority=5, due=T0 + 3, now=T0)
        fresh = submit(store, priority=5, now=T0 + 5)
        lower = submit(store, priority=1, now=T0 - 100)

        assert claim_ids(store, T0 + 6) == [retried, delayed, fresh, lower]

    def test_a_retry_keeps_its_queue_and_priority(self, store: Store) -> None:
        job_id = submit(store, queue="q", priority=3, now=T0)
        first = claim_one(store, T0, queues=("q",))
        store.fail(job_id, first.token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0)
        earlier = submit(store, queue="q", priority=1, now=T0 - 50)

        scheduled = _stored(store, job_id)
        assert (scheduled.queue, scheduled.priority, scheduled.status) == ("q", 3, JobStatus.SCHEDULED)
        assert claim_ids(store, T0 + 1, queues=("q",)) == [job_id, earlier]

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

    def test_get_finds_a_job_in_any_queue(self, store: Store) -> None:
        ids = {queue: submit(store, queue=queue) for queue in ("a", "b", "c")}
        for queue, job_id in ids.items():
            assert _stored(store, job_id).queue == queue

    def test_recover_and_purge_cover_every_queue(self, store: Store) -> None:
        ids = [submit(store, queue=queue, max_retries=0) for queue in ("a", "b")]
        store.claim(5, LEASE, queues=("a", "b"), now=T0)

        assert {job.id for job in store.recover(result_ttl=1.0, now=T0 + LEASE + 1)} == set(ids)
        assert store.purge(now=T0 + LEASE + 3) == 2
        assert all(store.get(job_id) is None for job_id in ids)

    def test_a_delayed_job_canceled_before_it_is_due(self, store: Store) -> None:
        job_id = submit(store, due=T0 + 60)

        outcome, job = store.cancel(job_id, result_ttl=TTL, now=T0 + 1)

        assert outcome is CancelResult.CANCELED
        assert job is not None and job.status is JobStatus.CANCELED and job.retry_delay_until is None
        assert store.claim(5, LEASE, now=T0 + 100) == []


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

    def test_a_waiter_wakes_for_a_job_of_its_queues(self, store: Store) -> None:
        _, _, woke_a = _waiting(store, queues=("a",))
        _, _, woke_b = _waiting(store, queues=("c", "b"))

        submit(store, queue="b")
        assert woke_b.wait(10)
        submit(store, queue="a")
        assert woke_a.wait(10)

    def test_a_delayed_job_wakes_no_one_before_it_is_due(self, store: Store) -> None:
        # A delayed job (due in 2036) must not end a wait: the wait lasts its whole timeout. What
        # the clock says is read, not guessed: a try whose submit took longer than the wait shows
        # nothing (the wait ended first) and is made again with a longer wait.
        for timeout in (0.4, 1.6, 6.4):
            start, submitted, end = _submit_during_a_wait(store, timeout)
            if submitted < end:
                # Milliseconds are what a store's wait is precise to.
                assert end - start >= timeout - 0.01, "the delayed job woke a waiter"
                return
        raise AssertionError("every submit took longer than the wait it was to happen in")

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


def _claiming(
    store: Store, *, again: bool = True, limit: int = 5, **options: Any
) -> tuple[threading.Thread, list[list[ClaimedJob]]]:
    """A thread blocked in ``wait_and_claim(30, limit, LEASE, **options)``; the list its answer goes in.

    :param again: wait again after a wake-up that claimed nothing (a wait may end early), up to
        100 times, as a worker does.
    """
    started = threading.Event()
    answers: list[list[ClaimedJob]] = []

    def claimer() -> None:
        started.set()
        for _ in range(100 if again else 1):
            claimed = store.wait_and_claim(30.0, limit, LEASE, **options)
            if claimed:
                break
        answers.append(claimed)

    thread = threading.Thread(target=claimer, daemon=True)
    thread.start()
    assert started.wait(5)
    return thread, answers


def _answer(thread: threading.Thread, answers: list[list[ClaimedJob]]) -> list[ClaimedJob]:
    thread.join(10)
    assert not thread.is_alive(), "wait_and_claim did not return"
    (claimed,) = answers
    return claimed


class WaitAndClaimContract:
    """:meth:`~flask_asyncendpoints.stores.Store.wait_and_claim`: an idle worker's wait and claim."""

    def test_a_waiting_worker_gets_the_job_created_while_it_waits(self, store: Store) -> None:
        # The create may come before the wait begins or while it blocks: either way the job is claimed.
        thread, answers = _claiming(store, now=T0 + 1)
        job_id = submit(store)

        (claimed,) = _answer(thread, answers)
        assert claimed.job.id == job_id and claimed.job.status is JobStatus.IN_PROGRESS
        assert _stored(store, job_id).status is JobStatus.IN_PROGRESS
        assert store.renew([(job_id, claimed.token)], LEASE, now=T0 + 2) == {job_id: LeaseState.HELD}
        done = store.complete(job_id, claimed.token, '"done"', result_ttl=TTL, now=T0 + 3)
        assert done is not None and done.status is JobStatus.COMPLETED
        assert store.claim(5, LEASE, now=T0 + 4) == []

    def test_without_a_time_it_claims_on_the_stores_clock(self, store: Store) -> None:
        thread, answers = _claiming(store)
        job_id = submit(store)

        (claimed,) = _answer(thread, answers)
        stored = _stored(store, job_id)
        assert claimed.job.started_at is not None and stored.started_at is not None
        assert abs((claimed.job.started_at - stored.started_at).total_seconds()) < 0.001
        assert store.renew([(job_id, claimed.token)], LEASE) == {job_id: LeaseState.HELD}
        done = store.complete(job_id, claimed.token, '"done"', result_ttl=TTL)
        assert done is not None and done.status is JobStatus.COMPLETED

    def test_it_answers_nothing_when_the_wait_times_out(self, store: Store) -> None:
        assert store.wait_and_claim(0.05, 5, LEASE, now=T0) == []
        submit(store, due=FAR)
        assert store.wait_and_claim(0.05, 5, LEASE, now=T0) == []

    def test_threads_waiting_at_once_each_get_a_job_created_while_they_wait(self, store: Store) -> None:
        # The worker keeps several threads waiting where Store.concurrent_waits says each job wakes
        # one of them; on any store, no job may be left for a waiter's timeout.
        waiters = [_claiming(store, limit=1, now=T0 + 1) for _ in range(2)]
        created = {submit(store), submit(store)}

        answers = [_answer(thread, answers) for thread, answers in waiters]
        assert sorted(len(claimed) for claimed in answers) == [1, 1]
        assert {claimed.job.id for got in answers for claimed in got} == created
        assert store.claim(5, LEASE, now=T0 + 2) == []

    def test_wake_ends_the_wait_with_nothing_claimed(self, store: Store) -> None:
        thread, answers = _claiming(store, again=False, now=T0)
        store.wake()
        assert _answer(thread, answers) == []

    def test_it_takes_a_job_of_any_of_its_queues(self, store: Store) -> None:
        thread, answers = _claiming(store, queues=("c", "b"), now=T0 + 1)
        other = submit(store, queue="a")
        job_id = submit(store, queue="b")

        assert [claimed.job.id for claimed in _answer(thread, answers)] == [job_id]
        assert claim_ids(store, T0 + 1, queues=("a",)) == [other]

    def test_queues_priorities_and_limit_as_a_claim(self, store: Store) -> None:
        low = [submit(store, queue="low", priority=9, now=T0 + i) for i in range(3)]
        high = [submit(store, queue="high", priority=p, now=T0 + 3 + p) for p in (0, 1)]

        claimed = store.wait_and_claim(30.0, 3, LEASE, queues=("high", "low"), worker_id="w-1", now=T0 + 10)
        assert [c.job.id for c in claimed] == [high[1], high[0], low[0]]
        assert {r.job.id: r.worker_id for r in store.running_jobs()} == {c.job.id: "w-1" for c in claimed}
        assert claim_ids(store, T0 + 10, limit=1, queues=("high", "low")) == [low[1]]


class OccurrenceContract:
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

    def test_only_a_later_occurrence_can_be_claimed(self, store: Store) -> None:
        assert store.claim_occurrence("hourly", T0 + 3600, now=T0 + 3600)
        assert not store.claim_occurrence("hourly", T0 + 3600, now=T0 + 3601)
        assert not store.claim_occurrence("hourly", T0, now=T0 + 3601)
        assert store.claim_occurrence("hourly", T0 + 7200, now=T0 + 7200)
        assert store.claim_occurrence("daily", T0, now=T0 + 7200)

        assert store.occurrences() == {"hourly": T0 + 7200, "daily": T0}


def _submit_during_a_wait(store: Store, timeout: float) -> tuple[float, float, float]:
    """Submit a delayed job while another thread waits for work for ``timeout`` seconds: when the
    wait started, when the submit ended and when the wait ended (``time.monotonic``)."""
    times: dict[str, float] = {}
    started = threading.Event()

    def waiter() -> None:
        times["start"] = time.monotonic()
        started.set()
        store.wait_for_work(timeout)
        times["end"] = time.monotonic()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert started.wait(10)
    submit(store, due=FAR)
    submitted = time.monotonic()
    thread.join(timeout + 10)
    assert not thread.is_alive(), "the wait outlasted its timeout"
    return times["start"], submitted, times["end"]

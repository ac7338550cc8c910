"""Memory-store behaviour beyond the shared contract: its bounds, its indexes, its waiters."""

from __future__ import annotations

import bisect
import logging
import random
import threading
import time

import pytest
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, JobContext
from flask_asyncendpoints.errors import ConfigurationError
from flask_asyncendpoints.jobs import JobPayload, JobStatus
from flask_asyncendpoints.stores import CancelResult, MemoryStore, PendingLimitReached, create_store
from flask_asyncendpoints.stores.memory.index import LOAD, SortedIndex

from ..conftest import T0, FakeClock
from .test_contract import LEASE, TTL, assert_claimed_exactly_once, claim_one, new_id, submit


def test_eight_threads_claim_ten_thousand_jobs_each_exactly_once(clock: FakeClock) -> None:
    assert_claimed_exactly_once(MemoryStore(clock=clock), total=10_000)


class TestBounds:
    def test_the_defaults(self) -> None:
        store = MemoryStore()
        assert (store.max_pending, store.max_finished, store.history_limit) == (10_000, 10_000, 10)

    def test_the_pending_bound_counts_every_queue_and_says_how_to_raise_it(self, clock: FakeClock) -> None:
        store = MemoryStore(clock=clock, max_pending=3)
        submit(store, queue="a")
        submit(store, queue="b")
        submit(store, queue="c", due=T0 + 60)

        with pytest.raises(PendingLimitReached, match=r"MemoryStore\(max_pending=\.\.\.\)"):
            submit(store, queue="d")
        assert sum(store.counts().values()) == 3

    def test_the_lower_of_the_two_pending_limits_holds(self, clock: FakeClock) -> None:
        store = MemoryStore(clock=clock, max_pending=3)
        for _ in range(2):
            store.create(new_id(), "Work", JobPayload(), max_retries=0, max_pending=5, now=T0)
        with pytest.raises(PendingLimitReached, match="queue 'default'"):
            store.create(new_id(), "Work", JobPayload(), max_retries=0, max_pending=2, now=T0)
        store.create(new_id(), "Work", JobPayload(), max_retries=0, max_pending=5, now=T0)
        with pytest.raises(PendingLimitReached, match="memory store"):
            store.create(new_id(), "Work", JobPayload(), max_retries=0, max_pending=5, now=T0)

    def test_finishing_frees_room_for_pending_jobs(self, clock: FakeClock) -> None:
        store = MemoryStore(clock=clock, max_pending=1)
        job_id = submit(store)
        claimed = claim_one(store, T0)
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0)

        submit(store)
        assert store.counts()[JobStatus.QUEUED] == 1

    def test_the_job_that_finished_first_is_evicted_first(self, clock: FakeClock) -> None:
        store = MemoryStore(clock=clock, max_finished=2)
        ids = [submit(store, now=T0 + i) for i in range(3)]
        claimed = {c.job.id: c for c in store.claim(3, LEASE, now=T0 + 5)}
        for at, job_id in enumerate((ids[2], ids[0], ids[1])):  # finished in this order
            store.complete(job_id, claimed[job_id].token, "1", result_ttl=TTL, now=T0 + 10 + at)

        assert store.get(ids[2]) is None
        assert store.attempts(ids[2]) == []
        assert [store.get(job_id) is not None for job_id in ids[:2]] == [True, True]
        assert store.counts()[JobStatus.COMPLETED] == 2
        assert [job.id for job in store.list_jobs(JobStatus.COMPLETED).jobs] == [ids[1], ids[0]]

    def test_evicting_keeps_the_expiry_heap_bounded(self, clock: FakeClock) -> None:
        store = MemoryStore(clock=clock, max_finished=10, max_pending=None)
        for _ in range(50):
            for _ in range(100):
                submit(store)
            for claimed in store.claim(100, LEASE, now=T0):
                store.complete(claimed.job.id, claimed.token, "1", result_ttl=86_400.0, now=T0)

        assert store.counts()[JobStatus.COMPLETED] == 10
        assert len(store._expiring) <= 2 * 10 + 64 + 1  # entries of evicted jobs are dropped, not kept a day
        assert store.purge(now=T0 + 86_400) == 10

    def test_without_bounds(self, clock: FakeClock) -> None:
        store = MemoryStore(clock=clock, max_pending=None, max_finished=None)
        for _ in range(10_050):
            submit(store)
        assert store.counts()[JobStatus.QUEUED] == 10_050

    @pytest.mark.parametrize("option", ["history_limit", "max_pending", "max_finished"])
    def test_a_negative_bound_is_a_configuration_error(self, option: str) -> None:
        with pytest.raises(ConfigurationError, match=option):
            MemoryStore(**{option: -1})  # type: ignore[arg-type]

    def test_a_history_limit_of_zero_keeps_none(self, clock: FakeClock) -> None:
        store = MemoryStore(clock=clock, history_limit=0)
        job_id = submit(store)
        claimed = claim_one(store, T0)
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0)
        assert store.attempts(job_id) == []

    def test_a_full_store_answers_503_with_retry_after(self, clock: FakeClock) -> None:
        ae = AsyncEndpoints()

        @ae.handler("Work")
        def work(ctx: JobContext) -> None:
            return None

        ae.route("/work", "Work", methods=["POST"])
        app = Flask("bounded")
        app.config.update(TESTING=True, ASYNCENDPOINTS_WORKER=False)
        ae.init_app(app, store=MemoryStore(clock=clock, max_pending=2))
        client = app.test_client()

        statuses = [client.post("/work").status_code for _ in range(3)]
        refused = client.post("/work")

        assert statuses == [202, 202, 503]
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert refused.mimetype == "application/problem+json"


class TestCreateStore:
    def test_memory_urls_take_the_history_limit(self) -> None:
        store = create_store("memory://", key_prefix="ae", history_limit=3)
        assert isinstance(store, MemoryStore) and store.history_limit == 3

    @pytest.mark.parametrize("limit", [-1, 2.5, True])
    def test_a_history_limit_that_is_not_a_count_is_refused(self, limit: object) -> None:
        with pytest.raises(ConfigurationError, match="ASYNCENDPOINTS_HISTORY_LIMIT"):
            create_store("memory://", key_prefix="ae", history_limit=limit)  # type: ignore[arg-type]


class TestWaiting:
    def test_a_waiter_wakes_when_a_delayed_job_becomes_due(self) -> None:
        store = MemoryStore()  # the real clock: the job becomes due while the waiter waits
        woke = threading.Event()

        def waiter() -> None:
            store.wait_for_work(30.0)
            woke.set()

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        job_id = new_id()
        store.create(job_id, "Work", JobPayload(), max_retries=0, due=time.time() + 0.2)

        assert woke.wait(10), "the waiter slept past the due time"
        (claimed,) = store.claim(1, LEASE)
        assert claimed.job.id == job_id

    def test_each_create_wakes_one_waiter_of_its_queue(self, clock: FakeClock) -> None:
        store = MemoryStore(clock=clock)
        woke: list[str] = []
        lock = threading.Lock()
        both = threading.Event()

        def waiter(name: str) -> None:
            store.wait_for_work(30.0, queues=("q",))
            with lock:
                woke.append(name)
                if len(woke) == 2:
                    both.set()

        threads = [threading.Thread(target=waiter, args=(name,), daemon=True) for name in ("one", "two")]
        for thread in threads:
            thread.start()
        submit(store, queue="q")
        submit(store, queue="q")

        assert both.wait(10), "two jobs wake two waiters"


class TestWatchers:
    def test_a_failing_watcher_does_not_fail_the_cancel(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = MemoryStore(clock=clock)
        heard: list[str] = []

        def broken(job_id: str) -> None:
            raise RuntimeError("broken watcher")

        store.watch_cancels(broken)
        store.watch_cancels(heard.append)
        job_id = submit(store)
        claim_one(store, T0)

        with caplog.at_level(logging.ERROR):
            outcome, job = store.cancel(job_id, result_ttl=TTL, now=T0 + 1)

        assert outcome is CancelResult.REQUESTED and job is not None and job.cancel_requested
        assert heard == [job_id]
        assert "a cancel watcher failed" in caplog.text


class TestSortedIndex:
    def test_it_agrees_with_a_sorted_list(self) -> None:
        rng = random.Random(7)
        index = SortedIndex()
        reference: list[tuple[float, int, str]] = []
        seq = 0
        for step in range(6 * LOAD * 4):
            action = rng.random()
            if action < 0.55 or not reference:
                seq += 1
                key = (float(rng.randrange(50)), seq, f"id{seq}")
                index.add(key)
                bisect.insort(reference, key)
            elif action < 0.8:
                key = reference.pop(rng.randrange(len(reference)))
                index.remove(key)
            else:
                assert index.pop_first() == reference.pop(0)
            if step % 97 == 0:
                self._agree(index, reference, rng)
        self._agree(index, reference, rng)

    @staticmethod
    def _agree(index: SortedIndex, reference: list[tuple[float, int, str]], rng: random.Random) -> None:
        assert len(index) == len(reference)
        assert list(index.after(None)) == reference
        assert list(index.after(None, reverse=True)) == reference[::-1]
        if not reference:
            return
        assert index.first() == reference[0]
        for probe in [*rng.sample(reference, min(5, len(reference))), (25.5, 0, ""), (-1.0, 0, ""), (99.0, 0, "")]:
            position = bisect.bisect_right(reference, probe)
            assert list(index.after(probe)) == reference[position:]
            assert list(index.after(probe, reverse=True)) == reference[: bisect.bisect_left(reference, probe)][::-1]
            assert index.count_below(probe) == bisect.bisect_left(reference, probe)

    def test_removing_a_missing_key_is_a_key_error(self) -> None:
        index = SortedIndex()
        with pytest.raises(KeyError):
            index.remove((1.0, 1, "a"))
        index.add((1.0, 1, "a"))
        with pytest.raises(KeyError):
            index.remove((1.0, 2, "b"))
        with pytest.raises(KeyError):
            index.remove((0.5, 2, "b"))
        assert list(index.after(None)) == [(1.0, 1, "a")]

"""Writing results: one that cannot be stored fails its own attempt and no other job's.

On Redis a pool thread's result joins a batch written by one script call. A result the store cannot
encode once failed the whole batch: "could not write 9 result(s); they are discarded", the other
jobs ran again after their leases and some ended ``Failed LEASEEXPIRED``. Now a result is checked
where it is serialized, before it joins a batch, and a batch the store refuses for any reason but
being unreachable is written one result at a time.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, Job, JobContext, JobStatus
from flask_asyncendpoints.jobs import ClaimedJob
from flask_asyncendpoints.signals import job_finished
from flask_asyncendpoints.stores import Store
from flask_asyncendpoints.stores.redis import RedisStore

from .conftest import _delete_prefix

JOBS = 30
BAD = 17


class FinalJobs:
    """Collects the final outcome of each job from ``job_finished``, to wait on without sleeping."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.jobs: dict[str, Job] = {}
        self.discarded: list[str] = []
        self._cond = threading.Condition()
        job_finished.connect(self._receive, sender=app, weak=False)

    def _receive(self, sender: Flask, job: Job | None, job_id: str, **extra: object) -> None:
        with self._cond:
            if job is None:
                self.discarded.append(job_id)
            elif job.status.is_final:
                self.jobs[job_id] = job
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> dict[str, Job]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.jobs) >= count, timeout):
                raise AssertionError(f"{len(self.jobs)} of {count} jobs finished within {timeout} s")
            return dict(self.jobs)

    def close(self) -> None:
        job_finished.disconnect(self._receive, sender=self.app)


def make_app(ae: AsyncEndpoints, store: Store, *, threads: int = 4, batch_size: int = 5) -> Flask:
    """An app whose worker is started by the test, with ``threads`` pool threads claiming ``batch_size``."""
    app = Flask("results")
    app.config.update(
        ASYNCENDPOINTS_WORKER=False,
        ASYNCENDPOINTS_MAX_CONCURRENCY=threads,
        ASYNCENDPOINTS_BATCH_SIZE=batch_size,
        ASYNCENDPOINTS_POLL_INTERVAL=0.05,
    )
    ae.init_app(app, store=store)
    return app


def check_outcome(finals: dict[str, Job], ids: list[str], runs: Counter[str], bad_id: str) -> None:
    """29 jobs Completed with their own result, each run once; the bad one Failed on its own."""
    assert len(finals) == JOBS
    for index, job_id in enumerate(ids):
        job = finals[job_id]
        if job_id == bad_id:
            continue
        assert job.status is JobStatus.COMPLETED, job
        assert job.result == {"n": index}
        assert runs[job_id] == 1
    bad = finals[bad_id]
    assert bad.status is JobStatus.FAILED
    assert bad.error is not None
    assert bad.error.code == "RESULTNOTSERIALIZABLE"
    assert runs[bad_id] == 1
    assert not any(job.error is not None and job.error.code == "LEASEEXPIRED" for job in finals.values())


def test_a_result_with_a_lone_surrogate_fails_only_its_own_job(store: Store) -> None:
    ae = AsyncEndpoints()
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    @ae.handler("List", max_retries=0)
    def list_files(ctx: JobContext) -> Any:
        with lock:
            runs[ctx.job_id] += 1
        if ctx.request["n"] == BAD:
            return {"n": BAD, "file": "report-\udcff.txt"}  # as os.listdir() names an undecodable file
        return {"n": ctx.request["n"]}

    app = make_app(ae, store)
    finals = FinalJobs(app)
    try:
        ids = [ae.submit("List", {"n": n}, app=app).id for n in range(JOBS)]
        ae.start_worker(app)
        done = finals.wait_for(JOBS)
    finally:
        ae.shutdown(app, timeout=5)
        finals.close()

    check_outcome(done, ids, runs, ids[BAD])
    message = done[ids[BAD]].error.message  # type: ignore[union-attr]
    assert "result['file'] holds a lone UTF-16 surrogate ('\\udcff')" in message
    assert not finals.discarded


class RefusesPoison(RedisStore):
    """A Redis store that cannot write one particular result (raising what no store error is), and
    whose first write waits until the test has lined up the other results behind it."""

    def __init__(self, client: Any, *, key_prefix: str) -> None:
        super().__init__(client, key_prefix=key_prefix)
        self.first_write = threading.Event()
        self.go_on = threading.Event()
        #: Set by each write after the first.
        self.after_first = threading.Event()
        #: The job ids of each call's completions, in call order.
        self.batches: list[list[str]] = []

    def complete_many(
        self, completions: Sequence[tuple[ClaimedJob, str]], *, result_ttl: float | None, now: float | None = None
    ) -> list[Job | None]:
        if not self.first_write.is_set():
            self.first_write.set()
            assert self.go_on.wait(10)
        self.batches.append([claimed.job.id for claimed, _ in completions])
        if any('"poison"' in result for _, result in completions):
            raise TypeError("this store cannot write a poison result")
        return super().complete_many(completions, result_ttl=result_ttl, now=now)


@pytest.fixture(params=["fakeredis", "redis"])
def poison_store(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[RefusesPoison]:
    client = request.getfixturevalue("fake_redis_client" if request.param == "fakeredis" else "real_redis_client")
    store = RefusesPoison(client, key_prefix=key_prefix)
    yield store
    store.close()  # its subscriber thread, which outlives the test otherwise
    if request.param == "redis":
        _delete_prefix(client, key_prefix)


def test_a_batch_the_store_refuses_is_written_one_by_one(poison_store: RefusesPoison) -> None:
    ae = AsyncEndpoints()
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    @ae.handler("Compute", max_retries=0)
    def compute(ctx: JobContext) -> Any:
        with lock:
            runs[ctx.job_id] += 1
        if ctx.request["n"] != 0:
            # Only job 0's result goes first (on its own, once the flusher's window is over); every
            # other result, the poison among them, waits in the outbox behind that first write.
            assert poison_store.first_write.wait(10)
        if ctx.request["n"] == BAD:
            return "poison"
        return {"n": ctx.request["n"]}

    # One thread per job, all claimed at once: the first write holds up the results behind it,
    # which line up in the outbox and go to the store together, the poison among them.
    app = make_app(ae, poison_store, threads=JOBS, batch_size=JOBS)
    worker = ae.get_worker(app)
    results = worker._results  # the outbox is not public: count what joins it
    lined_up = threading.Semaphore(0)
    post = results.post

    def counted_post(attempt: Any, result_json: str) -> None:
        post(attempt, result_json)
        lined_up.release()  # back from post(): the result is written or waits in the outbox

    results.post = counted_post  # type: ignore[method-assign]
    finals = FinalJobs(app)
    try:
        ids = [ae.submit("Compute", {"n": n}, app=app).id for n in range(JOBS)]
        ae.start_worker(app)
        assert poison_store.first_write.wait(10)
        # Every post returns, job 0's too (the flusher makes the first write): all 30 results are
        # written or waiting, the 29 behind the first write together, the poison among them.
        for _ in range(JOBS):
            assert lined_up.acquire(timeout=10)
        poison_store.go_on.set()
        done = finals.wait_for(JOBS)
    finally:
        poison_store.go_on.set()
        ae.shutdown(app, timeout=5)
        finals.close()

    # The batch holding the poison held others too; it was refused, and then each of its results
    # was written on its own. (How the 30 split into batches depends on the threads' timing.)
    batches = poison_store.batches
    refused = [i for i, batch in enumerate(batches) if ids[BAD] in batch and len(batch) > 1]
    assert len(refused) == 1, batches
    first_refused = refused[0]
    members = batches[first_refused]
    assert batches[first_refused + 1 : first_refused + 1 + len(members)] == [[job_id] for job_id in members]
    check_outcome(done, ids, runs, ids[BAD])
    assert "TypeError" in done[ids[BAD]].error.message  # type: ignore[union-attr]
    assert not finals.discarded


# -- group commit: results of jobs running together are written together -----------------------------


class RecordsWrites(RedisStore):
    """A Redis store that records each ``complete_many`` call: the thread that made it and its jobs."""

    def __init__(self, client: Any, *, key_prefix: str) -> None:
        super().__init__(client, key_prefix=key_prefix)
        self.writes: list[tuple[str, list[str]]] = []
        self.wrote = threading.Semaphore(0)

    def complete_many(
        self, completions: Sequence[tuple[ClaimedJob, str]], *, result_ttl: float | None, now: float | None = None
    ) -> list[Job | None]:
        self.writes.append((threading.current_thread().name, [claimed.job.id for claimed, _ in completions]))
        try:
            return super().complete_many(completions, result_ttl=result_ttl, now=now)
        finally:
            self.wrote.release()


@pytest.fixture
def recording_store(fake_redis_client: Any, key_prefix: str) -> Iterator[RecordsWrites]:
    store = RecordsWrites(fake_redis_client, key_prefix=key_prefix)
    yield store
    store.close()


def count_posts(worker: Any) -> threading.Semaphore:
    """A semaphore released each time a result of ``worker`` comes back from ``Results.post``."""
    posted = threading.Semaphore(0)
    post = worker._results.post

    def counted_post(attempt: Any, result_json: str) -> None:
        post(attempt, result_json)
        posted.release()

    worker._results.post = counted_post
    return posted


def pair_app(store: Store) -> tuple[AsyncEndpoints, Flask, dict[int, threading.Event]]:
    """An app whose two jobs run at once: job 0 ends as soon as both run, job 1 when told to."""
    ae = AsyncEndpoints()
    both = threading.Barrier(2)
    release = {1: threading.Event()}

    @ae.handler("Pair", max_retries=0)
    def pair(ctx: JobContext) -> int:
        both.wait(10)
        n: int = ctx.request["n"]
        if n in release:
            assert release[n].wait(10)
        return n

    return ae, make_app(ae, store, threads=2, batch_size=2), release


def test_a_result_waits_a_moment_for_the_running_ones_then_the_flusher_writes_it(
    recording_store: RecordsWrites,
) -> None:
    ae, app, release = pair_app(recording_store)
    finals = FinalJobs(app)
    try:
        ids = [ae.submit("Pair", {"n": n}, app=app).id for n in range(2)]
        ae.start_worker(app)
        # Job 1 still runs, so job 0's result is left for it to join; nothing joins it, and the
        # flusher writes it alone once the window is over.
        assert recording_store.wrote.acquire(timeout=10)
        assert recording_store.writes == [("asyncendpoints-flusher", [ids[0]])]
        # With nothing else running, job 1's result is written at once, by its own thread.
        release[1].set()
        done = finals.wait_for(2)
    finally:
        release[1].set()
        ae.shutdown(app, timeout=5)
        finals.close()
    assert [write[1] for write in recording_store.writes] == [[ids[0]], [ids[1]]]
    assert recording_store.writes[1][0] != "asyncendpoints-flusher"
    assert {done[job_id].status for job_id in ids} == {JobStatus.COMPLETED}


def test_results_of_jobs_that_end_within_the_window_are_written_in_one_call(
    recording_store: RecordsWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_asyncendpoints.worker import results

    # A window longer than the test: only job 1's result can end job 0's wait.
    monkeypatch.setattr(results, "COALESCE_WINDOW", 30.0)
    ae, app, release = pair_app(recording_store)
    finals = FinalJobs(app)
    try:
        ids = [ae.submit("Pair", {"n": n}, app=app).id for n in range(2)]
        worker = ae.get_worker(app)
        posted = count_posts(worker)
        ae.start_worker(app)
        assert posted.acquire(timeout=10)  # job 0's result waits in the outbox
        assert recording_store.writes == []
        release[1].set()
        done = finals.wait_for(2)
    finally:
        release[1].set()
        ae.shutdown(app, timeout=5)
        finals.close()
    assert [sorted(write[1]) for write in recording_store.writes] == [sorted(ids)]
    assert {done[job_id].status for job_id in ids} == {JobStatus.COMPLETED}


class GatedWrites(RecordsWrites):
    """A recording store whose first ``complete_many`` waits until the test lets it go on."""

    def __init__(self, client: Any, *, key_prefix: str) -> None:
        super().__init__(client, key_prefix=key_prefix)
        self.first_write = threading.Event()
        self.go_on = threading.Event()
        #: Set by each write after the first.
        self.after_first = threading.Event()

    def complete_many(
        self, completions: Sequence[tuple[ClaimedJob, str]], *, result_ttl: float | None, now: float | None = None
    ) -> list[Job | None]:
        if self.first_write.is_set():
            self.after_first.set()
        else:
            self.first_write.set()
            assert self.go_on.wait(10)
        return super().complete_many(completions, result_ttl=result_ttl, now=now)


def test_a_result_that_comes_during_a_write_waits_for_the_rest_of_its_batch(
    fake_redis_client: Any, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_asyncendpoints.worker import results

    # A window longer than the test: only job 3's result can end job 2's wait.
    monkeypatch.setattr(results, "COALESCE_WINDOW", 30.0)
    store = GatedWrites(fake_redis_client, key_prefix=key_prefix)
    ae = AsyncEndpoints()
    release = {2: threading.Event(), 3: threading.Event()}

    @ae.handler("Step", max_retries=0)
    def step(ctx: JobContext) -> int:
        n: int = ctx.request["n"]
        if n in release:
            assert release[n].wait(10)
        return n

    app = make_app(ae, store, threads=2, batch_size=2)
    finals = FinalJobs(app)
    try:
        ids = [ae.submit("Step", {"n": n}, app=app).id for n in range(4)]
        worker = ae.get_worker(app)
        posted = count_posts(worker)
        ae.start_worker(app)
        # Jobs 0 and 1 end together and their write waits; meanwhile the other thread claims jobs
        # 2 and 3 and job 2 ends, its result left in the outbox behind the write.
        assert store.first_write.wait(10)
        release[2].set()
        for _ in range(2):  # jobs 0 and 2: the post of job 1 is the write that waits
            assert posted.acquire(timeout=10)
        # Job 3 still runs: once the write is done, job 2's result waits for it (it is deferred)
        # rather than going out alone (a second write).
        settled = threading.Event()
        defer = worker._results._defer

        def deferring() -> None:
            defer()
            settled.set()

        worker._results._defer = deferring  # type: ignore[method-assign]
        store.after_first = settled
        store.go_on.set()
        assert settled.wait(10)
        release[3].set()
        done = finals.wait_for(4)
    finally:
        store.go_on.set()
        for event in release.values():
            event.set()
        ae.shutdown(app, timeout=5)
        finals.close()
        store.close()
    assert [sorted(write[1]) for write in store.writes] == [sorted(ids[:2]), sorted(ids[2:])]
    assert {done[job_id].status for job_id in ids} == {JobStatus.COMPLETED}

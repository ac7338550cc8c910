"""The monitoring reads: stats, counts, paged job lists, throughput, registered workers."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from ...jobs import DEFAULT_QUEUE, JobStatus, from_timestamp
from ...stores import Store, WorkerInfo
from .support import LEASE, T0, TTL, _at, _listed, _page_ids, an_error, claim_ids, claim_one, submit


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

    def test_counts_by_name(self, store: Store) -> None:
        _finished_at(store, [T0], status=JobStatus.FAILED)
        submit(store, name="Resize")
        submit(store, name="Resize")
        submit(store, name="Email", queue="mail")

        counts = store.counts_by_name()

        assert dict(counts["Resize"]) == {**dict.fromkeys(JobStatus, 0), JobStatus.QUEUED: 2}
        assert dict(counts["Work"]) == {**dict.fromkeys(JobStatus, 0), JobStatus.FAILED: 1}
        assert dict(counts["Email"]) == {**dict.fromkeys(JobStatus, 0), JobStatus.QUEUED: 1}

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

    def test_scheduled_jobs_are_listed_soonest_due_first_over_all_queues(self, store: Store) -> None:
        later = submit(store, due=T0 + 30, queue="a")
        soon = submit(store, due=T0 + 10, queue="b", priority=9)
        retried = submit(store, queue="a")
        claimed = claim_one(store, T0, queues=("a",))
        store.fail(retried, claimed.token, an_error(), retry_delay=20.0, result_ttl=TTL, now=T0)  # due at T0 + 20

        assert _listed(store, JobStatus.SCHEDULED) == [soon, retried, later]
        assert _listed(store, JobStatus.SCHEDULED, queue="a") == [retried, later]

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

    def test_running_jobs_are_listed_newest_start_first(self, store: Store) -> None:
        ids = [submit(store) for _ in range(3)]
        for i in (0, 2, 1):
            store.claim(1, LEASE, now=T0 + 1 + i)  # claims ids[0], ids[1], ids[2] at T0 + 1, T0 + 3, T0 + 2

        assert _listed(store, JobStatus.IN_PROGRESS) == [ids[1], ids[2], ids[0]]

    def test_a_list_filtered_by_name_and_queue(self, store: Store) -> None:
        resize = _finished_at(store, [T0 + 1, T0 + 3], name="Resize", queue="img")
        _finished_at(store, [T0 + 2], name="Email", queue="img")
        elsewhere = _finished_at(store, [T0 + 4], name="Resize", queue="other")

        assert _listed(store, JobStatus.COMPLETED, name="Resize") == [elsewhere[0], resize[1], resize[0]]
        assert _listed(store, JobStatus.COMPLETED, name="Resize", queue="img") == [resize[1], resize[0]]
        assert _listed(store, JobStatus.COMPLETED, queue="none") == []
        assert _listed(store, JobStatus.COMPLETED, name="None") == []
        assert _page_ids(store, JobStatus.COMPLETED, 1, name="Resize") == [[elsewhere[0]], [resize[1]], [resize[0]]]

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

    def test_a_bad_cursor_or_limit_is_a_value_error(self, store: Store) -> None:
        _finished_at(store, [T0, T0 + 1])
        with pytest.raises(ValueError, match="cursor"):
            store.list_jobs(JobStatus.COMPLETED, cursor="not a cursor")
        with pytest.raises(ValueError, match="limit"):
            store.list_jobs(JobStatus.COMPLETED, limit=0)

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

    def test_registered_workers_by_id_with_their_last_heartbeat(self, store: Store) -> None:
        store.register_worker(self._info("w-b"), ttl=30.0, now=T0)
        store.register_worker(self._info("w-a", pid=1, queues=("only",)), ttl=30.0, now=T0 + 5)
        store.register_worker(self._info("w-b"), ttl=30.0, now=T0 + 20)

        assert store.workers(now=T0 + 21) == [
            self._info("w-a", pid=1, queues=("only",), heartbeat_at=from_timestamp(T0 + 5)),
            self._info("w-b", heartbeat_at=from_timestamp(T0 + 20)),
        ]

    def test_a_worker_without_a_heartbeat_within_its_ttl_is_gone(self, store: Store) -> None:
        store.register_worker(self._info("short"), ttl=10.0, now=T0)
        store.register_worker(self._info("long"), ttl=60.0, now=T0)

        assert [w.id for w in store.workers(now=T0 + 10)] == ["long", "short"]
        assert [w.id for w in store.workers(now=T0 + 11)] == ["long"]
        assert store.workers(now=T0 + 61) == []

    def test_an_unregistered_worker_is_gone_at_once(self, store: Store) -> None:
        store.register_worker(self._info("w-1"), ttl=30.0, now=T0)
        store.register_worker(self._info("w-2"), ttl=30.0, now=T0)

        store.unregister_worker("w-1")
        store.unregister_worker("never-registered")

        assert [w.id for w in store.workers(now=T0 + 1)] == ["w-2"]

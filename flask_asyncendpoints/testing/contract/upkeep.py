"""Upkeep and operators' actions: purging finished jobs, counts, requeue and delete."""

from __future__ import annotations

from ...jobs import JobStatus
from ...stores import Store
from .support import LEASE, T0, TTL, _listed, _stored, an_error, claim_ids, claim_one, new_id, submit


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

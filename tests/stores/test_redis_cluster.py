"""The Redis store on a real Redis Cluster (3 masters, 3 replicas on loopback), beyond the contract suite:
cluster URLs and clients, queues spread over the masters, sharded pub/sub between processes, the worker.

The contract suite itself runs on the cluster too (the ``cluster`` kind of the ``store`` fixture).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from marshmallow import Schema, fields

from flask_asyncendpoints import AsyncEndpoints, JobContext
from flask_asyncendpoints.errors import ConfigurationError, StoreError
from flask_asyncendpoints.jobs import JobPayload, JobStatus
from flask_asyncendpoints.stores import NewJob, create_store
from flask_asyncendpoints.stores.redis import RedisStore, parse_cluster_url, redact_url
from flask_asyncendpoints.stores.redis.urls import connect

from ..conftest import T0, _delete_prefix
from ..redis_cluster import LocalCluster
from .test_contract import LEASE, TTL, new_id, submit
from .test_redis import closed_port

MakeStore = Callable[[], RedisStore]


@pytest.fixture
def make_store(redis_cluster: LocalCluster, key_prefix: str) -> Iterator[MakeStore]:
    """Stores on clients of their own (as two processes would have), one key prefix; cleaned up after."""
    made: list[RedisStore] = []

    def make() -> RedisStore:
        made.append(RedisStore.from_url(redis_cluster.url, key_prefix=key_prefix))
        return made[-1]

    yield make
    if made:
        _delete_prefix(made[0]._client, key_prefix)
    for store in made:
        store.close()


class TestClusterUrls:
    def test_a_cluster_url_names_its_nodes_and_credentials(self) -> None:
        settings = parse_cluster_url(
            "redis+cluster://app:s%40cret@n1.example:7000,n2.example,[::1]:7002/?socket_timeout=2"
        )
        assert settings.hosts == [("n1.example", 7000), ("n2.example", 6379), ("::1", 7002)]
        assert (settings.username, settings.password) == ("app", "s@cret")
        assert settings.options == {"socket_timeout": 2.0}
        assert parse_cluster_url("redis+cluster://:pw@h:1/0").password == "pw"

    @pytest.mark.parametrize(
        "url",
        ["redis+cluster:///", "redis+cluster://h:1/3", "redis+cluster://h:port", "redis+cluster://h:1?bogus=1"],
    )
    def test_bad_cluster_urls_are_configuration_errors(self, url: str) -> None:
        with pytest.raises(ConfigurationError, match="not a valid Redis URL"):
            RedisStore.from_url(url)

    def test_a_cluster_nobody_answers_for_is_a_store_error_without_the_password(self) -> None:
        url = f"redis+cluster://:s3cret@127.0.0.1:{closed_port()}"
        with pytest.raises(StoreError, match="Could not reach any node of the Redis Cluster") as caught:
            RedisStore.from_url(url, socket_connect_timeout=0.5)
        assert "s3cret" not in str(caught.value) and redact_url(url) in str(caught.value)

    def test_create_store_takes_a_cluster_url_and_a_cluster_client(
        self, redis_cluster: LocalCluster, key_prefix: str
    ) -> None:
        from_url = create_store(redis_cluster.url, key_prefix=key_prefix)
        client, closers = connect(redis_cluster.url)
        try:
            given = create_store(client, key_prefix=key_prefix)
            assert isinstance(from_url, RedisStore) and from_url.cluster
            assert isinstance(given, RedisStore) and given.cluster and given._client is client
            assert "Redis Cluster" in repr(given)
            job_id = submit(from_url)
            assert given.get(job_id) == from_url.get(job_id)
        finally:
            _delete_prefix(client, key_prefix)
            from_url.close()
            for close in closers:
                close()


class TestQueuesOnTheCluster:
    def test_queues_spread_over_the_masters(self, make_store: MakeStore, redis_cluster: LocalCluster) -> None:
        store = make_store()
        queues = [f"q{n}" for n in range(12)]
        ids = {queue: submit(store, queue=queue) for queue in queues}
        masters = {redis_cluster.master_of(f"{{{store.key_prefix}:{queue}}}") for queue in queues}
        assert len(masters) == 3, "twelve queues use every master"
        # Each job is found from its id alone, whichever node holds its queue.
        assert {queue: store.get(job_id).queue for queue, job_id in ids.items()} == {q: q for q in queues}  # type: ignore[union-attr]
        claimed = store.claim(12, LEASE, queues=queues, now=T0)
        assert [c.job.queue for c in claimed] == queues, "served in the order of the queues given"
        done = store.complete_many([(c, "1") for c in claimed], result_ttl=TTL, now=T0)
        assert all(job is not None and job.status is JobStatus.COMPLETED for job in done)
        assert store.counts()[JobStatus.COMPLETED] == 12

    def test_a_replica_holds_each_queue_too(self, make_store: MakeStore, redis_cluster: LocalCluster) -> None:
        store = make_store()
        master = redis_cluster.master_of(f"{{{store.key_prefix}:default}}")
        assert len(redis_cluster.replicas_of(master)) == 1


class TestWaitReplicas:
    def test_each_master_waits_for_its_replica_and_a_master_without_one_refuses(
        self, redis_cluster: LocalCluster, key_prefix: str
    ) -> None:
        store = RedisStore.from_url(f"{redis_cluster.url}?wait_replicas=1&wait_timeout=0.2", key_prefix=key_prefix)
        queues = [f"q{n}" for n in range(12)]
        masters = {queue: redis_cluster.master_of(f"{{{key_prefix}:{queue}}}") for queue in queues}
        assert len(set(masters.values())) == 3

        def waits() -> dict[int, int]:
            counts = {}
            for port in set(masters.values()):
                with redis.Redis(port=port) as node:
                    counts[port] = int(node.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
            return counts

        before = waits()
        try:
            jobs = [NewJob(new_id(), "Work", JobPayload(), 0, queue=queue) for queue in queues]
            assert all(result is not None and result[1] for result in store.create_many(jobs))
            # One WAIT on every master, after the jobs of its queues, on the connection that wrote them.
            assert all(after > before[port] for port, after in waits().items())

            # Cut off the replica of a master that does not hold the default queue (where the
            # pointers to the jobs of the other queues are).
            pointers = redis_cluster.master_of(f"{{{key_prefix}:default}}")
            cut_queue = next(queue for queue, port in masters.items() if port != pointers)
            cut = masters[cut_queue]
            other = next(queue for queue, port in masters.items() if port != cut)
            redis_cluster.cut_replication(cut)
            try:
                with pytest.raises(StoreError, match=r"0 of the 1 replica\(s\)"):
                    store.create(new_id(), "Work", JobPayload(), max_retries=0, queue=cut_queue)
                # The other masters still have their replicas.
                store.create(new_id(), "Work", JobPayload(), max_retries=0, queue=other)
            finally:
                redis_cluster.restore_replication(cut)
            created, new = store.create(new_id(), "Work", JobPayload(), max_retries=0, queue=cut_queue)
            assert new and created.queue == cut_queue
        finally:
            _delete_prefix(store._client, key_prefix)
            store.close()


class TestShardedPubSub:
    def test_a_cancel_in_one_process_reaches_the_worker_of_another(self, make_store: MakeStore) -> None:
        web, worker = make_store(), make_store()
        job_id = submit(web, queue="reports")
        heard: list[str] = []
        got = threading.Event()

        def callback(cancelled: str) -> None:
            heard.append(cancelled)
            got.set()

        stop = worker.watch_cancels(callback)
        (claimed,) = worker.claim(1, LEASE, queues=["reports"])
        # The subscription starts with the first claim of the queue; give it its moment.
        worker._notifier.subscribed(f"{{{worker.key_prefix}:reports}}:cancels").wait(5)
        outcome, _ = web.cancel(job_id, result_ttl=TTL)
        assert outcome.value == "requested"
        assert got.wait(10)
        stop()
        assert heard == [job_id]
        job = worker.complete(job_id, claimed.token, "1", result_ttl=TTL)
        assert job is not None and job.status is JobStatus.CANCELED

    def test_a_long_poll_answers_when_another_process_finishes_the_job(self, make_store: MakeStore) -> None:
        web, worker = make_store(), make_store()
        job_id = submit(web, queue="slow")
        (claimed,) = worker.claim(1, LEASE, queues=["slow"])
        seen: list[Any] = []
        polling = threading.Thread(target=lambda: seen.append(web.wait_for_finish(job_id, 20)))
        polling.start()
        worker.complete(job_id, claimed.token, '"done"', result_ttl=TTL)
        polling.join(20)
        assert seen and seen[0].status is JobStatus.COMPLETED and seen[0].result == "done"

    def test_an_idle_worker_of_several_queues_wakes_for_a_job_of_any(
        self, make_store: MakeStore, redis_cluster: LocalCluster
    ) -> None:
        web, worker = make_store(), make_store()
        queues = [f"w{n}" for n in range(6)]
        assert len({redis_cluster.master_of(f"{{{web.key_prefix}:{q}}}") for q in queues}) > 1, "several nodes"
        woke = threading.Event()
        started = threading.Event()

        def wait() -> None:
            started.set()
            worker.wait_for_work(30.0, queues=queues)
            woke.set()

        thread = threading.Thread(target=wait, daemon=True)
        thread.start()
        assert started.wait(5)
        for queue in queues:
            worker._notifier.subscribed(f"{{{worker.key_prefix}:{queue}}}:wake").wait(5)
        web.create(new_id(), "Work", JobPayload(), max_retries=0, queue=queues[-1])
        assert woke.wait(10), "a create on another node woke the waiter (far below its 30 s)"
        thread.join(5)

    def test_a_wake_while_the_wait_looks_for_due_jobs_ends_it(
        self, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # wake() lands between the wait's check for an earlier wake() and its block: the round trip
        # that looks for due jobs. The wait must still end at once, not at its timeout.
        store = make_store()
        look = store._wait_time

        def look_then_wake(*args: Any) -> float | None:
            answer = look(*args)
            store.wake()
            return answer

        monkeypatch.setattr(store, "_wait_time", look_then_wake)
        done = threading.Event()
        thread = threading.Thread(target=lambda: (store.wait_for_work(30.0), done.set()), daemon=True)
        thread.start()
        assert done.wait(5), "the wake() ended the wait (far below its 9.5 s block)"
        thread.join(5)
        monkeypatch.undo()
        # That wait took the wake(): the next one blocks for its timeout.
        assert not store._wake_pending


def test_submit_and_poll_through_a_started_worker(redis_cluster: LocalCluster, key_prefix: str) -> None:
    ae = AsyncEndpoints()

    class Text(Schema):
        text = fields.String(required=True)

    @ae.handler("Shout", request_schema=Text)
    def shout(ctx: JobContext) -> dict[str, str]:
        return {"loud": str(ctx.request["text"]).upper()}

    ae.route("/shout", "Shout")
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        ASYNCENDPOINTS_WORKER=False,
        ASYNCENDPOINTS_STORE=redis_cluster.url,
        ASYNCENDPOINTS_KEY_PREFIX=key_prefix,
        ASYNCENDPOINTS_MAX_CONCURRENCY=2,
    )
    ae.init_app(app)
    store = ae.get_store(app)
    ae.start_worker(app)
    try:
        client = app.test_client()
        ids = [client.post("/shout", json={"text": f"hi {n}"}).get_json()["id"] for n in range(20)]
        for n, job_id in enumerate(ids):
            body = client.get(f"/jobs/{job_id}?wait=10").get_json()
            assert (body["status"], body["result"]) == ("Completed", {"loud": f"HI {n}"})
        assert store.counts()[JobStatus.COMPLETED] == 20
        assert [record.outcome.value for record in store.attempts(ids[0])] == ["Completed"]
    finally:
        ae.shutdown(app, timeout=10)
        _delete_prefix(store._client, key_prefix)  # type: ignore[attr-defined]
        store.close()


def test_the_fixture_stops_what_it_started(redis_cluster: LocalCluster) -> None:
    # A second cluster (the session's one tells whether redis-server is there), started and stopped
    # here: every process it started is gone, and its files, and the session's cluster is untouched.
    cluster = LocalCluster()
    cluster.start()
    processes = [node.process for node in cluster.nodes.values()]
    root = cluster._root
    assert len(processes) == 6 and all(process.poll() is None for process in processes)
    cluster.stop()
    assert all(process.poll() is not None for process in processes)
    assert root is not None and not root.exists()
    assert all(node.process.poll() is None for node in redis_cluster.nodes.values())

"""Redis-store behaviour beyond the shared contract: key layout, scripts, connections and failures.

Each test runs on fakeredis (with Lua) and, when ``ASYNCENDPOINTS_TEST_REDIS_URL`` is set, on a real
Redis, under a key prefix of its own that is deleted afterwards.
"""

from __future__ import annotations

import importlib
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

import flask_asyncendpoints.stores as stores_package
from flask_asyncendpoints.errors import ConfigurationError, StoreError
from flask_asyncendpoints.jobs import JobPayload, JobStatus, from_timestamp
from flask_asyncendpoints.stores import LeaseState, NewJob, PendingLimitReached, create_store
from flask_asyncendpoints.stores.base import LEASE_EXPIRED_CODE, LEASE_EXPIRED_MESSAGE
from flask_asyncendpoints.stores.redis import (
    CREATE_MANY_CHUNK,
    SCRIPT_NAMES,
    RedisStore,
    parse_sentinel_url,
    redact_url,
)

from ..conftest import T0, _delete_prefix
from .test_contract import LEASE, TTL, an_error, claim_one, new_id, submit

MakeClient = Callable[..., Any]


@pytest.fixture(params=["fakeredis", "redis"])
def make_client(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[MakeClient]:
    """Make clients of one server (fakeredis or the real one); every key under ``key_prefix`` is deleted after."""
    clients: list[Any] = []
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()

        def make(**options: Any) -> Any:
            clients.append(fakeredis.FakeRedis(server=server, **options))
            return clients[-1]

    else:
        url = request.getfixturevalue("redis_url")  # skips (or fails in CI) without a real Redis

        def make(**options: Any) -> Any:
            clients.append(redis.Redis.from_url(url, **options))
            return clients[-1]

    yield make
    if clients:
        _delete_prefix(clients[0], key_prefix)
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> Any:
    return make_client()


@pytest.fixture
def store(client: Any, key_prefix: str) -> RedisStore:
    return RedisStore(client, key_prefix=key_prefix)


def keys_under(client: Any, prefix: str) -> set[str]:
    return {k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match=f"{prefix}:*", count=1000)}


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def hash_of(client: Any, key: str) -> dict[str, str]:
    return {text(k): text(v) for k, v in client.hgetall(key).items()}


def server_time(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds + micros / 1_000_000)


class TestLayout:
    def test_keys_and_fields(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        p = key_prefix
        job_id = submit(store, body={"n": 1})
        job_key = f"{p}:job:{job_id}"
        fields = hash_of(client, job_key)
        (member, score), *_ = client.zrange(f"{p}:jobs:queue", 0, -1, withscores=True)

        assert fields["n"] == "Work" and fields["s"] == "Queued"
        assert (fields["rc"], fields["mr"]) == ("0", "3")
        assert float(fields["ca"]) == float(fields["ua"]) == T0
        assert json.loads(fields["p"]) == {"body": {"n": 1}}
        assert text(member) == fields["q"] and text(member).endswith(f":{job_id}") and score == T0
        assert text(client.type(f"{p}:jobs:wake")) == "list"

        claimed = claim_one(store, T0 + 1)
        fields = hash_of(client, job_key)
        assert fields["s"] == "InProgress" and fields["t"] == claimed.token and "q" not in fields
        assert client.zscore(f"{p}:jobs:inprogress", job_id) == T0 + 1 + LEASE
        assert client.zcard(f"{p}:jobs:queue") == 0

        store.fail(job_id, claimed.token, an_error(), retry_delay=4.0, result_ttl=TTL, now=T0 + 2)
        fields = hash_of(client, job_key)
        assert fields["s"] == "Scheduled" and float(fields["rd"]) == T0 + 6 and "t" not in fields
        assert json.loads(fields["e"])["code"] == "VALUEERROR"
        assert client.zscore(f"{p}:jobs:queue", fields["q"]) == T0 + 6
        assert client.zcard(f"{p}:jobs:inprogress") == 0

        again = claim_one(store, T0 + 6)
        store.set_progress(job_id, again.token, 0.5, "half", now=T0 + 7)
        assert json.loads(hash_of(client, job_key)["pg"]) == {"fraction": 0.5, "message": "half", "updatedAt": T0 + 7}
        store.complete(job_id, again.token, '{"ok": true}', result_ttl=TTL, now=T0 + 8)
        fields = hash_of(client, job_key)
        assert fields["s"] == "Completed" and fields["r"] == '{"ok":true}' and "e" not in fields
        assert client.zscore(f"{p}:jobs:expiring", job_id) == T0 + 8 + TTL

        counts = hash_of(client, f"{p}:jobs:counts")
        assert {k: v for k, v in counts.items() if k != "seq"} == {
            "Queued": "0",
            "Scheduled": "0",
            "InProgress": "0",
            "Completed": "1",
        }
        assert keys_under(client, p) == {
            job_key,
            f"{p}:jobs:counts",
            f"{p}:jobs:expiring",
            f"{p}:jobs:wake",
        }

    def test_timestamps_keep_microseconds(self, store: RedisStore) -> None:
        now = 1_767_225_600.123457
        job, _ = store.create(new_id(), "Work", JobPayload(), max_retries=0, now=now)
        claimed = claim_one(store, now + 0.000001)
        assert job.created_at == from_timestamp(now)
        assert claimed.job.started_at == from_timestamp(now + 0.000001)

    def test_a_small_finished_job_takes_under_a_kilobyte(self, real_redis_client: Any, key_prefix: str) -> None:
        # Real Redis only: fakeredis neither encodes hashes compactly nor reports memory usage.
        client = real_redis_client
        store = RedisStore(client, key_prefix=key_prefix)
        job_id = submit(store, body={"data": "hello"})
        claimed = claim_one(store, T0)
        store.complete(job_id, claimed.token, json.dumps({"processedData": "Processed: HELLO"}), result_ttl=TTL, now=T0)

        job_key = f"{key_prefix}:job:{job_id}"
        try:
            assert text(client.object("encoding", job_key)) == "listpack"
            # The job's hash plus its entry in the expiring set, the only index a finished job is in
            # (about 150 bytes for a UUID member in a skiplist-encoded sorted set).
            assert client.memory_usage(job_key, samples=0) + 150 <= 1024
        finally:
            _delete_prefix(client, key_prefix)

    def test_a_hash_tagged_prefix_puts_every_key_in_one_slot(self, make_client: MakeClient) -> None:
        prefix = "{" + f"test-{uuid.uuid4().hex[:12]}" + "}"
        client = make_client()
        try:
            store = RedisStore(client, key_prefix=prefix)
            done, failed = submit(store, max_retries=0), submit(store, max_retries=0)
            claimed = {c.job.id: c for c in store.claim(2, LEASE, now=T0)}
            store.complete(done, claimed[done].token, "1", result_ttl=TTL, now=T0)
            store.recover(result_ttl=TTL, now=T0 + LEASE + 1)
            assert store.get(failed) is not None
            submit(store)

            keys = keys_under(client, prefix)
            assert {f"{prefix}:job:{done}", f"{prefix}:jobs:queue", f"{prefix}:jobs:expiring"} <= keys
            assert len({key_slot(key.encode()) for key in keys}) == 1
        finally:
            _delete_prefix(client, prefix)


class TestNoLeaks:
    def test_no_key_is_left_behind_after_purge(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        ids = [submit(store, max_retries=1) for _ in range(6)]
        claimed = {c.job.id: c for c in store.claim(5, LEASE, now=T0)}
        store.complete(ids[0], claimed[ids[0]].token, '"done"', result_ttl=TTL, now=T0)
        store.fail(ids[1], claimed[ids[1]].token, an_error(), retry_delay=None, result_ttl=TTL, now=T0)
        store.fail(ids[2], claimed[ids[2]].token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0)
        store.cancel(ids[3], result_ttl=TTL, now=T0)
        store.finish_canceled(ids[3], claimed[ids[3]].token, result_ttl=TTL, now=T0)
        store.release(ids[4], claimed[ids[4]].token, now=T0)
        store.cancel(ids[5], result_ttl=TTL, now=T0)
        # The retried and the released job run again and their leases run out, twice: requeued, then failed.
        for now in (T0 + 1, T0 + 100):
            store.claim(5, LEASE, now=now)
            store.recover(result_ttl=TTL, now=now + LEASE + 1)

        assert store.counts()[JobStatus.FAILED] == 3
        assert store.purge(now=T0 + 10 * TTL) == 6
        client.delete(f"{key_prefix}:jobs:wake")  # tokens nobody waited for; they expire on their own too

        assert keys_under(client, key_prefix) == {f"{key_prefix}:jobs:counts"}
        assert all(count == 0 for count in store.counts().values())

    def test_purge_cleans_entries_of_jobs_that_are_gone(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        job_id = submit(store)
        store.cancel(job_id, result_ttl=1.0, now=T0)
        client.delete(f"{key_prefix}:job:{job_id}")

        assert store.purge(now=T0 + 2) == 0
        assert client.zcard(f"{key_prefix}:jobs:expiring") == 0


class TestFinishedAnnouncements:
    def test_every_final_transition_publishes_the_job_id(self, real_redis_client: Any, key_prefix: str) -> None:
        # Real Redis only: fakeredis does not deliver what a Lua script publishes. Long-polls on
        # fakeredis still answer, from re-reading the job every second.
        client = real_redis_client
        store = RedisStore(client, key_prefix=key_prefix)
        request_cleanup = _delete_prefix
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(f"{key_prefix}:jobs:finished")
        ids = [submit(store, max_retries=0) for _ in range(5)]
        claimed = {c.job.id: c for c in store.claim(4, LEASE, now=T0)}
        store.complete(ids[0], claimed[ids[0]].token, "1", result_ttl=TTL, now=T0)
        store.fail(ids[1], claimed[ids[1]].token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0)
        store.finish_canceled(ids[2], claimed[ids[2]].token, result_ttl=TTL, now=T0)
        store.recover(result_ttl=TTL, now=T0 + LEASE + 1)
        store.cancel(ids[4], result_ttl=TTL, now=T0)

        announced: list[str] = []
        deadline = time.monotonic() + 10
        while len(announced) < 5 and time.monotonic() < deadline:
            # None also stands for the (ignored) subscribe confirmation, so keep reading.
            message = pubsub.get_message(timeout=1)
            if message is not None:
                announced.append(text(message["data"]))
        pubsub.close()
        request_cleanup(client, key_prefix)
        assert sorted(announced) == sorted(ids)


class TestScripts:
    def test_every_script_is_packaged_and_documents_its_keys_and_arguments(self) -> None:
        folder = resources.files("flask_asyncendpoints.stores.redis").joinpath("lua")
        for name in SCRIPT_NAMES:
            source = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
            header = source.split("\n\n")[0]
            assert header.startswith(f"-- {name}: ")
            assert "KEYS[1]" in header and "ARGV[1]" in header

    def test_scripts_survive_script_flush(self, store: RedisStore, client: Any) -> None:
        job_id = submit(store)
        client.script_flush()
        claimed = claim_one(store, T0)
        client.script_flush()
        assert store.renew([(job_id, claimed.token)], LEASE, now=T0 + 1)
        client.script_flush()
        job = store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 2)
        assert job is not None and job.status is JobStatus.COMPLETED

    def test_batched_calls_survive_script_flush(self, store: RedisStore, client: Any) -> None:
        client.script_flush()
        created = store.create_many([NewJob(str(uuid.uuid4()), "Work", JobPayload(), 0) for _ in range(3)], now=T0)
        assert all(outcome is not None and outcome[1] for outcome in created)
        claimed = store.claim(3, LEASE, now=T0)
        client.script_flush()
        done = store.complete_many([(c, "1") for c in claimed], result_ttl=TTL, now=T0 + 1)
        assert [job.status if job else None for job in done] == [JobStatus.COMPLETED] * 3
        assert store.counts()[JobStatus.COMPLETED] == 3  # each ran exactly once

    def test_create_many_spans_several_scripts_in_order(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        ids = [str(uuid.uuid4()) for _ in range(2 * CREATE_MANY_CHUNK + 50)]
        ids[CREATE_MANY_CHUNK + 10] = ids[3]  # the same id again, in the next script
        jobs = [NewJob(job_id, "Work", JobPayload(body={"n": n}), 1) for n, job_id in enumerate(ids)]

        created = store.create_many(jobs, now=T0)

        assert [outcome[1] if outcome else None for outcome in created].count(True) == len(ids) - 1
        again = created[CREATE_MANY_CHUNK + 10]
        assert again is not None and not again[1] and again[0].payload.body == {"n": 3}
        assert store.counts()[JobStatus.QUEUED] == len(ids) - 1
        claimed = store.claim(len(ids), LEASE, now=T0)
        assert [c.job.payload.body["n"] for c in claimed[:5]] == [0, 1, 2, 3, 4]  # queued in order
        assert client.llen(f"{key_prefix}:jobs:wake") <= 64

    def test_scripts_are_registered_per_store_on_its_own_client(self, make_client: MakeClient) -> None:
        first, second = make_client(), make_client()
        store_a = RedisStore(first, key_prefix="a")
        store_b = RedisStore(second, key_prefix="b")
        assert store_a._scripts.registered["claim"].registered_client is first
        assert store_b._scripts.registered["claim"].registered_client is second


class TestClaimSkipsBadEntries:
    def test_missing_corrupt_and_stale_queue_entries_are_skipped_and_cleaned(
        self, store: RedisStore, client: Any, key_prefix: str
    ) -> None:
        queue = f"{key_prefix}:jobs:queue"
        corrupt = new_id()
        client.hset(f"{key_prefix}:job:{corrupt}", mapping={"s": "Queued", "q": f"0:{corrupt}", "rc": "x"})
        stale = submit(store, now=T0)
        store.cancel(stale, result_ttl=TTL, now=T0)
        client.zadd(
            queue,
            {
                "not a member this library writes": T0 - 3,
                f"0000000000000000:{new_id()}": T0 - 2,  # its job is gone
                f"0:{corrupt}": T0 - 1,  # its job hash cannot be used
                f"0000000000000001:{stale}": T0,  # canceled: no longer waiting
            },
        )
        good = submit(store, now=T0 + 1)

        claimed = store.claim(1, LEASE, now=T0 + 2)

        assert [c.job.id for c in claimed] == [good]
        assert client.zcard(queue) == 0
        canceled = store.get(stale)
        assert canceled is not None and canceled.status is JobStatus.CANCELED

    def test_a_claim_is_not_blocked_by_a_long_run_of_bad_entries(
        self, store: RedisStore, client: Any, key_prefix: str
    ) -> None:
        client.zadd(f"{key_prefix}:jobs:queue", {f"{i:016x}:{new_id()}": T0 - 1 for i in range(1500)})
        good = submit(store, now=T0)

        # Each call looks at a bounded number of entries, so it may take a second call to get there.
        claimed = store.claim(1, LEASE, now=T0) or store.claim(1, LEASE, now=T0)

        assert [c.job.id for c in claimed] == [good]

    def test_an_unreadable_job_is_left_out_of_the_batch(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        bad, good = submit(store, now=T0), submit(store, now=T0)
        client.hset(f"{key_prefix}:job:{bad}", "p", "{not json")

        claimed = store.claim(5, LEASE, now=T0)

        assert [c.job.id for c in claimed] == [good]
        with pytest.raises(StoreError, match="cannot be read"):
            store.get(bad)


class TestDecodeResponses:
    @pytest.mark.parametrize("decode", [False, True], ids=["bytes", "text"])
    def test_the_lifecycle_works_whatever_the_client_decodes(
        self, make_client: MakeClient, key_prefix: str, decode: bool
    ) -> None:
        store = RedisStore(make_client(decode_responses=decode), key_prefix=key_prefix)
        job_id = submit(store, body={"data": "héllo"})
        claimed = claim_one(store, T0)
        assert store.renew([(job_id, claimed.token)], LEASE, now=T0 + 1) == {job_id: LeaseState.HELD}
        assert store.set_progress(job_id, claimed.token, 0.5, "ünï", now=T0 + 1)
        job = store.complete(job_id, claimed.token, '{"s": "ünï"}', result_ttl=TTL, now=T0 + 2)

        assert job is not None and job == store.get(job_id)
        assert job.result == {"s": "ünï"} and job.payload.body == {"data": "héllo"}
        assert job.progress is not None and job.progress.message == "ünï"
        assert store.counts()[JobStatus.COMPLETED] == 1

    def test_clients_decoding_differently_share_one_queue(self, make_client: MakeClient, key_prefix: str) -> None:
        writer = RedisStore(make_client(decode_responses=True), key_prefix=key_prefix)
        reader = RedisStore(make_client(decode_responses=False), key_prefix=key_prefix)
        job_id = submit(writer, body=["x"])
        assert reader.get(job_id) == writer.get(job_id)
        assert claim_one(reader, T0).job.id == job_id


class TestServerClock:
    def test_without_now_the_servers_clock_is_used(self, store: RedisStore, client: Any) -> None:
        before = server_time(client)
        job, _ = store.create(new_id(), "Work", JobPayload(), max_retries=0)
        (claimed,) = store.claim(1, 60.0)
        after = server_time(client)

        assert from_timestamp(before) <= job.created_at <= from_timestamp(after)
        assert claimed.job.started_at is not None and claimed.job.started_at >= job.created_at
        assert store.recover(result_ttl=TTL) == []
        assert store.renew([(job.id, claimed.token)], 60.0) == {job.id: LeaseState.HELD}

    def test_leases_are_set_and_judged_on_the_servers_clock(
        self, store: RedisStore, client: Any, key_prefix: str
    ) -> None:
        job_id = submit(store, now=server_time(client))
        before = server_time(client)
        store.claim(1, 60.0)
        after = server_time(client)

        # App servers whose clocks are off never pass their own time: the lease runs on the server's.
        expires = client.zscore(f"{key_prefix}:jobs:inprogress", job_id)
        assert before + 60.0 <= expires <= after + 60.0
        assert store.recover(result_ttl=TTL) == []
        assert [job.id for job in store.recover(result_ttl=TTL, now=expires + 1)] == [job_id]


class TestRecover:
    def test_the_lease_expired_error_is_structured_json(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        job_id = submit(store, max_retries=0)
        claim_one(store, T0)
        store.recover(result_ttl=TTL, now=T0 + LEASE + 1)

        stored = json.loads(hash_of(client, f"{key_prefix}:job:{job_id}")["e"])
        assert stored == {"code": LEASE_EXPIRED_CODE, "message": LEASE_EXPIRED_MESSAGE, "exception": None}

    def test_two_stores_on_one_prefix_recover_each_job_once(self, make_client: MakeClient, key_prefix: str) -> None:
        stores = [RedisStore(make_client(), key_prefix=key_prefix) for _ in range(2)]
        for _ in range(20):
            submit(stores[0], max_retries=1)
        stores[0].claim(20, LEASE, now=T0)
        recovered: list[str] = []
        lock = threading.Lock()

        def recover(store: RedisStore) -> None:
            while batch := store.recover(result_ttl=TTL, limit=3, now=T0 + LEASE + 1):
                with lock:
                    recovered.extend(job.id for job in batch)

        threads = [threading.Thread(target=recover, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(recovered) == len(set(recovered)) == 20
        assert stores[1].counts()[JobStatus.QUEUED] == 20


class TestCreate:
    def test_pending_limit_is_checked_atomically(self, make_client: MakeClient, key_prefix: str) -> None:
        stores = [RedisStore(make_client(), key_prefix=key_prefix) for _ in range(4)]
        created: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(len(stores))

        def submitter(store: RedisStore) -> None:
            start.wait()
            for _ in range(10):
                job_id = new_id()
                try:
                    store.create(job_id, "Work", JobPayload(), max_retries=0, max_pending=15, now=T0)
                except PendingLimitReached:
                    continue
                with lock:
                    created.append(job_id)

        threads = [threading.Thread(target=submitter, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(created) == 15
        assert stores[0].counts()[JobStatus.QUEUED] == 15


class TestWakeUp:
    def test_create_wakes_a_waiting_worker(self, make_client: MakeClient, key_prefix: str) -> None:
        # The waiter and the submitter use different clients, as two processes would.
        waiting_store = RedisStore(make_client(), key_prefix=key_prefix)
        submitting_store = RedisStore(make_client(), key_prefix=key_prefix)
        started, woke = threading.Event(), threading.Event()

        def waiter() -> None:
            started.set()
            waiting_store.wait_for_work(timeout=30.0)
            woke.set()

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert started.wait(5)
        submit(submitting_store)
        assert woke.wait(10)
        thread.join(5)

    def test_returns_at_once_when_a_job_is_due(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        submit(store, now=T0)
        client.delete(f"{key_prefix}:jobs:wake")
        started = time.monotonic()
        store.wait_for_work(timeout=30.0)
        assert time.monotonic() - started < 5

    def test_waits_no_longer_than_until_the_next_retry_is_due(self, store: RedisStore, client: Any) -> None:
        job_id = submit(store, now=server_time(client))
        claimed = claim_one(store, server_time(client))
        store.fail(job_id, claimed.token, an_error(), retry_delay=0.3, result_ttl=TTL, now=server_time(client))
        client.delete(f"{store.key_prefix}:jobs:wake")

        started = time.monotonic()
        store.wait_for_work(timeout=30.0)
        assert time.monotonic() - started < 5

    def test_times_out_when_there_is_no_work(self, store: RedisStore) -> None:
        started = time.monotonic()
        store.wait_for_work(timeout=0.2)
        assert 0.1 <= time.monotonic() - started < 5

    def test_the_wake_list_stays_short(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        for _ in range(100):
            store.wake()
        for _ in range(100):
            submit(store)
        assert client.llen(f"{key_prefix}:jobs:wake") <= 64
        assert 0 < client.ttl(f"{key_prefix}:jobs:wake") <= 60

    def test_a_wait_longer_than_the_socket_timeout_does_not_fail(
        self, make_client: MakeClient, key_prefix: str
    ) -> None:
        store = RedisStore(make_client(socket_timeout=0.5), key_prefix=key_prefix)
        started = time.monotonic()
        store.wait_for_work(timeout=2.0)  # capped below the socket timeout: returns early, never raises
        assert time.monotonic() - started < 2.0

    def test_wake_releases_every_local_waiter(self, store: RedisStore) -> None:
        waiting = threading.Semaphore(0)
        woke: list[threading.Event] = [threading.Event() for _ in range(3)]

        def waiter(done: threading.Event) -> None:
            waiting.release()
            store.wait_for_work(timeout=30.0)
            done.set()

        threads = [threading.Thread(target=waiter, args=(event,), daemon=True) for event in woke]
        for thread in threads:
            thread.start()
        for _ in threads:
            assert waiting.acquire(timeout=5)
        # A waiter counts itself before it blocks; wake again until all have been let go.
        deadline = time.monotonic() + 10
        while not all(event.is_set() for event in woke) and time.monotonic() < deadline:
            store.wake()
            woke[0].wait(0.05)
        assert all(event.is_set() for event in woke)


class TestConnections:
    def test_redis_url_with_password_and_db(self) -> None:
        store = RedisStore.from_url("redis://user:s%40cret@db.example:6380/4", key_prefix="p")
        options = store._client.connection_pool.connection_kwargs
        assert (options["host"], options["port"], options["db"]) == ("db.example", 6380, 4)
        assert (options["username"], options["password"]) == ("user", "s@cret")
        assert options["socket_timeout"] == 10.0
        assert store.key_prefix == "p"
        store.close()

    def test_url_options_override_the_defaults(self) -> None:
        store = RedisStore.from_url("redis://localhost/0?socket_timeout=3", key_prefix="p")
        assert store._client.connection_pool.connection_kwargs["socket_timeout"] == 3.0

    def test_rediss_url_uses_tls(self) -> None:
        store = RedisStore.from_url("rediss://localhost:6380/0", key_prefix="p")
        assert store._client.connection_pool.connection_class is redis.SSLConnection

    def test_unix_url(self) -> None:
        store = RedisStore.from_url("unix:///run/redis/redis.sock?db=2&password=pw", key_prefix="p")
        options = store._client.connection_pool.connection_kwargs
        assert (options["path"], options["db"], options["password"]) == ("/run/redis/redis.sock", 2, "pw")

    def test_sentinel_url_is_parsed(self) -> None:
        settings = parse_sentinel_url(
            "redis+sentinel://:s%40cret@s1.example:26380,s2.example,[::1]:5000/mymaster/3"
            "?socket_timeout=2&sentinel_password=spw"
        )
        assert settings.hosts == [("s1.example", 26380), ("s2.example", 26379), ("::1", 5000)]
        assert (settings.service_name, settings.db) == ("mymaster", 3)
        assert (settings.username, settings.password) == (None, "s@cret")
        assert settings.sentinel_password == "spw"
        assert settings.options == {"socket_timeout": 2.0}

    def test_sentinel_url_password_without_user_and_no_db(self) -> None:
        settings = parse_sentinel_url("redis+sentinel://pw@localhost/svc")
        assert (settings.password, settings.db, settings.hosts) == ("pw", 0, [("localhost", 26379)])

    @pytest.mark.parametrize(
        "url",
        [
            "redis+sentinel://localhost:26379",
            "redis+sentinel://localhost:26379/svc/0/extra",
            "redis+sentinel:///svc",
            "redis+sentinel://localhost:port/svc",
            "redis+sentinel://localhost/svc?bogus=1",
        ],
    )
    def test_bad_sentinel_urls_are_configuration_errors(self, url: str) -> None:
        with pytest.raises(ConfigurationError, match="not a valid Redis URL"):
            RedisStore.from_url(url)

    def test_a_url_of_another_scheme_names_the_redis_schemes(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            RedisStore.from_url("http://user:secret@localhost:6379/0")
        assert str(caught.value) == (
            "'http://user:***@localhost:6379/0' is not a Redis URL: use redis://, rediss://, unix:// or redis+sentinel://."
        )

    def test_sentinel_store_is_built_without_connecting(self) -> None:
        # Nothing listens on these ports: building the store must not try to connect.
        store = RedisStore.from_url("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/5", key_prefix="p")
        pool = store._client.connection_pool
        assert pool.service_name == "mymaster"
        assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [1, 2]
        assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (5, "pw")
        assert "mymaster" in store._where
        store.close()

    def test_create_store_routes_urls_and_clients(self) -> None:
        assert isinstance(create_store("redis://localhost/0", key_prefix="p"), RedisStore)
        store = create_store(fakeredis.FakeRedis(), key_prefix="p")
        assert isinstance(store, RedisStore) and store.key_prefix == "p"

    def test_an_empty_prefix_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="KEY_PREFIX"):
            RedisStore(fakeredis.FakeRedis(), key_prefix="")

    def test_passwords_never_reach_messages(self) -> None:
        assert redact_url("redis://u:secret@h:1/0?password=x&db=1") == "redis://u:***@h:1/0?password=***&db=1"
        assert redact_url("redis+sentinel://secret@h/svc") == "redis+sentinel://***@h/svc"
        assert redact_url("unix:///s.sock?db=1") == "unix:///s.sock?db=1"
        with pytest.raises(ConfigurationError) as caught:
            RedisStore.from_url("redis+sentinel://:secret@h/svc/notanumber")
        assert "secret" not in str(caught.value)

    def test_a_missing_redis_package_names_the_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` raise ImportError
        expected = 'pip install "flask-asyncendpoints[redis]"'
        with pytest.raises(ConfigurationError) as caught:
            RedisStore.from_url("redis://localhost/0")
        assert expected in str(caught.value)
        with pytest.raises(ConfigurationError, match="flask-asyncendpoints"):
            create_store("redis://localhost/0", key_prefix="ae")

    def test_the_module_imports_without_the_redis_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "redis", None)
        # Import a fresh copy of the package and every module in it; the package attribute and
        # sys.modules get the originals back afterwards.
        monkeypatch.setattr(stores_package, "redis", sys.modules["flask_asyncendpoints.stores.redis"])
        for name in [name for name in sys.modules if name.startswith("flask_asyncendpoints.stores.redis")]:
            monkeypatch.delitem(sys.modules, name)
        module = importlib.import_module("flask_asyncendpoints.stores.redis")
        assert module.RedisStore is not RedisStore  # imported afresh, not taken from sys.modules
        with pytest.raises(ConfigurationError, match=r"flask-asyncendpoints\[redis\]"):
            module.RedisStore(object(), key_prefix="ae")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestUnreachable:
    @pytest.fixture
    def down(self) -> Iterator[RedisStore]:
        client = redis.Redis(
            host="127.0.0.1",
            port=closed_port(),
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        yield RedisStore(client, key_prefix="down")
        client.close()

    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda s: s.ping(), id="ping"),
            pytest.param(lambda s: s.create(new_id(), "W", JobPayload(), max_retries=0, now=T0), id="create"),
            pytest.param(lambda s: s.get(new_id()), id="get"),
            pytest.param(lambda s: s.claim(5, LEASE, now=T0), id="claim"),
            pytest.param(lambda s: s.renew([(new_id(), "t")], LEASE, now=T0), id="renew"),
            pytest.param(lambda s: s.complete(new_id(), "t", "1", result_ttl=TTL, now=T0), id="complete"),
            pytest.param(lambda s: s.cancel(new_id(), result_ttl=TTL, now=T0), id="cancel"),
            pytest.param(lambda s: s.recover(result_ttl=TTL, now=T0), id="recover"),
            pytest.param(lambda s: s.purge(now=T0), id="purge"),
            pytest.param(lambda s: s.counts(), id="counts"),
            pytest.param(lambda s: s.wait_for_work(1.0), id="wait_for_work"),
            pytest.param(lambda s: s.wake(), id="wake"),
        ],
    )
    def test_every_operation_raises_store_error(self, down: RedisStore, call: Callable[[RedisStore], Any]) -> None:
        with pytest.raises(StoreError, match=r"Could not reach Redis at 127\.0\.0\.1") as caught:
            call(down)
        assert isinstance(caught.value.__cause__, redis.ConnectionError)
        assert "Check that the server is running" in str(caught.value)

    def test_a_timeout_says_what_to_check(self) -> None:
        # A server that accepts the connection but never answers.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            client = redis.Redis(
                host="127.0.0.1", port=silent.getsockname()[1], socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
            )
            with pytest.raises(StoreError, match="did not answer in time") as caught:
                RedisStore(client, key_prefix="silent").ping()
            client.close()
        assert isinstance(caught.value.__cause__, redis.TimeoutError)

    def test_dropped_connections_are_made_again(self, store: RedisStore, client: Any) -> None:
        job_id = submit(store)
        client.connection_pool.disconnect()  # as when Redis restarts
        assert store.get(job_id) is not None
        assert claim_one(store, T0).job.id == job_id


class TestStoreSpecs:
    def test_an_options_dict_names_the_url_and_client_options(self) -> None:
        from flask_asyncendpoints.stores import create_store

        store = create_store({"url": "redis://127.0.0.1:1/3", "socket_timeout": 2.5}, key_prefix="{x}")
        assert isinstance(store, RedisStore)
        kwargs = store._client.connection_pool.connection_kwargs
        assert (kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == (1, 3, 2.5)
        assert store.key_prefix == "{x}"
        store.close()

    @pytest.mark.parametrize("spec", [{"socket_timeout": 1}, {"url": "memory://"}, {"url": 5}])
    def test_an_options_dict_without_a_redis_url_says_what_to_do(self, spec: dict[str, object]) -> None:
        from flask_asyncendpoints.errors import ConfigurationError
        from flask_asyncendpoints.stores import create_store

        with pytest.raises(ConfigurationError, match=r"url|Redis URL"):
            create_store(spec, key_prefix="ae")

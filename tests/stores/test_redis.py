"""Redis-store behaviour beyond the shared contract: key layout, scripts, connections and failures.

Each test runs on fakeredis (with Lua) and, when ``ASYNCENDPOINTS_TEST_REDIS_URL`` is set, on a real
Redis, under a key prefix of its own that is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
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
from flask_asyncendpoints.jobs import ClaimedJob, JobPayload, JobStatus, LogRecord, from_timestamp
from flask_asyncendpoints.stores import CancelResult, LeaseState, NewJob, PendingLimitReached, create_store
from flask_asyncendpoints.stores.base import LEASE_EXPIRED_CODE, LEASE_EXPIRED_MESSAGE
from flask_asyncendpoints.stores.redis import (
    CREATE_MANY_CHUNK,
    SCRIPT_NAMES,
    RedisStore,
    parse_sentinel_url,
    redact_url,
)
from flask_asyncendpoints.stores.redis import waiting as waiting_module
from flask_asyncendpoints.stores.redis.clock import ServerClock
from flask_asyncendpoints.stores.redis.connection import ThreadConnections, _HeldConnection
from flask_asyncendpoints.stores.redis.keys import scan_patterns, sort_key
from flask_asyncendpoints.stores.redis.scripts import script_source, used_definitions

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
    return {text(k) for pattern in scan_patterns(prefix) for k in client.scan_iter(match=pattern, count=1000)}


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def hash_of(client: Any, key: str) -> dict[str, str]:
    return {text(k): text(v) for k, v in client.hgetall(key).items()}


def claim_one_of(store: RedisStore, queue: str, now: float = T0) -> ClaimedJob:
    (claimed,) = store.claim(1, LEASE, queues=[queue], now=now)
    return claimed


def a_log_line(message: str = "working") -> LogRecord:
    stamp = from_timestamp(T0)
    assert stamp is not None
    return LogRecord(attempt=1, at=stamp, level="INFO", logger="app", message=message)


def server_time(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds + micros / 1_000_000)


class TestLayout:
    def test_keys_and_fields(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        T = f"{{{key_prefix}:default}}"
        job_id = submit(store, body={"n": 1})
        record = text(client.get(f"{T}:j:{job_id}"))
        created_at, max_retries, key, name_json, payload_json = record.split("\t")
        (member, score), *_ = client.zrange(f"{T}:ready", 0, -1, withscores=True)

        assert float(created_at) == T0 and max_retries == "3" and name_json == '"Work"'
        assert json.loads(payload_json) == {"body": {"n": 1}}
        assert text(member) == f"{key}:{job_id}" and score == 0 and key.endswith("n")
        assert client.exists(f"{T}:s:{job_id}") == 0, "a job that never changed has no state hash"
        assert hash_of(client, f"{T}:names") == {'Q"Work"': "1"}
        assert text(client.type(f"{T}:wake")) == "list"

        claimed = claim_one(store, T0 + 1)
        attempt = claimed.token.partition("@")[0]
        fields = hash_of(client, f"{T}:s:{job_id}")
        assert claimed.token.endswith("@default")
        assert {**fields, "sa": float(fields["sa"]), "ua": float(fields["ua"])} == {
            "s": "InProgress",
            "sa": T0 + 1,
            "ua": T0 + 1,
            "w": '""',
            "t": attempt,
        }
        assert client.zscore(f"{T}:run", f"{attempt}:{job_id}") == T0 + 1 + LEASE
        assert client.zcard(f"{T}:ready") == 0

        store.fail(job_id, claimed.token, an_error(), retry_delay=4.0, result_ttl=TTL, now=T0 + 2)
        fields = hash_of(client, f"{T}:s:{job_id}")
        assert fields["s"] == "Scheduled" and float(fields["rd"]) == T0 + 6 and fields["rc"] == "1"
        assert json.loads(fields["e"])["code"] == "VALUEERROR"
        assert json.loads(fields["h"]) == [1, T0 + 1, T0 + 2, "", "Retrying", "VALUEERROR", "bad value"]
        assert client.zscore(f"{T}:sched", fields["q"]) == T0 + 6 and fields["q"].endswith(f"r:{job_id}")
        assert client.zcard(f"{T}:run") == 0

        again = claim_one(store, T0 + 6)
        assert client.zcard(f"{T}:sched") == client.zcard(f"{T}:due") == 0, "moved to ready, then claimed"
        store.set_progress(job_id, again.token, 0.5, "half", now=T0 + 7)
        assert json.loads(hash_of(client, f"{T}:s:{job_id}")["pg"]) == {
            "fraction": 0.5,
            "message": "half",
            "updatedAt": T0 + 7,
        }
        store.complete(job_id, again.token, '{"ok": true}', result_ttl=TTL, now=T0 + 8)
        fields = hash_of(client, f"{T}:s:{job_id}")
        assert fields["s"] == "Completed" and fields["r"] == '{"ok":true}' and "e" not in fields
        assert client.zscore(f"{T}:done:Completed", job_id) == T0 + 8
        assert client.zscore(f"{T}:exp", job_id) == T0 + 8 + TTL
        assert hash_of(client, f"{T}:names") == {'Q"Work"': "0", 'S"Work"': "0", 'C"Work"': "1"}
        assert hash_of(client, f"{T}:tp:{int((T0 + 8) // 3600)}") == {"c0": "1"}
        assert keys_under(client, key_prefix) == {
            f"{T}:j:{job_id}",
            f"{T}:s:{job_id}",
            f"{T}:names",
            f"{T}:done:Completed",
            f"{T}:exp",
            f"{T}:wake",
            f"{T}:tp:{int((T0 + 8) // 3600)}",
            f"{{{key_prefix}}}:queues",
        }

    def test_a_job_of_another_queue_has_a_pointer_in_the_default_queue(
        self, store: RedisStore, client: Any, key_prefix: str
    ) -> None:
        job_id = submit(store, queue="reports", priority=7)
        assert text(client.get(f"{{{key_prefix}:default}}:j:{job_id}")) == "@reports"
        record = text(client.get(f"{{{key_prefix}:reports}}:j:{job_id}"))
        assert record.split("\t")[2].startswith(f"{2**31 - 1 - 7:010d}")
        job = store.get(job_id)
        assert job is not None and (job.queue, job.priority) == ("reports", 7)
        assert {text(q) for q in client.smembers(f"{{{key_prefix}}}:queues")} == {"reports"}

        claimed = claim_one_of(store, "reports")
        store.complete(job_id, claimed.token, "1", result_ttl=1.0, now=T0)
        assert store.purge(now=T0 + 2) == 1
        assert client.exists(f"{{{key_prefix}:default}}:j:{job_id}") == 0, "the pointer goes with the job"

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

        T = f"{{{key_prefix}:default}}"
        try:
            assert text(client.object("encoding", f"{T}:s:{job_id}")) == "listpack"
            # The record and the state hash, plus its entries in the two indexes a finished job is
            # in, the status index and the expiring set (about 150 bytes each for a UUID member in a
            # skiplist-encoded sorted set).
            job_bytes = client.memory_usage(f"{T}:j:{job_id}", samples=0) + client.memory_usage(
                f"{T}:s:{job_id}", samples=0
            )
            assert job_bytes + 2 * 150 <= 1024
        finally:
            _delete_prefix(client, key_prefix)

    def test_the_running_set_is_a_skiplist_from_its_first_lease(self, real_redis_client: Any, key_prefix: str) -> None:
        # Real Redis only (fakeredis reports no encodings). As a listpack, each lease added would
        # parse every held lease's score from its text; the attempt ids are long enough to avoid it.
        client = real_redis_client
        store = RedisStore(client, key_prefix=key_prefix)
        submit(store)
        claim_one(store, T0)
        try:
            assert text(client.object("encoding", f"{{{key_prefix}:default}}:run")) == "skiplist"
        finally:
            _delete_prefix(client, key_prefix)

    def test_every_key_of_a_queue_is_in_its_slot_and_queues_spread(self, make_client: MakeClient) -> None:
        prefix = f"test-{uuid.uuid4().hex[:12]}"
        client = make_client()
        try:
            store = RedisStore(client, key_prefix=prefix)
            queues = [f"q{n}" for n in range(8)]
            for queue in queues:
                done, failed = submit(store, max_retries=0, queue=queue), submit(store, max_retries=0, queue=queue)
                claimed = {c.job.id: c for c in store.claim(2, LEASE, queues=[queue], now=T0)}
                store.complete(done, claimed[done].token, "1", result_ttl=TTL, now=T0)
                store.cancel(failed, result_ttl=TTL, now=T0)
                store.finish_canceled(failed, claimed[failed].token, result_ttl=TTL, now=T0)
                submit(store, queue=queue, due=T0 + 60)
            store.recover(result_ttl=TTL, now=T0 + LEASE + 1)

            slots: dict[str, set[int]] = {}
            for key in keys_under(client, prefix):
                tag = key[1 : key.index("}")]
                slots.setdefault(tag, set()).add(key_slot(key.encode()))
            assert all(len(found) == 1 for found in slots.values()), slots
            assert len({slot for found in slots.values() for slot in found}) > 4, "queues spread over slots"
        finally:
            _delete_prefix(client, prefix)


class TestNoLeaks:
    def test_no_key_is_left_behind_after_purge(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        T = f"{{{key_prefix}:default}}"
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
        log_id = submit(store, max_retries=0, queue="logged")
        logged = claim_one_of(store, "logged")
        assert store.append_logs(log_id, logged.token, [a_log_line()], max_lines=10, max_bytes=100)
        store.complete(log_id, logged.token, "1", result_ttl=TTL, now=T0)

        assert store.counts()[JobStatus.FAILED] == 3
        assert store.purge(now=T0 + 10 * TTL) == 7
        client.delete(f"{T}:wake", f"{{{key_prefix}:logged}}:wake")  # tokens nobody waited for; they expire too

        # What stays: the per-name counts (all zero now), the throughput of the hour (it expires)
        # and the names of the queues.
        assert keys_under(client, key_prefix) == {
            f"{T}:names",
            f"{T}:tp:{int(T0 // 3600)}",
            f"{{{key_prefix}:logged}}:names",
            f"{{{key_prefix}:logged}}:tp:{int(T0 // 3600)}",
            f"{{{key_prefix}}}:queues",
        }
        assert client.ttl(f"{T}:tp:{int(T0 // 3600)}") > 0
        assert all(count == 0 for count in store.counts().values())
        assert set(hash_of(client, f"{T}:names").values()) == {"0"}

    def test_purge_cleans_entries_of_jobs_that_are_gone(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        T = f"{{{key_prefix}:default}}"
        job_id = submit(store)
        store.cancel(job_id, result_ttl=1.0, now=T0)
        client.delete(f"{T}:j:{job_id}", f"{T}:s:{job_id}")

        assert store.purge(now=T0 + 2) == 0
        assert client.zcard(f"{T}:exp") == 0


class TestLongPollWakeUps:
    def test_every_final_transition_wakes_a_noted_wait_and_only_a_noted_one(
        self, store: RedisStore, client: Any, key_prefix: str
    ) -> None:
        T = f"{{{key_prefix}:default}}"
        ids = [submit(store, max_retries=0) for _ in range(4)]
        claimed = {c.job.id: c for c in store.claim(4, LEASE, now=T0)}
        ids += [submit(store, max_retries=0), submit(store, max_retries=0)]
        claimed.update({c.job.id: c for c in store.claim(1, LEASE, now=T0)})
        unwaited = submit(store, max_retries=0)
        for job_id in ids:
            store._run("await", [T], [job_id, T0, T0 + 60, "0"])
        assert client.zcard(f"{T}:waits") == len(ids)

        store.complete_many([(claimed[ids[0]], "1"), (claimed[ids[4]], "2")], result_ttl=TTL, now=T0)
        store.fail(ids[1], claimed[ids[1]].token, an_error(), retry_delay=1.0, result_ttl=TTL, now=T0)
        store.finish_canceled(ids[2], claimed[ids[2]].token, result_ttl=TTL, now=T0)
        store.recover(result_ttl=TTL, now=T0 + LEASE + 1)
        store.cancel(ids[5], result_ttl=TTL, now=T0)
        store.cancel(unwaited, result_ttl=TTL, now=T0)

        assert [client.llen(f"{T}:f:{job_id}") for job_id in ids] == [1] * len(ids)
        assert 0 < client.ttl(f"{T}:f:{ids[0]}") <= 10  # tokens expire
        assert client.zcard(f"{T}:waits") == 0  # told, so no longer noted
        assert not client.exists(f"{T}:f:{unwaited}")  # nobody waited: nothing written

    def test_a_wait_that_ended_is_dropped_by_the_next_one(
        self, store: RedisStore, client: Any, key_prefix: str
    ) -> None:
        T = f"{{{key_prefix}:default}}"
        gone, waited = submit(store), submit(store)
        store._run("await", [T], [gone, T0, T0 + 5, "0"])  # a long-poll that never came back
        store._run("await", [T], [waited, T0 + 6, T0 + 30, "0"])
        assert [text(m) for m in client.zrange(f"{T}:waits", 0, -1)] == [waited]

    def test_a_job_that_finished_already_answers_without_noting_a_wait(
        self, store: RedisStore, client: Any, key_prefix: str
    ) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        store.complete(job_id, claimed.token, '"done"', result_ttl=TTL, now=T0 + 1)
        job = store.wait_for_finish(job_id, timeout=30.0)
        assert job is not None and job.status is JobStatus.COMPLETED and job.result == "done"
        assert not client.exists(f"{{{key_prefix}:default}}:waits")
        assert store.wait_for_finish(new_id(), timeout=30.0) is None

    def test_a_job_that_finishes_right_after_the_first_read_wakes_the_wait(
        self, store: RedisStore, make_client: MakeClient, key_prefix: str
    ) -> None:
        # The finish comes between the long-poll's first read and its BLPOP: the token is waiting.
        other = RedisStore(make_client(), key_prefix=key_prefix)
        job_id = submit(store)
        claimed = claim_one(store, T0)
        first_read = store._await
        blocks = self._record_blocks(store)

        def read_then_finish(*args: Any) -> Any:
            found = first_read(*args)
            other.complete(job_id, claimed.token, '"done"', result_ttl=TTL, now=T0 + 1)
            return found

        store._await = read_then_finish  # type: ignore[method-assign]
        job = store.wait_for_finish(job_id, timeout=30.0)
        assert job is not None and job.status is JobStatus.COMPLETED and job.result == "done"
        assert len(blocks) == 1 and blocks[0] is not None  # woken by the token, not at the end of a block

    def test_every_long_poll_of_a_job_is_woken_when_it_finishes(
        self, store: RedisStore, make_client: MakeClient, key_prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Blocks as long as the wait: a long-poll not woken would end with the job still running.
        monkeypatch.setattr(waiting_module, "FINISH_WAIT_CHUNK", 20.0)
        worker = RedisStore(make_client(), key_prefix=key_prefix)
        job_id = submit(store)
        claimed = claim_one(worker, T0)
        noted = threading.Barrier(4)
        first_read = store._await

        def note_then_meet(*args: Any) -> Any:
            found = first_read(*args)
            noted.wait(10)
            return found

        store._await = note_then_meet  # type: ignore[method-assign]
        seen: list[Any] = []
        pollers = [threading.Thread(target=lambda: seen.append(store.wait_for_finish(job_id, 20.0))) for _ in range(3)]
        for poller in pollers:
            poller.start()
        noted.wait(10)  # every long-poll has noted its wait
        worker.complete(job_id, claimed.token, '"done"', result_ttl=TTL)
        for poller in pollers:
            poller.join(30)
        assert [job.status if job else None for job in seen] == [JobStatus.COMPLETED] * 3

    @staticmethod
    def _record_blocks(store: RedisStore) -> list[Any]:
        """The BLPOP replies of the store's long-polls from now on (``None``: the block timed out)."""
        replies: list[Any] = []
        run_behind = store._scripts.run_behind

        def recording(command: Any, *args: Any, **kwargs: Any) -> Any:
            woken, reply = run_behind(command, *args, **kwargs)
            replies.append(woken)
            return woken, reply

        store._scripts.run_behind = recording  # type: ignore[method-assign]
        return replies


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
        assert client.llen(f"{{{key_prefix}:default}}:wake") <= 64

    def test_each_script_carries_the_helpers_it_uses_and_no_others(self) -> None:
        create = script_source("create")
        assert create.startswith("local CLUSTER = false\n")
        for used in ("local function exact(", "local function count(", "local function wake(", "local WAKE_BELOW"):
            assert used in create
        for unused in ("local function cancel_attempt(", "local function tally(", "local FINAL", "local STATUS_CHAR"):
            assert unused not in create
        # Through another helper: complete calls cancel_attempt, which calls finished, which uses
        # count, FINAL and tell_waiters, which uses FINISH_TOKEN_TTL.
        complete = script_source("complete", cluster=True)
        for used in ("local function finished(", "local function count(", "local FINAL", "local FINISH_TOKEN_TTL"):
            assert used in complete

    def test_used_definitions_follows_helpers_in_file_order_and_ignores_comments(self) -> None:
        common = "-- header\n\nlocal A = 1\n\n-- uses A\nlocal function f()\n  return A\nend\n\nlocal B, C = 2, 3\n"
        assert used_definitions(common, "return f()") == "local A = 1\n\n-- uses A\nlocal function f()\n  return A\nend"
        assert used_definitions(common, "-- f, A\nreturn C") == "local B, C = 2, 3"
        assert used_definitions(common, "return 1") == ""

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
        T = f"{{{key_prefix}:default}}"
        key = sort_key(0, T0 - 3, 0, "n")
        corrupt, stale = new_id(), submit(store, now=T0)
        client.set(f"{T}:j:{corrupt}", "not a record")
        # A member of a job that was queued again since (its state names another member).
        client.hset(f"{T}:s:{stale}", "q", f"{sort_key(0, T0 + 50, 0, 'r')}:{stale}")
        client.zrem(f"{T}:ready", *client.zrange(f"{T}:ready", 0, -1))
        client.zadd(
            f"{T}:ready",
            {
                "not a member this library writes": 0,
                f"{key}:{new_id()}": 0,  # its job is gone
                f"{sort_key(0, T0 - 2, 0, 'n')}:{corrupt}": 0,  # its record cannot be used
                f"{sort_key(0, T0 - 1, 0, 'r')}:{stale}": 0,  # no longer its place in the queue
            },
        )
        good = submit(store, now=T0 + 1)

        claimed = store.claim(1, LEASE, now=T0 + 2)

        assert [c.job.id for c in claimed] == [good]
        # Every entry before it is gone; the foreign one sorts last, and the next claim drops it.
        assert [text(m) for m in client.zrange(f"{T}:ready", 0, -1)] == ["not a member this library writes"]
        assert store.claim(1, LEASE, now=T0 + 2) == []
        assert client.zcard(f"{T}:ready") == 0

    def test_a_claim_is_not_blocked_by_a_long_run_of_bad_entries(
        self, store: RedisStore, client: Any, key_prefix: str
    ) -> None:
        T = f"{{{key_prefix}:default}}"
        client.zadd(f"{T}:ready", {f"{sort_key(0, T0 - 1, i, 'n')}:{new_id()}": 0 for i in range(1500)})
        good = submit(store, now=T0)

        # Each call looks at a bounded number of entries, so it may take a second call to get there.
        claimed = store.claim(1, LEASE, now=T0) or store.claim(1, LEASE, now=T0)

        assert [c.job.id for c in claimed] == [good]

    def test_an_unreadable_job_is_left_out_of_the_batch(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        T = f"{{{key_prefix}:default}}"
        bad, good = submit(store, now=T0), submit(store, now=T0)
        record = text(client.get(f"{T}:j:{bad}"))
        client.set(f"{T}:j:{bad}", record.rpartition("\t")[0] + "\t{not json")

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
        (member, expires), *_ = client.zrange(f"{{{key_prefix}:default}}:run", 0, -1, withscores=True)
        assert text(member).endswith(f":{job_id}")
        assert before + 60.0 <= expires <= after + 60.0
        assert store.recover(result_ttl=TTL) == []
        assert [job.id for job in store.recover(result_ttl=TTL, now=expires + 1)] == [job_id]


class TestRecover:
    def test_the_lease_expired_error_is_structured_json(self, store: RedisStore, client: Any, key_prefix: str) -> None:
        job_id = submit(store, max_retries=0)
        claim_one(store, T0)
        store.recover(result_ttl=TTL, now=T0 + LEASE + 1)

        stored = json.loads(hash_of(client, f"{{{key_prefix}:default}}:s:{job_id}")["e"])
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
        client.delete(f"{{{key_prefix}:default}}:wake")
        started = time.monotonic()
        store.wait_for_work(timeout=30.0)
        assert time.monotonic() - started < 5

    def test_waits_no_longer_than_until_the_next_retry_is_due(self, store: RedisStore, client: Any) -> None:
        job_id = submit(store, now=server_time(client))
        claimed = claim_one(store, server_time(client))
        store.fail(job_id, claimed.token, an_error(), retry_delay=0.3, result_ttl=TTL, now=server_time(client))
        client.delete(f"{{{store.key_prefix}:default}}:wake")

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
        assert client.llen(f"{{{key_prefix}:default}}:wake") <= 64
        assert 0 < client.ttl(f"{{{key_prefix}:default}}:wake") <= 60

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


class TestWaitAndClaim:
    @staticmethod
    def claiming(store: RedisStore, **options: Any) -> tuple[threading.Thread, list[list[ClaimedJob]]]:
        """A thread in ``store.wait_and_claim(30, 5, LEASE, **options)``, past its look for due jobs
        (about to block, or blocked, on the wake lists)."""
        answers: list[list[ClaimedJob]] = []
        blocking = threading.Event()
        counted = store._blocked

        @contextlib.contextmanager
        def blocked(keys: Any) -> Iterator[None]:
            with counted(keys):
                blocking.set()
                yield

        store._blocked = blocked  # type: ignore[method-assign]
        thread = threading.Thread(
            target=lambda: answers.append(store.wait_and_claim(30.0, 5, LEASE, **options)), daemon=True
        )
        thread.start()
        assert blocking.wait(10), "the claimer never blocked"
        return thread, answers

    def test_the_jobs_come_back_with_the_wake_up(self, make_client: MakeClient, key_prefix: str) -> None:
        store = RedisStore(make_client(), key_prefix=key_prefix)
        submitting = RedisStore(make_client(), key_prefix=key_prefix)
        scripts: list[str] = []
        run = store._run
        store._run = lambda name, keys, args: scripts.append(name) or run(name, keys, args)  # type: ignore[func-returns-value]
        thread, answers = self.claiming(store, worker_id="w-1")
        job_id = submit(submitting)
        thread.join(10)

        ((claimed,),) = answers
        assert claimed.job.id == job_id and scripts == []  # no claim script after the wake-up
        stored = submitting.get(job_id)
        assert stored is not None and stored.status is JobStatus.IN_PROGRESS
        assert stored.started_at == claimed.job.started_at  # the time the script read is the one answered
        assert store.renew([(job_id, claimed.token)], LEASE) == {job_id: LeaseState.HELD}

    def test_the_claim_behind_the_wait_loads_a_flushed_script(self, store: RedisStore, client: Any) -> None:
        thread, answers = self.claiming(store)
        client.script_flush()
        job_id = submit(store)  # loads the create script again, not the claim script
        thread.join(10)
        ((claimed,),) = answers
        assert claimed.job.id == job_id

    def test_the_other_queues_are_claimed_after_the_first(self, store: RedisStore) -> None:
        thread, answers = self.claiming(store, queues=("a", "b"), now=T0 + 1)
        job_id = submit(store, queue="b")
        thread.join(10)
        assert [claimed.job.id for claimed in answers[0]] == [job_id]

    def test_a_wait_longer_than_the_socket_timeout_does_not_fail(
        self, make_client: MakeClient, key_prefix: str
    ) -> None:
        store = RedisStore(make_client(socket_timeout=0.5), key_prefix=key_prefix)
        started = time.monotonic()
        assert store.wait_and_claim(2.0, 5, LEASE) == []  # capped below the socket timeout
        assert time.monotonic() - started < 2.0


class LockedPool:
    """A pool whose methods take its one, non-reentrant lock, as redis-py 5.3's ``ConnectionPool`` does."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.released: list[object] = []

    def get_connection(self) -> object:
        with self.lock:
            return object()

    def release(self, connection: object) -> None:
        with self.lock:
            self.released.append(connection)


class TestConnections:
    def test_a_connection_dropped_while_its_pool_holds_its_lock_goes_back_later(self) -> None:
        # A thread's connection goes back when its locals are dropped, which the garbage collector
        # may do inside one of the pool's own methods (``close`` disconnecting every connection)
        # with the lock held in the same thread: giving it back there would wait forever.
        pool = LockedPool()
        outcome: list[object] = []

        def drop_under_the_lock() -> None:
            held: _HeldConnection | None = _HeldConnection(pool)
            assert held is not None
            connection = held.connection
            with pool.lock:
                held = None  # its finalizer runs here, with the lock held
            _HeldConnection(pool)  # the next connection taken out gives the dropped one back
            outcome.append(connection)

        thread = threading.Thread(target=drop_under_the_lock, daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "giving a connection back waited for the lock its own thread held"
        assert pool.released == outcome

    @pytest.mark.parametrize(
        "command",
        [
            ("EVALSHA", "a" * 40, 1, "{ae:default}", 1764590000.123456, "", 'é\t"x"', b"\x00\xff", -7, 1e-7),
            ("SCRIPT LOAD", "return 1"),
            ("GET", bytearray(b"k")),
        ],
    )
    def test_a_held_connection_packs_commands_as_redis_py_does(self, client: Any, command: tuple[Any, ...]) -> None:
        calls = ThreadConnections(client)
        held = calls._held()

        def packed(pack: Callable[[], Any]) -> Any:
            # The same bytes, or the same refusal: redis-py 5.3's hiredis packer refuses a bytearray
            # that later versions convert.
            try:
                return pack()
            except redis.DataError as exc:
                return type(exc)

        assert packed(lambda: held.pack(command)) == packed(lambda: held.connection.pack_command(*command))

    def test_an_argument_redis_cannot_take_is_a_store_error(self, store: RedisStore) -> None:
        with pytest.raises(StoreError, match="running the create script"):
            store._run("create", [store._default.base], ["", object()])

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
            "'http://user:***@localhost:6379/0' is not a Redis URL: use redis://, rediss://, unix://, "
            "redis+sentinel:// or redis+cluster://."
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
            pytest.param(lambda s: s.renew([(new_id(), "n.1@default")], LEASE, now=T0), id="renew"),
            pytest.param(lambda s: s.complete(new_id(), "n.1@default", "1", result_ttl=TTL, now=T0), id="complete"),
            pytest.param(lambda s: s.cancel(new_id(), result_ttl=TTL, now=T0), id="cancel"),
            pytest.param(lambda s: s.recover(result_ttl=TTL, now=T0), id="recover"),
            pytest.param(lambda s: s.purge(now=T0), id="purge"),
            pytest.param(lambda s: s.counts(), id="counts"),
            pytest.param(lambda s: s.wait_for_work(1.0), id="wait_for_work"),
            pytest.param(lambda s: s.wait_and_claim(1.0, 5, LEASE), id="wait_and_claim"),
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


class TestWaitReplicas:
    """``wait_replicas``: a submit is acknowledged once that many replicas have the job."""

    def test_it_comes_from_the_url_query_and_leaves_the_rest_to_the_client(self) -> None:
        store = RedisStore.from_url("redis://localhost/0?socket_timeout=3&wait_replicas=2&wait_timeout=0.25")
        assert store.wait_replicas == 2 and store._scripts.wait_timeout == 0.25
        assert store._client.connection_pool.connection_kwargs["socket_timeout"] == 3.0
        store.close()
        sentinel = RedisStore.from_url("redis+sentinel://127.0.0.1:1/mymaster?wait_replicas=1&socket_timeout=2")
        assert sentinel.wait_replicas == 1
        sentinel.close()
        assert RedisStore.from_url("redis://localhost/0").wait_replicas == 0

    def test_an_options_dict_takes_it_too(self) -> None:
        store = create_store({"url": "redis://localhost/0", "wait_replicas": 1, "wait_timeout": 2}, key_prefix="p")
        assert isinstance(store, RedisStore)
        assert store.wait_replicas == 1 and store._scripts.wait_timeout == 2.0
        store.close()

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("wait_replicas=one", "is not a number"),
            ("wait_replicas=-1", "0 or more"),
            ("wait_timeout=0", "above 0"),
            ("wait_timeout=nan", "above 0"),
        ],
    )
    def test_bad_values_are_configuration_errors(self, query: str, message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            RedisStore.from_url(f"redis://:secret@localhost/0?{query}")

    def test_a_submit_no_replica_confirms_is_a_store_error_and_its_job_is_on_the_master(
        self, redis_url: str, key_prefix: str
    ) -> None:
        client = redis.Redis.from_url(redis_url)
        if client.info("replication")["connected_slaves"]:
            pytest.skip("the test server has replicas")
        store = RedisStore.from_url(f"{redis_url}?wait_replicas=1&wait_timeout=0.05", key_prefix=key_prefix)
        job_id = new_id()
        try:
            with pytest.raises(StoreError, match=r"0 of the 1 replica\(s\) asked for \(wait_replicas\)") as caught:
                store.create(job_id, "Work", JobPayload(), max_retries=0)
            assert "same X-Async-Request-Id finds its job" in str(caught.value)
            found = store.get(job_id)
            assert found is not None and found.status is JobStatus.QUEUED
            # A repeat of the submit that finds it waits the same way before it is answered.
            with pytest.raises(StoreError, match="0 of the 1 replica"):
                store.confirm_stored(found)
            plain = RedisStore(client, key_prefix=key_prefix)
            plain.confirm_stored(found)  # no wait asked for: nothing to do
            # Many at once, in another queue too (its pointer is waited for first).
            with pytest.raises(StoreError, match="wait_replicas"):
                store.create_many([NewJob(new_id(), "Work", JobPayload(), 0, queue="other")])
        finally:
            _delete_prefix(client, key_prefix)
            store.close()
            client.close()


class TestCancelAnnouncements:
    def test_a_cancel_made_elsewhere_reaches_the_watcher_once(self, make_client: MakeClient, key_prefix: str) -> None:
        # Two stores on two clients of one server, as a web process and a worker process would be.
        web = RedisStore(make_client(), key_prefix=key_prefix)
        worker = RedisStore(make_client(), key_prefix=key_prefix)
        heard: list[str] = []
        got = threading.Event()

        def callback(job_id: str) -> None:
            heard.append(job_id)
            got.set()

        stop = worker.watch_cancels(callback)
        try:
            job_id = submit(worker)
            claim_one(worker, T0)
            assert worker._notifier.subscribed(f"{{{key_prefix}:default}}:cancels").wait(5)
            assert web.cancel(job_id, result_ttl=TTL, now=T0)[0] is CancelResult.REQUESTED
            assert got.wait(10)
            mine = submit(worker)
            claim_one(worker, T0)
            got.clear()
            assert worker.cancel(mine, result_ttl=TTL, now=T0)[0] is CancelResult.REQUESTED
            assert got.wait(10)
            # Its own cancel is told at once and its announcement skipped: once, not twice.
            web.cancel(submit(web), result_ttl=TTL, now=T0)  # a queued job: nothing to tell
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline and len(heard) < 3:
                got.wait(0.05)  # allow-sleep: that no third call comes can only be seen by waiting
            assert heard == [job_id, mine]
        finally:
            stop()
            web.close()
            worker.close()


class TestClock:
    def test_an_offset_is_applied_only_when_the_clocks_disagree(self) -> None:
        ahead = ServerClock(lambda: divmod(int((time.time() + 100.0) * 1_000_000), 1_000_000))
        assert 99.9 < ahead.now() - time.time() < 100.1
        assert 99.9 < ahead.offset < 100.1
        same = ServerClock(lambda: divmod(int(time.time() * 1_000_000), 1_000_000))
        same.sync()
        assert same.offset == 0.0, "clocks that agree within the reading's round trip are taken as one"

    def test_the_store_reads_the_server_clock_once_a_minute(self, store: RedisStore, monkeypatch: Any) -> None:
        reads: list[int] = []
        original = store._clock._read_time
        monkeypatch.setattr(store._clock, "_read_time", lambda: reads.append(1) or original())
        for _ in range(20):
            submit(store, now=None)  # type: ignore[arg-type]
        assert len(reads) <= 1


@pytest.fixture(scope="module")
def private_redis() -> Iterator[str]:
    """A redis-server of this module's own, so that its command counts are this module's alone."""
    import shutil

    from benchmarks._common import RedisServer

    from ..conftest import REQUIRE_REDIS_ENV

    if not shutil.which("redis-server"):
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"{REQUIRE_REDIS_ENV} is set but redis-server is not on PATH")
        pytest.skip("needs redis-server on PATH")
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def command_calls(client: Any) -> int:
    """Every command the server ran so far, those run by scripts included (INFO commandstats)."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


class TestCommandsPerJob:
    """The command budget per job (issue targets: enqueue at most 4, claim and complete at most 6)."""

    def test_a_submit_costs_four_commands(self, private_redis: str) -> None:
        client = redis.Redis.from_url(private_redis)
        store = RedisStore(client, key_prefix="budget")
        for _ in range(70):  # the first jobs of a name also wake a worker: a fifth command
            submit(store, now=None)  # type: ignore[arg-type]
        before = command_calls(client)
        for _ in range(100):
            submit(store, now=None)  # type: ignore[arg-type]
        assert command_calls(client) - before == 4 * 100
        client.flushall()

    def test_a_claim_and_its_completion_cost_at_most_six_commands_a_job(self, private_redis: str) -> None:
        client = redis.Redis.from_url(private_redis)
        store = RedisStore(client, key_prefix="budget")
        ids = [str(uuid.uuid4()) for _ in range(200)]
        store.create_many([NewJob(job_id, "Work", JobPayload(body={"n": 1}), 3) for job_id in ids])
        before = command_calls(client)
        for _ in range(40):
            claimed = store.claim(5, LEASE, worker_id="w")
            assert len(claimed) == 5
            done = store.complete_many([(c, "null") for c in claimed], result_ttl=TTL)
            assert all(job is not None and job.status is JobStatus.COMPLETED for job in done)
        per_job = (command_calls(client) - before) / 200
        assert per_job <= 6, per_job
        client.flushall()

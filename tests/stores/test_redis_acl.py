"""The least-privilege Redis ACL user documented in docs/security.rst is enough for every operation."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from flask_asyncendpoints.jobs import JobError, JobPayload, JobStatus
from flask_asyncendpoints.stores.redis import RedisStore

from ..conftest import _delete_prefix


def documented_rule(prefix: str) -> list[str]:
    """The ACL rules of docs/security.rst for a key prefix."""
    return [
        "on",
        "resetkeys",
        f"~{{{prefix}}}*",
        f"~{{{prefix}:*",
        "resetchannels",
        f"&{{{prefix}:*",
        "-@all",
        "+@read",
        "+@write",
        "+@scripting",
        "+@connection",
        "+@pubsub",
        "+blpop",
        "+time",
    ]


def test_the_documented_acl_user_can_run_every_operation(
    real_redis_client: Any, redis_url: str, key_prefix: str
) -> None:
    redis = pytest.importorskip("redis")
    admin = real_redis_client
    user, password = f"ae-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.acl_setuser(user, reset=True)
    admin.execute_command("ACL", "SETUSER", user, f">{password}", *documented_rule(key_prefix))
    host = admin.connection_pool.connection_kwargs
    client = redis.Redis(host=host["host"], port=host["port"], db=host.get("db", 0), username=user, password=password)
    store = RedisStore(client, key_prefix=key_prefix)
    try:
        store.ping()
        job, _ = store.create(str(uuid.uuid4()), "Work", JobPayload(body={"a": 1}), max_retries=1)
        store.wait_for_work(0.01)
        (claimed,) = store.claim(1, 30)
        store.renew([(job.id, claimed.token)], 30)
        store.set_progress(job.id, claimed.token, 0.5, "half")
        store.fail(job.id, claimed.token, JobError("X", "failed"), retry_delay=0, result_ttl=60)
        (claimed,) = store.claim(1, 30)
        seen: list[Any] = []
        waiter = threading.Thread(target=lambda: seen.append(store.wait_for_finish(job.id, 10)))
        waiter.start()
        store.complete(job.id, claimed.token, '"done"', result_ttl=60)
        waiter.join(15)
        assert seen[0].status is JobStatus.COMPLETED
        assert store.wait_and_claim(0.01, 1, 30) == []  # the claim behind BLPOP reads TIME
        store.wake()
        store.recover(result_ttl=60)
        store.purge()
        store.cancel(str(uuid.uuid4()), result_ttl=60)
        assert store.counts()[JobStatus.COMPLETED] == 1
        other, _ = store.create(str(uuid.uuid4()), "Work", JobPayload(), max_retries=0, queue="other", priority=2)
        (claimed,) = store.claim(1, 30, queues=["other"])
        stop = store.watch_cancels(lambda job_id: None)
        assert store.append_logs(other.id, claimed.token, [], max_lines=10, max_bytes=100)
        store.cancel(other.id, result_ttl=60)
        store.fail(other.id, claimed.token, JobError("X", "failed"), retry_delay=None, result_ttl=60)
        stop()
        assert store.get(other.id) is not None and store.attempts(other.id) and store.logs(other.id) == []
        store.counts_by_name()
        store.queue_stats()
        store.throughput()
        store.list_jobs(JobStatus.COMPLETED, name="Work")
        assert store.claim_occurrence("nightly", 1.0)
        store.delete(other.id)
        assert store.purge_finished(0) == 1
        # The user sees nothing outside its prefix.
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("some-other-app:key")
    finally:
        # Its subscriber thread first: left running, it would retry as a user that no longer exists.
        store.close()
        client.close()
        admin.acl_deluser(user)
        _delete_prefix(admin, key_prefix)

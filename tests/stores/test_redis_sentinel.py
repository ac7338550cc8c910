"""The Redis store through Sentinel: how it follows a failover.

The rules of :class:`~flask_asyncendpoints.stores.redis.sentinel.SentinelWatch` are checked on
events fed to it by hand; the store itself on a real deployment (a master, a replica and three
Sentinels on loopback), in this process. ``tests/test_failover.py`` runs web and worker processes
through a failover under load.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from flask_asyncendpoints.errors import StoreError
from flask_asyncendpoints.stores.redis import RedisStore
from flask_asyncendpoints.stores.redis.keys import CANCELS_CHANNEL, Layout
from flask_asyncendpoints.stores.redis.sentinel import FENCE_SECONDS, SentinelWatch

from ..conftest import REQUIRE_REDIS_ENV, FakeClock
from ..redis_sentinel import SERVICE, LocalSentinel
from .test_contract import LEASE, TTL, submit


class FakePool:
    """What SentinelWatch asks of a Sentinel pool: its service, its Sentinels, the master they name."""

    service_name = "svc"

    def __init__(self) -> None:
        self.sentinel_manager = SimpleNamespace(sentinels=[])
        self.master = ("10.0.0.1", 6379)

    def get_master_address(self) -> tuple[str, int]:
        return self.master


def event(channel: str, data: str) -> dict[str, Any]:
    return {"type": "message", "channel": channel, "data": data}


@pytest.fixture
def watch(clock: FakeClock) -> tuple[SentinelWatch, FakePool, list[int]]:
    pool = FakePool()
    watch = SentinelWatch(pool, clock=clock)
    switches: list[int] = []
    watch.on_switch(lambda: switches.append(watch.generation))
    watch._catch_up()  # as a subscriber thread does once subscribed: the master is 10.0.0.1
    return watch, pool, switches


def paused(watch: SentinelWatch) -> bool:
    """Whether store calls are refused now (with the message that says why)."""
    try:
        watch.check()
    except StoreError as exc:
        return "failing over the master of service 'svc'" in str(exc)
    return False


class TestSentinelWatch:
    def test_a_failover_pauses_calls_until_the_sentinels_name_the_new_master(
        self, watch: tuple[SentinelWatch, FakePool, list[int]]
    ) -> None:
        sentinel, pool, switches = watch
        assert not paused(sentinel)
        sentinel._heard(0, event("+try-failover", "master svc 10.0.0.1 6379"))
        assert paused(sentinel)
        sentinel._heard(0, event("+selected-slave", "slave 10.0.0.2:6379 10.0.0.2 6379 @ svc 10.0.0.1 6379"))
        assert paused(sentinel) and switches == []
        pool.master = ("10.0.0.2", 6379)
        sentinel._heard(2, event("+switch-master", "svc 10.0.0.1 6379 10.0.0.2 6379"))
        assert not paused(sentinel)
        # Connections made before drop before their next call; the pub/sub subscribes again.
        assert switches == [1] and sentinel.generation == 1
        # The other Sentinels announce it too: nothing more to do.
        sentinel._heard(0, event("+switch-master", "svc 10.0.0.1 6379 10.0.0.2 6379"))
        sentinel._heard(1, event("+switch-master", "svc 10.0.0.1 6379 10.0.0.2 6379"))
        assert switches == [1]

    def test_other_services_are_none_of_its_business(self, watch: tuple[SentinelWatch, FakePool, list[int]]) -> None:
        sentinel, _, switches = watch
        sentinel._heard(0, event("+try-failover", "master other 10.0.0.9 6379"))
        sentinel._heard(0, event("+selected-slave", "slave 10.0.0.8:6379 10.0.0.8 6379 @ other 10.0.0.9 6379"))
        sentinel._heard(0, event("+switch-master", "other 10.0.0.9 6379 10.0.0.8 6379"))
        assert not paused(sentinel) and switches == [] and sentinel.generation == 0

    def test_an_abort_ends_only_the_pause_of_the_sentinel_that_aborted(
        self, watch: tuple[SentinelWatch, FakePool, list[int]]
    ) -> None:
        sentinel, _, switches = watch
        # Two Sentinels try; the one that loses the election gives up, the other goes on.
        sentinel._heard(0, event("+try-failover", "master svc 10.0.0.1 6379"))
        sentinel._heard(1, event("+try-failover", "master svc 10.0.0.1 6379"))
        sentinel._heard(1, event("-failover-abort-not-elected", "master svc 10.0.0.1 6379"))
        assert paused(sentinel)
        sentinel._heard(0, event("-failover-abort-no-good-slave", "master svc 10.0.0.1 6379"))
        assert not paused(sentinel)
        # The master stays; connections ask the Sentinels again all the same.
        assert sentinel.generation == 1 and switches == []

    def test_a_pause_whose_end_is_never_heard_lasts_at_most_fence_seconds(
        self, watch: tuple[SentinelWatch, FakePool, list[int]], clock: FakeClock
    ) -> None:
        sentinel, _, _ = watch
        sentinel._heard(0, event("+try-failover", "master svc 10.0.0.1 6379"))
        clock.advance(FENCE_SECONDS - 0.1)
        assert paused(sentinel)
        clock.advance(0.2)
        assert not paused(sentinel)
        assert sentinel.generation == 1

    def test_a_switch_missed_while_not_subscribed_is_found_on_subscribing_again(
        self, watch: tuple[SentinelWatch, FakePool, list[int]]
    ) -> None:
        sentinel, pool, switches = watch
        pool.master = ("10.0.0.2", 6379)
        sentinel._catch_up()
        assert switches == [1]
        sentinel._catch_up()
        assert switches == [1]


# -- on a real deployment ------------------------------------------------------------------------------


@pytest.fixture
def sentinel() -> Iterator[LocalSentinel]:
    if shutil.which("redis-server") is None:
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"{REQUIRE_REDIS_ENV} is set but redis-server is not on PATH")
        pytest.skip("needs redis-server on PATH for Sentinel")
    deployment = LocalSentinel()
    deployment.start()
    try:
        yield deployment
    finally:
        deployment.stop()


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)  # allow-sleep: polls servers in other processes, with a deadline
    return value


def test_a_store_moves_to_the_new_master_with_its_connections_and_its_subscriptions(
    sentinel: LocalSentinel, key_prefix: str
) -> None:
    web = RedisStore.from_url(sentinel.url(), key_prefix=key_prefix)
    worker = RedisStore.from_url(sentinel.url(), key_prefix=key_prefix)
    try:
        job_id = submit(web)  # this thread now holds a connection to the master
        (claimed,) = worker.claim(1, LEASE)
        heard: list[str] = []
        got = threading.Event()
        worker.watch_cancels(lambda cancelled: (heard.append(cancelled), got.set()))
        channel = Layout(key_prefix).default.key(CANCELS_CHANNEL)
        assert worker._notifier.subscribed(channel).wait(5)

        old = sentinel.failover()
        new = wait_for(lambda: (port := sentinel.master_port()) != old and port, 10, "the Sentinels to switch")
        # The stores pause until they have heard of the switch, then answer from the new master.
        wait_for(lambda: web._sentinel is not None and web._sentinel.generation > 0, 10, "the web store to hear it")
        wait_for(lambda: worker._sentinel is not None and worker._sentinel.generation > 0, 10, "the worker to hear it")
        with redis.Redis(port=new, socket_timeout=5) as master:
            again = submit(web)
            # On the new master at once: the old one no longer replicates to it, so this thread's
            # connection went there. Both jobs are there, the first replicated before the switch.
            assert master.exists(Layout(key_prefix).default.record(again)) == 1
            assert master.exists(Layout(key_prefix).default.record(job_id)) == 1
            # The worker's subscriber moved too: the cancel channel has its subscriber on the new master.
            wait_for(lambda: dict(master.pubsub_numsub(channel)).get(channel.encode(), 0) >= 1, 5, "it to resubscribe")
        outcome, _ = web.cancel(job_id, result_ttl=TTL)
        assert outcome.value == "requested"
        assert got.wait(5) and heard == [job_id]
        job = worker.complete(job_id, claimed.token, "1", result_ttl=TTL)
        assert job is not None and job.status.value == "Canceled"
        assert web.get(again) is not None
    finally:
        web.close()
        worker.close()


def test_the_service_is_named_in_the_pause_message(sentinel: LocalSentinel, key_prefix: str) -> None:
    store = RedisStore.from_url(sentinel.url(), key_prefix=key_prefix)
    try:
        submit(store)
        assert store._sentinel is not None
        store._sentinel._heard(0, event("+try-failover", f"master {SERVICE} 127.0.0.1 1"))
        with pytest.raises(StoreError, match=f"failing over the master of service '{SERVICE}'"):
            store.get("00000000-0000-4000-8000-000000000000")
    finally:
        store.close()

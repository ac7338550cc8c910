"""Shared fixtures: a fake clock, stores of every kind, apps and clients."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from flask_asyncendpoints.stores import MemoryStore, Store

#: Set to a Redis URL (e.g. ``redis://127.0.0.1:6379/15``) to run the real-Redis tests.
REDIS_URL_ENV = "ASYNCENDPOINTS_TEST_REDIS_URL"

#: A fixed starting time for the fake clock: 2026-01-01T00:00:00Z.
T0 = 1_767_225_600.0


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def real_redis_url() -> str | None:
    return os.environ.get(REDIS_URL_ENV) or None


@pytest.fixture
def redis_url() -> str:
    """The real Redis URL; the test is skipped when none is given."""
    url = real_redis_url()
    if url is None:
        pytest.skip(f"real Redis not configured (set {REDIS_URL_ENV})")
    return url


def _delete_prefix(client: object, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))  # type: ignore[attr-defined]
    if keys:
        client.delete(*keys)  # type: ignore[attr-defined]


@pytest.fixture
def fake_redis_client() -> Iterator[object]:
    fakeredis = pytest.importorskip("fakeredis")
    client = fakeredis.FakeRedis()
    yield client
    client.close()


@pytest.fixture
def real_redis_client(redis_url: str) -> Iterator[object]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A prefix no other test uses, so tests on the shared Redis never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}"


def make_store(kind: str, request: pytest.FixtureRequest, clock: FakeClock, key_prefix: str) -> Store:
    if kind == "memory":
        return MemoryStore(clock=clock)
    from flask_asyncendpoints.stores.redis import RedisStore

    client = request.getfixturevalue("fake_redis_client" if kind == "fakeredis" else "real_redis_client")
    if kind == "redis":
        request.addfinalizer(lambda: _delete_prefix(client, key_prefix))
    return RedisStore(client, key_prefix=key_prefix)


STORE_KINDS = ["memory", "fakeredis", "redis"]


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, clock: FakeClock, key_prefix: str) -> Store:
    """Every kind of store, one test run each: the contract holds for all of them."""
    return make_store(request.param, request, clock, key_prefix)

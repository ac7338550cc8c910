"""Shared fixtures: a fake clock, stores of every kind, apps and clients."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_asyncendpoints import AsyncEndpoints, Job
from flask_asyncendpoints.errors import StoreError
from flask_asyncendpoints.signals import job_finished
from flask_asyncendpoints.stores import MemoryStore, Store
from flask_asyncendpoints.testing.helpers import FrozenClock
from flask_asyncendpoints.worker import Worker

from .redis_cluster import LocalCluster
from .redis_sentinel import LocalSentinel

#: Set to a Redis URL (e.g. ``redis://127.0.0.1:6379/15``) to run the real-Redis tests.
REDIS_URL_ENV = "ASYNCENDPOINTS_TEST_REDIS_URL"
#: Set (CI does) to make a missing real Redis fail the real-Redis tests instead of skipping them.
REQUIRE_REDIS_ENV = "ASYNCENDPOINTS_REQUIRE_REDIS"
#: Database URLs of the real-server SQL tests, e.g. ``postgresql://postgres@127.0.0.1:5432/test`` and
#: ``mysql://root@127.0.0.1:3306/test``. SQLite needs no server: its tests always run.
SQL_URL_ENVS = {"postgresql": "ASYNCENDPOINTS_TEST_POSTGRESQL_URL", "mysql": "ASYNCENDPOINTS_TEST_MYSQL_URL"}
#: Set (CI does) to make a missing or unreachable database fail the real-server SQL tests instead of
#: skipping them.
REQUIRE_SQL_ENV = "ASYNCENDPOINTS_REQUIRE_SQL"

#: A fixed starting time for the fake clock: 2026-01-01T00:00:00Z.
T0 = 1_767_225_600.0


#: The library's own test clock (a clock that only moves when told to), as users get it.
FakeClock = FrozenClock

#: Users' tests run the documented examples through pytester (tests/test_testing_helpers.py).
pytest_plugins = ["pytester"]


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
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"{REQUIRE_REDIS_ENV} is set but {REDIS_URL_ENV} is not")
        pytest.skip(f"real Redis not configured (set {REDIS_URL_ENV})")
    return url


def _delete_prefix(client: object, prefix: str) -> None:
    """Delete every key of the Redis store with this prefix (on a cluster, node by node, key by key)."""
    from flask_asyncendpoints.stores.redis.keys import scan_patterns

    for pattern in [f"{prefix}:*", *scan_patterns(prefix)]:
        keys = list(client.scan_iter(match=pattern, count=1000))  # type: ignore[attr-defined]
        for key in keys:
            client.delete(key)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A real Redis Cluster (3 masters, 3 replicas) on loopback ports for the whole session.

    Skipped without ``redis-server`` and ``redis-cli`` on PATH, unless ``ASYNCENDPOINTS_REQUIRE_REDIS``
    is set, which makes that a failure.
    """
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"{REQUIRE_REDIS_ENV} is set but redis-server or redis-cli is not on PATH")
        pytest.skip("needs redis-server and redis-cli on PATH for a Redis Cluster")
    cluster = LocalCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[LocalSentinel]:
    """A real master, replica and three Sentinels on loopback ports for the whole session (never
    failed over: tests that fail one over start a deployment of their own).

    Skipped without ``redis-server`` on PATH, unless ``ASYNCENDPOINTS_REQUIRE_REDIS`` is set.
    """
    if not shutil.which("redis-server"):
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"{REQUIRE_REDIS_ENV} is set but redis-server is not on PATH")
        pytest.skip("needs redis-server on PATH for Redis Sentinel")
    deployment = LocalSentinel()
    deployment.start()
    try:
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
def sentinel_client(redis_sentinel: LocalSentinel) -> Iterator[object]:
    """A ``redis.Redis`` client of the session's Sentinel deployment's master, as ``redis+sentinel://`` makes it."""
    from flask_asyncendpoints.stores.redis.urls import connect

    client, closers = connect(redis_sentinel.url())
    yield client
    for close in closers:
        close()


@pytest.fixture
def cluster_client(redis_cluster: LocalCluster) -> Iterator[object]:
    """A ``redis.cluster.RedisCluster`` client of the session's cluster."""
    from flask_asyncendpoints.stores.redis.urls import connect

    client, closers = connect(redis_cluster.url)
    yield client
    for close in closers:
        close()


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


#: Each key prefix a test was given, and the test: the session checks at its end that the shared
#: Redis holds no key of any of them (every test removes what it wrote).
GIVEN_PREFIXES: dict[str, str] = {}


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A prefix no other test uses, so tests on the shared Redis never see each other's keys."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    GIVEN_PREFIXES[prefix] = request.node.nodeid
    return prefix


def leftover_keys(url: str) -> dict[str, int]:
    """The tests of this session that left keys in the Redis at ``url``, with how many."""
    import re

    import redis

    client = redis.Redis.from_url(url)
    left: dict[str, int] = {}
    try:
        for key in client.scan_iter(match="*test-*", count=1000):
            match = re.search(rb"test-[0-9a-f]{12}", key)
            test = GIVEN_PREFIXES.get(match.group().decode()) if match else None
            if test is not None:
                left[test] = left.get(test, 0) + 1
                client.delete(key)
    finally:
        client.close()
    return left


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    url = real_redis_url()
    if url is None or not GIVEN_PREFIXES:
        return
    left = leftover_keys(url)
    if left:
        lines = "\n".join(f"  {test}: {count} key(s)" for test, count in sorted(left.items()))
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"tests left keys in the shared Redis (deleted now):\n{lines}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def sql_url(family: str) -> str:
    """The URL of the real ``postgresql`` or ``mysql`` server to test on; the test is skipped (or, with
    ``ASYNCENDPOINTS_REQUIRE_SQL`` set, fails) when none is given."""
    env = SQL_URL_ENVS[family]
    url = os.environ.get(env)
    if not url:
        if os.environ.get(REQUIRE_SQL_ENV):
            pytest.fail(f"{REQUIRE_SQL_ENV} is set but {env} is not")
        pytest.skip(f"real {family} not configured (set {env})")
    return url


@pytest.fixture
def table_prefix() -> str:
    """A table prefix no other test uses (SQL identifiers take no hyphen)."""
    return f"t{uuid.uuid4().hex[:12]}"


def make_sql_store(kind: str, request: pytest.FixtureRequest, table_prefix: str, **options: object) -> Store:
    """A SQL store on a fresh table prefix, its tables dropped when the test ends."""
    pytest.importorskip("sqlalchemy")
    from flask_asyncendpoints.stores.sql import SQLStore

    url = f"sqlite:///{request.getfixturevalue('tmp_path') / 'jobs.db'}" if kind == "sqlite" else sql_url(kind)
    store = SQLStore.from_url(url, key_prefix=table_prefix, **options)  # type: ignore[arg-type]
    try:
        store.ping()
    except StoreError as exc:
        store.close()
        if os.environ.get(REQUIRE_SQL_ENV):
            pytest.fail(f"{kind} at {url} does not answer: {exc}")
        pytest.skip(f"{kind} at {url} does not answer: {exc}")

    def drop() -> None:
        store.tables.metadata.drop_all(store.engine)
        store.close()

    request.addfinalizer(drop)
    return store


def make_store(kind: str, request: pytest.FixtureRequest, clock: FakeClock, key_prefix: str) -> Store:
    if kind == "memory":
        return MemoryStore(clock=clock)
    if kind in ("sqlite", "postgresql", "mysql"):
        return make_sql_store(kind, request, request.getfixturevalue("table_prefix"))
    from flask_asyncendpoints.stores.redis import RedisStore

    fixture = {
        "fakeredis": "fake_redis_client",
        "redis": "real_redis_client",
        "cluster": "cluster_client",
        "sentinel": "sentinel_client",
    }[kind]
    client = request.getfixturevalue(fixture)
    if kind in ("redis", "cluster", "sentinel"):
        request.addfinalizer(lambda: _delete_prefix(client, key_prefix))
    store = RedisStore(client, key_prefix=key_prefix)
    request.addfinalizer(store.close)  # its subscriber thread, if it started one
    return store


STORE_KINDS = ["memory", "fakeredis", "redis", "cluster", "sentinel", "sqlite", "postgresql", "mysql"]


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, clock: FakeClock, key_prefix: str) -> Store:
    """Every kind of store, one test run each: the contract holds for all of them."""
    return make_store(request.param, request, clock, key_prefix)


@pytest.fixture
def app_config() -> dict[str, object]:
    """Config for the ``app`` fixture; override this fixture in a module to change it."""
    return {}


@pytest.fixture
def ae() -> AsyncEndpoints:
    return AsyncEndpoints()


@pytest.fixture
def memory_store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def app_store(memory_store: MemoryStore) -> Store:
    """The ``app`` fixture's store: the memory store with the fake clock.

    A test class whose tests every store must pass overrides it with the parametrized ``store``
    fixture, so they run once per kind of store::

        @pytest.fixture
        def app_store(self, store: Store) -> Store:
            return store
    """
    return memory_store


@pytest.fixture
def app(ae: AsyncEndpoints, app_store: Store, app_config: dict[str, object]) -> Iterator[Flask]:
    """An app on ``app_store`` (the memory store with the fake clock unless a test class says every
    store); no worker threads unless a test starts them."""
    app = Flask("testapp")
    app.config.update(TESTING=True, ASYNCENDPOINTS_WORKER=False, ASYNCENDPOINTS_MAX_CONCURRENCY=2)
    app.config.update(app_config)
    ae.init_app(app, store=app_store)
    yield app
    ae.shutdown(app, timeout=5)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def worker(ae: AsyncEndpoints, app: Flask) -> Worker:
    """The app's worker, not started: tests drive it with ``run_once()``."""
    return ae.get_worker(app)


class Finished:
    """Collects ``job_finished`` signals so a test can wait for a job without sleeping."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.jobs: dict[str, Job | None] = {}
        self._cond = threading.Condition()
        job_finished.connect(self._receive, sender=app, weak=False)

    def _receive(self, sender: Flask, job: Job | None, job_id: str, **extra: object) -> None:
        with self._cond:
            self.jobs[job_id] = job
            self._cond.notify_all()

    def wait(self, job_id: str, timeout: float = 10.0) -> Job | None:
        with self._cond:
            if not self._cond.wait_for(lambda: job_id in self.jobs, timeout):
                raise AssertionError(f"job {job_id} did not finish within {timeout} s")
            return self.jobs.pop(job_id)

    def close(self) -> None:
        job_finished.disconnect(self._receive, sender=self.app)


@pytest.fixture
def finished(app: Flask) -> Iterator[Finished]:
    watcher = Finished(app)
    yield watcher
    watcher.close()

"""SQL-store behaviour beyond the shared contract: URLs and engines, the schema and its version, the
database's clock, the claim's index, counters under concurrency, wake-ups, outages, and the worker
and HTTP API on each database.

Each test runs on SQLite files and on the real PostgreSQL and MariaDB servers named by
``ASYNCENDPOINTS_TEST_POSTGRESQL_URL`` / ``ASYNCENDPOINTS_TEST_MYSQL_URL`` (skipped without them,
failing instead with ``ASYNCENDPOINTS_REQUIRE_SQL``), on tables of its own that are dropped after.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from flask import Flask
from sqlalchemy import create_engine, func, select, text

from flask_asyncendpoints import AsyncEndpoints
from flask_asyncendpoints.cli import cli
from flask_asyncendpoints.errors import ConfigurationError, StoreError
from flask_asyncendpoints.jobs import JobError, JobPayload, JobStatus
from flask_asyncendpoints.stores import CancelResult, NewJob, create_store
from flask_asyncendpoints.stores.sql import SCHEMA_VERSION, SQLStore
from flask_asyncendpoints.stores.sql import txn as txn_module
from flask_asyncendpoints.stores.sql.engines import normalize_url

from ..conftest import T0, Finished, make_sql_store, sql_url
from .test_contract import LEASE, TTL, claim_one, new_id, submit

FAMILIES = ["sqlite", "postgresql", "mysql"]

#: Longer than any wait below: a waiter that returns sooner was woken, not timed out.
LONG = 30.0


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(family: str, request: pytest.FixtureRequest, table_prefix: str) -> SQLStore:
    made = make_sql_store(family, request, table_prefix)
    assert isinstance(made, SQLStore)
    return made


def url_of(family: str, request: pytest.FixtureRequest) -> str:
    if family == "sqlite":
        return f"sqlite:///{request.getfixturevalue('tmp_path') / 'other.db'}"
    return sql_url(family)


def twin(store: SQLStore, request: pytest.FixtureRequest) -> SQLStore:
    """A second store on the same tables, as another process would have."""
    other = SQLStore(create_engine(store.engine.url), key_prefix=store.key_prefix)
    request.addfinalizer(other.close)
    request.addfinalizer(other.engine.dispose)
    return other


# -- URLs and engines ----------------------------------------------------------------------------------


class TestUrls:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("postgresql://u:pw@db:5432/app", "postgresql+psycopg://u:pw@db:5432/app"),
            ("postgres://u@db/app", "postgresql+psycopg://u@db/app"),
            ("postgresql+psycopg2://u@db/app", "postgresql+psycopg2://u@db/app"),
            ("mysql://root@db:3306/app", "mysql+pymysql://root@db:3306/app?charset=utf8mb4"),
            ("mariadb://root@db/app?charset=utf8", "mariadb+pymysql://root@db/app?charset=utf8"),
            ("sqlite:///jobs.db", "sqlite+pysqlite:///jobs.db"),
        ],
    )
    def test_a_url_without_a_driver_gets_the_family_default(self, given: str, expected: str) -> None:
        assert normalize_url(given)[0] == expected

    def test_sqlite_options_are_the_stores_own(self) -> None:
        url, options = normalize_url("sqlite:////var/jobs.db?synchronous=normal&busy_timeout=30")
        assert url == "sqlite+pysqlite:////var/jobs.db"
        assert options == {"synchronous": "normal", "busy_timeout": "30"}

    @pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"])
    def test_in_memory_sqlite_is_refused_with_what_to_use(self, url: str) -> None:
        with pytest.raises(ConfigurationError, match=r"sqlite:///jobs\.db"):
            normalize_url(url)

    @pytest.mark.parametrize(
        ("url", "family"),
        [("postgresql://u@127.0.0.1:1/x", "postgresql"), ("mariadb://u@127.0.0.1:1/x", "mysql")],
    )
    def test_create_store_takes_each_scheme_without_connecting(self, url: str, family: str) -> None:
        store = create_store(url, key_prefix="ae")
        try:
            assert isinstance(store, SQLStore)
            assert store.family == family
            assert "u@127.0.0.1:1/x" in repr(store)
        finally:
            store.close()

    def test_options_go_to_the_engine(self, tmp_path: Any) -> None:
        store = create_store({"url": f"sqlite:///{tmp_path / 'jobs.db'}", "pool_size": 3}, key_prefix="ae")
        try:
            assert isinstance(store, SQLStore)
            assert store.engine.pool.size() == 3  # type: ignore[attr-defined]
        finally:
            store.close()

    def test_a_postgresql_engine_is_shared_not_copied(self, request: pytest.FixtureRequest, table_prefix: str) -> None:
        engine = create_engine(normalize_url(sql_url("postgresql"))[0])
        request.addfinalizer(engine.dispose)
        store = create_store(engine, key_prefix=table_prefix)
        assert isinstance(store, SQLStore)
        request.addfinalizer(lambda: store.tables.metadata.drop_all(engine))
        assert store.engine.pool is engine.pool
        job_id = submit(store)
        assert store.get(job_id) is not None
        # The app's own connections keep the engine's isolation level.
        with engine.connect() as conn:
            assert conn.get_isolation_level() == engine.dialect.default_isolation_level

    def test_a_sqlite_engine_is_opened_again_with_the_stores_settings(self, tmp_path: Any) -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
        store = create_store(engine, key_prefix="ae")
        assert isinstance(store, SQLStore)
        try:
            assert store.engine is not engine
            assert store.engine.url.database == engine.url.database
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            store.close()
            engine.dispose()

    @pytest.mark.parametrize("prefix", ["", "ae-1", "{ae}", "1ae", "a" * 31])
    def test_a_prefix_that_cannot_start_table_names_is_refused(self, prefix: str, tmp_path: Any) -> None:
        with pytest.raises(ConfigurationError, match="KEY_PREFIX"):
            create_store(f"sqlite:///{tmp_path / 'jobs.db'}", key_prefix=prefix)


# -- schema --------------------------------------------------------------------------------------------


def versions(store: SQLStore) -> list[int]:
    with store.engine.connect() as conn:
        return [int(v) for v in conn.execute(select(store.tables.schema.c.version)).scalars()]


class TestSchema:
    def test_first_use_creates_the_tables_and_records_the_version(self, store: SQLStore) -> None:
        assert store.counts()[JobStatus.QUEUED] == 0
        assert versions(store) == [SCHEMA_VERSION]
        assert store.init_db() == SCHEMA_VERSION
        assert versions(store) == [SCHEMA_VERSION]

    def test_tables_of_a_newer_release_are_refused(self, store: SQLStore, request: pytest.FixtureRequest) -> None:
        store.init_db()
        with store.engine.begin() as conn:
            conn.execute(store.tables.schema.insert().values(version=SCHEMA_VERSION + 1, applied_at=T0))
        with pytest.raises(ConfigurationError, match="newer release"):
            twin(store, request).counts()

    def test_missing_tables_name_the_command_that_makes_them(
        self, family: str, request: pytest.FixtureRequest, table_prefix: str
    ) -> None:
        url = url_of(family, request)
        store = SQLStore(create_engine(normalize_url(url)[0]), key_prefix=table_prefix, create_tables=False)
        request.addfinalizer(lambda: store.tables.metadata.drop_all(store.engine))
        with pytest.raises(ConfigurationError, match="flask asyncendpoints init-db"):
            store.counts()
        assert store.init_db() == SCHEMA_VERSION
        assert store.counts()[JobStatus.QUEUED] == 0

    def test_the_printed_ddl_makes_tables_the_store_works_on(
        self, store: SQLStore, request: pytest.FixtureRequest, table_prefix: str
    ) -> None:
        fresh = SQLStore(store.engine, key_prefix=f"{table_prefix}d", create_tables=False)
        request.addfinalizer(lambda: fresh.tables.metadata.drop_all(store.engine))
        statements = [part.strip() for part in fresh.ddl().split(";\n") if part.strip()]
        assert len(statements) == len(fresh.tables.all) + sum(len(t.indexes) for t in fresh.tables.all) + 1
        with store.engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
        job_id = submit(fresh)
        assert fresh.get(job_id) is not None
        assert versions(fresh) == [SCHEMA_VERSION]

    def test_processes_starting_together_create_the_tables_once(
        self, store: SQLStore, request: pytest.FixtureRequest
    ) -> None:
        others = [twin(store, request) for _ in range(4)]
        errors: list[BaseException] = []
        start = threading.Barrier(len(others))

        def use(other: SQLStore) -> None:
            try:
                start.wait()
                other.counts()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=use, args=(other,)) for other in others]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        assert versions(store) == [SCHEMA_VERSION]

    def test_init_db_command(self, store: SQLStore) -> None:
        app = Flask("initdb")
        app.config.update(ASYNCENDPOINTS_WORKER=False)
        AsyncEndpoints(app, store=store)
        runner = app.test_cli_runner()

        printed = runner.invoke(cli, ["init-db", "--sql"])
        assert printed.exit_code == 0
        assert f"CREATE TABLE {store.key_prefix}_jobs" in printed.output
        created = runner.invoke(cli, ["init-db"])
        assert created.exit_code == 0, created.output
        assert f"schema version {SCHEMA_VERSION}" in created.output


# -- clock, indexes, counters --------------------------------------------------------------------------


class FrozenTime:
    """Stands in for the ``time`` module of the transactions: a process clock stuck in the year 2000."""

    frozen = 946_684_800.0

    def time(self) -> float:
        return self.frozen


def test_leases_and_stamps_follow_the_databases_clock(store: SQLStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(txn_module, "time", FrozenTime())
    job_id = store.create(new_id(), "Work", JobPayload(), max_retries=0)[0].id
    (claimed,) = store.claim(1, LEASE)
    started = claimed.job.started_at
    assert started is not None
    if store.family == "sqlite":
        # One machine: its clock is the database's.
        assert started.timestamp() == FrozenTime.frozen
    else:
        with store.engine.connect() as conn:
            server_now = float(conn.execute(store.dialect.clock()).scalar_one())
        assert abs(started.timestamp() - server_now) < 60
    assert store.get(job_id) == claimed.job


def explain(store: SQLStore, query: Any) -> str:
    compiled = query.compile(store.engine, compile_kwargs={"literal_binds": True})
    prefix = {"postgresql": "EXPLAIN ", "mysql": "EXPLAIN ", "sqlite": "EXPLAIN QUERY PLAN "}[store.family]
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + str(compiled)).fetchall()
    return "\n".join(" ".join(str(value) for value in row) for row in rows)


def test_the_claim_walks_the_ready_index(store: SQLStore) -> None:
    for n in range(200):
        store.create(new_id(), "Work", JobPayload(), max_retries=0, priority=n % 3, now=T0 + n)
    for n in range(50):
        store.create(new_id(), "Work", JobPayload(), max_retries=0, due=T0 + 10_000 + n, now=T0)
    with store.engine.begin() as conn:
        if store.family == "postgresql":
            conn.exec_driver_sql(f"ANALYZE {store.tables.jobs.name}")
            # So small a table would be read whole; what matters is that the index serves the order.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_sort = off")
        elif store.family == "mysql":
            conn.exec_driver_sql(f"ANALYZE TABLE {store.tables.jobs.name}")
    plan = explain(store, store._lifecycle.claim_query("default", 5))
    assert f"{store.key_prefix}_jobs_ready" in plan
    assert "filesort" not in plan.lower() and "TEMP B-TREE" not in plan.upper()


def test_counters_match_the_jobs_after_concurrent_work(store: SQLStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                job_id = submit(store, name=f"Name{n % 2}", now=T0 + i)
                claimed = store.claim(2, LEASE, now=T0 + i)
                for c in claimed:
                    if i % 3:
                        store.complete(c.job.id, c.token, "1", result_ttl=TTL, now=T0 + i)
                    else:
                        store.fail(c.job.id, c.token, JobError("X", "x"), retry_delay=None, result_ttl=TTL, now=T0 + i)
                if i % 5 == 0:
                    store.cancel(job_id, result_ttl=TTL, now=T0 + i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[:3]
    jobs = store.tables.jobs.c
    with store.engine.connect() as conn:
        actual = dict(conn.execute(select(jobs.status, func.count()).group_by(jobs.status)).all())
        by_name = {
            (name, status): n
            for name, status, n in conn.execute(
                select(jobs.name, jobs.status, func.count()).group_by(jobs.name, jobs.status)
            )
        }
    assert {s.value: n for s, n in store.counts().items() if n} == actual
    assert sum(actual.values()) == 100
    assert {
        (name, status.value): n for name, counts in store.counts_by_name().items() for status, n in counts.items() if n
    } == by_name


# -- wake-ups ------------------------------------------------------------------------------------------


def in_thread(target: Callable[[], Any]) -> tuple[threading.Event, list[Any]]:
    """Run ``target`` in a thread; an event set when it returns, and its answer."""
    done = threading.Event()
    answer: list[Any] = []

    def run() -> None:
        try:
            answer.append(target())
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, answer


def wakers(store: SQLStore, request: pytest.FixtureRequest) -> list[SQLStore]:
    """The stores whose writes wake ``store``'s waiters: itself, and on PostgreSQL another process's too."""
    return [store, twin(store, request)] if store.family == "postgresql" else [store]


class TestWakeUps:
    def test_a_create_wakes_a_waiting_worker(self, store: SQLStore, request: pytest.FixtureRequest) -> None:
        store.counts()  # tables made, so the wait below is the wait, not the set-up
        for writer in wakers(store, request):
            if store._listener is not None:
                assert store._listening() or store._listener.listening.wait(10)
            done, _ = in_thread(lambda: store.wait_for_work(LONG))
            assert not done.wait(0.2)  # allow-sleep: nothing is due, so it must still wait
            submit(writer)
            assert done.wait(10), "the create did not wake the waiting worker"
            store.claim(10, LEASE)

    def test_a_cancel_reaches_the_watchers(self, store: SQLStore, request: pytest.FixtureRequest) -> None:
        heard: list[str] = []
        changed = threading.Condition()

        def hear(job_id: str) -> None:
            with changed:
                heard.append(job_id)
                changed.notify_all()

        stop = store.watch_cancels(hear)
        try:
            for writer in wakers(store, request):
                if store._listener is not None:
                    assert store._listener.listening.wait(10)
                submit(store)
                job_id = claim_one(store, T0).job.id
                assert writer.cancel(job_id, result_ttl=TTL, now=T0)[0] is CancelResult.REQUESTED
                with changed:
                    assert changed.wait_for(lambda job_id=job_id: job_id in heard, 10), "the cancel went unheard"
        finally:
            stop()
        assert len(heard) == len(set(heard)), "a cancel was told twice"

    def test_a_finish_answers_the_long_poll(self, store: SQLStore, request: pytest.FixtureRequest) -> None:
        for writer in wakers(store, request):
            submit(store)
            claimed = claim_one(store, T0)
            done, answer = in_thread(lambda job_id=claimed.job.id: store.wait_for_finish(job_id, LONG))
            writer.complete(claimed.job.id, claimed.token, '"done"', result_ttl=TTL, now=T0)
            assert done.wait(10), "the long-poll did not answer when the job finished"
            assert answer[0].status is JobStatus.COMPLETED and answer[0].result == "done"


# -- outages -------------------------------------------------------------------------------------------


class Proxy:
    """A loopback TCP proxy in front of a database server that a test can cut and bring back."""

    def __init__(self, port: int) -> None:
        self.target = port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and break every open one, as a database restart does."""
        if self._server is not None:
            # Shut down first: closing alone does not stop a thread blocked in accept().
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture(params=["postgresql", "mysql"])
def proxied(request: pytest.FixtureRequest, table_prefix: str) -> Iterator[tuple[Proxy, str]]:
    from sqlalchemy.engine import make_url

    url = make_url(normalize_url(sql_url(request.param))[0])
    proxy = Proxy(url.port or (5432 if request.param == "postgresql" else 3306))
    proxy.start()
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.cut()


def test_an_outage_answers_503_and_the_worker_resumes_with_nothing_lost(
    proxied: tuple[Proxy, str], request: pytest.FixtureRequest, table_prefix: str
) -> None:
    proxy, url = proxied
    store = SQLStore.from_url(url, key_prefix=table_prefix)
    request.addfinalizer(store.close)
    request.addfinalizer(lambda: store.tables.metadata.drop_all(store.engine))
    app = Flask("outage")
    app.config.update(ASYNCENDPOINTS_POLL_INTERVAL=0.05, ASYNCENDPOINTS_MAX_CONCURRENCY=2, TESTING=True)
    ae = AsyncEndpoints(app, store=store)
    ae.handler("Echo")(lambda ctx: ctx.request)
    ae.route("/echo", "Echo", body=True)
    finished = Finished(app)
    request.addfinalizer(finished.close)
    request.addfinalizer(lambda: ae.shutdown(app, timeout=5))
    client = app.test_client()
    ae.start_worker(app)

    before = [client.post("/echo", json={"n": n}).get_json()["id"] for n in range(5)]
    for job_id in before:
        assert finished.wait(job_id) is not None

    proxy.cut()
    down = client.post("/echo", json={"n": "down"})
    assert down.status_code == 503
    assert down.mimetype == "application/problem+json"
    assert client.get(f"/jobs/{before[0]}").status_code == 503
    with pytest.raises(StoreError, match="running and reachable"):
        store.counts()

    proxy.start()
    after = [client.post("/echo", json={"n": n}).get_json()["id"] for n in range(5)]
    for job_id in after:
        job = finished.wait(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
    for job_id in before + after:
        answer = client.get(f"/jobs/{job_id}").get_json()
        assert answer["status"] == "Completed", answer
    assert store.counts()[JobStatus.COMPLETED] == 10


# -- the worker and the HTTP API on each database ------------------------------------------------------


def test_submit_run_and_poll_over_http(store: SQLStore, request: pytest.FixtureRequest) -> None:
    app = Flask("e2e")
    app.config.update(ASYNCENDPOINTS_MAX_CONCURRENCY=2, TESTING=True)
    ae = AsyncEndpoints(app, store=store)

    @ae.handler("Shout")
    def shout(ctx: Any) -> dict[str, Any]:
        ctx.report_progress(0.5, "halfway")
        return {"text": ctx.request["text"].upper(), "attempt": ctx.attempt}

    ae.route("/shout", "Shout", body=True)
    request.addfinalizer(lambda: ae.shutdown(app, timeout=5))
    client = app.test_client()
    ae.start_worker(app)

    accepted = client.post("/shout", json={"text": "héllo"}, headers={"X-Async-Request-Id": str(uuid.uuid4())})
    assert accepted.status_code == 202
    location = accepted.headers["Location"]
    answer = client.get(f"{location}?wait=10").get_json()
    assert answer["status"] == "Completed", answer
    assert answer["result"] == {"text": "HÉLLO", "attempt": 1}
    assert answer["progress"]["message"] == "halfway"
    assert client.delete(location).status_code == 409
    assert store.counts()[JobStatus.COMPLETED] == 1


def test_create_many_is_one_transaction_and_idempotent(store: SQLStore) -> None:
    ids = [new_id() for _ in range(1200)]
    first = store.create_many([NewJob(job_id, "Work", JobPayload(body=n), 0) for n, job_id in enumerate(ids)], now=T0)
    assert all(outcome is not None and outcome[1] for outcome in first)
    again = store.create_many([NewJob(ids[7], "Work", JobPayload(), 0), NewJob(new_id(), "Work", JobPayload(), 0)])
    assert again[0] is not None and not again[0][1] and again[0][0].payload.body == 7
    assert again[1] is not None and again[1][1]
    assert store.counts()[JobStatus.QUEUED] == 1201
    with store.engine.connect() as conn:
        assert conn.execute(text(f"SELECT COUNT(*) FROM {store.tables.jobs.name}")).scalar() == 1201

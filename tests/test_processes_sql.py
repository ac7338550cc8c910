"""Real processes on the SQL store: gunicorn and two worker processes on PostgreSQL and on a SQLite file.

The processes run ``tests/apps/process_app.py`` as in ``tests/test_processes.py`` (whose helpers
these tests use), with the jobs in the database and the handlers' records of every run and
completion in a Redis server of the test's own. Each test makes tables of its own (a fresh prefix)
and drops them at the end.

Skipped without ``redis-server``, gunicorn or the PostgreSQL URL, except in CI
(``ASYNCENDPOINTS_REQUIRE_REDIS`` / ``ASYNCENDPOINTS_REQUIRE_SQL``), where they fail.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, JobStatus
from flask_asyncendpoints.stores.sql import SQLStore

from .apps import process_app
from .conftest import sql_url
from .test_processes import (
    HttpRun,
    Processes,
    Records,
    RedisServer,
    assert_ran_and_completed_once,
    booted_workers,
    http_clients,
    prefix,
    records,
    redis_server,
    require_gunicorn,
    statuses,
    wait_for_status,
    wait_until,
)

pytestmark = pytest.mark.slow

__all__ = ["prefix", "records", "redis_server"]  # fixtures this module uses from test_processes

FAMILIES = ["postgresql", "sqlite"]


class SQLProcesses(Processes):
    """:class:`Processes` whose apps keep their records in the test's Redis, the jobs in SQL."""

    records_url = ""
    touch_store = False

    def env(self, redis_url: str, prefix: str, hold: bool = True, **settings: Any) -> dict[str, str]:
        env = super().env(redis_url, prefix, hold, **settings)
        env["FLASK_PROCESS_APP_RECORDS"] = self.records_url
        env["FLASK_PROCESS_APP_TOUCH_STORE"] = "true" if self.touch_store else "false"
        return env


@pytest.fixture(params=FAMILIES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Iterator[str]:
    """The database of the test, whose tables under ``prefix`` are dropped at its end."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite" else sql_url(request.param)
    yield url
    store = SQLStore.from_url(url, key_prefix=prefix)
    store.tables.metadata.drop_all(store.engine)
    store.close()


@pytest.fixture
def sql_processes(tmp_path: Path, redis_server: RedisServer) -> Iterator[SQLProcesses]:
    group = SQLProcesses(tmp_path)
    group.records_url = redis_server.url
    try:
        yield group
    finally:
        group.stop_all()
        for proc in group.started:
            print(f"--- {proc.name} (pid {proc.pid}, exit {proc.popen.returncode}) ---\n{proc.tail(60)}")


@pytest.fixture
def submitter_app(store_url: str, prefix: str, redis_server: RedisServer) -> Iterator[tuple[AsyncEndpoints, Flask]]:
    """An app in this process on the test's store: it submits jobs and runs none."""
    app = process_app.create_app(
        {
            "ASYNCENDPOINTS_STORE": store_url,
            "ASYNCENDPOINTS_KEY_PREFIX": prefix,
            "ASYNCENDPOINTS_WORKER": False,
            "PROCESS_APP_RECORDS": redis_server.url,
        }
    )
    yield process_app.ae, app
    process_app.ae.get_store(app).close()
    process_app.recorder(app).close()


def test_gunicorn_and_two_worker_processes_run_5000_jobs_exactly_once(
    store_url: str,
    prefix: str,
    sql_processes: SQLProcesses,
    records: Records,
    submitter_app: tuple[AsyncEndpoints, Flask],
) -> None:
    require_gunicorn()
    ae, app = submitter_app
    ae.get_store(app).counts()  # the tables exist before the processes start
    server, port = sql_processes.gunicorn(store_url, prefix, ["-w", "2"], WORKER=False)
    web = booted_workers(server, 2)
    workers = [
        sql_processes.worker(store_url, prefix, name=f"worker-{n}", log_level="WARNING", BATCH_SIZE=10)
        for n in range(2)
    ]
    total, over_http = 5000, 100

    # A hundred jobs submitted and polled over HTTP through both web processes, while the rest
    # arrive in bulk from this process; both worker processes claim from the one queue.
    outcome: list[HttpRun] = []
    clients = threading.Thread(
        target=lambda: outcome.append(http_clients(port, clients=4, jobs_each=over_http // 4, work=0.0)),
        name="http-clients",
    )
    clients.start()
    ids: list[str] = []
    for _ in range((total - over_http) // 100):
        ids += [job.id for job in ae.submit_many("Noop", [None] * 100, app=app) if job is not None]
    clients.join(240)
    (run,) = outcome
    assert not run.problems, run.problems[:5]
    assert {(method, status) for method, status, _ in run.responses} == {("POST", 202), ("GET", 200)}
    assert {pid for _, _, pid in run.responses} == web
    ids += run.job_ids
    assert len(ids) == total

    wait_until(lambda: records.completion_count() >= total, 240, f"{total} completions")
    assert statuses(ae, app) == {JobStatus.COMPLETED: total}
    runs, completions = records.runs(), records.completions()
    assert set(runs) == set(ids)
    assert_ran_and_completed_once(runs, completions, ids)
    assert {r.pid for job_runs in runs.values() for r in job_runs} == {w.pid for w in workers}
    store = ae.get_store(app)
    for job_id in ids[:: total // 50]:
        job = store.get(job_id)
        assert job is not None and job.retry_count == 0
        assert job.result == {"pid": runs[job_id][0].pid, "run": runs[job_id][0].run}


def test_a_job_whose_worker_is_killed_completes_in_the_other_process_after_the_lease(
    store_url: str,
    prefix: str,
    sql_processes: SQLProcesses,
    records: Records,
    submitter_app: tuple[AsyncEndpoints, Flask],
) -> None:
    ae, app = submitter_app
    ae.get_store(app).counts()
    workers = {w.pid: w for w in (sql_processes.worker(store_url, prefix, name=f"worker-{n}") for n in range(2))}
    job_id = ae.submit("Hold", {"hold": [1]}, app=app).id  # only the first attempt waits
    started = records.event(event="started", job=job_id, attempt=1)
    victim = workers.pop(started["pid"])
    (survivor,) = workers.values()

    killed_at = time.time()
    victim.signal(signal.SIGKILL)
    victim.popen.wait(10)

    job = wait_for_status(ae, app, job_id, JobStatus.COMPLETED, 30)
    assert job.retry_count == 1
    runs = records.runs()[job_id]
    assert [(r.pid, r.attempt) for r in runs] == [(victim.pid, 1), (survivor.pid, 2)]
    # The job waited for the dead worker's lease (2 s) to run out rather than being taken early.
    assert runs[1].at - killed_at > 1.0
    survivor.wait_for(rf"recovered job {job_id} \(Hold\) after its lease expired")
    assert job.result == {"pid": survivor.pid, "run": runs[1].run}
    assert [a.outcome.value for a in ae.get_store(app).attempts(job_id)] == ["LeaseExpired", "Completed"]
    assert statuses(ae, app) == {JobStatus.COMPLETED: 1}


@pytest.mark.parametrize("gunicorn_args", [["-w", "2", "--preload"]], ids=["preload"])
def test_preloaded_gunicorn_workers_run_jobs_on_connections_of_their_own(
    gunicorn_args: list[str],
    store_url: str,
    prefix: str,
    sql_processes: SQLProcesses,
    records: Records,
    submitter_app: tuple[AsyncEndpoints, Flask],
) -> None:
    # With --preload the app is made in gunicorn's master, which here uses the store (a pooled
    # connection, on PostgreSQL a listener) before it forks: each worker must open connections of its
    # own rather than share the master's, and start its own listener.
    require_gunicorn()
    ae, app = submitter_app
    ae.get_store(app).counts()
    sql_processes.touch_store = True
    server, port = sql_processes.gunicorn(store_url, prefix, gunicorn_args)
    web = booted_workers(server, 2)

    run = http_clients(port, clients=4, jobs_each=10)

    assert not run.problems, run.problems[:5]
    assert {pid for _, _, pid in run.responses} == web
    assert statuses(ae, app) == {JobStatus.COMPLETED: len(run.job_ids)}
    wait_until(lambda: records.completion_count() >= len(run.job_ids), 10, "every completion record")
    runs = records.runs()
    assert_ran_and_completed_once(runs, records.completions(), run.job_ids)
    assert {r.pid for job_runs in runs.values() for r in job_runs} <= web

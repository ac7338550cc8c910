"""Real worker processes sharing a store: named queues in priority order, a recurring job enqueued once.

Each test starts its own ``flask … asyncendpoints worker`` processes running
``tests/apps/scaleout_app.py`` (``process_app``'s app with handlers in the queues ``high`` and
``default``), on the shared Redis (``ASYNCENDPOINTS_TEST_REDIS_URL``, under the test's key prefix)
and on a SQLite file; the handlers' records of every run and completion go to that Redis in either
case. Readiness is a line a process prints, and the end of the work the records polled against a
deadline, never a fixed sleep. At the end each test stops the processes it started, and every key
it wrote is deleted.
"""

from __future__ import annotations

import itertools
import math
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, Job, JobStatus
from flask_asyncendpoints.schedules import Schedule

from .apps import scaleout_app
from .apps.common import recorder
from .conftest import _delete_prefix
from .test_processes import (
    Proc,
    Processes,
    Records,
    assert_ran_and_completed_once,
    processes,
    statuses,
    wait_until,
)

pytestmark = pytest.mark.slow

__all__ = ["processes"]  # a fixture this module uses from test_processes

APP = "tests.apps.scaleout_app"
STORES = ["redis", "sqlite"]

#: Every process's settings: a lease far longer than any stall of a loaded machine (no job here
#: may run twice), one job per claim, so that each claim is a new look at every queue, and time
#: for a running job to finish at a stop.
SETTINGS: dict[str, Any] = {"CLAIM_TIMEOUT": 60, "BATCH_SIZE": 1, "SHUTDOWN_TIMEOUT": 10}


@dataclass
class Deployment:
    """The store the test's processes share, and the Redis their handlers record to."""

    kind: str
    store_url: str
    prefix: str
    redis_url: str
    records: Records


@pytest.fixture(params=STORES)
def deployment(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str, table_prefix: str, tmp_path: Path
) -> Iterator[Deployment]:
    client = redis.Redis.from_url(redis_url)
    if request.param == "redis":
        store_url, prefix = redis_url, key_prefix
    else:
        store_url, prefix = f"sqlite:///{tmp_path / 'jobs.db'}", table_prefix  # no hyphen in a table name
    try:
        yield Deployment(request.param, store_url, prefix, redis_url, Records(client, prefix))
    finally:
        _delete_prefix(client, prefix)
        for key in client.scan_iter(match=f"{Records(client, prefix).base}:*"):
            client.delete(key)
        client.close()


class Workers:
    """Starts the test's worker processes on its deployment."""

    def __init__(self, deployment: Deployment, processes: Processes) -> None:
        self.deployment = deployment
        self.processes = processes

    def start(self, name: str, *args: str, hold: bool = False, **settings: Any) -> Proc:
        """``flask --app tests.apps.scaleout_app asyncendpoints worker ARGS``, running when this returns.

        :param hold: hold the first job the process runs until the test opens its gate.
        """
        deployment = self.deployment
        env = self.processes.env(deployment.store_url, deployment.prefix, hold=hold, **{**SETTINGS, **settings})
        env["FLASK_PROCESS_APP_RECORDS"] = deployment.redis_url
        command = [sys.executable, "-m", "flask", "--app", APP, "asyncendpoints", "worker", "--log-level", "WARNING"]
        proc = self.processes.start(name, [*command, *args], env)
        proc.wait_for(r"^worker \S+ running \d+ thread", 60)
        return proc


@pytest.fixture
def workers(deployment: Deployment, processes: Processes) -> Workers:
    # ``deployment`` is set up before ``processes``, so the processes are stopped before its keys are deleted.
    return Workers(deployment, processes)


def submitter(deployment: Deployment, **config: Any) -> tuple[AsyncEndpoints, Flask]:
    """An app in this process on the deployment's store: it submits jobs and runs none."""
    app = scaleout_app.create_app(
        {
            "ASYNCENDPOINTS_STORE": deployment.store_url,
            "ASYNCENDPOINTS_KEY_PREFIX": deployment.prefix,
            "ASYNCENDPOINTS_WORKER": False,
            "PROCESS_APP_RECORDS": deployment.redis_url,
            **config,
        }
    )
    ae = scaleout_app.ae
    ae.get_store(app).counts()  # the SQL tables exist before the processes start
    return ae, app


def close(ae: AsyncEndpoints, app: Flask) -> None:
    ae.get_store(app).close()
    recorder(app).close()


def stop(proc: Proc) -> None:
    proc.signal(signal.SIGTERM)
    assert proc.popen.wait(30) == 0, proc.tail()


# -- named queues and priorities ------------------------------------------------------------------------

#: The queue lists of the two processes, and the handler of each queue.
BOTH, DEFAULT_ONLY = ("high", "default"), ("default",)
HANDLERS = {"high": "High", "default": "Default"}


def test_two_worker_processes_on_different_queue_lists_drain_a_mixed_load_in_priority_order(
    deployment: Deployment, workers: Workers
) -> None:
    ae, app = submitter(deployment)
    records = deployment.records
    try:
        rng = random.Random(13)
        total = 300
        #: job id -> (queue, priority, the order it was created in)
        load: dict[str, tuple[str, int, int]] = {}
        for n in range(total):
            # A third in ``high``: the process that serves both is through it while ``default`` still
            # has jobs to share.
            queue, priority = rng.choice(["high", "default", "default"]), rng.randint(1, 5)
            job = ae.submit(HANDLERS[queue], {"n": n}, priority=priority, app=app)
            load[job.id] = (queue, priority, n)
        assert statuses(ae, app) == {JobStatus.QUEUED: total}

        # Started after the load is queued, with one thread each: each process's start order is its
        # claim order. Each holds its first job until both run, so that both drain the load.
        both, default_only = (
            workers.start(name, "--queues", ",".join(plan), "--concurrency", "1", hold=True)
            for name, plan in [("high-and-default", BOTH), ("default-only", DEFAULT_ONLY)]
        )
        for proc in (both, default_only):
            records.open_gate(records.event(60, event="started", pid=proc.pid)["job"])
        wait_until(lambda: records.completion_count() >= total, 180, f"{total} completions")
        assert statuses(ae, app) == {JobStatus.COMPLETED: total}
    finally:
        close(ae, app)

    runs = records.runs()
    assert set(runs) == set(load)
    assert_ran_and_completed_once(runs, records.completions(), list(load))
    started: dict[int, list[tuple[int, str]]] = {}
    for job_id, (run,) in runs.items():
        started.setdefault(run.pid, []).append((run.seq, job_id))
    assert set(started) <= {both.pid, default_only.pid}
    plans = {both.pid: BOTH, default_only.pid: DEFAULT_ONLY}
    for pid, starts in started.items():
        plan = plans[pid]
        queues = [load[job_id][0] for _, job_id in sorted(starts)]
        assert set(queues) <= set(plan), f"process {pid} on {plan} ran jobs of {set(queues)}"
        # Strict queue order, then higher priority first, then first created first: the order of the
        # keys never goes back.
        order = [(plan.index(load[job_id][0]), -load[job_id][1], load[job_id][2]) for _, job_id in sorted(starts)]
        backwards = [(a, b) for a, b in itertools.pairwise(order) if b < a]
        assert not backwards, f"process {pid} on {plan}: {len(backwards)} start(s) out of order, e.g. {backwards[:3]}"
    assert all(runs[job_id][0].pid == both.pid for job_id, (queue, _, _) in load.items() if queue == "high")
    stop(both)
    stop(default_only)


# -- a recurring job ---------------------------------------------------------------------------------------

#: Every second (the first of six fields is the seconds).
TICK = {"name": "tick", "cron": "* * * * * *", "job_name": "Tick"}
#: Occurrences to see completed while all three processes run.
OCCURRENCES = 5


class Occurrences:
    """Tells which occurrence of the schedule a job is for, from its id (a UUID 5 of the schedule's
    name and the occurrence, the same in every process)."""

    def __init__(self, schedule: Schedule, since: float) -> None:
        self.schedule = schedule
        #: The job id of each occurrence from ``since`` up to ``_until`` (excluded), epoch seconds.
        self._seconds: dict[str, int] = {}
        self._until = math.floor(since)

    def of(self, job_id: str) -> int | None:
        """The occurrence (epoch seconds) that ``job_id`` is the job of, if any from ``since`` to now."""
        now = math.floor(time.time())
        for second in range(self._until, now + 1):
            self._seconds[self.schedule.occurrence_id(second)] = second
        self._until = max(self._until, now + 1)
        return self._seconds.get(job_id)


def every_job(ae: AsyncEndpoints, app: Flask) -> list[Job]:
    store = ae.get_store(app)
    jobs: list[Job] = []
    for status in JobStatus:
        cursor: str | None = None
        while True:
            page = store.list_jobs(status, cursor=cursor, limit=100)
            jobs += page.jobs
            cursor = page.cursor
            if cursor is None:
                break
    return jobs


def test_a_recurring_job_is_enqueued_once_per_occurrence_by_three_worker_processes(
    deployment: Deployment, workers: Workers
) -> None:
    schedules = [TICK]
    ae, app = submitter(deployment, ASYNCENDPOINTS_SCHEDULES=schedules)
    try:
        # Every occurrence from here on (a worker that starts enqueues the latest one, a second old
        # at most, when nobody has).
        occurrences = Occurrences(Schedule.from_config(TICK), time.time() - 2)
        submitted = deployment.records.client
        submitted_key = f"{deployment.records.base}:submitted"

        def created() -> dict[str, list[int]]:
            """The pids that created each job, by job id."""
            found: dict[str, list[int]] = {}
            for key, pid in submitted.hgetall(submitted_key).items():
                found.setdefault(key.decode().partition("/")[0], []).append(int(pid))
            return found

        procs = [workers.start(f"worker-{n}", SCHEDULES=schedules) for n in range(3)]
        all_running = math.ceil(time.time())

        def done_while_all_run() -> bool:
            seconds = [occurrences.of(job_id) for job_id in deployment.records.completions()]
            return sum(1 for s in seconds if s is not None and s >= all_running) >= OCCURRENCES

        wait_until(done_while_all_run, 60, f"{OCCURRENCES} occurrences completed while three workers run")
        for proc in procs:
            stop(proc)

        jobs = every_job(ae, app)
        creators = created()
        last_claimed = ae.get_store(app).occurrences()[TICK["name"]]
    finally:
        close(ae, app)

    # Each job is the job of one occurrence, created once, by one of the worker processes.
    by_job = {job.id: occurrences.of(job.id) for job in jobs}
    assert None not in by_job.values(), [job for job in jobs if by_job[job.id] is None]
    assert {job.name for job in jobs} == {"Tick"}
    assert set(creators) == set(by_job)
    assert all(len(pids) == 1 for pids in creators.values()), {j: p for j, p in creators.items() if len(p) > 1}
    assert {pid for (pid,) in creators.values()} <= {proc.pid for proc in procs}
    # One job per occurrence, and no occurrence missed between the first and the last.
    seconds = sorted(second for second in by_job.values() if second is not None)
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), seconds
    assert last_claimed == seconds[-1]  # the store's claim of the last occurrence, whose job was created
    assert len([s for s in seconds if s >= all_running]) >= OCCURRENCES
    # Each completed job ran once; the last ones may have been left queued at the stop.
    runs = deployment.records.runs()
    completed = {job.id for job in jobs if job.status is JobStatus.COMPLETED}
    assert len(completed) >= OCCURRENCES
    assert {job.status for job in jobs} <= {JobStatus.COMPLETED, JobStatus.QUEUED}
    assert_ran_and_completed_once(runs, deployment.records.completions(), sorted(completed))

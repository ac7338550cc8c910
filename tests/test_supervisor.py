"""``flask asyncendpoints worker --processes N``: the supervisor and its worker processes.

The process tests start a real ``redis-server`` and a real supervisor running
``tests/apps/process_app.py``, as ``tests/test_processes.py`` does (and with its helpers): readiness is
a line a process prints, or Redis polled against a deadline, never a fixed sleep. At the end each
test stops exactly the processes it started.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from flask import Flask
from flask.cli import FlaskGroup, ScriptInfo

from flask_asyncendpoints import AsyncEndpoints, JobStatus
from flask_asyncendpoints.cli import cli
from flask_asyncendpoints.stores import MemoryStore
from flask_asyncendpoints.supervisor import (
    CRASH_LIMIT,
    EXIT_CRASHING,
    MAX_RESTART_DELAY,
    RESTART_DELAY,
    STOP_GRACE,
    CrashHistory,
    child_command,
    describe_exit,
)

from .apps import process_app
from .test_processes import (
    APP,
    Proc,
    Processes,
    Records,
    RedisServer,
    assert_ran_and_completed_once,
    get_job,
    require,
    statuses,
    wait_for_status,
    wait_until,
)
from .test_worker import Gate, submit

# -- without processes -----------------------------------------------------------------------------


def test_a_crash_waits_longer_each_time_the_same_process_crashes() -> None:
    crashes = CrashHistory(limit=10, window=60)
    assert crashes.record(1, now=100.0) == RESTART_DELAY
    assert crashes.record(1, now=101.0) == RESTART_DELAY * 2
    assert crashes.record(1, now=102.0) == RESTART_DELAY * 4
    # Another process's first crash starts from the shortest delay.
    assert crashes.record(2, now=103.0) == RESTART_DELAY
    # Crashes older than the window are forgotten.
    assert crashes.record(1, now=161.5) == RESTART_DELAY * 2
    assert len(crashes) == 3  # 102.0, 103.0 and 161.5


def test_the_restart_delay_is_capped() -> None:
    crashes = CrashHistory(limit=100, window=3600)
    delays = [crashes.record(1, now=float(n)) for n in range(20)]
    assert delays[-1] == MAX_RESTART_DELAY
    assert delays == sorted(delays)


def test_one_crash_more_than_the_limit_within_the_window_gives_up() -> None:
    crashes = CrashHistory(limit=3, window=10)
    assert all(crashes.record(n % 2, now=float(n)) is not None for n in range(3))
    assert crashes.record(1, now=9.0) is None
    # Spread out over more than the window, the same number of crashes is no reason to give up.
    spread = CrashHistory(limit=3, window=10)
    assert all(spread.record(1, now=float(n * 4)) is not None for n in range(10))


def test_exits_are_described_with_the_signal_name() -> None:
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


def worker_context(info: ScriptInfo, args: list[str]) -> click.Context:
    """The ``worker`` command's context as ``flask … asyncendpoints worker ARGS`` makes it."""
    root = click.Context(FlaskGroup(), info_name="flask", obj=info)
    group = click.Context(cli, info_name="asyncendpoints", parent=root)
    command = cli.get_command(group, "worker")
    assert command is not None
    return command.make_context("worker", args, parent=group)


def test_each_worker_process_runs_the_same_app_and_options_again() -> None:
    args = ["--processes", "3", "--concurrency=4", "--queues", "high:5,default:1", "--log-level", "DEBUG"]
    args += ["--health-file", "/tmp/w.alive"]
    ctx = worker_context(ScriptInfo(app_import_path="example_app:create_app()"), list(args))
    assert child_command(ctx) == [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "example_app:create_app()",
        "asyncendpoints",
        "worker",
        *args,
    ]
    # An app Flask finds by itself (app.py, wsgi.py) is found the same way again.
    assert child_command(worker_context(ScriptInfo(), ["--processes", "2"]))[3:] == [
        "asyncendpoints",
        "worker",
        "--processes",
        "2",
    ]


def test_an_app_made_by_a_custom_cli_cannot_be_run_again() -> None:
    ctx = worker_context(ScriptInfo(create_app=lambda: Flask("custom")), ["--processes", "2"])
    with pytest.raises(click.UsageError, match="--app or FLASK_APP"):
        child_command(ctx)


def test_processes_need_a_shared_store(app: Flask) -> None:
    result = app.test_cli_runner().invoke(cli, ["worker", "--processes", "2"])
    assert result.exit_code == 2
    assert "memory store each process would see only its own jobs" in result.output


def test_a_queue_plan_the_worker_processes_would_refuse_is_refused_before_they_start(app: Flask) -> None:
    result = app.test_cli_runner().invoke(cli, ["worker", "--processes", "2", "--queues", "high:fast"])
    assert result.exit_code == 2
    assert "--queues" in result.output
    assert "memory store" not in result.output  # refused before the supervisor is considered


def test_processes_and_burst_do_not_go_together(app: Flask) -> None:
    result = app.test_cli_runner().invoke(cli, ["worker", "--processes", "2", "--burst"])
    assert result.exit_code == 2
    assert "--burst runs in one process" in result.output


def test_stop_waiting_cuts_a_graceful_shutdown_short(ae: AsyncEndpoints, app: Flask, memory_store: MemoryStore) -> None:
    gate = Gate(ae, "Stuck", result="too late", strict=False)
    job_id = submit(ae, app, "Stuck")
    worker = ae.start_worker(app)
    assert gate.running.wait(10)
    stopper = threading.Thread(target=worker.shutdown, kwargs={"timeout": 120})
    stopper.start()
    try:
        worker.stop_waiting()
        stopper.join(10)
        assert not stopper.is_alive(), "shutdown still waits for the running job"
        job = memory_store.get(job_id)
        assert job is not None
        assert job.status is JobStatus.QUEUED
        assert job.retry_count == 0
    finally:
        gate.proceed.set()
        stopper.join()


# -- real processes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require(shutil.which("redis-server") is not None, "redis-server (on PATH)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.client.close()
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"s{os.urandom(5).hex()}"


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    group = Processes(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        for proc in group.started:
            kill_orphans(proc)
            print(f"--- {proc.name} (pid {proc.pid}, exit {proc.popen.returncode}) ---\n{proc.tail(80)}")


def kill_orphans(supervisor: Proc) -> None:
    """Kill the worker processes a supervisor left behind (only when it was killed itself, in a failed test)."""
    for line in supervisor.lines:
        match = re.search(r"worker process \d+ started: pid (\d+)", line)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone (or no /proc: nothing to check it against, so leave it)
        if APP.encode() in cmdline:  # still that worker process, not a new process with its pid
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def records(redis_server: RedisServer, prefix: str) -> Records:
    return Records(redis_server.client, prefix)


@pytest.fixture
def submitter(redis_server: RedisServer, prefix: str) -> Iterator[tuple[AsyncEndpoints, Flask]]:
    """An app in this process on the test's store and prefix, that submits jobs and runs none."""
    app = process_app.create_app(
        {"ASYNCENDPOINTS_STORE": redis_server.url, "ASYNCENDPOINTS_KEY_PREFIX": prefix, "ASYNCENDPOINTS_WORKER": False}
    )
    yield process_app.ae, app
    process_app.ae.get_store(app).close()
    process_app.recorder(app).close()


#: A child's line once its worker runs: its worker id (hostname:pid:…), its number, its supervisor.
CHILD_RUNNING = (
    r"^worker [^\s:]+:(\d+):\S+ running \d+ thread\(s\) on queues \S+ as worker process (\d+) of supervisor (\d+)$"
)


class Supervised:
    """A started supervisor, and which pid runs each of its worker processes."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def running(self, count: int, timeout: float = 30.0) -> dict[int, int]:
        """Wait until ``count`` children have reported running; worker process number -> pid, the latest."""
        children: dict[int, int] = {}
        for match in self.proc.wait_for(CHILD_RUNNING, timeout, count=count):
            assert int(match.group(3)) == self.proc.pid
            children[int(match.group(2))] = int(match.group(1))
        return children

    def exit_code(self, timeout: float) -> int:
        return self.proc.popen.wait(timeout)


def supervise(
    processes: Processes,
    redis_server: RedisServer,
    prefix: str,
    count: int,
    *args: str,
    app_env: dict[str, str] | None = None,
    **settings: Any,
) -> Supervised:
    """``flask --app tests.apps.process_app asyncendpoints worker --processes COUNT --concurrency 2 ARGS``.

    :param app_env: more variables for the test app (``FLASK_PROCESS_APP_…``).
    :param settings: ``ASYNCENDPOINTS_*`` keys without the prefix, over those of ``test_processes.FAST``.
    """
    command = [sys.executable, "-m", "flask", "--app", APP, "asyncendpoints", "worker"]
    command += ["--processes", str(count), "--concurrency", "2", *args]
    env = {**processes.env(redis_server.url, prefix, **settings), **(app_env or {})}
    return Supervised(processes.start("supervisor", command, env))


def child_stop_lines(proc: Proc, count: int) -> list[int]:
    """How many jobs each of ``count`` stopping workers gave back, from their last log lines."""
    matches = proc.wait_for(r"worker \S+ stopped; (\d+) unfinished job\(s\) released", 30, count=count)
    return [int(m.group(1)) for m in matches]


def hold_every_thread(ae: AsyncEndpoints, app: Flask, records: Records, threads: int) -> list[str]:
    """Start one ``Hold`` job per worker thread; their ids once every one runs.

    One at a time: a process whose threads are all busy has none waiting for work, so the next job
    goes to a process with a free thread rather than into a busy one's claimed-ahead buffer.
    """
    ids = []
    for _ in range(threads):
        ids.append(ae.submit("Hold", app=app).id)
        records.event(event="started", job=ids[-1])
    return ids


@pytest.mark.slow
def test_jobs_run_exactly_once_across_the_worker_processes(
    redis_server: RedisServer,
    prefix: str,
    processes: Processes,
    records: Records,
    submitter: tuple[AsyncEndpoints, Flask],
) -> None:
    ae, app = submitter
    supervisor = supervise(processes, redis_server, prefix, 3)
    children = supervisor.running(3)
    assert set(children) == {1, 2, 3}
    total = 600

    ids = [ae.submit("Work", {"seconds": 0.005}, app=app).id for _ in range(total)]

    wait_until(lambda: records.completion_count() >= total, 60, f"{total} completions")
    assert statuses(ae, app) == {JobStatus.COMPLETED: total}
    runs = records.runs()
    assert_ran_and_completed_once(runs, records.completions(), ids)
    # Every worker process took part; the supervisor ran none.
    assert {run.pid for job_runs in runs.values() for run in job_runs} == set(children.values())

    supervisor.proc.signal(signal.SIGTERM)
    assert supervisor.exit_code(30) == 0
    for number, pid in children.items():
        supervisor.proc.wait_for(rf"worker process {number} \(pid {pid}\) stopped$")


@pytest.mark.slow
def test_a_killed_worker_process_is_replaced_and_its_job_recovered_after_the_lease(
    redis_server: RedisServer,
    prefix: str,
    processes: Processes,
    records: Records,
    submitter: tuple[AsyncEndpoints, Flask],
) -> None:
    ae, app = submitter
    supervisor = supervise(processes, redis_server, prefix, 2)
    children = supervisor.running(2)
    job_id = ae.submit("Hold", {"hold": [1]}, app=app).id  # only the first attempt waits
    victim = records.event(event="started", job=job_id, attempt=1)["pid"]
    (number,) = [n for n, pid in children.items() if pid == victim]

    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)

    supervisor.proc.wait_for(rf"worker process {number} \(pid {victim}\) was killed by SIGKILL; starting it again")
    started = supervisor.proc.wait_for(rf"worker process {number} started: pid (\d+)", count=2)
    replacement = int(started[1].group(1))
    assert replacement != victim
    assert supervisor.running(3)[number] == replacement

    job = wait_for_status(ae, app, job_id, JobStatus.COMPLETED, 20)
    assert job.retry_count == 1
    job_runs = records.runs()[job_id]
    survivors = {pid for n, pid in children.items() if n != number} | {replacement}
    assert [(r.pid, r.attempt) for r in job_runs] == [(victim, 1), (job_runs[1].pid, 2)]
    assert job_runs[1].pid in survivors
    # It waited for the dead process's lease (CLAIM_TIMEOUT 2 s) to run out.
    assert job_runs[1].at - killed_at > 1.0
    assert job.result == {"pid": job_runs[1].pid, "run": job_runs[1].run}
    assert supervisor.proc.alive()

    supervisor.proc.signal(signal.SIGTERM)
    assert supervisor.exit_code(30) == 0


@pytest.mark.slow
def test_sigterm_stops_every_worker_process_gracefully_and_gives_their_jobs_back(
    redis_server: RedisServer,
    prefix: str,
    processes: Processes,
    records: Records,
    submitter: tuple[AsyncEndpoints, Flask],
    tmp_path: Path,
) -> None:
    shutdown_timeout = 2.0
    health_file = tmp_path / "worker.alive"
    ae, app = submitter
    # A 30 s lease: a job Queued again within seconds was given back, not recovered.
    supervisor = supervise(
        processes,
        redis_server,
        prefix,
        2,
        "--health-file",
        str(health_file),
        CLAIM_TIMEOUT=30,
        SHUTDOWN_TIMEOUT=shutdown_timeout,
    )
    supervisor.running(2)
    wait_until(health_file.exists, 10, "the supervisor to touch its health file")
    ids = hold_every_thread(ae, app, records, 4)

    signalled = time.monotonic()
    supervisor.proc.signal(signal.SIGTERM)

    assert supervisor.exit_code(shutdown_timeout + STOP_GRACE + 10) == 0
    took = time.monotonic() - signalled
    # Running jobs were given SHUTDOWN_TIMEOUT to finish; nobody was killed at the end of it.
    assert shutdown_timeout - 0.5 < took < shutdown_timeout + STOP_GRACE
    assert child_stop_lines(supervisor.proc, 2) == [2, 2]
    assert not any("killed" in line for line in supervisor.proc.lines), supervisor.proc.tail()
    assert statuses(ae, app) == {JobStatus.QUEUED: 4}
    assert all(get_job(ae, app, job_id).retry_count == 0 for job_id in ids)
    assert not health_file.exists()


@pytest.mark.slow
def test_a_second_sigint_has_the_worker_processes_give_running_jobs_back_at_once(
    redis_server: RedisServer,
    prefix: str,
    processes: Processes,
    records: Records,
    submitter: tuple[AsyncEndpoints, Flask],
) -> None:
    ae, app = submitter
    supervisor = supervise(processes, redis_server, prefix, 2, CLAIM_TIMEOUT=30, SHUTDOWN_TIMEOUT=120)
    supervisor.running(2)
    ids = hold_every_thread(ae, app, records, 4)

    supervisor.proc.signal(signal.SIGINT)
    supervisor.proc.wait_for(r"\(SIGINT received\): stopping 2 worker process")
    supervisor.proc.wait_for("stopping: waiting for running jobs")
    signalled = time.monotonic()
    supervisor.proc.signal(signal.SIGINT)

    assert supervisor.exit_code(STOP_GRACE + 10) == 0
    assert time.monotonic() - signalled < STOP_GRACE
    supervisor.proc.wait_for("stopping now: giving back the running jobs")
    assert child_stop_lines(supervisor.proc, 2) == [2, 2]
    assert statuses(ae, app) == {JobStatus.QUEUED: 4}
    assert all(get_job(ae, app, job_id).retry_count == 0 for job_id in ids)


@pytest.mark.slow
def test_worker_processes_that_keep_crashing_at_start_make_the_supervisor_give_up(
    redis_server: RedisServer, prefix: str, processes: Processes
) -> None:
    supervisor = supervise(processes, redis_server, prefix, 2, app_env={"FLASK_PROCESS_APP_CRASH_IN_CHILD": "true"})

    assert supervisor.exit_code(60) == EXIT_CRASHING
    supervisor.proc.wait_for("fails at start, as FLASK_PROCESS_APP_CRASH_IN_CHILD asks")
    starts = [line for line in supervisor.proc.lines if re.search(r"worker process \d started: pid", line)]
    assert len(starts) > CRASH_LIMIT
    supervisor.proc.wait_for(rf"^Error: worker processes crashed {CRASH_LIMIT + 1} times within 60 s")
    assert not any(re.search(CHILD_RUNNING, line) for line in supervisor.proc.lines)

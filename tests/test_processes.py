"""Real processes on real Redis servers: worker processes, gunicorn, kill -9, SIGSTOP, SIGTERM, a Redis restart.

Every test here starts its own ``redis-server`` (on a free loopback port, with an append-only file
fsynced on every write, in a temporary directory) and its own ``flask … asyncendpoints worker`` and
``gunicorn`` processes running ``tests/apps/process_app.py``; at the end it stops exactly the
processes it started. Readiness is a line a process prints or a Redis/HTTP condition polled against
a deadline, never a fixed sleep.

The app's handlers record every execution and every accepted completion in Redis (see
``process_app``), so the tests count exactly how often each job ran and completed.

Without ``redis-server`` or gunicorn these tests are skipped, except where
``ASYNCENDPOINTS_REQUIRE_REDIS`` is set (CI): there they fail.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, JobStatus, StoreError
from flask_asyncendpoints.jobs import Job
from flask_asyncendpoints.stores.redis.keys import NAMES, WAKE, Layout, scan_patterns

from .apps import process_app
from .conftest import REQUIRE_REDIS_ENV
from .ports import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
APP = "tests.apps.process_app"
GUNICORN_CONF = REPO / "tests" / "apps" / "gunicorn_conf.py"

#: Settings every process gets unless a test says otherwise: short leases and intervals, so crash
#: recovery takes seconds.
FAST: dict[str, Any] = {
    "POLL_INTERVAL": 0.2,
    "CLAIM_TIMEOUT": 2,
    "RECOVERY_INTERVAL": 0.5,
    "RETRY_DELAY_BASE": 0.05,
    "RETRY_MAX_DELAY": 0.5,
    "MAX_CONCURRENCY": 2,
    "SHUTDOWN_TIMEOUT": 1,
}

#: Interval of the loops that poll another process's state (in Redis or over HTTP) until a deadline.
POLL = 0.05


def require(available: bool, what: str) -> None:
    """Skip without ``what``; fail instead in CI, where every test must run."""
    if available:
        return
    if os.environ.get(REQUIRE_REDIS_ENV):
        pytest.fail(f"{what} is required ({REQUIRE_REDIS_ENV} is set)")
    pytest.skip(f"{what} is not available")


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` (a look at another process's state) until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)  # allow-sleep: polls the state of other processes, with a deadline


# -- processes -----------------------------------------------------------------------------------------


class Proc:
    """A started subprocess whose output (stdout and stderr) is collected line by line."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self.popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.pid = self.popen.pid
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.log.open("w", encoding="utf-8") as out:
            for line in self.popen.stdout:
                out.write(line)
                out.flush()
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30.0, *, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``count`` output lines match ``pattern``; their matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout

        def found() -> list[re.Match[str]]:
            return [m for m in (regex.search(line) for line in self.lines) if m]

        with self._cond:
            while len(matches := found()) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise AssertionError(
                        f"{self.name} (pid {self.pid}) printed no {count} line(s) matching {pattern!r} "
                        f"({'it exited' if self._closed else f'within {timeout} s'}); it printed:\n{self.tail()}"
                    )
                self._cond.wait(remaining)
            return matches[:count]

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (after SIGCONT, in case it is stopped), then SIGKILL if it does not exit in time."""
        if self.alive():
            self.popen.send_signal(signal.SIGCONT)
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._reader.join(5)


class RedisServer:
    """A ``redis-server`` of this test's own, persisting every write (``appendfsync always``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(port=self.port, socket_timeout=10)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            # No --daemonize: the process started here is the server, so stopping it stops exactly it.
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"redis-server exited with {proc.returncode}:\n{log}")
            try:
                return bool(self.client.ping())
            except (redis.ConnectionError, redis.BusyLoadingError):
                return False

        wait_until(answers, 20, f"redis-server on port {self.port} to answer PING")

    def stop(self) -> None:
        """SIGTERM: with an append-only file, Redis writes everything down before it exits."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis server for the module; each test keeps to a key prefix of its own."""
    require(shutil.which("redis-server") is not None, "redis-server (on PATH)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.client.close()
    server.stop()


@pytest.fixture
def prefix() -> str:
    # Starts with a letter, so from_prefixed_env() cannot read it as a JSON number.
    return f"p{uuid.uuid4().hex[:10]}"


class Processes:
    """The subprocesses of one test; all stopped at its end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Proc] = []

    def env(self, redis_url: str, prefix: str, hold: bool = True, **settings: Any) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("FLASK_")}
        env["PYTHONUNBUFFERED"] = "1"
        env["FLASK_PROCESS_APP_HOLD"] = json.dumps(hold)
        env["FLASK_ASYNCENDPOINTS_STORE"] = redis_url
        env["FLASK_ASYNCENDPOINTS_KEY_PREFIX"] = prefix
        for key, value in {**FAST, **settings}.items():
            env[f"FLASK_ASYNCENDPOINTS_{key}"] = json.dumps(value)
        return env

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(name, args, env, self.directory / f"{name}-{len(self.started)}.log")
        self.started.append(proc)
        return proc

    def worker(
        self,
        redis_url: str,
        prefix: str,
        *,
        name: str = "worker",
        hold: bool = True,
        log_level: str = "INFO",
        **settings: Any,
    ) -> Proc:
        """``flask --app tests.apps.process_app asyncendpoints worker``, running when this returns."""
        proc = self.start(
            name,
            [sys.executable, "-m", "flask", "--app", APP, "asyncendpoints", "worker", "--log-level", log_level],
            self.env(redis_url, prefix, hold, **settings),
        )
        proc.wait_for(r"^worker \S+ running \d+ thread")
        return proc

    def gunicorn(
        self, redis_url: str, prefix: str, args: list[str], *, hold: bool = True, **settings: Any
    ) -> tuple[Proc, int]:
        """gunicorn serving the app; returns it and its port once it listens."""
        port = free_port()
        proc = self.start(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(GUNICORN_CONF),
                "--bind",
                f"127.0.0.1:{port}",
                *args,
                f"{APP}:app",
            ],
            self.env(redis_url, prefix, hold, **settings),
        )
        proc.wait_for(r"Listening at: http://127\.0\.0\.1:")
        return proc, port

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    group = Processes(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        for proc in group.started:
            # Shown by pytest only when the test failed.
            print(f"--- {proc.name} (pid {proc.pid}, exit {proc.popen.returncode}) ---\n{proc.tail(60)}")


# -- what the handlers recorded ------------------------------------------------------------------------


@dataclass
class Run:
    run: str
    pid: int
    attempt: int
    at: float
    #: The name of the worker thread that ran it.
    thread: str = ""
    #: Its number among the executions of its process, in the order they started.
    seq: int = 0


@dataclass
class Records:
    """Reads what the test app's handlers wrote under ``<prefix>-test:``."""

    client: redis.Redis[Any]
    prefix: str
    backlog: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"{self.prefix}-test"

    def runs(self) -> dict[str, list[Run]]:
        """Every handler execution, by job id, in start order."""
        runs: dict[str, list[Run]] = {}
        for key, value in self.client.hgetall(f"{self.base}:runs").items():
            job_id, _, run = key.decode().partition("/")
            data = json.loads(value)
            entry = Run(run, data["pid"], data["attempt"], data["at"], data.get("thread", ""), data.get("seq", 0))
            runs.setdefault(job_id, []).append(entry)
        for job_runs in runs.values():
            job_runs.sort(key=lambda r: r.at)
        return runs

    def completions(self) -> dict[str, list[tuple[str, int]]]:
        """Every completion the store accepted, by job id: ``(run id, pid)``."""
        done: dict[str, list[tuple[str, int]]] = {}
        for key, value in self.client.hgetall(f"{self.base}:completions").items():
            job_id, _, run = key.decode().partition("/")
            done.setdefault(job_id, []).append((run, int(value)))
        return done

    def completion_count(self) -> int:
        return int(self.client.hlen(f"{self.base}:completions"))

    def event(self, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        """The next event with these members (events that do not match are kept for later)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.backlog:
                if all(event.get(key) == value for key, value in match.items()):
                    self.backlog.remove(event)
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no event {match} within {timeout} s; seen: {self.backlog}")
            popped = self.client.blpop([f"{self.base}:events"], timeout=min(remaining, 5))
            if popped is not None:
                self.backlog.append(json.loads(popped[1]))

    def no_event(self, seconds: float, **match: Any) -> None:
        """Assert that no event with these members comes within ``seconds``."""
        try:
            event = self.event(seconds, **match)
        except AssertionError:
            return
        raise AssertionError(f"unexpected event {event}")

    def open_gate(self, job_id: str) -> None:
        self.client.rpush(f"{self.base}:gate:{job_id}", 1)


@pytest.fixture
def records(redis_server: RedisServer, prefix: str) -> Records:
    return Records(redis_server.client, prefix)


Submitter = Callable[[str, str], tuple[AsyncEndpoints, Flask]]


@pytest.fixture
def submitter() -> Iterator[Submitter]:
    """Makes apps in this process on a given store and prefix, that submit jobs and run none."""
    apps: list[Flask] = []

    def make(redis_url: str, prefix: str) -> tuple[AsyncEndpoints, Flask]:
        app = process_app.create_app(
            {
                "ASYNCENDPOINTS_STORE": redis_url,
                "ASYNCENDPOINTS_KEY_PREFIX": prefix,
                "ASYNCENDPOINTS_WORKER": False,
            }
        )
        apps.append(app)
        return process_app.ae, app

    yield make
    for app in apps:
        process_app.ae.get_store(app).close()
        process_app.recorder(app).close()


def statuses(ae: AsyncEndpoints, app: Flask) -> dict[JobStatus, int]:
    return {status: count for status, count in ae.get_store(app).counts().items() if count}


def get_job(ae: AsyncEndpoints, app: Flask, job_id: str) -> Job:
    job = ae.get_job(job_id, app=app)
    assert job is not None, f"job {job_id} is gone"
    return job


def wait_for_status(ae: AsyncEndpoints, app: Flask, job_id: str, status: JobStatus, timeout: float) -> Job:
    def reached() -> Job | None:
        job = get_job(ae, app, job_id)
        return job if job.status is status else None

    job: Job = wait_until(reached, timeout, f"job {job_id} to be {status.value}")
    return job


def assert_ran_and_completed_once(
    runs: dict[str, list[Run]], completions: dict[str, list[tuple[str, int]]], ids: list[str]
) -> None:
    ran_twice = {job_id: runs[job_id] for job_id in ids if len(runs.get(job_id, [])) != 1}
    completed_twice = {job_id: completions.get(job_id) for job_id in ids if len(completions.get(job_id, [])) != 1}
    assert not ran_twice, f"{len(ran_twice)} job(s) did not run exactly once, e.g. {list(ran_twice.items())[:3]}"
    assert not completed_twice, (
        f"{len(completed_twice)} job(s) did not complete exactly once, e.g. {list(completed_twice.items())[:3]}"
    )


# -- two worker processes, one queue -------------------------------------------------------------------


def test_two_worker_processes_run_10000_jobs_each_exactly_once(
    redis_server: RedisServer, prefix: str, processes: Processes, records: Records, submitter: Submitter
) -> None:
    ae, app = submitter(redis_server.url, prefix)
    workers = [processes.worker(redis_server.url, prefix, name=f"worker-{n}", log_level="WARNING") for n in range(2)]
    total = 10_000

    # Submitted while both workers claim from the same queue.
    ids = [ae.submit("Noop", app=app).id for _ in range(total)]

    wait_until(lambda: records.completion_count() >= total, 120, f"{total} completions")
    assert statuses(ae, app) == {JobStatus.COMPLETED: total}
    runs, completions = records.runs(), records.completions()
    assert set(runs) == set(ids)
    assert_ran_and_completed_once(runs, completions, ids)
    # Both processes took part, and only they did.
    pids = {run.pid for job_runs in runs.values() for run in job_runs}
    assert pids == {w.pid for w in workers}
    store = ae.get_store(app)
    pipe = redis_server.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(Layout(prefix).default.state(job_id), "s")
    assert set(pipe.execute()) == {b"Completed"}
    # Each stored result is the one of the job's only run.
    sample = [store.get(job_id) for job_id in ids[:: total // 50]]
    for job in sample:
        assert job is not None
        assert job.result == {"pid": runs[job.id][0].pid, "run": runs[job.id][0].run}
        assert job.retry_count == 0


# -- crashes and stops ---------------------------------------------------------------------------------


def two_workers(redis_url: str, prefix: str, processes: Processes, **settings: Any) -> dict[int, Proc]:
    workers = [processes.worker(redis_url, prefix, name=f"worker-{n}", **settings) for n in range(2)]
    return {w.pid: w for w in workers}


def test_a_job_whose_worker_is_killed_completes_in_the_other_process_after_the_lease(
    redis_server: RedisServer, prefix: str, processes: Processes, records: Records, submitter: Submitter
) -> None:
    ae, app = submitter(redis_server.url, prefix)
    workers = two_workers(redis_server.url, prefix, processes)
    job_id = ae.submit("Hold", {"hold": [1]}, app=app).id  # only the first attempt waits
    started = records.event(event="started", job=job_id, attempt=1)
    victim = workers.pop(started["pid"])
    (survivor,) = workers.values()

    killed_at = time.time()
    victim.signal(signal.SIGKILL)
    victim.popen.wait(10)

    job = wait_for_status(ae, app, job_id, JobStatus.COMPLETED, 20)
    assert job.retry_count == 1
    runs = records.runs()[job_id]
    assert [(r.pid, r.attempt) for r in runs] == [(victim.pid, 1), (survivor.pid, 2)]
    # The dead worker renewed its lease every 0.2 s up to the kill; the job waited for that lease
    # (2 s) to run out rather than being taken early.
    assert runs[1].at - killed_at > 1.0
    survivor.wait_for(rf"recovered job {job_id} \(Hold\) after its lease expired")
    # The stored result is the second attempt's: the first never got to write one.
    assert job.result == {"pid": survivor.pid, "run": runs[1].run}
    assert wait_until(lambda: records.completions().get(job_id), 10, "the completion record") == [
        (runs[1].run, survivor.pid)
    ]
    assert statuses(ae, app) == {JobStatus.COMPLETED: 1}


def test_a_stopped_workers_late_completion_is_rejected(
    redis_server: RedisServer, prefix: str, processes: Processes, records: Records, submitter: Submitter
) -> None:
    ae, app = submitter(redis_server.url, prefix)
    workers = two_workers(redis_server.url, prefix, processes)
    job_id = ae.submit("Hold", {"hold": [1]}, app=app).id
    started = records.event(event="started", job=job_id, attempt=1)
    stopped = workers.pop(started["pid"])
    (other,) = workers.values()

    # A stopped process renews nothing: its lease runs out and the other worker recovers the job.
    stopped.signal(signal.SIGSTOP)
    job = wait_for_status(ae, app, job_id, JobStatus.COMPLETED, 20)
    runs = records.runs()[job_id]
    assert [(r.pid, r.attempt) for r in runs] == [(stopped.pid, 1), (other.pid, 2)]
    assert job.result == {"pid": other.pid, "run": runs[1].run}

    # Let the first attempt finish: it returns a result of its own, which must not be stored.
    records.open_gate(job_id)
    stopped.signal(signal.SIGCONT)
    records.event(event="discarded", job=job_id, pid=stopped.pid)

    after = get_job(ae, app, job_id)
    assert after.status is JobStatus.COMPLETED
    assert after.result == job.result
    assert after.retry_count == 1
    assert after.completed_at == job.completed_at
    assert after.last_updated_at == job.last_updated_at
    assert statuses(ae, app) == {JobStatus.COMPLETED: 1}
    assert records.completions() == {job_id: [(runs[1].run, other.pid)]}
    assert len(records.runs()[job_id]) == 2
    assert stopped.alive()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server for one test, which may stop and start it."""
    require(shutil.which("redis-server") is not None, "redis-server (on PATH)")
    directory = tmp_path / "own-redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.client.close()
    server.stop()


def test_redis_stopped_and_started_mid_run_loses_no_job_and_workers_resume(
    own_redis_server: RedisServer, prefix: str, processes: Processes, submitter: Submitter
) -> None:
    server = own_redis_server
    records = Records(server.client, prefix)
    ae, app = submitter(server.url, prefix)
    workers = two_workers(server.url, prefix, processes)
    accepted: list[str] = []
    refused = threading.Event()
    enough = threading.Event()
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            while not enough.is_set():
                job_id = str(uuid.uuid4())
                while True:
                    try:
                        ae.submit("Work", {"seconds": 0.01}, job_id=job_id, app=app)
                        break
                    except StoreError:
                        # Not stored, or stored but unanswered: the same id again is safe (idempotent).
                        refused.set()
                        enough.wait(POLL)  # allow-sleep: Redis (another process) is down; try again shortly
                accepted.append(job_id)
                enough.wait(0.005)  # allow-sleep: paces the stream so that it runs through the outage
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    submitting = threading.Thread(target=stream, name="submit-stream")
    submitting.start()
    try:
        wait_until(lambda: records.completion_count() >= 100, 60, "100 jobs done before the outage")
        server.stop()
        for worker in workers.values():
            worker.wait_for("job store unavailable", 30)
        assert refused.wait(30)
        server.start()
        restarted_at = time.time()

        # Both workers take jobs again, without being restarted.
        def both_resumed() -> bool:
            pids = {r.pid for runs in records.runs().values() for r in runs if r.at > restarted_at}
            return pids == set(workers)

        wait_until(both_resumed, 60, "both workers to run jobs after the restart")
    finally:
        enough.set()
        submitting.join(30)
    assert not errors
    assert all(w.alive() for w in workers.values())

    total = len(accepted)
    wait_until(lambda: statuses(ae, app) == {JobStatus.COMPLETED: total}, 60, f"all {total} jobs to complete")
    pipe = server.client.pipeline(transaction=False)
    for job_id in accepted:
        pipe.hget(Layout(prefix).default.state(job_id), "s")
    assert set(pipe.execute()) == {b"Completed"}
    runs = records.runs()
    assert set(runs) == set(accepted)
    # At least once: an attempt cut off by the outage runs again. Never completed twice.
    completions = records.completions()
    assert all(len(completions.get(job_id, [])) <= 1 for job_id in accepted)


# -- gunicorn ------------------------------------------------------------------------------------------


def require_gunicorn() -> None:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        require(False, "gunicorn")


def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, http.client.HTTPMessage, Any]:
    """One HTTP request to 127.0.0.1:``port``; the status, headers and JSON body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, response.headers, json.loads(raw) if raw else None
    finally:
        connection.close()


@dataclass
class HttpRun:
    """What the HTTP clients of one test did and saw."""

    job_ids: list[str] = field(default_factory=list)
    #: ``(method, status, X-Served-By)`` of every response.
    responses: list[tuple[str, int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def http_clients(port: int, *, clients: int, jobs_each: int, work: float = 0.01) -> HttpRun:
    """``clients`` threads each POST ``jobs_each`` jobs and poll each one until it is finished."""
    run = HttpRun()

    def note(method: str, status: int, headers: http.client.HTTPMessage) -> None:
        with run.lock:
            run.responses.append((method, status, int(headers.get("X-Served-By", "0"))))

    def client() -> None:
        try:
            for _ in range(jobs_each):
                status, headers, job = call(port, "POST", "/work", {"seconds": work})
                note("POST", status, headers)
                if status != 202:
                    run.problems.append(f"POST answered {status}: {job}")
                    continue
                with run.lock:
                    run.job_ids.append(job["id"])
                location = headers["Location"]
                path = location[location.index("/jobs/") :]
                deadline = time.monotonic() + 60
                while job["status"] != "Completed":
                    if job["status"] in ("Failed", "Canceled") or time.monotonic() > deadline:
                        run.problems.append(f"job {job['id']} ended {job['status']}: {job}")
                        break
                    time.sleep(POLL)  # allow-sleep: polls a job that other processes run, with a deadline
                    status, headers, job = call(port, "GET", path)
                    note("GET", status, headers)
                    if status != 200:
                        run.problems.append(f"GET {path} answered {status}: {job}")
                        break
        except Exception as exc:
            run.problems.append(f"client failed: {exc!r}")

    threads = [threading.Thread(target=client, name=f"http-client-{n}") for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not any(thread.is_alive() for thread in threads), "an HTTP client hung"
    return run


def booted_workers(server: Proc, count: int) -> set[int]:
    """The pids of the first ``count`` worker processes gunicorn booted."""
    return {int(m.group(1)) for m in server.wait_for(r"Booting worker with pid: (\d+)", count=count)}


@pytest.mark.parametrize(
    "gunicorn_args",
    [["-w", "2"], ["-w", "2", "--preload"], ["-w", "2", "--threads", "2"]],
    ids=["plain", "preload", "threads"],
)
def test_gunicorn_workers_and_a_worker_process_run_every_job_once(
    gunicorn_args: list[str],
    redis_server: RedisServer,
    prefix: str,
    processes: Processes,
    records: Records,
    submitter: Submitter,
) -> None:
    require_gunicorn()
    ae, app = submitter(redis_server.url, prefix)
    server, port = processes.gunicorn(redis_server.url, prefix, gunicorn_args)
    web = booted_workers(server, 2)
    worker = processes.worker(redis_server.url, prefix)

    run = http_clients(port, clients=4, jobs_each=40)

    assert not run.problems, run.problems[:5]
    assert {(method, status) for method, status, _ in run.responses} == {("POST", 202), ("GET", 200)}
    # Polls reached both web processes, so a job submitted to one was read from the other.
    served_by = {pid for _, _, pid in run.responses}
    assert served_by == web
    ids = run.job_ids
    assert len(ids) == 160
    assert statuses(ae, app) == {JobStatus.COMPLETED: len(ids)}
    wait_until(lambda: records.completion_count() >= len(ids), 10, "every completion record")
    runs = records.runs()
    assert_ran_and_completed_once(runs, records.completions(), ids)
    # Jobs ran in the gunicorn workers and the worker process, never in gunicorn's master
    # (with --preload the app was built there, before the fork).
    ran_in = {r.pid for job_runs in runs.values() for r in job_runs}
    assert ran_in <= web | {worker.pid}
    assert ran_in & web, "no job ran in a gunicorn worker"
    assert server.pid not in ran_in


# -- graceful shutdown ---------------------------------------------------------------------------------

#: Jobs a process with MAX_CONCURRENCY 2 and BATCH_SIZE 5 holds when they are queued before it starts
#: and never finish: its first claim takes a batch of 5, 2 of them run, 3 wait claimed ahead.
HELD = 5


@pytest.mark.parametrize("holder_kind", ["worker", "gunicorn"])
def test_sigterm_releases_claimed_jobs_to_another_process_at_once(
    holder_kind: str,
    redis_server: RedisServer,
    prefix: str,
    processes: Processes,
    records: Records,
    submitter: Submitter,
) -> None:
    shutdown_timeout = 3.0
    # A 30 s lease: a job taken over within seconds was released, not recovered.
    settings = {"CLAIM_TIMEOUT": 30, "SHUTDOWN_TIMEOUT": shutdown_timeout}
    ae, app = submitter(redis_server.url, prefix)
    ids = [ae.submit("Hold", app=app).id for _ in range(HELD)]
    if holder_kind == "worker":
        holder = processes.worker(redis_server.url, prefix, name="holder", **settings)
        holder_pid = holder.pid
    else:
        require_gunicorn()
        server, _ = processes.gunicorn(redis_server.url, prefix, ["-w", "1"], **settings)
        (holder_pid,) = booted_workers(server, 1)
    running = {records.event(event="started", pid=holder_pid)["job"] for _ in range(2)}
    wait_until(lambda: statuses(ae, app) == {JobStatus.IN_PROGRESS: HELD}, 10, f"the holder to claim all {HELD} jobs")
    taker = processes.worker(redis_server.url, prefix, name="taker", hold=False, **settings)

    signalled_at = time.time()
    os.kill(holder_pid, signal.SIGTERM)

    for job_id in ids:
        job = wait_for_status(ae, app, job_id, JobStatus.COMPLETED, 15)
        assert job.retry_count == 0  # released, not failed: no retry counted
    runs = records.runs()
    for job_id in ids:
        taken = runs[job_id][-1]
        if job_id in running:
            # Given SHUTDOWN_TIMEOUT to finish, then released while still running.
            assert [(r.pid, r.attempt) for r in runs[job_id]] == [(holder_pid, 1), (taker.pid, 1)]
            assert shutdown_timeout - 0.5 < taken.at - signalled_at < shutdown_timeout + 1.0
        else:
            # Claimed ahead but never started: released at once.
            assert [(r.pid, r.attempt) for r in runs[job_id]] == [(taker.pid, 1)]
            assert taken.at - signalled_at < 1.0
    wait_until(lambda: records.completion_count() >= HELD, 10, "every completion record")
    assert records.completions() == {job_id: [(runs[job_id][-1].run, taker.pid)] for job_id in ids}
    if holder_kind == "gunicorn":
        server.wait_for(rf"Worker exiting \(pid: {holder_pid}\)")
    else:
        assert holder.popen.wait(10) == 0
        holder.wait_for(rf"stopped; {HELD} unfinished job\(s\) released")


def test_a_job_finishing_during_graceful_shutdown_keeps_its_lease(
    redis_server: RedisServer, prefix: str, processes: Processes, records: Records, submitter: Submitter
) -> None:
    # Shutdown waits longer for running jobs than a lease lasts.
    settings = {"CLAIM_TIMEOUT": 1, "SHUTDOWN_TIMEOUT": 15}
    ae, app = submitter(redis_server.url, prefix)
    holder = processes.worker(redis_server.url, prefix, name="holder", **settings)
    job_id = ae.submit("Hold", app=app).id
    records.event(event="started", job=job_id, pid=holder.pid)
    processes.worker(redis_server.url, prefix, name="other", hold=False, **settings)

    holder.signal(signal.SIGTERM)
    holder.wait_for("stopping: waiting for running jobs")
    # Three leases' time: had the stopping worker stopped renewing, the other worker would have
    # recovered the job and run it again by now.
    records.no_event(3.0, event="started", job=job_id)
    records.open_gate(job_id)

    assert holder.popen.wait(15) == 0
    job = get_job(ae, app, job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.retry_count == 0
    (only,) = records.runs()[job_id]
    assert only.pid == holder.pid
    assert job.result == {"pid": holder.pid, "run": only.run}


def test_gunicorn_and_a_killed_worker_process_complete_every_job_and_leave_no_key(
    redis_server: RedisServer, prefix: str, processes: Processes, records: Records, submitter: Submitter
) -> None:
    require_gunicorn()
    settings = {"RESULT_TTL": 3}
    ae, app = submitter(redis_server.url, prefix)
    server, port = processes.gunicorn(redis_server.url, prefix, ["-w", "2"], hold=False, **settings)
    web = booted_workers(server, 2)
    # Hold jobs wait in this process only: it is sure to be mid-job when it is killed.
    victim = processes.worker(redis_server.url, prefix, name="victim", **settings)
    outcome: list[HttpRun] = []
    clients = threading.Thread(
        target=lambda: outcome.append(http_clients(port, clients=4, jobs_each=40, work=0.05)), name="http-clients"
    )
    clients.start()
    try:
        for _ in range(100):
            held = ae.submit("Hold", app=app).id
            if records.event(event="started", job=held)["pid"] == victim.pid:
                break
        else:
            raise AssertionError("the worker process never took a Hold job")
        victim.signal(signal.SIGKILL)
        victim.popen.wait(10)
    finally:
        clients.join(180)
    (run,) = outcome

    assert not run.problems, run.problems[:5]
    assert {(method, status) for method, status, _ in run.responses} == {("POST", 202), ("GET", 200)}
    # The killed process's jobs were recovered by the gunicorn workers once their leases ran out.
    server.wait_for(rf"recovered job {held} \(Hold\) after its lease expired")
    held_runs = wait_until(lambda: records.completions().get(held), 30, "the held job to complete elsewhere")
    assert [pid for _, pid in held_runs] == [records.runs()[held][-1].pid]
    assert [(r.pid in web, r.attempt) for r in records.runs()[held]] == [(False, 1), (True, 2)]
    runs, completions = records.runs(), records.completions()
    assert set(run.job_ids) <= set(runs)
    for job_id in run.job_ids:
        # Completed once; the kill may fall between a completion and its record, hence "at most".
        assert len(completions.get(job_id, [])) <= 1
        # Only an attempt cut short by the kill ran again.
        assert all(r.pid == victim.pid for r in runs[job_id][:-1]), runs[job_id]

    # Once RESULT_TTL has passed, every finished job is gone with all its index entries.
    # What stays: the per-name counts (at zero), the wake list, the throughput of the hour (it
    # expires), the names of the queues and the worker registry (the live workers, and the killed
    # one's entry until it expires).
    queue = Layout(prefix).default
    kept = {queue.key(NAMES), queue.key(WAKE), Layout(prefix).queues, Layout(prefix).workers}
    expiring = (queue.throughput(0).rpartition(":")[0] + ":", Layout(prefix).worker(""))

    def nothing_left() -> bool:
        keys = {
            key.decode() for pattern in scan_patterns(prefix) for key in redis_server.client.scan_iter(match=pattern)
        }
        return {key for key in keys if not key.startswith(expiring)} <= kept

    wait_until(nothing_left, 30, "finished jobs to be purged")
    # Each registration of the worker registry expires by itself: the killed process's too.
    registrations = list(redis_server.client.scan_iter(match=Layout(prefix).worker("*")))
    assert registrations and all(redis_server.client.ttl(key) > 0 for key in registrations)
    assert statuses(ae, app) == {}

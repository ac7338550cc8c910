"""Failovers under load, on real servers: a Redis Cluster master killed mid-run, and a Sentinel failover.

Each test starts its own deployment from the ``redis-server`` binary on free loopback ports (six
cluster nodes, or a master, a replica and three Sentinels), a ``flask … asyncendpoints worker``
process (and, for Sentinel, gunicorn) running ``tests/apps/process_app.py``, and a client thread
that submits a steady stream of jobs over HTTP, retrying a ``503`` with the same
``X-Async-Request-Id`` as a client should. The handlers record every run and every accepted
completion in a Redis server of the test's own, outside the deployment that fails over, so the
records survive it. At the end every job acknowledged with a ``202`` is accounted for.

The counts are printed; ``pytest -rP tests/test_failover.py`` shows them for passing tests too.

Without ``redis-server``, ``redis-cli`` or gunicorn these tests are skipped, except where
``ASYNCENDPOINTS_REQUIRE_REDIS`` is set (CI): there they fail.
"""

from __future__ import annotations

import http.client
import json
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import redis
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, JobStatus

from .apps import process_app
from .ports import free_port
from .redis_cluster import LocalCluster
from .redis_sentinel import SERVICE, LocalSentinel
from .test_processes import (
    APP,
    GUNICORN_CONF,
    POLL,
    Proc,
    Processes,
    Records,
    RedisServer,
    require,
    require_gunicorn,
    wait_until,
)

pytestmark = pytest.mark.slow

#: Seconds between two submits of the stream (a steady trickle rather than a flood, so that the
#: jobs of every phase of the failover are many but their records few).
PACE = 0.005

#: The names of the pool threads of a worker process with ``MAX_CONCURRENCY`` 2.
POOL_THREADS = {"asyncendpoints-worker-0", "asyncendpoints-worker-1"}


@pytest.fixture(scope="module")
def records_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server for the handlers' records: outside the deployment that fails over."""
    require(shutil.which("redis-server") is not None, "redis-server (on PATH)")
    server = RedisServer(tmp_path_factory.mktemp("records"))
    server.start()
    yield server
    server.client.close()
    server.stop()


@pytest.fixture
def prefix() -> str:
    # Starts with a letter, so from_prefixed_env() cannot read it as a JSON number.
    return f"f{uuid.uuid4().hex[:10]}"


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


def start_worker(processes: Processes, store_url: str, prefix: str, records_url: str, **settings: Any) -> Proc:
    """``flask … asyncendpoints worker`` on ``store_url``, its records in ``records_url``; running when this returns.

    ``Hold`` jobs wait for their gate in it (:func:`every_thread_takes_work`).
    """
    env = processes.env(store_url, prefix, True, **settings)
    env["FLASK_PROCESS_APP_RECORDS"] = records_url
    proc = processes.start(
        "worker", [sys.executable, "-m", "flask", "--app", APP, "asyncendpoints", "worker", "--log-level", "INFO"], env
    )
    proc.wait_for(r"^worker \S+ running \d+ thread")
    return proc


def start_gunicorn(
    processes: Processes, store_url: str, prefix: str, records_url: str, **settings: Any
) -> tuple[Proc, int]:
    """gunicorn with two worker processes serving the app (and running jobs); it and its port once it listens.

    ``Hold`` jobs wait for their gate in it (:func:`every_thread_takes_work`).
    """
    port = free_port()
    env = processes.env(store_url, prefix, True, **settings)
    env["FLASK_PROCESS_APP_RECORDS"] = records_url
    proc = processes.start(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}", "-w", "2",
         f"{APP}:app"],
        env,
    )  # fmt: skip
    proc.wait_for(r"Booting worker with pid", count=2)
    return proc, port


def every_thread_takes_work(ae: AsyncEndpoints, app: Flask, records: Records, threads: int) -> set[tuple[int, str]]:
    """Submit one ``Hold`` job per pool thread of the deployment, each once the one before has
    started: a held job keeps its thread until its gate opens, and only a free thread claims (one
    job at a time here, as only one is queued at a time), so they all start only if every pool
    thread takes work. Then open the gates; the ``(pid, thread)`` that ran each."""
    held: list[str] = []
    for _ in range(threads):
        held.append(ae.submit("Hold", app=app).id)
        records.event(30, event="started", job=held[-1])
    for job_id in held:
        records.open_gate(job_id)
    runs = records.runs()
    return {(run.pid, run.thread) for job_id in held for run in runs[job_id]}


def no_thread_died(proc: Proc) -> None:
    """Assert that ``proc`` is alive and printed no traceback: no thread of it ended on an exception."""
    assert proc.alive(), f"{proc.name} exited:\n{proc.tail()}"
    dead = [n for n, line in enumerate(proc.lines) if "Traceback" in line or "Exception in thread" in line]
    assert not dead, f"{proc.name} printed a traceback:\n" + "\n".join(proc.lines[max(dead[0] - 3, 0) : dead[0] + 40])


# -- the client ----------------------------------------------------------------------------------------

Send = Callable[[str, str, Any, dict[str, str]], int]


@dataclass
class Accepted:
    """A submit the server acknowledged (``202``, or ``200`` for a retry it had taken already)."""

    job_id: str
    #: When the acknowledged request was sent (epoch seconds).
    sent_at: float


@dataclass
class Stream:
    """A client thread that submits one job after another and reads the previous one back.

    A ``503`` is retried with the same ``X-Async-Request-Id`` until it is acknowledged, as
    ``Retry-After`` tells a client to; so every job the client started is either acknowledged or
    still being retried when the stream stops.
    """

    send: Send
    accepted: list[Accepted] = field(default_factory=list)
    #: ``(method, status, sent at, answered at, job id)`` of every answer.
    answers: list[tuple[str, int, float, float, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="submit-stream")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)
        assert not self._thread.is_alive(), "the client thread hung"
        assert not self.errors, self.errors

    def accepted_since(self, at: float) -> int:
        return sum(1 for accepted in self.accepted if accepted.sent_at > at)

    def refused_since(self, at: float) -> int:
        """How many submits were answered ``503`` after ``at``."""
        return sum(1 for method, status, _, when, _ in self.answers if (method, status) == ("POST", 503) and when > at)

    def statuses(self, method: str) -> set[int]:
        return {status for m, status, _, _, _ in self.answers if m == method}

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                job_id = str(uuid.uuid4())
                while not self._stop.is_set():
                    sent = time.time()
                    status = self.send("POST", "/work", {"seconds": 0}, {"X-Async-Request-Id": job_id})
                    self.answers.append(("POST", status, sent, time.time(), job_id))
                    if status in (200, 202):
                        self.accepted.append(Accepted(job_id, sent))
                        break
                    if status != 503:
                        break  # the test fails on it
                    self._stop.wait(POLL)  # allow-sleep: the store is failing over; a client retries shortly
                if len(self.accepted) > 1:
                    earlier = self.accepted[-2].job_id
                    asked = time.time()
                    status = self.send("GET", f"/jobs/{earlier}", None, {})
                    self.answers.append(("GET", status, asked, time.time(), earlier))
                self._stop.wait(PACE)  # allow-sleep: paces the stream, so that it runs through the failover
        except BaseException as exc:  # pragma: no cover - reported by stop()
            self.errors.append(exc)


def flask_client_send(app: Flask) -> Send:
    """Requests through the Flask test client (one thread only uses it)."""
    client = app.test_client()

    def send(method: str, path: str, body: Any, headers: dict[str, str]) -> int:
        return client.open(path, method=method, json=body, headers=headers).status_code

    return send


def http_send(port: int) -> Send:
    """Requests over HTTP to 127.0.0.1:``port``, one connection each."""

    def send(method: str, path: str, body: Any, headers: dict[str, str]) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            if body is not None:
                headers = {**headers, "Content-Type": "application/json"}
            connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    return send


def web_app(store_url: str, prefix: str, records_url: str) -> tuple[AsyncEndpoints, Flask]:
    """The test app in this process, on ``store_url``, running no jobs."""
    app = process_app.create_app(
        {
            "ASYNCENDPOINTS_STORE": store_url,
            "ASYNCENDPOINTS_KEY_PREFIX": prefix,
            "ASYNCENDPOINTS_WORKER": False,
            "PROCESS_APP_RECORDS": records_url,
        }
    )
    return process_app.ae, app


def pending(ae: AsyncEndpoints, app: Flask) -> int:
    return sum(n for status, n in ae.get_store(app).counts().items() if not status.is_final)


# -- Redis Cluster: a master killed mid-run -------------------------------------------------------------


@pytest.fixture
def failover_cluster() -> Iterator[LocalCluster]:
    """A cluster of this test's own (it loses a master), with a short node timeout: its replica takes
    over within about two seconds of the kill rather than the default fifteen."""
    require(bool(shutil.which("redis-server") and shutil.which("redis-cli")), "redis-server and redis-cli (on PATH)")
    cluster = LocalCluster(node_timeout_ms=1000)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def serving(cluster: LocalCluster, key: str) -> int | None:
    """The port of the master serving ``key`` now, as a live node says; ``None`` while none answers."""
    try:
        return cluster.master_of(key)
    except (redis.RedisError, OSError, RuntimeError, LookupError):
        return None


class ClusterRun(NamedTuple):
    """A web app submitting into the cluster and a worker process draining it, and which node
    serves the test queue's slot and which replicates it."""

    records: Records
    ae: AsyncEndpoints
    app: Flask
    worker: Proc
    queue: str
    master: int
    replica: int


def cluster_run(
    cluster: LocalCluster,
    store_url: str,
    records_server: RedisServer,
    prefix: str,
    processes: Processes,
    request: pytest.FixtureRequest,
) -> ClusterRun:
    records = Records(records_server.client, prefix)
    ae, app = web_app(store_url, prefix, records_server.url)
    request.addfinalizer(lambda: (ae.get_store(app).close(), process_app.recorder(app).close()))
    # A lease of 3 s: a job whose completion the failover lost runs again 3 s later.
    worker = start_worker(processes, store_url, prefix, records_server.url, CLAIM_TIMEOUT=3)
    queue = f"{{{prefix}:default}}"
    master = cluster.master_of(queue)
    (replica,) = cluster.replicas_of(master)
    return ClusterRun(records, ae, app, worker, queue, master, replica)


def test_a_cluster_master_killed_mid_run_loses_only_writes_it_had_not_replicated(
    failover_cluster: LocalCluster,
    records_server: RedisServer,
    prefix: str,
    processes: Processes,
    request: pytest.FixtureRequest,
) -> None:
    cluster = failover_cluster
    records, ae, app, worker, queue, master, replica = cluster_run(
        cluster, cluster.url, records_server, prefix, processes, request
    )

    stream = Stream(flask_client_send(app))
    stream.start()
    try:
        wait_until(lambda: records.completion_count() >= 100, 30, "100 jobs done before the kill")
        # On loopback a replica is a fraction of a millisecond behind, and a kill rarely catches a
        # write it has not streamed yet: cut the replica off first, so that the master acknowledges
        # writes it alone has (as when a replica lags), and the count below has something to count.
        cluster.cut_replication(master)
        cut_at = time.time()
        wait_until(lambda: stream.accepted_since(cut_at) >= 10, 10, "10 submits acknowledged by the master alone")
        killed_at = time.time()
        cluster.kill(master)
        wait_until(lambda: serving(cluster, queue) == replica, 30, f"the replica {replica} to take over")
        promoted_at = time.time()
        wait_until(lambda: stream.accepted_since(promoted_at) >= 100, 30, "100 jobs submitted after the failover")
    finally:
        stream.stop()
    wait_until(lambda: pending(ae, app) == 0, 30, "every job to finish")

    # HTTP answered only 202/200 and 503 to submits, and a read either 200, 503 or, for a job the
    # failover lost, 404; never 500.
    assert stream.statuses("POST") <= {200, 202, 503}
    assert 503 in stream.statuses("POST"), "no submit fell into the failover"
    jobs = {accepted.job_id: ae.get_job(accepted.job_id, app=app) for accepted in stream.accepted}
    lost = [accepted for accepted in stream.accepted if jobs[accepted.job_id] is None]
    lost_ids = {accepted.job_id for accepted in lost}
    assert stream.statuses("GET") <= {200, 503, 404}
    assert all(job_id in lost_ids for method, status, _, _, job_id in stream.answers if status == 404)
    assert all(job is None or job.status is JobStatus.COMPLETED for job in jobs.values())

    # Writes lost with the master. Redis replicates asynchronously: the master answers a write,
    # then streams it to its replica. The stream is one ordered log and the replica applies a prefix
    # of it, so what the kill can lose is the last writes the master acknowledged, all of them
    # before the kill. The client submits one job at a time, so the creates are in the order of
    # their acknowledgements, and the lost submits must be exactly the last ones acknowledged
    # before the kill.
    before_kill = [accepted for accepted in stream.accepted if accepted.sent_at < killed_at]
    assert lost == before_kill[len(before_kill) - len(lost) :], "a lost submit that is not among the last ones"
    # And the submits the master acknowledged with its replica cut off are among them.
    alone = [accepted for accepted in before_kill if accepted.sent_at > cut_at]
    assert len(alone) >= 10 and set(map(id, alone)) <= set(map(id, lost))

    # Runs: a job runs again only when the failover lost what an earlier run wrote (its claim or
    # its completion), so every job that ran twice had run before the replica took over.
    wait_until(
        lambda: all(records.completions().get(job_id) for job_id, job in jobs.items() if job is not None),
        10,
        "every completion record",
    )
    runs, completions = records.runs(), records.completions()
    survivors = [job_id for job_id, job in jobs.items() if job is not None]
    again = {job_id: runs[job_id] for job_id in survivors if len(runs[job_id]) > 1}
    assert all(job_runs[0].at < promoted_at for job_runs in again.values()), again
    twice = [job_id for job_id in survivors if len(completions[job_id]) > 1]
    assert set(twice) <= set(again)
    ran_lost = [accepted for accepted in lost if accepted.job_id in runs]

    # The worker carried on through the failover, every thread of it.
    worker.wait_for("job store unavailable")
    worker.wait_for("job store available again")
    no_thread_died(worker)
    took = every_thread_takes_work(ae, app, records, len(POOL_THREADS))
    assert took == {(worker.pid, thread) for thread in POOL_THREADS}, f"pool threads that took work: {took}"

    window = [at for method, status, _, at, _ in stream.answers if status == 503]
    print(
        f"Redis Cluster: killed the master on port {master} mid-run; its replica on port {replica} took over "
        f"{promoted_at - killed_at:.1f} s later. {len(stream.accepted)} submits acknowledged, "
        f"{len(stream.accepted) - len(lost)} of them completed; {len(lost)} lost with the master: the last "
        f"{len(lost)} it acknowledged, in the {1000 * (killed_at - lost[0].sent_at):.0f} ms before the kill, "
        f"which it had not streamed to its replica ({len(alone)} of them after the test cut the replica off, "
        f"{len(lost) - len(alone)} before; {len(ran_lost)} of them had run, and their results went too). "
        f"{len(window)} answers were 503, from {window[0] - killed_at:.2f} s to {window[-1] - killed_at:.2f} s "
        f"after the kill. {len(again)} job(s) ran again because the failover lost the claim or the completion "
        f"of an earlier run ({len(twice)} of them had had that completion acknowledged)."
    )


def test_with_wait_replicas_a_cluster_failover_loses_no_acknowledged_submit(
    failover_cluster: LocalCluster,
    records_server: RedisServer,
    prefix: str,
    processes: Processes,
    request: pytest.FixtureRequest,
) -> None:
    cluster = failover_cluster
    url = f"{cluster.url}?wait_replicas=1&wait_timeout=0.2"
    records, ae, app, worker, queue, master, replica = cluster_run(
        cluster, url, records_server, prefix, processes, request
    )

    stream = Stream(flask_client_send(app))
    stream.start()
    try:
        wait_until(lambda: records.completion_count() >= 100, 30, "100 jobs done before the kill")
        cluster.cut_replication(master)
        cut_at = time.time()
        # The master alone has what the client sends now: it acknowledges none of it.
        wait_until(lambda: stream.refused_since(cut_at) >= 3, 10, "submits refused while the replica is cut off")
        killed_at = time.time()
        cluster.kill(master)
        wait_until(lambda: serving(cluster, queue) == replica, 30, f"the replica {replica} to take over")
        promoted_at = time.time()
        # The new master has no replica either, until the old one is back as its replica.
        cluster.restart(master)
        rejoined_at = time.time()
        wait_until(lambda: stream.accepted_since(rejoined_at) >= 100, 30, "100 jobs submitted after the rejoin")
    finally:
        stream.stop()
    wait_until(lambda: pending(ae, app) == 0, 30, "every job to finish")

    assert stream.statuses("POST") <= {200, 202, 503}
    # Nothing acknowledged was lost: no read answered 404, every job is there and completed. That
    # holds for the 200 to a repeated submit too (a 503 the client tried again with the same id):
    # the job the first one wrote is confirmed on the replica before it is answered.
    assert stream.statuses("GET") <= {200, 503}
    jobs = [ae.get_job(accepted.job_id, app=app) for accepted in stream.accepted]
    assert all(job is not None and job.status is JobStatus.COMPLETED for job in jobs)
    # No submit sent after the cut and answered before the replica took over was acknowledged. (One
    # sent just before the cut may be confirmed by the replica and answered after it; one sent in
    # that time may be answered later, once a replica confirms it.)
    between = {
        status
        for method, status, sent, at, _ in stream.answers
        if method == "POST" and cut_at < sent and at < promoted_at
    }
    assert between == {503}
    no_thread_died(worker)
    runs = records.runs()
    again = [accepted.job_id for accepted in stream.accepted if len(runs[accepted.job_id]) > 1]

    window = [at for method, status, _, at, _ in stream.answers if method == "POST" and status == 503]
    print(
        f"Redis Cluster with wait_replicas=1: cut the replica of the master on port {master} off, killed the master "
        f"{killed_at - cut_at:.2f} s later; its replica took over {promoted_at - killed_at:.1f} s after the kill, "
        f"and the old master was back as its replica {rejoined_at - promoted_at:.1f} s after that. "
        f"{len(stream.accepted)} submits acknowledged, none lost. {len(window)} submits answered 503, from "
        f"{window[0] - cut_at:.2f} s to {window[-1] - cut_at:.2f} s after the cut: while the master of the queue "
        f"had no replica to confirm them. {len(again)} job(s) ran again (the failover lost a claim or a completion, "
        "which are not waited for)."
    )


# -- Redis Sentinel: SENTINEL FAILOVER mid-run ----------------------------------------------------------


@pytest.fixture
def sentinel() -> Iterator[LocalSentinel]:
    require(shutil.which("redis-server") is not None, "redis-server (on PATH)")
    deployment = LocalSentinel()
    deployment.start()
    try:
        yield deployment
    finally:
        deployment.stop()


class SwitchHeard:
    """Notes when a Sentinel announces a new master (``+switch-master``), from a thread of its own."""

    def __init__(self, port: int) -> None:
        self.at: float | None = None
        self._client = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe("+switch-master")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="switch-heard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.at is None:
            message = self._pubsub.get_message(timeout=0.2)
            if message is not None and str(message["data"]).startswith(f"{SERVICE} "):
                self.at = time.time()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
        self._client.close()


def test_a_sentinel_failover_mid_run_loses_nothing_and_answers_503_only_without_a_master(
    sentinel: LocalSentinel,
    records_server: RedisServer,
    prefix: str,
    processes: Processes,
    request: pytest.FixtureRequest,
) -> None:
    require_gunicorn()
    url = sentinel.url()
    records = Records(records_server.client, prefix)
    ae, app = web_app(url, prefix, records_server.url)
    request.addfinalizer(lambda: (ae.get_store(app).close(), process_app.recorder(app).close()))
    # Jobs run in the gunicorn workers and in a worker process, all on redis+sentinel://.
    server, port = start_gunicorn(processes, url, prefix, records_server.url, CLAIM_TIMEOUT=10)
    worker = start_worker(processes, url, prefix, records_server.url, CLAIM_TIMEOUT=10)
    switch = SwitchHeard(sentinel.sentinels[1].port)
    request.addfinalizer(switch.close)

    stream = Stream(http_send(port))
    stream.start()
    try:
        wait_until(lambda: records.completion_count() >= 100, 30, "100 jobs done before the failover")
        failover_at = time.time()
        old_master = sentinel.failover()
        wait_until(lambda: sentinel.settled(old_master), 30, "the failover to end (the old master a replica)")
        settled_at = time.time()
        wait_until(lambda: stream.accepted_since(settled_at) >= 100, 30, "100 jobs submitted after the failover")
    finally:
        stream.stop()
    assert switch.at is not None
    wait_until(lambda: pending(ae, app) == 0, 30, "every job to finish")

    # HTTP answered 503 only from the start of the failover until the Sentinels named the new master
    # (the processes hear it within milliseconds and ask the Sentinels once), never 500.
    assert stream.statuses("POST") <= {200, 202, 503}
    assert stream.statuses("GET") <= {200, 503}
    window = [at for _, status, _, at, _ in stream.answers if status == 503]
    assert window, "no request fell into the failover"
    assert failover_at <= window[0] and window[-1] <= switch.at + 1.0, (failover_at, window, switch.at)

    # Nothing acknowledged was lost, and every job finished once.
    jobs = [ae.get_job(accepted.job_id, app=app) for accepted in stream.accepted]
    assert all(job is not None and job.status is JobStatus.COMPLETED for job in jobs)
    ids = [accepted.job_id for accepted in stream.accepted]
    wait_until(lambda: all(records.completions().get(job_id) for job_id in ids), 10, "every completion record")
    runs, completions = records.runs(), records.completions()
    completed_twice = [job_id for job_id in ids if len(completions[job_id]) != 1]
    assert not completed_twice, f"{len(completed_twice)} job(s) completed more than once: {completed_twice[:3]}"
    again = [job_id for job_id in ids if len(runs[job_id]) > 1]

    # Every process moved to the new master and runs jobs there, every thread of it.
    for proc in (server, worker):
        no_thread_died(proc)
    worker.wait_for(r"the Sentinels moved the master of 'aemaster' from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+")
    after = {run.pid for job_id in ids for run in runs[job_id] if run.at > settled_at}
    assert after - {worker.pid}, "no job ran in a gunicorn worker after the failover"
    # Two gunicorn workers and the worker process, each with its pool of threads.
    took = every_thread_takes_work(ae, app, records, 3 * len(POOL_THREADS))
    assert len(took) == 3 * len(POOL_THREADS) and {thread for _, thread in took} == POOL_THREADS, took
    assert {pid for pid, _ in took} >= {worker.pid}, took

    print(
        f"Redis Sentinel: SENTINEL FAILOVER moved the master off port {old_master}; the Sentinels named the new "
        f"one {switch.at - failover_at:.2f} s later. {len(ids)} submits acknowledged, all completed once; "
        f"{len(window)} answers were 503, from {window[0] - failover_at:.2f} s to {window[-1] - failover_at:.2f} s "
        f"after the failover began; {len(again)} job(s) ran twice (at least once: a run cut off by the pause)."
    )

# The fixtures of test_processes are imported by name, and test arguments name them again.
# ruff: noqa: F811
"""Real processes under abuse: cut-off bodies, slow clients, kill -9, SIGSTOP and a Redis restart
under load, and retries that back off as documented.

Built on the process fixtures of ``test_processes`` (a ``redis-server`` of each test's own with an
append-only file fsynced on every write, ``flask … asyncendpoints worker`` and gunicorn processes
stopped by the pids started). Waits poll other processes' state against a deadline, never a fixed
sleep.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from flask_asyncendpoints import JobStatus

from .ports import free_port
from .test_processes import (  # noqa: F401 - fixtures, which pytest finds by name
    FAST,
    POLL,
    REPO,
    Processes,
    Records,
    RedisServer,
    Submitter,
    booted_workers,
    get_job,
    own_redis_server,
    prefix,
    processes,
    records,
    redis_server,
    require_gunicorn,
    statuses,
    submitter,
    wait_for_status,
    wait_until,
)

pytestmark = pytest.mark.slow


def exchange(port: int, raw: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``raw`` on a new connection, say that nothing more comes (half-close), read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass  # the server dropped the connection: as good as a 400
    return b"".join(chunks)


def status_and_body(answer: bytes) -> tuple[int, dict[str, Any] | None]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


BODY = b'{"seconds": 0.01}'


def post(path: str, headers: str, body: bytes) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{headers}\r\n".encode() + body


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_a_cut_off_body_creates_no_job(
    worker_class: str, redis_server: RedisServer, prefix: str, processes: Processes, submitter: Submitter
) -> None:
    require_gunicorn()
    ae, app = submitter(redis_server.url, prefix)
    _, port = processes.gunicorn(redis_server.url, prefix, ["-w", "1", "-k", worker_class], WORKER=False)
    cut_off = {
        # Valid JSON by itself: taken as the whole body, it would make a job nobody sent.
        "shorter than its Content-Length": post("/work", "Content-Length: 200\r\n", BODY),
        "chunked, without its last chunk": post(
            "/work", "Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n" % (len(BODY), BODY)
        ),
        "chunked, with a broken chunk size": post("/work", "Transfer-Encoding: chunked\r\n", b"zz\r\n" + BODY),
    }

    for what, raw in cut_off.items():
        answer = exchange(port, raw)
        if answer:
            status, problem = status_and_body(answer)
            assert status == 400, (what, answer)
            assert problem is not None and problem["title"] == "Incomplete request body", (what, answer)

    assert statuses(ae, app) == {}
    # The same request sent whole is taken.
    status, job = status_and_body(exchange(port, post("/work", f"Content-Length: {len(BODY)}\r\n", BODY)))
    assert status == 202, job
    assert statuses(ae, app) == {JobStatus.QUEUED: 1}


# -- slow clients -----------------------------------------------------------------------------------------

#: Connections that dribble their headers, as in the audit that made the sync workers unreachable.
SLOW_CLIENTS = 40


def test_slow_clients_do_not_make_the_example_app_unreachable(processes: Processes) -> None:
    require_gunicorn()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FLASK_", "GUNICORN_", "WEB_"))}
    env.update(PYTHONUNBUFFERED="1", EXAMPLE_DELAY="0")
    server = processes.start(
        "example-gunicorn",
        # The shipped config as it is; only the address is the test's.
        [
            *(sys.executable, "-m", "gunicorn", "-c", str(REPO / "example_app" / "gunicorn.conf.py")),
            *("--bind", f"127.0.0.1:{port}", "example_app:app"),
        ],
        env,
    )
    server.wait_for(r"Listening at: http://127\.0\.0\.1:")
    booted_workers(server, 2)
    slow: list[socket.socket] = []
    stop = threading.Event()

    def dribble() -> None:
        while not stop.wait(0.5):  # allow-sleep: paces the slow clients, one header byte each per half second
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"x")

    dribbler = threading.Thread(target=dribble, name="slowloris")
    try:
        for _ in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /api/generate-report HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(sock)
        dribbler.start()
        # Every slow client has reached a worker and holds it, as far as it can.
        stop.wait(1.5)  # allow-sleep: lets the slow connections be accepted and start dribbling

        for _ in range(5):
            started = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("POST", "/api/generate-report")
                response = connection.getresponse()
                response.read()
            finally:
                connection.close()
            assert response.status == 202
            assert time.monotonic() - started < 2.0
            stop.wait(0.2)  # allow-sleep: spreads the probes over the dribbling
        # The slow clients were still there all along.
        assert sum(_still_open(sock) for sock in slow) == SLOW_CLIENTS
    finally:
        stop.set()
        if dribbler.is_alive():
            dribbler.join(5)
        for sock in slow:
            sock.close()


def _still_open(sock: socket.socket) -> bool:
    try:
        sock.send(b"x")
        return True
    except OSError:
        return False


# -- kill -9, SIGSTOP and a Redis restart during a run -----------------------------------------------------

#: Jobs submitted over HTTP during the run, at least.
TOTAL = 2000
#: The whole test, from the first process started to the last check.
BUDGET = 60.0


@dataclass
class Traffic:
    """What the HTTP clients sent and were answered."""

    accepted: list[str] = field(default_factory=list)
    #: Every status answered, by method.
    answers: dict[str, set[int]] = field(default_factory=lambda: {"POST": set(), "GET": set()})
    refused: threading.Event = field(default_factory=threading.Event)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def request(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = "application/json"
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def clients(port: int, traffic: Traffic, *, count: int, enough: threading.Event) -> list[threading.Thread]:
    """Threads that submit jobs until ``enough`` is set, each with a request id resent after a 503
    until it is taken (the idempotent submit), and poll a job now and then."""

    def run() -> None:
        try:
            n = 0
            while not enough.is_set():
                job_id = str(uuid.uuid4())
                while True:
                    status = request(port, "POST", "/work", {"seconds": 0.005}, {"X-Async-Request-Id": job_id})
                    with traffic.lock:
                        traffic.answers["POST"].add(status)
                    if status in (200, 202):
                        with traffic.lock:
                            traffic.accepted.append(job_id)
                        break
                    if status != 503:
                        traffic.problems.append(f"POST answered {status}")
                        return
                    traffic.refused.set()
                    enough.wait(POLL)  # allow-sleep: Redis (another process) is down; resend shortly
                n += 1
                if n % 10 == 0:
                    status = request(port, "GET", f"/jobs/{random.choice(traffic.accepted)}")
                    with traffic.lock:
                        traffic.answers["GET"].add(status)
                # Paced, so that the stream lasts through the kill, the stop and the outage.
                enough.wait(0.004)  # allow-sleep: paces the submits
        except Exception as exc:
            traffic.problems.append(f"client failed: {exc!r}")

    return [threading.Thread(target=run, name=f"client-{n}") for n in range(count)]


def patient(call: Callable[[], Any]) -> Callable[[], Any]:
    """``call``, answering ``None`` while Redis is down (the test's own reads wait it out too)."""

    def attempt() -> Any:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            return None

    return attempt


def test_kills_stops_and_a_redis_restart_lose_no_job_and_write_nothing_stale(
    own_redis_server: RedisServer, prefix: str, processes: Processes, submitter: Submitter
) -> None:
    require_gunicorn()
    deadline = time.monotonic() + BUDGET

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    server = own_redis_server
    recorded = Records(server.client, prefix)
    ae, app = submitter(server.url, prefix)
    _, port = processes.gunicorn(server.url, prefix, ["-w", "2", "--threads", "4"], WORKER=False)
    workers = [processes.worker(server.url, prefix, name=f"worker-{n}", log_level="WARNING") for n in range(3)]
    traffic = Traffic()
    enough = threading.Event()
    threads = clients(port, traffic, count=4, enough=enough)
    for thread in threads:
        thread.start()
    try:
        completions = patient(recorded.completion_count)
        wait_until(lambda: (completions() or 0) >= 300, left(), "300 jobs done")
        # kill -9 one worker process in the middle of its jobs; another takes its place.
        workers[0].signal(signal.SIGKILL)
        workers[0].popen.wait(10)
        workers.append(processes.worker(server.url, prefix, name="replacement", log_level="WARNING"))

        # SIGSTOP the process running a held attempt, until that job is done elsewhere; then let it
        # go on, so its late result arrives after the newer attempt's.
        held = ae.submit("Hold", {"hold": [1]}, app=app).id
        stopped_pid = recorded.event(left(), event="started", job=held, attempt=1)["pid"]
        os.kill(stopped_pid, signal.SIGSTOP)
        wait_for_status(ae, app, held, JobStatus.COMPLETED, left())
        recorded.open_gate(held)
        os.kill(stopped_pid, signal.SIGCONT)
        recorded.event(left(), event="discarded", job=held, pid=stopped_pid)

        # Redis goes away under load (everything it acknowledged is on disk) and comes back.
        server.stop()
        assert traffic.refused.wait(left()), "no submit was refused while Redis was down"
        server.start()

        wait_until(lambda: len(traffic.accepted) >= TOTAL, left(), f"{TOTAL} jobs accepted")
        enough.set()
        for thread in threads:
            thread.join(left())
        assert not any(thread.is_alive() for thread in threads), "an HTTP client hung"
        assert not traffic.problems, traffic.problems[:5]
        accepted = set(traffic.accepted)
        total = len(accepted) + 1  # and the held job
        wait_until(lambda: statuses(ae, app) == {JobStatus.COMPLETED: total}, left(), f"all {total} jobs to complete")
        # A kill between a completion and its record loses the record (at most a batch of them).
        wait_until(lambda: recorded.completion_count() >= total - 20, left(), "the completion records")
    finally:
        enough.set()
        for thread in threads:
            thread.join(10)

    # HTTP answered while Redis was down, with 503s and never a 500.
    assert traffic.answers["POST"] <= {200, 202, 503}
    assert 503 in traffic.answers["POST"]
    assert traffic.answers["GET"] <= {200, 503}
    # No job lost: every accepted one completed, with the result of its newest attempt.
    runs, completions_by_job = recorded.runs(), recorded.completions()
    store = ae.get_store(app)
    for job_id in [*accepted, held]:
        job = store.get(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED, job
        newest = max(runs[job_id], key=lambda r: r.attempt)
        assert job.result == {"pid": newest.pid, "run": newest.run}, (job, runs[job_id])
        assert job.retry_count + 1 == newest.attempt
        # Completed once; a kill may fall between a completion and its record, hence "at most".
        assert completions_by_job.get(job_id, [(newest.run, newest.pid)])[:1] == [(newest.run, newest.pid)]
        assert len(completions_by_job.get(job_id, [])) <= 1
    # The kill and the stop did cut attempts short: some jobs ran more than once.
    assert any(len(job_runs) > 1 for job_runs in runs.values())
    assert all(w.alive() for w in workers[1:])


# -- retries back off as documented ----------------------------------------------------------------------

MAX_RETRIES = 3  # the Flaky handler's
JOBS = 40


def documented_delay(retry: int) -> float:
    """``min(RETRY_DELAY_BASE * 2**retry, RETRY_MAX_DELAY)`` with the settings the processes get."""
    return float(min(FAST["RETRY_DELAY_BASE"] * 2**retry, FAST["RETRY_MAX_DELAY"]))


def test_random_failures_end_with_the_documented_attempts_and_delays(
    redis_server: RedisServer, prefix: str, processes: Processes, records: Records, submitter: Submitter
) -> None:
    ae, app = submitter(redis_server.url, prefix)
    rng = random.Random(f"{prefix}")
    # Each attempt fails with a chance of one half: some jobs succeed at once, some after retries,
    # some fail every attempt.
    plans = {n: [attempt for attempt in range(1, MAX_RETRIES + 2) if rng.random() < 0.5] for n in range(JOBS)}
    plans[0] = [1, 2, 3, 4]  # at least one of each outcome
    plans[1] = []
    ids = {ae.submit("Flaky", {"fail": plan}, app=app).id: plan for plan in plans.values()}
    for n in range(2):
        processes.worker(redis_server.url, prefix, name=f"worker-{n}", log_level="WARNING")

    wait_until(
        lambda: sum(c for s, c in statuses(ae, app).items() if s.is_final) == JOBS, 30, f"all {JOBS} jobs to finish"
    )

    runs = records.runs()
    for job_id, plan in ids.items():
        job = get_job(ae, app, job_id)
        succeeded_at = next((a for a in range(1, MAX_RETRIES + 2) if a not in plan), None)
        attempts = succeeded_at if succeeded_at is not None else MAX_RETRIES + 1
        job_runs = sorted(runs[job_id], key=lambda r: r.attempt)
        assert [r.attempt for r in job_runs] == list(range(1, attempts + 1)), (plan, job_runs)
        assert job.retry_count == attempts - 1
        if succeeded_at is not None:
            assert job.status is JobStatus.COMPLETED
            assert job.error is None  # a later success clears the error
            assert job.result == {"pid": job_runs[-1].pid, "run": job_runs[-1].run}
        else:
            assert job.status is JobStatus.FAILED
            assert job.error is not None and job.error.code == "VALUEERROR"
            assert job.error.message == f"attempt {attempts} fails, as the test chose"
        for retry in range(1, attempts):
            gap = job_runs[retry].at - job_runs[retry - 1].at
            delay = documented_delay(retry)
            # Never early; late by at most a poll interval and a claim (idle workers look for due
            # retries every POLL_INTERVAL), plus the failed attempt's own few milliseconds.
            assert delay - 0.005 <= gap <= delay + FAST["POLL_INTERVAL"] + 0.3, (retry, gap, delay, job_runs)

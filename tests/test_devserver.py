"""Stopping ``flask run`` with a job running: what Ctrl+C says and does, on a real dev server.

Each test starts ``flask run`` (with and without the reloader) on a Redis store of its own key
prefix, submits a job that holds until it is given back, and sends SIGINT as a terminal's Ctrl+C
does. Readiness is a line the server prints, never a sleep; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from flask_asyncendpoints import JobStatus
from flask_asyncendpoints.stores.redis import RedisStore

from .conftest import _delete_prefix
from .ports import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


#: Runs ``python -m flask <args>`` with SIGINT as a terminal leaves it: a test run started in the
#: background (``cmd &`` in a script) ignores SIGINT, and a child would inherit that and never hear
#: a Ctrl+C. ``exec`` keeps the default disposition set here, and Python then installs its own.
_WITH_CTRL_C = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', 'flask', *sys.argv[1:]])"
)


class DevServer:
    """``flask run`` in a session of its own (so a signal can go to its whole group, as a terminal's
    does); its output is read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _WITH_CTRL_C, *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if match := regex.search(line):
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise AssertionError(f"no line matching {pattern!r}; the server printed:\n{self.output}")
                self._cond.wait(remaining)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def interrupt(self) -> None:
        """Ctrl+C: SIGINT to the server's whole process group (the reloader and its child alike)."""
        os.killpg(self.popen.pid, signal.SIGINT)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
        self._reader.join(5)


@pytest.fixture
def server_env(redis_url: str, key_prefix: str) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "FLASK_ASYNCENDPOINTS_STORE": redis_url,
        "FLASK_ASYNCENDPOINTS_KEY_PREFIX": key_prefix,
        "FLASK_ASYNCENDPOINTS_SHUTDOWN_TIMEOUT": "30",
        "FLASK_ASYNCENDPOINTS_MAX_CONCURRENCY": "1",
    }
    env.pop("WERKZEUG_RUN_MAIN", None)
    env.pop("WERKZEUG_SERVER_FD", None)
    yield env
    client = redis.Redis.from_url(redis_url)
    try:
        _delete_prefix(client, key_prefix)
    finally:
        client.close()


def submit(port: int) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/hold", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        job_id: str = json.load(response)["id"]
    return job_id


def status_in_store(redis_url: str, key_prefix: str, job_id: str) -> JobStatus:
    client = redis.Redis.from_url(redis_url)
    try:
        job = RedisStore(client, key_prefix=key_prefix).get(job_id)
        assert job is not None
        return job.status
    finally:
        client.close()


def start(env: dict[str, str], *flask_args: str) -> tuple[DevServer, int]:
    port = free_port()
    server = DevServer(["--app", "tests.apps.devserver_app", *flask_args, "run", "--port", str(port)], env)
    return server, port


def test_ctrl_c_says_what_it_waits_for_and_a_second_stops_at_once(
    server_env: dict[str, str], redis_url: str, key_prefix: str
) -> None:
    server, port = start(server_env)
    try:
        server.wait_for(r"Running on http://127\.0\.0\.1")
        job_id = submit(port)
        server.wait_for(f"job {job_id} started")

        server.interrupt()
        server.wait_for(r"waiting up to 30 s for 1 running job\(s\).*Ctrl\+C again", timeout=5)
        assert server.popen.poll() is None  # it does wait

        pressed = time.monotonic()
        server.interrupt()
        assert server.popen.wait(5) == 0
        elapsed = time.monotonic() - pressed
        server.stop()
    finally:
        server.stop()

    assert elapsed < 2.0, f"the second Ctrl+C took {elapsed:.2f} s"
    assert "1 unfinished job(s) given back" in server.output, server.output
    assert "Traceback" not in server.output and "Exception ignored" not in server.output, server.output
    # Given back, so due again at once rather than after its lease (300 s).
    assert status_in_store(redis_url, key_prefix, job_id) is JobStatus.QUEUED


def test_the_reloader_does_not_wait_for_jobs(server_env: dict[str, str], redis_url: str, key_prefix: str) -> None:
    server, port = start(server_env, "--debug")
    try:
        server.wait_for(r"Debugger PIN")
        job_id = submit(port)
        server.wait_for(f"job {job_id} started")

        pressed = time.monotonic()
        server.interrupt()
        server.popen.wait(10)
        elapsed = time.monotonic() - pressed
        server.stop()
    finally:
        server.stop()

    # Far below the 30 s SHUTDOWN_TIMEOUT a wait would take; loose enough for a loaded machine.
    assert elapsed < 10.0, f"Ctrl+C under the reloader took {elapsed:.2f} s"
    assert "waiting up to" not in server.output
    assert "Traceback" not in server.output, server.output
    assert status_in_store(redis_url, key_prefix, job_id) is JobStatus.QUEUED

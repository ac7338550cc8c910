"""Metrics across real processes: two gunicorn workers take the submits, a dedicated worker process
runs the jobs, and every scrape, whichever gunicorn worker answers it, shows the whole run.

The processes share one ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), as
the monitoring docs tell users to set up: the submits are counted in the gunicorn workers, the
starts, retries, completions and failures in the worker process, and a scrape adds up all of their
files. The gauges come from the store (a real Redis server this test starts), so they are the same
whoever answers.

What this proves: on one machine, counters from every process that shares the directory add up,
whichever process serves the scrape. It does not cover several machines (each has its own
directory and is scraped on its own; Prometheus adds them up).
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from flask_asyncendpoints import JobStatus

from .ports import free_port
from .test_metrics import Samples, events, parse, value
from .test_processes import (  # noqa: F401 - prefix, processes, redis_server, submitter are fixtures
    APP,
    GUNICORN_CONF,
    Processes,
    RedisServer,
    Submitter,
    prefix,
    processes,
    redis_server,
    require,
    statuses,
    submitter,
    wait_until,
)

pytestmark = pytest.mark.slow

pytest.importorskip("prometheus_client")

SUBMITS = 40
FAILING = 6


def request(port: int, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], str]:
    """One request on a new connection (so either gunicorn worker may take it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def test_every_process_answers_the_whole_runs_figures(
    # The fixtures imported from test_processes (ruff reads the names as redefined).
    redis_server: RedisServer,  # noqa: F811
    prefix: str,  # noqa: F811
    processes: Processes,  # noqa: F811
    submitter: Submitter,  # noqa: F811
    tmp_path: Path,
) -> None:
    require(importlib.util.find_spec("gunicorn") is not None, "gunicorn")
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()  # empty at the start, as prometheus-client's docs ask
    env = processes.env(redis_server.url, prefix, hold=False, METRICS_URL="/metrics", WORKER=False)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    worker = processes.start(
        "worker", [sys.executable, "-m", "flask", "--app", APP, "asyncendpoints", "worker"], dict(env)
    )
    worker.wait_for(r"^worker \S+ running \d+ thread")
    port = free_port()
    web = processes.start(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(GUNICORN_CONF),
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            f"{APP}:app",
        ],
        dict(env),
    )
    web.wait_for(r"Booting worker with pid", count=2)
    web.wait_for(r"Listening at: http://127\.0\.0\.1:")

    for n in range(SUBMITS):
        assert request(port, "POST", "/work", {"seconds": 0, "n": n})[0] == 202
    for n in range(FAILING):
        assert request(port, "POST", "/fail", {"n": n})[0] == 202
    ae, app = submitter(redis_server.url, prefix)
    finished = {JobStatus.COMPLETED: SUBMITS, JobStatus.FAILED: FAILING}
    wait_until(lambda: statuses(ae, app) == finished, 60, f"the run to end as {finished}")

    expected = {
        ("Work", "submitted"): SUBMITS,  # counted in the gunicorn workers
        ("Work", "started"): SUBMITS,  # the rest in the worker process
        ("Work", "completed"): SUBMITS,
        ("Fail", "submitted"): FAILING,
        ("Fail", "started"): 2 * FAILING,
        ("Fail", "retried"): FAILING,
        ("Fail", "failed"): FAILING,
    }
    store = ae.get_store(app)
    answered_by: set[str] = set()

    def scrape() -> bool:
        status, headers, text = request(port, "GET", "/metrics")
        assert status == 200, text
        answered_by.add(headers["x-served-by"])
        check(parse(text), expected, store)  # every scrape, whoever answers it
        return len(answered_by) == 2

    wait_until(scrape, 60, "both gunicorn workers to answer a scrape")
    assert not answered_by & {str(worker.pid)}


def check(samples: Samples, expected: dict[tuple[str, str], int], store: Any) -> None:
    assert events(samples) == expected
    count = "asyncendpoints_job_duration_seconds_count"
    assert value(samples, count, job_name="Work", outcome="completed") == expected[("Work", "completed")]
    assert value(samples, count, job_name="Fail", outcome="failed") == expected[("Fail", "failed")]
    assert value(samples, "asyncendpoints_store_up") == 1
    assert value(samples, "asyncendpoints_jobs", status="Completed") == expected[("Work", "completed")]
    assert value(samples, "asyncendpoints_jobs", status="Failed") == expected[("Fail", "failed")]
    assert value(samples, "asyncendpoints_jobs_in_progress") == 0
    # The cluster-wide figures of the monitoring API.
    completed = sum(p.completed for p in store.throughput().minutes)
    assert completed == expected[("Work", "completed")]
    assert value(samples, "asyncendpoints_jobs_finished_last_hour", outcome="completed") == completed
    assert value(samples, "asyncendpoints_workers") == len(store.workers()) == 1

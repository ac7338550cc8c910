"""The app that ``tests/test_processes.py`` runs in real processes (``flask … worker``, ``gunicorn``).

Configured by the environment: every ``ASYNCENDPOINTS_*`` key from ``FLASK_ASYNCENDPOINTS_…``,
``FLASK_PROCESS_APP_HOLD=false`` to make ``Hold`` jobs run straight through in this process, and
``FLASK_PROCESS_APP_CRASH_IN_CHILD=true`` to make the app fail to load in every worker process a
supervisor starts (``worker --processes``), but not in the supervisor;
``FLASK_PROCESS_APP_RECORDS=redis://…`` for where the records go when the store is not Redis, and
``FLASK_PROCESS_APP_TOUCH_STORE=true`` to use the store as the app is made.

Handlers record what they do in the store's Redis (or that one), under ``<prefix>-test:`` (outside
the library's ``<prefix>:`` keys), with writes that are safe to retry, so a test can count
executions exactly:

``<prefix>-test:runs``          hash   one field ``<job id>/<run id>`` per handler execution; the value is
                                       JSON ``{"pid", "attempt", "at", "thread"}`` (``at``: epoch seconds at
                                       start; ``thread``: the name of the thread that ran it).
``<prefix>-test:completions``   hash   one field ``<job id>/<run id>`` per completion the store accepted
                                       (from the ``job_finished`` signal); the value is the pid.
``<prefix>-test:events``        list   JSON ``{"event": "started", ...}`` when a ``Hold`` job starts and
                                       ``{"event": "discarded", ...}`` when an attempt's outcome was not stored.
``<prefix>-test:gate:<job id>``  list   a ``Hold`` attempt waits until something is pushed here.

Every result is ``{"pid": …, "run": <run id>}``, so a test can tell which execution's result was stored.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any

import redis
from flask import Flask, Response, current_app
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from flask_asyncendpoints import AsyncEndpoints, Job, JobContext, JobStatus
from flask_asyncendpoints.signals import job_finished
from flask_asyncendpoints.supervisor import CHILD_ENV

ae = AsyncEndpoints()

#: How long a held attempt waits for its gate at most (seconds): longer than any test.
GATE_TIMEOUT = 120


def record_prefix(app: Flask) -> str:
    """The prefix of the keys this app's handlers write: next to the library's, never under it."""
    return f"{app.config['ASYNCENDPOINTS_KEY_PREFIX']}-test"


def recorder(app: Flask) -> redis.Redis[Any]:
    """This app's client for the test records.

    It retries through a Redis restart, so a record of something that happened is not lost to a
    brief outage; runs and completions are hash fields named by a fresh run id, so a retried write
    cannot count one twice.
    """
    client: redis.Redis[Any] = app.extensions["process_app.recorder"]
    return client


def _record_run(ctx: JobContext) -> str:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    run = uuid.uuid4().hex
    entry = {"pid": os.getpid(), "attempt": ctx.attempt, "at": time.time(), "thread": threading.current_thread().name}
    recorder(app).hset(f"{record_prefix(app)}:runs", f"{ctx.job_id}/{run}", json.dumps(entry))
    return run


def _event(app: Flask, **event: Any) -> None:
    recorder(app).rpush(f"{record_prefix(app)}:events", json.dumps({**event, "pid": os.getpid(), "at": time.time()}))


@ae.handler("Noop", max_retries=10)
def noop(ctx: JobContext) -> dict[str, Any]:
    return {"pid": os.getpid(), "run": _record_run(ctx)}


@ae.handler("Work", max_retries=10)
def work(ctx: JobContext) -> dict[str, Any]:
    """Takes ``{"seconds": s}`` of (simulated, cancelable) work."""
    run = _record_run(ctx)
    ctx.cancelled.wait(float((ctx.request or {}).get("seconds", 0.0)))
    return {"pid": os.getpid(), "run": run}


@ae.handler("Hold", max_retries=10)
def hold(ctx: JobContext) -> dict[str, Any]:
    """Waits for its gate; ``{"hold": [1]}`` holds only the listed attempts (default: every one).

    The wait ignores ``ctx.cancelled`` on purpose: the tests need an attempt that tries to finish
    after it lost its lease.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    run = _record_run(ctx)
    _event(app, event="started", job=ctx.job_id, attempt=ctx.attempt, run=run)
    attempts = (ctx.request or {}).get("hold")
    if app.config["PROCESS_APP_HOLD"] and (attempts is None or ctx.attempt in attempts):
        recorder(app).blpop([f"{record_prefix(app)}:gate:{ctx.job_id}"], timeout=GATE_TIMEOUT)
    return {"pid": os.getpid(), "run": run}


@ae.handler("Flaky", max_retries=3)
def flaky(ctx: JobContext) -> dict[str, Any]:
    """Fails the attempts listed in ``{"fail": [1, 2]}`` (chosen at random by the test), else succeeds."""
    run = _record_run(ctx)
    if ctx.attempt in (ctx.request or {}).get("fail", ()):
        raise ValueError(f"attempt {ctx.attempt} fails, as the test chose")
    return {"pid": os.getpid(), "run": run}


@ae.handler("Fail", max_retries=1)
def fail(ctx: JobContext) -> None:
    """Fails every attempt: retried once, then ``Failed``."""
    raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")


ae.route("/work", "Work", body=True)
ae.route("/fail", "Fail", body=True)
ae.route("/hold", "Hold", body=True)


def _on_finished(sender: Flask, job: Job | None, job_id: str, **extra: Any) -> None:
    if job is None:
        _event(sender, event="discarded", job=job_id)
    elif job.status is JobStatus.COMPLETED:
        recorder(sender).hset(f"{record_prefix(sender)}:completions", f"{job_id}/{job.result['run']}", os.getpid())


def _served_by(response: Response) -> Response:
    response.headers["X-Served-By"] = str(os.getpid())
    return response


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment; ``config`` overrides it."""
    app = Flask(__name__)
    app.config["PROCESS_APP_HOLD"] = True
    app.config["PROCESS_APP_CRASH_IN_CHILD"] = False
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    if app.config["PROCESS_APP_CRASH_IN_CHILD"] and CHILD_ENV in os.environ:
        raise RuntimeError("this worker process fails at start, as FLASK_PROCESS_APP_CRASH_IN_CHILD asks")
    ae.init_app(app)
    if app.config.get("PROCESS_APP_TOUCH_STORE"):
        # Use the store at once (gunicorn --preload: in the master, before it forks the workers).
        ae.get_store(app).counts()
    store_url = app.config["ASYNCENDPOINTS_STORE"]
    # The records go to the store's Redis, or to the Redis that FLASK_PROCESS_APP_RECORDS names
    # (for a store that is not Redis).
    records_url = app.config.get("PROCESS_APP_RECORDS") or store_url
    if isinstance(records_url, str) and records_url.startswith("redis://"):
        # No socket timeout: a held attempt blocks in BLPOP for as long as its gate stays shut.
        app.extensions["process_app.recorder"] = redis.Redis.from_url(
            records_url,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=300),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError],
        )
        if app.config["ASYNCENDPOINTS_WORKER"]:
            job_finished.connect(_on_finished, sender=app, weak=False)
    app.after_request(_served_by)
    return app


app = create_app()

"""What the test apps share: how an app is built from the environment, and the records its handlers write.

:func:`build_app` binds an extension (with its handlers) to an app configured by the environment:
every ``ASYNCENDPOINTS_*`` key from ``FLASK_ASYNCENDPOINTS_…``, and the apps' own keys from
``FLASK_PROCESS_APP_…``: ``FLASK_PROCESS_APP_HOLD=false`` to make ``Hold`` jobs run straight through,
``FLASK_PROCESS_APP_CRASH_IN_CHILD=true`` to make the app fail to load in every worker process a
supervisor starts (``worker --processes``), but not in the supervisor;
``FLASK_PROCESS_APP_RECORDS=redis://…`` for where the records go when the store is not Redis, and
``FLASK_PROCESS_APP_TOUCH_STORE=true`` to use the store as the app is made.

Handlers record what they do in the store's Redis (or that one), under ``<prefix>-test:`` (outside
the library's ``<prefix>:`` keys), with writes that are safe to retry, so a test can count
executions exactly:

``<prefix>-test:runs``          hash   one field ``<job id>/<run id>`` per handler execution
                                       (:func:`record_run`); the value is JSON ``{"pid", "attempt", "at",
                                       "thread", "seq"}`` (``at``: epoch seconds at start; ``thread``: the
                                       name of the thread that ran it; ``seq``: the execution's number in
                                       its process, in the order they started).
``<prefix>-test:completions``   hash   one field ``<job id>/<run id>`` per completion the store accepted
                                       (from the ``job_finished`` signal); the value is the pid.
``<prefix>-test:events``        list   JSON ``{"event": …, "pid", "at", …}`` (:func:`event`); one with
                                       ``"event": "discarded"`` when an attempt's outcome was not stored.

Every result is ``{"pid": …, "run": <run id>}``, so a test can tell which execution's result was stored.
"""

from __future__ import annotations

import itertools
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

#: Where an app keeps its client for the records, in ``app.extensions``.
RECORDER = "process_app.recorder"

#: Numbers this process's handler executions as they start (``seq`` in the records of runs).
_executions = itertools.count(1)


def record_prefix(app: Flask) -> str:
    """The prefix of the keys this app's handlers write: next to the library's, never under it."""
    return f"{app.config['ASYNCENDPOINTS_KEY_PREFIX']}-test"


def recorder(app: Flask) -> redis.Redis[Any]:
    """This app's client for the test records.

    It retries through a Redis restart, so a record of something that happened is not lost to a
    brief outage; runs and completions are hash fields named by a fresh run id, so a retried write
    cannot count one twice.
    """
    client: redis.Redis[Any] = app.extensions[RECORDER]
    return client


def record_run(ctx: JobContext) -> str:
    """Record one execution of a handler as it starts; its run id."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    run = uuid.uuid4().hex
    entry = {
        "pid": os.getpid(),
        "attempt": ctx.attempt,
        "at": time.time(),
        "thread": threading.current_thread().name,
        "seq": next(_executions),
    }
    recorder(app).hset(f"{record_prefix(app)}:runs", f"{ctx.job_id}/{run}", json.dumps(entry))
    return run


def event(app: Flask, **members: Any) -> None:
    """Push an event (with this process's pid and the time) to ``<prefix>-test:events``."""
    recorder(app).rpush(f"{record_prefix(app)}:events", json.dumps({**members, "pid": os.getpid(), "at": time.time()}))


def _on_finished(sender: Flask, job: Job | None, job_id: str, **extra: Any) -> None:
    if job is None:
        event(sender, event="discarded", job=job_id)
    elif job.status is JobStatus.COMPLETED:
        recorder(sender).hset(f"{record_prefix(sender)}:completions", f"{job_id}/{job.result['run']}", os.getpid())


def _served_by(response: Response) -> Response:
    response.headers["X-Served-By"] = str(os.getpid())
    return response


def build_app(import_name: str, extension: AsyncEndpoints, config: dict[str, Any] | None = None) -> Flask:
    """An app configured by the environment (``config`` overrides it), bound to ``extension``.

    :param import_name: the app's import name (the module of its handlers).
    :param extension: the extension to bind, with the handlers registered on it.
    :param config: config keys over the environment's.
    """
    app = Flask(import_name)
    app.config["PROCESS_APP_HOLD"] = True
    app.config["PROCESS_APP_CRASH_IN_CHILD"] = False
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    if app.config["PROCESS_APP_CRASH_IN_CHILD"] and CHILD_ENV in os.environ:
        raise RuntimeError("this worker process fails at start, as FLASK_PROCESS_APP_CRASH_IN_CHILD asks")
    extension.init_app(app)
    if app.config.get("PROCESS_APP_TOUCH_STORE"):
        # Use the store at once (gunicorn --preload: in the master, before it forks the workers).
        extension.get_store(app).counts()
    store_url = app.config["ASYNCENDPOINTS_STORE"]
    # The records go to the store's Redis, or to the Redis that FLASK_PROCESS_APP_RECORDS names
    # (for a store that is not Redis).
    records_url = app.config.get("PROCESS_APP_RECORDS") or store_url
    if isinstance(records_url, str) and records_url.startswith("redis://"):
        # No socket timeout: a held attempt blocks in BLPOP for as long as its gate stays shut.
        app.extensions[RECORDER] = redis.Redis.from_url(
            records_url,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=300),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError],
        )
        if app.config["ASYNCENDPOINTS_WORKER"]:
            job_finished.connect(_on_finished, sender=app, weak=False)
    app.after_request(_served_by)
    return app

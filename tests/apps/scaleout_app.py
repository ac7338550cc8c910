"""The app that ``tests/test_processes_scaleout.py`` runs in worker processes: named queues and a recurring job.

Built by :func:`tests.apps.common.build_app` as ``process_app`` is (configured by the environment,
``ASYNCENDPOINTS_SCHEDULES`` included, with the records described there), with handlers that name
queues:

``High``     queue ``high``      records its run and returns ``{"pid", "run"}``
``Default``  queue ``default``   the same
``Tick``     queue ``default``   the same, for a recurring job

With ``FLASK_PROCESS_APP_HOLD`` (the default), the first job each process runs pushes a
``{"event": "started", "job": …}`` event and waits until something is pushed to
``<prefix>-test:gate:<job id>``, as ``process_app``'s ``Hold`` does: a test starts every process
before any of them runs the rest. Besides, a process running a worker records each job it creates,
a recurring occurrence's included:

``<prefix>-test:submitted``  hash  one field ``<job id>/<uuid>`` per ``job_submitted`` signal; the value
                                   is the pid of the process that created the job.
"""

from __future__ import annotations

import itertools
import os
import uuid
from typing import Any

from flask import Flask, current_app

from flask_asyncendpoints import AsyncEndpoints, Job, JobContext
from flask_asyncendpoints.signals import job_submitted

from .common import RECORDER, build_app, event, record_prefix, record_run, recorder

ae = AsyncEndpoints()


#: How long the first job waits for its gate at most (seconds): longer than any test.
GATE_TIMEOUT = 120

#: Counts the jobs this process has started: the first one is held.
_started = itertools.count()


def _run(ctx: JobContext) -> dict[str, Any]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    run = record_run(ctx)
    if next(_started) == 0 and app.config["PROCESS_APP_HOLD"]:
        event(app, event="started", job=ctx.job_id, run=run)
        recorder(app).blpop([f"{record_prefix(app)}:gate:{ctx.job_id}"], timeout=GATE_TIMEOUT)
    return {"pid": os.getpid(), "run": run}


ae.handler("High", queue="high", max_retries=10)(_run)
ae.handler("Default", max_retries=10)(_run)
ae.handler("Tick", max_retries=10)(_run)


def _on_submitted(sender: Flask, job: Job, **extra: Any) -> None:
    # A field per signal (never a counter), so a write the recorder retries cannot count one twice.
    recorder(sender).hset(f"{record_prefix(sender)}:submitted", f"{job.id}/{uuid.uuid4().hex}", os.getpid())


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment; ``config`` overrides it."""
    app = build_app(__name__, ae, config)
    if app.config["ASYNCENDPOINTS_WORKER"] and RECORDER in app.extensions:
        job_submitted.connect(_on_submitted, sender=app, weak=False)
    return app


app = create_app()

"""The app that ``tests/test_processes.py`` runs in real processes (``flask … worker``, ``gunicorn``).

Built by :func:`tests.apps.common.build_app`: configured by the environment (every
``ASYNCENDPOINTS_*`` key from ``FLASK_ASYNCENDPOINTS_…``, and the ``FLASK_PROCESS_APP_…`` keys
described there), its handlers writing the records described there, so a test can count executions
exactly. Besides:

``<prefix>-test:events``        list   JSON ``{"event": "started", ...}`` when a ``Hold`` job starts.
``<prefix>-test:gate:<job id>``  list   a ``Hold`` attempt waits until something is pushed here
                                       (unless ``FLASK_PROCESS_APP_HOLD=false``).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, current_app

from flask_asyncendpoints import AsyncEndpoints, JobContext

from .common import build_app, event, record_prefix, record_run, recorder

ae = AsyncEndpoints()

#: How long a held attempt waits for its gate at most (seconds): longer than any test.
GATE_TIMEOUT = 120


@ae.handler("Noop", max_retries=10)
def noop(ctx: JobContext) -> dict[str, Any]:
    return {"pid": os.getpid(), "run": record_run(ctx)}


@ae.handler("Work", max_retries=10)
def work(ctx: JobContext) -> dict[str, Any]:
    """Takes ``{"seconds": s}`` of (simulated, cancelable) work."""
    run = record_run(ctx)
    ctx.cancelled.wait(float((ctx.request or {}).get("seconds", 0.0)))
    return {"pid": os.getpid(), "run": run}


@ae.handler("Hold", max_retries=10)
def hold(ctx: JobContext) -> dict[str, Any]:
    """Waits for its gate; ``{"hold": [1]}`` holds only the listed attempts (default: every one).

    The wait ignores ``ctx.cancelled`` on purpose: the tests need an attempt that tries to finish
    after it lost its lease.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    run = record_run(ctx)
    event(app, event="started", job=ctx.job_id, attempt=ctx.attempt, run=run)
    attempts = (ctx.request or {}).get("hold")
    if app.config["PROCESS_APP_HOLD"] and (attempts is None or ctx.attempt in attempts):
        recorder(app).blpop([f"{record_prefix(app)}:gate:{ctx.job_id}"], timeout=GATE_TIMEOUT)
    return {"pid": os.getpid(), "run": run}


@ae.handler("Flaky", max_retries=3)
def flaky(ctx: JobContext) -> dict[str, Any]:
    """Fails the attempts listed in ``{"fail": [1, 2]}`` (chosen at random by the test), else succeeds."""
    run = record_run(ctx)
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


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment; ``config`` overrides it."""
    return build_app(__name__, ae, config)


app = create_app()

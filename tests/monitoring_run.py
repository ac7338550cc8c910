"""A mixed run for the monitoring tests (dashboard, browser, CLI, metrics): jobs in every status,
driven with ``run_once()`` and direct store calls on the fake clock, never by waiting.

After :func:`mixed_run` the store holds: 3 ``Completed`` (``Echo``), 1 ``Failed`` (``Boom``),
1 ``Scheduled`` for a retry (``Flaky``), 1 ``Canceled`` (``Echo``), 1 ``InProgress`` (``Slow``,
claimed by the app's worker id and never finished) and 2 ``Queued`` (``Echo``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, JobContext
from flask_asyncendpoints.stores import Store
from flask_asyncendpoints.worker import Worker

#: Headers sent with the ``Flaky`` job: the credential one is never stored.
FLAKY_HEADERS = {"Authorization": "Bearer s3cret-token", "X-Trace": "trace-42"}

#: The body of the ``Boom`` job: markup that must show as text, never as markup.
BOOM_BODY = {"note": "<script>alert('x')</script>"}

handler_logger = logging.getLogger("tests.monitoring_run")


@dataclass
class MixedRun:
    """The ids of the jobs of a :func:`mixed_run`, by what became of them."""

    completed: list[str] = field(default_factory=list)
    failed: str = ""
    retrying: str = ""
    canceled: str = ""
    running: str = ""
    running_token: str = ""
    queued: list[str] = field(default_factory=list)


def register_handlers(ae: AsyncEndpoints) -> None:
    """The handlers of the run (once per extension object)."""

    @ae.handler("Echo")
    def echo(ctx: JobContext) -> object:
        ctx.logger.info("echoing %s", ctx.request)
        return ctx.request

    @ae.handler("Boom", max_retries=0)
    def boom(ctx: JobContext) -> None:
        ctx.logger.warning("about to fail")
        raise ValueError("the input was <b>bad</b>")

    @ae.handler("Flaky", max_retries=2)
    def flaky(ctx: JobContext) -> None:
        raise ConnectionError("upstream refused")

    @ae.handler("Slow")
    def slow(ctx: JobContext) -> None:  # pragma: no cover - claimed by the test, never run
        raise AssertionError("the Slow job is claimed by the test and never run")


def mixed_run(ae: AsyncEndpoints, app: Flask, worker: Worker, store: Store) -> MixedRun:
    """Make the run described in the module docstring; the handlers must be registered."""
    run = MixedRun()
    with app.app_context():
        run.completed = [ae.submit("Echo", {"n": n}).id for n in range(3)]
        run.failed = ae.submit("Boom", BOOM_BODY).id
        run.retrying = ae.submit("Flaky", {"x": 1}, headers=FLAKY_HEADERS).id
        while worker.run_once():
            pass
        run.canceled = ae.submit("Echo", {"n": "canceled"}).id
        ae.cancel(run.canceled)
        run.running = ae.submit("Slow", {"rows": 10}).id
        [claimed] = store.claim(1, 300, worker_id=worker.worker_id)
        assert claimed.job.id == run.running
        run.running_token = claimed.token
        store.set_progress(run.running, claimed.token, 0.4, "4 of 10 rows")
        run.queued = [ae.submit("Echo", {"n": f"queued-{n}"}).id for n in range(2)]
    worker.beat()
    return run

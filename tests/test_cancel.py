"""A cancel reaches the running handler within milliseconds, and the job ends Canceled whatever it does.

Lease renewals are made rare here (``POLL_INTERVAL`` 30 s), so only the store's cancel
announcement can tell the handler in time; the test waits on events, never on a sleep. Every store
announces a cancel made through it in this process, so these run on every kind of store.
"""

from __future__ import annotations

import threading
import time

import pytest
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, CancelResult, JobContext, JobStatus
from flask_asyncendpoints.stores import Store

from .conftest import Finished


@pytest.fixture
def app_config() -> dict[str, object]:
    return {"ASYNCENDPOINTS_POLL_INTERVAL": 30.0, "ASYNCENDPOINTS_CLAIM_TIMEOUT": 300.0}


@pytest.fixture
def app_store(store: Store) -> Store:
    return store


class Long:
    """A handler that runs until it hears of a cancel, then returns (or raises) anyway."""

    def __init__(self, ae: AsyncEndpoints, *, raises: bool = False) -> None:
        self.running = threading.Event()
        self.heard = threading.Event()
        self.heard_after: float | None = None
        self.asked_at = 0.0
        self.raises = raises
        ae.handler("Long", max_retries=3)(self)

    def __call__(self, ctx: JobContext) -> str:
        self.running.set()
        if ctx.cancelled.wait(20):
            self.heard_after = time.monotonic() - self.asked_at
            self.heard.set()
        if self.raises:
            raise RuntimeError("cleanup failed after the cancel")
        return "finished anyway"


@pytest.mark.parametrize("raises", [False, True])
def test_cancel_reaches_the_running_handler_within_milliseconds(
    ae: AsyncEndpoints, app: Flask, finished: Finished, raises: bool
) -> None:
    long = Long(ae, raises=raises)
    ae.start_worker(app)
    with app.app_context():
        job_id = ae.submit("Long").id
    assert long.running.wait(10)

    long.asked_at = time.monotonic()
    with app.app_context():
        outcome, job = ae.cancel(job_id)
    assert outcome is CancelResult.REQUESTED
    assert job is not None and job.status is JobStatus.IN_PROGRESS

    assert long.heard.wait(5), "the handler never heard of the cancel"
    assert long.heard_after is not None
    # Well under the 30 s between renewals: the store's announcement, not a renewal, carried it.
    assert long.heard_after < 0.5

    done = finished.wait(job_id)
    assert done is not None
    assert done.status is JobStatus.CANCELED
    assert done.result is None
    assert done.retry_count == 0  # a failure after the request is no retry


def test_the_worker_stops_listening_at_shutdown(ae: AsyncEndpoints, app: Flask, app_store: Store) -> None:
    calls: list[str] = []
    original = app_store.watch_cancels

    def counting(callback):  # type: ignore[no-untyped-def]
        stop = original(callback)

        def unwatch() -> None:
            calls.append("unwatched")
            stop()

        calls.append("watched")
        return unwatch

    app_store.watch_cancels = counting  # type: ignore[method-assign]
    ae.start_worker(app)
    assert calls == ["watched"]
    ae.shutdown(app, timeout=5)
    assert calls == ["watched", "unwatched"]

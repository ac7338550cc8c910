"""Helpers for an app's tests: an app on the memory store without worker threads, a clock that
moves only when told to, and :func:`run_jobs`, which runs what is queued in the calling thread.

.. code-block:: python

    from flask_asyncendpoints.testing.helpers import FrozenClock, run_jobs, config_for_tests

    clock = FrozenClock()
    app = create_app(config_for_tests(clock=clock))
    response = app.test_client().post("/api/process-data", json={"data": "hi"})
    assert run_jobs(app) == 1
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, current_app

from ..errors import ConfigurationError
from ..state import NOT_INITIALIZED, app_state
from ..stores import MemoryStore

#: 2026-01-01T00:00:00Z, where a :class:`FrozenClock` starts unless told otherwise.
DEFAULT_START = 1_767_225_600.0

#: :func:`run_jobs` stops with an error after this many jobs: a handler that submits a job each
#: time it runs would otherwise keep it going forever.
MAX_JOBS = 10_000


class FrozenClock:
    """A clock for :class:`~flask_asyncendpoints.stores.MemoryStore` that moves only when told to.

    Timestamps, retry delays, leases and expiry all read it, so a test sees fixed times and makes a
    retry due by advancing the clock instead of waiting.

    :param start: the time it shows first: epoch seconds or an aware ``datetime``.
    """

    def __init__(self, start: float | datetime = DEFAULT_START) -> None:
        self.now = start.timestamp() if isinstance(start, datetime) else float(start)

    def __call__(self) -> float:
        """The time, in epoch seconds."""
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward; the new time."""
        self.now += seconds
        return self.now

    def set(self, when: float | datetime) -> None:
        """Set the clock to ``when`` (epoch seconds or an aware ``datetime``)."""
        self.now = when.timestamp() if isinstance(when, datetime) else float(when)


def config_for_tests(*, clock: FrozenClock | None = None, immediate: bool = False, **overrides: Any) -> dict[str, Any]:
    """Config for an app under test: ``TESTING``, a fresh memory store, no worker threads.

    Pass it to the app factory (``create_app(config_for_tests())``) or ``app.config.update`` it
    before ``init_app``; jobs then run only when the test calls :func:`run_jobs`.

    :param clock: the memory store's clock (default: the real time).
    :param immediate: set ``ASYNCENDPOINTS_IMMEDIATE``: every submit runs its job before it
        answers (see the Testing page for what that does not cover).
    :param overrides: more config keys, e.g. ``ASYNCENDPOINTS_DEFAULT_MAX_RETRIES=0``.
    """
    store = MemoryStore(clock=clock) if clock is not None else MemoryStore()
    return {
        "TESTING": True,
        "ASYNCENDPOINTS_STORE": store,
        "ASYNCENDPOINTS_WORKER": False,
        "ASYNCENDPOINTS_IMMEDIATE": immediate,
        **overrides,
    }


def run_jobs(app: Flask | None = None, *, now: float | None = None) -> int:
    """Run every job that is due, one batch after another in the calling thread, until none is.

    Each handler runs as the worker runs it (inside the app context, with retries scheduled and
    results stored), without threads, so a test sees the outcome as soon as this returns. Retries
    scheduled for later are not due yet: advance the store's clock and call it again. Timeouts are
    not enforced here.

    :param app: the app (default: the current app).
    :param now: the store's time to claim at (default: the store's clock).
    :returns: how many attempts ran.
    :raises ConfigurationError: when the extension is not initialized on the app, or jobs keep
        coming after :data:`MAX_JOBS`.
    """
    app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
    state = app_state(app)
    if state is None:
        raise ConfigurationError(NOT_INITIALIZED)
    worker = state.get_worker(app)
    ran = 0
    while True:
        batch = worker.run_once(now=now)
        if batch == 0:
            return ran
        ran += batch
        if ran >= MAX_JOBS:
            raise ConfigurationError(
                f"run_jobs() ran {ran} jobs and more keep coming: does a handler submit a job every time it runs?"
            )

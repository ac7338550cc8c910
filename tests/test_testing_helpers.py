"""The testing helpers and the pytest plugin, as the Testing page tells users to use them."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, ConfigurationError, JobContext, JobStatus
from flask_asyncendpoints.testing.helpers import FrozenClock, config_for_tests, run_jobs

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "_examples" / "testing"


def test_the_testing_pages_tests_pass(pytester: pytest.Pytester) -> None:
    # The files the Testing page shows, run as a user's project runs them.
    for name in ("conftest.py", "test_process_data.py"):
        shutil.copy(EXAMPLES / name, pytester.path / name)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def make(clock: FrozenClock | None = None, **config: object) -> tuple[AsyncEndpoints, Flask, list[int]]:
    ae = AsyncEndpoints()
    attempts: list[int] = []

    @ae.handler("Flaky", max_retries=1)
    def flaky(ctx: JobContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return ctx.attempt

    ae.route("/flaky", "Flaky")
    app = Flask("helpers")
    app.config.update(config_for_tests(clock=clock, **config))
    ae.init_app(app)
    return ae, app, attempts


def test_run_jobs_runs_what_is_due_and_a_retry_once_the_clock_reaches_it() -> None:
    clock = FrozenClock(datetime(2026, 5, 1, tzinfo=timezone.utc))
    ae, app, attempts = make(clock)
    job = ae.submit("Flaky", app=app)

    assert run_jobs(app) == 1
    scheduled = ae.get_job(job.id, app=app)
    assert scheduled is not None and scheduled.status is JobStatus.SCHEDULED
    assert run_jobs(app) == 0  # the retry is due 4 s later, on the store's clock

    clock.advance(4)
    assert run_jobs(app) == 1
    done = ae.get_job(job.id, app=app)
    assert done is not None and (done.status, done.result) == (JobStatus.COMPLETED, 2)
    assert attempts == [1, 2]


def test_run_jobs_uses_the_current_app() -> None:
    ae, app, _ = make()
    with app.app_context():
        ae.submit("Flaky")
        assert run_jobs() == 1


def test_run_jobs_needs_the_extension() -> None:
    with pytest.raises(ConfigurationError, match="init_app"):
        run_jobs(Flask("bare"))


def test_immediate_mode_runs_the_job_before_the_answer() -> None:
    ae, app, attempts = make(immediate=True, ASYNCENDPOINTS_DEFAULT_MAX_RETRIES=0)
    body = app.test_client().post("/flaky").get_json()
    # A failed attempt with a retry left is Scheduled: the retry is not run at once.
    assert (body["status"], body["retryCount"]) == ("Scheduled", 1)
    assert attempts == [1]
    job = ae.submit("Flaky", app=app)
    assert job.status is JobStatus.SCHEDULED
    assert ae.submit_many("Flaky", [None], app=app)[0].status is JobStatus.SCHEDULED  # type: ignore[union-attr]


def test_the_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock(100.0)
    assert clock() == clock() == 100.0
    assert clock.advance(2.5) == 102.5
    clock.set(datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert clock() == 1_767_225_600.0

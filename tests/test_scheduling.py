"""Delayed jobs and recurring jobs.

Delays are computed from this machine's clock, so the memory-store tests freeze it (freezegun) at
the fake clock's time, and those on every store drive the worker with ``run_once(now=…)`` from the
job's due time; recurring jobs are driven with ``run_schedules(now=…)``, several workers at once
where it matters, never with a sleep.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from marshmallow import Schema, fields

from flask_asyncendpoints import AsyncEndpoints, ConfigurationError, Job, JobContext, JobStatus
from flask_asyncendpoints.cli import cli
from flask_asyncendpoints.jobs import isoformat
from flask_asyncendpoints.schedules import Schedule
from flask_asyncendpoints.stores import MemoryStore, Store
from flask_asyncendpoints.worker import Worker

from .conftest import T0, FakeClock

#: 2026-01-01T03:00:00Z, the first occurrence of "0 3 * * *" after the fake clock's start.
THREE_AM = T0 + 3 * 3600


def at(epoch: float) -> str | None:
    return isoformat(datetime.fromtimestamp(epoch, timezone.utc))


@pytest.fixture
def frozen(clock: FakeClock) -> Any:
    """This machine's clock frozen at the fake clock's time (delays are computed from it)."""
    with freeze_time(datetime.fromtimestamp(clock.now, timezone.utc)) as frozen_time:
        yield frozen_time


def extra_worker(app: Flask) -> Worker:
    """Another worker on the app's store, as another process would run."""
    state = app.extensions["asyncendpoints"]
    return Worker(app, state.settings, state.store, state.registry.find_handler, schedules=state.schedules)


class TestDelayedJobs:
    def test_a_delayed_job_is_scheduled_until_due(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker, clock: FakeClock, frozen: Any
    ) -> None:
        ran: list[str] = []
        ae.handler("Remind")(lambda ctx: ran.append(ctx.job_id))
        with app.app_context():
            job = ae.submit("Remind", delay=600)
        body = client.get(f"/jobs/{job.id}").get_json()
        assert body["status"] == "Scheduled"
        assert body["retryCount"] == 0
        assert body["startedAt"] is None
        assert body["retryDelayUntil"] == at(clock.now + 600)

        clock.advance(599)
        assert worker.run_once() == 0
        clock.advance(1)
        assert worker.run_once() == 1
        assert ran == [job.id]
        assert client.get(f"/jobs/{job.id}").get_json()["status"] == "Completed"

    def test_an_eta_is_a_moment_with_a_time_zone(
        self, ae: AsyncEndpoints, app: Flask, worker: Worker, clock: FakeClock, frozen: Any
    ) -> None:
        ae.handler("Remind")(lambda ctx: None)
        when = datetime.fromtimestamp(clock.now, timezone(timedelta(hours=2))) + timedelta(hours=1)
        with app.app_context():
            job = ae.submit("Remind", eta=when)
            assert job.status is JobStatus.SCHEDULED
            assert job.retry_delay_until == when
            past = ae.submit("Remind", eta=when - timedelta(days=1))
            assert past.status is JobStatus.QUEUED
            with pytest.raises(ValueError, match="timezone-aware"):
                ae.submit("Remind", eta=datetime(2026, 1, 1, 4, 0))
            with pytest.raises(ValueError, match="not both"):
                ae.submit("Remind", delay=5, eta=when)
            with pytest.raises(ValueError, match="delay must be a number of seconds"):
                ae.submit("Remind", delay=-1)
            assert ae.submit("Remind", delay=0).status is JobStatus.QUEUED

    def test_a_route_delays_its_jobs(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, clock: FakeClock, frozen: Any
    ) -> None:
        ae.handler("Remind")(lambda ctx: None)
        ae.route("/later", "Remind", body=True, delay=lambda body: body.get("in"))
        ae.route("/in-a-minute", "Remind", endpoint="minute", delay=60)
        answer = client.post("/later", json={"in": 30})
        assert answer.status_code == 202
        assert answer.get_json()["status"] == "Scheduled"
        assert answer.get_json()["retryDelayUntil"] == at(clock.now + 30)
        assert client.post("/later", json={}).get_json()["status"] == "Queued"
        assert client.post("/in-a-minute").get_json()["retryDelayUntil"] == at(clock.now + 60)
        with pytest.raises(ConfigurationError, match="delay must be a number of seconds"):
            ae.route("/never", "Remind", endpoint="never", delay=-5)

    def test_a_delayed_job_can_be_canceled_while_it_waits(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, frozen: Any
    ) -> None:
        ae.handler("Remind")(lambda ctx: None)
        with app.app_context():
            job = ae.submit("Remind", delay=600)
        answer = client.delete(f"/jobs/{job.id}")
        assert answer.status_code == 200
        assert answer.get_json()["status"] == "Canceled"
        assert answer.get_json()["retryDelayUntil"] is None


class TestDelayedJobsOnEveryStore:
    @pytest.fixture
    def app_store(self, store: Store) -> Store:
        return store

    def test_a_delayed_job_waits_until_due_then_runs(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker
    ) -> None:
        ran: list[Any] = []
        ae.handler("Remind")(lambda ctx: ran.append(ctx.request))
        submitted_at = time.time()
        with app.app_context():
            later = ae.submit("Remind", {"n": "later"}, delay=600, priority=5)
            ae.submit("Remind", {"n": "now"})
        assert later.status is JobStatus.SCHEDULED
        assert later.retry_delay_until is not None
        due = later.retry_delay_until.timestamp()
        assert submitted_at + 600 <= due <= time.time() + 600
        body = client.get(f"/jobs/{later.id}").get_json()
        assert (body["status"], body["retryCount"], body["startedAt"]) == ("Scheduled", 0, None)
        assert body["retryDelayUntil"] == isoformat(later.retry_delay_until)

        # A second before it is due only the other job runs, whatever the delayed one's priority.
        assert worker.run_once(now=due - 1) == 1
        assert ran == [{"n": "now"}]
        assert worker.run_once(now=due + 0.001) == 1  # the record gives the due time to the microsecond
        assert ran == [{"n": "now"}, {"n": "later"}]
        assert client.get(f"/jobs/{later.id}").get_json()["status"] == "Completed"


class TestSchedule:
    def test_occurrences_in_utc_and_in_a_time_zone(self) -> None:
        utc = Schedule.create("nightly", cron="0 3 * * *")
        assert utc.next_after(T0) == THREE_AM
        assert utc.latest(THREE_AM) == THREE_AM
        assert utc.latest(THREE_AM - 1) == THREE_AM - 86400
        berlin = Schedule.create("nightly", cron="0 3 * * *", timezone="Europe/Berlin")
        assert berlin.next_after(T0) == THREE_AM - 3600  # 03:00 in Berlin is 02:00 UTC in winter
        assert utc.describe() == "At 03:00 every day"

    def test_the_occurrence_id_is_the_same_everywhere_and_differs_per_occurrence(self) -> None:
        one = Schedule.create("nightly", cron="0 3 * * *")
        assert one.occurrence_id(THREE_AM) == Schedule.create("nightly", cron="0  3 * * *").occurrence_id(THREE_AM)
        assert one.occurrence_id(THREE_AM) != one.occurrence_id(THREE_AM + 86400)
        assert one.occurrence_id(THREE_AM) != Schedule.create("other", cron="0 3 * * *").occurrence_id(THREE_AM)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"cron": "0 3 * *"}, "does not parse"),
            ({"cron": "61 * * * *"}, "does not parse"),
            ({"cron": ""}, "needs a cron expression"),
            ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "IANA name"),
            ({"cron": "* * * * *", "priority": 1.5}, "whole number"),
            ({"cron": "* * * * *", "missed_window": -1}, "≥ 0"),
        ],
    )
    def test_bad_schedules_say_what_is_wrong(self, options: dict[str, Any], message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            Schedule.create("bad", **options)


class TestRecurringJobsOnEveryStore:
    @pytest.fixture
    def app_store(self, store: Store) -> Store:
        return store

    def test_an_occurrence_is_enqueued_when_due(self, ae: AsyncEndpoints, app: Flask, app_store: Store) -> None:
        ae.handler("Report", queue="reports")(lambda ctx: ctx.request)
        ae.schedule("nightly", cron="0 3 * * *", job_name="Report", payload={"kind": "daily"}, priority=2)
        worker = ae.get_worker(app)
        # The latest occurrence before the start (yesterday 03:00) is 21 hours old: skipped.
        assert worker.run_schedules(now=T0) == []
        assert worker.run_schedules(now=THREE_AM - 1) == []
        [job] = worker.run_schedules(now=THREE_AM + 0.5)
        assert job.id == Schedule.create("nightly", cron="0 3 * * *").occurrence_id(THREE_AM)
        assert (job.name, job.payload.body, job.queue, job.priority) == ("Report", {"kind": "daily"}, "reports", 2)
        assert worker.run_schedules(now=THREE_AM + 60) == []
        assert app_store.occurrences() == {"nightly": THREE_AM}
        [tomorrow] = worker.run_schedules(now=THREE_AM + 86400)
        assert tomorrow.id != job.id

    def test_each_occurrence_is_enqueued_once_across_workers(
        self, ae: AsyncEndpoints, app: Flask, app_store: Store
    ) -> None:
        ae.handler("Tick")(lambda ctx: None)
        # No catching up at the first look: only the occurrence at T0 is at stake.
        ae.schedule("every-minute", cron="* * * * *", job_name="Tick", missed_window=0)
        workers = [extra_worker(app) for _ in range(8)]
        for w in workers:
            w.run_schedules(now=T0 - 30)  # each worker's first look
        barrier = threading.Barrier(len(workers))
        created: list[Job] = []
        lock = threading.Lock()

        def look(w: Worker) -> None:
            barrier.wait(5)
            jobs = w.run_schedules(now=T0 + 0.25)
            with lock:
                created.extend(jobs)

        threads = [threading.Thread(target=look, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(created) == 1
        assert app_store.counts()[JobStatus.QUEUED] == 1

    def test_even_past_the_claim_an_occurrence_makes_one_job(
        self, ae: AsyncEndpoints, app: Flask, app_store: Store
    ) -> None:
        ae.handler("Tick")(lambda ctx: None)
        schedule = ae.schedule("every-minute", cron="* * * * *", job_name="Tick", missed_window=0)
        first, second = extra_worker(app), extra_worker(app)
        first.run_schedules(now=T0 - 30)
        [job] = first.run_schedules(now=T0 + 1)
        # Another process whose claim somehow succeeded too (say, a store that lost the claim)
        # creates the same id: the job exists, nothing new is made.
        again, created = app_store.create(schedule.occurrence_id(T0), "Tick", job.payload, max_retries=3)
        assert (again.id, created) == (job.id, False)
        assert second.run_schedules(now=T0 + 2) == []  # the occurrence is claimed
        assert app_store.counts()[JobStatus.QUEUED] == 1

    def test_missed_occurrences_within_the_window_run_once(
        self, ae: AsyncEndpoints, app: Flask, app_store: Store
    ) -> None:
        ae.handler("Report")(lambda ctx: None)
        ae.schedule("nightly", cron="0 3 * * *", job_name="Report")
        # Workers were down at 03:00; one starts at 03:40 (within the default hour): it runs it now.
        [late] = extra_worker(app).run_schedules(now=THREE_AM + 40 * 60)
        assert late.id == Schedule.create("nightly", cron="0 3 * * *").occurrence_id(THREE_AM)
        # A second worker starting later finds it claimed.
        assert extra_worker(app).run_schedules(now=THREE_AM + 50 * 60) == []
        # After three days down, a worker starting at 05:00 runs none of the missed nights.
        assert extra_worker(app).run_schedules(now=THREE_AM + 3 * 86400 + 2 * 3600) == []
        assert app_store.counts()[JobStatus.QUEUED] == 1

    def test_an_occurrence_is_built_with_the_checks_of_every_submit(
        self, ae: AsyncEndpoints, app: Flask, app_store: Store, caplog: pytest.LogCaptureFixture
    ) -> None:
        # A schedule handed to a worker directly skips the registration's check: the job's payload
        # is still built by the one payload builder, which refuses it, and nothing is stored.
        ae.handler("Report")(lambda ctx: None)
        state = app.extensions["asyncendpoints"]
        bad = Schedule.create("nightly", cron="0 3 * * *", job_name="Report", payload={"file": "a\udcff"})
        worker = Worker(app, state.settings, app_store, state.registry.find_handler, schedules=[bad])
        worker.run_schedules(now=T0)
        with caplog.at_level(logging.ERROR, logger="flask_asyncendpoints"):
            assert worker.run_schedules(now=THREE_AM + 0.5) == []

        assert sum(app_store.counts().values()) == 0
        assert app_store.occurrences() == {"nightly": THREE_AM}  # claimed, so no other process tries
        (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "recurring job nightly: The request cannot be stored as UTF-8 JSON" in record.getMessage()
        assert "The occurrence is dropped." in record.getMessage()

    def test_the_jobs_run_like_any_other(self, ae: AsyncEndpoints, app: Flask) -> None:
        seen: list[Any] = []

        @ae.handler("Report")
        def report(ctx: JobContext) -> str:
            seen.append(ctx.request)
            return "done"

        ae.schedule("nightly", cron="0 3 * * *", job_name="Report", payload=[1, 2])
        worker = ae.get_worker(app)
        worker.run_schedules(now=T0)
        worker.run_schedules(now=THREE_AM)
        assert worker.run_once() == 1
        assert seen == [[1, 2]]


class TestRecurringJobs:
    def test_an_occurrence_that_finds_its_queue_full_waits_for_room(self, ae: AsyncEndpoints, clock: FakeClock) -> None:
        store = MemoryStore(clock=clock, max_pending=1)
        app = Flask("full")
        app.config.update(ASYNCENDPOINTS_WORKER=False)
        ae.init_app(app, store=store)
        ae.handler("Report")(lambda ctx: None)
        ae.schedule("nightly", cron="0 3 * * *", job_name="Report")
        with app.app_context():
            blocker = ae.submit("Report")
        w = extra_worker(app)
        w.run_schedules(now=T0)
        assert w.run_schedules(now=THREE_AM) == []
        # Claimed all the same: no other process takes it while it waits here.
        assert store.occurrences() == {"nightly": THREE_AM}
        assert extra_worker(app).run_schedules(now=THREE_AM + 1) == []
        # Retried every few seconds, not on every round of the maintenance thread.
        assert w.next_schedule_check() == THREE_AM + 5
        store.cancel(blocker.id, result_ttl=None)
        [job] = w.run_schedules(now=THREE_AM + 5)
        assert job.id == Schedule.create("nightly", cron="0 3 * * *").occurrence_id(THREE_AM)

    def test_the_missed_window_is_configurable_per_schedule(self, ae: AsyncEndpoints, app: Flask) -> None:
        ae.handler("Report")(lambda ctx: None)
        ae.schedule("strict", cron="0 3 * * *", job_name="Report", missed_window=0)
        ae.schedule("lenient", cron="0 3 * * *", job_name="Report", missed_window=6 * 3600)
        created = extra_worker(app).run_schedules(now=THREE_AM + 5 * 3600)
        assert [job.id for job in created] == [Schedule.create("lenient", cron="0 3 * * *").occurrence_id(THREE_AM)]

    def test_a_running_worker_that_slept_runs_only_the_latest_occurrence(self, ae: AsyncEndpoints, app: Flask) -> None:
        ae.handler("Tick")(lambda ctx: None)
        ae.schedule("hourly", cron="0 * * * *", job_name="Tick")
        w = extra_worker(app)
        w.run_schedules(now=T0 + 1)  # the midnight occurrence is 1 s old: run
        [job] = w.run_schedules(now=T0 + 5 * 3600 + 10)
        assert job.id == Schedule.create("hourly", cron="0 * * * *").occurrence_id(T0 + 5 * 3600)

    def test_schedules_from_the_config(self, ae: AsyncEndpoints) -> None:
        ae.handler("Report")(lambda ctx: None)
        app = Flask("scheduled")
        app.config.update(
            ASYNCENDPOINTS_WORKER=False,
            ASYNCENDPOINTS_SCHEDULES=[
                {"name": "nightly", "cron": "0 3 * * *", "job_name": "Report", "queue": "low"},
                {"name": "Report", "cron": "*/15 * * * *", "timezone": "Europe/Berlin"},
            ],
        )
        ae.init_app(app, store=MemoryStore())
        state = app.extensions["asyncendpoints"]
        assert [(s.name, s.job_name, s.queue) for s in state.schedules] == [
            ("nightly", "Report", "low"),
            ("Report", "Report", None),
        ]
        # The worker serves the queue the schedule names too.
        assert state.worker_queues().names == ("default", "low")
        with pytest.raises(ConfigurationError, match="exists already"):
            ae.schedule("nightly", cron="0 4 * * *", job_name="Report")

    @pytest.mark.parametrize(
        ("entry", "message"),
        [
            ({"name": "x", "cron": "* * * * *", "job_name": "Nobody"}, "has no handler"),
            ({"name": "x", "cron": "* * * * *", "job_name": "Report", "every": 5}, "unknown key"),
            ({"cron": "* * * * *", "job_name": "Report"}, "needs a 'name' and a 'cron'"),
            ({"name": "x", "cron": "bad", "job_name": "Report"}, "does not parse"),
            (
                {"name": "x", "cron": "* * * * *", "job_name": "Report", "payload": {"file": "a\udcff"}},
                r"cannot be stored as UTF-8 JSON: payload\['file'\] holds a lone UTF-16 surrogate",
            ),
        ],
    )
    def test_bad_config_schedules_fail_init_app(self, ae: AsyncEndpoints, entry: dict[str, Any], message: str) -> None:
        ae.handler("Report")(lambda ctx: None)
        app = Flask("scheduled")
        app.config.update(ASYNCENDPOINTS_SCHEDULES=[entry])
        with pytest.raises(ConfigurationError, match=message):
            ae.init_app(app, store=MemoryStore())

    def test_a_schedule_needs_a_handler_that_takes_its_payload(self, ae: AsyncEndpoints, app: Flask) -> None:
        class Body(Schema):
            kind = fields.String(required=True)

        ae.handler("Report", request_schema=Body)(lambda ctx: None)
        with pytest.raises(ConfigurationError, match="has no handler"):
            ae.schedule("nightly", cron="0 3 * * *")
        with pytest.raises(ConfigurationError, match="does not pass the request schema"):
            ae.schedule("nightly", cron="0 3 * * *", job_name="Report", payload={"size": 1})
        ae.schedule("nightly", cron="0 3 * * *", job_name="Report", payload={"kind": "daily"})
        with pytest.raises(ConfigurationError, match="exists already"):
            ae.schedule("nightly", cron="0 4 * * *", job_name="Report", payload={"kind": "daily"})

    @pytest.mark.parametrize(
        ("payload", "where"),
        [({"file": "a\udcff"}, "payload['file'] holds a lone UTF-16 surrogate"), ({"ratio": math.nan}, "is nan")],
    )
    def test_a_payload_that_cannot_be_stored_is_refused_at_registration(
        self, ae: AsyncEndpoints, app: Flask, payload: Any, where: str
    ) -> None:
        ae.handler("Report")(lambda ctx: None)
        with pytest.raises(ConfigurationError, match=re.escape(where)):
            ae.schedule("nightly", cron="0 3 * * *", job_name="Report", payload=payload)
        assert ae.get_worker(app).schedules == ()

    def test_the_cli_lists_schedules_with_their_last_and_next_run(
        self, ae: AsyncEndpoints, app: Flask, clock: FakeClock, frozen: Any
    ) -> None:
        runner = app.test_cli_runner()
        assert "no recurring jobs" in runner.invoke(cli, ["schedules"]).output
        ae.handler("Report", queue="reports")(lambda ctx: None)
        ae.schedule("nightly", cron="0 3 * * *", job_name="Report")
        result = runner.invoke(cli, ["schedules"])
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == [
            "nightly: 0 3 * * * (At 03:00 every day, UTC) -> Report on queue reports",
            "  last: never",
            f"  next: {at(THREE_AM)}",
        ]
        extra_worker(app).run_schedules(now=T0)
        extra_worker(app).run_schedules(now=THREE_AM + 5)
        frozen.move_to(datetime.fromtimestamp(THREE_AM + 5, timezone.utc))
        lines = runner.invoke(cli, ["schedules"]).output.splitlines()
        assert lines[1:] == [f"  last: {at(THREE_AM)}", f"  next: {at(THREE_AM + 86400)}"]

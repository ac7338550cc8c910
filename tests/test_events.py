"""Job events: one log record on ``flask_asyncendpoints.jobs`` and one signal per event, exactly once."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_asyncendpoints import AsyncEndpoints, JobContext, JobFailure, JobStatus
from flask_asyncendpoints import signals as sig
from flask_asyncendpoints.stores import MemoryStore, Store
from flask_asyncendpoints.worker import Worker

SIGNALS = {
    "submitted": sig.job_submitted,
    "started": sig.job_started,
    "retried": sig.job_retried,
    "completed": sig.job_completed,
    "failed": sig.job_failed,
    "recovered": sig.job_recovered,
    "canceled": sig.job_canceled,
}


class Events:
    """Every event signal and every record of the jobs logger, in order."""

    def __init__(self, app: Flask, caplog: pytest.LogCaptureFixture) -> None:
        self.app = app
        self.caplog = caplog
        self.signals: list[tuple[str, str, str, int, float | None]] = []
        self._receivers = []
        for event, signal in SIGNALS.items():

            def receive(sender: Flask, job: Any, job_id: str, event: str = event, **extra: Any) -> None:
                self.signals.append((event, job_id, job.status.value, extra["attempt"], extra["duration"]))

            signal.connect(receive, sender=app, weak=False)
            self._receivers.append((signal, receive))

    def logged(self) -> list[tuple[str, str, str, int]]:
        return [
            (r.event, r.job_id, r.status, r.attempt)  # type: ignore[attr-defined]
            for r in self.caplog.records
            if r.name == "flask_asyncendpoints.jobs"
        ]

    def sent(self) -> list[tuple[str, str, str, int]]:
        return [s[:4] for s in self.signals]

    def close(self) -> None:
        for signal, receive in self._receivers:
            signal.disconnect(receive, sender=self.app)


@pytest.fixture
def events(app: Flask, caplog: pytest.LogCaptureFixture) -> Iterator[Events]:
    caplog.set_level(logging.DEBUG, logger="flask_asyncendpoints.jobs")
    recorder = Events(app, caplog)
    yield recorder
    recorder.close()


class TestOnEveryStore:
    """Where an event comes from what the store answers: the same events on every store."""

    @pytest.fixture
    def app_store(self, store: Store) -> Store:
        return store

    def test_a_job_that_fails_then_succeeds(
        self, ae: AsyncEndpoints, app: Flask, worker: Worker, events: Events
    ) -> None:
        calls: list[int] = []

        @ae.handler("Flaky", queue="default")
        def flaky(ctx: JobContext) -> str:
            calls.append(ctx.attempt)
            if len(calls) == 1:
                raise ValueError("first attempt fails")
            return "ok"

        with app.app_context():
            job_id = ae.submit("Flaky").id
        worker.run_once()
        # An hour on, the retry is due on every store (the memory store's fake clock is behind).
        worker.run_once(now=time.time() + 3600)

        expected = [
            ("submitted", job_id, "Queued", 0),
            ("started", job_id, "InProgress", 1),
            ("retried", job_id, "Scheduled", 1),
            ("started", job_id, "InProgress", 2),
            ("completed", job_id, "Completed", 2),
        ]
        assert events.logged() == expected
        assert events.sent() == expected
        durations = {s[0]: s[4] for s in events.signals}
        assert durations["submitted"] is None
        assert durations["completed"] is not None and durations["completed"] >= 0

    def test_canceling_a_waiting_job_is_canceled_where_it_was_asked(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, events: Events
    ) -> None:
        ae.handler("Echo")(lambda ctx: None)
        with app.app_context():
            queued = ae.submit("Echo").id
            scheduled = ae.submit("Echo", delay=10**6).id
        assert client.delete(f"/jobs/{queued}").status_code == 200
        with app.app_context():
            ae.cancel(scheduled)
            ae.cancel(scheduled)  # finished already: no second event
        assert [e for e in events.sent() if e[0] == "canceled"] == [
            ("canceled", queued, "Canceled", 0),
            ("canceled", scheduled, "Canceled", 0),
        ]

    @pytest.mark.parametrize("ending", ["returns", "raises", "raises-for-good", "stops"])
    def test_a_running_job_asked_to_cancel_is_canceled_by_the_worker(
        self, ae: AsyncEndpoints, app: Flask, worker: Worker, events: Events, app_store: Store, ending: str
    ) -> None:
        from flask_asyncendpoints import JobCanceled

        @ae.handler("Long")
        def long(ctx: JobContext) -> str:
            ae.cancel(ctx.job_id)  # the client's DELETE, while the attempt runs
            if ending == "raises":
                raise ValueError("failed after the cancel request")
            if ending == "raises-for-good":
                raise JobFailure("no point retrying", retry=False)
            if ending == "stops":
                raise JobCanceled()
            return "a result nobody wants now"

        with app.app_context():
            job_id = ae.submit("Long").id
        worker.run_once()
        job = app_store.get(job_id)
        assert job is not None
        assert job.status is JobStatus.CANCELED
        assert job.result is None
        assert job.completed_at is not None
        assert [e for e in events.sent() if e[0] in ("canceled", "retried", "failed", "completed")] == [
            ("canceled", job_id, "Canceled", 1)
        ]

    def test_a_recovered_job_is_recovered_where_it_was_recovered(
        self, ae: AsyncEndpoints, app: Flask, worker: Worker, app_store: Store, events: Events
    ) -> None:
        ae.handler("Again", max_retries=1)(lambda ctx: None)
        ae.handler("Once", max_retries=0)(lambda ctx: None)
        with app.app_context():
            again = ae.submit("Again").id
            once = ae.submit("Once").id
        claimed_at = time.time()
        assert len(app_store.claim(2, 10, now=claimed_at)) == 2  # a worker that dies with both
        worker.recover_once(now=claimed_at + 11)
        recovered = [e for e in events.sent() if e[0] in ("recovered", "failed")]
        assert sorted(recovered) == sorted(
            [
                ("recovered", again, "Queued", 1),
                ("recovered", once, "Failed", 1),
                ("failed", once, "Failed", 1),
            ]
        )


def test_the_record_carries_the_job_as_attributes(
    ae: AsyncEndpoints, app: Flask, events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    ae.handler("Broken", max_retries=0, queue="low")(lambda ctx: 1 / 0)
    with app.app_context():
        job_id = ae.submit("Broken").id
    ae.get_worker(app).run_once()
    [failed] = [r for r in caplog.records if getattr(r, "event", None) == "failed"]
    assert failed.levelno == logging.ERROR
    assert (failed.job_id, failed.job_name, failed.queue, failed.attempt, failed.status) == (  # type: ignore[attr-defined]
        job_id,
        "Broken",
        "low",
        1,
        "Failed",
    )
    assert failed.error_code == "ZERODIVISIONERROR"  # type: ignore[attr-defined]
    assert isinstance(failed.duration, float)  # type: ignore[attr-defined]
    assert "failed for good after attempt 1: ZERODIVISIONERROR" in failed.getMessage()


def test_the_library_installs_no_handler_on_the_jobs_logger() -> None:
    assert logging.getLogger("flask_asyncendpoints.jobs").handlers == []


def test_a_resubmit_that_finds_its_job_is_no_event(
    ae: AsyncEndpoints, app: Flask, client: FlaskClient, events: Events
) -> None:
    ae.handler("Echo")(lambda ctx: None)
    ae.route("/echo", "Echo")
    key = {"X-Async-Request-Id": "0b0b6c1e-6a7f-4d1a-9f44-0c8a2d9e3b11"}
    first = client.post("/echo", headers=key).get_json()["id"]
    client.post("/echo", headers=key)
    assert events.sent() == [("submitted", first, "Queued", 0)]


def test_submit_many_is_one_event_per_job(ae: AsyncEndpoints, app: Flask, events: Events) -> None:
    ae.handler("Echo")(lambda ctx: None)
    with app.app_context():
        jobs = ae.submit_many("Echo", [1, 2, 3])
    assert events.sent() == [("submitted", job.id, "Queued", 0) for job in jobs if job is not None]


def test_a_receiver_that_raises_does_not_affect_the_job(
    ae: AsyncEndpoints, app: Flask, worker: Worker, memory_store: MemoryStore
) -> None:
    def broken(sender: Flask, **extra: Any) -> None:
        raise RuntimeError("metrics are down")

    sig.job_completed.connect(broken, sender=app)
    try:
        ae.handler("Echo")(lambda ctx: 1)
        with app.app_context():
            job_id = ae.submit("Echo").id
        worker.run_once()
    finally:
        sig.job_completed.disconnect(broken, sender=app)
    assert memory_store.get(job_id).status is JobStatus.COMPLETED  # type: ignore[union-attr]

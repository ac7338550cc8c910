"""The worker: retries, failures of every kind, timeouts, cancel, progress, shutdown.

Most tests drive ``run_once()`` with the fake clock; the threaded ones wait on events and on the
``job_finished`` signal, never on a sleep.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, current_app
from flask.testing import FlaskClient
from marshmallow import Schema, fields

from flask_asyncendpoints import AsyncEndpoints, JobCanceled, JobContext, JobFailure, JobStatus
from flask_asyncendpoints.config import Settings
from flask_asyncendpoints.jobs import JobPayload
from flask_asyncendpoints.stores import MemoryStore, Store
from flask_asyncendpoints.worker import Worker, retry_delay
from flask_asyncendpoints.worker.ledger import CancelEvent

from .conftest import FakeClock, Finished


def submit(ae: AsyncEndpoints, app: Flask, name: str, body: Any = None) -> str:
    with app.app_context():
        return ae.submit(name, body).id


def wire(client: FlaskClient, job_id: str) -> dict[str, Any]:
    return client.get(f"/jobs/{job_id}").get_json()  # type: ignore[no-any-return]


class Gate:
    """Registers a handler that reports it is running, then blocks until the test sets ``proceed``.

    :param strict: fail the attempt if ``proceed`` is not set within 10 s (else just return).
    """

    def __init__(self, ae: AsyncEndpoints, name: str, *, result: str, strict: bool = True, **options: Any) -> None:
        self.running = threading.Event()
        self.proceed = threading.Event()

        @ae.handler(name, **options)
        def handler(ctx: JobContext) -> str:
            self.running.set()
            opened = self.proceed.wait(10)
            assert opened or not strict
            return result


class Flaky:
    """Fails ``failures`` times, then returns ``"ok"``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[int] = []

    def __call__(self, ctx: JobContext) -> str:
        self.calls.append(ctx.attempt)
        if len(self.calls) <= self.failures:
            raise ValueError(f"attempt {ctx.attempt} failed")
        return "ok"


class TestRetries:
    def test_retries_back_off_then_succeed_and_clear_the_error(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker, clock: FakeClock
    ) -> None:
        flaky = Flaky(failures=2)
        ae.handler("Flaky")(flaky)
        job_id = submit(ae, app, "Flaky")

        worker.run_once()
        first = wire(client, job_id)
        assert first["status"] == "Scheduled"
        assert first["retryCount"] == 1
        assert first["error"]["code"] == "VALUEERROR"
        assert first["error"]["message"] == "attempt 1 failed"
        # min(RETRY_DELAY_BASE * 2 ** retryCount, RETRY_MAX_DELAY) = 2 * 2 ** 1
        assert first["retryDelayUntil"] == _iso(clock.now + 4)

        assert worker.run_once() == 0
        clock.advance(4)
        worker.run_once()
        second = wire(client, job_id)
        assert second["status"] == "Scheduled"
        assert second["retryCount"] == 2
        assert second["retryDelayUntil"] == _iso(clock.now + 8)

        clock.advance(8)
        worker.run_once()
        done = wire(client, job_id)
        assert done["status"] == "Completed"
        assert done["result"] == "ok"
        assert done["error"] is None
        assert done["retryCount"] == 2
        assert flaky.calls == [1, 2, 3]

    def test_out_of_retries_fails_with_the_structured_error(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker, clock: FakeClock
    ) -> None:
        ae.handler("Broken", max_retries=1)(Flaky(failures=99))
        job_id = submit(ae, app, "Broken")

        worker.run_once()
        clock.advance(60)
        worker.run_once()

        body = wire(client, job_id)
        assert body["status"] == "Failed"
        assert body["retryCount"] == 1
        assert body["maxRetries"] == 1
        assert body["completedAt"] == _iso(clock.now)
        assert body["error"] == {
            "code": "VALUEERROR",
            "message": "attempt 2 failed",
            "exception": {
                "type": "ValueError",
                "message": "attempt 2 failed",
                "stackTrace": None,
                "innerException": None,
            },
        }

    def test_job_failure_sets_the_code_and_can_skip_retries(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker
    ) -> None:
        @ae.handler("Permanent")
        def permanent(ctx: JobContext) -> None:
            raise JobFailure("the file is gone", code="FILE_GONE", retry=False)

        job_id = submit(ae, app, "Permanent")
        worker.run_once()

        body = wire(client, job_id)
        assert body["status"] == "Failed"
        assert body["retryCount"] == 0
        assert body["error"]["code"] == "FILE_GONE"
        assert body["error"]["message"] == "the file is gone"

    def test_retry_delay_formula_cap_and_jitter(self) -> None:
        settings = Settings.from_config(_config(RETRY_DELAY_BASE=2.0, RETRY_MAX_DELAY=100.0))
        assert [retry_delay(n, settings) for n in (1, 2, 3, 5, 6, 50, 5000)] == [4, 8, 16, 64, 100, 100, 100]
        jittered = Settings.from_config(_config(RETRY_DELAY_BASE=2.0, RETRY_MAX_DELAY=100.0, RETRY_JITTER=True))
        assert retry_delay(3, jittered, rand=lambda: 0.0) == 8
        assert retry_delay(3, jittered, rand=lambda: 0.999999) == pytest.approx(16, abs=1e-4)


class TestWhatAHandlerCanDo:
    @pytest.mark.parametrize(
        ("exc", "code"),
        [
            (SystemExit(3), "SYSTEMEXIT"),
            (KeyboardInterrupt(), "KEYBOARDINTERRUPT"),
            (GeneratorExit(), "GENERATOREXIT"),
            (RecursionError("deep"), "RECURSIONERROR"),
            (MemoryError(), "MEMORYERROR"),
        ],
    )
    def test_base_exceptions_fail_the_attempt(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker, exc: BaseException, code: str
    ) -> None:
        @ae.handler("Raiser")
        def raiser(ctx: JobContext) -> None:
            raise exc

        job_id = submit(ae, app, "Raiser")
        worker.run_once()

        body = wire(client, job_id)
        assert body["status"] == "Scheduled"
        assert body["error"]["code"] == code

    @pytest.mark.parametrize(
        "value",
        [object(), {1, 2}, math.nan, math.inf, {"nested": [float("-inf")]}, b"bytes", {(1, 2): "tuple key"}],
    )
    def test_results_that_are_not_json_fail_the_attempt(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker, value: Any
    ) -> None:
        @ae.handler("BadResult")
        def bad_result(ctx: JobContext) -> Any:
            return value

        job_id = submit(ae, app, "BadResult")
        worker.run_once()

        body = wire(client, job_id)
        assert body["status"] == "Scheduled"
        assert body["error"]["code"] == "RESULTNOTSERIALIZABLE"
        assert "JSON" in body["error"]["message"]

    def test_response_schema_dumps_the_result(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker
    ) -> None:
        class Out(Schema):
            when = fields.Date()
            count = fields.Integer()

        import datetime

        @ae.handler("Dumped", response_schema=Out)
        def dumped(ctx: JobContext) -> dict[str, Any]:
            return {"when": datetime.date(2026, 1, 2), "count": 3, "dropped": object()}

        job_id = submit(ae, app, "Dumped")
        worker.run_once()
        assert wire(client, job_id)["result"] == {"when": "2026-01-02", "count": 3}

    def test_the_handler_runs_in_the_app_context(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker
    ) -> None:
        @ae.handler("WhichApp")
        def which_app(ctx: JobContext) -> str:
            return str(current_app.name)

        job_id = submit(ae, app, "WhichApp")
        worker.run_once()
        assert wire(client, job_id)["result"] == app.name

    def test_a_job_without_a_handler_here_fails_its_attempt(
        self, app: Flask, client: FlaskClient, worker: Worker, memory_store: MemoryStore
    ) -> None:
        job, _ = memory_store.create("8d7e1a52-3a57-4d84-9d0f-0a1b2c3d4e5f", "Unknown", JobPayload(), max_retries=0)
        worker.run_once()
        body = wire(client, job.id)
        assert body["status"] == "Failed"
        assert body["error"]["code"] == "HANDLERNOTFOUND"

    def test_progress_is_visible_to_pollers(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker
    ) -> None:
        polled: list[Any] = []

        @ae.handler("Progressing")
        def progressing(ctx: JobContext) -> None:
            ctx.report_progress(0.0, "starting")
            polled.append(wire(client, ctx.job_id)["progress"])
            for step in range(1000):
                ctx.report_progress(step / 1000)
            with pytest.raises(ValueError, match="from 0 to 1"):
                ctx.report_progress(1.5)
            with pytest.raises(ValueError, match="from 0 to 1"):
                ctx.report_progress(math.nan)
            ctx.report_progress(1.0, "done")

        job_id = submit(ae, app, "Progressing")
        worker.run_once()

        assert polled[0]["fraction"] == 0.0
        assert polled[0]["message"] == "starting"
        body = wire(client, job_id)
        assert body["status"] == "Completed"
        assert body["progress"]["fraction"] == 1.0
        assert body["progress"]["message"] == "done"


class TestTheCancelEvent:
    """``ctx.cancelled`` is built cheaply for every attempt; it must behave as a ``threading.Event``."""

    def test_a_handler_gets_an_unset_threading_event(self, ae: AsyncEndpoints, app: Flask, worker: Worker) -> None:
        seen: list[threading.Event] = []

        @ae.handler("Looks")
        def looks(ctx: JobContext) -> None:
            seen.append(ctx.cancelled)

        submit(ae, app, "Looks")
        submit(ae, app, "Looks")
        worker.run_once()

        first, second = seen
        assert isinstance(first, threading.Event)
        assert first is not second  # one per attempt
        assert not first.is_set()
        assert first.wait(0) is False
        assert "unset" in repr(first)

    def test_set_clear_and_wait_as_for_an_event(self) -> None:
        event = CancelEvent()
        event.set()
        assert event.is_set()
        assert event.wait() is True
        assert event.wait(0) is True
        assert "unset" not in repr(event)
        event.clear()
        assert not event.is_set()
        assert event.wait(0.001) is False

    def test_set_wakes_a_thread_waiting_on_it(self) -> None:
        event = CancelEvent()
        about_to_wait = threading.Event()
        woke: list[bool] = []

        def waiter() -> None:
            about_to_wait.set()
            woke.append(event.wait(30))

        thread = threading.Thread(target=waiter)
        thread.start()
        assert about_to_wait.wait(10)
        event.set()
        thread.join(10)
        assert woke == [True]


class TestTracebacks:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        return {"ASYNCENDPOINTS_EXPOSE_TRACEBACKS": True}

    def test_exposed_when_configured(self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker) -> None:
        @ae.handler("Chained", max_retries=0)
        def chained(ctx: JobContext) -> None:
            try:
                {}["key"]
            except KeyError as exc:
                raise RuntimeError("wrapped") from exc

        job_id = submit(ae, app, "Chained")
        worker.run_once()

        exception = wire(client, job_id)["error"]["exception"]
        assert exception["type"] == "RuntimeError"
        assert "Traceback" in exception["stackTrace"]
        assert 'raise RuntimeError("wrapped") from exc' in exception["stackTrace"]
        assert exception["innerException"]["type"] == "KeyError"
        assert "Traceback" in exception["innerException"]["stackTrace"]


class TestThreadedWorker:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        # A poll interval far longer than any wait below: a job only starts promptly if the
        # submit woke the worker.
        return {"ASYNCENDPOINTS_POLL_INTERVAL": 60, "ASYNCENDPOINTS_MAX_CONCURRENCY": 1}

    def test_an_idle_worker_starts_a_new_job_at_once(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, finished: Finished
    ) -> None:
        ae.handler("Echo")(lambda ctx: "echo")
        ae.start_worker(app)

        job_id = submit(ae, app, "Echo")

        job = finished.wait(job_id)
        assert job is not None
        assert job.status is JobStatus.COMPLETED
        assert wire(client, job_id)["result"] == "echo"

    @pytest.mark.parametrize("app_config", [{"ASYNCENDPOINTS_MAX_CONCURRENCY": 1}])
    def test_a_worker_with_every_thread_busy_leaves_new_jobs_to_others(
        self, ae: AsyncEndpoints, app: Flask, memory_store: MemoryStore, finished: Finished
    ) -> None:
        gate = Gate(ae, "Slow", result="done")
        running, proceed = gate.running, gate.proceed

        ae.start_worker(app)
        first = submit(ae, app, "Slow")
        assert running.wait(10)

        # Its only thread is busy: nothing claims (a claim happens only in a free pool thread), so
        # another process could take this job at once.
        second = submit(ae, app, "Slow")
        waiting = memory_store.get(second)
        assert waiting is not None
        assert waiting.status is JobStatus.QUEUED

        proceed.set()
        for job_id in (first, second):
            job = finished.wait(job_id)
            assert job is not None
            assert job.status is JobStatus.COMPLETED

    @pytest.mark.parametrize("app_config", [{"ASYNCENDPOINTS_POLL_INTERVAL": 30}])
    def test_a_job_arriving_while_one_thread_is_busy_starts_in_the_other_at_once(
        self, ae: AsyncEndpoints, app: Flask, finished: Finished
    ) -> None:
        # With a 30 s poll interval, only a thread handed the turn to wait for work can start the
        # second job within the test's time: the one that claimed the first job is busy with it.
        gate = Gate(ae, "Slow", result="slow")
        first_running, proceed = gate.running, gate.proceed

        ae.handler("Echo")(lambda ctx: "echo")
        ae.start_worker(app)
        first = submit(ae, app, "Slow")
        assert first_running.wait(10)

        second = submit(ae, app, "Echo")
        job = finished.wait(second, timeout=5)
        assert job is not None
        assert job.status is JobStatus.COMPLETED
        proceed.set()
        assert finished.wait(first) is not None

    def test_the_worker_survives_everything_a_handler_does(
        self, ae: AsyncEndpoints, app: Flask, finished: Finished
    ) -> None:
        @ae.handler("Exit", max_retries=0)
        def exiting(ctx: JobContext) -> None:
            raise SystemExit(1)

        @ae.handler("Interrupt", max_retries=0)
        def interrupted(ctx: JobContext) -> None:
            raise KeyboardInterrupt

        ae.handler("Echo")(lambda ctx: "still here")
        ae.start_worker(app)

        for name in ("Exit", "Interrupt"):
            job = finished.wait(submit(ae, app, name))
            assert job is not None
            assert job.status is JobStatus.FAILED
        job = finished.wait(submit(ae, app, "Echo"))
        assert job is not None
        assert job.result == "still here"

    def test_shutdown_finishes_running_jobs_and_releases_the_rest(
        self, ae: AsyncEndpoints, app: Flask, memory_store: MemoryStore, finished: Finished
    ) -> None:
        gate = Gate(ae, "Slow", result="finished")
        running, proceed = gate.running, gate.proceed

        first, second, third = (submit(ae, app, "Slow") for _ in range(3))
        worker = ae.start_worker(app)
        assert running.wait(10)
        assert memory_store.counts()[JobStatus.IN_PROGRESS] == 3  # one running, two claimed ahead

        stopper = threading.Thread(target=worker.shutdown, kwargs={"timeout": 10})
        stopper.start()
        # The running job may finish only once the shutdown has begun: finishing earlier, its
        # thread would start the next claimed job, which then completes too instead of going back.
        assert worker._ledger.stopping.wait(10)
        proceed.set()
        stopper.join()

        done = memory_store.get(first)
        assert done is not None
        assert done.status is JobStatus.COMPLETED
        for job_id in (second, third):
            job = memory_store.get(job_id)
            assert job is not None
            assert job.status is JobStatus.QUEUED
            assert job.retry_count == 0

    def test_a_job_still_running_at_the_shutdown_timeout_is_released(
        self, ae: AsyncEndpoints, app: Flask, memory_store: MemoryStore, finished: Finished
    ) -> None:
        gate = Gate(ae, "Stuck", result="too late", strict=False)
        running, proceed = gate.running, gate.proceed

        job_id = submit(ae, app, "Stuck")
        worker = ae.start_worker(app)
        assert running.wait(10)

        worker.shutdown(timeout=0.05)

        job = memory_store.get(job_id)
        assert job is not None
        assert job.status is JobStatus.QUEUED
        assert job.retry_count == 0
        proceed.set()
        assert finished.wait(job_id) is None  # the late result is discarded
        job = memory_store.get(job_id)
        assert job is not None
        assert job.status is JobStatus.QUEUED

    def test_a_timed_out_attempt_is_failed_and_its_late_result_discarded(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, memory_store: MemoryStore, finished: Finished
    ) -> None:
        gate = Gate(ae, "Hangs", result="late", strict=False, timeout=5)
        running, proceed = gate.running, gate.proceed

        echoed_in: list[threading.Thread] = []

        @ae.handler("Echo")
        def echo(ctx: JobContext) -> str:
            echoed_in.append(threading.current_thread())
            return "fresh thread"

        job_id = submit(ae, app, "Hangs")
        worker = ae.start_worker(app)
        assert running.wait(10)

        worker.check_timeouts(now=time.monotonic() + 6)

        body = wire(client, job_id)
        assert body["status"] == "Scheduled"
        assert body["error"]["code"] == "TIMEOUT"
        # The stuck thread is replaced: another job runs while it still hangs.
        other = finished.wait(submit(ae, app, "Echo"))
        assert other is not None
        assert other.result == "fresh thread"
        # The pool has a thread too many while the stuck one hangs: the first to end a job retires.
        (retired,) = echoed_in
        retired.join(10)
        assert not retired.is_alive()
        proceed.set()
        assert finished.wait(job_id) is None
        assert wire(client, job_id)["status"] == "Scheduled"

    def test_a_handler_that_stops_on_timeout_does_not_turn_it_into_a_cancel(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, finished: Finished
    ) -> None:
        running = threading.Event()

        @ae.handler("Cooperative", timeout=5)
        def cooperative(ctx: JobContext) -> str:
            running.set()
            if ctx.cancelled.wait(10):
                raise JobCanceled("told to stop")
            return "never told"

        job_id = submit(ae, app, "Cooperative")
        worker = ae.start_worker(app)
        assert running.wait(10)

        worker.check_timeouts(now=time.monotonic() + 6)

        assert finished.wait(job_id) is None  # the handler's stop is not an outcome of its own
        body = wire(client, job_id)
        assert body["status"] == "Scheduled"
        assert body["error"]["code"] == "TIMEOUT"

    def test_cancel_reaches_a_running_handler(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, finished: Finished
    ) -> None:
        running = threading.Event()

        @ae.handler("Cancelable")
        def cancelable(ctx: JobContext) -> str:
            running.set()
            if ctx.cancelled.wait(10):
                raise JobCanceled("stopping")
            return "not canceled"

        job_id = submit(ae, app, "Cancelable")
        worker = ae.start_worker(app)
        assert running.wait(10)

        assert client.delete(f"/jobs/{job_id}").status_code == 202
        worker.renew_leases()

        job = finished.wait(job_id)
        assert job is not None
        assert job.status is JobStatus.CANCELED
        assert wire(client, job_id)["status"] == "Canceled"

    @pytest.mark.parametrize("ending", ["returns", "raises"])
    def test_a_handler_that_ignores_a_cancel_still_ends_canceled(
        self,
        ae: AsyncEndpoints,
        app: Flask,
        client: FlaskClient,
        worker: Worker,
        ending: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        @ae.handler("Stubborn", max_retries=3)
        def stubborn(ctx: JobContext) -> str:
            with app.app_context():
                # The cancel arrives while the handler runs; it never looks at ctx.cancelled.
                assert ae.cancel(ctx.job_id)[0].value == "requested"
            if ending == "raises":
                raise ValueError("failed after the cancel")
            return "a result no one asked for any more"

        job_id = submit(ae, app, "Stubborn")
        worker.run_once()

        body = wire(client, job_id)
        assert body["status"] == "Canceled"
        assert body["result"] is None and body["error"] is None and body["completedAt"] is not None
        assert "failed for good" not in caplog.text


class StoreCalls:
    """Watches a store's waits for work, and its claims outside them, as the pool threads make them.

    ``now`` counts the waits under way, ``most`` the most at once, ``entered`` the waits begun.
    """

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.changed = threading.Condition()
        self.now = self.most = self.entered = self.claims = 0
        inside = threading.local()
        wait_and_claim, claim = store.wait_and_claim, store.claim

        def counted_wait(*args: Any, **kwargs: Any) -> Any:
            with self.changed:
                self.entered += 1
                self.now += 1
                self.most = max(self.most, self.now)
                self.changed.notify_all()
            inside.waiting = True
            try:
                return wait_and_claim(*args, **kwargs)
            finally:
                inside.waiting = False
                with self.changed:
                    self.now -= 1
                    self.changed.notify_all()

        def counted_claim(*args: Any, **kwargs: Any) -> Any:
            if not getattr(inside, "waiting", False):
                with self.changed:
                    self.claims += 1
            return claim(*args, **kwargs)

        monkeypatch.setattr(store, "wait_and_claim", counted_wait)
        monkeypatch.setattr(store, "claim", counted_claim)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)


IDLE_CONFIG = {"ASYNCENDPOINTS_POLL_INTERVAL": 60, "ASYNCENDPOINTS_MAX_CONCURRENCY": 2}


class TestIdleThreadsWaitTogether:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        # Nothing ends a wait but a job or the shutdown: a poll interval longer than the test.
        return IDLE_CONFIG

    def test_every_idle_thread_waits_and_a_job_runs_with_nothing_else_sent_meanwhile(
        self,
        ae: AsyncEndpoints,
        app: Flask,
        memory_store: MemoryStore,
        finished: Finished,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        assert memory_store.concurrent_waits
        calls = StoreCalls(memory_store, monkeypatch)
        gate = Gate(ae, "Slow", result="done")
        ae.start_worker(app)
        assert calls.wait_until(lambda: calls.now == 2), "the idle threads did not all wait for work"
        claims = calls.claims

        job_id = submit(ae, app, "Slow")
        assert gate.running.wait(10)

        # It started in a thread that was waiting; the other waits on, and nothing was claimed
        # besides the wake-up's own claim.
        assert (calls.now, calls.claims) == (1, claims)
        gate.proceed.set()
        job = finished.wait(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED


class TestShutdownOfIdleThreads:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        return IDLE_CONFIG

    def test_shutdown_returns_once_every_wait_for_work_has_come_back(
        self, ae: AsyncEndpoints, app: Flask, memory_store: MemoryStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Until a woken wait is back (with what its wake-up claimed, which it gives back), the store
        # is in use: an app that closes it after shutdown must not cut that call off.
        calls = StoreCalls(memory_store, monkeypatch)
        back, proceed = threading.Event(), threading.Event()
        wait_and_claim = memory_store.wait_and_claim

        def slow_to_come_back(*args: Any, **kwargs: Any) -> Any:
            try:
                return wait_and_claim(*args, **kwargs)
            finally:
                back.set()
                proceed.wait(10)

        monkeypatch.setattr(memory_store, "wait_and_claim", slow_to_come_back)
        ae.start_worker(app)
        assert calls.wait_until(lambda: calls.now == 2), "the idle threads did not all wait for work"

        stopper = threading.Thread(target=ae.shutdown, args=(app,), kwargs={"timeout": 10})
        stopper.start()
        assert back.wait(10)
        stopper.join(0.2)  # allow-sleep: that shutdown did not return early can only be seen by waiting
        assert stopper.is_alive(), "shutdown returned while a wait for work was still on its way back"
        proceed.set()
        stopper.join(10)
        assert not stopper.is_alive()
        assert calls.now == 0

    def test_shutdown_returns_when_giving_back_a_late_claim_fails_unexpectedly(
        self,
        ae: AsyncEndpoints,
        app: Flask,
        memory_store: MemoryStore,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        # A wait for work that comes back with a job after the stop cannot start it and gives it
        # back; should that fail with something the store did not foresee, the claim turn still
        # ends, so shutdown returns now rather than after its whole timeout.
        @ae.handler("Quick")
        def quick(ctx: JobContext) -> None:
            return None

        calls = StoreCalls(memory_store, monkeypatch)
        wait_and_claim = memory_store.wait_and_claim

        def claimed_as_the_worker_stops(*args: Any, **kwargs: Any) -> Any:
            claimed = wait_and_claim(*args, **kwargs)
            if claimed:
                assert worker._ledger.stopping.wait(10)
            return claimed

        def broken_release(job_id: str, token: str) -> bool:
            raise RuntimeError("a store bug")

        monkeypatch.setattr(memory_store, "wait_and_claim", claimed_as_the_worker_stops)
        worker = ae.start_worker(app)
        assert calls.wait_until(lambda: calls.now == 2), "the idle threads did not all wait for work"
        job_id = submit(ae, app, "Quick")
        assert calls.wait_until(lambda: memory_store.counts()[JobStatus.IN_PROGRESS] == 1)
        monkeypatch.setattr(memory_store, "release", broken_release)

        stopper = threading.Thread(target=worker.shutdown, kwargs={"timeout": 60})
        stopper.start()
        stopper.join(20)
        assert not stopper.is_alive(), "shutdown waited for a claim turn that never ended"
        assert f"unexpected error while giving back job {job_id}" in caplog.text
        job = memory_store.get(job_id)
        assert job is not None and job.status is JobStatus.IN_PROGRESS  # its lease recovers it


class OneWaiterStore(MemoryStore):
    """A memory store that says its waits cannot be shared (like a store whose wake-ups reach every waiter)."""

    concurrent_waits = False


class TestIdleThreadsTakeTurnsToWait:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        return IDLE_CONFIG

    @pytest.fixture
    def app_store(self, clock: FakeClock) -> Store:
        return OneWaiterStore(clock=clock)

    def test_one_thread_at_a_time_waits_where_the_store_cannot_share_its_waits(
        self, ae: AsyncEndpoints, app: Flask, app_store: Store, finished: Finished, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls = StoreCalls(app_store, monkeypatch)
        gate = Gate(ae, "Slow", result="done")
        ae.start_worker(app)
        assert calls.wait_until(lambda: calls.now == 1)

        job_id = submit(ae, app, "Slow")
        assert gate.running.wait(10)
        # The thread that waited is busy: the other takes the turn and waits in its place.
        assert calls.wait_until(lambda: calls.entered == 2 and calls.now == 1)
        gate.proceed.set()
        job = finished.wait(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
        assert calls.most == 1


class TestRecovery:
    def test_a_job_whose_worker_vanished_is_retried(
        self, ae: AsyncEndpoints, app: Flask, worker: Worker, memory_store: MemoryStore, clock: FakeClock
    ) -> None:
        ae.handler("Echo")(lambda ctx: "recovered")
        job_id = submit(ae, app, "Echo")
        memory_store.claim(1, 300)  # a worker that then dies

        assert worker.recover_once() == []
        clock.advance(301)
        (recovered,) = worker.recover_once()
        assert recovered.id == job_id
        worker.run_once()

        job = memory_store.get(job_id)
        assert job is not None
        assert job.status is JobStatus.COMPLETED
        assert job.retry_count == 1


def _config(**values: Any) -> dict[str, Any]:
    from flask_asyncendpoints.config import DEFAULTS, PREFIX

    config = {PREFIX + k: v for k, v in DEFAULTS.items()}
    config.update({PREFIX + k: v for k, v in values.items()})
    return config


def _iso(timestamp: float) -> str:
    from flask_asyncendpoints.jobs import from_timestamp, isoformat

    result = isoformat(from_timestamp(timestamp))
    assert result is not None
    return result


class TestHiddenMessages:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        return {"ASYNCENDPOINTS_EXPOSE_EXCEPTION_MESSAGES": False}

    def test_unexpected_messages_are_hidden_and_chosen_ones_kept(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker
    ) -> None:
        @ae.handler("Leaky", max_retries=0)
        def leaky(ctx: JobContext) -> None:
            try:
                raise KeyError("password=hunter2")
            except KeyError as exc:
                raise ConnectionError("postgres://admin:hunter2@db") from exc

        @ae.handler("Chosen", max_retries=0)
        def chosen(ctx: JobContext) -> None:
            raise JobFailure("the upload was empty", code="EMPTY")

        leaky_id, chosen_id = submit(ae, app, "Leaky"), submit(ae, app, "Chosen")
        worker.run_once()

        leaky_body = client.get(f"/jobs/{leaky_id}").get_data(as_text=True)
        assert "hunter2" not in leaky_body
        error = wire(client, leaky_id)["error"]
        assert error["code"] == "CONNECTIONERROR"
        assert error["message"] == "The handler raised ConnectionError."
        assert error["exception"]["innerException"]["type"] == "KeyError"
        assert wire(client, chosen_id)["error"]["message"] == "the upload was empty"
        stored = worker.store.get(leaky_id)
        assert stored is not None
        assert stored.error is not None
        assert "hunter2" in stored.error.message  # kept for operators (flask asyncendpoints show)


class TestShutdown:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        # A short lease so the worker renews every 0.1 s (real time); the fake clock decides expiry.
        return {"ASYNCENDPOINTS_MAX_CONCURRENCY": 1, "ASYNCENDPOINTS_CLAIM_TIMEOUT": 0.3}

    def test_claimed_ahead_jobs_are_released_before_running_ones_finish(
        self,
        ae: AsyncEndpoints,
        app: Flask,
        memory_store: MemoryStore,
        monkeypatch: pytest.MonkeyPatch,
        finished: Finished,
    ) -> None:
        gate = Gate(ae, "Slow", result="finished")
        running, proceed = gate.running, gate.proceed

        first, second, third = (submit(ae, app, "Slow") for _ in range(3))
        released: list[str] = []
        both_released = threading.Event()
        release = memory_store.release

        def watched_release(job_id: str, token: str, **kwargs: Any) -> bool:
            done = release(job_id, token, **kwargs)
            released.append(job_id)
            if len(released) == 2:
                both_released.set()
            return done

        monkeypatch.setattr(memory_store, "release", watched_release)
        worker = ae.start_worker(app)
        assert running.wait(10)

        stopper = threading.Thread(target=worker.shutdown, kwargs={"timeout": 10})
        stopper.start()
        # Given back while the first job is still running, not once it ends.
        assert both_released.wait(10)
        assert sorted(released) == sorted([second, third])
        proceed.set()
        stopper.join()

        assert finished.wait(first) is not None
        statuses = {job_id: memory_store.get(job_id).status for job_id in (first, second, third)}  # type: ignore[union-attr]
        assert statuses == {first: JobStatus.COMPLETED, second: JobStatus.QUEUED, third: JobStatus.QUEUED}

    def test_leases_of_running_jobs_are_renewed_while_shutdown_waits(
        self,
        ae: AsyncEndpoints,
        app: Flask,
        memory_store: MemoryStore,
        clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        gate = Gate(ae, "Slow", result="finished")
        running, proceed = gate.running, gate.proceed

        job_id = submit(ae, app, "Slow")
        worker = ae.start_worker(app)
        assert running.wait(10)
        renewed_while_stopping = threading.Event()
        renew = memory_store.renew

        def watched_renew(*args: Any, **kwargs: Any) -> Any:
            states = renew(*args, **kwargs)
            if not worker.running:
                renewed_while_stopping.set()
            return states

        monkeypatch.setattr(memory_store, "renew", watched_renew)
        stopper = threading.Thread(target=worker.shutdown, kwargs={"timeout": 10})
        stopper.start()
        for _ in range(3):
            # Most of a lease passes; a renew during shutdown extends it again.
            clock.advance(0.25)
            renewed_while_stopping.clear()
            assert renewed_while_stopping.wait(10)
            assert memory_store.recover(result_ttl=None) == []
        proceed.set()
        stopper.join()

        job = memory_store.get(job_id)
        assert job is not None
        assert job.status is JobStatus.COMPLETED
        assert job.retry_count == 0


class TestHiddenMessagesOfSubclasses:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        return {"ASYNCENDPOINTS_EXPOSE_EXCEPTION_MESSAGES": False}

    def test_a_job_failure_subclass_keeps_its_message(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker
    ) -> None:
        class QuotaExceeded(JobFailure):
            pass

        ae.handler("Quota", max_retries=0)(lambda ctx: (_ for _ in ()).throw(QuotaExceeded("over quota")))
        job_id = submit(ae, app, "Quota")
        worker.run_once()
        assert wire(client, job_id)["error"]["message"] == "over quota"


class TestMaintenanceWithoutRecovery:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        return {"ASYNCENDPOINTS_RECOVERY_ENABLED": False, "ASYNCENDPOINTS_RESULT_TTL": 10}

    def test_expired_jobs_are_purged_and_leases_left_alone(
        self, ae: AsyncEndpoints, app: Flask, worker: Worker, memory_store: MemoryStore, clock: FakeClock
    ) -> None:
        ae.handler("Echo")(lambda ctx: "done")
        finished_id = submit(ae, app, "Echo")
        worker.run_once()
        orphan_id = submit(ae, app, "Echo")
        memory_store.claim(1, 5)  # a worker that then dies

        clock.advance(60)
        assert worker.recover_once() == []

        assert memory_store.get(finished_id) is None
        orphan = memory_store.get(orphan_id)
        assert orphan is not None
        assert orphan.status is JobStatus.IN_PROGRESS

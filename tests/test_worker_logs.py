"""What the worker logs: one warning per store outage and one line when it ends, not a traceback per
retry; timeouts with their fractions of a second; "discarded" only for a result that was."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, Job, JobContext, JobStatus, StoreError
from flask_asyncendpoints.signals import job_completed
from flask_asyncendpoints.stores import MemoryStore
from flask_asyncendpoints.worker.ledger import StoreHealth

from .conftest import FakeClock

LOGGER = "flask_asyncendpoints"


class FlakyStore(MemoryStore):
    """A memory store that can be taken down: every worker call raises while ``down`` is set."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.down = threading.Event()
        self.failures = 0
        self.enough_failures = threading.Event()
        self.answered_after_outage = threading.Event()
        self._count = threading.Lock()

    def _gate(self) -> None:
        if self.down.is_set():
            with self._count:
                self.failures += 1
                if self.failures >= 5:
                    self.enough_failures.set()
            raise StoreError("Could not reach Redis at 127.0.0.1:6379 (Connection refused).")
        if self.failures:
            self.answered_after_outage.set()

    def claim(self, limit: int, lease_seconds: float, **kwargs: Any) -> Any:
        self._gate()
        return super().claim(limit, lease_seconds, **kwargs)

    def recover(self, **kwargs: Any) -> Any:
        self._gate()
        return super().recover(**kwargs)

    def complete(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return super().complete(*args, **kwargs)

    # The calls of queues' recurring jobs, the worker registry, execution logs and instant cancels.

    def register_worker(self, *args: Any, **kwargs: Any) -> None:
        self._gate()
        super().register_worker(*args, **kwargs)

    def unregister_worker(self, worker_id: str) -> None:
        self._gate()
        super().unregister_worker(worker_id)

    def watch_cancels(self, callback: Callable[[str], None]) -> Callable[[], None]:
        self._gate()
        return super().watch_cancels(callback)

    def claim_occurrence(self, *args: Any, **kwargs: Any) -> bool:
        self._gate()
        return super().claim_occurrence(*args, **kwargs)

    def append_logs(self, *args: Any, **kwargs: Any) -> bool:
        self._gate()
        return super().append_logs(*args, **kwargs)


def make_app(ae: AsyncEndpoints, store: MemoryStore, **config: Any) -> Flask:
    app = Flask("logs")
    app.config.update(
        ASYNCENDPOINTS_WORKER=False,
        ASYNCENDPOINTS_MAX_CONCURRENCY=2,
        ASYNCENDPOINTS_POLL_INTERVAL=0.01,
        ASYNCENDPOINTS_RECOVERY_INTERVAL=0.01,
        **config,
    )
    ae.init_app(app, store=store)
    return app


class Announced(logging.Handler):
    """Sets ``seen`` when a record whose message contains ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def test_an_outage_is_one_warning_and_one_line_when_it_ends(caplog: pytest.LogCaptureFixture, clock: FakeClock) -> None:
    store = FlakyStore(clock)
    ae = AsyncEndpoints()
    app = make_app(ae, store)
    caplog.set_level(logging.INFO, logger=LOGGER)
    back_again = Announced("available again")
    logging.getLogger(LOGGER).addHandler(back_again)
    store.down.set()
    ae.start_worker(app)
    try:
        # The pool threads and the maintenance thread retry with back-off.
        assert store.enough_failures.wait(10)
        store.down.clear()
        assert back_again.seen.wait(10)
    finally:
        logging.getLogger(LOGGER).removeHandler(back_again)
        ae.shutdown(app, timeout=5)

    ours = [r for r in caplog.records if r.name == LOGGER]
    warnings = [r for r in ours if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    (warning,) = warnings
    assert warning.levelno == logging.WARNING
    assert "job store unavailable while" in warning.getMessage()
    assert "Could not reach Redis at 127.0.0.1:6379 (Connection refused)." in warning.getMessage()
    assert warning.exc_info is None  # no traceback
    (back,) = [r for r in ours if "available again" in r.getMessage()]
    assert back.levelno == logging.INFO
    failed = int(back.getMessage().split("; ")[1].split(" ")[0])
    assert 5 <= failed <= store.failures
    assert not any(r.exc_info for r in ours if r.levelno >= logging.INFO)


def test_the_registry_recurring_jobs_logs_and_cancel_watch_report_to_the_one_outage(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    pytest.importorskip("cronsim")
    store = FlakyStore(clock)
    ae = AsyncEndpoints()

    @ae.handler("Tick")
    def tick(ctx: JobContext) -> None:
        ctx.logger.warning("tick")  # above the default level of the handler's logger

    ae.schedule("every-minute", cron="* * * * *", job_name="Tick")
    app = make_app(ae, store, ASYNCENDPOINTS_EXECUTION_LOGS=True)
    completed: list[Job] = []
    ran = threading.Event()

    def on_completed(sender: Flask, job: Job, **extra: Any) -> None:
        completed.append(job)
        ran.set()

    caplog.set_level(logging.INFO, logger=LOGGER)
    store.down.set()
    job_completed.connect(on_completed, sender=app)
    try:
        ae.start_worker(app)  # registering and watching for cancels fail first
        assert store.enough_failures.wait(10)
        store.down.clear()
        # Back: registered at the next beat, the minute's occurrence enqueued, run, its log written.
        assert ran.wait(10)
    finally:
        job_completed.disconnect(on_completed, sender=app)
        ae.shutdown(app, timeout=5)

    ours = [r for r in caplog.records if r.name == LOGGER]
    warnings = [r.getMessage() for r in ours if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("job store unavailable while registering the worker: Could not reach Redis")
    assert sum("available again" in r.getMessage() for r in ours) == 1
    assert not any(r.exc_info for r in ours if r.levelno >= logging.INFO)
    (job,) = completed
    assert [line.message for line in store.logs(job.id)] == ["tick"]
    assert store.workers() == []  # it left the registry at shutdown


def test_each_retry_during_an_outage_is_logged_at_debug_with_its_traceback(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    store = FlakyStore(clock)
    ae = AsyncEndpoints()
    app = make_app(ae, store)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    store.down.set()
    ae.start_worker(app)
    try:
        assert store.enough_failures.wait(10)
    finally:
        store.down.clear()
        ae.shutdown(app, timeout=5)

    retries = [r for r in caplog.records if "still unavailable" in r.getMessage()]
    assert retries
    assert all(r.levelno == logging.DEBUG and r.exc_info is not None for r in retries)


def test_each_outage_is_warned_about_once_and_its_end_gives_its_length(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(start=100.0)
    health = StoreHealth(clock=clock)
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    for seconds in (6.0, 0.3):
        for _ in range(3):
            health.failed(StoreError("Redis went away."), "claiming jobs")
            clock.advance(seconds / 3)
        health.answered()
        health.answered()  # nothing more to say

    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert [m for level, m in messages if level == logging.WARNING] == [
        "job store unavailable while claiming jobs: Redis went away. Retrying with back-off; further errors "
        "are counted, not logged, until it answers again."
    ] * 2
    assert [m for level, m in messages if level == logging.INFO] == [
        "job store available again after 6.0 s; 3 store call(s) failed during the outage",
        "job store available again after 0.3 s; 3 store call(s) failed during the outage",
    ]
    assert sum(level == logging.DEBUG for level, _ in messages) == 4


def test_an_outcome_lost_to_an_outage_is_not_called_discarded(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    store = FlakyStore(clock)
    ae = AsyncEndpoints()

    @ae.handler("Work")
    def work(ctx: JobContext) -> str:
        store.down.set()  # the store goes away while the handler runs
        return "done"

    app = make_app(ae, store)
    ae.submit("Work", app=app)
    caplog.set_level(logging.INFO, logger=LOGGER)

    assert ae.get_worker(app).run_once() == 1

    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert not any("discarded" in m for m in messages), messages
    assert any("outcome not recorded, the job store is unavailable" in m for m in messages)
    assert sum("job store unavailable while recording an outcome" in m for m in messages) == 1


def test_a_result_that_lost_its_lease_is_called_discarded(
    caplog: pytest.LogCaptureFixture, clock: FakeClock, memory_store: MemoryStore
) -> None:
    ae = AsyncEndpoints()

    @ae.handler("Slow")
    def slow(ctx: JobContext) -> str:
        clock.advance(10)
        memory_store.recover(result_ttl=None)  # the lease ran out meanwhile: the job is queued again
        return "late"

    app = make_app(ae, memory_store, ASYNCENDPOINTS_CLAIM_TIMEOUT=5)
    job_id = ae.submit("Slow", app=app).id
    caplog.set_level(logging.INFO, logger=LOGGER)

    assert ae.get_worker(app).run_once() == 1

    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert any(f"job {job_id} (Slow): result discarded" in m for m in messages)
    job = memory_store.get(job_id)
    assert job is not None and job.status is JobStatus.QUEUED


def test_timeouts_are_logged_with_their_fractions(caplog: pytest.LogCaptureFixture, clock: FakeClock) -> None:
    ae = AsyncEndpoints()
    running = threading.Event()
    proceed = threading.Event()

    @ae.handler("Quick", timeout=0.25, max_retries=0)
    def quick(ctx: JobContext) -> str:
        running.set()
        proceed.wait(10)
        return "late"

    app = make_app(ae, MemoryStore(clock=clock))
    job_id = ae.submit("Quick", app=app).id
    caplog.set_level(logging.INFO, logger=LOGGER)
    worker = ae.start_worker(app)
    try:
        assert running.wait(10)
        worker.check_timeouts(now=time.monotonic() + 1)
    finally:
        proceed.set()
        ae.shutdown(app, timeout=5)

    (record,) = [r for r in caplog.records if "ran past" in r.getMessage()]
    assert f"job {job_id} (Quick) ran past its 0.25 s timeout" in record.getMessage()

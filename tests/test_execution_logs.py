"""Execution logs: what a handler logs during its attempt is kept with the job, capped, per attempt.

The capture is the worker's and the caps the store's: the lines of each attempt reaching the store
are checked on every kind of store, the capture's finer points on the memory store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, JobContext
from flask_asyncendpoints.stores import MemoryStore, Store
from flask_asyncendpoints.worker import Worker
from flask_asyncendpoints.worker.logcapture import LogCapture

#: This module is the handlers' module: ``ctx.logger`` logs here.
module_logger = logging.getLogger(__name__)


@pytest.fixture
def app_config() -> dict[str, object]:
    return {
        "ASYNCENDPOINTS_EXECUTION_LOGS": True,
        "ASYNCENDPOINTS_EXECUTION_LOG_MAX_LINES": 4,
        "ASYNCENDPOINTS_EXECUTION_LOG_MAX_BYTES": 200,
    }


@pytest.fixture(autouse=True)
def info_level() -> Iterator[None]:
    """Captured records pass their logger's level first; keep INFO lines of this module."""
    previous = module_logger.level
    module_logger.setLevel(logging.INFO)
    yield
    module_logger.setLevel(previous)


class TestOnEveryStore:
    @pytest.fixture
    def app_store(self, store: Store) -> Store:
        return store

    def test_ctx_logger_lines_are_kept_with_the_job(
        self, ae: AsyncEndpoints, app: Flask, worker: Worker, app_store: Store
    ) -> None:
        @ae.handler("Import")
        def import_rows(ctx: JobContext) -> None:
            ctx.logger.info("reading %s", ctx.request["path"])
            module_logger.warning("a module logger line")
            logging.getLogger("somewhere.else").warning("not a captured logger")
            ctx.logger.debug("below the logger's level")

        with app.app_context():
            job_id = ae.submit("Import", {"path": "/tmp/rows.csv"}).id
        worker.run_once()
        lines = app_store.logs(job_id)
        assert [(line.attempt, line.level, line.logger, line.message) for line in lines] == [
            (1, "INFO", __name__, "reading /tmp/rows.csv"),
            (1, "WARNING", __name__, "a module logger line"),
        ]

    def test_each_attempt_keeps_its_lines_and_the_caps_drop_the_oldest(
        self, ae: AsyncEndpoints, app: Flask, worker: Worker, app_store: Store
    ) -> None:
        @ae.handler("Chatty")
        def chatty(ctx: JobContext) -> None:
            for n in range(3):
                ctx.logger.info("attempt %d line %d", ctx.attempt, n)
            if ctx.attempt == 1:
                raise ValueError("again")

        with app.app_context():
            job_id = ae.submit("Chatty").id
        worker.run_once()
        # An hour on, the retry is due on every store (the memory store's fake clock is behind).
        assert worker.run_once(now=time.time() + 3600) == 1
        assert [line.message for line in app_store.logs(job_id)] == [
            "attempt 1 line 2",
            "attempt 2 line 0",
            "attempt 2 line 1",
            "attempt 2 line 2",
        ]


def test_a_long_message_is_cut_to_the_byte_cap(
    ae: AsyncEndpoints, app: Flask, worker: Worker, memory_store: MemoryStore
) -> None:
    ae.handler("Loud")(lambda ctx: ctx.logger.info("x" * 1000 + "\ud800"))
    with app.app_context():
        job_id = ae.submit("Loud").id
    worker.run_once()
    [line] = memory_store.logs(job_id)
    assert len(line.message.encode("utf-8")) <= 200
    assert line.message.endswith("…")


def test_lines_of_other_threads_are_not_kept(
    ae: AsyncEndpoints, app: Flask, worker: Worker, memory_store: MemoryStore
) -> None:
    @ae.handler("Spawns")
    def spawns(ctx: JobContext) -> None:
        helper = threading.Thread(target=lambda: module_logger.info("from a helper thread"))
        helper.start()
        helper.join(5)
        ctx.logger.info("from the attempt")

    with app.app_context():
        job_id = ae.submit("Spawns").id
    worker.run_once()
    assert [line.message for line in memory_store.logs(job_id)] == ["from the attempt"]


def test_the_exception_of_logger_exception_is_kept(
    ae: AsyncEndpoints, app: Flask, worker: Worker, memory_store: MemoryStore
) -> None:
    @ae.handler("Oops")
    def oops(ctx: JobContext) -> None:
        try:
            {}["missing"]
        except KeyError:
            ctx.logger.exception("lookup failed")

    with app.app_context():
        job_id = ae.submit("Oops").id
    worker.run_once()
    [line] = memory_store.logs(job_id)
    assert line.level == "ERROR"
    assert line.message.startswith("lookup failed\nTraceback")


def test_ctx_logger_records_carry_the_job(
    ae: AsyncEndpoints, app: Flask, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    ae.handler("Tagged")(lambda ctx: ctx.logger.info("hello", extra={"rows": 3}))
    with app.app_context():
        job_id = ae.submit("Tagged").id
    with caplog.at_level(logging.INFO, logger=__name__):
        worker.run_once()
    [record] = [r for r in caplog.records if r.name == __name__]
    assert (record.job_id, record.job_name, record.attempt, record.rows) == (job_id, "Tagged", 1, 3)  # type: ignore[attr-defined]


class TestOff:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        return {}

    def test_nothing_is_captured_or_attached(
        self, ae: AsyncEndpoints, app: Flask, worker: Worker, memory_store: MemoryStore
    ) -> None:
        ae.handler("Quiet")(lambda ctx: ctx.logger.warning("not kept"))
        with app.app_context():
            job_id = ae.submit("Quiet").id
        worker.run_once()
        assert memory_store.logs(job_id) == []
        assert not any(isinstance(h, LogCapture) for h in module_logger.handlers)


def test_configured_loggers_are_captured(ae: AsyncEndpoints, memory_store: MemoryStore) -> None:
    app = Flask("logs")
    app.config.update(
        ASYNCENDPOINTS_WORKER=False,
        ASYNCENDPOINTS_EXECUTION_LOGS=True,
        ASYNCENDPOINTS_EXECUTION_LOG_LOGGERS="vendor.client",
    )
    ae.init_app(app, store=memory_store)
    client_logger = logging.getLogger("vendor.client.http")
    client_logger.setLevel(logging.INFO)
    try:
        ae.handler("Calls")(lambda ctx: client_logger.info("GET /prices 200"))
        with app.app_context():
            job_id = ae.submit("Calls").id
        worker = ae.get_worker(app)
        worker.start()
        try:
            worker.wait_until_idle(10)
        finally:
            worker.shutdown(5)
        assert [line.message for line in memory_store.logs(job_id)] == ["GET /prices 200"]
        assert not any(isinstance(h, LogCapture) for h in logging.getLogger("vendor.client").handlers)
    finally:
        client_logger.setLevel(logging.NOTSET)

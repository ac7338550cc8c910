"""The Python client against a really served app: werkzeug's server in a thread, worker threads running the jobs."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from example_app import ae as example_ae
from example_app import create_app
from flask_asyncendpoints import AsyncEndpoints, JobContext, JobFailure
from flask_asyncendpoints.client import (
    Client,
    ClientError,
    Conflict,
    HTTPError,
    JobCanceledError,
    JobFailedError,
    NotFound,
    TransportError,
    WaitTimeout,
)

from .ports import free_port


def serve(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(10)


class Polls:
    """Counts the job reads the served app answers, and the ``wait`` each asked for."""

    def __init__(self, app: Flask) -> None:
        self.waits: list[str | None] = []
        app.before_request(self._count)

    def _count(self) -> None:
        if request.method == "GET" and request.path.startswith("/jobs/"):
            self.waits.append(request.args.get("wait"))


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Polls]]:
    monkeypatch.setenv("EXAMPLE_DELAY", "0.5")
    app = create_app({"TESTING": True, "ASYNCENDPOINTS_MAX_CONCURRENCY": 2})
    polls = Polls(app)
    try:
        for url in serve(app):
            yield url, polls
    finally:
        example_ae.shutdown(app, timeout=5)


def test_the_client_waits_for_the_seeds_job_and_returns_its_result(example: tuple[str, Polls]) -> None:
    url, polls = example
    client = Client(url)

    job = client.submit("/api/process-data", {"data": "Hello, AsyncEndpoints!", "processingPriority": 2})
    assert job.status == "Queued"
    assert job.url == f"{url}/jobs/{job.id}"
    result = client.result(job, timeout=30)

    assert result["processedData"] == "Processed: HELLO, ASYNCENDPOINTS!"
    assert result["characterCount"] == 22
    # A long-poll: the server held the answer until the job finished (one or two reads, not one per second).
    assert 1 <= len(polls.waits) <= 2
    assert all(wait is not None for wait in polls.waits)


def test_call_submits_and_returns_the_result(example: tuple[str, Polls]) -> None:
    url, _ = example
    assert Client(url).call("/api/generate-report", timeout=30)["report"] == "daily"


def test_a_refused_submit_is_an_http_error_with_the_problem(example: tuple[str, Polls]) -> None:
    url, _ = example
    with pytest.raises(HTTPError) as refused:
        Client(url).submit("/api/process-data", {"data": "  "})
    assert refused.value.status == 400
    assert refused.value.problem["detail"] == "'data' must not be blank."
    assert isinstance(refused.value, ClientError)


def test_an_unknown_job_is_not_found(example: tuple[str, Polls]) -> None:
    url, _ = example
    with pytest.raises(NotFound) as missing:
        Client(url).get(str(uuid.uuid4()))
    assert missing.value.problem["title"] == "Job not found"


def test_cancel_a_running_job(example: tuple[str, Polls], monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = example
    monkeypatch.setenv("EXAMPLE_DELAY", "30")
    client = Client(url)
    job = client.submit("/api/generate-report")

    client.cancel(job)
    with pytest.raises(JobCanceledError) as canceled:
        client.result(job, timeout=30)
    assert canceled.value.job.status == "Canceled"
    with pytest.raises(Conflict):
        client.cancel(job)


def test_waiting_past_the_timeout(example: tuple[str, Polls], monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = example
    monkeypatch.setenv("EXAMPLE_DELAY", "30")
    client = Client(url)
    job = client.submit("/api/generate-report")
    with pytest.raises(WaitTimeout) as late:
        client.wait(job, timeout=0.3)
    assert late.value.job.status in {"Queued", "InProgress"}
    assert isinstance(late.value, TimeoutError)
    client.cancel(job)


def test_without_long_poll_polls_are_retry_after_apart(
    example: tuple[str, Polls], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, polls = example
    monkeypatch.setenv("EXAMPLE_DELAY", "30")
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # a fake clock: the test does not wait for real
        slept.append(seconds)
        now[0] += seconds

    client = Client(url, long_poll=0, sleep=sleep, clock=lambda: now[0])
    job = client.submit("/api/generate-report")
    with pytest.raises(WaitTimeout):
        client.wait(job, timeout=3)
    assert slept == [1.0, 1.0, 1.0]  # the server's Retry-After: 1
    assert polls.waits == [None, None, None]
    Client(url).cancel(job)


def test_a_failed_job_raises_with_its_error() -> None:
    ae = AsyncEndpoints()

    @ae.handler("Charge", max_retries=0)
    def charge(ctx: JobContext) -> Any:
        raise JobFailure("The card was declined.", code="CARD_DECLINED", retry=False)

    ae.route("/charge", "Charge")
    app = Flask("failing")
    app.config.update(ASYNCENDPOINTS_MAX_CONCURRENCY=1)
    ae.init_app(app)
    try:
        for url in serve(app):
            with pytest.raises(JobFailedError) as failed:
                Client(url).call("/charge", timeout=30)
    finally:
        ae.shutdown(app, timeout=5)
    assert failed.value.job.error is not None
    assert failed.value.job.error["code"] == "CARD_DECLINED"
    assert "CARD_DECLINED" in str(failed.value)


def test_an_unreachable_server_is_a_transport_error() -> None:
    with pytest.raises(TransportError):
        Client(f"http://127.0.0.1:{free_port()}", timeout=2).submit("/api/x", {})

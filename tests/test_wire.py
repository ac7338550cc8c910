"""The job record on the wire, pinned: one full example of each status, byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_asyncendpoints import AsyncEndpoints, JobCanceled, JobContext, JobFailure
from flask_asyncendpoints.worker import Worker

from .conftest import FakeClock

JOB_ID = "0b6f1a8e-3c1d-4a59-9a77-5d2f1e0c4b3a"
KEYS = [
    "id",
    "name",
    "status",
    "retryCount",
    "maxRetries",
    "createdAt",
    "startedAt",
    "completedAt",
    "lastUpdatedAt",
    "result",
    "error",
    "retryDelayUntil",
    "progress",
]


@pytest.fixture
def behaviour() -> dict[str, Any]:
    return {}


@pytest.fixture(autouse=True)
def handler(ae: AsyncEndpoints, behaviour: dict[str, Any]) -> None:
    @ae.handler("ProcessData", max_retries=1)
    def process(ctx: JobContext) -> Any:
        ctx.report_progress(0.5, "half way")
        outcome = behaviour["outcome"]
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return outcome(ctx)
        return outcome

    ae.route("/api/process-data", "ProcessData", body=True)


def submit(client: FlaskClient, clock: FakeClock) -> None:
    response = client.post("/api/process-data", json={"data": "x"}, headers={"X-Async-Request-Id": JOB_ID})
    assert response.status_code == 202


def raw(client: FlaskClient) -> str:
    return client.get(f"/jobs/{JOB_ID}").get_data(as_text=True)


def test_queued(client: FlaskClient, clock: FakeClock) -> None:
    submit(client, clock)
    assert raw(client) == (
        '{"id":"0b6f1a8e-3c1d-4a59-9a77-5d2f1e0c4b3a","name":"ProcessData","status":"Queued",'
        '"retryCount":0,"maxRetries":1,"createdAt":"2026-01-01T00:00:00.000000+00:00",'
        '"startedAt":null,"completedAt":null,"lastUpdatedAt":"2026-01-01T00:00:00.000000+00:00",'
        '"result":null,"error":null,"retryDelayUntil":null,"progress":null}'
    )


def test_in_progress(client: FlaskClient, clock: FakeClock, worker: Worker, behaviour: dict[str, Any]) -> None:
    submit(client, clock)
    clock.advance(1.5)
    seen: list[str] = []
    behaviour["outcome"] = lambda ctx: seen.append(raw(client))
    worker.run_once()
    assert seen == [
        '{"id":"0b6f1a8e-3c1d-4a59-9a77-5d2f1e0c4b3a","name":"ProcessData","status":"InProgress",'
        '"retryCount":0,"maxRetries":1,"createdAt":"2026-01-01T00:00:00.000000+00:00",'
        '"startedAt":"2026-01-01T00:00:01.500000+00:00","completedAt":null,'
        '"lastUpdatedAt":"2026-01-01T00:00:01.500000+00:00","result":null,"error":null,'
        '"retryDelayUntil":null,"progress":{"fraction":0.5,"message":"half way",'
        '"updatedAt":"2026-01-01T00:00:01.500000+00:00"}}'
    ]


def test_completed(client: FlaskClient, clock: FakeClock, worker: Worker, behaviour: dict[str, Any]) -> None:
    submit(client, clock)
    clock.advance(2)
    behaviour["outcome"] = {"processedData": "Processed: X", "characterCount": 1, "tags": ["a", None]}
    worker.run_once()
    assert raw(client) == (
        '{"id":"0b6f1a8e-3c1d-4a59-9a77-5d2f1e0c4b3a","name":"ProcessData","status":"Completed",'
        '"retryCount":0,"maxRetries":1,"createdAt":"2026-01-01T00:00:00.000000+00:00",'
        '"startedAt":"2026-01-01T00:00:02.000000+00:00","completedAt":"2026-01-01T00:00:02.000000+00:00",'
        '"lastUpdatedAt":"2026-01-01T00:00:02.000000+00:00",'
        '"result":{"processedData":"Processed: X","characterCount":1,"tags":["a",null]},"error":null,'
        '"retryDelayUntil":null,"progress":{"fraction":0.5,"message":"half way",'
        '"updatedAt":"2026-01-01T00:00:02.000000+00:00"}}'
    )


def test_scheduled_then_failed(
    client: FlaskClient, clock: FakeClock, worker: Worker, behaviour: dict[str, Any]
) -> None:
    submit(client, clock)
    behaviour["outcome"] = JobFailure("upstream said no", code="UPSTREAM")
    worker.run_once()
    assert raw(client) == (
        '{"id":"0b6f1a8e-3c1d-4a59-9a77-5d2f1e0c4b3a","name":"ProcessData","status":"Scheduled",'
        '"retryCount":1,"maxRetries":1,"createdAt":"2026-01-01T00:00:00.000000+00:00",'
        '"startedAt":"2026-01-01T00:00:00.000000+00:00","completedAt":null,'
        '"lastUpdatedAt":"2026-01-01T00:00:00.000000+00:00","result":null,'
        '"error":{"code":"UPSTREAM","message":"upstream said no","exception":{'
        '"type":"flask_asyncendpoints.errors.JobFailure","message":"upstream said no",'
        '"stackTrace":null,"innerException":null}},'
        '"retryDelayUntil":"2026-01-01T00:00:04.000000+00:00","progress":{"fraction":0.5,'
        '"message":"half way","updatedAt":"2026-01-01T00:00:00.000000+00:00"}}'
    )

    clock.advance(4)
    behaviour["outcome"] = ValueError("bad value")
    worker.run_once()
    assert raw(client) == (
        '{"id":"0b6f1a8e-3c1d-4a59-9a77-5d2f1e0c4b3a","name":"ProcessData","status":"Failed",'
        '"retryCount":1,"maxRetries":1,"createdAt":"2026-01-01T00:00:00.000000+00:00",'
        '"startedAt":"2026-01-01T00:00:04.000000+00:00","completedAt":"2026-01-01T00:00:04.000000+00:00",'
        '"lastUpdatedAt":"2026-01-01T00:00:04.000000+00:00","result":null,'
        '"error":{"code":"VALUEERROR","message":"bad value","exception":{"type":"ValueError",'
        '"message":"bad value","stackTrace":null,"innerException":null}},"retryDelayUntil":null,'
        '"progress":{"fraction":0.5,"message":"half way","updatedAt":"2026-01-01T00:00:04.000000+00:00"}}'
    )


def test_canceled(client: FlaskClient, clock: FakeClock) -> None:
    submit(client, clock)
    clock.advance(0.25)
    assert client.delete(f"/jobs/{JOB_ID}").status_code == 200
    assert raw(client) == (
        '{"id":"0b6f1a8e-3c1d-4a59-9a77-5d2f1e0c4b3a","name":"ProcessData","status":"Canceled",'
        '"retryCount":0,"maxRetries":1,"createdAt":"2026-01-01T00:00:00.000000+00:00",'
        '"startedAt":null,"completedAt":"2026-01-01T00:00:00.250000+00:00",'
        '"lastUpdatedAt":"2026-01-01T00:00:00.250000+00:00","result":null,"error":null,'
        '"retryDelayUntil":null,"progress":null}'
    )


def test_canceled_while_running(
    client: FlaskClient, clock: FakeClock, worker: Worker, behaviour: dict[str, Any]
) -> None:
    submit(client, clock)
    behaviour["outcome"] = JobCanceled("stopped")
    worker.run_once()
    body = client.get(f"/jobs/{JOB_ID}").get_json()
    assert body["status"] == "Canceled"
    assert body["error"] is None


def test_keys_in_order_and_the_content_type(client: FlaskClient, clock: FakeClock, app: Flask) -> None:
    submit(client, clock)
    response = client.get(f"/jobs/{JOB_ID}")
    assert response.mimetype == "application/json"
    assert list(response.get_json()) == KEYS

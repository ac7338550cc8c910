"""The example app, as the README and the seed's curl session use it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import NOT_BLANK, ae, create_app
from flask_asyncendpoints.stores import Store

from .conftest import Finished


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("EXAMPLE_DELAY", "0")
    monkeypatch.setenv("FLASK_ASYNCENDPOINTS_MAX_CONCURRENCY", "2")
    app = create_app({"TESTING": True})
    yield app
    ae.shutdown(app, timeout=5)


@pytest.fixture
def example_on_every_store(monkeypatch: pytest.MonkeyPatch, store: Store) -> Iterator[Flask]:
    """The example app, its worker threads running, on each kind of store."""
    monkeypatch.setenv("EXAMPLE_DELAY", "0")
    app = create_app({"TESTING": True, "ASYNCENDPOINTS_STORE": store, "ASYNCENDPOINTS_MAX_CONCURRENCY": 2})
    yield app
    ae.shutdown(app, timeout=5)


def test_the_seed_request_completes(example_on_every_store: Flask) -> None:
    example = example_on_every_store
    client: FlaskClient = example.test_client()
    watcher = Finished(example)
    try:
        response = client.post("/api/process-data", json={"data": "Hello, AsyncEndpoints!", "processingPriority": 2})
        assert response.status_code == 202
        job_id = response.get_json()["id"]
        watcher.wait(job_id)
    finally:
        watcher.close()

    body = client.get(response.headers["Location"]).get_json()
    assert body["status"] == "Completed"
    assert body["result"]["processedData"] == "Processed: HELLO, ASYNCENDPOINTS!"
    assert body["result"]["characterCount"] == 22
    assert body["result"]["processedAt"].endswith("+00:00")


def test_higher_processing_priorities_run_first(store: Store) -> None:
    app = create_app({"TESTING": True, "ASYNCENDPOINTS_WORKER": False, "ASYNCENDPOINTS_STORE": store})
    client = app.test_client()
    ids = {}
    for priority in (1, 5, 3):
        answer = client.post("/api/process-data", json={"data": f"p{priority}", "processingPriority": priority})
        assert answer.status_code == 202
        ids[priority] = answer.get_json()["id"]
    claimed = ae.get_store(app).claim(3, 60)
    assert [c.job.id for c in claimed] == [ids[5], ids[3], ids[1]]


def test_the_report_endpoint_takes_no_body(example: Flask) -> None:
    response = example.test_client().post("/api/generate-report")
    assert response.status_code == 202
    assert response.get_json()["name"] == "GenerateReport"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"data": "   ", "processingPriority": 2}, 400),
        ({"data": "x", "processingPriority": 0}, 400),
        ({"data": "x", "processingPriority": 6}, 400),
        ({"data": "\u3000\t", "processingPriority": 2}, 400),
        ({"processingPriority": 2}, 422),
        ({"data": None, "processingPriority": 2}, 422),
    ],
)
def test_the_seed_rules(example: Flask, body: dict[str, object], status: int) -> None:
    response = example.test_client().post("/api/process-data", json=body)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


def test_the_priority_defaults_to_1_as_in_the_seed(example: Flask) -> None:
    response = example.test_client().post("/api/process-data", json={"data": "x"})
    assert response.status_code == 202


@pytest.mark.parametrize("data", [" ", "\x1e", "\ufeff", "\u3000\t", "x", " \u3000x"])
def test_the_validators_rule_is_the_documents(monkeypatch: pytest.MonkeyPatch, data: str) -> None:
    # The document states the validator's rule as a JSON Schema pattern: the two agree on every
    # kind of white space (Python's and ECMAScript's differ at the edges).
    monkeypatch.setenv("EXAMPLE_DELAY", "0")
    app = create_app({"TESTING": True, "ASYNCENDPOINTS_WORKER": False, "ASYNCENDPOINTS_OPENAPI_URL": "/openapi.json"})
    client = app.test_client()
    schema = client.get("/openapi.json").get_json()["components"]["schemas"]["ProcessDataRequest"]
    pattern = schema["properties"]["data"]["pattern"]
    assert pattern == NOT_BLANK
    assert schema["properties"]["processingPriority"] == {"type": "integer", "default": 1, "minimum": 1, "maximum": 5}
    expected = 202 if re.search(pattern, data) else 400
    assert client.post("/api/process-data", json={"data": data}).status_code == expected


def test_the_store_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_ASYNCENDPOINTS_STORE", "nosuch://x")
    with pytest.raises(Exception, match="nosuch://x"):
        create_app()


def test_the_dashboard_is_on_for_this_machine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app({"TESTING": True, "ASYNCENDPOINTS_WORKER": False})
    client = app.test_client()
    job_id = client.post("/api/process-data", json={"data": "x", "processingPriority": 2}).get_json()["id"]
    page = client.get(f"/asyncendpoints/job/{job_id}")
    assert page.status_code == 200 and "ProcessData" in page.get_data(as_text=True)
    assert client.get("/asyncendpoints/", environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code == 403
    monkeypatch.setenv("FLASK_ASYNCENDPOINTS_DASHBOARD_URL", "null")
    assert (
        create_app({"TESTING": True, "ASYNCENDPOINTS_WORKER": False}).test_client().get("/asyncendpoints/").status_code
        == 404
    )

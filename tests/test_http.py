"""The HTTP surface: submit, job details and cancel, and every bad input answered as problem JSON."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, fields, validate
from werkzeug.datastructures import EnvironHeaders

from flask_asyncendpoints import AsyncEndpoints, JobContext, JobStatus, StoreError, problem
from flask_asyncendpoints.stores import MemoryStore
from flask_asyncendpoints.views.submit import _HEADER_NAMES, _MAX_HEADER_NAMES, _request_headers
from flask_asyncendpoints.worker import Worker

from .conftest import FakeClock


class ProcessData(Schema):
    data = fields.String(required=True)
    processingPriority = fields.Integer(required=True, validate=validate.Range(1, 5))


seen: list[JobContext] = []


@pytest.fixture(autouse=True)
def handlers(ae: AsyncEndpoints) -> None:
    seen.clear()

    @ae.handler("ProcessData", request_schema=ProcessData)
    def process(ctx: JobContext) -> dict[str, Any]:
        seen.append(ctx)
        return {"processedData": f"Processed: {ctx.request['data'].upper()}"}

    @ae.handler("Report")
    def report(ctx: JobContext) -> str:
        seen.append(ctx)
        return "done"

    @ae.handler("AnyJson")
    def any_json(ctx: JobContext) -> Any:
        seen.append(ctx)
        return ctx.request

    def no_blank_data(body: dict[str, Any]) -> Any:
        if not body["data"].strip():
            return problem(400, "'data' must not be blank.")
        return None

    ae.route("/api/process-data", "ProcessData", validator=no_blank_data)
    ae.route("/api/reports/<int:year>", "Report", methods=["POST", "PUT", "PATCH", "DELETE"])
    ae.route("/api/any", "AnyJson", body=True)


def post(client: FlaskClient, body: Any = None, **kwargs: Any) -> Any:
    if body is not None:
        kwargs.setdefault("json", body)
    return client.post("/api/process-data", **kwargs)


GOOD = {"data": "Hello, AsyncEndpoints!", "processingPriority": 2}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body  # type: ignore[no-any-return]


def job_count(store: MemoryStore) -> int:
    return sum(store.counts().values())


class TestSubmit:
    def test_accepted_with_location_and_retry_after(self, client: FlaskClient, memory_store: MemoryStore) -> None:
        response = post(client, GOOD)

        assert response.status_code == 202
        job = response.get_json()
        assert job["status"] == "Queued"
        assert job["name"] == "ProcessData"
        assert response.headers["Location"] == f"/jobs/{job['id']}"
        assert response.headers["Retry-After"] == "1"
        stored = memory_store.get(job["id"])
        assert stored is not None
        assert stored.payload.body == GOOD

    def test_location_follows_the_script_root_of_each_request(self, client: FlaskClient) -> None:
        for root in ("/app", "", "/other/mount", "/app"):
            response = post(client, GOOD, base_url=f"http://localhost{root}")
            assert response.status_code == 202
            assert response.headers["Location"] == f"{root}/jobs/{response.get_json()['id']}"

    def test_poll_until_completed(self, client: FlaskClient, worker: Worker) -> None:
        location = post(client, GOOD).headers["Location"]

        assert client.get(location).get_json()["status"] == "Queued"
        assert worker.run_once() == 1
        response = client.get(location)

        assert response.status_code == 200
        body = response.get_json()
        assert body["status"] == "Completed"
        assert body["result"] == {"processedData": "Processed: HELLO, ASYNCENDPOINTS!"}
        assert "Retry-After" not in response.headers

    def test_handler_context_carries_the_request(self, client: FlaskClient, worker: Worker) -> None:
        client.put(
            "/api/reports/2026?format=csv&tag=a&tag=b",
            headers={
                "X-Trace": "t-1",
                "Authorization": "Bearer secret",
                "cookie": "session=secret",
                "X-API-KEY": "secret",
                "Proxy-Authorization": "Basic secret",
            },
        )
        worker.run_once()

        (ctx,) = seen
        assert ctx.route_params == {"year": 2026}
        assert ctx.query_params.getlist("tag") == ["a", "b"]
        assert ctx.query_params.get("format") == "csv"
        assert ctx.headers["X-Trace"] == "t-1"
        for secret in ("Authorization", "Cookie", "X-Api-Key", "Proxy-Authorization"):
            assert secret not in ctx.headers
        assert ctx.attempt == 1
        assert ctx.request is None

    def test_redacted_headers_are_never_stored(self, client: FlaskClient, memory_store: MemoryStore) -> None:
        job_id = post(client, GOOD, headers={"Authorization": "Bearer s3cr3t", "X-Api-Key": "s3cr3t"}).get_json()["id"]
        job = memory_store.get(job_id)
        assert job is not None
        assert "s3cr3t" not in json.dumps(job.payload.to_dict())

    @pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
    def test_every_body_method_submits(self, client: FlaskClient, method: str) -> None:
        response = client.open("/api/reports/2025", method=method)
        assert response.status_code == 202
        assert response.get_json()["name"] == "Report"

    def test_a_no_body_endpoint_ignores_a_body(self, client: FlaskClient) -> None:
        response = client.post("/api/reports/2025", data="not json", content_type="text/plain")
        assert response.status_code == 202

    def test_body_without_schema_takes_any_json(self, client: FlaskClient, worker: Worker) -> None:
        location = client.post("/api/any", json=[1, {"a": None}]).headers["Location"]
        worker.run_once()
        assert client.get(location).get_json()["result"] == [1, {"a": None}]

    def test_validator_answer_is_sent_and_no_job_is_created(
        self, client: FlaskClient, memory_store: MemoryStore
    ) -> None:
        body = assert_problem(post(client, {"data": "   ", "processingPriority": 1}), 400)
        assert body["detail"] == "'data' must not be blank."
        assert job_count(memory_store) == 0


class TestIdempotentSubmit:
    def test_the_request_id_becomes_the_job_id(self, client: FlaskClient) -> None:
        request_id = str(uuid.uuid4())
        response = post(client, GOOD, headers={"X-Async-Request-Id": request_id})
        assert response.status_code == 202
        assert response.get_json()["id"] == request_id

    def test_a_repeated_request_returns_the_same_job(
        self, client: FlaskClient, memory_store: MemoryStore, worker: Worker
    ) -> None:
        headers = {"X-Async-Request-Id": str(uuid.uuid4())}
        first = post(client, GOOD, headers=headers)
        again = post(client, {"data": "other", "processingPriority": 3}, headers=headers)

        assert again.status_code == 202
        assert again.get_json() == first.get_json()
        assert again.headers["Location"] == first.headers["Location"]
        assert job_count(memory_store) == 1

        worker.run_once()
        done = post(client, GOOD, headers=headers)
        assert done.status_code == 200
        assert done.get_json()["status"] == "Completed"
        assert job_count(memory_store) == 1

    def test_not_a_uuid_is_rejected(self, client: FlaskClient, memory_store: MemoryStore) -> None:
        assert_problem(post(client, GOOD, headers={"X-Async-Request-Id": "abc"}), 400)
        assert job_count(memory_store) == 0

    def test_an_id_of_another_endpoint_conflicts(self, client: FlaskClient) -> None:
        headers = {"X-Async-Request-Id": str(uuid.uuid4())}
        post(client, GOOD, headers=headers)
        assert_problem(client.post("/api/reports/2025", headers=headers), 409)


class TestBadInput:
    @pytest.mark.parametrize(
        ("raw", "why"),
        [
            (b"{bad", "not JSON"),
            (b'{"data": "x", "processingPriority": NaN}', "NaN"),
            (b'{"data": "x", "processingPriority": Infinity}', "Infinity"),
            (b'{"data": "x", "processingPriority": -Infinity}', "-Infinity"),
            (b"null", "top-level null"),
            (b"[1, 2]", "an array"),
            (b'"text"', "a string"),
            (b"\xff\xfe{}", "invalid UTF-8"),
            (b'{"data": "\xc3\x28"}', "invalid UTF-8 in a string"),
            (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
            (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "objects nested too deeply"),
            (b"\xef\xbb\xbf{}", "a byte order mark"),
            (b"   ", "only whitespace"),
            (b"", "empty"),
        ],
    )
    def test_malformed_bodies_are_400(
        self, client: FlaskClient, memory_store: MemoryStore, raw: bytes, why: str
    ) -> None:
        response = client.post("/api/process-data", data=raw, content_type="application/json")
        assert_problem(response, 400)
        assert job_count(memory_store) == 0

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
    def test_wrong_content_type_is_415(
        self, client: FlaskClient, memory_store: MemoryStore, content_type: str | None
    ) -> None:
        response = client.post("/api/process-data", data=json.dumps(GOOD), content_type=content_type)
        assert_problem(response, 415)
        assert job_count(memory_store) == 0

    def test_a_json_suffix_type_is_accepted(self, client: FlaskClient) -> None:
        response = client.post("/api/process-data", data=json.dumps(GOOD), content_type="application/vnd.x+json")
        assert response.status_code == 202

    def test_a_charset_other_than_utf8_is_415(self, client: FlaskClient) -> None:
        response = client.post(
            "/api/process-data", data=json.dumps(GOOD), content_type="application/json; charset=latin-1"
        )
        assert_problem(response, 415)

    def test_validation_errors_are_422_with_each_field(self, client: FlaskClient, memory_store: MemoryStore) -> None:
        body = assert_problem(post(client, {"data": 5, "processingPriority": 9, "extra": 1}), 422)
        assert set(body["errors"]) == {"data", "processingPriority", "extra"}
        assert job_count(memory_store) == 0

    def test_too_large_is_413(self, app: Flask, client: FlaskClient, memory_store: MemoryStore) -> None:
        limit = app.extensions["asyncendpoints"].settings.max_payload_bytes
        big = json.dumps({"data": "x" * limit, "processingPriority": 1})
        assert_problem(post(client, data=big, content_type="application/json"), 413)
        assert job_count(memory_store) == 0

    def test_too_large_without_a_length_is_413(
        self, app: Flask, client: FlaskClient, memory_store: MemoryStore
    ) -> None:
        limit = app.extensions["asyncendpoints"].settings.max_payload_bytes
        big = json.dumps({"data": "x" * limit, "processingPriority": 1}).encode()
        response = client.post(
            "/api/process-data",
            input_stream=io.BytesIO(big),
            content_type="application/json",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert_problem(response, 413)
        assert job_count(memory_store) == 0


class TestJobDetails:
    def test_unknown_job_is_404_problem(self, client: FlaskClient) -> None:
        body = assert_problem(client.get(f"/jobs/{uuid.uuid4()}"), 404)
        assert body["title"] == "Job not found"

    def test_not_a_uuid_is_404(self, client: FlaskClient) -> None:
        assert_problem(client.get("/jobs/not-a-uuid"), 404)

    def test_a_pending_job_has_retry_after(self, client: FlaskClient) -> None:
        location = post(client, GOOD).headers["Location"]
        assert client.get(location).headers["Retry-After"] == "1"


class TestCancel:
    def test_cancel_a_queued_job(self, client: FlaskClient, worker: Worker) -> None:
        location = post(client, GOOD).headers["Location"]

        response = client.delete(location)

        assert response.status_code == 200
        assert response.get_json()["status"] == "Canceled"
        assert worker.run_once() == 0

    def test_cancel_a_running_job_is_202(self, ae: AsyncEndpoints, client: FlaskClient, worker: Worker) -> None:
        job_id = post(client, GOOD).get_json()["id"]
        assert len(worker.store.claim(1, 60)) == 1

        response = client.delete(f"/jobs/{job_id}")

        assert response.status_code == 202
        assert response.get_json()["status"] == "InProgress"

    def test_cancel_a_finished_job_is_409(self, client: FlaskClient, worker: Worker) -> None:
        location = post(client, GOOD).headers["Location"]
        worker.run_once()
        assert_problem(client.delete(location), 409)

    def test_cancel_unknown_is_404(self, client: FlaskClient) -> None:
        assert_problem(client.delete(f"/jobs/{uuid.uuid4()}"), 404)
        assert_problem(client.delete("/jobs/nope"), 404)


class TestPendingLimit:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        return {"ASYNCENDPOINTS_MAX_PENDING_JOBS": 2}

    def test_at_the_limit_submits_are_503_with_retry_after(
        self, client: FlaskClient, memory_store: MemoryStore, worker: Worker
    ) -> None:
        assert post(client, GOOD).status_code == 202
        assert post(client, GOOD).status_code == 202

        response = post(client, GOOD)

        assert_problem(response, 503)
        assert response.headers["Retry-After"] == "1"
        assert job_count(memory_store) == 2
        worker.run_once()
        assert post(client, GOOD).status_code == 202


class BrokenStore(MemoryStore):
    """A store whose server is gone."""

    def _down(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreError("connection refused")

    create = get = cancel = _down  # type: ignore[assignment]


class TestStoreDown:
    @pytest.fixture
    def memory_store(self, clock: FakeClock) -> MemoryStore:
        return BrokenStore(clock=clock)

    def test_submit_is_503_and_the_app_keeps_serving(self, client: FlaskClient) -> None:
        assert_problem(post(client, GOOD), 503)
        assert_problem(client.get(f"/jobs/{uuid.uuid4()}"), 503)
        assert_problem(client.delete(f"/jobs/{uuid.uuid4()}"), 503)
        assert_problem(post(client, GOOD, headers={"X-Async-Request-Id": str(uuid.uuid4())}), 503)


def test_job_status_strings_are_the_wire_values() -> None:
    assert [s.value for s in JobStatus] == ["Queued", "Scheduled", "InProgress", "Completed", "Failed", "Canceled"]


class TrickleStream(io.BytesIO):
    """A body stream that answers every sized read with at most a few bytes, as a socket may."""

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return super().read()
        return super().read(min(size, 7))


def test_a_body_that_arrives_in_small_pieces_is_read_whole(client: FlaskClient, memory_store: MemoryStore) -> None:
    body = json.dumps({"data": "x" * 200, "processingPriority": 3}).encode()
    response = client.post(
        "/api/process-data",
        input_stream=TrickleStream(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 202
    job = memory_store.get(response.get_json()["id"])
    assert job is not None
    assert job.payload.body["data"] == "x" * 200


#: WSGI environ keys as servers write them, and the odd ones a client or a server can make.
environ_keys = st.one_of(
    st.sampled_from(
        [
            "CONTENT_TYPE",
            "CONTENT_LENGTH",
            "HTTP_CONTENT_TYPE",
            "HTTP_CONTENT_LENGTH",
            "HTTP_",
            "HTTP_X_TRACE",
            "HTTP_X__TWO",
            "REQUEST_METHOD",
            "wsgi.input",
            "gunicorn.socket",
        ]
    ),
    st.builds(lambda name: f"HTTP_{name}", st.text(min_size=0, max_size=12)),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(
    environ=st.dictionaries(environ_keys, st.one_of(st.text(max_size=8), st.binary(max_size=4)), max_size=12),
    rounds=st.integers(1, 3),
)
def test_the_submit_view_reads_the_headers_werkzeug_gives(environ: dict[str, Any], rounds: int) -> None:
    # The view reads the environ itself, spelling each name once per process: the same headers, in
    # the same order, on the first request and on every one after it.
    for _ in range(rounds):
        assert _request_headers(environ) == list(EnvironHeaders(environ).items())


def test_the_header_names_kept_stay_bounded() -> None:
    for number in range(2 * _MAX_HEADER_NAMES):
        environ = {f"HTTP_X_{number}": "1", "CONTENT_TYPE": "application/json"}
        assert _request_headers(environ) == [(f"X-{number}", "1"), ("Content-Type", "application/json")]
        assert len(_HEADER_NAMES) <= _MAX_HEADER_NAMES

"""Property-based fuzzing of the HTTP surface: no input yields a 5xx, every error is problem JSON,
and no request leaves a half-created job behind."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, fields, validate

from flask_asyncendpoints import AsyncEndpoints, JobContext
from flask_asyncendpoints.stores import MemoryStore

from .conftest import FakeClock


class Body(Schema):
    data = fields.String(required=True)
    processingPriority = fields.Integer(required=True, validate=validate.Range(1, 5))
    tags = fields.List(fields.String())


@pytest.fixture
def fuzz_app(clock: FakeClock) -> tuple[Flask, MemoryStore]:
    ae = AsyncEndpoints()

    @ae.handler("ProcessData", request_schema=Body)
    def process(ctx: JobContext) -> Any:
        return ctx.request

    ae.handler("Report")(lambda ctx: None)
    ae.handler("AnyJson")(lambda ctx: ctx.request)
    ae.route("/api/process-data", "ProcessData", methods=["POST", "PUT"])
    ae.route("/api/reports/<int:year>", "Report", methods=["POST", "DELETE"])
    ae.route("/api/any", "AnyJson", body=True, methods=["PATCH"])
    app = Flask("fuzz")
    app.config.update(ASYNCENDPOINTS_WORKER=False, ASYNCENDPOINTS_MAX_PAYLOAD_BYTES=4096)
    store = MemoryStore(clock=clock)
    ae.init_app(app, store=store)
    return app, store


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"data": json_values, "processingPriority": json_values},
        optional={"tags": json_values, "extra": json_values},
    ).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"NaN", b'{"data": NaN}', b"[" * 5000, b"\xff\xfe", b"", b"null", b"\xef\xbb\xbf{}"]),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "text/plain",
            "application/problem+json",
            "multipart/form-data; boundary=x",
            "application/x+json",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
request_ids = st.one_of(st.none(), st.uuids().map(str), header_text)
targets = st.sampled_from(
    [
        ("POST", "/api/process-data"),
        ("PUT", "/api/process-data"),
        ("POST", "/api/reports/2026"),
        ("DELETE", "/api/reports/1"),
        ("PATCH", "/api/any"),
    ]
)
path_text = st.text(alphabet="abcdefABCDEF0123456789-._~{}", max_size=40)
job_paths = st.one_of(st.uuids().map(lambda u: f"/jobs/{u}"), path_text.map(lambda t: "/jobs/" + t))


def check(response: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
        problem = json.loads(response.get_data())
        assert {"type", "title", "status", "detail"} <= set(problem)
        assert problem["status"] == response.status_code
    assert "Traceback" not in response.get_data(as_text=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=targets, body=bodies, content_type=content_types, request_id=request_ids, extra=header_text)
def test_submits_never_fail_the_server(
    fuzz_app: tuple[Flask, MemoryStore],
    target: tuple[str, str],
    body: bytes,
    content_type: str | None,
    request_id: str | None,
    extra: str,
) -> None:
    app, store = fuzz_app
    before = sum(store.counts().values())
    headers = {"X-Fuzz": extra}
    if request_id is not None:
        headers["X-Async-Request-Id"] = request_id
    method, path = target

    response = app.test_client().open(path, method=method, data=body, content_type=content_type, headers=headers)

    check(response)
    after = sum(store.counts().values())
    if response.status_code == 202 and after == before + 1:
        job = store.get(response.get_json()["id"])
        assert job is not None
        assert job.payload is not None
    else:
        # Refused, or an idempotent replay: nothing new is stored.
        assert after == before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=job_paths, method=st.sampled_from(["GET", "DELETE"]), wait=st.one_of(st.none(), header_text))
def test_job_routes_never_fail_the_server(
    fuzz_app: tuple[Flask, MemoryStore], path: str, method: str, wait: str | None
) -> None:
    app, _ = fuzz_app
    query = {"wait": wait} if wait is not None else None
    response = app.test_client().open(path, method=method, query_string=query)
    if response.status_code == 404 and response.mimetype != "application/problem+json":
        # A path that no rule matches at all (Flask's own 404), not one of the job routes.
        assert not _is_job_route(path)
        return
    check(response)


def _is_job_route(path: str) -> bool:
    rest = path.removeprefix("/jobs/")
    return path.startswith("/jobs/") and bool(rest) and "/" not in rest


def test_a_known_job_is_found_through_the_fuzzed_routes(fuzz_app: tuple[Flask, MemoryStore]) -> None:
    app, _ = fuzz_app
    job_id = app.test_client().post("/api/reports/2026").get_json()["id"]
    assert app.test_client().get(f"/jobs/{uuid.UUID(job_id)}").status_code == 200

"""Property-based fuzzing of the HTTP surface and the Python API: no input yields a 5xx, every
error is problem JSON, no request leaves a half-created job behind, and every job stored can be
answered as UTF-8 JSON.

The strategies reach every kind of input that once broke that: lone UTF-16 surrogates (in values,
keys, header values, route and query parameters, handler results), numbers that overflow to
infinity, results that are not JSON at all. Each fuzzed app runs on the memory store and on
fakeredis, which encode differently and so failed differently.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, fields, validate

from flask_asyncendpoints import AsyncEndpoints, InvalidPayload, JobContext, JobStatus
from flask_asyncendpoints.encoding import describe
from flask_asyncendpoints.stores import Store

from .conftest import FakeClock, make_store
from .test_bad_input import RawName


class Body(Schema):
    data = fields.String(required=True)
    processingPriority = fields.Integer(required=True, validate=validate.Range(1, 5))
    tags = fields.List(fields.String())


@dataclass
class Fuzzed:
    ae: AsyncEndpoints
    app: Flask
    store: Store
    #: What the ``Returns`` handler returns for each job id (results that cannot be stored included).
    results: dict[str, Any]


@pytest.fixture(params=["memory", "fakeredis"])
def fuzzed(request: pytest.FixtureRequest, clock: FakeClock, key_prefix: str) -> Fuzzed:
    ae = AsyncEndpoints()
    results: dict[str, Any] = {}

    @ae.handler("ProcessData", request_schema=Body)
    def process(ctx: JobContext) -> Any:
        return ctx.request

    ae.handler("Report")(lambda ctx: None)
    ae.handler("AnyJson")(lambda ctx: ctx.request)
    ae.handler("File")(lambda ctx: ctx.route_params["name"])
    ae.handler("Returns", max_retries=0)(lambda ctx: results.pop(ctx.job_id))
    ae.route("/api/process-data", "ProcessData", methods=["POST", "PUT"])
    ae.route("/api/reports/<int:year>", "Report", methods=["POST", "DELETE"])
    ae.route("/api/any", "AnyJson", body=True, methods=["PATCH"])
    ae.route("/api/files/<raw:name>", "File")
    app = Flask("fuzz")
    app.url_map.converters["raw"] = RawName
    app.config.update(ASYNCENDPOINTS_WORKER=False, ASYNCENDPOINTS_MAX_PAYLOAD_BYTES=4096)
    store = make_store(request.param, request, clock, key_prefix)
    ae.init_app(app, store=store)
    return Fuzzed(ae, app, store, results)


#: Text that reaches what UTF-8 cannot hold: lone surrogates of both halves, and the two halves of a
#: pair (which JSON's escapes join into one character), among ordinary text.
tricky_text = st.text(
    alphabet=st.sampled_from(
        ["a", " ", "é", "\u20ac", "\U0001f600", "\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00"]
    ),
    max_size=12,
)
any_text = st.one_of(
    st.text(max_size=20), tricky_text, st.text(alphabet=st.characters(exclude_categories=()), max_size=8)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"data": json_values, "processingPriority": json_values},
        optional={"tags": json_values, "extra": json_values},
    ).map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"NaN",
            b'{"data": NaN}',
            b"[" * 5000,
            b"\xff\xfe",
            b"",
            b"null",
            b"\xef\xbb\xbf{}",
            b'{"data": "\\ud800", "processingPriority": 1}',
            b'{"data": "x", "processingPriority": 1, "\\udfff": 0}',
            b'{"data": 1e400, "processingPriority": 1}',
            b"[-1e999]",
        ]
    ),
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
#: Header values as a WSGI server passes them (Latin-1), and as a test client or middleware may (anything).
header_values = st.one_of(
    header_text, st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=20), tricky_text
)
request_ids = st.one_of(st.none(), st.uuids().map(str), header_text)
#: Names as bytes that may not be UTF-8; the ``raw`` converter decodes them with ``surrogateescape``.
file_names = st.one_of(
    st.binary(min_size=1, max_size=12),
    tricky_text.filter(bool).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
targets = st.one_of(
    st.sampled_from(
        [
            ("POST", "/api/process-data"),
            ("PUT", "/api/process-data"),
            ("POST", "/api/reports/2026"),
            ("DELETE", "/api/reports/1"),
            ("PATCH", "/api/any"),
        ]
    ),
    file_names.map(lambda name: ("POST", "/api/files/" + name.hex())),
)
path_text = st.text(alphabet="abcdefABCDEF0123456789-._~{}", max_size=40)
job_paths = st.one_of(st.uuids().map(lambda u: f"/jobs/{u}"), path_text.map(lambda t: "/jobs/" + t))


def check(response: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    raw = response.get_data()
    raw.decode("utf-8")
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
        problem = json.loads(raw)
        assert {"type", "title", "status", "detail"} <= set(problem)
        assert problem["status"] == response.status_code
    assert b"Traceback" not in raw


def storable(raw: bytes) -> bool:
    """Whether a body that is JSON could be stored as UTF-8 JSON (no lone surrogate, no infinity)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return True  # not JSON at all: refused for that, not for this
    return describe(value, "body") is None


def check_stored(fuzz: Fuzzed, job_id: str) -> None:
    """The job is stored as strict UTF-8 JSON, and its record answers as such."""
    job = fuzz.store.get(job_id)
    assert job is not None
    json.dumps(job.payload.to_dict(), allow_nan=False, ensure_ascii=False).encode("utf-8")
    response = fuzz.app.test_client().get(f"/jobs/{job_id}")
    assert response.status_code == 200
    json.loads(response.get_data().decode("utf-8"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=targets, body=bodies, content_type=content_types, request_id=request_ids, extra=header_values)
def test_submits_never_fail_the_server(
    fuzzed: Fuzzed,
    target: tuple[str, str],
    body: bytes,
    content_type: str | None,
    request_id: str | None,
    extra: str,
) -> None:
    store = fuzzed.store
    before = sum(store.counts().values())
    headers = {"X-Fuzz": extra}
    if request_id is not None:
        headers["X-Async-Request-Id"] = request_id
    method, path = target

    response = fuzzed.app.test_client().open(path, method=method, data=body, content_type=content_type, headers=headers)

    check(response)
    after = sum(store.counts().values())
    if response.status_code == 202 and after == before + 1:
        check_stored(fuzzed, response.get_json()["id"])
        if path in ("/api/any", "/api/process-data"):
            assert storable(body), body
    else:
        # Refused, or an idempotent replay: nothing new is stored.
        assert after == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=json_values,
    headers=st.dictionaries(header_text.filter(bool), header_values, max_size=3),
    route_params=st.dictionaries(any_text, json_values, max_size=2),
    query_params=st.dictionaries(any_text, st.lists(any_text, max_size=2), max_size=2),
)
def test_python_submits_store_only_what_can_be_answered(
    fuzzed: Fuzzed,
    body: Any,
    headers: dict[str, str],
    route_params: dict[str, Any],
    query_params: dict[str, list[str]],
) -> None:
    store = fuzzed.store
    before = sum(store.counts().values())
    try:
        job = fuzzed.ae.submit(
            "AnyJson", body, headers=headers, route_params=route_params, query_params=query_params, app=fuzzed.app
        )
    except InvalidPayload:
        assert sum(store.counts().values()) == before
        return
    check_stored(fuzzed, job.id)


unstorable_results = st.sampled_from([math.nan, -math.inf, {1, 2}, b"bytes", {"when": object()}, {1j: 0}])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(result=st.one_of(json_values, unstorable_results, st.lists(st.one_of(any_text, unstorable_results))))
def test_any_result_completes_or_fails_its_own_attempt(fuzzed: Fuzzed, result: Any) -> None:
    job = fuzzed.ae.submit("Returns", app=fuzzed.app)
    fuzzed.results[job.id] = result

    assert fuzzed.ae.get_worker(fuzzed.app).run_once() == 1

    done = fuzzed.store.get(job.id)
    assert done is not None
    if describe(result, "result") is None:
        assert done.status is JobStatus.COMPLETED
        assert done.result == json.loads(json.dumps(result))
    else:
        assert done.status is JobStatus.FAILED
        assert done.error is not None and done.error.code == "RESULTNOTSERIALIZABLE"
    check_stored(fuzzed, job.id)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=job_paths, method=st.sampled_from(["GET", "DELETE"]), wait=st.one_of(st.none(), header_text))
def test_job_routes_never_fail_the_server(fuzzed: Fuzzed, path: str, method: str, wait: str | None) -> None:
    query = {"wait": wait} if wait is not None else None
    response = fuzzed.app.test_client().open(path, method=method, query_string=query)
    if response.status_code == 404 and response.mimetype != "application/problem+json":
        # A path that no rule matches at all (Flask's own 404), not one of the job routes.
        assert not _is_job_route(path)
        return
    check(response)


def _is_job_route(path: str) -> bool:
    rest = path.removeprefix("/jobs/")
    return path.startswith("/jobs/") and bool(rest) and "/" not in rest


def test_a_known_job_is_found_through_the_fuzzed_routes(fuzzed: Fuzzed) -> None:
    client = fuzzed.app.test_client()
    job_id = client.post("/api/reports/2026").get_json()["id"]
    assert client.get(f"/jobs/{uuid.UUID(job_id)}").status_code == 200

"""Input that cannot be stored or answered as UTF-8 JSON, and request context outside its limits.

Python's ``json`` reads ``"\\ud800"`` as a string holding a lone UTF-16 surrogate and ``1e400`` as
an infinity; neither can be written back as UTF-8 JSON. Every store must refuse them the same way:
``400`` at submit over HTTP, :class:`~flask_asyncendpoints.InvalidPayload` from Python, and nothing
stored. What a handler or the library writes from text it did not choose (exception messages,
progress notes) is kept as escapes, so no job record ever fails to encode.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from marshmallow import Schema, fields
from werkzeug.routing import BaseConverter

from flask_asyncendpoints import AsyncEndpoints, AsyncEndpointsError, InvalidPayload, JobContext, JobStatus, problem
from flask_asyncendpoints.stores import Store

from .conftest import FakeClock


class Strict(Schema):
    """Refuses unknown fields: its 422 would name a key the client sent."""

    data = fields.String(required=True)


class RawName(BaseConverter):
    """A URL converter that decodes its segment from hex the way file names are decoded from bytes
    (``surrogateescape``), so a route parameter can hold a lone surrogate."""

    regex = "[0-9a-f]+"

    def to_python(self, value: str) -> str:
        try:
            return bytes.fromhex(value).decode("utf-8", "surrogateescape")
        except ValueError:
            return value

    def to_url(self, value: str) -> str:
        return value.encode("utf-8", "surrogateescape").hex()


@pytest.fixture
def bad_ae() -> AsyncEndpoints:
    ae = AsyncEndpoints()
    ae.handler("Echo")(lambda ctx: ctx.request)
    ae.handler("Strict", request_schema=Strict)(lambda ctx: ctx.request)
    ae.handler("File")(lambda ctx: ctx.route_params["name"])
    ae.route("/echo", "Echo", body=True)
    ae.route("/strict", "Strict")
    ae.route("/files/<raw:name>", "File")
    return ae


@pytest.fixture
def bad_app(bad_ae: AsyncEndpoints, store: Store) -> Iterator[Flask]:
    """An app on every kind of store (memory, fakeredis, real Redis and Cluster, SQL), no worker threads."""
    app = Flask("bad-input")
    app.url_map.converters["raw"] = RawName
    app.config.update(TESTING=True, ASYNCENDPOINTS_WORKER=False)
    bad_ae.init_app(app, store=store)
    yield app
    bad_ae.shutdown(app, timeout=5)


def total(store: Store) -> int:
    return sum(store.counts().values())


def assert_refused(response: Any, *, where: str) -> dict[str, Any]:
    """A 400 problem document that names where the request went wrong."""
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    raw = response.get_data()
    raw.decode("utf-8")  # the answer itself encodes
    problem_doc: dict[str, Any] = json.loads(raw)
    assert problem_doc["title"] == "Request cannot be stored"
    assert where in problem_doc["detail"], problem_doc["detail"]
    return problem_doc


class TestHttpSubmit:
    @pytest.mark.parametrize(
        ("body", "where"),
        [
            (b'{"data": "\\ud800"}', "body['data'] holds a lone UTF-16 surrogate ('\\ud800')"),
            (b'{"data": "ok \\udfff"}', "body['data'] holds a lone UTF-16 surrogate ('\\udfff')"),
            (b'{"\\udc00": 1}', "the key '\\udc00' in body holds a lone UTF-16 surrogate"),
            (b'{"a": [1, {"b": "\\udbff\\u0041"}]}', "body['a'][1]['b']"),
            (b'"\\ud83d"', "body holds a lone UTF-16 surrogate"),
            (b'{"data": 1e400}', "body['data'] is inf"),
            (b"[-1e999]", "body[0] is -inf"),
        ],
    )
    def test_a_body_that_cannot_be_stored_is_400_and_stores_nothing(
        self, bad_app: Flask, store: Store, body: bytes, where: str
    ) -> None:
        response = bad_app.test_client().post("/echo", data=body, content_type="application/json")

        detail = assert_refused(response, where=where)["detail"]
        assert detail.startswith("The request cannot be stored as UTF-8 JSON:")
        assert total(store) == 0

    def test_a_valid_surrogate_pair_is_one_character_and_accepted(self, bad_app: Flask, store: Store) -> None:
        client = bad_app.test_client()
        response = client.post("/echo", data=b'{"data": "\\ud83d\\ude00"}', content_type="application/json")

        assert response.status_code == 202
        job = store.get(response.get_json()["id"])
        assert job is not None
        assert job.payload.body == {"data": "\U0001f600"}

    def test_a_bad_key_is_400_before_the_schema_could_echo_it_in_a_422(self, bad_app: Flask, store: Store) -> None:
        response = bad_app.test_client().post(
            "/strict", data=b'{"data": "x", "\\udcff": 1}', content_type="application/json"
        )

        assert_refused(response, where="the key '\\udcff' in body")
        assert total(store) == 0

    def test_a_header_value_with_a_surrogate_is_400(self, bad_app: Flask, store: Store) -> None:
        response = bad_app.test_client().post(
            "/echo", data=b"{}", content_type="application/json", headers={"X-File": "report-\udcff.txt"}
        )

        assert_refused(response, where="the header 'X-File' holds a lone UTF-16 surrogate ('\\udcff')")
        assert total(store) == 0

    def test_a_route_parameter_with_a_surrogate_is_400(self, bad_app: Flask, store: Store) -> None:
        # b"\xff" is no UTF-8: the converter gives "\udcff" for it, as os.fsdecode would.
        response = bad_app.test_client().post("/files/61ff")

        assert_refused(response, where="route_params['name'] holds a lone UTF-16 surrogate ('\\udcff')")
        assert total(store) == 0

    def test_a_route_parameter_of_valid_text_is_accepted(self, bad_app: Flask, store: Store) -> None:
        response = bad_app.test_client().post("/files/" + "é.txt".encode().hex())

        assert response.status_code == 202
        job = store.get(response.get_json()["id"])
        assert job is not None
        assert job.payload.route_params == {"name": "é.txt"}


class TestPythonSubmit:
    @pytest.mark.parametrize(
        ("kwargs", "where"),
        [
            ({"body": "\ud800"}, "body holds a lone UTF-16 surrogate ('\\ud800')"),
            ({"body": {"names": ["a", "b\udcff"]}}, "body['names'][1]"),
            ({"body": {"x\udc80": 1}}, "the key 'x\\udc80' in body"),
            ({"body": {"ratio": math.nan}}, "body['ratio'] is nan"),
            ({"body": {"when": datetime(2026, 1, 1, tzinfo=timezone.utc)}}, "body['when'] is a datetime"),
            ({"body": {1j: "x"}}, "the key 1j in body is a complex"),
            ({"headers": {"X-Name": "\udcff"}}, "the header 'X-Name'"),
            ({"route_params": {"name": "\udcff"}}, "route_params['name']"),
            ({"query_params": {"q": ["ok", "\ud800"]}}, "query_params['q'][1]"),
            ({"owner": "user-\udcff"}, "the owner key"),
        ],
    )
    def test_a_request_that_cannot_be_stored_raises_and_stores_nothing(
        self, bad_ae: AsyncEndpoints, bad_app: Flask, store: Store, kwargs: dict[str, Any], where: str
    ) -> None:
        with pytest.raises(InvalidPayload) as raised:
            bad_ae.submit("Echo", app=bad_app, **kwargs)

        assert isinstance(raised.value, ValueError)
        assert isinstance(raised.value, AsyncEndpointsError)
        assert where in str(raised.value)
        assert total(store) == 0

    def test_submit_many_stores_nothing_when_one_body_cannot_be_stored(
        self, bad_ae: AsyncEndpoints, bad_app: Flask, store: Store
    ) -> None:
        with pytest.raises(InvalidPayload, match="body holds a lone UTF-16 surrogate"):
            bad_ae.submit_many("Echo", ["fine", "also fine", "bad \udfff"], app=bad_app)

        assert total(store) == 0

    def test_a_deeply_nested_body_is_refused_with_a_message(
        self, bad_ae: AsyncEndpoints, bad_app: Flask, store: Store
    ) -> None:
        body: Any = "leaf"
        for _ in range(100_000):
            body = [body]

        with pytest.raises(InvalidPayload, match="nested too deeply"):
            bad_ae.submit("Echo", body, app=bad_app)
        assert total(store) == 0

    def test_a_handler_name_with_a_surrogate_is_refused_at_registration(self) -> None:
        with pytest.raises(AsyncEndpointsError, match="lone UTF-16 surrogate"):
            AsyncEndpoints().handler("Report\udcff")(lambda ctx: None)


class TestOneBuilderWithQueuesAndPriorities:
    """Every submit goes through the one payload builder, whatever queue, priority or delay it has,
    on every kind of store."""

    @pytest.fixture
    def queued_ae(self) -> AsyncEndpoints:
        ae = AsyncEndpoints()
        ae.handler("Echo", queue="urgent")(lambda ctx: ctx.request)
        ae.route("/echo", "Echo", body=True, priority=lambda body: 7, delay=lambda body: 60)
        return ae

    @pytest.fixture
    def queued_app(self, queued_ae: AsyncEndpoints, store: Store) -> Iterator[Flask]:
        app = Flask("queued")
        app.config.update(TESTING=True, ASYNCENDPOINTS_WORKER=False, ASYNCENDPOINTS_MAX_CONTEXT_BYTES=200)
        queued_ae.init_app(app, store=store)
        yield app
        queued_ae.shutdown(app, timeout=5)

    def test_http_checks_come_before_the_priority_and_delay_and_the_job_gets_both(
        self, queued_app: Flask, store: Store
    ) -> None:
        client = queued_app.test_client()
        assert_refused(client.post("/echo", data=b'"\\ud800"', content_type="application/json"), where="body")
        too_big = client.post("/echo", json="ok", headers={"X-Pad": "x" * 300})
        assert too_big.status_code == 413
        assert total(store) == 0

        answer = client.post("/echo", json="ok", headers={"Authorization": "Bearer secret"})
        assert answer.status_code == 202
        assert answer.get_json()["status"] == "Scheduled"
        job = store.get(answer.get_json()["id"])
        assert job is not None
        assert (job.queue, job.priority) == ("urgent", 7)
        assert "authorization" not in {name.lower() for name, _ in job.payload.headers}

    def test_the_python_api_checks_the_payload_and_keeps_queue_priority_and_delay(
        self, queued_ae: AsyncEndpoints, queued_app: Flask, store: Store
    ) -> None:
        with pytest.raises(InvalidPayload, match="the header 'X-Name'"):
            queued_ae.submit("Echo", "ok", headers={"X-Name": "\udcff"}, priority=3, delay=60, app=queued_app)
        with pytest.raises(InvalidPayload, match=re.escape("body['n'] is nan")):
            queued_ae.submit_many("Echo", [{"n": 1}, {"n": math.nan}], priority=3, app=queued_app)
        assert total(store) == 0

        job = queued_ae.submit(
            "Echo", "ok", headers={"Authorization": "Bearer secret"}, priority=3, delay=60, app=queued_app
        )
        assert (job.status, job.queue, job.priority, job.payload.headers) == (JobStatus.SCHEDULED, "urgent", 3, ())
        many = queued_ae.submit_many("Echo", ["a", "b"], priority=-2, app=queued_app)
        assert [(j.queue, j.priority) for j in many if j is not None] == [("urgent", -2), ("urgent", -2)]


class TestWhatTheLibraryWrites:
    def test_an_exception_message_with_a_surrogate_is_kept_as_its_escape(
        self, bad_ae: AsyncEndpoints, bad_app: Flask, store: Store
    ) -> None:
        @bad_ae.handler("ListFiles", max_retries=0)
        def list_files(ctx: JobContext) -> None:
            raise FileNotFoundError("no such file: 'report-\udcff.txt'")

        bad_ae.route("/list", "ListFiles")
        client = bad_app.test_client()
        job_id = client.post("/list").get_json()["id"]
        bad_ae.get_worker(bad_app).run_once()

        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200
        error = json.loads(response.get_data().decode("utf-8"))["error"]
        assert error["code"] == "FILENOTFOUNDERROR"
        assert error["message"] == "no such file: 'report-\\udcff.txt'"
        assert error["exception"]["message"] == "no such file: 'report-\\udcff.txt'"

    def test_a_progress_note_with_a_surrogate_is_kept_as_its_escape(
        self, bad_ae: AsyncEndpoints, bad_app: Flask, store: Store
    ) -> None:
        @bad_ae.handler("Scan")
        def scan(ctx: JobContext) -> str:
            ctx.report_progress(1.0, "scanned \udcff.bin")
            return "done"

        bad_ae.route("/scan", "Scan")
        client = bad_app.test_client()
        job_id = client.post("/scan").get_json()["id"]
        bad_ae.get_worker(bad_app).run_once()

        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200
        record = json.loads(response.get_data().decode("utf-8"))
        assert record["status"] == JobStatus.COMPLETED.value
        assert record["progress"]["message"] == "scanned \\udcff.bin"

    def test_a_validator_answer_with_a_surrogate_is_still_json(self, clock: FakeClock) -> None:
        ae = AsyncEndpoints()
        ae.handler("Named", request_schema=Strict)(lambda ctx: None)
        ae.route("/named", "Named", validator=lambda body: problem(400, f"no file named {body['data']}\udcff"))
        app = Flask("validator")
        app.config.update(ASYNCENDPOINTS_WORKER=False)
        ae.init_app(app)

        response = app.test_client().post("/named", json={"data": "x"})

        assert response.status_code == 400
        raw = response.get_data()
        raw.decode("utf-8")
        # Written as the JSON escape it came from: valid JSON, which a client reads as it would any escape.
        assert b'"detail": "no file named x\\udcff"' in raw


# -- request context outside its limits ----------------------------------------------------------------


@pytest.fixture
def limited(bad_ae: AsyncEndpoints, store: Store) -> Iterator[Flask]:
    app = Flask("limited")
    app.url_map.converters["raw"] = RawName
    app.config.update(
        TESTING=True,
        ASYNCENDPOINTS_WORKER=False,
        ASYNCENDPOINTS_MAX_CONTEXT_BYTES=2048,
        ASYNCENDPOINTS_MAX_PAYLOAD_BYTES=8192,
    )
    bad_ae.init_app(app, store=store)
    yield app
    bad_ae.shutdown(app, timeout=5)


def stored_context_bytes(headers: list[tuple[str, str]]) -> int:
    """What a body-less submit to ``/echo`` stores besides its body: as the docs define it."""
    headers_json = json.dumps([list(h) for h in headers], ensure_ascii=False, separators=(",", ":"))
    return len(headers_json.encode()) + len("{}") + len("{}")  # and the empty route and query parameters


class TestContextLimits:
    def test_headers_over_the_context_limit_are_413_and_store_nothing(self, limited: Flask, store: Store) -> None:
        response = limited.test_client().post(
            "/echo", json={"data": "x"}, headers={f"X-Pad-{n}": "v" * 100 for n in range(30)}
        )

        assert response.status_code == 413
        problem_doc = response.get_json()
        assert problem_doc["title"] == "Request context too large"
        assert "at most 2048 are kept" in problem_doc["detail"]
        assert total(store) == 0

    def test_query_parameters_count_toward_the_context_limit(self, limited: Flask, store: Store) -> None:
        response = limited.test_client().post("/echo", json={"data": "x"}, query_string={"q": ["v" * 500] * 5})

        assert response.status_code == 413
        assert response.get_json()["title"] == "Request context too large"
        assert total(store) == 0

    def test_redacted_headers_do_not_count(self, limited: Flask, store: Store) -> None:
        response = limited.test_client().post("/echo", json={"data": "x"}, headers={"Authorization": "t" * 4000})

        assert response.status_code == 202
        job = store.get(response.get_json()["id"])
        assert job is not None
        assert "authorization" not in {name.lower() for name, _ in job.payload.headers}

    def test_the_context_counts_toward_the_payload_limit(self, limited: Flask, store: Store) -> None:
        client = limited.test_client()
        headers = {f"X-Pad-{n}": "v" * 100 for n in range(15)}  # within the context limit
        # A Content-Length of as many digits as below, so the stored headers come to the same size.
        probe = client.post("/echo", data=json.dumps("y" * 1000), content_type="application/json", headers=headers)
        assert probe.status_code == 202
        stored = store.get(probe.get_json()["id"])
        assert stored is not None
        context = stored_context_bytes(list(stored.payload.headers))
        assert 1000 < context <= 2048
        # A body that fits by itself, but not with the context: one byte over the limit in all.
        fits_alone = json.dumps("x" * (8192 - 2 - context + 1))
        assert 1000 <= len(fits_alone) <= 8192

        response = client.post("/echo", data=fits_alone, content_type="application/json", headers=headers)

        assert response.status_code == 413
        problem_doc = response.get_json()
        assert problem_doc["title"] == "Request too large"
        assert f"comes to {8192 + 1} bytes" in problem_doc["detail"]
        assert total(store) == 1

        just_fits = json.dumps("x" * (8192 - 2 - context))
        assert client.post("/echo", data=just_fits, content_type="application/json", headers=headers).status_code == 202

    def test_the_python_api_has_no_request_limits(self, bad_ae: AsyncEndpoints, limited: Flask, store: Store) -> None:
        job = bad_ae.submit("Echo", "x" * 10_000, headers={"X-Big": "v" * 5000}, app=limited)

        assert job.status is JobStatus.QUEUED
        assert total(store) == 1


@pytest.fixture
def plain_client(bad_ae: AsyncEndpoints, clock: FakeClock) -> FlaskClient:
    app = Flask("plain")
    app.url_map.converters["raw"] = RawName
    app.config.update(TESTING=True, ASYNCENDPOINTS_WORKER=False)
    bad_ae.init_app(app)
    return app.test_client()


def test_the_default_context_limit_is_32_kib(plain_client: FlaskClient) -> None:
    fits = {f"X-Pad-{n}": "v" * 1000 for n in range(30)}
    too_many = {f"X-Pad-{n}": "v" * 1000 for n in range(34)}

    assert plain_client.post("/echo", json={}, headers=fits).status_code == 202
    response = plain_client.post("/echo", json={}, headers=too_many)
    assert response.status_code == 413
    assert "at most 32768 are kept" in response.get_json()["detail"]


def test_the_apps_own_content_length_limit_is_a_413_problem(bad_ae: AsyncEndpoints) -> None:
    app = Flask("flask-limit")
    app.url_map.converters["raw"] = RawName
    app.config.update(TESTING=True, ASYNCENDPOINTS_WORKER=False, MAX_CONTENT_LENGTH=16)
    bad_ae.init_app(app)

    response = app.test_client().post("/echo", json={"data": "x" * 100})

    assert response.status_code == 413
    assert response.get_json()["title"] == "Request body too large"


class ShortStream:
    """A WSGI input that ends before its Content-Length, as when a client closes early."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int = -1) -> bytes:
        data, self.data = self.data, b""
        return data


@pytest.mark.parametrize("terminated", [True, False], ids=["server-terminated-input", "werkzeug-limited-stream"])
def test_a_body_shorter_than_its_content_length_is_400_and_stores_nothing(
    bad_app: Flask, store: Store, terminated: bool
) -> None:
    body = b'{"data": "x"}'
    environ = {"wsgi.input": ShortStream(body), "CONTENT_LENGTH": "200", "wsgi.input_terminated": terminated}

    response = bad_app.test_client().post("/echo", content_type="application/json", environ_overrides=environ)

    assert response.status_code == 400
    problem_doc = response.get_json()
    assert problem_doc["title"] == "Incomplete request body"
    if terminated:
        assert "ended after 13 of the 200 bytes" in problem_doc["detail"]
    assert total(store) == 0

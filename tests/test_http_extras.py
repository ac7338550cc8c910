"""Long-poll, response hooks and access control."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from flask import Flask, Response, request
from flask.testing import FlaskClient

from flask_asyncendpoints import AsyncEndpoints, Job, JobContext, ProblemError, StoreError
from flask_asyncendpoints.stores import MemoryStore
from flask_asyncendpoints.worker import Worker

from .conftest import FakeClock
from .test_http import assert_problem


@pytest.fixture(autouse=True)
def handlers(ae: AsyncEndpoints) -> None:
    ae.handler("Echo")(lambda ctx: "echo")
    ae.route("/echo", "Echo")


class TestLongPoll:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        return {"ASYNCENDPOINTS_MAX_CONCURRENCY": 1}

    def test_answers_as_soon_as_the_job_finishes(self, ae: AsyncEndpoints, app: Flask, client: FlaskClient) -> None:
        release = threading.Event()

        @ae.handler("Gate")
        def gate(ctx: JobContext) -> str:
            assert release.wait(10)
            return "through"

        ae.route("/gate", "Gate")
        location = client.post("/gate").headers["Location"]
        ae.start_worker(app)
        answers: list[Any] = []
        poller = threading.Thread(target=lambda: answers.append(client.get(f"{location}?wait=20").get_json()))
        poller.start()
        release.set()
        poller.join(15)

        assert not poller.is_alive()
        assert answers[0]["status"] == "Completed"
        assert answers[0]["result"] == "through"

    def test_a_finished_job_answers_at_once(self, client: FlaskClient, worker: Worker) -> None:
        location = client.post("/echo").headers["Location"]
        worker.run_once()
        assert client.get(f"{location}?wait=30").get_json()["status"] == "Completed"

    def test_the_wait_is_capped_and_then_answers_the_current_state(
        self, app: Flask, client: FlaskClient, memory_store: MemoryStore
    ) -> None:
        location = client.post("/echo").headers["Location"]
        app.extensions["asyncendpoints"].settings = _with(app, long_poll_max=0.01)
        response = client.get(f"{location}?wait=3600")
        assert response.status_code == 200
        assert response.get_json()["status"] == "Queued"
        assert response.headers["Retry-After"] == "1"

    @pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
    def test_a_bad_wait_is_400(self, client: FlaskClient, value: str) -> None:
        location = client.post("/echo").headers["Location"]
        assert_problem(client.get(f"{location}?wait={value}"), 400)


class TestResponseHooks:
    def test_hooks_shape_every_answer(self, ae: AsyncEndpoints, client: FlaskClient, worker: Worker) -> None:
        @ae.submitted_response
        def add_job_header(job: Job, response: Response) -> Response:
            response.headers["Async-Job-Id"] = job.id
            return response

        @ae.job_details_response
        def details(job: Job, response: Response) -> Any:
            return {"id": job.id, "state": job.status.value}, 200

        @ae.submission_error_response
        def refused(error: ProblemError, response: Response) -> Any:
            return {"refused": error.code, "why": error.detail}, error.code

        response = client.post("/echo")
        job_id = response.get_json()["id"]
        assert response.headers["Async-Job-Id"] == job_id
        assert client.get(f"/jobs/{job_id}").get_json() == {"id": job_id, "state": "Queued"}
        bad = client.post("/echo", headers={"X-Async-Request-Id": "nope"})
        assert bad.status_code == 400
        assert bad.get_json()["refused"] == 400

    def test_exception_hook_shapes_store_failures(self, ae: AsyncEndpoints, app: Flask, clock: FakeClock) -> None:
        class Down(MemoryStore):
            def create(self, *args: Any, **kwargs: Any) -> Any:
                raise StoreError("connection refused")

        other = Flask("down")
        other.config.update(ASYNCENDPOINTS_WORKER=False)
        ae.init_app(other, store=Down(clock=clock))

        @ae.exception_response
        def unavailable(error: Exception, response: Response) -> Response:
            response.headers["X-Store"] = "down"
            return response

        response = other.test_client().post("/echo")
        assert response.status_code == 503
        assert response.headers["X-Store"] == "down"


class TestAccessControl:
    @pytest.fixture(autouse=True)
    def owners(self, ae: AsyncEndpoints) -> None:
        @ae.owner
        def current_user() -> str | None:
            return request.headers.get("X-User")

    def test_another_owners_job_is_404_like_an_unknown_id(self, client: FlaskClient) -> None:
        job_id = client.post("/echo", headers={"X-User": "alice"}).get_json()["id"]

        assert client.get(f"/jobs/{job_id}", headers={"X-User": "alice"}).status_code == 200
        for headers in ({"X-User": "bob"}, {}):
            hidden = assert_problem(client.get(f"/jobs/{job_id}", headers=headers), 404)
            unknown = assert_problem(client.get(f"/jobs/{uuid.uuid4()}", headers=headers), 404)
            assert hidden["title"] == unknown["title"]
            assert_problem(client.delete(f"/jobs/{job_id}", headers=headers), 404)
        assert client.delete(f"/jobs/{job_id}", headers={"X-User": "alice"}).status_code == 200

    def test_request_ids_are_scoped_per_owner(self, client: FlaskClient, memory_store: MemoryStore) -> None:
        key = str(uuid.uuid4())
        alice = client.post("/echo", headers={"X-User": "alice", "X-Async-Request-Id": key}).get_json()
        bob = client.post("/echo", headers={"X-User": "bob", "X-Async-Request-Id": key}).get_json()
        again = client.post("/echo", headers={"X-User": "alice", "X-Async-Request-Id": key}).get_json()

        assert alice["id"] != bob["id"]
        assert again["id"] == alice["id"]
        assert sum(memory_store.counts().values()) == 2

    def test_jobs_without_an_owner_stay_public(self, client: FlaskClient) -> None:
        job_id = client.post("/echo").get_json()["id"]
        assert client.get(f"/jobs/{job_id}", headers={"X-User": "bob"}).status_code == 200

    def test_an_authorize_hook_decides(self, ae: AsyncEndpoints, client: FlaskClient) -> None:
        @ae.authorize
        def admins_read_all(job: Job, action: str) -> bool:
            return request.headers.get("X-Role") == "admin" and action == "read"

        job_id = client.post("/echo", headers={"X-User": "alice"}).get_json()["id"]
        assert client.get(f"/jobs/{job_id}", headers={"X-Role": "admin"}).status_code == 200
        assert_problem(client.get(f"/jobs/{job_id}", headers={"X-User": "alice"}), 404)
        assert_problem(client.delete(f"/jobs/{job_id}", headers={"X-Role": "admin"}), 404)


def _with(app: Flask, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(app.extensions["asyncendpoints"].settings, **changes)


class TestResubmitDoesNotBypassAccess:
    @pytest.fixture(autouse=True)
    def owners(self, ae: AsyncEndpoints) -> None:
        @ae.owner
        def current_user() -> int | None:
            user = request.headers.get("X-User")
            return int(user) if user else None

    def test_another_callers_job_id_cannot_be_resubmitted_to_read_it(
        self, client: FlaskClient, memory_store: MemoryStore
    ) -> None:
        job_id = client.post("/echo", headers={"X-User": "7"}).get_json()["id"]

        anonymous = client.post("/echo", headers={"X-Async-Request-Id": job_id})
        assert_problem(anonymous, 409)
        assert job_id not in anonymous.get_data(as_text=True)
        # Another owner's key is their own: it names a new job of theirs, not the existing one.
        other = client.post("/echo", headers={"X-User": "8", "X-Async-Request-Id": job_id})
        assert other.status_code == 202
        assert other.get_json()["id"] != job_id
        assert sum(memory_store.counts().values()) == 2

    def test_an_owner_key_that_is_not_a_string_still_matches(self, client: FlaskClient) -> None:
        job_id = client.post("/echo", headers={"X-User": "7"}).get_json()["id"]
        assert client.get(f"/jobs/{job_id}", headers={"X-User": "7"}).status_code == 200
        assert client.delete(f"/jobs/{job_id}", headers={"X-User": "7"}).status_code == 200

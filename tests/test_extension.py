"""Binding to apps, registration rules, configuration and the Python API."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask
from marshmallow import Schema, ValidationError, fields

from flask_asyncendpoints import (
    AsyncEndpoints,
    CancelResult,
    ConfigurationError,
    JobContext,
    JobIdConflict,
    JobStatus,
    PendingLimitReached,
)
from flask_asyncendpoints.config import DEFAULTS, PREFIX, Settings
from flask_asyncendpoints.stores import MemoryStore


class Body(Schema):
    name = fields.String(required=True)


def make_app(**config: object) -> Flask:
    app = Flask(f"app-{uuid.uuid4().hex[:6]}")
    app.config.update(TESTING=True, ASYNCENDPOINTS_WORKER=False)
    app.config.update(config)
    return app


def echo(ctx: JobContext) -> object:
    return ctx.request


class TestBinding:
    def test_app_factory_and_direct_binding(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("Echo", request_schema=Body)(echo)
        ae.route("/echo", "Echo")
        factory_app = make_app()
        ae.init_app(factory_app)
        direct_app = make_app()
        direct = AsyncEndpoints(direct_app)

        assert factory_app.test_client().post("/echo", json={"name": "a"}).status_code == 202
        assert isinstance(ae.get_store(factory_app), MemoryStore)
        assert isinstance(direct.get_store(direct_app), MemoryStore)

    def test_two_apps_in_one_process_stay_independent(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("Echo", request_schema=Body)(echo)
        ae.route("/echo", "Echo")
        first, second = make_app(), make_app(ASYNCENDPOINTS_JOB_DETAILS_URL="/tasks/<uuid:job_id>")
        ae.init_app(first)
        ae.init_app(second)

        job = first.test_client().post("/echo", json={"name": "a"}).get_json()

        assert first.test_client().get(f"/jobs/{job['id']}").status_code == 200
        assert second.test_client().get(f"/tasks/{job['id']}").status_code == 404
        assert ae.get_store(first) is not ae.get_store(second)
        assert ae.get_store(second).counts()[JobStatus.QUEUED] == 0
        located = second.test_client().post("/echo", json={"name": "b"}).headers["Location"]
        assert located.startswith("/tasks/")

    def test_routes_added_after_init_app_are_served(self) -> None:
        app = make_app()
        ae = AsyncEndpoints(app)
        ae.handler("Late")(echo)
        ae.route("/late", "Late", methods=["PUT"])
        assert app.test_client().put("/late").status_code == 202

    def test_init_app_twice_says_what_to_do(self) -> None:
        app = make_app()
        ae = AsyncEndpoints(app)
        with pytest.raises(ConfigurationError, match="once per app"):
            ae.init_app(app)
        with pytest.raises(ConfigurationError, match="once per app"):
            AsyncEndpoints().init_app(app)

    def test_using_an_unbound_app_says_what_to_do(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("Echo")(echo)
        with make_app().app_context(), pytest.raises(ConfigurationError, match="init_app"):
            ae.submit("Echo")

    def test_the_worker_starts_with_the_first_request_unless_disabled(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("Echo")(echo)
        ae.route("/echo", "Echo")
        serving = make_app(ASYNCENDPOINTS_WORKER=True, ASYNCENDPOINTS_MAX_CONCURRENCY=1)
        quiet = make_app(ASYNCENDPOINTS_WORKER=False)
        ae.init_app(serving)
        ae.init_app(quiet)
        try:
            assert ae.get_worker(serving).running is False
            serving.test_client().post("/echo")
            quiet.test_client().post("/echo")
            assert ae.get_worker(serving).running is True
            assert ae.get_worker(quiet).running is False
        finally:
            ae.shutdown(serving, timeout=5)


class TestRegistration:
    def test_a_name_registered_twice_is_an_error(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("Twice")(echo)
        with pytest.raises(ConfigurationError, match="already registered"):
            ae.handler("Twice")(lambda ctx: None)

    def test_routing_to_an_unknown_handler_says_what_to_do(self) -> None:
        with pytest.raises(ConfigurationError, match=r"@ae.handler\('Nope'\)"):
            AsyncEndpoints().route("/nope", "Nope")

    def test_get_is_not_an_async_method(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("Echo")(echo)
        with pytest.raises(ConfigurationError, match="POST, PUT, PATCH or DELETE"):
            ae.route("/echo", "Echo", methods=["GET"])

    def test_schemas_may_be_classes_or_instances(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("A", request_schema=Body)(echo)
        ae.handler("B", request_schema=Body(), response_schema=Body)(echo)
        assert isinstance(ae.get_handler("A").request_schema, Body)
        assert isinstance(ae.get_handler("B").response_schema, Body)
        with pytest.raises(ConfigurationError, match="marshmallow Schema"):
            ae.handler("C", request_schema=dict)(echo)  # type: ignore[arg-type]


class TestPythonApi:
    @pytest.fixture
    def ae(self) -> AsyncEndpoints:
        ae = AsyncEndpoints()
        ae.handler("Echo", request_schema=Body, max_retries=7)(echo)
        return ae

    def test_submit_stores_a_job_and_is_idempotent_on_the_id(self, ae: AsyncEndpoints) -> None:
        app = make_app()
        ae.init_app(app)
        job_id = uuid.uuid4()
        with app.app_context():
            job = ae.submit("Echo", {"name": "x"}, job_id=job_id, headers={"Authorization": "no", "X-A": "1"})
            again = ae.submit("Echo", {"name": "y"}, job_id=str(job_id))
            assert ae.get_job(job_id) == job == again
        assert job.status is JobStatus.QUEUED
        assert job.max_retries == 7
        assert job.payload.headers == (("X-A", "1"),)

    def test_submit_validates_the_body(self, ae: AsyncEndpoints) -> None:
        app = make_app()
        ae.init_app(app)
        with pytest.raises(ValidationError):
            ae.submit("Echo", {"wrong": 1}, app=app)
        assert sum(ae.get_store(app).counts().values()) == 0

    def test_submit_at_the_pending_limit_raises(self, ae: AsyncEndpoints) -> None:
        app = make_app(ASYNCENDPOINTS_MAX_PENDING_JOBS=1)
        ae.init_app(app)
        ae.submit("Echo", {"name": "x"}, app=app)
        with pytest.raises(PendingLimitReached):
            ae.submit("Echo", {"name": "x"}, app=app)

    def test_cancel(self, ae: AsyncEndpoints) -> None:
        app = make_app()
        ae.init_app(app)
        job = ae.submit("Echo", {"name": "x"}, app=app)
        outcome, canceled = ae.cancel(job.id, app=app)
        assert outcome.value == "canceled"
        assert canceled is not None
        assert canceled.status is JobStatus.CANCELED


class TestConfiguration:
    def test_every_key_has_its_default(self) -> None:
        app = make_app()
        AsyncEndpoints(app)
        for key, value in DEFAULTS.items():
            if key != "WORKER":
                assert app.config[PREFIX + key] == value
        settings = app.extensions["asyncendpoints"].settings
        assert settings.store == "memory://"
        assert settings.key_prefix == "ae"
        assert settings.batch_size == 5
        assert settings.max_queue_size == 50
        assert settings.max_pending_jobs is None
        assert settings.default_max_retries == 3
        assert settings.retry_delay_base == 2.0
        assert settings.retry_max_delay == 3600
        assert settings.job_timeout == 1800
        assert settings.claim_timeout == 300
        assert settings.recovery_enabled is True
        assert settings.recovery_interval == 60
        assert settings.result_ttl == 86400
        assert settings.shutdown_timeout == 30
        assert settings.max_payload_bytes == 1024 * 1024
        assert settings.redact_headers == {"authorization", "cookie", "proxy-authorization", "x-api-key"}
        assert settings.expose_tracebacks is False
        assert settings.job_details_url == "/jobs/<uuid:job_id>"

    def test_expose_tracebacks_follows_debug_by_default(self) -> None:
        app = make_app()
        app.debug = True
        AsyncEndpoints(app)
        assert app.extensions["asyncendpoints"].settings.expose_tracebacks is True

    def test_values_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FLASK_ASYNCENDPOINTS_WORKER", "false")
        monkeypatch.setenv("FLASK_ASYNCENDPOINTS_MAX_CONCURRENCY", "4")
        monkeypatch.setenv("FLASK_ASYNCENDPOINTS_RESULT_TTL", "null")
        monkeypatch.setenv("FLASK_ASYNCENDPOINTS_REDACT_HEADERS", '["X-Secret"]')
        monkeypatch.setenv("FLASK_ASYNCENDPOINTS_KEY_PREFIX", "{myapp}")
        app = Flask("env")
        app.config.from_prefixed_env()
        AsyncEndpoints(app)
        settings = app.extensions["asyncendpoints"].settings
        assert settings.worker is False
        assert settings.max_concurrency == 4
        assert settings.result_ttl is None
        assert settings.redact_headers == {"x-secret"}
        assert settings.key_prefix == "{myapp}"

    @pytest.mark.parametrize(
        ("key", "value", "message"),
        [
            ("MAX_CONCURRENCY", 0, "MAX_CONCURRENCY must be a whole number ≥ 1"),
            ("MAX_CONCURRENCY", "many", "MAX_CONCURRENCY must be a whole number"),
            ("POLL_INTERVAL", -1, "POLL_INTERVAL must be a finite number"),
            ("RETRY_DELAY_BASE", float("nan"), "RETRY_DELAY_BASE must be a finite number"),
            ("WORKER", "maybe", "WORKER must be true or false"),
            ("REDACT_HEADERS", 5, "REDACT_HEADERS must be a list"),
            ("STORE", "mongodb://x", "names no known store"),
            ("JOB_DETAILS_URL", "/jobs/<id>", "must contain '<uuid:job_id>'"),
        ],
    )
    def test_wrong_values_name_the_key(self, key: str, value: object, message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            AsyncEndpoints(make_app(**{PREFIX + key: value}))

    def test_settings_accept_numbers_as_strings(self) -> None:
        config = {PREFIX + k: v for k, v in DEFAULTS.items()}
        config.update({PREFIX + "BATCH_SIZE": "10", PREFIX + "POLL_INTERVAL": "0.5", PREFIX + "WORKER": "off"})
        settings = Settings.from_config(config)
        assert (settings.batch_size, settings.poll_interval, settings.worker) == (10, 0.5, False)


class TestRegistrationDetails:
    def test_several_routes_to_one_handler_get_their_own_endpoints(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("Echo")(echo)
        ae.route("/a", "Echo")
        ae.route("/b", "Echo", methods=["PUT"])
        app = make_app()
        ae.init_app(app)
        assert [r.endpoint for r in ae.routes] == ["Echo", "Echo_2"]
        assert {"asyncendpoints.Echo", "asyncendpoints.Echo_2"} <= set(app.view_functions)
        assert app.test_client().post("/a").status_code == 202
        assert app.test_client().put("/b").status_code == 202

    def test_body_false_with_a_request_schema_is_refused(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("Typed", request_schema=Body)(echo)
        with pytest.raises(ConfigurationError, match="request schema"):
            ae.route("/typed", "Typed", body=False)

    def test_submitting_an_id_of_another_handlers_job_conflicts(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("A")(echo)
        ae.handler("B")(echo)
        app = make_app()
        ae.init_app(app)
        job = ae.submit("A", app=app)
        with pytest.raises(JobIdConflict):
            ae.submit("B", job_id=job.id, app=app)

    def test_ids_are_found_in_any_spelling(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("A")(echo)
        app = make_app()
        ae.init_app(app)
        job = ae.submit("A", app=app)
        assert ae.get_job(job.id.upper(), app=app) == job
        assert ae.get_job("not-a-uuid", app=app) is None
        assert ae.cancel("not-a-uuid", app=app) == (CancelResult.NOT_FOUND, None)


class TestSubmitMany:
    def test_validates_every_body_first_then_stores_all(self) -> None:
        ae = AsyncEndpoints()
        ae.handler("Echo", request_schema=Body)(echo)
        app = make_app(ASYNCENDPOINTS_MAX_PENDING_JOBS=3)
        ae.init_app(app)

        with pytest.raises(ValidationError):
            ae.submit_many("Echo", [{"name": "ok"}, {"wrong": 1}], app=app)
        assert sum(ae.get_store(app).counts().values()) == 0

        jobs = ae.submit_many("Echo", [{"name": str(n)} for n in range(4)], owner="alice", app=app)

        assert [job.payload.body if job else None for job in jobs] == [
            {"name": "0"},
            {"name": "1"},
            {"name": "2"},
            None,
        ]
        assert all(job.payload.owner == "alice" for job in jobs if job)
        assert ae.get_store(app).counts()[JobStatus.QUEUED] == 3


def test_the_history_limit_reaches_the_store() -> None:
    ae = AsyncEndpoints()

    def always_fails(ctx: object) -> None:
        raise ValueError("no")

    ae.handler("Broken", max_retries=4)(always_fails)
    app = make_app(ASYNCENDPOINTS_HISTORY_LIMIT=2, ASYNCENDPOINTS_RETRY_DELAY_BASE=0)
    ae.init_app(app)
    job_id = ae.submit("Broken", app=app).id
    worker = ae.get_worker(app)
    while worker.run_once():
        pass
    assert ae.get_store(app).get(job_id).status is JobStatus.FAILED  # type: ignore[union-attr]
    assert [record.number for record in ae.get_store(app).attempts(job_id)] == [4, 5]

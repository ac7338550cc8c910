"""Protecting async endpoints the Flask way: blueprints, view decorators, the pre-queue hook, and
problem JSON for the 404s and 405s of the job URL space."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint, Flask, abort, g, request, url_for
from marshmallow import Schema, fields

from flask_asyncendpoints import AsyncEndpoints, ConfigurationError, JobContext


class Order(Schema):
    item = fields.String(required=True)


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """The shape of Flask-Login's decorator: no user, 401."""

    @functools.wraps(view)
    def wrapped(**kwargs: Any) -> Any:
        if request.headers.get("X-User") is None:
            abort(401, description="Log in first.")
        g.user = request.headers["X-User"]
        return view(**kwargs)

    return wrapped


def make_ae() -> AsyncEndpoints:
    ae = AsyncEndpoints()
    ae.handler("Order", request_schema=Order)(lambda ctx: ctx.request)
    ae.handler("Report")(lambda ctx: {"rows": 1})
    return ae


def make_app(ae: AsyncEndpoints, **kwargs: Any) -> Flask:
    app = Flask("protected")
    app.config.update(TESTING=True, ASYNCENDPOINTS_WORKER=False)
    ae.init_app(app, **kwargs)
    return app


class TestDecorators:
    def test_a_login_decorator_protects_a_submit_route(self) -> None:
        ae = make_ae()
        ae.route("/orders", "Order", decorators=[login_required])
        client = make_app(ae).test_client()

        # Refused before the body is read: an unauthenticated caller sees no field errors.
        refused = client.post("/orders", json={"wrong": 1})
        assert refused.status_code == 401
        assert refused.mimetype == "application/problem+json"
        assert refused.get_json()["detail"] == "Log in first."
        assert sum(ae.get_store(client.application).counts().values()) == 0

        assert client.post("/orders", json={"wrong": 1}, headers={"X-User": "ann"}).status_code == 422
        assert client.post("/orders", json={"item": "pen"}, headers={"X-User": "ann"}).status_code == 202

    def test_decorators_apply_in_order_the_last_outermost(self) -> None:
        calls: list[str] = []

        def tag(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
                @functools.wraps(view)
                def wrapped(**kwargs: Any) -> Any:
                    calls.append(name)
                    return view(**kwargs)

                return wrapped

            return decorator

        ae = make_ae()
        ae.route("/reports", "Report", decorators=[tag("inner"), tag("outer")])
        assert make_app(ae).test_client().post("/reports").status_code == 202
        assert calls == ["outer", "inner"]


class TestBeforeSubmit:
    def test_runs_before_the_body_and_the_request_id(self) -> None:
        ae = make_ae()
        ae.route("/orders", "Order")
        seen: list[str] = []

        @ae.before_submit
        def must_log_in(job_name: str) -> Any:
            seen.append(job_name)
            if request.headers.get("X-User") is None:
                abort(401)
            if request.headers["X-User"] == "guest":
                return {"detail": "Guests may not order."}, 403
            return None

        client = make_app(ae).test_client()
        anonymous = client.post("/orders", data="not json", headers={"X-Async-Request-Id": "nope"})
        assert anonymous.status_code == 401
        assert anonymous.mimetype == "application/problem+json"
        assert anonymous.get_json()["title"] == "Unauthorized"
        guest = client.post("/orders", json={"item": "pen"}, headers={"X-User": "guest"})
        assert (guest.status_code, guest.get_json()) == (403, {"detail": "Guests may not order."})
        assert client.post("/orders", json={}, headers={"X-User": "ann"}).status_code == 422
        assert client.post("/orders", json={"item": "pen"}, headers={"X-User": "ann"}).status_code == 202
        assert seen == ["Order"] * 4


class TestBlueprints:
    def test_the_extensions_own_blueprint_takes_a_url_prefix(self) -> None:
        ae = make_ae()
        ae.route("/orders", "Order")
        app = make_app(ae, url_prefix="/async")
        client = app.test_client()

        response = client.post("/async/orders", json={"item": "pen"})

        assert response.status_code == 202
        location = response.headers["Location"]
        assert location.startswith("/async/jobs/")
        assert client.get(location).status_code == 200
        assert client.post("/orders", json={"item": "pen"}).status_code == 404
        with app.test_request_context():
            assert url_for("asyncendpoints.Order") == "/async/orders"

    def test_a_route_added_after_init_app_gets_the_prefix_and_the_blueprints_hooks(self) -> None:
        ae = make_ae()
        app = make_app(ae, url_prefix="/async")
        ae.route("/late", "Report")
        assert app.test_client().post("/async/late").status_code == 202
        assert "asyncendpoints.Report" in app.view_functions

    def test_a_route_on_the_users_blueprint_gets_its_prefix_and_hooks(self) -> None:
        admin = Blueprint("admin", __name__, url_prefix="/admin")

        @admin.before_request
        def admins_only() -> Any:
            if request.headers.get("X-Role") != "admin":
                return {"detail": "Admins only."}, 403
            return None

        ae = make_ae()
        ae.route("/reports", "Report", blueprint=admin)
        app = make_app(ae)
        app.register_blueprint(admin)
        client = app.test_client()

        assert client.post("/admin/reports").status_code == 403
        accepted = client.post("/admin/reports", headers={"X-Role": "admin"})
        assert accepted.status_code == 202
        # The job routes stay on the extension's blueprint.
        assert accepted.headers["Location"].startswith("/jobs/")
        with app.test_request_context():
            assert url_for("admin.Report") == "/admin/reports"

    def test_init_app_can_put_every_route_on_the_users_blueprint(self) -> None:
        api = Blueprint("api", __name__)

        @api.before_request
        def needs_a_key() -> Any:
            if request.headers.get("X-Key") != "k":
                abort(401)
            return None

        ae = make_ae()
        ae.route("/orders", "Order")
        app = make_app(ae, blueprint=api, url_prefix="/v1")
        client = app.test_client()

        assert client.post("/v1/orders", json={"item": "pen"}).status_code == 401
        response = client.post("/v1/orders", json={"item": "pen"}, headers={"X-Key": "k"})
        assert response.status_code == 202
        location = response.headers["Location"]
        assert location.startswith("/v1/jobs/")
        assert client.get(location).status_code == 401  # the blueprint's hook guards the job routes too
        assert client.get(location, headers={"X-Key": "k"}).status_code == 200

        # The same blueprint serves a second app.
        other = make_app(ae, blueprint=api, url_prefix="/v1")
        assert other.test_client().post("/v1/orders", json={"item": "x"}, headers={"X-Key": "k"}).status_code == 202

    def test_a_blueprint_registered_already_is_refused(self) -> None:
        api = Blueprint("api", __name__)
        app = Flask("early")
        app.register_blueprint(api)
        with pytest.raises(ConfigurationError, match="not registered yet"):
            make_ae().init_app(app, blueprint=api)


class TestJobUrlSpace:
    @pytest.fixture
    def client(self) -> Any:
        ae = make_ae()
        ae.route("/orders", "Order")
        app = make_app(ae)

        @app.route("/jobs-report")
        def a_page_of_the_apps_own() -> str:
            return "ok"

        return app.test_client()

    @pytest.mark.parametrize("path", ["/jobs/", "/jobs/x/y", "/jobs/8f14e45f-ceea-467a-a866-051f8b1e3a1c/result"])
    def test_unknown_urls_under_jobs_answer_problem_json_404(self, client: Any, path: str) -> None:
        for method in ("GET", "POST", "DELETE"):
            response = client.open(path, method=method)
            assert response.status_code == 404, (method, path)
            assert response.mimetype == "application/problem+json"
            assert "job URLs look like /jobs/<job id>" in response.get_json()["detail"]

    @pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
    def test_a_wrong_method_on_a_job_url_answers_problem_json_405(self, client: Any, method: str) -> None:
        response = client.open("/jobs/8f14e45f-ceea-467a-a866-051f8b1e3a1c", method=method)
        assert response.status_code == 405
        assert response.mimetype == "application/problem+json"
        assert response.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS"

    def test_options_lists_only_the_job_urls_methods(self, client: Any) -> None:
        response = client.options("/jobs/8f14e45f-ceea-467a-a866-051f8b1e3a1c")
        assert response.status_code == 200
        assert response.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS"

    def test_the_apps_own_pages_keep_flasks_answers(self, client: Any) -> None:
        assert client.get("/jobs-report").status_code == 200
        missing = client.get("/nowhere")
        assert missing.status_code == 404
        assert missing.mimetype == "text/html"
        wrong = client.get("/orders")
        assert wrong.status_code == 405
        assert wrong.mimetype == "text/html"


def test_handlers_see_the_user_set_by_a_decorator() -> None:
    ae = AsyncEndpoints()

    @ae.handler("WhoAmI")
    def who_am_i(ctx: JobContext) -> Any:
        return ctx.headers.get("X-User")

    ae.route("/whoami", "WhoAmI", decorators=[login_required])
    app = make_app(ae)
    response = app.test_client().post("/whoami", headers={"X-User": "ann"})
    with app.app_context():
        ae.get_worker().run_once()
        assert ae.get_job(response.get_json()["id"]).result == "ann"  # type: ignore[union-attr]

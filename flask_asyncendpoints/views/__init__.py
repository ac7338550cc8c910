"""The HTTP surface: submit to an async endpoint, read a job, cancel a job, the OpenAPI document.

Every error is answered as problem JSON (RFC 9457); none of these views lets an exception through.
The views live on blueprints: the extension's own (``asyncendpoints``, one per app, with the job
routes and every async endpoint mapped without a blueprint of its own) or the user's. Each view
finds the app's :class:`~flask_asyncendpoints.state.AppState` through ``current_app``, so a user's
blueprint may serve several apps.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from ..errors import ConfigurationError, ProblemError
from ..registry import RouteSpec
from ..state import NOT_INITIALIZED, AppState, app_state
from .jobs import CANCEL_ENDPOINT, JOB_ENDPOINT, cancel_job, job_details, job_location, job_response
from .openapi import openapi_view
from .problems import JSON_MIMETYPE, PROBLEM_MIMETYPE, problem, problem_response
from .submit import OWNER_REQUEST_ID_NAMESPACE, REQUEST_ID_HEADER, submit_view

__all__ = [
    "BLUEPRINT_NAME",
    "JOB_ENDPOINT",
    "JSON_MIMETYPE",
    "OWNER_REQUEST_ID_NAMESPACE",
    "PROBLEM_MIMETYPE",
    "REQUEST_ID_HEADER",
    "add_route",
    "job_location",
    "job_response",
    "job_rule",
    "problem",
    "register",
]

#: The name of the extension's own blueprint, and so the prefix of its endpoints.
BLUEPRINT_NAME = "asyncendpoints"

#: The methods the catch-all rule of the job URL space answers (with a 404 or 405 problem).
_SPACE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def job_rule(job_details_url: str) -> str:
    """The URL rule of the job routes for ``ASYNCENDPOINTS_JOB_DETAILS_URL``.

    :raises ConfigurationError: when the URL has no ``<uuid:job_id>``.
    """
    rule = job_details_url.replace("<uuid:job_id>", "<job_id>")
    if "<job_id>" not in rule:
        raise ConfigurationError(f"ASYNCENDPOINTS_JOB_DETAILS_URL={job_details_url!r} must contain '<uuid:job_id>'.")
    return rule


def _state() -> AppState:
    state = app_state(current_app)
    if state is None:  # a user's blueprint registered on an app without the extension
        raise ConfigurationError(NOT_INITIALIZED)
    return state


#: Users' blueprints the job routes were added to already (one may be bound to several apps).
_PREPARED: weakref.WeakSet[Blueprint] = weakref.WeakSet()


def register(app: Flask, state: AppState, *, blueprint: Blueprint | None = None, url_prefix: str | None = None) -> None:
    """Add the job routes, every async endpoint mapped so far without a blueprint of its own and the
    OpenAPI route (if set) to a blueprint (``blueprint``, else a new one of the extension's own), and
    register it on ``app``.

    :raises ConfigurationError: when ``blueprint`` was registered on an app already.
    """
    own = blueprint is None
    bp = Blueprint(BLUEPRINT_NAME, __name__) if blueprint is None else blueprint
    state.blueprint_name = bp.name
    state.job_endpoint = f"{bp.name}.{JOB_ENDPOINT}"
    state.url_prefix = (url_prefix if url_prefix is not None else bp.url_prefix or "").rstrip("/")
    if bp not in _PREPARED:
        if getattr(bp, "_got_registered_once", False):
            raise ConfigurationError(
                f"The blueprint {bp.name!r} is registered on an app already; pass init_app() a blueprint "
                "that is not registered yet: it adds the job routes to it and registers it."
            )
        _add_job_routes(bp, state)
        for route in state.registry.routes:
            if route.blueprint is None:
                add_route(bp, route)
        if own:
            bp.register_error_handler(HTTPException, _http_error)
        else:
            _PREPARED.add(bp)
    app.register_blueprint(bp, url_prefix=url_prefix)


def _add_job_routes(bp: Blueprint, state: AppState) -> None:
    rule = job_rule(state.settings.job_details_url)
    space = rule[: rule.index("<")]
    catch_all = bool(space.strip("/"))
    bp.add_url_rule(
        rule,
        endpoint=JOB_ENDPOINT,
        view_func=_job_view,
        methods=["GET", "OPTIONS"] if catch_all else ["GET"],
        # The catch-all rule below matches job URLs too; Flask's own OPTIONS answer would list its methods.
        provide_automatic_options=not catch_all,
    )
    bp.add_url_rule(
        rule, endpoint=CANCEL_ENDPOINT, view_func=lambda job_id: cancel_job(_state(), job_id), methods=["DELETE"]
    )
    if catch_all:
        # Everything else under the job URLs' own prefix (``/jobs/…``) answers problem JSON rather than
        # Flask's HTML pages; a catch-all rule (the least specific there is) does it without an
        # app-wide error handler, so the app's own pages keep theirs.
        for space_rule, defaults in ((space, {"subpath": ""}), (space + "<path:subpath>", {})):
            bp.add_url_rule(
                space_rule,
                endpoint="job_space",
                view_func=_job_space,
                methods=_SPACE_METHODS,
                defaults=defaults,
                provide_automatic_options=False,
            )
    if state.settings.openapi_url is not None:
        bp.add_url_rule(state.settings.openapi_url, endpoint="openapi", view_func=lambda: openapi_view(_state()))


#: The methods a job URL answers.
_JOB_METHODS = "DELETE, GET, HEAD, OPTIONS"


def _job_view(job_id: str) -> Response:
    if request.method == "OPTIONS":
        return Response(status=200, headers={"Allow": _JOB_METHODS})
    return job_details(_state(), job_id)


def _job_space(subpath: str) -> Response:
    """A URL under the job routes' prefix that no rule serves: 405 if it is a job URL, else 404."""
    state = _state()
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        endpoint, _ = adapter.match(method="GET")
    except HTTPException:
        endpoint = None
    if endpoint == state.job_endpoint:
        return problem_response(
            ProblemError(
                405,
                "Method not allowed",
                f"A job URL answers GET (read the job) and DELETE (cancel it), not {request.method}.",
                headers={"Allow": _JOB_METHODS},
            )
        )
    return problem_response(
        ProblemError(404, "Not found", f"Nothing is at {request.path}; job URLs look like {_example_job_url(state)}.")
    )


def _example_job_url(state: AppState) -> str:
    return state.url_prefix + state.settings.job_details_url.replace("<uuid:job_id>", "<job id>")


def _http_error(error: HTTPException) -> Response | HTTPException:
    """Problem JSON for an HTTP error raised in the extension's own blueprint (a view decorator's
    ``abort(401)``, say); anything below 400 goes on as it is."""
    if isinstance(error, ProblemError) or error.code is None or error.code < 400:
        return error
    if error.response is not None:
        return error.response  # type: ignore[return-value]
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return problem_response(ProblemError(error.code, error.name, error.description or error.name, headers=headers))


def add_route(target: Blueprint | Flask, route: RouteSpec, *, rule_prefix: str = "", endpoint_prefix: str = "") -> None:
    """Add one async endpoint to a blueprint (or, after the blueprint is registered, straight to an
    app, under the blueprint's prefix and endpoint names): its requests submit jobs for the route's
    handler."""
    view = make_view(route)
    target.add_url_rule(
        rule_prefix + route.rule, endpoint=endpoint_prefix + route.endpoint, view_func=view, methods=list(route.methods)
    )


def make_view(route: RouteSpec) -> Callable[..., Any]:
    """The view of one async endpoint, wrapped in the route's decorators (the last one outermost)."""

    def view(**route_params: Any) -> Response:
        return submit_view(_state(), route, **route_params)

    view.__name__ = route.endpoint
    wrapped: Callable[..., Any] = view
    for decorator in route.decorators:
        wrapped = decorator(wrapped)
    return wrapped

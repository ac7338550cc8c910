"""The HTTP surface: submit to an async endpoint, read a job, cancel a job, the OpenAPI document.

Every error is answered as problem JSON (RFC 9457); none of these views lets an exception through.
Each view gets the app's :class:`~flask_asyncendpoints.state.AppState` by closure, from
:func:`register` and :func:`add_route`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response

from ..errors import ConfigurationError
from ..registry import RouteSpec
from ..state import AppState
from .jobs import CANCEL_ENDPOINT, JOB_ENDPOINT, cancel_job, job_details, job_location, job_response
from .openapi import openapi_document
from .problems import JSON_MIMETYPE, PROBLEM_MIMETYPE, problem
from .submit import OWNER_REQUEST_ID_NAMESPACE, REQUEST_ID_HEADER, submit_view

__all__ = [
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


def job_rule(job_details_url: str) -> str:
    """The URL rule of the job routes for ``ASYNCENDPOINTS_JOB_DETAILS_URL``.

    :raises ConfigurationError: when the URL has no ``<uuid:job_id>``.
    """
    rule = job_details_url.replace("<uuid:job_id>", "<job_id>")
    if "<job_id>" not in rule:
        raise ConfigurationError(f"ASYNCENDPOINTS_JOB_DETAILS_URL={job_details_url!r} must contain '<uuid:job_id>'.")
    return rule


def register(app: Flask, state: AppState) -> None:
    """Add the job routes, every async endpoint registered so far and the OpenAPI route (if set) to ``app``."""
    rule = job_rule(state.settings.job_details_url)
    app.add_url_rule(
        rule,
        endpoint=JOB_ENDPOINT,
        view_func=lambda job_id: job_details(state, job_id),
        methods=["GET"],
    )
    app.add_url_rule(
        rule,
        endpoint=CANCEL_ENDPOINT,
        view_func=lambda job_id: cancel_job(state, job_id),
        methods=["DELETE"],
    )
    for route in state.registry.routes:
        add_route(app, state, route)
    if state.settings.openapi_url is not None:
        app.add_url_rule(
            state.settings.openapi_url,
            endpoint="asyncendpoints.openapi",
            view_func=lambda: openapi_document(state, app.name),
            methods=["GET"],
        )


def add_route(app: Flask, state: AppState, route: RouteSpec) -> None:
    """Add one async endpoint to ``app``: its requests submit jobs for the route's handler."""

    def view(**route_params: Any) -> Response:
        return submit_view(state, route, **route_params)

    app.add_url_rule(route.rule, endpoint=route.endpoint, view_func=view, methods=list(route.methods))

"""The dashboard: a Blueprint of server-rendered pages over the store's monitoring API.

Mounted by ``init_app`` at ``ASYNCENDPOINTS_DASHBOARD_URL`` (off when ``None``); who may open it is
decided by :mod:`flask_asyncendpoints.access` (local requests by default, or the app's
:meth:`~flask_asyncendpoints.AsyncEndpoints.dashboard_access`). Its modules: ``csrf`` — the token that every
action form carries; ``pages`` — the views and actions; ``charts`` — the throughput chart's layout;
``format`` — how values are written. Templates and the stylesheet are package data
(``templates/asyncendpoints/dashboard/``, ``static/``); the pages need no script.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, request

from .. import access
from ..access import Refusal, is_local_request
from ..errors import StoreError
from ..state import AppState
from . import csrf, pages
from .pages import PageError

__all__ = ["BLUEPRINT_NAME", "create_blueprint", "is_local_request", "register"]

#: The blueprint's name: its endpoints are ``asyncendpoints_dashboard.overview`` and so on.
BLUEPRINT_NAME = "asyncendpoints_dashboard"

#: Headers on every dashboard answer: no caching of job data, no framing (the action buttons must
#: not be clickjacked), nothing loaded from elsewhere, forms posted only back to the app.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


def create_blueprint(url_prefix: str) -> Blueprint:
    """The dashboard's blueprint, to be registered at ``url_prefix``.

    :param url_prefix: where it is mounted, such as ``"/asyncendpoints"``.
    """
    blueprint = Blueprint(
        BLUEPRINT_NAME,
        __name__,
        url_prefix=url_prefix,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    blueprint.before_request(_guard)
    blueprint.after_request(_finish)
    blueprint.context_processor(pages.template_context)
    blueprint.add_url_rule("/", "overview", pages.overview)
    blueprint.add_url_rule("/jobs/<status>", "job_list", pages.job_list)
    blueprint.add_url_rule("/job/<job_id>", "job_detail", pages.job_detail)
    blueprint.add_url_rule("/job/<job_id>/<action>", "job_action", pages.job_action, methods=["POST"])
    blueprint.add_url_rule("/workers", "workers", pages.workers)
    blueprint.add_url_rule("/schedules", "schedules", pages.schedules)
    blueprint.register_error_handler(PageError, _page_error)
    blueprint.register_error_handler(StoreError, _store_error)
    blueprint.register_error_handler(NotImplementedError, _not_implemented)
    return blueprint


def register(app: Flask, state: AppState) -> None:
    """Mount the dashboard on ``app`` at ``ASYNCENDPOINTS_DASHBOARD_URL``, if that is set."""
    url = state.settings.dashboard_url
    if url is not None:
        app.register_blueprint(create_blueprint(url))


def _guard() -> Response | None:
    """Let the request in, or answer the ``403`` page (the stylesheet is public: it holds nothing)."""
    if request.endpoint == f"{BLUEPRINT_NAME}.static":
        return None
    state = pages._state()
    decision = access.check_access(state.registry)
    if decision is None or isinstance(decision, Response):
        return decision
    return _forbidden(decision)


def _forbidden(refusal: Refusal) -> Response:
    return pages.render("forbidden.html", 403, refusal=refusal, remote_addr=request.remote_addr)


def _finish(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return csrf.set_cookie(response, request.script_root + (pages._state().settings.dashboard_url or ""))


def _page_error(error: PageError) -> Response:
    return pages.render(
        "error.html", error.status, title=error.title, message=error.message, hint=error.hint, code=error.status
    )


def _store_error(error: StoreError) -> Response:
    current_app.logger.warning("dashboard: job store unavailable: %s", error)
    response = pages.render(
        "error.html",
        503,
        title="Job store unavailable",
        message="The job store cannot be reached right now.",
        hint="Reload the page in a moment. Nothing was changed.",
        code=503,
    )
    response.headers["Retry-After"] = "5"
    return response


def _not_implemented(error: NotImplementedError) -> Response:
    return pages.render(
        "error.html",
        501,
        title="Not available on this store",
        message=str(error) or "The job store does not implement this part of the monitoring API.",
        hint="Built-in stores implement all of it; a custom store passes the contract suite when it does too.",
        code=501,
    )

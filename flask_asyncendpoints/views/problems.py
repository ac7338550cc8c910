"""Problem JSON answers (RFC 9457) and the response hooks every answer passes through."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Response, current_app

from ..errors import ProblemError, StoreError
from ..state import AppState

JSON_MIMETYPE = "application/json"
PROBLEM_MIMETYPE = "application/problem+json"


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem JSON response (RFC 9457), e.g. for a validator hook to return.

    :param status: the HTTP status code.
    :param detail: what went wrong with this request and what to do about it.
    :param title: a short summary of the problem type (default: the status phrase).
    :param headers: extra response headers.
    :param extra: extension members, such as ``errors``.
    """
    error = ProblemError(status, title or _status_phrase(status), detail, extra=extra, headers=headers)
    return error.get_response()  # type: ignore[return-value]


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(error: ProblemError) -> Response:
    """The problem JSON answer of a raised :class:`~flask_asyncendpoints.ProblemError`."""
    return error.get_response()  # type: ignore[return-value]


def hooked(state: AppState, kind: str, subject: Any, response: Response) -> Response:
    """Pass a built response through the app's response hook of that kind, if any."""
    hook = state.registry.response_hooks.get(kind)
    if hook is None:
        return response
    return current_app.make_response(hook(subject, response))


def store_unavailable(state: AppState, exc: StoreError) -> Response:
    """The ``503`` for a store that cannot be reached, through the ``exception`` hook."""
    current_app.logger.warning("job store unavailable: %s", exc)
    error = ProblemError(
        503,
        "Job store unavailable",
        "The job store cannot be reached right now; nothing was changed. Try again shortly.",
        headers={"Retry-After": "5"},
    )
    return hooked(state, "exception", exc, problem_response(error))


def not_found(job_id: str) -> ProblemError:
    """The ``404`` for a job that does not exist or that the request may not see."""
    return ProblemError(404, "Job not found", f"There is no job with the id {job_id!r}.")
